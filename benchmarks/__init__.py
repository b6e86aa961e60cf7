"""Ratio benchmarks: Tessera against the raw transport and plain PyTorch, in one run."""
