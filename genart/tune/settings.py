"""What a sweep is, checked before Ray starts: its settings, plan and report, each trial's
base config (trained families) or job (optimisation families), and their intervals.

Nothing here imports Ray: every interval and key a sweep needs is checked in this module, so a
mistake fails at once instead of after Ray's start-up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genart import config, registry, storage, tracking
from genart.config import Config, ConfigError

DRIVER_CPU = 0.01  # the Tune function only waits on its Train run; Tune rejects 0 CPUs
DATA_CPU = 1.0  # kept free per trial for its Ray Data tasks, which take a whole CPU each
SWEEP_FILE = "sweep.yaml"  # base config and trial settings, written when a sweep starts
RUNS = "runs"  # sub-folder of a sweep holding each trial's Train run (or optimised image)
Scheduler = Literal["asha", "pbt", "fifo"]
Search = Literal["random", "grid", "optuna-if-installed"]


@dataclass
class Settings:
    """How a sweep searches (the base config says what each trial trains)."""

    samples: int | None = None  # trials, or repetitions of a grid; None: 1 with a grid, else 4
    scheduler: Scheduler = "asha"
    search: Search = "random"
    # 0: as many trials as the cluster holds (settings.concurrency); more is lowered to that
    max_concurrent: int = 0
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
    name: str = ""  # the sweep's
    # The best trial's folder under runs/ (its Train run, for a trained family); None if none.
    best_run: str | None = None


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
class OptimisationJob:
    """A sweep of an optimisation family: its images and the settings around the tuned ones."""

    family: str  # an OptimisationSpec's name (gatys, dream)
    inputs: dict[str, Any]  # named as spec.inputs: a path or URI, or a list of them
    params: Any  # the family's config: every trial's starting point and the yardstick
    run: config.RunConfig = field(default_factory=config.RunConfig)
    size: int = 256  # long side of every input image
    vgg_weights: str = "auto"

    @property
    def spec(self) -> registry.OptimisationSpec:
        return registry.get(self.family)

    @property
    def budget(self) -> int:
        """Steps of a trial: the base settings' evaluations per scale (``train.steps``)."""
        return getattr(self.params, self.spec.iterations)

    def values(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's sampled ``{"<family>.key": value}`` as ``{key: value}``."""
        return {path.split(".", 1)[1]: value for path, value in params.items()}

    def settings(self, params: dict[str, Any]) -> Any:
        """The base settings with a trial's sampled values set (validated)."""
        merged = dataclasses.asdict(self.params) | self.values(params)
        return config.build(self.spec.config, merged, self.family)


# The only train and data keys an optimisation sweep reads: it trains nothing.
OPTIMISATION_KEYS = {"train": {"steps"}, "data": {"uri"}}
# Where an optimisation family's inputs come from, in order (spec.inputs): the first image is
# --data (data.uri), the second input the --style images.
INPUT_FLAGS = ("--data", "--style")


def optimisation_job(
    family: str, raw: dict[str, Any], styles: list[str], size: int, vgg_weights: str
) -> OptimisationJob:
    """A sweep of ``family`` from a raw config dict (recipe + ``--set``): the ``<family>``
    section holds the base settings, ``train.steps`` the evaluations per scale, ``data.uri``
    the first input, ``styles`` the second (``--style``), and ``run`` the sweep's name,
    storage and resume flag."""
    spec = registry.get(family)
    if spec.trained:
        raise ConfigError(f"'{family}' is a trained family: its trials are Train runs")
    _check_keys(family, raw)
    params = config.build(spec.config, raw.get(family) or {}, family)
    steps = (raw.get("train") or {}).get("steps")
    if steps is not None:
        setattr(params, spec.iterations, config.coerce(steps, int, "train.steps"))
    uri = (raw.get("data") or {}).get("uri")
    given = (str(uri) if uri else "", list(styles))
    taken = len(spec.inputs)
    if not all(given[:taken]):
        wanted = " and ".join(f"{n} ({flag})" for n, flag in zip(spec.inputs, INPUT_FLAGS))
        raise ConfigError(f"{family} sweeps need {wanted}")
    if any(given[taken:]):
        raise ConfigError(f"{family} sweeps take no {' or '.join(INPUT_FLAGS[taken:])}")
    inputs = dict(zip(spec.inputs, given))
    run_cfg = config.build(config.RunConfig, raw.get("run") or {}, "run")
    return OptimisationJob(family, inputs, params, run_cfg, size, vgg_weights)


def _check_keys(family: str, raw: dict[str, Any]) -> None:
    """ConfigError naming the first key of ``raw`` an optimisation sweep would ignore."""
    model = raw.get("model") or family
    if model != family:
        raise ConfigError(f"model is {model!r}: a {family} sweep takes a {family} recipe")
    allowed = {"model", family, "run", *OPTIMISATION_KEYS}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(
            f"unknown sections {sorted(unknown)} for {family}; valid: {sorted(allowed)}"
        )
    for section, keys in OPTIMISATION_KEYS.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"'{section}' must be a mapping, got {type(values).__name__}")
        ignored = sorted(set(values) - keys)
        if ignored:
            valid = ", ".join(f"{section}.{key}" for key in sorted(keys))
            raise ConfigError(f"unknown key '{section}.{ignored[0]}' for {family}; valid: {valid}")


def objective(spec: registry.FamilySpec, settings: Settings, default: str) -> tuple[str, str]:
    """The metric and mode a sweep optimises: the settings', else ``default`` and the model's."""
    mode = settings.mode or spec.mode
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be min or max, got {mode!r}")
    return settings.metric or default, mode


def sweep_run(run_cfg: config.RunConfig, model: str) -> config.RunConfig:
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
    cfg.run = sweep_run(cfg.run, cfg.model)
    # Trials track into the sweep's store: "local" is the one in the sweep's folder.
    sweep_uri = storage.join(cfg.run.storage_path, cfg.run.name)
    cfg.run.tracking_uri = tracking.resolve_uri(cfg.run.tracking_uri, sweep_uri)
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


def trial_cpus(cfg: Config) -> float:
    """CPUs one trial of ``cfg`` holds: its Train workers', its Tune function's and one for
    its Ray Data tasks.

    A Ray Data task takes a whole CPU, and a trial's workers wait on their own dataset: with no
    CPU free beside every trial's workers, the decode tasks never start and the sweep hangs.
    """
    s = cfg.scaling
    return s.workers * s.cpus_per_worker + DRIVER_CPU + DATA_CPU


def concurrency(cfg: Config, resources: dict[str, float], requested: int = 0) -> tuple[int, str]:
    """How many trials of ``cfg`` run at once on a cluster of ``resources``, and a note.

    ``requested`` (``--max-concurrent``; 0: as many as fit) is lowered to what the cluster
    holds, :func:`trial_cpus` and GPUs per trial, and the note says so ("" when nothing was
    lowered). A cluster too small for one trial is a ConfigError.
    """
    s = cfg.scaling
    per_trial = trial_cpus(cfg)
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    fits = int(cpus // per_trial)
    needs = f"{per_trial:g} CPUs ({s.workers * s.cpus_per_worker:g} for its workers, "
    needs += f"{DATA_CPU:g} for its Ray Data tasks, {DRIVER_CPU:g} for Tune)"
    has = f"{cpus:g} CPUs"
    if s.gpus_per_worker:
        fits = min(fits, int(gpus // (s.workers * s.gpus_per_worker)))
        needs += f" and {s.workers * s.gpus_per_worker:g} GPUs"
        has += f" and {gpus:g} GPUs"
    if fits < 1:
        raise ConfigError(
            f"a trial needs {needs}; the cluster has {has}: lower --workers-per-trial or "
            "scaling.cpus_per_worker"
        )
    if requested <= fits:
        return requested or fits, ""
    return fits, (
        f"genart tune: {fits} trial{'s' if fits > 1 else ''} at a time, not {requested} "
        f"(--max-concurrent): a trial needs {needs}; the cluster has {has}"
    )
