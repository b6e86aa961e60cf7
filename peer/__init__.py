"""What every process that speaks the Tessera protocol shares.

The WebSocket transport (:mod:`peer.transport`), TLS identity, trust and
proofs (:mod:`peer.security`), the server-side conversation state machine
and hello authentication (:mod:`peer.server`), and the client-side channels
(:mod:`peer.client`).  Imports :mod:`protocol` only, never ``node`` or
``gateway``, and never torch: a gateway is a peer too.
"""
