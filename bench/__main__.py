"""`python -m bench [NAME ...]`: run benchmarks (all when none is named)."""

import sys

from bench import stack_bench  # noqa: F401  (registers its benchmarks)
from bench.runner import run

run(sys.argv[1:])
