"""Start and resume sweeps: one for trained families, one for optimisation families, and the
Tune run (scheduler, searcher, run settings) they share.

A sweep of a trained family runs one Ray Train run per trial (:func:`sweep`); a sweep of an
optimisation family (Gatys, Deep Dream) one optimised image per trial
(:func:`sweep_optimisation`). Each builds a :class:`~genart.tune.settings.Plan` and hands it to
:func:`run`, which starts or resumes Tune and writes the report (:mod:`genart.tune.report`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
import time
from pathlib import Path

import yaml

from genart import config, registry, storage, tracking
from genart.config import Config, ConfigError
from genart.tune import report, trials
from genart.tune.settings import (
    DRIVER_CPU,
    SWEEP_FILE,
    OptimisationJob,
    Plan,
    Report,
    Settings,
    base_config,
    concurrency,
    objective,
    sweep_run,
)
from genart.tune.space import Space


def sweep(cfg: Config, space: Space, settings: Settings) -> Report:
    """Run (or, with ``cfg.run.resume``, continue) a sweep of ``space`` around ``cfg``.

    ``cfg.run`` names the sweep: ``name`` and ``storage_path`` place it; ``resume`` continues
    an interrupted one, with the base config and scheduler it started with (``sweep.yaml``),
    without rerunning finished trials; ``max_failures`` applies to each trial's Train run.
    ``train.steps`` is every trial's budget.
    """
    import ray
    from ray import tune

    from genart.compat.janitor import Janitor
    from genart.train.launch import init_ray

    if cfg.run.resume:
        cfg, settings = stored_sweep(cfg.run, settings)
    spec = registry.trained(cfg.model)
    metric, mode = objective(spec, settings, f"eval_{spec.metric}")
    base = base_config(cfg, settings.scheduler)
    init_ray(base.scaling.workers, base.scaling.cpus_per_worker)
    janitor = ray.remote(num_cpus=0)(Janitor).remote()
    relay = trials.Relay(checkpoints=settings.scheduler == "pbt", janitor=janitor)
    bound = tune.with_parameters(
        trials.train_trial, base=base.to_dict(), metric=metric, relay=relay
    )
    at_once, note = concurrency(base, ray.cluster_resources(), settings.max_concurrent)
    if note:
        print(note)
    plan = Plan(
        trainable=tune.with_resources(bound, {"CPU": DRIVER_CPU}),
        run=base.run,
        budget=base.train.steps,
        interval=base.train.eval_every,
        metric=metric,
        mode=mode,
        max_concurrent=at_once,
        write_recipe=lambda params, path: config.save(report.best_recipe(base, params), path),
        janitor=janitor,
        stored={
            "config": base.to_dict(),
            "scheduler": settings.scheduler,
            "pbt_sync": settings.pbt_sync,
            "metric": metric,
            "mode": mode,
        },
    )
    return run(plan, space, settings)


def sweep_optimisation(job: OptimisationJob, space: Space, settings: Settings) -> Report:
    """Tune an optimisation family's settings: one optimised image per trial (1 CPU each),
    scored by the family's metric under the job's base settings (the one fixed yardstick)."""
    from ray import tune

    from genart.train.launch import init_ray

    spec = job.spec
    if job.run.tracking_uri:
        raise ConfigError(
            f"MLflow tracking covers training runs and their sweeps; {spec.name} sweeps are "
            "not tracked: drop --tracking"
        )
    if settings.scheduler == "pbt":
        raise ConfigError(f"{spec.name} trials keep no checkpoints to exploit: use asha or fifo")
    if settings.metric not in ("", spec.metric) or settings.mode not in ("", spec.mode):
        better = "lower" if spec.mode == "min" else "higher"
        raise ConfigError(f"{spec.name} trials are scored by {spec.metric} ({better} is better)")
    job = dataclasses.replace(
        job,
        run=sweep_run(job.run, spec.name),
        inputs={name: _absolute(value) for name, value in job.inputs.items()},
    )
    interval = max(1, job.budget // 4)
    init_ray(1)
    bound = tune.with_parameters(trials.optimisation_trial, job=job, interval=interval)
    plan = Plan(
        trainable=tune.with_resources(bound, {"CPU": 1}),
        run=job.run,
        budget=job.budget,
        interval=interval,
        metric=spec.metric,
        mode=spec.mode,
        max_concurrent=settings.max_concurrent or None,
        write_recipe=lambda params, path: path.write_text(report.optimisation_recipe(job, params)),
    )
    return run(plan, space, settings)


def _absolute(value: str | list[str]) -> str | list[str]:
    """Inputs as absolute paths or URIs: Tune runs each trial in its own working folder."""
    if isinstance(value, list):
        return [storage.absolute(v) for v in value]
    return storage.absolute(value)


def run(plan: Plan, space: Space, settings: Settings) -> Report:
    """Start or resume the Tune run of ``plan`` and write its report."""
    import ray
    from ray import tune

    exp_uri = storage.join(plan.run.storage_path, plan.run.name)
    if plan.run.resume:
        where = storage.ray_storage(exp_uri)
        path, fs = where["storage_path"], where.get("storage_filesystem")
        if not tune.Tuner.can_restore(path, storage_filesystem=fs):
            raise ConfigError(f"no sweep to resume at {exp_uri}: pass its --name and --storage")
        tuner = tune.Tuner.restore(path, plan.trainable, storage_filesystem=fs)
    else:
        if storage.exists(exp_uri):
            raise ConfigError(f"sweep {exp_uri} exists: pass --resume, or choose another --name")
        tuner = tune.Tuner(
            plan.trainable,
            param_space=space.param_space(grid=settings.search == "grid"),
            tune_config=_tune_config(plan, space, settings),
            run_config=_run_config(plan.run, plan.budget, settings),
        )
        if plan.stored is not None:
            _write(exp_uri, {SWEEP_FILE: yaml.safe_dump(plan.stored, sort_keys=False)})
    tracked = _track(plan, exp_uri)
    started = time.perf_counter()
    results = tuner.fit()
    if plan.janitor is not None:  # the trials' processes are ending: release what they held
        ray.get(plan.janitor.drain.remote())
    summary = report.summarise(results, plan, exp_uri, time.perf_counter() - started)
    if tracked is not None:
        tracking.finish_sweep(tracked, summary.files, summary.best, plan.metric)
    return summary


def _track(plan: Plan, exp_uri: str) -> tracking.Record | None:
    """The sweep's parent MLflow run, started or (resuming) continued; None untracked.

    Its params are what ``sweep.yaml`` holds; each trial's Train run is a child run of it
    (:func:`genart.tune.trials.train_trial` finds it in the sweep's folder).
    """
    if not plan.run.tracking_uri or plan.stored is None:
        return None
    model = plan.stored["config"]["model"]
    tags = {"genart.model": model, "genart.sweep": plan.run.name}
    experiment = tracking.experiment_name(model)
    return tracking.open_run(
        exp_uri, plan.run.tracking_uri, plan.run.name, experiment, plan.stored, tags
    )


def stored_sweep(run_cfg: config.RunConfig, settings: Settings) -> tuple[Config, Settings]:
    """The base config and trial settings a sweep started with (its ``sweep.yaml``).

    A resumed sweep trains exactly what it started training: only ``--name`` and ``--storage``
    are needed to find it; other flags given with ``--resume`` are ignored.
    """
    uri = storage.join(storage.absolute(run_cfg.storage_path), run_cfg.name, SWEEP_FILE)
    if not run_cfg.name or not storage.exists(uri):
        raise ConfigError(f"no sweep to resume at {uri}: pass its --name and --storage")
    fs, path = storage.filesystem(uri)
    with fs.open_input_stream(path) as f:
        stored = yaml.safe_load(f.read())
    cfg = Config.from_dict(stored["config"])
    cfg.run.resume = True
    trial = {key: stored[key] for key in ("scheduler", "metric", "mode")}
    trial["pbt_sync"] = stored.get("pbt_sync", False)  # absent in sweeps started before it existed
    return cfg, dataclasses.replace(settings, **trial)


def _write(uri: str, files: dict[str, str]) -> None:
    """Write text files into the folder ``uri`` (local or remote)."""
    staging = Path(tempfile.mkdtemp(prefix="genart-sweep-"))
    for name, text in files.items():
        (staging / name).write_text(text)
    storage.upload_dir(staging, uri)


def _tune_config(plan: Plan, space: Space, settings: Settings):
    from ray import tune

    return tune.TuneConfig(
        metric=plan.metric,
        mode=plan.mode,
        scheduler=scheduler(
            settings.scheduler, plan.budget, plan.interval, space, sync=settings.pbt_sync
        ),
        search_alg=searcher(settings.search, space, plan.metric, plan.mode),
        num_samples=settings.samples or (1 if grid_search(space, settings) else 4),
        max_concurrent_trials=plan.max_concurrent,
        trial_dirname_creator=trial_folder,
    )


def grid_search(space: Space, settings: Settings) -> bool:
    """Whether trials come from a grid (``--search grid`` or ``{grid: ...}`` keys)."""
    return settings.search == "grid" or space.has_grid


def trial_folder(trial) -> str:
    """Trial folders named by trial id alone: short, and the key of the results table."""
    return trial.trial_id


def scheduler(name: str, budget: int, interval: int, space: Space, sync: bool = False):
    """Tune's trial scheduler, in steps: trials score every ``interval`` steps up to ``budget``.

    ``sync``: synchronous PBT (all trials compared at the same step).
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if name == "asha":
        # Rungs at interval * 2^k steps: every rung has a fresh score.
        return ASHAScheduler(
            time_attr="step", max_t=budget, grace_period=interval, reduction_factor=2
        )
    if name == "pbt":
        mutations = space.mutations()
        if not mutations:
            raise ConfigError("PBT needs at least one uniform/loguniform/randint key to perturb")
        return PopulationBasedTraining(
            time_attr="step",
            perturbation_interval=interval,
            hyperparam_mutations=mutations,
            synch=sync,
        )
    if name == "fifo":
        return FIFOScheduler()
    raise ConfigError(f"unknown scheduler '{name}'; valid: asha, pbt, fifo")


def searcher(name: str, space: Space, metric: str, mode: str):
    """None (Tune's random/grid variant generator) or an Optuna searcher."""
    if name in ("random", "grid"):
        return None
    if name != "optuna-if-installed":
        raise ConfigError(f"unknown search '{name}'; valid: random, grid, optuna-if-installed")
    if importlib.util.find_spec("optuna") is None:
        print("genart tune: optuna is not installed (pip install optuna): using random search")
        return None
    if space.has_grid:
        raise ConfigError("optuna search takes no {grid: ...} keys; use {choice: ...}")
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metric, mode=mode)


def _run_config(run_cfg: config.RunConfig, budget: int, settings: Settings):
    from ray import tune

    return tune.RunConfig(
        name=run_cfg.name,
        **storage.ray_storage(run_cfg.storage_path),
        # A failed trial is reported as errored and the sweep goes on; a Train run has already
        # retried run.max_failures times from its checkpoints.
        failure_config=tune.FailureConfig(max_failures=0),
        # Only PBT sweeps report checkpoints to Tune (one per evaluation, ~4 per trial). Keep
        # them all: an exploited trial may restart after its donor has reported several more.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        callbacks=settings.callbacks,
        # A trial ends at its budget, whatever the scheduler: PBT must not exploit on a final
        # report (the trial would train its last steps again from another checkpoint).
        stop={"step": budget},
        verbose=1,
    )
