"""Neural style transfer by pixel optimisation (Gatys et al. 2016) as a pipeline.

    pipe = GatysPipeline.from_config({"iterations": 200}, vgg_weights="auto")
    image, info = pipe(read("photo.jpg", long_side=512), [read("style.jpg", long_side=512)])

``info`` holds the final weighted losses, evaluations, seconds, pyramid sizes, the settings and
the loss network's description (random VGG weights say so there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from genart import controls
from genart.images import to_uint8
from genart.models import gatys
from genart.pipelines.optimise import OptimisationPipeline, Progress, Update, as_tensor


class GatysPipeline(OptimisationPipeline):
    """Optimise a content image's pixels towards the Gram statistics of style images."""

    FAMILY = "gatys"
    NETWORK = ("arch", "pooling", "content_layers", "style_layers")

    @staticmethod
    def loss_network(params, weights, device):
        return gatys.loss_network(params, weights, device)

    def __call__(
        self,
        content: np.ndarray | torch.Tensor,
        styles: Sequence[np.ndarray | torch.Tensor],
        progress: Progress | None = None,
        *,
        mask: np.ndarray | None = None,
        outside_style: np.ndarray | torch.Tensor | None = None,
        **overrides,
    ) -> tuple[np.ndarray, dict]:
        """``content`` (uint8 (H, W, 3)) rendered in the style of ``styles`` (any sizes);
        ``overrides`` change settings for this call. Returns the uint8 image and its info.

        ``mask`` (uint8, the content's height and width; :func:`genart.controls.mask_weights`)
        confines the style to its white region; its black region takes ``outside_style`` if
        given, else keeps the content. The settings' ``strength`` blends the optimised image
        with the content last, in pixel space (:mod:`genart.controls`), weighted by the mask
        where the black region keeps the content; ``info["losses"]`` are the optimised image's.
        """
        controls.check_regions(mask, outside_style)
        cfg = self.settings(**overrides)
        done, total = 0, cfg.iterations * cfg.scales

        def report(p: gatys.Progress) -> None:
            nonlocal done
            done += 1
            progress(Update(p.scale, cfg.scales, tuple(p.size), p.iteration, done, total,
                            p.losses, p.image))  # fmt: skip

        callback = report if progress is not None else None
        content = as_tensor(content)
        guide = None if mask is None else controls.mask_weights(mask, content.shape[-2:])
        outside = None if outside_style is None else as_tensor(outside_style)
        image, info = gatys.stylize(content, [as_tensor(s) for s in styles], cfg, self.vgg,
                                    callback, mask=guide, outside=outside)  # fmt: skip
        # Without an outside style the black region is the content's: composited by the mask.
        weight = cfg.strength if guide is None or outside is not None else cfg.strength * guide[0]
        return to_uint8(controls.blend(content.to(image.device), image, weight)), info

    def run(self, inputs: dict, progress: Progress | None = None, **overrides):
        """:meth:`__call__` with inputs by name: ``{"content": image, "styles": [images]}``."""
        return self(inputs["content"], inputs["styles"], progress, **overrides)

    def scorer(self, content, styles) -> Callable[[torch.Tensor], float]:
        """image -> this pipeline's weighted loss (``total``) of it against ``content`` and
        ``styles``, at the content's size: the yardstick that compares results made with
        other weights (a result's own loss depends on the weights that made it)."""
        content = as_tensor(content)[None].to(self.device)
        styles = [as_tensor(style)[None].to(self.device) for style in styles]
        loss_of = gatys.objective(self.vgg, content, styles, self.params)
        size = tuple(content.shape[-2:])

        def score(image: torch.Tensor) -> float:
            image = as_tensor(image)
            batch = (image if image.dim() == 4 else image[None]).to(self.device)
            with torch.no_grad():
                return float(loss_of(gatys.resize(batch.clamp(-1, 1), size))["total"])

        return score
