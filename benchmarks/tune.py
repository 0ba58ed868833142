"""Tune's own overhead: a sweep's wall time against the time its trials spend running.

overhead = wall / (sum of the trials' own run times / concurrency) - 1: the share of the sweep
spent on bookkeeping (trial actors, scheduling, result processing, experiment snapshots)
rather than inside trials. Ray's own bar for Tune is <= 20 %.

Two sweeps on one local Ray (4 logical CPUs):

* **bare Tune**: many short function trials that sleep and report (nothing else competes for
  the CPUs, so this isolates Tune's bookkeeping); a trial's own time is measured inside it.
  Once with a new trial process per trial (Tune's default, and what genart sweeps do), once
  with ``reuse_actors``.
* **genart sweep**: :func:`genart.tune.driver.sweep` of tiny DCGAN trials, each a whole Ray
  Train run; a trial's own time is Tune's ``time_total_s`` (Train's start-up included: it is the
  trial's work, not Tune's).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from genart import config
from genart.data.synthetic import generate
from genart.tune import driver, settings, space

CPUS = 4
BAR = 0.20


def sleeper(params: dict) -> None:
    """A trial that works (sleeps) for ``seconds`` in ``reports`` steps and reports each."""
    from ray import tune

    started = time.perf_counter()
    for step in range(1, params["reports"] + 1):
        time.sleep(params["seconds"] / params["reports"])
        tune.report({"step": step, "own_s": time.perf_counter() - started})


def bare_tune(
    trials: int, seconds: float, reports: int, concurrency: int, reuse: bool, storage: Path
) -> dict:
    """Wall time of ``trials`` sleeping trials against the sum of their own run times.

    ``reuse``: Tune's ``reuse_actors`` (one trial process per slot instead of one per trial).
    """
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(sleeper, {"CPU": CPUS / concurrency}),
        param_space={"seconds": seconds, "reports": reports},
        tune_config=tune.TuneConfig(
            num_samples=trials, max_concurrent_trials=concurrency, reuse_actors=reuse
        ),
        run_config=tune.RunConfig(name=f"bare-{reuse}", storage_path=str(storage), verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    own = sum(r.metrics["own_s"] for r in results)
    kind = "bare Tune, reused trial actors" if reuse else "bare Tune, an actor per trial"
    return row(kind, trials, concurrency, wall, own)


def genart_sweep(trials: int, steps: int, concurrency: int, storage: Path) -> dict:
    """Wall time of a DCGAN sweep (each trial a Ray Train run) against its trials' times."""
    data = generate("digits", storage / "digits", n=64, size=16, seed=0)
    smoke = Path(__file__).resolve().parents[1] / "jobs" / "dcgan-smoke.yaml"
    overrides = [f"data.uri={data}", f"train.steps={steps}", "train.sample_every=1000",
                 "train.checkpoint_every=1000", "scaling.workers=1", "run.name=genart",
                 # Half a logical CPU per worker: two trials, each with a CPU for its Ray Data
                 # tasks, fit the 4 CPUs (settings.concurrency).
                 "scaling.cpus_per_worker=0.5", f"run.storage_path={storage}"]  # fmt: skip
    cfg = config.load("dcgan", smoke, overrides)
    searched = space.parse("dcgan", {"dcgan.lr_g": {"loguniform": [1e-4, 1e-3]}})
    searching = settings.Settings(samples=trials, scheduler="fifo", max_concurrent=concurrency)
    report = driver.sweep(cfg, searched, searching)
    own = float(report.table["time_s"].sum())
    return row("genart sweep (DCGAN Train runs)", trials, concurrency, report.seconds, own)


def row(kind: str, trials: int, concurrency: int, wall: float, own: float) -> dict:
    ideal = own / concurrency
    overhead = wall / ideal - 1
    return {
        "sweep": kind,
        "trials": trials,
        "concurrency": concurrency,
        "wall_s": round(wall, 1),
        "trials_sum_s": round(own, 1),
        "ideal_s": round(ideal, 1),
        "overhead": round(overhead, 3),
        "within_bar": overhead <= BAR,
    }


def run(out_dir: Path, quick: bool) -> dict:
    """Both sweeps; prints a table and writes tune.json."""
    from benchmarks.common import print_table, write_json
    from benchmarks.ingest import local_ray

    bare = (16, 2.0, 4) if quick else (32, 5.0, 5)  # trials, seconds each, reports each
    dcgan = (4, 8) if quick else (8, 16)  # trials, steps each
    with local_ray(CPUS), tempfile.TemporaryDirectory() as tmp:
        rows = [
            bare_tune(*bare, concurrency=CPUS, reuse=False, storage=Path(tmp)),
            bare_tune(*bare, concurrency=CPUS, reuse=True, storage=Path(tmp)),
            # One worker per trial and a CPU for each trial's Ray Data (settings.concurrency).
            genart_sweep(*dcgan, concurrency=2, storage=Path(tmp)),
        ]
    print_table(rows)
    payload = {"quick": quick, "cpus": CPUS, "bar": BAR, "rows": rows}
    write_json("tune", payload, out_dir)
    return payload


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
