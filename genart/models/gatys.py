"""Neural style transfer by pixel optimisation (Gatys, Ecker & Bethge, CVPR 2016).

The image itself is optimised so that its VGG features match a content image's (feature
reconstruction, eq. 1) and its feature Gram matrices match the style images' (texture
statistics, eqs. 3-5), plus total variation for smoothness:

    L = alpha * L_content + beta * sum_l w_l * L_style,l + gamma * L_tv

Options from the follow-up work: luminance-only transfer to keep the content's colours (Gatys et
al. 2016, "Preserving Color in Neural Artistic Style Transfer", sec. 2.2), coarse-to-fine
optimisation over an image pyramid (Gatys et al., CVPR 2017, sec. 5), spatial control by a
mask through guided Gram matrices (same paper) and blends of several styles.

This is not a Ray Train job: it optimises one image, so it registers an ``OptimisationSpec``
(run by ``genart.pipelines.gatys``). Every target (content features, blended style Grams) is
computed once per scale; each iteration is one VGG pass, truncated at the deepest layer any
loss needs, plus its backward.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from genart import controls
from genart.controls import PreserveColor, keep_colours, to_luma_chroma
from genart.losses import content_loss, gram_matrix, style_loss, tv_loss
from genart.optim import lbfgs
from genart.registry import OPTIMISATION, OptimisationSpec, register
from genart.train.graphs import CapturedStep
from genart.vgg import Arch, Pooling, VGGFeatures, load_vgg


@dataclass
class GatysConfig:
    """Hyper-parameters of Gatys style transfer (defaults follow the paper, VGG-19, avg pooling)."""

    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_layer_weights: tuple[float, ...] = ()  # w_l, one per style layer; () = 1/L each
    content_weight: float = 1.0  # alpha
    style_weight: float = 1e6  # beta (the PyTorch tutorial's order, same Gram normalisation)
    tv_weight: float = 0.0  # gamma
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float | None = None  # None: 1.0 for L-BFGS, 0.02 for Adam (pixels are in [-1, 1])
    iterations: int = 300  # loss-network evaluations per scale (one forward + backward each)
    init: Literal["content", "style", "noise"] = "content"
    style_blend: tuple[float, ...] = ()  # one weight per style image; () = equal weights
    preserve_color: PreserveColor = "none"  # luminance-only transfer
    # Blend of the result with the content in pixel space, applied by the pipeline after the
    # optimisation (genart.controls): 0 = the content, 1 = the optimised image.
    strength: float = 1.0
    scales: int = 1  # coarse-to-fine: optimise at size / scale_factor**k, k = scales-1 ... 0
    scale_factor: float = 2.0
    style_scale: float = 1.0  # style images' long side relative to the content's
    seed: int = 0  # white-noise initialisation
    # bf16: the loss network runs under bfloat16 autocast (less time per evaluation where the
    # hardware has native bf16: recent GPUs, CPUs with AVX512-BF16); the image, the Grams and
    # the losses stay fp32. auto: bf16 on GPUs that support it, fp32 on CPUs.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # On a GPU, record one loss evaluation (forward + backward) as a CUDA graph and replay it:
    # an evaluation is a few hundred short kernels, and launching them costs more than
    # running them. No effect on CPU.
    cuda_graphs: bool = True
    arch: Arch = "vgg19"
    pooling: Pooling = "avg"  # Gatys et al. replaced max by average pooling (sec. 2)

    def __post_init__(self):
        controls.check(self.strength, self.preserve_color)  # before minutes of optimisation


@dataclass
class Progress:
    """One loss-network evaluation, as passed to a ``progress`` callback."""

    scale: int  # 0 = coarsest
    size: tuple[int, int]
    iteration: int  # evaluations so far at this scale
    losses: dict[str, float]  # weighted terms: content, style, tv, total
    image: torch.Tensor  # the (1, 3, H, W) image being optimised (do not modify)


@dataclass(frozen=True)
class Regions:
    """Spatial control: a (1, 1, H, W) ``mask`` in [0, 1] guiding the style loss, and the style
    image matched ``outside`` it; None and None = the whole image in the styles."""

    mask: torch.Tensor | None = None
    outside: torch.Tensor | None = None


def loss_network(cfg: GatysConfig, weights: str = "auto", device="cpu") -> VGGFeatures:
    """The VGG feature extractor ``cfg`` needs, truncated at its deepest content or style layer."""
    layers = (*cfg.content_layers, *cfg.style_layers)
    vgg = load_vgg(cfg.arch, weights, layers, cfg.pooling, device)
    # NHWC convolutions help on GPUs; with oneDNN on CPU they are no faster than NCHW.
    return vgg.use_channels_last(torch.device(device).type == "cuda")


def stylize(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    cfg: GatysConfig,
    vgg: VGGFeatures,
    progress: Callable[[Progress], None] | None = None,
    mask: torch.Tensor | None = None,
    outside: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Render ``content`` (3, H, W) in [-1, 1] in the style of ``styles`` (any sizes).

    ``mask`` ((1, 1, H, W) weights in [0, 1], :func:`genart.controls.mask_weights`) confines
    the style loss to its white region: the Gram matrices matched are guided by the mask,
    resized to each style layer (Gatys et al. 2017). ``outside``, a second style image, is
    then matched in the black region, guided by ``1 - mask``; without it the black region is
    held to the content alone (the pipeline composites it with the content by the mask).

    ``progress`` receives a :class:`Progress` after every loss-network evaluation. Returns the
    (3, H, W) image in [-1, 1] and an info dict: the final weighted losses of the returned image
    (with colour preservation: of the luminance image that was optimised), evaluations,
    seconds, the pyramid sizes, the config and ``vgg.metadata``.
    """
    _check(cfg, vgg, len(styles))
    controls.check_regions(mask, outside)
    start = time.perf_counter()
    device = vgg.scale.device
    content = _as_batch(content).to(device)
    styles = [_as_batch(style).to(device) for style in styles]
    regions = Regions(
        None if mask is None else mask.float().to(device),
        None if outside is None else _as_batch(outside).to(device),
    )
    if cfg.preserve_color == "none":
        image, losses, evaluations, sizes = _coarse_to_fine(
            content, styles, cfg, vgg, progress, regions
        )
    else:
        luma = to_luma_chroma(content, cfg.preserve_color)[0]

        def grey_style(style: torch.Tensor) -> torch.Tensor:
            return _grey(match_luma(to_luma_chroma(style, cfg.preserve_color)[0], luma))

        if regions.outside is not None:
            regions = Regions(regions.mask, grey_style(regions.outside))
        grey, losses, evaluations, sizes = _coarse_to_fine(
            _grey(luma), [grey_style(s) for s in styles], cfg, vgg, progress, regions
        )
        image = keep_colours(grey, content, cfg.preserve_color)
    info = {
        "losses": losses,
        "evaluations": evaluations,
        "seconds": round(time.perf_counter() - start, 3),
        "sizes": sizes,
        "config": dataclasses.asdict(cfg),
        **vgg.metadata,
    }
    return image.clamp(-1, 1)[0].cpu(), info


def match_luma(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Shift and scale ``source`` luma to the reference's mean and std (Gatys 2016b, eq. 1)."""
    scale = reference.std() / source.std().clamp_min(1e-6)
    return (source - source.mean()) * scale + reference.mean()


def _grey(luma: torch.Tensor) -> torch.Tensor:
    """Luma in [0, 1] -> a grey RGB image in [-1, 1] (VGG takes three channels)."""
    return (luma * 2 - 1).expand(-1, 3, -1, -1)


def _check(cfg: GatysConfig, vgg: VGGFeatures, n_styles: int) -> None:
    missing = set(cfg.content_layers + cfg.style_layers) - set(vgg.layers)
    if missing:
        raise ValueError(f"the loss network lacks layers {sorted(missing)}; see loss_network()")
    if not n_styles:
        raise ValueError("at least one style image is needed")
    if cfg.style_blend and len(cfg.style_blend) != n_styles:
        raise ValueError(f"style_blend has {len(cfg.style_blend)} weights for {n_styles} styles")
    if cfg.style_layer_weights and len(cfg.style_layer_weights) != len(cfg.style_layers):
        raise ValueError("style_layer_weights needs one weight per style layer")


def _as_batch(image: torch.Tensor) -> torch.Tensor:
    return (image if image.dim() == 4 else image.unsqueeze(0)).float()


def _coarse_to_fine(content, styles, cfg, vgg, progress, regions: Regions = Regions()):
    """Optimise at each pyramid size, starting each from the previous result upsampled."""
    min_side = _min_side(vgg)
    sizes = _pyramid(tuple(content.shape[-2:]), cfg, min_side)
    image, evaluations = None, 0

    def style_at(style: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize(style, _style_size(style, size, cfg.style_scale, min_side))

    for scale, size in enumerate(sizes):
        scaled = resize(content, size)
        scaled_styles = [style_at(s, size) for s in styles]
        scaled_regions = Regions(
            None if regions.mask is None else resize(regions.mask, size),
            None if regions.outside is None else style_at(regions.outside, size),
        )
        loss_of = objective(vgg, scaled, scaled_styles, cfg, scaled_regions)
        start = _initial(cfg, scaled, scaled_styles) if image is None else resize(image, size)

        def report(iteration, terms, x, scale=scale, size=size):
            if progress is not None:
                values = {k: float(v) for k, v in terms.items()}
                progress(Progress(scale, size, iteration, values, x))

        image, count = _optimise(start, loss_of, cfg, report)
        evaluations += count
    with torch.no_grad():
        losses = {k: float(v) for k, v in loss_of(image.clamp(-1, 1)).items()}
    return image, losses, evaluations, [list(size) for size in sizes]


def objective(
    vgg, content, styles, cfg, regions: Regions = Regions()
) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """image -> its weighted loss terms (``content``, ``style``, ``tv``, ``total``) against
    ``content`` and ``styles`` (batches of one), every target computed here, once; with
    ``regions``, the style terms of the guided regions (see :func:`stylize`)."""
    with torch.no_grad():
        guided = regions.mask is not None
        layers = cfg.content_layers + (cfg.style_layers if guided else ())
        features = _features(vgg, content, cfg, layers)
        content_targets = {k: features[k] for k in cfg.content_layers}
        blend = _normalised(cfg.style_blend or [1.0] * len(styles))
        # (guides per layer or None, target Grams per layer) for each region.
        targets = [(_guides(regions.mask, features, cfg), _grams(vgg, styles, blend, cfg))]
        if regions.outside is not None:
            outside = _grams(vgg, [regions.outside], [1.0], cfg)
            targets.append((_guides(1 - regions.mask, features, cfg), outside))
    n = len(cfg.style_layers)
    layer_weights = cfg.style_layer_weights or (1.0 / n,) * n

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = _features(vgg, image, cfg)
        c = sum(content_loss(features[k], v) for k, v in content_targets.items())
        s = sum(
            w * style_loss(features[k], grams[k], None if guides is None else guides[k])
            for guides, grams in targets
            for k, w in zip(cfg.style_layers, layer_weights)
        )
        terms = {
            "content": cfg.content_weight * c / len(content_targets),
            "style": cfg.style_weight * s,
            "tv": cfg.tv_weight * tv_loss(image) if cfg.tv_weight else image.new_zeros(()),
        }
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms

    return objective


def _grams(vgg: VGGFeatures, styles, blend: Sequence[float], cfg: GatysConfig) -> dict:
    """Each style layer's target Gram: the ``blend``-weighted mean of the styles' Grams.

    Blending Gram targets is exact: for weights summing to 1,
    sum_i b_i ||G - G_i||^2 = ||G - sum_i b_i G_i||^2 + const, so one style loss per layer
    serves any number of style images.
    """
    grams = {layer: 0.0 for layer in cfg.style_layers}
    for weight, style in zip(blend, styles):
        features = _features(vgg, style, cfg, cfg.style_layers)
        for layer in cfg.style_layers:
            grams[layer] = grams[layer] + weight * gram_matrix(features[layer])
    return grams


def _guides(mask, features: dict[str, torch.Tensor], cfg: GatysConfig) -> dict | None:
    """The mask averaged down to each style layer's feature map (None without a mask): a
    position's weight is the share of the mask over the pixels it pools."""
    if mask is None:
        return None
    return {k: F.adaptive_avg_pool2d(mask, features[k].shape[-2:]) for k in cfg.style_layers}


def _features(vgg: VGGFeatures, images, cfg: GatysConfig, layers=None) -> dict[str, torch.Tensor]:
    """VGG activations as fp32; in bf16 precision the convolutions run in bfloat16."""
    bf16 = cfg.precision == "bf16" or (
        cfg.precision == "auto" and images.is_cuda and torch.cuda.is_bf16_supported()
    )
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        features = vgg(images, layers)
    return {k: v.float() for k, v in features.items()}


def _optimise(start, objective, cfg, report) -> tuple[torch.Tensor, int]:
    """Minimise ``objective`` over the pixels for ``cfg.iterations`` evaluations."""
    # Contiguous NCHW: L-BFGS flattens the gradient with view(-1), and gradients take the
    # parameter's layout (a decoded image is often a channels-last view).
    image = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    count, initial = 0, None

    def evaluate(_: dict) -> dict[str, torch.Tensor]:
        """Loss terms at the projected image; the gradient is left in ``image.grad``."""
        nonlocal initial
        # Evaluate at the nearest valid image (projection, as the PyTorch tutorial does): the
        # result is clamped in the end anyway, and its loss is what counts.
        with torch.no_grad():
            image.clamp_(-1, 1)
        image.grad = None
        terms = objective(image)
        # Minimise total / initial total: L-BFGS's thresholds are absolute (it skips curvature
        # pairs with y.s < 1e-10), and the loss scale swings by orders of magnitude with the
        # weights (random VGG features are tiny), so a unit start makes it scale-invariant.
        initial = terms["total"].detach().clamp_min(1e-30) if initial is None else initial
        (terms["total"] / initial).backward()
        return {k: v.detach() for k, v in terms.items()}

    # Replays write the same gradient and term tensors: L-BFGS copies what it keeps, and
    # ``report`` reads the terms before the next evaluation.
    run = CapturedStep(evaluate) if cfg.cuda_graphs and image.is_cuda else evaluate

    def closure() -> None:
        nonlocal count
        terms = run({})
        count += 1
        report(count, terms, image.detach())

    if cfg.optimizer == "lbfgs":
        # torch.optim.LBFGS's algorithm without its ~200 host syncs per iteration (genart.optim).
        # It runs the whole budget with no stopping thresholds: the loss scale depends on the
        # weights (random VGG features are tiny), so absolute thresholds end some runs early.
        lbfgs(image, closure, cfg.iterations, lr=cfg.lr or 1.0)
    else:
        optimizer = torch.optim.Adam([image], lr=cfg.lr or 0.02)
        for _ in range(cfg.iterations):
            closure()  # leaves the gradient in image.grad
            optimizer.step()
    return image.detach().clamp(-1, 1), count


def _initial(cfg, content, styles) -> torch.Tensor:
    if cfg.init == "content":
        return content
    if cfg.init == "style":
        return resize(styles[0], tuple(content.shape[-2:]))
    generator = torch.Generator().manual_seed(cfg.seed)
    noise = torch.rand(content.shape, generator=generator) * 2 - 1
    return noise.to(content.device)


def _normalised(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"blend weights must sum to a positive number, got {list(weights)}")
    return [w / total for w in weights]


def _min_side(vgg: VGGFeatures) -> int:
    """Smallest image side whose deepest requested activation still has one pixel."""
    return 2 ** sum(name.startswith("pool") for name in vgg.names)


def _pyramid(size: tuple[int, int], cfg: GatysConfig, min_side: int) -> list[tuple[int, int]]:
    """Image sizes from coarsest to the full ``size``, each side at least ``min_side``."""
    h, w = size
    factors = [cfg.scale_factor**k for k in range(cfg.scales - 1, -1, -1)]
    return [(max(min_side, round(h / f)), max(min_side, round(w / f))) for f in factors]


def _style_size(style, size: tuple[int, int], scale: float, min_side: int) -> tuple[int, int]:
    """Keep the style's aspect ratio; its long side = the content's long side times ``scale``."""
    h, w = style.shape[-2:]
    ratio = max(size) * scale / max(h, w)
    return max(min_side, round(h * ratio)), max(min_side, round(w * ratio))


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a (B, C, H, W) batch (no-op at the same size)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


SPEC = register(
    OptimisationSpec(
        name="gatys",
        config=GatysConfig,
        pipeline="genart.pipelines.gatys:GatysPipeline",
        serve=OPTIMISATION,
        verbs=("stylize gatys", "stylize gatys-batch"),
        inputs=("content", "styles"),
        # The base settings' weighted loss of a result (see GatysPipeline.reference): a trial's
        # own loss depends on the weights being tuned, so it cannot compare trials.
        metric="reference_loss",
        mode="min",
    )
)
