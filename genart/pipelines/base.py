"""What every inference pipeline shares: loading an export, describing it, and running an
image-to-image network over images of any sizes in batches.

The image form of every pipeline: a list of uint8 numpy arrays ``(H, W, C)``, one per image,
each at its own size (what :func:`genart.images.read` and the HTTP ingress decode, and what
:func:`genart.images.encode_png` writes). Tensors in [-1, 1] stay inside the pipelines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from genart import export, registry
from genart.config import Config
from genart.errors import ConfigError
from genart.images import from_uint8, to_uint8
from genart.models.layers import forward_any_size, stride_of
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
        self.description = {**description, "backend": "torch"}
        self.onnx: dict[str, nn.Module] = {}  # onnxruntime stand-ins of ``nets``, by name

    @classmethod
    def from_export(
        cls, uri: str, device: str | torch.device = "auto", backend: str = "auto", **options
    ):
        """The pipeline of an exported folder, checkpoint or run (local path or ``s3://``),
        running on ``backend`` (:meth:`use_backend`); a ConfigError if it holds a family this
        pipeline does not serve."""
        loaded = load_nets(uri, device)
        if loaded.cfg.model not in cls.families():
            raise ConfigError(
                f"{uri} holds a '{loaded.cfg.model}' model; expected one of {cls.families()}"
            )
        return cls.of(loaded, backend, **options)

    @classmethod
    def of(cls, loaded: export.Export, backend: str = "auto", **options):
        """The pipeline of loaded networks, running on ``backend`` (:meth:`use_backend`)."""
        pipe = cls(loaded.nets, loaded.cfg, export.public(loaded.manifest), **options)
        pipe.use_backend(backend, loaded.graphs)
        return pipe

    @classmethod
    def families(cls) -> tuple[str, ...]:
        """The families whose spec names this pipeline."""
        return registry.families(pipeline=f"{cls.__module__}:{cls.__qualname__}")

    @property
    def device(self) -> torch.device:
        return next(next(iter(self.nets.values())).parameters()).device

    def describe(self) -> dict[str, Any]:
        """What anyone may be shown of the networks (:func:`genart.export.public`: family,
        step, weights, scores; no paths, no training config, which ``self.cfg`` holds) and
        the backend that runs them."""
        return self.description

    def use_backend(self, wanted: str = "auto", graphs: dict[str, str] | None = None) -> str:
        """Run the networks on ``wanted``: ``torch``, ``onnxruntime`` (the export's checked
        ``graphs``, {net: URI}, on CPU) or ``auto`` (onnxruntime on CPU where the export has
        checked graphs, else torch: :func:`genart.onnx_export.choose_backend`). The graphs are
        deterministic: a Pix2Pix generator with test-time dropout runs on torch under ``auto``,
        and without its dropout on ``onnxruntime``. Returns the backend."""
        from genart import onnx_export

        graphs = graphs or {}
        backend = onnx_export.choose_backend(
            wanted, self.device, bool(graphs), test_dropout=onnx_export.has_test_dropout(self.nets)
        )
        self.onnx = onnx_export.onnx_nets(graphs, self.nets) if backend == "onnxruntime" else {}
        threads = {"threads": next(iter(self.onnx.values())).threads} if self.onnx else {}
        self.description = {**self.description, "backend": backend, **threads}
        return backend


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
    """Image-to-image networks (fast style, Pix2Pix, CycleGAN): any size, batched, tiled, on
    torch or onnxruntime.

    ``tile``: an image with a side above it runs in overlapping tiles of that side, blended
    with feathered weights (:mod:`genart.pipelines.tiles`), so memory is bounded by the tile,
    not the image; 0 = never tile. ``backend``: see :meth:`ExportedPipeline.use_backend`.
    """

    def __init__(self, nets, cfg, description, tile: int = DEFAULT_TILE):
        super().__init__(nets, cfg, description)
        self.tile = check_tile(tile)

    def forward(self, name: str, images: Sequence[np.ndarray], precision="fp32") -> Images:
        """Network ``name`` over uint8 images of any sizes (converted to the model's channels),
        on the pipeline's backend, in tiles where an image is larger than ``self.tile``."""
        channels = self.cfg.data.channels
        inputs = [with_channels(image, channels) for image in images]
        net = self.nets[name]
        onnx = self.onnx.get(name)

        def whole(batch: torch.Tensor) -> torch.Tensor:
            if onnx is not None:  # it pads to the stride itself
                return onnx(batch)
            return forward_any_size(net, batch, batch_size=len(batch), precision=precision)

        def run(batch: torch.Tensor) -> torch.Tensor:
            return run_with_tile_option(whole, batch, self.tile, stride_of(net))

        return run_grouped(inputs, run, self.device)
