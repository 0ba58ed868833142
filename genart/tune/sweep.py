"""Ray Tune sweeps: every trial a whole Ray Train run of the one loop (or a Gatys optimisation).

A trial is a small Tune function (0.01 CPU) that builds its config from the base config and
the sampled values, then calls :func:`genart.train.launch.fit`: Ray Train places the trial's
workers as one placement group and runs ``train_loop_per_worker``. The loop reports the model's
quality metric (``eval_<spec.metric>``) every ``train.eval_every`` steps and at the end; a Ray
Train callback relays those reports to Tune, which is what ASHA and PBT act on.

Why not ``ray.tune.integration.ray_train.TuneReportCallback``: it relays metrics and the
checkpoint's *path* only, so Tune never holds a checkpoint and PBT skips every exploit ("no
checkpoint for trial ..."). Under PBT the relay here reports each Train checkpoint to Tune
(Tune copies it into the trial's folder). An exploited trial restarts with another trial's
checkpoint from ``tune.get_checkpoint()`` and starts a new Train run with ``run.init_from``
pointing at it: weights, optimizer moments, step and RNG come from the checkpoint, the
(perturbed) hyper-parameters from the trial's config.

Gatys style transfer optimises one image and trains nothing, so its trials run
``gatys.stylize`` itself (1 CPU each). Its losses depend on the weights being tuned, so every
trial is scored by the *reference objective*: the base config's weighted loss of the trial's
image (``reference_loss``).

Layout of ``<storage>/<name>/``: Tune's trial folders and experiment state, and ``sweep.yaml``
(the base config and scheduler): what ``--resume`` restores; ``runs/<trial id>[-k]/`` each
trial's Train run (``-k``: its k-th start from a Tune checkpoint) or Gatys image; and the
report: ``results.csv``, ``results.parquet``, ``best.yaml`` (a recipe ``genart train --config``
accepts), ``metric.png`` and ``best_samples.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from genart import config, registry, storage
from genart.config import Config, ConfigError
from genart.train import checkpoint
from genart.tune.space import Space, with_values

DRIVER_CPU = 0.01  # the Tune function only waits on its Train run; Tune rejects 0 CPUs
SWEEP_FILE = "sweep.yaml"  # base config and trial settings, written when a sweep starts
RUNS = "runs"  # sub-folder of a sweep holding each trial's Train run (or Gatys image)
GATYS_METRIC = "reference_loss"
Scheduler = Literal["asha", "pbt", "fifo"]
Search = Literal["random", "grid", "optuna-if-installed"]


@dataclass
class Settings:
    """How a sweep searches (the base config says what each trial trains)."""

    samples: int | None = None  # trials, or repetitions of a grid; None: 1 with a grid, else 4
    scheduler: Scheduler = "asha"
    search: Search = "random"
    max_concurrent: int = 0  # 0: as many trials as the cluster's CPUs (and GPUs) hold
    metric: str = ""  # default: eval_<the model's metric> (registry)
    mode: str = ""  # min | max; default: the model's
    # PBT compares trials at the same step (each perturbation then pauses and restarts every
    # trial from its checkpoint) instead of each trial's newest score against the others'.
    pbt_sync: bool = False
    # Extra ray.tune.Callback objects (a resumed sweep keeps those it started with).
    callbacks: list = field(default_factory=list)

    def __post_init__(self):
        # Checked here, before Ray starts: Tune reads a negative sample count as "unlimited".
        if self.samples is not None and self.samples < 1:
            raise ConfigError(
                f"samples (trials, or grid repetitions) must be >= 1, got {self.samples}"
            )
        if self.max_concurrent < 0:
            raise ConfigError(
                f"max_concurrent must be >= 0 (0: as many trials as the cluster holds), "
                f"got {self.max_concurrent}"
            )


@dataclass
class Report:
    """What a finished sweep leaves: the table, the best trial and the files written."""

    table: Any  # pandas DataFrame, one row per trial
    best: dict[str, Any] | None  # the best trial's row, None if every trial failed
    files: dict[str, str]
    seconds: float  # wall time of the Tune run
    unfinished: int  # trials neither finished nor failed (an interrupted sweep): --resume


@dataclass
class Plan:
    """What one kind of sweep hands the shared Tune machinery."""

    trainable: Any  # the Tune function with its resources and fixed arguments bound
    run: config.RunConfig  # the sweep's name, absolute storage path and resume flag
    budget: int  # steps of a trial that runs to the end
    interval: int  # steps between two scores (ASHA rungs, PBT perturbations)
    metric: str
    mode: str
    max_concurrent: int | None  # None: as many as Tune can place
    write_recipe: Callable[[dict[str, Any], Path], None]  # (best trial's params, best.yaml)
    stored: dict[str, Any] | None = None  # written to sweep.yaml: what --resume rebuilds from
    janitor: Any = None  # Janitor actor of a sweep of Train runs


@dataclass
class GatysJob:
    """A Gatys sweep: the images and fixed settings around the tuned hyper-parameters."""

    content: str  # content image (path or URI)
    styles: list[str]  # style images
    params: Any  # GatysConfig: every trial's starting point and the reference objective
    run: config.RunConfig = field(default_factory=config.RunConfig)
    size: int = 256  # long side of the content image
    vgg_weights: str = "auto"


def gatys_job(raw: dict[str, Any], styles: list[str], size: int, vgg_weights: str) -> GatysJob:
    """A Gatys sweep from a raw config dict (recipe + ``--set``): ``gatys`` holds the base
    settings, ``data.uri`` the content image, ``train.steps`` the iterations per scale, and
    ``run`` the sweep's name, storage and resume flag."""
    from genart.models.gatys import GatysConfig

    _check_gatys_keys(raw)
    params = config.build(GatysConfig, raw.get("gatys") or {}, "gatys")
    steps = (raw.get("train") or {}).get("steps")
    if steps is not None:
        params.iterations = config.coerce(steps, int, "train.steps")
    content = (raw.get("data") or {}).get("uri")
    if not content or not styles:
        raise ConfigError("gatys sweeps need a content image (--data) and --style images")
    run_cfg = config.build(config.RunConfig, raw.get("run") or {}, "run")
    return GatysJob(str(content), list(styles), params, run_cfg, size, vgg_weights)


# The only train and data keys a Gatys sweep reads: it optimises an image and trains nothing.
GATYS_KEYS = {"train": {"steps"}, "data": {"uri"}}


def _check_gatys_keys(raw: dict[str, Any]) -> None:
    """ConfigError naming the first key of ``raw`` a Gatys sweep would otherwise ignore."""
    model = raw.get("model") or "gatys"
    if model != "gatys":
        raise ConfigError(f"model is {model!r}: a gatys sweep takes a gatys recipe")
    allowed = {"model", "gatys", "run", *GATYS_KEYS}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"unknown sections {sorted(unknown)} for gatys; valid: {sorted(allowed)}")
    for section, keys in GATYS_KEYS.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"'{section}' must be a mapping, got {type(values).__name__}")
        ignored = sorted(set(values) - keys)
        if ignored:
            valid = ", ".join(f"{section}.{key}" for key in sorted(keys))
            raise ConfigError(f"unknown key '{section}.{ignored[0]}' for gatys; valid: {valid}")


def sweep(cfg: Config, space: Space, settings: Settings) -> Report:
    """Run (or, with ``cfg.run.resume``, continue) a sweep of ``space`` around ``cfg``.

    ``cfg.run`` names the sweep: ``name`` and ``storage_path`` place it; ``resume`` continues
    an interrupted one, with the base config and scheduler it started with (``sweep.yaml``),
    without rerunning finished trials; ``max_failures`` applies to each trial's Train run.
    ``train.steps`` is every trial's budget.
    """
    import ray
    from ray import tune

    from genart.train.launch import init_ray

    if cfg.run.resume:
        cfg, settings = stored_sweep(cfg.run, settings)
    metric, mode = _objective(cfg.model, settings)
    base = base_config(cfg, settings.scheduler)
    init_ray(base.scaling.workers, base.scaling.cpus_per_worker)
    janitor = ray.remote(num_cpus=0)(Janitor).remote()
    relay = Relay(checkpoints=settings.scheduler == "pbt", janitor=janitor)
    bound = tune.with_parameters(train_trial, base=base.to_dict(), metric=metric, relay=relay)
    plan = Plan(
        trainable=tune.with_resources(bound, {"CPU": DRIVER_CPU}),
        run=base.run,
        budget=base.train.steps,
        interval=base.train.eval_every,
        metric=metric,
        mode=mode,
        max_concurrent=settings.max_concurrent or max_concurrent(base, ray.cluster_resources()),
        write_recipe=lambda params, path: config.save(best_recipe(base, params), path),
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


def sweep_gatys(job: GatysJob, space: Space, settings: Settings) -> Report:
    """Tune Gatys et al.'s optimisation itself: one stylised image per trial."""
    from ray import tune

    from genart.train.launch import init_ray

    if settings.scheduler == "pbt":
        raise ConfigError("gatys trials keep no checkpoints to exploit: use asha or fifo")
    if settings.metric not in ("", GATYS_METRIC) or settings.mode not in ("", "min"):
        raise ConfigError(f"gatys trials are scored by {GATYS_METRIC} (lower is better)")
    job = dataclasses.replace(
        job,
        run=_sweep_run(job.run, "gatys"),
        content=storage.absolute(job.content),
        styles=[storage.absolute(s) for s in job.styles],
    )
    budget = job.params.iterations * job.params.scales
    interval = max(1, budget // 4)
    init_ray(1)
    bound = tune.with_parameters(gatys_trial, job=job, interval=interval, budget=budget)
    plan = Plan(
        trainable=tune.with_resources(bound, {"CPU": 1}),
        run=job.run,
        budget=budget,
        interval=interval,
        metric=GATYS_METRIC,
        mode="min",
        max_concurrent=settings.max_concurrent or None,
        write_recipe=lambda params, path: path.write_text(gatys_recipe(job, params)),
    )
    return run(plan, space, settings)


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
    started = time.perf_counter()
    results = tuner.fit()
    if plan.janitor is not None:  # the trials' processes are ending: release what they held
        ray.get(plan.janitor.drain.remote())
    return summarise(results, plan, exp_uri, time.perf_counter() - started)


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


def _objective(model: str, settings: Settings) -> tuple[str, str]:
    spec = registry.get(model)
    mode = settings.mode or spec.mode
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be min or max, got {mode!r}")
    return settings.metric or f"eval_{spec.metric}", mode


def _sweep_run(run_cfg: config.RunConfig, model: str) -> config.RunConfig:
    """The sweep's run settings with a default name and an absolute storage path."""
    name = run_cfg.name or f"tune-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    return dataclasses.replace(
        run_cfg, name=name, storage_path=storage.absolute(run_cfg.storage_path)
    )


def base_config(cfg: Config, scheduler: str) -> Config:
    """The config every trial starts from, with the sweep's own run settings filled in.

    Pure (no Ray): every interval the scheduler needs is checked here, before Ray starts.
    """
    cfg = Config.from_dict(cfg.to_dict())  # a copy: the caller's config stays as given
    cfg.run = _sweep_run(cfg.run, cfg.model)
    # Tune runs each trial in its own working folder: relative data paths would break there.
    for key in ("uri", "uri_b"):
        value = getattr(cfg.data, key)
        if value:
            setattr(cfg.data, key, storage.absolute(value))
    t = cfg.train
    t.eval_every = t.eval_every or eval_interval(t.steps, t.log_every)
    check_eval_every(t, scheduler)
    if scheduler == "pbt":
        # PBT copies the checkpoint reported with the score it compares.
        t.checkpoint_every = t.eval_every
    return cfg


def eval_interval(steps: int, log_every: int) -> int:
    """About four evaluations per trial, on report steps (multiples of ``log_every``), and
    never past the budget: a budget shorter than one report interval is scored at its end."""
    return min(steps, max(log_every, round(steps / 4 / log_every) * log_every))


def check_eval_every(train: config.TrainConfig, scheduler: str) -> None:
    """ConfigError unless trials score every ``train.eval_every`` steps within their budget.

    The scores are what ASHA's rungs and PBT's perturbations act on: an interval past the
    budget makes Ray refuse ASHA (once Ray has started), and PBT never perturbs a trial.
    """
    every, steps, log_every = train.eval_every, train.steps, train.log_every
    if every > steps:
        raise ConfigError(
            f"train.eval_every ({every}) exceeds the budget train.steps ({steps}): lower it, "
            "or raise --budget"
        )
    if every < steps and every % log_every:  # the loop always scores at its last step
        raise ConfigError(
            f"train.eval_every ({every}) must be a multiple of train.log_every "
            f"({log_every}) or train.steps ({steps}): the loop evaluates at its reports"
        )
    if scheduler == "pbt" and every == steps:
        raise ConfigError(
            f"pbt perturbs trials at their scores before train.steps ({steps}), but trials "
            f"score every {every} steps: raise --budget, or lower train.eval_every (a multiple "
            f"of train.log_every, {log_every})"
        )


def max_concurrent(cfg: Config, resources: dict[str, float]) -> int:
    """How many trials' worker groups fit at once, leaving a CPU for Ray Data.

    A Ray Data task takes a whole CPU: with less left beside the workers, training waits for
    data forever, so a cluster too small for even one trial is an error.
    """
    s = cfg.scaling
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    per_trial = s.workers * s.cpus_per_worker + DRIVER_CPU
    fits = (cpus - 1) // per_trial
    if s.gpus_per_worker:
        fits = min(fits, gpus // (s.workers * s.gpus_per_worker))
    if fits < 1:
        raise ConfigError(
            f"a trial needs {per_trial:g} CPUs and {s.workers * s.gpus_per_worker:g} GPUs, plus "
            f"a CPU for Ray Data; the cluster has {cpus:g} CPUs and {gpus:g} GPUs: lower "
            "--workers-per-trial or scaling.cpus_per_worker"
        )
    return int(fits)


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


# --- the trials ------------------------------------------------------------------------------


@dataclass
class Relay:
    """How a trial relays its Train run to Tune."""

    checkpoints: bool  # report each scored checkpoint to Tune too (what PBT exploits)
    janitor: Any  # handle of the sweep's Janitor actor
    extra: dict = field(default_factory=dict)  # added to every report


def train_trial(params: dict, base: dict, metric: str, relay: Relay) -> None:
    """Tune function: one Ray Train run of ``base`` with the sampled ``params`` set.

    Only the reports that carry ``metric`` reach Tune (what its schedulers act on); the
    others stay in the Train run's own metrics log and TensorBoard.
    """
    from ray import tune

    raw = with_values(base, params)
    trial = tune.get_context().get_trial_id()
    runs = storage.join(base["run"]["storage_path"], base["run"]["name"], RUNS)
    start = tune.get_checkpoint()  # set after a PBT exploit, or when a PBT sweep resumes
    raw["run"] = {
        **raw["run"],
        "storage_path": runs,
        "name": _run_name(runs, trial, fresh=start is not None),
        "resume": True,  # a restarted trial without a Tune checkpoint continues its own run
        "init_from": _uri(start) if start is not None else "",
    }
    cfg = Config.from_dict(raw)
    finished = final_scores(cfg, metric)
    if finished is not None:  # the run ended before an interruption, its last report did not
        tune.report({**finished, "run": cfg.run.name})
        return
    _fit_and_relay(cfg, metric, dataclasses.replace(relay, extra={"run": cfg.run.name}))


def final_scores(cfg: Config, metric: str) -> dict[str, Any] | None:
    """The last scored history entry of a Train run that already reached ``train.steps``."""
    latest = checkpoint.latest_complete(storage.join(cfg.run.storage_path, cfg.run.name))
    if latest is None or checkpoint.verify(latest)["step"] < cfg.train.steps:
        return None
    scored = [h for h in json.loads((latest / "history.json").read_text()) if metric in h]
    return scored[-1] if scored and scored[-1]["step"] >= cfg.train.steps else None


def _run_name(runs: str, trial: str, fresh: bool) -> str:
    """``trial``, or ``trial-k`` for the k-th start from a Tune checkpoint (a new Train run)."""
    if not fresh:
        return trial
    taken = {d for d in storage.list_dirs(runs) if d == trial or d.startswith(f"{trial}-")}
    return f"{trial}-{len(taken)}"


def _uri(found) -> str:
    """A Tune checkpoint's location as a path or URI the loop can read (s3://bucket/key)."""
    return storage.uri(found.filesystem, found.path)


def _fit_and_relay(cfg: Config, metric: str, relay: Relay) -> None:
    """Run ``fit`` in a thread and pass its scored reports on to Tune from this one.

    The report at ``train.steps`` reaches Tune only once the run has returned: Tune stops a
    trial at its budget, and the run writes its final outputs after that report.
    """
    from ray import tune
    from ray.util.queue import Empty, Queue

    from genart.train.launch import fit

    def send(metrics: dict, reported) -> None:
        keep = reported if relay.checkpoints else None
        tune.report(
            {**metrics, **relay.extra},
            checkpoint=tune.Checkpoint(keep.path, keep.filesystem) if keep else None,
        )

    # maxsize 1: the Train controller hands over one report at a time, in order. Its workers do
    # not wait for it, though: a run whose scoring interval is shorter than Tune's turnaround
    # runs ahead, and PBT then decides on reports that are already old (see the PBT test).
    reports = Queue(maxsize=1, actor_options={"num_cpus": 0})
    scored, final = 0, []
    # A daemon thread: Tune may end this process while the run is still going.
    run = _Background(fit, cfg, _train_callbacks(reports, metric, relay.janitor))
    # Once fit has returned, every report is already in the queue.
    while run.is_alive() or not reports.empty():
        try:
            metrics, reported = reports.get(timeout=0.5)
        except Empty:
            continue
        scored += 1
        if metrics["step"] >= cfg.train.steps:
            final.append((metrics, reported))
        else:
            send(metrics, reported)
    run.result()  # a failed run fails the trial
    if not scored:
        raise ConfigError(f"the Train run never reported '{metric}': check --metric")
    for metrics, reported in final:
        send(metrics, reported)


class _Background(threading.Thread):
    """``fn(*args)`` in a daemon thread; ``result()`` waits for it and raises its error."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.error = fn, args, None
        self.start()

    def run(self) -> None:
        try:
            self.fn(*self.args)
        except BaseException as err:  # handed to the caller by result()
            self.error = err

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _train_callbacks(reports, metric: str, janitor) -> list:
    """Ray Train callbacks (run on the Train controller): relay the scored reports, and have
    the janitor watch the workers' placement group."""
    import ray
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback
    from ray.train.v2.api.callback import UserCallback

    trial = ray.get_runtime_context().current_actor  # this trial's process, as an actor

    class Relay(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metric in metrics[0]:  # rank 0 holds the quality metrics
                reports.put((metrics[0], checkpoint))

    class Placement(WorkerGroupCallback):
        def after_worker_group_start(self, worker_group):
            handle = worker_group.get_worker_group_state().placement_group_handle
            janitor.watch.remote(trial, handle.placement_group)

    return [Relay(), Placement()]


class Janitor:
    """Removes a Train run's worker placement group once the trial process that ran it died.

    Tune ends trials it stops, pauses or exploits by killing their process, and with it the
    Train controller. Ray Train's own cleaner then asks the State API whether the controller
    is alive, which needs the dashboard; without it (the tests, ``genart`` on a laptop) each
    such trial kept its workers' CPUs and the sweep soon stalled waiting for them. Here an
    actor call to the dead trial fails, which needs nothing but Ray itself.
    """

    def __init__(self, interval_s: float = 1.0):
        self.watched: list[tuple[Any, Any]] = []  # (trial actor, placement group)
        self.interval_s = interval_s
        self.lock = threading.Lock()  # collect() runs in the loop and as an actor call
        threading.Thread(target=self._loop, daemon=True).start()

    def watch(self, trial, group) -> None:
        self.watched.append((trial, group))

    def collect(self) -> int:
        """Remove the groups of every dead trial; returns how many are still watched."""
        with self.lock:
            return self._collect()

    def _collect(self) -> int:
        import ray
        from ray.util.placement_group import remove_placement_group

        watched = list(self.watched)
        if not watched:
            return 0
        pings = [trial.__ray_ready__.remote() for trial, _ in watched]
        ready, _ = ray.wait(pings, num_returns=len(pings), timeout=self.interval_s)
        for ping, entry in zip(pings, watched):
            if ping not in ready:
                continue  # busy or slow: alive
            try:
                ray.get(ping)
            except ray.exceptions.RayActorError:
                # Removing a group Ray Train already removed is harmless.
                with contextlib.suppress(Exception):
                    remove_placement_group(entry[1])
                self.watched.remove(entry)
        return len(self.watched)

    def drain(self, timeout_s: float = 30.0) -> int:
        """Collect until nothing is watched (every trial has ended) or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while self.collect() and time.monotonic() < deadline:
            time.sleep(self.interval_s)
        return len(self.watched)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval_s)
            if self.watched:
                self.collect()


def gatys_trial(params: dict, job: GatysJob, interval: int, budget: int) -> None:
    """Tune function: stylise ``job``'s content with the sampled Gatys settings.

    Reports ``reference_loss`` (the base settings' objective of the current image) every
    ``interval`` loss evaluations and at the end, and saves the result under ``runs/<trial>``.
    """
    import torch
    from ray import tune

    from genart.images import save_grid
    from genart.models import gatys
    from genart.models.fast_style import read_image

    cfg = gatys_params(job, params)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    content = read_image(job.content, job.size).unsqueeze(0).to(device)
    styles = [read_image(s, job.size).unsqueeze(0).to(device) for s in job.styles]
    vgg = gatys.loss_network(cfg, job.vgg_weights, device)
    network = ("arch", "pooling", "content_layers", "style_layers")
    same = all(getattr(cfg, k) == getattr(job.params, k) for k in network)
    judge = vgg if same else gatys.loss_network(job.params, job.vgg_weights, device)
    reference = gatys._objective(judge, content, styles, job.params)  # the fixed yardstick
    evaluations = 0

    def score(image: torch.Tensor) -> float:
        with torch.no_grad():
            full = gatys.resize(image.clamp(-1, 1), tuple(content.shape[-2:]))
            return float(reference(full)["total"])

    def progress(p) -> None:
        nonlocal evaluations
        evaluations += 1
        if evaluations % interval == 0 and evaluations < budget:
            tune.report({"step": evaluations, GATYS_METRIC: score(p.image)})

    image, info = gatys.stylize(content[0], [s[0] for s in styles], cfg, vgg, progress)
    trial = tune.get_context().get_trial_id()
    staging = Path(tempfile.mkdtemp(prefix="genart-gatys-"))
    save_grid(image.unsqueeze(0), staging / "samples" / f"step_{evaluations:06d}.png")
    storage.upload_dir(staging, storage.join(job.run.storage_path, job.run.name, RUNS, trial))
    losses = {f"loss_{k}": v for k, v in info["losses"].items()}
    tune.report(
        {"step": evaluations, GATYS_METRIC: score(image[None].to(device)), **losses, "run": trial}
    )


def gatys_params(job: GatysJob, params: dict[str, Any]):
    """The job's GatysConfig with a trial's ``{"gatys.key": value}`` values set (validated)."""
    values = {k.split(".", 1)[1]: v for k, v in params.items()}
    return config.build(type(job.params), dataclasses.asdict(job.params) | values, "gatys")


def gatys_recipe(job: GatysJob, params: dict[str, Any]) -> str:
    """best.yaml for a Gatys sweep: the settings, and the ``genart stylize gatys`` command."""
    from genart.cli.style import GATYS_FLAGS

    best = dataclasses.asdict(gatys_params(job, params))
    flags = [
        f"--content {job.content}",
        "--style " + " ".join(job.styles),
        "--output best.png",
        f"--size {job.size}",
        f"--vgg-weights {job.vgg_weights}",
    ]
    for name, value in best.items():
        if name in GATYS_FLAGS and value not in (None, ()):
            shown = " ".join(map(str, value)) if isinstance(value, list | tuple) else value
            flags.append(f"--{name.replace('_', '-')} {shown}")
    command = "genart stylize gatys " + " ".join(flags)
    return f"# {command}\n" + yaml.safe_dump({"model": "gatys", "gatys": best}, sort_keys=False)


# --- the report ------------------------------------------------------------------------------


def summarise(results, plan: Plan, exp_uri: str, seconds: float) -> Report:
    """Write the table, best recipe, metric plot and best samples; print the table."""
    import pandas as pd

    metric = plan.metric
    table = pd.DataFrame([_row(r, metric, plan.budget) for r in results])
    best = _best(table, metric, plan.mode)
    out = Path(tempfile.mkdtemp(prefix="genart-sweep-"))
    written = {
        "results_csv": "results.csv",
        "results_parquet": "results.parquet",
        "metric_plot": "metric.png",
    }
    flat = table.map(lambda v: str(list(v)) if isinstance(v, list | tuple) else v)
    flat.to_csv(out / written["results_csv"], index=False)
    flat.to_parquet(out / written["results_parquet"], index=False)
    plot_metric(results, metric, out / written["metric_plot"])
    if best is not None:
        plan.write_recipe(trial_params(results[best]), out / "best.yaml")
        written["best_recipe"] = "best.yaml"
        run_uri = storage.join(exp_uri, RUNS, table.loc[best, "run"])
        if copy_latest_samples(run_uri, out / "best_samples.png"):
            written["best_samples"] = "best_samples.png"
    storage.upload_dir(out, exp_uri)
    files = {key: storage.join(exp_uri, name) for key, name in written.items()}
    unfinished = int((table["status"] == "unfinished").sum())
    best_row = table.loc[best].to_dict() if best is not None else None
    report = Report(table, best_row, files, seconds, unfinished)
    print(describe(report, metric, plan.mode))
    return report


def _row(result, metric: str, budget: int) -> dict[str, Any]:
    """One trial: status, last score, last step, time, its Train run, error and parameters."""
    history = result.metrics_dataframe
    scores = history[metric].dropna() if history is not None and metric in history else ()
    last = result.metrics or {}
    step = int(last.get("step", 0))
    return {
        "trial": Path(result.path).name,  # trial folders are named by trial id
        "status": _status(result, step, budget),
        metric: float(scores.iloc[-1]) if len(scores) else math.nan,
        "step": step,
        "time_s": round(float(last.get("time_total_s", math.nan)), 1),
        "run": last.get("run", ""),
        "error": error_summary(result.error) if result.error else "",
        **trial_params(result),
    }


def trial_params(result) -> dict[str, Any]:
    """A trial's sampled values; from its params.json if it failed before reporting."""
    if result.config:
        return result.config
    with result.filesystem.open_input_stream(f"{result.path}/params.json") as f:
        return json.loads(f.read())


def error_summary(error: BaseException) -> str:
    """The innermost ``SomethingError: message`` line of a (possibly wrapped) trial error."""
    lines = str(error).strip().splitlines()
    # Ray wraps worker errors with their tracebacks as text: the last such line is the cause.
    causes = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return causes[-1] if causes else f"{type(error).__name__}: {lines[0] if lines else ''}"


def _status(result, step: int, budget: int) -> str:
    """error; done (ran its budget); stopped (by ASHA); unfinished (sweep interrupted)."""
    if result.error:
        return "error"
    if not (result.metrics or {}).get("done"):  # Tune marks finished and stopped trials done
        return "unfinished"
    return "done" if step >= budget else "stopped"


def _best(table, metric: str, mode: str) -> int | None:
    """Row index of the best scored trial that did not fail, or None."""
    scored = table[(table["status"] != "error") & table[metric].notna()]
    if not len(scored):
        return None
    return int(scored[metric].idxmin() if mode == "min" else scored[metric].idxmax())


def best_recipe(base: Config, params: dict[str, Any]) -> Config:
    """The base config with the best trial's values: a recipe for ``genart train --config``."""
    raw = with_values(base.to_dict(), params)
    # A fresh run next to the sweep: a timestamped name, no resume, nothing to start from.
    raw["run"] |= {"name": "", "resume": False, "init_from": ""}
    return Config.from_dict(raw)


def plot_metric(results, metric: str, path: Path) -> Path:
    """Every trial's ``metric`` against step, one line per trial (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for result in results:
        history = result.metrics_dataframe
        if history is None or metric not in history:
            continue
        scored = history.dropna(subset=[metric])
        ax.plot(scored["step"], scored[metric], marker="o", label=Path(result.path).name)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def copy_latest_samples(run_uri: str, target: Path) -> bool:
    """Copy the newest ``samples/step_*.png`` of a Train run to ``target``; False if none."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(storage.join(run_uri, "samples"))
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    grids = sorted(i.path for i in infos if i.base_name.startswith("step_"))
    if not grids:
        return False
    with fs.open_input_stream(grids[-1]) as f:
        target.write_bytes(f.read())
    return True


def describe(report: Report, metric: str, mode: str) -> str:
    """The results table, best first, and where the files are."""
    import pandas as pd

    table = report.table.sort_values(metric, ascending=mode == "min", na_position="last")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        lines = [table.drop(columns=["run"]).to_string(index=False)]
    if report.best is None:
        lines.append("no trial finished with a score")
    else:
        lines.append(f"best: {report.best['trial']} {metric}={report.best[metric]:.5g} ({mode})")
    lines.append(f"sweep took {report.seconds:.0f}s")
    if report.unfinished:
        lines.append(f"{report.unfinished} trials unfinished: continue with --resume")
    lines += [f"{key}: {uri}" for key, uri in report.files.items()]
    return "\n".join(lines)
