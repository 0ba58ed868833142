"""Search spaces as data: YAML files keyed by config paths, checked against the typed config.

A space maps a dotted config path to a distribution or to a fixed value::

    dcgan.lr_g: {loguniform: [1.0e-5, 1.0e-3]}  # float, log-uniform in [low, high)
    dcgan.d_dropout: {uniform: [0.0, 0.5]}       # float, uniform in [low, high)
    dcgan.n_critic: {randint: [1, 6]}            # int in [low, high): high excluded, as in Tune
    dcgan.loss: {choice: [bce, lsgan, hinge]}    # one value per trial, sampled
    dcgan.kernel: {grid: [4, 5]}                 # every value, crossed with the other grid keys
    train.seed: 3                                # the same value in every trial

Paths name a field of the model's section (``dcgan.``, ``pix2pix.`` ...) or of ``data``,
``train`` and ``scaling``; ``run`` belongs to the sweep. An optimisation family (``gatys``,
``dream``) trains nothing: its spaces name fields of its own section only. Every bound and
value is checked against the field's type, and unknown paths are errors that list the valid
keys, so a typo fails before any trial starts. The built-in spaces live beside this module in
``spaces/``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genart import config, registry
from genart.config import ConfigError

# kind -> the field type its bounds need; None: a list of values of the field's own type.
KINDS: dict[str, type | None] = {
    "uniform": float,
    "loguniform": float,
    "randint": int,
    "choice": None,
    "grid": None,
}
FIXED = "fixed"
SWEEP_OWNED = ("run",)  # sections the sweep sets for every trial


@dataclass(frozen=True)
class Dimension:
    """One tuned config path: a distribution (``kind`` in KINDS) or a fixed value."""

    path: str
    kind: str
    values: tuple  # (low, high) for uniform/loguniform/randint; the options otherwise

    @property
    def numeric(self) -> bool:
        """Sampled from a range (what PBT perturbs), not from a list."""
        return KINDS.get(self.kind) is not None

    def to_tune(self, grid: bool = False) -> Any:
        """The Ray Tune domain; with ``grid`` a ``choice`` becomes a grid axis."""
        from ray import tune

        # Lists, not tuples: trial configs are stored as JSON.
        options = [list(v) if isinstance(v, tuple) else v for v in self.values]
        if self.kind == FIXED:
            return options[0]
        if self.numeric:
            if grid:
                raise ConfigError(
                    f"'{self.path}' is {self.kind}: grid search needs finite values "
                    "(use {grid: [...]} or {choice: [...]})"
                )
            return getattr(tune, self.kind)(*self.values)
        if grid or self.kind == "grid":
            return tune.grid_search(options)
        return tune.choice(options)


@dataclass(frozen=True)
class Space:
    """A validated search space for one model."""

    model: str
    dimensions: tuple[Dimension, ...]

    def param_space(self, grid: bool = False) -> dict[str, Any]:
        """Tune's ``param_space``: flat, keyed by config path."""
        return {d.path: d.to_tune(grid) for d in self.dimensions}

    def mutations(self) -> dict[str, Any]:
        """PBT's ``hyperparam_mutations``: the numeric ranges (learning rates, loss weights).

        Lists (loss modes, layer sets) are drawn once per trial and then travel with the
        checkpoints PBT copies: changing them mid-run can change the networks' shapes.
        """
        return {d.path: d.to_tune() for d in self.dimensions if d.numeric}

    @property
    def has_grid(self) -> bool:
        return any(d.kind == "grid" for d in self.dimensions)


def sections(model: str) -> dict[str, type]:
    """The config sections a space for ``model`` may set, each with its dataclass."""
    spec = registry.get(model)
    if not spec.trained:
        return {model: spec.config}
    shared = {k: v for k, v in config.SECTIONS.items() if k not in SWEEP_OWNED}
    return {**shared, model: spec.config}


def builtin_path(model: str) -> Path:
    """The built-in space file of ``model`` (``genart/tune/spaces/<model>.yaml``)."""
    return Path(str(importlib.resources.files("genart.tune") / "spaces" / f"{model}.yaml"))


def load(model: str, source: str | Path = "builtin") -> Space:
    """Read and validate a space: ``builtin`` or the path of a YAML file."""
    path = builtin_path(model) if str(source) == "builtin" else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no search space at {path}")
    with path.open() as stream:  # from a stream, YAML errors name the file
        raw = yaml.safe_load(stream)
    return parse(model, raw or {}, str(path))


def parse(model: str, raw: Any, origin: str = "space") -> Space:
    """Validate a space mapping (as read from YAML) against ``model``'s typed config."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{origin}: a search space must be a non-empty mapping of config paths")
    kinds = sections(model)
    dims = tuple(_dimension(str(path), value, kinds) for path, value in raw.items())
    return Space(model, dims)


def _dimension(path: str, value: Any, kinds: dict[str, type]) -> Dimension:
    hint = _field_type(path, kinds)
    if not isinstance(value, dict):
        return Dimension(path, FIXED, (config.coerce(value, hint, path),))
    if len(value) != 1 or next(iter(value)) not in KINDS:
        raise ConfigError(
            f"'{path}': a distribution is one of {{kind: args}} with kind in {list(KINDS)}, "
            f"got {value!r}"
        )
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise ConfigError(f"'{path}': {kind} needs a non-empty list, got {args!r}")
    bound_type = KINDS[kind]
    if bound_type is None:
        options = tuple(config.coerce(v, hint, f"{path}[{i}]") for i, v in enumerate(args))
        return Dimension(path, kind, options)
    return Dimension(path, kind, _bounds(path, kind, args, hint, bound_type))


def _bounds(path: str, kind: str, args: list, hint: Any, bound_type: type) -> tuple:
    if not _accepts(hint, bound_type):
        raise ConfigError(f"'{path}' is {_name(hint)}: {kind} draws {bound_type.__name__}s")
    if len(args) != 2:
        raise ConfigError(f"'{path}': {kind} needs [low, high], got {args!r}")
    low, high = (config.coerce(v, bound_type, path) for v in args)
    if not low < high:
        raise ConfigError(f"'{path}': {kind} needs low < high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"'{path}': loguniform needs low > 0, got {args!r}")
    return low, high


def _field_type(path: str, kinds: dict[str, type]) -> Any:
    """The type of the config field at ``section.key``; errors list what is valid."""
    section, _, key = path.partition(".")
    if section in SWEEP_OWNED:
        raise ConfigError(f"'{path}': the '{section}' section is set by the sweep, not a space")
    if section not in kinds or not key:
        raise ConfigError(f"unknown path '{path}'; valid sections: {', '.join(kinds)}")
    kind = kinds[section]
    names = [f.name for f in dataclasses.fields(kind)]
    if key not in names:
        raise ConfigError(f"unknown key '{path}'; valid keys for {section}: {', '.join(names)}")
    return typing.get_type_hints(kind)[key]


def _accepts(hint: Any, kind: type) -> bool:
    """Whether a field of type ``hint`` holds ``kind`` values (``float | None`` holds floats)."""
    return hint is kind or kind in typing.get_args(hint)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the nested config dict ``raw`` with ``{"section.key": value}`` set."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for path, value in values.items():
        section, _, key = path.partition(".")
        out.setdefault(section, {})[key] = value
    return out
