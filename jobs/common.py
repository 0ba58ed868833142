"""Shared by the job scripts: run a ``genart`` verb on the model a recipe names.

The scripts in jobs/ are what ``ray job submit -- python jobs/<name>.py ...`` runs. They stay
thin on purpose: everything they do is a ``genart`` command, so a job behaves exactly like the
same command typed on a laptop (``ray job submit`` sets ``RAY_ADDRESS``; genart connects to it).
"""

from __future__ import annotations

import argparse
import sys

import yaml

from genart.cli import main, one_line
from genart.config import ConfigError


def model_of(recipe: str) -> str:
    """The ``model:`` a YAML recipe is for; ConfigError naming ``recipe`` if it cannot tell."""
    try:
        with open(recipe) as stream:  # from a stream, YAML errors name the file
            raw = yaml.safe_load(stream)
    except OSError as err:
        raise ConfigError(f"cannot read recipe {recipe}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(one_line(err)) from err
    model = raw.get("model") if isinstance(raw, dict) else None
    if not isinstance(model, str):
        raise ConfigError(f"recipe {recipe} needs a 'model:' key naming the model")
    return model


def run_recipe(verb: str, argv: list[str] | None = None) -> int:
    """``genart VERB MODEL --config RECIPE ...rest`` with MODEL read from the recipe."""
    parser = argparse.ArgumentParser(
        description=f"genart {verb} from a recipe; other flags pass through to `genart {verb}`"
    )
    parser.add_argument("--config", required=True, help="YAML recipe (jobs/*.yaml)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        model = model_of(args.config)
    except ConfigError as err:
        parser.error(str(err))  # exits 2, as genart does for a bad recipe
    return main([verb, model, "--config", args.config, *rest])
