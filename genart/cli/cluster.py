"""``genart cluster-ready``: wait until a Ray cluster's job API takes jobs (see genart.cluster)."""

from __future__ import annotations

import os
import sys
import time

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


def register(sub) -> None:
    p = sub.add_parser(
        "cluster-ready",
        help="wait until the cluster takes jobs (run after `ray start --head` or `ray up`)",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS", DEFAULT_ADDRESS),
        help=f"job API address (default: $RAY_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)"
    )
    p.set_defaults(func=cluster_ready_command)


def cluster_ready_command(args) -> int:
    from genart.cluster import wait_for_jobs

    start = time.monotonic()
    try:
        probe = wait_for_jobs(args.address, timeout_s=args.timeout)
    except TimeoutError as err:
        print(f"genart: error: {err}", file=sys.stderr)
        return 1
    print(f"{args.address} takes jobs ({time.monotonic() - start:.1f} s; no-op job {probe})")
    return 0
