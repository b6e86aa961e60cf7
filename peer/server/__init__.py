"""The server side of a connection: the conversation state machine, hello authentication, error screening."""
