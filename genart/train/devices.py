"""Device-level choices the training loop makes, kept free of Ray so benchmarks reuse them.

One place decides what "auto" means for mixed precision and memory format, so the loop and the
benchmarks that time a ``train_step`` "as the loop runs it" cannot drift apart.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def configure(device: torch.device) -> None:
    """Process-wide settings for training on ``device``.

    cuDNN autotuning: a run's image size is fixed, so timing the candidate kernels once per
    layer shape pays back within a few steps. It makes GPU runs non-deterministic (so does
    cuDNN's default choice of backward kernels); CPU runs stay bit-exact.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def precision(name: str, device: torch.device) -> tuple[torch.dtype | None, Any]:
    """(autocast dtype or None, GradScaler or None) for the configured precision on ``device``."""
    if name == "auto":
        if device.type != "cuda":
            return None, None
        name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp32":
        return None, None
    if name == "bf16":
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler(device.type)


def autocast(
    dtype: torch.dtype | None, device: torch.device, graphs: bool = False
) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``, or a no-op context when ``dtype`` is None.

    Under CUDA-graph capture autocast's cache of down-cast weights must be off: a cached cast
    would be recorded once and replayed stale after the optimizer changed the weights.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=not graphs)


def cuda_graphs(setting: str, device: torch.device, workers: int, safe: bool, scaler) -> bool:
    """Whether to record the train step as a CUDA graph (see ``TrainConfig.cuda_graphs``).

    Not with DDP (capturing NCCL all-reduces needs their async error handling off and many
    eager warm-up steps, which is untested here), not with fp16's GradScaler (its inf checks
    sync with the host), not for models whose step makes host-side decisions.
    """
    if setting == "off":
        return False
    reasons = [
        why
        for why, bad in (
            ("it needs a CUDA device", device.type != "cuda"),
            ("it supports one worker only", workers > 1),
            ("fp16's GradScaler cannot be captured", scaler is not None),
            ("this model's step cannot be captured (see its graph_safe)", not safe),
        )
        if bad
    ]
    if reasons and setting == "on":
        raise ValueError(f"train.cuda_graphs=on cannot be used: {'; '.join(reasons)}")
    return not reasons


def channels_last(setting: str, device: torch.device) -> bool:
    """Whether to run NHWC: "auto" means on CUDA, where cuDNN's fast conv kernels want it."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")
