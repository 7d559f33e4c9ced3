"""Benchmarks: each module registers runs with `@benchmark`; `python -m bench` runs them."""
