"""Recipes genart runs itself (``genart demo``), shipped inside the package as package data so
that an installed genart (a wheel, not a checkout) finds them.

``jobs/`` holds the recipes users read, edit and submit; each recipe here is the same file as
its namesake there, and a unit test keeps them identical.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    """The packaged recipe ``name`` (e.g. ``dcgan-digits``), a YAML file inside genart."""
    return Path(str(resources.files(__name__) / f"{name}.yaml"))
