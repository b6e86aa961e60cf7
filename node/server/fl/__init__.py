"""Federated learning inside a node: the owner's training, trainer jobs, secure aggregation."""
