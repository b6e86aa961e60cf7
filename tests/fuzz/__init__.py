"""Fuzzing the decoder and a live node: fast slices here, the long run in ``benchmarks.fuzz``."""
