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


def test_packaged_recipes_are_their_jobs_namesakes():
    """genart demo trains a recipe shipped in the package; users read and edit jobs/."""
    from genart import recipes

    packaged = sorted(Path(recipes.__file__).parent.glob("*.yaml"))
    assert packaged, "no recipe in genart/recipes"
    for recipe in packaged:
        assert recipe.read_text() == (JOBS / recipe.name).read_text(), recipe.name


def job_module(name: str):
    """A job script loaded from its file: they run as `python jobs/x.py`, jobs/ is no package."""
    spec = importlib.util.spec_from_file_location(f"jobs_{name}", JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_recipe_reads_the_model_and_passes_flags_through(monkeypatch):
    common = job_module("common")
    calls = []
    monkeypatch.setattr(common, "main", lambda argv: calls.append(argv) or 0)
    recipe = str(JOBS / "pix2pix-pairs.yaml")
    assert common.run_recipe("train", ["--config", recipe, "--steps", "3", "--resume"]) == 0
    assert calls == [["train", "pix2pix", "--config", recipe, "--steps", "3", "--resume"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read recipe {path}: No such file or directory"),
        ("model: dcgan\ntrain: {steps: 10\n", "invalid YAML in {path} at line 3, column 1"),
        ("train: {steps: 10}\n", "recipe {path} needs a 'model:' key"),
        ("- dcgan\n", "recipe {path} needs a 'model:' key"),
    ],
)
def test_run_recipe_exits_2_naming_a_recipe_it_cannot_read(tmp_path, capsys, text, message):
    path = tmp_path / "recipe.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        job_module("common").run_recipe("train", ["--config", str(path)])
    assert exit_info.value.code == 2
    assert message.format(path=path) in capsys.readouterr().err


def test_make_data_writes_file_uris_to_their_path(tmp_path, monkeypatch):
    make_data = job_module("make_data")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "data" / "shapes"
    args = make_data.parse(["shapes", "--out", f"file://{out}", "--n", "2", "--size", "8"])
    assert make_data.make(args) == str(out)
    assert len(list((out / "images").glob("*.png"))) == 2
    assert not (tmp_path / "file:").exists()


def test_make_data_bad_values_exit_2_with_one_line(tmp_path, capsys):
    make_data = job_module("make_data")
    assert make_data.main(["shapes", "--out", str(tmp_path), "--n", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make_data: error: need n >= 1") and err.count("\n") == 1


def test_make_data_refuses_a_target_holding_other_files(tmp_path):
    make_data = job_module("make_data")
    small, large = tmp_path / "small", tmp_path / "large"
    for folder, n in ((small, "2"), (large, "3")):
        make_data.make(make_data.parse(["shapes", "--out", str(folder), "--n", n, "--size", "8"]))
    assert make_data.foreign_files(str(small), str(small)) == []  # a resubmitted job
    extra = make_data.foreign_files(str(large), str(small))  # a larger draw was there before
    assert extra and all(name.startswith("images/") for name in extra)


def test_make_data_to_object_storage_is_resubmittable_but_never_mixes(capsys):
    from localcloud import environment, moto_s3

    make_data = job_module("make_data")

    def submit(n: str) -> int:
        return make_data.main(["shapes", "--out", "s3://data/shapes", "--n", n, "--size", "8"])

    with moto_s3("data") as env, environment(env):
        assert submit("3") == 0 and submit("3") == 0  # a resubmitted job rewrites its files
        assert submit("2") == 2  # the third image of the first draw would stay behind
    assert "holds files this dataset would not write (images/" in capsys.readouterr().err
