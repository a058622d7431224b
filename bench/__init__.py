"""Benchmarks: TorchServe against the in-process limit and a tutorial-style Flask server.

``python -m bench`` (``make bench``) writes bench/results/; ``python -m bench.tune`` measures the
settings behind the defaults (docs/PERFORMANCE.md). Nothing here is imported by the server or the tests'
fixtures; modules import torch and Flask only where they need them.
"""
