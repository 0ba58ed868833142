"""Fast style transfer with a trained transformer network (Johnson et al. 2016).

One forward pass per image, at any size (padded to the network's stride, cropped back):

    pipe = FastStylePipeline.from_export("runs/mosaic/export", precision="bf16")
    (styled,) = pipe([genart.images.read("photo.jpg")])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from genart.pipelines.base import ImagePipeline, Images

Precision = Literal["fp32", "bf16"]


class FastStylePipeline(ImagePipeline):
    """A trained ``fast_style`` network: images in, stylised images out."""

    MODELS = ("fast_style",)

    def __init__(self, nets, cfg, description, precision: Precision = "fp32"):
        super().__init__(nets, cfg, description)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.precision = precision
        # NHWC convolutions pay on GPUs; with oneDNN on CPU they are no faster.
        fmt = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        self.nets["G"] = self.nets["G"].to(memory_format=fmt)

    def __call__(self, images: Sequence) -> Images:
        """Each uint8 (H, W, 3) image in the network's style, at its own size.

        ``precision="bf16"`` (set when built) runs under bfloat16 autocast: faster on CPUs with
        AVX512-BF16 and on GPUs, within a few grey levels of fp32.
        """
        return self.forward(self.nets["G"], images, self.precision)
