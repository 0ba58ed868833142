"""The ``genart`` command line: one sub-command module per concern.

Each module in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its verbs and sets
``func`` on them; ``func(args)`` returns an exit code (or None for 0). Modules are imported only
to build the parser, and heavy imports (torch, ray) stay inside the verbs so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import yaml

from genart import console
from genart.config import InputError

# What the user can fix (a bad value or file, a malformed recipe or search space): reported on one
# line with exit code 2 rather than as a traceback. ValueError stays out: it is also a bug's error.
USER_ERRORS = (InputError, OSError, yaml.YAMLError)

COMMAND_MODULES = (
    "data",
    "train",
    "models",
    "sample",
    "eval",
    "style",
    "serve",
    "tune",
    "translate",
    "cluster",
    "weights",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="genart", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=f"print Ray's own output too, not only genart's (also {console.VERBOSE_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"genart.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genart`` console script."""
    args = build_parser().parse_args(argv)
    console.configure(args.verbose)  # before anything imports Ray
    try:
        return args.func(args) or 0
    except USER_ERRORS as err:
        print(f"genart: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: Exception) -> str:
    """``err``'s message on one line; PyYAML's spans several (what, then where, quoted)."""
    if not isinstance(err, yaml.YAMLError):
        return str(err)
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return "invalid YAML: " + " ".join(str(err).split())
    message = f"invalid YAML{_source(mark)} at {_position(mark)}: {err.problem}"
    if err.context and err.context_mark is not None:
        message += f" ({err.context} at {_position(err.context_mark)})"
    return message


def _source(mark: yaml.Mark) -> str:
    # PyYAML names text it was handed as a string "<unicode string>": no file to name then.
    return "" if mark.name.startswith("<") else f" in {mark.name}"


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"  # PyYAML counts from 0


if __name__ == "__main__":
    sys.exit(main())
