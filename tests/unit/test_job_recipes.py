"""Every recipe in jobs/ is a valid config, and the job scripts pick the model from it."""

import importlib.util
from pathlib import Path

import pytest

from genart import config

JOBS = Path(__file__).resolve().parents[2] / "jobs"
RECIPES = sorted(JOBS.glob("*.yaml"))


def test_a_recipe_per_trainable_model():
    from genart import registry

    models = {config.load(recipe=r).model for r in RECIPES}
    assert models >= {"dcgan", "fast_style", "pix2pix", "cyclegan"}
    assert models <= set(registry.names())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_loads(recipe):
    cfg = config.load(recipe=recipe)
    assert cfg.train.steps > 0 and cfg.scaling.workers >= 1


def test_run_recipe_reads_the_model_and_passes_flags_through(monkeypatch):
    # Loaded from its file: job scripts run as `python jobs/x.py`, jobs/ is not a package.
    spec = importlib.util.spec_from_file_location("jobs_common", JOBS / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    calls = []
    monkeypatch.setattr(common, "main", lambda argv: calls.append(argv) or 0)
    recipe = str(JOBS / "pix2pix-pairs.yaml")
    assert common.run_recipe("train", ["--config", recipe, "--steps", "3", "--resume"]) == 0
    assert calls == [["train", "pix2pix", "--config", recipe, "--steps", "3", "--resume"]]
