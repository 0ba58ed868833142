"""Shared by the job scripts: run a ``genart`` verb on the model a recipe names.

The scripts in jobs/ are what ``ray job submit -- python jobs/<name>.py ...`` runs. They stay
thin on purpose: everything they do is a ``genart`` command, so a job behaves exactly like the
same command typed on a laptop (``ray job submit`` sets ``RAY_ADDRESS``; genart connects to it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from genart.cli import main


def model_of(recipe: str) -> str:
    """The ``model:`` a YAML recipe is for."""
    raw = yaml.safe_load(Path(recipe).read_text()) or {}
    if not isinstance(raw, dict) or "model" not in raw:
        raise SystemExit(f"{recipe}: a recipe needs a 'model:' key")
    return raw["model"]


def run_recipe(verb: str, argv: list[str] | None = None) -> int:
    """``genart VERB MODEL --config RECIPE ...rest`` with MODEL read from the recipe."""
    parser = argparse.ArgumentParser(
        description=f"genart {verb} from a recipe; other flags pass through to `genart {verb}`"
    )
    parser.add_argument("--config", required=True, help="YAML recipe (jobs/*.yaml)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return main([verb, model_of(args.config), "--config", args.config, *rest])
