"""The client side of a connection: dial-and-hello, request correlation, sync and asyncio channels."""
