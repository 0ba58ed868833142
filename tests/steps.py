"""Test helper: a model's pure train_step run on one fixed batch, as the unit tests use it."""

import torch

from genart import registry
from genart.config import DataConfig
from genart.registry import StepContext


def train_on_batch(model: str, params, data: DataConfig, batch: dict, steps: int):
    """``steps`` train_steps of ``model`` (built with seed 0) on ``batch``.

    Returns the metrics of every step, the nets and the step context (its ``state``).
    """
    torch.manual_seed(0)
    spec = registry.get(model)
    nets = spec.build(params, data)
    opts = spec.optimizers(nets, params)
    ctx = StepContext()
    history = []
    for step in range(steps):
        ctx.step = step
        history.append(spec.train_step(nets, opts, batch, params, ctx))
    return history, nets, ctx
