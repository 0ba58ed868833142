"""Tune sweeps end to end on the local Ray: ASHA, a failing trial, resume, PBT exploits, Gatys
and Deep Dream.

Every DCGAN trial is a whole Ray Train run (10-20 s fixed cost each, more on a loaded
machine), so the checks share two sweeps: an ASHA sweep interrupted after its first finished
trial and resumed, and a two-trial PBT sweep.
"""

import argparse
import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ray import tune

from genart import config, registry
from genart.catalogue import Catalogue
from genart.cli import main
from genart.cli import tune as tune_cli
from genart.compat.janitor import Janitor
from genart.data import synthetic
from genart.train import checkpoint
from genart.train.launch import fit
from genart.tune import driver, settings, space

pytestmark = pytest.mark.ray

SMOKE = Path(__file__).resolve().parents[2] / "jobs" / "dcgan-smoke.yaml"  # tiny DCGAN
TINY = [
    "train.eval_every=4",
    "scaling.workers=1",
    # Half a logical CPU per worker: two trials' workers leave whole CPUs for their Ray Data
    # tasks even while a restarting trial's placement group is still reserved.
    "scaling.cpus_per_worker=0.5",
]
# Trials started and finished, by trial id, as seen by the callbacks below. Module globals: a
# resumed Tuner runs unpickled copies of the callbacks it was started with.
STARTED: list[str] = []
COMPLETED: list[str] = []


class Record(tune.Callback):
    """Records trial starts and completions; stops the sweep (as Ctrl+C would) once, after
    the first completed trial."""

    def on_trial_start(self, iteration, trials, trial, **info):
        STARTED.append(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        COMPLETED.append(trial.trial_id)
        if len(COMPLETED) == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's interrupt: save state and return


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    # 64 images, batch 8: 8 batches per epoch on one worker.
    return synthetic.generate("digits", tmp_path_factory.mktemp("data") / "digits", n=64, size=16)


def base(digits, storage, name, steps, *extra):
    overrides = [
        *TINY,
        f"data.uri={digits}",
        f"train.steps={steps}",
        f"run.name={name}",
        f"run.storage_path={storage}",
        *extra,
    ]
    return config.load("dcgan", SMOKE, overrides)


@pytest.fixture(scope="module")
def asha(ray_local, digits, tmp_path_factory):
    """An ASHA sweep of 4 trials (one fails at step 2), interrupted, then resumed."""
    storage = tmp_path_factory.mktemp("sweeps")
    searched = space.parse(
        "dcgan",
        {
            "dcgan.lr_g": {"loguniform": [1e-4, 1e-3]},
            # Only the trial with fail_at_step=2 fails (the others never reach their step).
            "train.fail_at_step": {"grid": [-1, 100, 200, 2]},
        },
    )
    searching = settings.Settings(
        samples=1, scheduler="asha", max_concurrent=2, callbacks=[Record()]
    )
    cfg = base(digits, storage, "asha", steps=8)
    first = driver.sweep(cfg, searched, searching)
    started_before = list(STARTED)
    cfg.run.resume = True
    resumed = driver.sweep(cfg, searched, searching)
    return {
        "first": first,
        "resumed": resumed,
        "started_before": started_before,
        "dir": storage / "asha",
    }


def test_interrupt_leaves_unfinished_trials(asha):
    assert asha["first"].unfinished > 0
    assert COMPLETED[0] in set(asha["first"].table["trial"])
    assert asha["resumed"].unfinished == 0


def test_resume_runs_the_rest_without_rerunning_finished_trials(asha):
    finished_first = COMPLETED[0]
    restarted = STARTED[len(asha["started_before"]) :]
    assert restarted, "the resumed sweep started no trial"
    assert finished_first not in restarted
    table = asha["resumed"].table
    assert len(table) == 4
    assert set(table["status"]) <= {"done", "stopped", "error"}


def test_failing_trial_is_errored_and_the_others_finish(asha):
    table = asha["resumed"].table
    failed = table[table["train.fail_at_step"] == 2]
    assert list(failed["status"]) == ["error"]
    assert "fail_at_step=2" in failed["error"].iloc[0]
    others = table[table["train.fail_at_step"] != 2]
    assert (others["status"] != "error").all()
    assert (others["eval_swd"] > 0).all()
    assert (others["status"] == "done").any()  # ASHA lets the best run to the budget


def test_sweep_writes_table_plot_recipe_and_samples(asha):
    report, folder = asha["resumed"], asha["dir"]
    csv = pd.read_csv(folder / "results.csv")
    parquet = pd.read_parquet(folder / "results.parquet")
    assert len(csv) == len(parquet) == 4
    assert {"trial", "status", "eval_swd", "step", "time_s", "dcgan.lr_g"} <= set(csv.columns)
    assert report.best["trial"] == csv.loc[csv["eval_swd"].idxmin(), "trial"]
    for name in ("metric.png", "best_samples.png", "best.yaml"):
        assert (folder / name).stat().st_size > 0, name
    assert report.files["best_recipe"] == str(folder / "best.yaml")


def test_best_recipe_trains_unchanged(asha, tmp_path):
    best = config.load(recipe=asha["dir"] / "best.yaml")
    assert best.params.lr_g == pytest.approx(asha["resumed"].best["dcgan.lr_g"])
    assert best.train.fail_at_step != 2
    best.train.steps = 2  # a couple of steps of the same recipe, in a fresh folder
    best.run.storage_path = str(tmp_path)
    result = fit(best)
    assert result.error is None
    assert result.metrics["step"] == 2


def test_the_best_trial_is_published_to_a_catalogue(asha, tmp_path):
    report = asha["resumed"]
    args = argparse.Namespace(catalogue=str(tmp_path / "cat"), publish_as=None, replace=False)
    tune_cli.publish_best(report, args)
    entry = Catalogue(str(tmp_path / "cat")).entry("asha")  # named after the sweep
    assert entry.manifest["source"]["run"] == report.best_run
    assert report.best_run == str(asha["dir"] / "runs" / report.best["run"])
    assert entry.manifest["scores"]["swd"] == pytest.approx(report.best["eval_swd"], rel=1e-4)


def init_from(run: Path) -> Path:
    return Path(yaml.safe_load((run / "config.yaml").read_text())["run"]["init_from"])


def logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


def donor_history(run: Path) -> list[dict]:
    return json.loads((init_from(run) / "history.json").read_text())


def test_pbt_exploit_restores_another_trials_checkpoint(ray_local, digits, tmp_path):
    # One trial is hopeless (lr_g 0.5 saturates G) so that the other is always the better one:
    # at the step-4 comparison the hopeless one exploits it.
    searched = space.parse(
        "dcgan",
        {
            "dcgan.lr_g": {"grid": [2e-4, 0.5]},
            "dcgan.lr_d": {"loguniform": [1e-4, 1e-3]},  # what PBT perturbs
        },
    )
    # Synchronous PBT: asynchronous PBT acts on reports in the order they reach it, and Ray
    # Train's workers do not wait for Tune to take a report, so with seconds-long runs one
    # trial's reports can all arrive before the other's first: nothing to compare, no exploit
    # (seen in about half of the CI runs). Synchronous PBT compares both trials at step 4.
    cfg = base(digits, tmp_path, "pbt", 8, "train.eval_every=4")
    searching = settings.Settings(scheduler="pbt", pbt_sync=True, max_concurrent=2)
    report = driver.sweep(cfg, searched, searching)
    assert list(report.table["status"]) == ["done", "done"]
    runs = tmp_path / "pbt" / settings.RUNS
    # Train runs started from another trial's Tune checkpoint are exploits (a trial that PBT
    # merely paused restarts from its own).
    exploits = [
        run
        for run in runs.iterdir()
        if "-" in run.name and init_from(run).parent.name != run.name.split("-")[0]
    ]
    assert exploits, f"no exploit: {sorted(r.name for r in runs.iterdir())}"
    # The new run took the donor's weights and history at the donor's step, then went on ...
    progressed = [run for run in exploits if len(logged(run)) > len(donor_history(run))]
    assert progressed, "no exploiting run trained past its donor's step"
    run = progressed[0]
    donor = init_from(run)
    donor_step = checkpoint.verify(donor)["step"]
    history, inherited = logged(run), donor_history(run)
    assert history[: len(inherited)] == inherited
    assert history[len(inherited)]["step"] == donor_step + 2
    # ... with its own, perturbed learning rate, not the donor's.
    state, own_cfg, _ = checkpoint.load(checkpoint.resolve(str(run)))
    _, donor_cfg, _ = checkpoint.load(donor)
    assert state["step"] > donor_step
    assert state["opts"]["D"]["param_groups"][0]["lr"] == pytest.approx(own_cfg.params.lr_d)
    assert own_cfg.params.lr_d != pytest.approx(donor_cfg.params.lr_d)


def test_more_trials_at_once_than_the_cluster_holds_run_one_after_another(
    ray_local, digits, tmp_path, capsys
):
    # 1.5 CPUs a worker: two trials' workers would leave 0.98 of the 4 CPUs, less than one
    # Ray Data task takes, and both would wait for data forever (a 2-core machine's hang).
    cfg = base(digits, tmp_path, "crowded", 4, "scaling.cpus_per_worker=1.5",
               "data.first_batch_timeout_s=120")  # fmt: skip
    searched = space.parse("dcgan", {"dcgan.lr_g": {"grid": [2e-4, 4e-4]}})
    searching = settings.Settings(scheduler="fifo", max_concurrent=2)
    report = driver.sweep(cfg, searched, searching)
    assert list(report.table["status"]) == ["done", "done"]
    lowered = [line for line in capsys.readouterr().out.splitlines() if "--max-concurrent" in line]
    assert lowered == [
        "genart tune: 1 trial at a time, not 2 (--max-concurrent): a trial needs 2.51 CPUs "
        "(1.5 for its workers, 1 for its Ray Data tasks, 0.01 for Tune); the cluster has 4 CPUs"
    ]


def test_a_trial_whose_data_gets_no_cpu_fails_in_one_line_instead_of_hanging(
    ray_local, digits, tmp_path
):
    from ray.util.placement_group import placement_group, remove_placement_group

    # Another job holds 3 of the 4 CPUs: the trial's worker (0.5) starts, its data never does.
    other_job = placement_group([{"CPU": 3}])
    ray_local.get(other_job.ready())
    try:
        cfg = base(digits, tmp_path, "starved", 4, "data.first_batch_timeout_s=5")
        searched = space.parse("dcgan", {"dcgan.lr_g": {"grid": [2e-4]}})
        report = driver.sweep(cfg, searched, settings.Settings(scheduler="fifo"))
    finally:
        remove_placement_group(other_job)
    assert list(report.table["status"]) == ["error"]
    assert report.table["error"].iloc[0] == (
        "genart.train.loop.DataTimeoutError: no training batch within 5 s of the epoch's start: "
        "most likely Ray Data found no free CPU for its decode tasks (workers or other jobs "
        "hold them all); free CPUs, run fewer trials or workers at once, or raise "
        "data.first_batch_timeout_s"
    )


def test_gatys_sweep_from_the_command_line(ray_local, tmp_path):
    images = synthetic.generate("styles", tmp_path / "styles", n=1, size=32)
    content = next((images / "content").iterdir())
    style = next((images / "style").iterdir())
    searched = tmp_path / "space.yaml"
    searched.write_text("gatys.style_weight: {grid: [1.0e+3, 1.0e+6]}\n")
    argv = [
        "tune",
        "gatys",
        "--data",
        str(content),
        "--style",
        str(style),
        "--size",
        "32",
        "--vgg-weights",
        "random",
        "--space",
        str(searched),
        "--samples",
        "1",
        "--scheduler",
        "fifo",
        "--budget",
        "4",
        "--name",
        "gatys",
        "--storage",
        str(tmp_path / "sweeps"),
        "--set",
        "gatys.content_layers=[relu2_1]",
        "--set",
        "gatys.style_layers=[relu1_1,relu2_1]",
    ]
    assert main(argv) == 0
    folder = tmp_path / "sweeps" / "gatys"
    table = pd.read_csv(folder / "results.csv")
    assert list(table["status"]) == ["done", "done"]
    assert list(table["step"]) == [4, 4]
    metric = registry.get("gatys").metric
    assert (table[metric] > 0).all()
    recipe = (folder / "best.yaml").read_text()
    assert recipe.startswith("# genart stylize gatys --content ")
    best = table.loc[table[metric].idxmin(), "gatys.style_weight"]
    assert yaml.safe_load(recipe)["gatys"]["style_weight"] == best
    assert (folder / "best_samples.png").stat().st_size > 0


def test_dream_sweep_of_the_builtin_space_from_the_command_line(ray_local, tmp_path):
    images = synthetic.generate("styles", tmp_path / "styles", n=1, size=32)
    image = next((images / "content").iterdir())
    argv = ["tune", "dream", "--data", str(image), "--space", "builtin", "--size", "32",
            "--vgg-weights", "random", "--samples", "2", "--scheduler", "fifo", "--budget", "2",
            "--name", "dream", "--storage", str(tmp_path / "sweeps"),
            "--set", "dream.layers=[relu2_2]", "--set", "dream.octaves=2"]  # fmt: skip
    assert main(argv) == 0
    folder = tmp_path / "sweeps" / "dream"
    table = pd.read_csv(folder / "results.csv")
    assert list(table["status"]) == ["done", "done"]
    assert list(table["step"]) == [2, 2]
    assert (table["objective"] > 0).all()
    recipe = (folder / "best.yaml").read_text()
    assert recipe.startswith("# genart dream --input ")
    best = table.loc[table["objective"].idxmax(), "dream.step_size"]
    assert yaml.safe_load(recipe)["dream"]["step_size"] == pytest.approx(best)
    assert (folder / "best_samples.png").stat().st_size > 0


def test_janitor_removes_the_placement_group_of_a_dead_trial(ray_local):
    from ray.util.placement_group import placement_group, placement_group_table

    class Idle:  # stands in for a trial's process (defined here: pickled by value)
        pass

    trial = ray_local.remote(num_cpus=0)(Idle).remote()
    group = placement_group([{"CPU": 0.01}])
    ray_local.get(group.ready())
    janitor = ray_local.remote(num_cpus=0)(Janitor).remote()
    ray_local.get(janitor.watch.remote(trial, group))
    assert ray_local.get(janitor.collect.remote()) == 1  # alive: its group stays
    assert placement_group_table(group)["state"] == "CREATED"
    ray_local.kill(trial)
    assert ray_local.get(janitor.drain.remote(timeout_s=30)) == 0
    assert placement_group_table(group)["state"] == "REMOVED"
