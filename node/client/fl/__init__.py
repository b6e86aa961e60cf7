"""Federated learning in the user's process: dataset pointers, trainer jobs, background dials."""
