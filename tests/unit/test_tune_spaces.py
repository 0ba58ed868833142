"""Search spaces: the YAML schema, validation against the typed configs, Tune domains."""

import importlib.util
import random

import pytest
import yaml

from genart import config, registry
from genart.config import ConfigError
from genart.tune import space
from genart.tune.driver import scheduler, searcher, stored_sweep
from genart.tune.report import best_recipe, error_summary
from genart.tune.settings import (
    SWEEP_FILE,
    Settings,
    base_config,
    concurrency,
    eval_interval,
    optimisation_job,
    trial_cpus,
)

MODELS = registry.names()
OPTIMISATION = registry.names(registry.OptimisationSpec)


def sample(domain):
    """One value from a Tune domain (or the fixed value itself)."""
    return domain.sample() if hasattr(domain, "sample") else domain


@pytest.mark.parametrize("model", MODELS)
def test_builtin_space_is_valid_and_samples_valid_configs(model):
    s = space.load(model)
    assert s.dimensions and all(d.path.startswith(f"{model}.") for d in s.dimensions)
    random.seed(0)
    for _ in range(5):
        values = {k: sample(v) for k, v in s.param_space().items()}
        if model in OPTIMISATION:
            kind = space.sections(model)[model]
            config.build(kind, {k.split(".", 1)[1]: v for k, v in values.items()}, model)
        else:
            raw = space.with_values({"model": model}, values)
            assert config.Config.from_dict(raw).model == model


def test_distributions_parse_to_tune_domains():
    s = space.parse(
        "dcgan",
        {
            "dcgan.lr_g": {"loguniform": [1e-5, 1e-3]},
            "dcgan.d_dropout": {"uniform": [0, 0.5]},
            "dcgan.n_critic": {"randint": [1, 6]},
            "dcgan.loss": {"choice": ["bce", "hinge"]},
            "dcgan.kernel": {"grid": [4, 5]},
            "train.seed": 3,
        },
    )
    kinds = {d.path: (d.kind, d.values) for d in s.dimensions}
    assert kinds["dcgan.lr_g"] == ("loguniform", (1e-5, 1e-3))
    assert kinds["dcgan.d_dropout"] == ("uniform", (0.0, 0.5))  # int bound coerced to float
    assert kinds["train.seed"] == (space.FIXED, (3,))
    params = s.param_space()
    for _ in range(20):
        assert 1e-5 <= params["dcgan.lr_g"].sample() < 1e-3
        assert 1 <= params["dcgan.n_critic"].sample() < 6
        assert params["dcgan.loss"].sample() in ("bce", "hinge")
    assert params["dcgan.kernel"] == {"grid_search": [4, 5]}
    assert params["train.seed"] == 3
    assert set(s.mutations()) == {"dcgan.lr_g", "dcgan.d_dropout", "dcgan.n_critic"}
    assert s.has_grid


def test_grid_search_turns_choices_into_grid_axes_and_refuses_ranges():
    s = space.parse("dcgan", {"dcgan.loss": {"choice": ["bce", "lsgan"]}, "dcgan.lr_g": 1e-4})
    assert s.param_space(grid=True) == {
        "dcgan.loss": {"grid_search": ["bce", "lsgan"]},
        "dcgan.lr_g": 1e-4,
    }
    ranged = space.parse("dcgan", {"dcgan.lr_g": {"loguniform": [1e-5, 1e-3]}})
    with pytest.raises(ConfigError, match="grid search needs finite values"):
        ranged.param_space(grid=True)


def test_tuple_fields_take_lists_of_values():
    s = space.parse(
        "fast_style",
        {
            "fast_style.style_layer_weights": {"choice": [[], [0.4, 0.3, 0.2, 0.1]]},
        },
    )
    assert s.dimensions[0].values == ((), (0.4, 0.3, 0.2, 0.1))
    assert s.param_space()["fast_style.style_layer_weights"].categories == [
        [],
        [0.4, 0.3, 0.2, 0.1],
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"dcgan.lr": {"uniform": [0, 1]}}, "unknown key 'dcgan.lr'; valid keys for dcgan: .*lr_g"),
        ({"pix2pix.l1_weight": 10}, "unknown path 'pix2pix.l1_weight'; valid sections: .*dcgan"),
        ({"lr_g": 1e-4}, "unknown path 'lr_g'"),
        ({"run.name": "x"}, "set by the sweep"),
        ({"dcgan.loss": {"choice": ["bce", "nope"]}}, r"'dcgan.loss\[1\]' = 'nope' is not one of"),
        ({"dcgan.loss": {"uniform": [0, 1]}}, "dcgan.loss' is .*uniform draws floats"),
        ({"dcgan.n_critic": {"loguniform": [1, 5]}}, "n_critic' is int: loguniform draws floats"),
        ({"dcgan.lr_g": {"randint": [1, 5]}}, "lr_g' is float: randint draws ints"),
        ({"dcgan.lr_g": {"loguniform": [0, 1e-3]}}, "loguniform needs low > 0"),
        ({"dcgan.lr_g": {"uniform": [1e-3, 1e-4]}}, "needs low < high"),
        ({"dcgan.lr_g": {"uniform": [1e-4]}}, r"needs \[low, high\]"),
        ({"dcgan.lr_g": {"normal": [0, 1]}}, "kind in .*loguniform"),
        ({"dcgan.lr_g": {"choice": []}}, "needs a non-empty list"),
        ({"dcgan.lr_g": "fast"}, "'dcgan.lr_g' must be float"),
        ({}, "non-empty mapping"),
    ],
)
def test_invalid_spaces_fail_with_a_message_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        space.parse("dcgan", raw)


def test_gatys_space_is_checked_against_its_config():
    s = space.parse("gatys", {"gatys.lr": {"loguniform": [0.1, 2]}})  # a float | None field
    assert s.dimensions[0].values == (0.1, 2.0)
    with pytest.raises(ConfigError, match="valid keys for gatys: .*style_weight"):
        space.parse("gatys", {"gatys.beta": 1.0})


def test_load_reads_files_and_reports_missing_ones(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("dcgan.lr_d: {loguniform: [1.0e-5, 1.0e-3]}\n")
    assert space.load("dcgan", path).dimensions[0].path == "dcgan.lr_d"
    with pytest.raises(FileNotFoundError, match="no search space"):
        space.load("dcgan", tmp_path / "missing.yaml")


def test_with_values_sets_nested_keys_without_touching_the_input():
    raw = {"model": "dcgan", "dcgan": {"lr_g": 1e-4}}
    out = space.with_values(raw, {"dcgan.lr_d": 1e-3, "train.seed": 2})
    assert out == {"model": "dcgan", "dcgan": {"lr_g": 1e-4, "lr_d": 1e-3}, "train": {"seed": 2}}
    assert raw == {"model": "dcgan", "dcgan": {"lr_g": 1e-4}}


def test_eval_interval_is_a_report_step_about_a_quarter_of_the_budget():
    assert eval_interval(2000, 25) == 500
    assert eval_interval(100, 10) == 20  # 25 rounds to 20, a multiple of log_every
    assert eval_interval(40, 25) == 25  # never below one report interval...
    assert eval_interval(8, 25) == 8  # ...nor past the budget: a trial scores at its end


def base(scheduler_name, *overrides):
    """A sweep's base config for dcgan (default train.log_every: 25)."""
    return base_config(
        config.load("dcgan", overrides=["data.uri=/data", *overrides]), scheduler_name
    )


def test_a_budget_under_one_report_interval_is_scored_at_its_end():
    train = base("asha", "train.steps=20").train
    assert train.eval_every == 20
    asha = scheduler("asha", train.steps, train.eval_every, space.load("dcgan"))  # Tune takes it
    assert [milestone for milestone, _ in asha._brackets[0]._rungs] == [20]
    # An interval equal to the budget need not be a multiple of log_every: the end is scored.
    assert base("asha", "train.steps=30", "train.eval_every=30").train.eval_every == 30


@pytest.mark.parametrize(
    ("scheduler_name", "overrides", "message"),
    [
        ("asha", ["train.steps=20", "train.eval_every=50"], r"eval_every \(50\) exceeds .*\(20\)"),
        ("fifo", ["train.steps=100", "train.eval_every=30"], "multiple of train.log_every"),
        ("pbt", ["train.steps=20"], r"pbt perturbs .* before train.steps \(20\)"),
        ("pbt", ["train.steps=100", "train.eval_every=100"], "pbt perturbs"),
    ],
)
def test_intervals_that_leave_the_scheduler_nothing_to_act_on_are_refused(
    scheduler_name, overrides, message
):
    with pytest.raises(ConfigError, match=message):
        base(scheduler_name, *overrides)


def test_pbt_perturbs_within_the_budget_at_checkpointed_scores():
    train = base("pbt", "train.steps=100").train
    assert (train.eval_every, train.checkpoint_every) == (25, 25)
    assert train.eval_every < train.steps


def test_every_trial_keeps_a_cpu_for_its_ray_data_tasks_and_gpus_count():
    cfg = config.load("dcgan", overrides=["scaling.workers=2"])  # 2 + 1 + 0.01 CPUs a trial
    assert concurrency(cfg, {"CPU": 4}) == (1, "")
    assert concurrency(cfg, {"CPU": 16}) == (5, "")
    gpu = config.load("dcgan", overrides=["scaling.workers=2", "scaling.gpus_per_worker=1"])
    assert concurrency(gpu, {"CPU": 16, "GPU": 4}) == (2, "")
    with pytest.raises(ConfigError, match="1 for its Ray Data tasks.*the cluster has 2.5 CPUs"):
        concurrency(cfg, {"CPU": 2.5})  # 2 workers and no CPU left for data
    with pytest.raises(ConfigError, match="and 0 GPUs"):
        concurrency(gpu, {"CPU": 16})


def test_more_trials_at_once_than_the_cluster_holds_are_lowered_with_a_note():
    # The hang of a 2-core machine: a local Ray of 3 logical CPUs, 2 one-worker trials at
    # once left 0.98 CPUs beside their workers, and no Ray Data task ever started.
    cfg = config.load("dcgan", overrides=["scaling.workers=1"])
    at_once, note = concurrency(cfg, {"CPU": 3}, requested=2)
    assert at_once == 1
    assert note == (
        "genart tune: 1 trial at a time, not 2 (--max-concurrent): a trial needs 2.01 CPUs "
        "(1 for its workers, 1 for its Ray Data tasks, 0.01 for Tune); the cluster has 3 CPUs"
    )
    assert "\n" not in note
    assert concurrency(cfg, {"CPU": 8}, requested=2) == (2, "")  # what fits is kept as asked
    assert concurrency(cfg, {"CPU": 8}, requested=5)[0] == 3
    half = config.load("dcgan", overrides=["scaling.workers=1", "scaling.cpus_per_worker=0.5"])
    assert concurrency(half, {"CPU": 4}, requested=2) == (2, "")
    assert trial_cpus(half) == pytest.approx(1.51)


def test_best_recipe_is_a_fresh_run_of_the_best_values(tmp_path):
    base = config.load(
        "dcgan",
        overrides=["run.name=sweep", "run.resume=true", "run.init_from=/x/checkpoint_000001"],
    )
    recipe = best_recipe(base, {"dcgan.lr_g": 3e-4, "dcgan.loss": "hinge"})
    config.save(recipe, tmp_path / "best.yaml")
    loaded = config.load(recipe=tmp_path / "best.yaml")
    assert (loaded.params.lr_g, loaded.params.loss) == (3e-4, "hinge")
    assert (loaded.run.name, loaded.run.resume, loaded.run.init_from) == ("", False, "")


def test_error_summary_finds_the_cause_inside_ray_wrappers():
    wrapped = RuntimeError(
        "Training failed due to worker errors:\n[Rank 0 Error Snippet]:\n  File loop.py\n"
        "RuntimeError: fail_at_step=4: injected failure (testing aid)\n"
    )
    assert error_summary(wrapped) == "RuntimeError: fail_at_step=4: injected failure (testing aid)"
    assert error_summary(ValueError("plain")) == "ValueError: plain"


def test_tune_flags_map_onto_the_base_config():
    from genart.cli import build_parser
    from genart.cli.train import overrides

    argv = [
        "tune",
        "dcgan",
        "--workers-per-trial",
        "2",
        "--budget",
        "300",
        "--gpus-per-worker",
        "0.5",
        "--scheduler",
        "pbt",
        "--search",
        "grid",
    ]
    args = build_parser().parse_args(argv)
    assert {"scaling.workers=2", "train.steps=300", "scaling.gpus_per_worker=0.5"} <= set(
        overrides(args)
    )
    assert (args.scheduler, args.search, args.space, args.samples) == (
        "pbt",
        "grid",
        "builtin",
        None,
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"samples": -1}, r"samples .* must be >= 1, got -1"),  # Tune: -1 means unlimited
        ({"samples": 0}, r"samples .* must be >= 1, got 0"),
        ({"max_concurrent": -2}, "max_concurrent must be >= 0"),
    ],
)
def test_settings_refuse_trial_counts_tune_would_misread(settings, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**settings)
    assert Settings(samples=1, max_concurrent=0).max_concurrent == 0  # 0: as many as fit


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.stepz=50"], "unknown key 'train.stepz' for gatys; valid: train.steps"),
        (["train.seed=7"], "unknown key 'train.seed'"),
        (["data.size=999"], "unknown key 'data.size' for gatys; valid: data.uri"),
        (["model=dcgan"], "model is 'dcgan'"),
        (["scaling.workers=2"], "unknown sections"),
    ],
)
def test_gatys_sweeps_refuse_keys_they_would_ignore(overrides, message):
    raw = config.apply_overrides({"model": "gatys"}, ["data.uri=c.png", *overrides])
    with pytest.raises(ConfigError, match=message):
        optimisation_job("gatys", raw, ["s.png"], 256, "auto")


def test_gatys_sweeps_read_the_content_image_and_iterations():
    raw = config.apply_overrides({"model": "gatys"}, ["data.uri=c.png", "train.steps=50"])
    job = optimisation_job("gatys", raw, ["s.png"], 256, "auto")
    content, styles = job.inputs["content"], job.inputs["styles"]
    assert (content, styles, job.params.iterations) == ("c.png", ["s.png"], 50)


def test_schedulers_count_steps_and_pbt_perturbs_the_numeric_keys():
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    s = space.parse(
        "dcgan",
        {"dcgan.lr_g": {"loguniform": [1e-5, 1e-3]}, "dcgan.loss": {"choice": ["bce", "hinge"]}},
    )
    asha = scheduler("asha", budget=1000, interval=250, space=s)
    assert isinstance(asha, ASHAScheduler)
    assert asha._time_attr == "step"
    assert [milestone for milestone, _ in asha._brackets[0]._rungs] == [1000, 500, 250]
    pbt = scheduler("pbt", budget=1000, interval=250, space=s)
    assert isinstance(pbt, PopulationBasedTraining)
    assert set(pbt._hyperparam_mutations) == {"dcgan.lr_g"}
    with pytest.raises(ConfigError, match="PBT needs"):
        scheduler("pbt", 1000, 250, space.parse("dcgan", {"dcgan.loss": {"choice": ["bce"]}}))
    with pytest.raises(ConfigError, match="unknown scheduler"):
        scheduler("hyperband", 1000, 250, s)


def test_optuna_if_installed_falls_back_to_random_search_with_a_message(capsys):
    s = space.parse("dcgan", {"dcgan.lr_g": {"loguniform": [1e-5, 1e-3]}})
    found = searcher("optuna-if-installed", s, "eval_swd", "min")
    if importlib.util.find_spec("optuna") is None:
        assert found is None
        assert "optuna is not installed" in capsys.readouterr().out
    else:
        assert type(found).__name__ == "OptunaSearch"
    assert searcher("random", s, "eval_swd", "min") is None


def test_resume_reads_the_config_and_settings_the_sweep_started_with(tmp_path):
    started = config.load("dcgan", overrides=["dcgan.lr_d=0.001", "train.steps=300"])
    stored = {"config": started.to_dict(), "scheduler": "pbt", "metric": "eval_swd", "mode": "min"}
    (tmp_path / "sweep-a").mkdir()
    (tmp_path / "sweep-a" / SWEEP_FILE).write_text(yaml.safe_dump(stored))
    given = config.RunConfig(name="sweep-a", storage_path=str(tmp_path), resume=True)
    cfg, settings = stored_sweep(given, Settings(scheduler="asha", samples=9))
    assert (cfg.params.lr_d, cfg.train.steps, cfg.run.resume) == (0.001, 300, True)
    assert (settings.scheduler, settings.metric, settings.samples) == ("pbt", "eval_swd", 9)
    with pytest.raises(ConfigError, match="no sweep to resume"):
        stored_sweep(config.RunConfig(name="other", storage_path=str(tmp_path)), Settings())
