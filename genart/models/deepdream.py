"""Deep Dream (Mordvintsev, Olah & Tyka, "Inceptionism", Google Research blog, 2015).

Gradient ascent on the image to amplify what chosen VGG layers (or single channels of them, e.g.
``relu4_3:12``) respond to. As in the original notebook: work over an image pyramid ("octaves",
coarse to fine) carrying the added detail up from each scale, shift the image by a random
jitter every step (so the pattern does not lock to the pixel grid), and normalise each gradient
by its mean absolute value (a step size in pixel units, whatever the layer's scale). Blurring the
gradient (Gaussian) gives smoother, larger-scale patterns.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from genart.registry import OPTIMISATION, OptimisationSpec, register
from genart.vgg import Arch, Pooling, VGGFeatures, load_vgg


@dataclass
class DreamConfig:
    """Hyper-parameters of a dream (the defaults follow the original notebook where they apply)."""

    layers: tuple[str, ...] = ("relu4_3",)  # layer names, or "layer:channel" for one channel
    octaves: int = 4
    octave_scale: float = 1.4
    iterations: int = 10  # gradient steps per octave
    # Step in [-1, 1] pixel units on the mean-|g|-normalised gradient (the notebook's 1.5 on
    # a 0-255 scale).
    step_size: float = 0.012
    jitter: int = 32  # max random shift in pixels, each direction (<= a quarter of the side)
    smooth: float = 0.0  # sigma (pixels) of a Gaussian blur on the gradient; 0 = none
    seed: int = 0
    arch: Arch = "vgg16"
    pooling: Pooling = "max"


def parse_targets(layers: tuple[str, ...]) -> list[tuple[str, int | None]]:
    """``("relu4_3", "relu5_1:7")`` -> ``[("relu4_3", None), ("relu5_1", 7)]``."""
    targets = []
    for spec in layers:
        name, _, channel = spec.partition(":")
        targets.append((name, int(channel) if channel else None))
    return targets


def loss_network(cfg: DreamConfig, weights: str = "auto", device="cpu") -> VGGFeatures:
    """The VGG feature extractor a dream with ``cfg`` needs (truncated at its deepest layer)."""
    names = tuple(dict.fromkeys(name for name, _ in parse_targets(cfg.layers)))
    vgg = load_vgg(cfg.arch, weights, names, cfg.pooling, device)
    return vgg.use_channels_last(torch.device(device).type == "cuda")  # NHWC pays on GPUs only


def objective(vgg: VGGFeatures, image: torch.Tensor, layers: tuple[str, ...]) -> torch.Tensor:
    """What a dream maximises: the mean squared activation of each target, summed.

    The original's L2 objective (its gradient is the activations themselves) amplifies whatever
    already fires, most where it fires most; a channel narrows it to one learned feature.
    """
    features = vgg(image)
    total = image.new_zeros(())
    for name, channel in parse_targets(layers):
        act = features[name]
        if channel is not None:
            if not 0 <= channel < act.shape[1]:
                raise ValueError(f"{name} has {act.shape[1]} channels; no channel {channel}")
            act = act[:, channel]
        total = total + act.pow(2).mean()
    return total


def dream(
    image: torch.Tensor,
    cfg: DreamConfig,
    vgg: VGGFeatures,
    progress: Callable[[int, int, float, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Dream on a (3, H, W) image in [-1, 1]; returns the result and one frame per octave.

    ``progress(octave, iteration, objective, image)`` is called after every step with the
    objective of the jittered image the step started from and the (1, 3, h, w) image after the
    step (do not modify it). Frames are the image at the end of each octave (coarse to fine,
    each at its own size).
    """
    _check(cfg, vgg)
    device = vgg.scale.device
    base = image.unsqueeze(0).float().to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    pyramid = _pyramid(base, cfg, vgg)
    detail = torch.zeros_like(pyramid[0])
    frames = []
    for octave, octave_base in enumerate(pyramid):
        detail = _resize(detail, octave_base.shape[-2:])
        x = octave_base + detail
        for iteration in range(cfg.iterations):
            x, value = _ascend(x, cfg, vgg, generator)
            if progress is not None:
                progress(octave, iteration + 1, value, x)
        detail = x - octave_base
        frames.append(x[0].cpu())
    return frames[-1], frames


def info(cfg: DreamConfig, vgg: VGGFeatures) -> dict:
    """Settings and loss-network description for a result's JSON."""
    return {"config": dataclasses.asdict(cfg), **vgg.metadata}


def _ascend(x, cfg: DreamConfig, vgg: VGGFeatures, generator) -> tuple[torch.Tensor, float]:
    """One jittered, normalised gradient-ascent step."""
    # At most a quarter of the side: rolling a small octave further wraps most of it around.
    limit = min(cfg.jitter, min(x.shape[-2:]) // 4)
    dy, dx = (int(v) for v in torch.randint(-limit, limit + 1, (2,), generator=generator))
    shifted = torch.roll(x, (dy, dx), dims=(-2, -1)).detach().requires_grad_(True)
    value = objective(vgg, shifted, cfg.layers)
    (grad,) = torch.autograd.grad(value, shifted)
    if cfg.smooth > 0:
        kernel = 2 * math.ceil(3 * cfg.smooth) + 1
        grad = gaussian_blur(grad, [kernel, kernel], [cfg.smooth, cfg.smooth])
    grad = grad / grad.abs().mean().clamp_min(1e-12)
    stepped = (shifted.detach() + cfg.step_size * grad).clamp(-1, 1)
    return torch.roll(stepped, (-dy, -dx), dims=(-2, -1)), float(value.detach())


def _check(cfg: DreamConfig, vgg: VGGFeatures) -> None:
    missing = {name for name, _ in parse_targets(cfg.layers)} - set(vgg.layers)
    if missing:
        raise ValueError(f"the loss network lacks layers {sorted(missing)}; see loss_network()")
    if cfg.octave_scale <= 1:
        raise ValueError(f"octave_scale must be > 1, got {cfg.octave_scale}")


def _min_side(vgg: VGGFeatures, cfg: DreamConfig) -> int:
    """Smallest side at which the deepest target layer still has a few pixels (4)."""
    deepest = max(vgg.names.index(name) for name, _ in parse_targets(cfg.layers))
    return 4 * 2 ** sum(name.startswith("pool") for name in vgg.names[:deepest])


def octave_sizes(size: tuple[int, int], cfg: DreamConfig, vgg: VGGFeatures) -> list[tuple]:
    """The (h, w) of each octave a dream of an image of ``size`` runs, smallest first: octaves
    too small for the deepest target layer are dropped."""
    min_side = _min_side(vgg, cfg)
    sizes = [tuple(size)]
    for _ in range(cfg.octaves - 1):
        h, w = sizes[-1]
        smaller = (round(h / cfg.octave_scale), round(w / cfg.octave_scale))
        if min(smaller) < min_side:
            break
        sizes.append(smaller)
    return sizes[::-1]


def _pyramid(base: torch.Tensor, cfg: DreamConfig, vgg: VGGFeatures) -> list[torch.Tensor]:
    """Octave images from smallest to ``base`` (see :func:`octave_sizes`)."""
    return [_resize(base, size) for size in octave_sizes(base.shape[-2:], cfg, vgg)]


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


SPEC = register(
    OptimisationSpec(
        name="dream",
        config=DreamConfig,
        pipeline="genart.pipelines.dream:DreamPipeline",
        serve=OPTIMISATION,
        verbs=("dream",),
        inputs=("image",),
        metric="objective",  # the dream objective of the result, without jitter
        mode="max",
    )
)
