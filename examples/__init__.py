"""Runnable end-to-end demos (each a README command); a package so ``examples.local_network`` is ours.

Opacus (the DP-SGD dependency) installs a top-level ``examples`` package of
its own into site-packages, which would otherwise shadow this directory.
"""
