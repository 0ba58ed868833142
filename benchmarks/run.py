"""Run the registered benchmarks: ``python -m benchmarks.run --out DIR [--only NAME ...]``.

Each name in ``BENCHMARKS`` is a module ``benchmarks.NAME`` exposing
``run(out_dir: Path, quick: bool) -> dict``, which prints its table and writes ``NAME.json``
(with :func:`benchmarks.common.write_json`). A benchmark that fails is reported and the others
still run; the exit status says whether all of them succeeded.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

BENCHMARKS = [
    "ingest", "dcgan", "style", "translation", "quality", "evaluation", "tune", "serve",
    "serve_catalogue", "video", "inference",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen benchmarks in order; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="JSON folder")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these (of: {', '.join(BENCHMARKS)})")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    args = parser.parse_args(argv)
    failed = []
    for name in [n for n in BENCHMARKS if not args.only or n in args.only]:
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").run(args.out, args.quick)
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            failed.append(name)
        print(f"({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
