"""The gateway: a registry where nodes register and clients discover them.

Depends on ``protocol/`` only.  The registry, heartbeats, search by tag and
the status page arrive with the gateway issue; this package reserves the
room so that layering tests cover it from the start.
"""
