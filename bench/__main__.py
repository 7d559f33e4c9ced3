"""`python -m bench [NAME ...]`: run benchmarks (all when none is named)."""

import sys

from bench import (  # noqa: F401  (they register themselves)
    annotations_bench,
    autoscaling_bench,
    bev_bench,
    cli_bench,
    export_bench,
    jobs_bench,
    limits_bench,
    listing_api_bench,
    listing_bench,
    node_bench,
    object_store_cores_bench,
    operator_bench,
    pointcloud_bench,
    push_bench,
    stack_bench,
    thumbnails_bench,
    worker_bench,
)
from bench.runner import run

run(sys.argv[1:])
