"""Deep Dream (Mordvintsev et al. 2015) as a pipeline.

    pipe = DreamPipeline.from_config({"layers": ("relu4_3",), "octaves": 4})
    image, frames, info = pipe(read("photo.jpg", long_side=512))

``frames`` are the image at the end of each octave, coarse to fine; ``info`` holds the dream
objective of the input and of the result (without jitter), seconds, the settings and the loss
network's description.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from genart.images import to_uint8
from genart.models import deepdream
from genart.pipelines.optimise import OptimisationPipeline, Progress, Update, as_tensor


class DreamPipeline(OptimisationPipeline):
    """Gradient ascent on an image's VGG activations, octave by octave."""

    FAMILY = "dream"
    NETWORK = ("arch", "pooling", "layers")

    @staticmethod
    def loss_network(params, weights, device):
        return deepdream.loss_network(params, weights, device)

    def __call__(
        self, image: np.ndarray | torch.Tensor, progress: Progress | None = None, **overrides
    ) -> tuple[np.ndarray, list[np.ndarray], dict]:
        """Dream on a uint8 (H, W, 3) image; ``overrides`` change settings for this call.

        Returns the uint8 result, one uint8 frame per octave, and the info.
        """
        cfg = self.settings(**overrides)
        start, source = time.perf_counter(), as_tensor(image)
        octaves = len(deepdream.octave_sizes(source.shape[-2:], cfg, self.vgg))

        def report(octave: int, iteration: int, value: float, x: torch.Tensor) -> None:
            done = octave * cfg.iterations + iteration
            progress(Update(octave, octaves, tuple(x.shape[-2:]), iteration, done,
                            cfg.iterations * octaves, {"objective": value}, x))  # fmt: skip

        callback = report if progress is not None else None
        result, frames = deepdream.dream(source, cfg, self.vgg, callback)
        seconds = round(time.perf_counter() - start, 3)
        objective = {"input": self.objective(source, cfg), "result": self.objective(result, cfg)}
        info = {"objective": objective, "seconds": seconds, **deepdream.info(cfg, self.vgg)}
        return to_uint8(result), [to_uint8(frame) for frame in frames], info

    def run(self, inputs: dict, progress: Progress | None = None, **overrides):
        """:meth:`__call__` with inputs by name (``{"image": image}``), without the frames."""
        result, _, info = self(inputs["image"], progress, **overrides)
        return result, info

    def objective(self, image: np.ndarray | torch.Tensor, cfg=None) -> float:
        """The dream objective of one image, without jitter (higher: more dreamt)."""
        image = as_tensor(image)
        batch = (image if image.dim() == 4 else image[None]).to(self.device)
        with torch.no_grad():
            return float(deepdream.objective(self.vgg, batch, (cfg or self.params).layers))

    def scorer(self, image) -> Callable[[torch.Tensor], float]:
        """result -> its dream objective (the score a sweep compares; the input plays no part)."""
        return self.objective
