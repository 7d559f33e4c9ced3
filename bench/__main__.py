"""`python -m bench [NAME ...]`: run benchmarks (all when none is named)."""

import sys

from bench import operator_bench, stack_bench  # noqa: F401  (they register themselves)
from bench.runner import run

run(sys.argv[1:])
