"""Benchmarks: TorchServe against LitServe, a tutorial-style Flask server and the in-process limit.

``python -m bench`` (``make bench``) writes bench/results/; ``python -m bench.tune`` measures the
settings behind the defaults (docs/PERFORMANCE.md). Both are lists of variants for the one run
loop in bench/run.py. Nothing here is imported by the server or the tests' fixtures.
"""
