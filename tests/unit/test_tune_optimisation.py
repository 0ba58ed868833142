"""Sweeps of optimisation families (Gatys, Deep Dream): their jobs, trials and best recipes,
without Ray (the end-to-end sweep is in tests/ray/test_tune.py)."""

import shlex
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from genart import config, registry
from genart.cli import build_parser, style
from genart.config import ConfigError
from genart.tune import driver, report, space, trials
from genart.tune.settings import Settings, optimisation_job

SHALLOW = {
    "gatys": ["gatys.content_layers=[relu2_1]", "gatys.style_layers=[relu1_1,relu2_1]"],
    "dream": ["dream.layers=[relu2_2]", "dream.octaves=2", "dream.jitter=4"],
}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    for name in ("content", "style"):
        image = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


def job_of(family, pictures, *overrides, storage="."):
    raw = config.apply_overrides(
        {"model": family},
        [f"data.uri={pictures / 'content.png'}", "train.steps=4", *SHALLOW[family], *overrides],
    )
    styles = [str(pictures / "style.png")] if family == "gatys" else []
    job = optimisation_job(family, raw, styles, 32, "random")
    job.run = config.RunConfig(name="sweep", storage_path=str(storage))
    return job


def test_each_family_takes_its_inputs_from_data_and_style(pictures):
    gatys = job_of("gatys", pictures)
    assert list(gatys.inputs) == ["content", "styles"]
    assert gatys.inputs["styles"] == [str(pictures / "style.png")]
    dream = job_of("dream", pictures)
    assert dream.inputs == {"image": str(pictures / "content.png")}
    assert (dream.budget, dream.params.iterations) == (4, 4)  # train.steps: evaluations per scale


@pytest.mark.parametrize(
    ("family", "styles", "overrides", "message"),
    [
        ("dream", ["s.png"], ["data.uri=c.png"], "dream sweeps take no --style"),
        ("dream", [], [], r"dream sweeps need image \(--data\)"),
        ("gatys", [], ["data.uri=c.png"], r"need content \(--data\) and styles \(--style\)"),
        ("dream", [], ["data.uri=c.png", "train.seed=1"], "unknown key 'train.seed' for dream"),
        ("dream", [], ["data.uri=c.png", "dream.depth=2"], "unknown key 'dream.depth'"),
        ("dcgan", [], ["data.uri=c.png"], "'dcgan' is a trained family"),
    ],
)
def test_optimisation_jobs_refuse_what_they_would_ignore(family, styles, overrides, message):
    raw = config.apply_overrides({"model": family}, overrides)
    with pytest.raises(ConfigError, match=message):
        optimisation_job(family, raw, styles, 32, "auto")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(scheduler="pbt"), "keep no checkpoints to exploit"),
        (Settings(metric="eval_swd"), r"scored by objective \(higher is better\)"),
        (Settings(mode="min"), r"scored by objective \(higher is better\)"),
    ],
)
def test_optimisation_sweeps_refuse_what_their_trials_cannot_do(pictures, settings, message):
    searched = space.load("dream")
    with pytest.raises(ConfigError, match=message):
        driver.sweep_optimisation(job_of("dream", pictures), searched, settings)


@pytest.mark.parametrize(
    ("family", "params"),
    [
        ("gatys", {"gatys.style_weight": 1e3, "gatys.style_layer_weights": [0.7, 0.3]}),
        ("dream", {"dream.step_size": 0.02, "dream.smooth": 0.5}),
    ],
)
def test_best_recipe_command_runs_the_best_settings_on_the_sweeps_inputs(pictures, family, params):
    job = job_of(family, pictures, f"{family}.seed=3")
    recipe = report.optimisation_recipe(job, params)
    command = shlex.split(recipe.splitlines()[0].removeprefix("# "))
    assert command[: len(report.COMMANDS[family].split())] == report.COMMANDS[family].split()
    args = build_parser().parse_args(command[1:])
    best = job.settings(params)
    assert style._config(args, family) == best  # every set field has its flag
    saved = yaml.safe_load(recipe)
    kind = registry.get(family).config
    assert saved["model"] == family
    assert config.build(kind, saved[family], family) == best
    assert (args.size, args.vgg_weights, args.output) == (32, "random", "best.png")
    if family == "gatys":
        assert (args.content, args.style) == (job.inputs["content"], job.inputs["styles"])
    else:
        assert args.input == job.inputs["image"]


@pytest.mark.parametrize(
    ("family", "params"),
    [("gatys", {"gatys.style_weight": 1e3}), ("dream", {"dream.step_size": 0.02})],
)
def test_a_trial_reports_the_base_settings_score_at_its_steps_and_saves_its_result(
    pictures, tmp_path, monkeypatch, family, params
):
    from ray import tune

    reports = []
    monkeypatch.setattr(tune, "report", lambda metrics, **_: reports.append(metrics))
    context = SimpleNamespace(get_trial_id=lambda: "t1")
    monkeypatch.setattr(tune, "get_context", lambda: context)
    job = job_of(family, pictures, storage=tmp_path)
    trials.optimisation_trial(params, job, interval=1)
    metric = registry.get(family).metric
    # Dream's two octaves make 8 evaluations: steps count them in the budget's units.
    assert [r["step"] for r in reports] == [1, 2, 3, 4]
    assert all(r[metric] > 0 for r in reports)
    assert reports[-1]["run"] == "t1"
    assert (tmp_path / "sweep" / "runs" / "t1" / "samples" / "step_000004.png").is_file()
