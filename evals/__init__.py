"""Offline evals and benchmarks (``evals/bench``)."""
