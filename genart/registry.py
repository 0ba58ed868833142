"""The one contract between models and the engine.

A model is a module in ``genart/models`` that calls :func:`register` with a :class:`ModelSpec`:
single-device ``nn.Module``s, their optimizers, and a pure ``train_step``. The Ray Train loop,
checkpointing, Tune and Serve only ever talk to models through this spec.

``train_step(nets, opts, batch, cfg, ctx) -> metrics`` is pure in the sense that matters: it
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
from typing import Any

import torch
from torch import nn

Nets = dict[str, nn.Module]
Optimizers = dict[str, torch.optim.Optimizer]
Metrics = dict[str, torch.Tensor]


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


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine needs to train, checkpoint, tune and serve one model."""

    name: str
    config: type  # dataclass of the model's hyper-parameters (YAML section named after the model)
    build: Callable[[Any, Any], Nets]  # (params, DataConfig) -> {"G": ..., "D": ...}
    optimizers: Callable[[Nets, Any], Optimizers]  # (unwrapped nets, params) -> {"G": opt, ...}
    train_step: Callable[[Nets, Optimizers, Any, Any, StepContext], Metrics]
    data: str  # "images" | "paired" | "unpaired" | "content"
    # (params, first_batch, n, generator) -> fixed inputs for sample grids: a noise batch for
    # DCGAN, the first n source images for translation models. Computed once, kept for the run.
    sample_inputs: Callable[..., Any] | None = None
    # (unwrapped nets, params, fixed inputs) -> images in [-1, 1] (B, C, H, W) for a sample grid
    sample: Callable[..., torch.Tensor] | None = None
    # (unwrapped nets, params, reference batch dict on the nets' device) -> final quality metrics
    evaluate: Callable[..., dict[str, float]] | None = None
    # (opts, params, total_steps) -> {"G": scheduler, ...}; stepped once per train step
    schedulers: Callable[..., dict[str, Any]] | None = None
    export: tuple[str, ...] = ("G",)  # the networks Serve loads
    # params -> whether train_step may be recorded as a CUDA graph: fixed shapes, no host
    # syncs, no host-side random decisions, the same Python branch on every step.
    graph_safe: Callable[[Any], bool] = lambda params: False
    metric: str = "swd"  # quality metric Tune optimises by default
    mode: str = "min"


_REGISTRY: dict[str, ModelSpec] = {}
# Model modules register on import; listed here so `get` can import them on demand.
_MODULES = ("dcgan", "pix2pix", "cyclegan", "fast_style")


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (called at import time by each ``genart.models`` module)."""
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"genart.models.{module}")


def names() -> list[str]:
    """Names of all registered models."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
    """The spec registered under ``name``; the error lists the valid names."""
    _load_all()
    if name not in _REGISTRY:
        from genart.config import ConfigError

        raise ConfigError(f"unknown model '{name}'; registered models: {sorted(_REGISTRY)}")
    return _REGISTRY[name]
