"""TLS identity and trust: key pairs and certificates, pinning, node proofs and user tokens."""
