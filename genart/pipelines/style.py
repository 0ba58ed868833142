"""Fast style transfer with a trained transformer network (Johnson et al. 2016).

One forward pass per image, at any size (padded to the network's stride, cropped back), with
the shared style controls (:mod:`genart.controls`):

    pipe = FastStylePipeline.from_export("runs/mosaic/export", backend="onnxruntime")
    (styled,) = pipe([genart.images.read("photo.jpg")], strength=0.7, preserve_color="ycbcr")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from genart import controls
from genart.controls import PreserveColor
from genart.errors import ConfigError
from genart.pipelines.base import ImagePipeline, Images, with_channels
from genart.pipelines.tiles import DEFAULT_TILE

Precision = Literal["fp32", "bf16"]


class FastStylePipeline(ImagePipeline):
    """A trained ``fast_style`` network: images in, stylised images out."""

    def __init__(
        self,
        nets,
        cfg,
        description,
        precision: Precision = "fp32",
        tile: int = DEFAULT_TILE,
    ):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.precision = precision
        super().__init__(nets, cfg, description, tile)
        # NHWC convolutions pay on GPUs; with oneDNN on CPU they are no faster.
        fmt = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        self.nets["G"] = self.nets["G"].to(memory_format=fmt)

    def use_backend(self, wanted: str = "auto", graphs: dict[str, str] | None = None) -> str:
        """As :meth:`ExportedPipeline.use_backend`; bf16 runs on torch (``auto`` included),
        which was asked for a precision the float32 graphs do not have."""
        if self.precision == "bf16":
            if wanted == "onnxruntime":
                raise ConfigError("precision bf16 runs on torch: the ONNX graphs are float32")
            wanted = "torch"
        return super().use_backend(wanted, graphs)

    def __call__(
        self, images: Sequence, strength: float = 1.0, preserve_color: PreserveColor = "none"
    ) -> Images:
        """Each uint8 (H, W, 3) image in the network's style, at its own size.

        ``strength`` in [0, 1] blends each result with its input (0 = the input, 1 = the full
        style); ``preserve_color`` ``ycbcr`` or ``yiq`` keeps the input's colours (InputError
        for bad values). ``precision="bf16"`` (set when built) runs under bfloat16 autocast:
        faster on CPUs with AVX512-BF16 and on GPUs, within a few grey levels of fp32.
        """
        controls.check(strength, preserve_color)
        styled = self.forward("G", images, self.precision)
        return [
            controls.apply(with_channels(image, out.shape[-1]), out, strength, preserve_color)
            for image, out in zip(images, styled)
        ]
