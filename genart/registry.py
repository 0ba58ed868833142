"""The one contract between model families and the rest of genart.

Every family is a module in ``genart/models`` that calls :func:`register` with a spec; the
engine (Ray Train loop, checkpoints, Tune, Serve, the CLI) only talks to it through that spec
and the family's inference pipeline (``genart/pipelines``). There are two kinds:

* :class:`TrainedSpec` (DCGAN, fast style, AdaIN, Pix2Pix, CycleGAN): single-device
  ``nn.Module``\\ s, their optimizers and a pure ``train_step``, trained by the one Ray Train
  loop and exported for serving.
* :class:`OptimisationSpec` (Gatys, Deep Dream): nothing is trained; each result is an
  optimisation of one image against a frozen loss network, run by the family's pipeline.

Hook signatures follow one rule: the objects acted on first (nets, optimizers), then the
family's hyper-parameters (``params``, an instance of ``spec.config``), then the rest.

``train_step(nets, opts, batch, params, ctx) -> metrics`` is pure in the sense that matters: it
knows nothing of Ray, devices, logging or checkpoints. It receives tensors already on the right
device, updates the nets through ``ctx.update(opt, loss)`` (which owns gradient scaling for mixed
precision), keeps any model state that must survive a resume in ``ctx.state``, and returns
detached scalar tensors (the loop decides when to pay for a device sync).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from genart.errors import ConfigError

if TYPE_CHECKING:
    import ray.data

Nets = dict[str, nn.Module]
Optimizers = dict[str, torch.optim.Optimizer]
Metrics = dict[str, torch.Tensor]
Batch = dict[str, torch.Tensor]


@dataclass
class StepContext:
    """What the engine lends a ``train_step``: the step number, persistent state, and updates.

    ``state`` holds model-specific tensors that must survive a resume (image pools, counters);
    it is saved in every checkpoint. ``scaler`` is a ``torch.amp.GradScaler`` when training in
    fp16, else None. Unit tests use ``StepContext()`` as is.
    """

    step: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    scaler: Any = None
    device_type: str = "cpu"

    def update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """Zero grads, back-propagate ``loss`` and step ``opt`` (scaled when in fp16)."""
        opt.zero_grad(set_to_none=True)
        # Backward outside autocast: its ops already run in the dtypes the forward chose.
        with torch.autocast(self.device_type, enabled=False):
            if self.scaler is None:
                loss.backward()
                opt.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(opt)
                self.scaler.update()


def unwrap(net: nn.Module) -> nn.Module:
    """The single-device module behind a DDP (or similar) wrapper."""
    return getattr(net, "module", net)


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[nn.Module]:
    """Use ``net`` without computing gradients for its parameters (e.g. D during a G step).

    Yields the unwrapped module: running a DDP-wrapped net forward without a matching backward
    over all its parameters breaks DDP's gradient reduction, and we need no reduction here.
    """
    module = unwrap(net)
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


@contextlib.contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` unwrapped, in eval mode and without autograd; its training flag is restored after
    (the loop samples and scores mid-run)."""
    module = unwrap(net)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


# --- hook types (objects acted on, then params, then the rest) ---------------------------------
# ``data`` is a ``genart.config.DataConfig`` and ``config`` a ``genart.config.Config``; typed Any
# here because genart.config looks families up in this module, which imports nothing of it.

Build = Callable[[Any, Any], Nets]  # (params, data) -> {"G": ..., "D": ...}, initialised
MakeOptimizers = Callable[[Nets, Any], Optimizers]  # (unwrapped nets, params)
TrainStep = Callable[[Nets, Optimizers, Batch, Any, StepContext], Metrics]
MakeDataset = Callable[[Any], "ray.data.Dataset"]  # (config) -> the training split, streamed
# (config, n) -> reference rows scored by ``evaluate`` (a held-out split) and its name, or None:
# then the loop keeps the first ``train.eval_samples`` training rows instead.
HeldOut = Callable[[Any, int], "tuple[Batch, str] | None"]
# (params, first batch, n, generator) -> fixed inputs of every sample grid of a run
SampleInputs = Callable[[Any, Batch, int, torch.Generator], Any]
Sample = Callable[[Nets, Any, Any], torch.Tensor]  # (nets, params, fixed) -> images in [-1, 1]
Evaluate = Callable[[Nets, Any, Batch], dict[str, float]]  # (nets, params, reference) -> scores
MakeSchedulers = Callable[[Optimizers, Any, int], dict[str, Any]]  # (opts, params, total steps)


# The kinds of inference Serve offers, one deployment each (FamilySpec.serve).
LATENT = "latent"  # images sampled, walked and added from latents (DCGAN)
IMAGE = "image"  # image to image at any size, batched across callers (fast style, translation)
ARBITRARY_STYLE = "arbitrary-style"  # a content image in any style image given (AdaIN)
OPTIMISATION = "optimisation"  # one image optimised per request or job (Gatys, Deep Dream)
SERVE_KINDS = (LATENT, IMAGE, ARBITRARY_STYLE, OPTIMISATION)


@dataclass(frozen=True, kw_only=True)
class FamilySpec:
    """What every family declares: its name, typed hyper-parameters, score, pipeline, the kind
    of Serve deployment that serves it and the CLI verbs that take it.

    These fields are the one family table: what each pipeline serves, which exports a CLI verb
    accepts and which deployment kind a family belongs to are looked up here (:func:`families`),
    never listed elsewhere.
    """

    name: str
    config: type  # dataclass of the family's hyper-parameters (YAML section named after it)
    metric: str  # the quality score Tune optimises by default
    mode: Literal["min", "max"]
    # "module:Class" of the family's inference pipeline (genart/pipelines): a string, so that
    # model modules never import the layer that calls them.
    pipeline: str
    serve: str  # the kind of inference that serves it: one of SERVE_KINDS
    # The CLI verbs that take the family's exports (trained) or settings (optimisation), as
    # typed after ``genart``: "translate", "stylize fast", ... (``train``, ``tune`` and
    # ``export`` take every trained family and are not listed).
    verbs: tuple[str, ...] = ()

    @property
    def trained(self) -> bool:
        return isinstance(self, TrainedSpec)

    def pipeline_class(self) -> type:
        """The family's pipeline class (imported on first use)."""
        module, _, name = self.pipeline.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True, kw_only=True)
class TrainedSpec(FamilySpec):
    """Everything the engine needs to train, checkpoint, tune and export one trained family."""

    build: Build
    optimizers: MakeOptimizers
    train_step: TrainStep
    dataset: MakeDataset
    held_out: HeldOut | None = None
    sample_inputs: SampleInputs | None = None  # computed once, kept in every checkpoint
    sample: Sample | None = None
    evaluate: Evaluate | None = None
    schedulers: MakeSchedulers | None = None  # stepped once per train step
    export: tuple[str, ...] = ("G",)  # the networks an export holds (what pipelines load)
    # (params, data) -> the ``export`` networks alone, to receive an export's weights (loading
    # one builds no discriminator); None where ``build`` makes nothing else
    build_exported: Build | None = None
    # params -> whether train_step may be recorded as a CUDA graph: fixed shapes, no host
    # syncs, no host-side random decisions, the same Python branch on every step.
    graph_safe: Callable[[Any], bool] = lambda params: False
    # params -> whether batch norm should use statistics over all GPU workers (SyncBatchNorm)
    sync_bn: Callable[[Any], bool] = lambda params: False
    # params -> decay of the moving average of the ``export`` networks' weights that the run
    # scores, samples and exports (genart.train.ema); 0 = the live weights
    ema_decay: Callable[[Any], float] = lambda params: 0.0
    # params -> how fast the average's horizon grows: that share of the updates made so far,
    # up to the decay's (genart.train.ema.warmed_decay)
    ema_rampup: Callable[[Any], float] = lambda params: 1.0
    # params -> (score, "min" | "max") that decides whether the average or the live weights
    # serve (genart.train.ema.judge); None: the family's ``metric`` and ``mode``
    pick: Callable[[Any], tuple[str, Literal["min", "max"]]] | None = None

    def exported_nets(self, params: Any, data: Any) -> Nets:
        """The ``export`` networks of ``params`` and ``data``, built to receive an export's
        weights (their initial values are not an export's concern)."""
        nets = (self.build_exported or self.build)(params, data)
        return {name: nets[name] for name in self.export}


@dataclass(frozen=True, kw_only=True)
class OptimisationSpec(FamilySpec):
    """A family whose every result is an optimisation of one image (no training run).

    ``inputs`` names the images a run takes, in order (``("content", "styles")``: one content
    image and one or more styles; ``("image",)``). ``iterations`` is the params field that
    counts loss-network evaluations per scale (what a Tune budget counts).
    """

    inputs: tuple[str, ...]
    iterations: str = "iterations"


Spec = TrainedSpec | OptimisationSpec

_REGISTRY: dict[str, Spec] = {}
# Model modules register on import; listed here so `get` can import them on demand.
_MODULES = ("dcgan", "pix2pix", "cyclegan", "fast_style", "adain", "gatys", "deepdream")


def register(spec: Spec) -> Spec:
    """Add a family to the registry (called at import time by each ``genart.models`` module)."""
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"genart.models.{module}")


def names(kind: type | None = None) -> list[str]:
    """Names of all registered families, or of those whose spec is a ``kind``."""
    _load_all()
    return sorted(n for n, s in _REGISTRY.items() if kind is None or isinstance(s, kind))


def families(
    *, verb: str | None = None, serve: str | None = None, pipeline: str | None = None
) -> tuple[str, ...]:
    """Names of the registered families (sorted) that the CLI ``verb`` takes, that the Serve
    kind ``serve`` serves, or whose pipeline is ``pipeline`` ("module:Class"); each given
    criterion must hold."""
    _load_all()
    return tuple(
        sorted(
            name
            for name, spec in _REGISTRY.items()
            if (verb is None or verb in spec.verbs)
            and (serve is None or spec.serve == serve)
            and (pipeline is None or spec.pipeline == pipeline)
        )
    )


def get(name: str) -> Spec:
    """The spec registered under ``name``; the error lists the valid names."""
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; registered models: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def trained(name: str) -> TrainedSpec:
    """The spec of a trained family; a ConfigError for an optimisation family or unknown name."""
    spec = get(name)
    if not isinstance(spec, TrainedSpec):
        raise ConfigError(
            f"'{name}' optimises each image and trains nothing; trained models: "
            f"{names(TrainedSpec)}"
        )
    return spec
