"""Image-to-image translation with trained Pix2Pix and CycleGAN generators.

A CycleGAN export holds both generators (``G_AB``: A -> B, ``G_BA``: B -> A) and translates
either way (default AtoB); a Pix2Pix export translates only the direction it was trained in.
Any image size works (padded to the generator's stride, cropped back); a grey model takes
colour images converted to grey, and the other way round.

    pipe = TranslationPipeline.from_export("runs/facades/export")
    (out,) = pipe([genart.images.read("labels.png", pipe.channels)])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from genart.data import DIRECTIONS
from genart.errors import ConfigError
from genart.pipelines.base import ImagePipeline, Images


class TranslationPipeline(ImagePipeline):
    """Pix2Pix or CycleGAN generators: images in, translated images out."""

    @property
    def channels(self) -> int:
        return self.cfg.data.channels

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this export translates."""
        if "G_AB" in self.nets:
            return DIRECTIONS
        return (getattr(self.cfg.params, "direction", "AtoB"),)

    def direction(self, wanted: str | None = None) -> str:
        """``wanted`` if this export translates it (default: its first); ConfigError if not."""
        if wanted not in (None, *DIRECTIONS):
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {wanted!r}")
        if wanted is None:
            return self.directions[0]
        if wanted not in self.directions:
            raise ConfigError(
                f"this {self.cfg.model} run was trained {self.directions[0]}; it cannot "
                f"translate {wanted}"
            )
        return wanted

    def generator_name(self, direction: str | None = None) -> str:
        """The name of the network that translates ``direction``."""
        direction = self.direction(direction)
        if "G_AB" in self.nets:
            return "G_AB" if direction == "AtoB" else "G_BA"
        return "G"

    def generator(self, direction: str | None = None) -> nn.Module:
        """The (torch) network that translates ``direction``."""
        return self.nets[self.generator_name(direction)]

    def __call__(self, images: Sequence, direction: str | None = None) -> Images:
        """Each uint8 (H, W, C) image translated ``direction``, at its own size."""
        return self.forward(self.generator_name(direction), images)
