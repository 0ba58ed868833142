"""What every inference pipeline shares: loading an export, describing it, and running an
image-to-image network over images of any sizes in batches.

The image form of every pipeline: a list of uint8 numpy arrays ``(H, W, C)``, one per image,
each at its own size (what :func:`genart.images.read` and the HTTP ingress decode, and what
:func:`genart.images.encode_png` writes). Tensors in [-1, 1] stay inside the pipelines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from genart import export, registry
from genart.config import Config
from genart.errors import ConfigError
from genart.images import from_uint8, to_uint8
from genart.models.layers import forward_any_size, stride_of, without_test_dropout
from genart.pipelines.tiles import DEFAULT_TILE, check_tile, run_with_tile_option

Images = list[np.ndarray]
# One forward pass holds at most this many input pixels (16 images of 256x256): bounds the
# activation memory of a batch of large images.
PIXELS_PER_FORWARD = 2**20


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: the GPU this process was given (Ray sets CUDA_VISIBLE_DEVICES), else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ExportedPipeline:
    """A pipeline over the networks of an export (``genart export``), a checkpoint or a run.

    Each family's spec names the pipeline that serves it (``genart.registry``);
    :meth:`from_export` refuses an export of a family this pipeline does not serve.
    """

    def __init__(self, nets: dict[str, nn.Module], cfg: Config, description: dict[str, Any]):
        self.nets = nets
        self.cfg = cfg
        self.description = description

    @classmethod
    def from_export(cls, uri: str, device: str | torch.device = "auto", **options):
        """The pipeline of an exported folder, checkpoint or run (local path or ``s3://``);
        a ConfigError if it holds a family this pipeline does not serve."""
        loaded = load_nets(uri, device)
        if loaded.cfg.model not in cls.families():
            raise ConfigError(
                f"{uri} holds a '{loaded.cfg.model}' model; expected one of {cls.families()}"
            )
        return cls(loaded.nets, loaded.cfg, export.public(loaded.manifest), **options)

    @classmethod
    def families(cls) -> tuple[str, ...]:
        """The families whose spec names this pipeline."""
        return registry.families(pipeline=f"{cls.__module__}:{cls.__qualname__}")

    @property
    def device(self) -> torch.device:
        return next(next(iter(self.nets.values())).parameters()).device

    def describe(self) -> dict[str, Any]:
        """What anyone may be shown of the networks (:func:`genart.export.public`: family,
        step, weights, scores; no paths, no training config, which ``self.cfg`` holds)."""
        return self.description


def load_nets(uri: str, device: str | torch.device = "auto") -> export.Export:
    """The exported networks (eval mode, on ``device``), their config and manifest."""
    return export.load(uri, device=pick_device(device))


def run_grouped(
    images: Sequence[np.ndarray],
    forward: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> Images:
    """``forward`` over uint8 (H, W, C) images of any sizes: uint8 images, in order.

    Images of one size share a forward pass; a larger group is split so that no pass holds
    more than ``PIXELS_PER_FORWARD`` input pixels. Images cross to and from ``device`` as
    uint8 (a quarter of float32's bytes) and are converted there.
    """
    outputs: list[np.ndarray | None] = [None] * len(images)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[image.shape].append(index)
    for shape, indices in groups.items():
        per_pass = max(1, PIXELS_PER_FORWARD // (shape[0] * shape[1]))
        for start in range(0, len(indices), per_pass):
            chunk = indices[start : start + per_pass]
            batch = torch.from_numpy(np.stack([images[i] for i in chunk])).to(device)
            for index, image in zip(chunk, to_uint8(forward(from_uint8(batch)))):
                outputs[index] = image
    return outputs


def with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 (H, W, 1|3) image with the channels a network takes: RGB to grey as the image
    decoder converts (Pillow's ITU-R 601-2 luma), or grey replicated to RGB."""
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return np.asarray(Image.fromarray(image).convert("L"))[..., None]
    return np.repeat(image, 3, axis=-1)


class ImagePipeline(ExportedPipeline):
    """Image-to-image networks (fast style, Pix2Pix, CycleGAN): any size, batched, tiled, ONNX.

    ``tile``: an image with a side above it runs in overlapping tiles of that side, blended
    with feathered weights (:mod:`genart.pipelines.tiles`), so memory is bounded by the tile,
    not the image; 0 = never tile.
    """

    def __init__(self, nets, cfg, description, tile: int = DEFAULT_TILE):
        super().__init__(nets, cfg, description)
        self.tile = check_tile(tile)

    def forward(self, net: nn.Module, images: Sequence[np.ndarray], precision="fp32") -> Images:
        """``net`` over uint8 images of any sizes (converted to the model's channels), in
        tiles where an image is larger than ``self.tile``."""
        channels = self.cfg.data.channels
        inputs = [with_channels(image, channels) for image in images]

        def whole(batch: torch.Tensor) -> torch.Tensor:
            return forward_any_size(net, batch, batch_size=len(batch), precision=precision)

        def run(batch: torch.Tensor) -> torch.Tensor:
            return run_with_tile_option(whole, batch, self.tile, stride_of(net))

        return run_grouped(inputs, run, self.device)

    def export_onnx(self, folder: str | Path) -> dict[str, float]:
        """Each network as ``<name>.onnx`` (dynamic batch, height, width), checked against
        torch with onnxruntime; returns max |onnxruntime - torch| per file.

        Exported in eval mode with Pix2Pix's test-time dropout off: onnxruntime's training-mode
        Dropout is not reproducible, and a deterministic graph is what serving wants. The probe
        is non-square, a few strides per side. Raises AssertionError above the tolerance.
        """
        from genart.models.layers import stride_of
        from genart.onnx_export import export_checked

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        diffs = {}
        for name, net in self.nets.items():
            stride = stride_of(net)
            probe = torch.rand(2, self.cfg.data.channels, 2 * stride, 3 * stride) * 2 - 1
            with without_test_dropout(net):
                diffs[str(folder / f"{name}.onnx")] = export_checked(
                    net, folder / f"{name}.onnx", probe
                )
        return diffs
