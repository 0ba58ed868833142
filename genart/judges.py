"""What genart's small judge classifiers share (:mod:`genart.digits`,
:mod:`genart.modes_classifier`): a weight cache, one-thread training and batched scoring.

Each judge is a tiny CNN trained in seconds on CPU to genart's own synthetic data (nothing can
be downloaded), then cached at ``$GENART_CACHE/<file>`` (default ``~/.cache/genart``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn


def cache_path(weights_file: str, cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$GENART_CACHE``, else ``~/.cache/genart``; then ``weights_file``."""
    folder = cache_dir or os.environ.get("GENART_CACHE") or Path.home() / ".cache" / "genart"
    return Path(folder).expanduser() / weights_file


def load_or_train(
    path: Path, make: Callable[[], nn.Module], train: Callable[[], nn.Module], what: str,
    train_if_missing: bool = True,
) -> nn.Module:  # fmt: skip
    """The judge cached at ``path`` (``make()`` filled with its weights), in eval mode; if absent,
    ``train()`` it and cache it.

    Raises FileNotFoundError when absent and ``train_if_missing`` is False.
    """
    if path.exists():
        model = make()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    if not train_if_missing:
        raise FileNotFoundError(f"no {what} at {path} (train_if_missing=False)")
    model = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: processes training at once never read a half-written file.
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), partial)
    os.replace(partial, path)
    return model.eval()


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """Gradients on (callers may score under no_grad and train on a cache miss) and one torch
    intra-op thread: for networks this small, threads synchronise more than they compute, and
    on a busy machine they wait for each other. The previous settings come back after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def batched(function, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``function`` over ``images`` in batches without gradients, concatenated."""
    return torch.cat([function(chunk) for chunk in images.split(batch_size)])
