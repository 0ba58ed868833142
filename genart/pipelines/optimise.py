"""What the optimisation pipelines (Gatys, Deep Dream) share: settings, loss network, progress.

An optimisation pipeline is built from its family's hyper-parameters and a VGG loss network
(``from_config``), and each call optimises one image. Settings can change per call
(``pipe(content, styles, iterations=50)``) within the loss network's layers; a change of the
network itself (architecture, pooling, layers) needs another pipeline (:meth:`with_settings`
builds one, sharing the network when it can).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from genart import config, registry
from genart.data.transforms import to_float
from genart.errors import ConfigError
from genart.pipelines.base import pick_device
from genart.vgg import VGGFeatures, public_metadata


@dataclass(frozen=True)
class Update:
    """One step of an optimisation, as passed to a ``progress`` callback."""

    stage: int  # pyramid level (Gatys scale, Dream octave), 0 = coarsest
    stages: int
    size: tuple[int, int]
    iteration: int  # loss-network evaluations so far in this stage
    evaluations: int  # so far, over all stages
    total: int  # planned over all stages
    losses: dict[str, float]
    image: torch.Tensor  # the (1, 3, h, w) image being optimised, in [-1, 1] (do not modify)


Progress = Callable[[Update], None]


def as_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A uint8 (H, W, 3) array as float (3, H, W) in [-1, 1]; tensors pass through."""
    if isinstance(image, torch.Tensor):
        return image
    return torch.from_numpy(to_float(image))


class OptimisationPipeline:
    """Base of the optimisation pipelines: a family's settings and its frozen loss network."""

    FAMILY: ClassVar[str] = ""
    # Settings that shape the loss network: fixed for a pipeline (its VGG is built for them).
    NETWORK: ClassVar[tuple[str, ...]] = ("arch", "pooling")

    def __init__(self, params: Any, vgg: VGGFeatures, vgg_weights: str = "auto"):
        self.params = params
        self.vgg = vgg
        self.vgg_weights = vgg_weights  # where ``vgg`` came from: another network loads alike

    @classmethod
    def spec(cls) -> registry.OptimisationSpec:
        return registry.get(cls.FAMILY)

    @classmethod
    def settings_of(cls, values: Any = None) -> Any:
        """The family's config from a dataclass, a mapping of fields (validated) or None."""
        kind = cls.spec().config
        if values is None or isinstance(values, kind):
            return values or kind()
        return config.build(kind, dict(values), cls.FAMILY)

    @classmethod
    def from_config(cls, params: Any = None, vgg_weights: str = "auto", device="auto"):
        """A pipeline with ``params`` (config, mapping or None for the defaults) and the loss
        network they need (``vgg_weights``: auto | PATH | s3://... | random)."""
        params = cls.settings_of(params)
        vgg = cls.loss_network(params, vgg_weights, pick_device(device))
        return cls(params, vgg, vgg_weights)

    @staticmethod
    def loss_network(params: Any, weights: str, device: torch.device) -> VGGFeatures:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.vgg.scale.device

    def settings(self, **overrides: Any) -> Any:
        """This pipeline's settings with ``overrides`` (validated; not the network's)."""
        if not overrides:
            return self.params
        fixed = sorted(set(overrides) & set(self.NETWORK))
        if fixed:
            raise ConfigError(
                f"{fixed} shape the loss network of this pipeline; build another with them"
            )
        return self.settings_of(dataclasses.asdict(self.params) | overrides)

    def with_settings(self, **values: Any) -> OptimisationPipeline:
        """A pipeline with ``values`` changed, sharing this one's loss network if it fits."""
        params = self.settings_of(dataclasses.asdict(self.params) | values)
        if all(getattr(params, key) == getattr(self.params, key) for key in self.NETWORK):
            return type(self)(params, self.vgg, self.vgg_weights)
        return type(self).from_config(params, self.vgg_weights, self.device)

    def run(self, inputs: dict[str, Any], progress: Progress | None = None, **overrides):
        """``(uint8 image, info)`` for the family's named inputs (``spec.inputs``): the one
        call shape the batch runner and Tune use for every optimisation family."""
        raise NotImplementedError

    def scorer(self, *inputs: Any) -> Callable[[torch.Tensor], float]:
        """result image -> the family's score (``spec.metric``) under this pipeline's settings."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The settings and the loss network (architecture, weights file, pooling)."""
        return {"config": dataclasses.asdict(self.params), **public_metadata(self.vgg.metadata)}
