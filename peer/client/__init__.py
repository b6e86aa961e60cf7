"""The client side of a connection: one sans-I/O core under threaded and asyncio drivers.

:mod:`.core` decides (hello and its checks, request ids, correlation,
barriers, the connection's state) without I/O; :mod:`.sync_channel` and
:mod:`.async_channel` drive it over a WebSocket, :mod:`.dialing` words what
both do around the dial, :mod:`.endpoint` says where the peer is and how to
trust it, :mod:`.credentials` what a client says in its hello.
"""
