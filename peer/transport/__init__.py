"""Transport room: WebSocket server and client, TLS contexts and sockets.

- :mod:`.websocket`: the asyncio server and client connections (push mode);
- :mod:`.sync_websocket`: the blocking client connection over :mod:`.tls_socket`;
- :mod:`.tls`: TLS contexts from an identity and a trust policy
  (:mod:`peer.security` owns the identity and the trust);
- :mod:`.loops`: the event loop a process runs; :mod:`.backoff`: redial delays.

Only this package imports ``websockets``.  Importing the package itself
loads none of its modules.
"""
