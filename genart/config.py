"""Typed run configuration.

A run is described by one :class:`Config`: the model's registry name, the shared sections
(``data``, ``train``, ``scaling``, ``run``) and the model's own hyper-parameters in a section
named after the model (``dcgan:``, ``pix2pix:`` ...). Recipes are YAML files of that shape;
``--set section.key=value`` overrides single values. Unknown keys, wrong types and invalid
choices are errors that name the key and what is allowed: a typo must never silently train
the wrong model for hours.

The resolved config (every default filled in) is written next to every run and inside every
checkpoint; it is the source of truth for resuming, exporting and serving.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from genart import registry
from genart.errors import ConfigError, InputError

__all__ = ["Config", "ConfigError", "InputError", "load", "save"]


@dataclass
class DataConfig:
    """Where the images come from and how they are shaped into batches."""

    uri: str = ""  # local folder, s3:// prefix, or .parquet file/folder with an image-bytes column
    uri_b: str = ""  # second domain for unpaired data (defaults to the trainB folder beside uri)
    size: int = 64  # images are resized (shorter side) and centre-cropped to size x size
    channels: Literal[1, 3] = 3
    batch_size: int = 64  # per worker
    flip: bool = True  # random horizontal flip
    parquet_column: str = "image"
    shuffle_buffer: int = 256  # rows in each worker's local shuffle buffer (0 = no shuffle)
    # Copies of the data per epoch (one Ray Data pass). Each pass starts with a pause of
    # ~0.1-0.2 s; raise this when an epoch takes only seconds (small datasets, fast models).
    repeat: int = 1
    # A worker still waiting for an epoch's first batch after this long fails the run rather
    # than hang: a pipeline with no CPU free for its decode tasks never delivers. 0 = no limit
    # (a cluster that scales up for the data may take longer).
    first_batch_timeout_s: float = 300.0

    def __post_init__(self):
        at_least(self, "data", 1, "size", "batch_size", "repeat")
        at_least(self, "data", 0, "shuffle_buffer", "first_batch_timeout_s")


@dataclass
class TrainConfig:
    """How long to train and how often to log, sample and checkpoint (all in optimizer steps)."""

    steps: int = 2000
    seed: int = 0
    log_every: int = 25
    sample_every: int = 250
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    # Mixed precision: auto = bf16 on GPUs that support it, else fp16 with a scaler; off on CPU.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # NHWC memory format: faster convolutions on GPU tensor cores, not on CPU (oneDNN), so
    # auto = on for CUDA only.
    channels_last: Literal["auto", "on", "off"] = "auto"
    # Record each train step as a CUDA graph and replay it (genart/train/graphs.py): small GAN
    # steps are launch-bound on a GPU. auto = on for one CUDA worker when the model's step
    # allows it and the precision is not fp16; on = the same, but an error where it cannot be.
    cuda_graphs: Literal["auto", "on", "off"] = "auto"
    eval_samples: int = 512  # real images kept for the quality metrics (SWD, PSNR, ...)
    eval_every: int = 0  # also score quality every k steps (Tune's schedulers need it); 0 = end
    fail_at_step: int = -1  # testing aid: raise once at this step (checks fault tolerance)

    def __post_init__(self):
        intervals = ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints")
        at_least(self, "train", 1, *intervals)
        at_least(self, "train", 0, "eval_samples", "eval_every")


@dataclass
class ScalingConfig:
    """How many Ray Train workers and what each one gets."""

    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0

    def __post_init__(self):
        at_least(self, "scaling", 1, "workers")
        at_least(self, "scaling", 0, "gpus_per_worker", "cpus_per_worker")


@dataclass
class RunConfig:
    """Where results go and how failures are handled."""

    name: str = ""  # default: <model>-<timestamp>
    storage_path: str = "runs"  # local folder or any URI Ray Train supports (s3://...)
    max_failures: int = 0  # worker-group restarts from the latest checkpoint before giving up
    resume: bool = False  # continue the named run from its latest complete checkpoint
    # Checkpoint (folder or URI) a run with no checkpoint of its own starts from: weights,
    # optimizer moments, step and RNG come from it, hyper-parameters from this config (how a
    # PBT trial exploits another trial's checkpoint).
    init_from: str = ""
    # MLflow tracking (genart/tracking.py): "" = off; a tracking server (http://HOST:PORT) or
    # any MLflow tracking URI; "local" = a SQLite store under the run folder, no server needed.
    tracking_uri: str = ""

    def __post_init__(self):
        at_least(self, "run", -1, "max_failures")  # -1: retry without limit (as Ray's)
        if self.name and not RUN_NAME.match(self.name):
            # The name becomes a folder and a URI path segment (s3://bucket/runs/NAME).
            raise ConfigError(
                f"'run.name' = {self.name!r}: use letters, digits, '.', '_' and '-' "
                "(it names a folder and a URI path)"
            )


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def at_least(section: Any, path: str, minimum: float, *names: str) -> None:
    """ConfigError unless each named field of ``section`` is >= ``minimum``."""
    for name in names:
        value = getattr(section, name)
        if value < minimum:
            raise ConfigError(f"'{path}.{name}' must be >= {minimum}, got {value!r}")


def fraction(section: Any, path: str, *names: str) -> None:
    """ConfigError unless each named field of ``section`` lies in [0, 1)."""
    for name in names:
        value = getattr(section, name)
        if not 0 <= value < 1:
            raise ConfigError(f"'{path}.{name}' must lie in [0, 1), got {value!r}")


def share(section: Any, path: str, *names: str) -> None:
    """ConfigError unless each named field of ``section`` lies in (0, 1]."""
    for name in names:
        value = getattr(section, name)
        if not 0 < value <= 1:
            raise ConfigError(f"'{path}.{name}' must lie in (0, 1], got {value!r}")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "train": TrainConfig,
    "scaling": ScalingConfig,
    "run": RunConfig,
}


@dataclass
class Config:
    """A whole run: model name, shared sections, and the model's own hyper-parameters."""

    model: str
    params: Any  # the model's config dataclass (``ModelSpec.config``); YAML section = model name
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-ready), model params under the model's name."""
        out: dict[str, Any] = {"model": self.model}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        out[self.model] = dataclasses.asdict(self.params)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Build and validate a config; every missing value takes its default."""
        if not isinstance(raw, dict) or "model" not in raw:
            trained = registry.names(registry.TrainedSpec)
            raise ConfigError(f"config needs a 'model' key; trained models: {trained}")
        model = raw["model"]
        spec = registry.trained(model)
        allowed = {"model", model, *SECTIONS}
        for key in raw:
            if key not in allowed:
                raise ConfigError(f"unknown config section '{key}'; valid: {sorted(allowed)}")
        sections = {name: build(kind, _section(raw, name), name) for name, kind in SECTIONS.items()}
        params = build(spec.config, _section(raw, model), model)
        return cls(model=model, params=params, **sections)


def _section(raw: dict[str, Any], name: str) -> Any:
    """A section's values; absent or empty (a YAML key with nothing under it) means defaults."""
    values = raw.get(name)
    return {} if values is None else values


def build(kind: type, values: dict[str, Any], path: str) -> Any:
    """Construct dataclass ``kind`` from ``values``, checking every key and type."""
    if not isinstance(values, dict):
        raise ConfigError(f"'{path}' must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(kind)
    names = [f.name for f in dataclasses.fields(kind)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key '{path}.{key}'; valid keys: {', '.join(names)}")
        kwargs[key] = coerce(value, hints[key], f"{path}.{key}")
    return kind(**kwargs)


def coerce(value: Any, hint: Any, path: str) -> Any:
    """Check ``value`` against type ``hint``; strings from the command line are parsed."""
    origin = typing.get_origin(hint)
    if isinstance(value, Given) and (
        hint is Any or origin is dict or dataclasses.is_dataclass(hint)
    ):
        value = value.parsed  # a structure typed on the command line: its YAML reading
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    if origin is Literal:
        choices = typing.get_args(hint)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        for choice in choices:
            # True == 1 in Python: a boolean is never a numeric choice.
            same_kind = isinstance(value, bool) == isinstance(choice, bool)
            if (value == choice and same_kind) or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"'{path}' = {value!r} is not one of {list(choices)}")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        given_none = isinstance(value, Given) and value.parsed is None
        if (value is None or given_none) and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(value, option, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{path}' must be a list, got {value!r}")
        item = (typing.get_args(hint) or (Any,))[0]
        items = [coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    return _scalar(value, hint, path)


def _scalar(value: Any, hint: type, path: str) -> Any:
    value = str(value) if isinstance(value, Given) else value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-4 as a string; accept it
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"'{path}' must be {hint.__name__}, got {value!r}")


_BOOLS = {"true": True, "yes": True, "1": True, "on": True}
_BOOLS |= {"false": False, "no": False, "0": False, "off": False}


class Given(str):
    """A value typed on the command line: the text as typed, and its YAML reading.

    Text and number fields take the text itself: YAML would turn ``run.name=0123`` into the
    octal 83, ``12:30`` into 750 and cut ``data.uri=/data/set #2`` at the ``#``. Structured
    fields (``Any``, mappings) take the YAML reading.
    """

    parsed: Any

    @classmethod
    def of(cls, text: str) -> Given:
        given = cls(text)
        try:
            given.parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            given.parsed = text
        return given


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a raw config dict (validated later by from_dict)."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        dotted, sep, text = item.partition("=")
        if not sep or not dotted:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        *parents, leaf = dotted.strip().split(".")
        node = raw
        for part in parents:
            if node.get(part) is None:  # absent, or a recipe key with nothing under it
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        node[leaf] = Given.of(text)
    return raw


def load(
    model: str | None = None,
    recipe: str | Path | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Resolve a config from an optional YAML recipe, a model name and ``--set`` overrides."""
    return Config.from_dict(given(model, recipe, overrides))


def given(
    model: str | None = None,
    recipe: str | Path | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """The raw values a recipe and overrides give, before defaults fill in the rest."""
    raw: dict[str, Any] = {}
    if recipe:
        with Path(recipe).open() as f:  # a stream: YAML errors then name the file
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"recipe {recipe} must hold a mapping")
    if model:
        if raw.get("model") not in (None, model):
            raise ConfigError(f"recipe {recipe} is for model '{raw['model']}', not '{model}'")
        raw["model"] = model
    return apply_overrides(raw, overrides or [])


# What a resumed run may change: how long it trains, how it reports, checkpoints and computes,
# where it runs and where its data and outputs live. Any other change would continue a
# different experiment from this one's weights, under this one's name.
RESUMABLE: dict[str, set[str] | None] = {
    "train": {
        "steps",
        "log_every",
        "sample_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
        "eval_samples",
        "fail_at_step",
        "precision",
        "channels_last",
        "cuda_graphs",
    },  # fmt: skip
    "data": {"uri", "uri_b", "first_batch_timeout_s"},
    "scaling": None,  # None: every key
    "run": None,
}


def resume_conflicts(saved: Config, cfg: Config) -> list[str]:
    """The values ``cfg`` changes from ``saved`` that a resumed run may not change."""
    if cfg.model != saved.model:
        return [f"model: saved {saved.model!r}, now {cfg.model!r}"]
    before, after = saved.to_dict(), cfg.to_dict()
    conflicts = []
    for section, values in after.items():
        if section == "model":
            continue
        allowed = RESUMABLE.get(section, set())
        for key, value in values.items():
            if value != before[section].get(key) and allowed is not None and key not in allowed:
                conflicts.append(
                    f"{section}.{key}: saved {before[section].get(key)!r}, now {value!r}"
                )
    return conflicts


def resumed(saved: Config, raw: dict[str, Any]) -> Config:
    """The config a resumed run continues with: ``saved`` (the run's own), changed where the
    ``raw`` values of a recipe and overrides (see :func:`given`) say and a resumed run may
    change (:data:`RESUMABLE`). Any other change they make is a ConfigError naming it.
    """
    if raw.get("model", saved.model) != saved.model:
        raise ConfigError(f"run was trained as '{saved.model}', not '{raw['model']}'")
    merged = saved.to_dict()
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    cfg = Config.from_dict(merged)
    refuse_changes(saved, cfg)
    return cfg


def refuse_changes(saved: Config, cfg: Config) -> None:
    """ConfigError if resuming the run of ``saved`` with ``cfg`` would change the experiment."""
    conflicts = resume_conflicts(saved, cfg)
    if conflicts:
        raise ConfigError(
            f"--resume continues the run with its saved config; this would change "
            f"{'; '.join(conflicts)}. Drop those changes, or start a new run with another --name"
        )


def save(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (a recipe `genart train` accepts unchanged)."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
