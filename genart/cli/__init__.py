"""The ``genart`` command line: one sub-command module per concern.

Each module in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its verbs and sets
``func`` on them; ``func(args)`` returns an exit code (or None for 0). Modules are imported only
to build the parser, and heavy imports (torch, ray) stay inside the verbs so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from genart.config import InputError

COMMAND_MODULES = (
    "data",
    "train",
    "sample",
    "eval",
    "style",
    "serve",
    "tune",
    "translate",
    "cluster",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="genart", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"genart.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genart`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (InputError, FileNotFoundError) as err:
        print(f"genart: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
