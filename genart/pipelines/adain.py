"""Arbitrary style transfer with a trained AdaIN decoder (Huang & Belongie 2017).

Any style, at any size, in one encoder-decoder pass; ``alpha`` trades content for style (in
feature space: AdaIN's own strength), several styles blend by their weights, a ``mask``
confines them to its white region (the black one keeps the content, or takes an
``outside_style``), and ``preserve_color`` keeps the content's colours (:mod:`genart.controls`):

    pipe = AdaINPipeline.from_export("runs/adain/export")
    styled = pipe(read("photo.jpg"), [read("waves.png"), read("mosaic.png")], alpha=0.8,
                  weights=[0.7, 0.3], preserve_color="ycbcr")

The export holds only the decoder (its weights, and its ONNX graph that ``backend``
onnxruntime runs: see :meth:`ExportedPipeline.use_backend`); the frozen VGG-19 encoder is
rebuilt from the training config's ``vgg_weights`` (or the ``vgg_weights`` given here) and
runs on torch. :meth:`AdaINPipeline.describe`
says which weights it has: random VGG weights (tests, demos) say so there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genart import controls
from genart.controls import PreserveColor
from genart.images import from_uint8, to_uint8
from genart.models import adain
from genart.pipelines.base import ExportedPipeline, with_channels
from genart.pipelines.tiles import DEFAULT_TILE, check_tile, run_with_tile_option
from genart.vgg import public_metadata


class AdaINPipeline(ExportedPipeline):
    """A trained ``adain`` decoder and its VGG-19 encoder: content and style images in,
    stylised images out.

    ``tile``: a content with a side above it is stylised in blended overlapping tiles of that
    side (:mod:`genart.pipelines.tiles`), each normalised to the style by its own feature
    statistics; 0 = never tile. The backend (:meth:`ExportedPipeline.use_backend`) runs the
    decoder, the heaviest part at output resolution.
    """

    def __init__(
        self,
        nets,
        cfg,
        description,
        vgg_weights: str | None = None,
        tile: int = DEFAULT_TILE,
    ):
        super().__init__(nets, cfg, description)
        self.tile = check_tile(tile)
        weights = vgg_weights or cfg.params.vgg_weights
        self.encoder = adain.encoder(weights, self.device)
        self.description |= {"encoder": public_metadata(self.encoder.metadata)}

    def __call__(
        self,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        alpha: float = 1.0,
        weights: Sequence[float] | None = None,
        preserve_color: PreserveColor = "none",
        mask: np.ndarray | None = None,
        outside_style: np.ndarray | None = None,
    ) -> np.ndarray:
        """``content`` (uint8 (H, W, C)) in the style of ``styles`` (uint8, any sizes), blended
        by ``weights`` (one per style, >= 0, normalised; None = equal), at content-style
        trade-off ``alpha`` in [0, 1] (0 = the content as the decoder renders it), with the
        content's colours if ``preserve_color`` is ``ycbcr`` or ``yiq``. A ``mask`` (uint8, the
        content's height and width, :func:`genart.controls.mask_weights`) confines the styles
        to its white region, in feature space; its black region keeps the content's features
        or takes ``outside_style``'s. Returns the uint8 (H, W, 3) result at the content's size.
        InputError for a bad alpha, weights, ``preserve_color`` or mask.
        """
        controls.check(preserve_color=preserve_color)
        controls.check_regions(mask, outside_style)
        content_t = self._tensor(content)
        style_ts = [self._tensor(style) for style in styles]
        outside = None if outside_style is None else self._tensor(outside_style)
        inputs = content_t
        if mask is not None:  # a fourth channel, so that tiles cut the mask with the content
            guide = controls.mask_weights(mask, content.shape[:2]).to(self.device)
            inputs = torch.cat([content_t, guide], dim=1)

        decoder = self.onnx.get("decoder", self.nets["decoder"])

        def stylize(tile: torch.Tensor) -> torch.Tensor:
            image, region = tile[:, :3], (tile[:, 3:] if mask is not None else None)
            return adain.stylize(decoder, self.encoder, image, style_ts, alpha,
                                 weights, mask=region, outside=outside)  # fmt: skip

        out = run_with_tile_option(stylize, inputs, self.tile, adain.STRIDE)
        if preserve_color != "none":
            out = controls.keep_colours(out, content_t, preserve_color)
        return to_uint8(out[0])

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        """A uint8 (H, W, C) image as a (1, 3, H, W) batch in [-1, 1] on the pipeline's device
        (copied as uint8, converted there)."""
        # Copied only if need be: torch cannot wrap a read-only array (one read with PIL).
        rgb = torch.from_numpy(np.require(with_channels(image, 3), requirements=("C", "W")))
        return from_uint8(rgb.to(self.device)).unsqueeze(0)
