"""Benchmarks: each script runs its baseline beside the thing measured and prints the ratio
(`.venv/bin/python bench/<script>.py`, or `python -m bench.<script>`); figures in bench/README.md."""
