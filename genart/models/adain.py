"""Arbitrary style transfer with adaptive instance normalisation (Huang & Belongie, ICCV 2017).

A frozen VGG-19 encoder ``f`` (up to ``relu4_1``) maps content and style images to features;
AdaIN (eq. 8) gives the content features the style features' channel-wise mean and standard
deviation, ``t = AdaIN(f(c), f(s))``; a learned decoder ``g`` maps ``t`` back to an image. The
decoder is trained on random (content, style) pairs with

    L = content_weight * |f(g(t)) - t|^2
        + style_weight * sum_l (|mu(phi_l(g(t))) - mu(phi_l(s))|^2
                                + |sigma(phi_l(g(t))) - sigma(phi_l(s))|^2)

over ``relu1_1 ... relu4_1`` (eqs. 11-13; squared norms as mean squared errors). One network
then stylises with any style, at any size, in one pass; ``alpha`` trades content for style,
several styles blend by interpolating their targets, and a mask confines a style to a region
of the content, with another style (or none) in the rest (sec. 7).

The encoder is not trained, so it stays out of ``nets``: checkpoints and exports hold only the
decoder, and :func:`encoder` rebuilds the VGG from ``vgg_weights`` (cached per device), in
training as in the pipeline (``genart.pipelines.adain``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genart import controls, images
from genart.data import datasets
from genart.errors import ConfigError, InputError
from genart.losses import content_loss
from genart.models.layers import ConvNormAct, UpsampleConv, adam, pad_to_multiple
from genart.registry import ARBITRARY_STYLE, StepContext, TrainedSpec, evaluating, register, unwrap
from genart.vgg import VGGFeatures, load_vgg

CONTENT_LAYER = "relu4_1"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
FEATURES = 512  # channels of VGG-19's relu4_1: the decoder's input
STRIDE = 8  # image pixels per relu4_1 position and side: VGG's three 2x poolings
# The decoder's first conv reflection-pads its input by one position a side, which needs two:
# a smaller content image is padded up to this side and the result cropped back.
MIN_CONTENT_SIDE = 2 * STRIDE
EPS = 1e-5  # added to variances before the square root: flat feature maps have sigma = 0


@dataclass
class AdaINConfig:
    """Hyper-parameters of an AdaIN decoder (YAML section ``adain``)."""

    # Style images: a folder or s3:// prefix; "" = the style/ folder beside data.uri's content/.
    style_uri: str = ""
    content_weight: float = 1.0
    style_weight: float = 10.0  # lambda (the paper trains with 10)
    lr: float = 1e-4  # Adam's step, as in the paper
    alpha: float = 1.0  # content-style trade-off of the sample grids (the pipeline's default)
    vgg_weights: str = "auto"  # auto | PATH | s3://... | random (tests and demos only)
    width: int = 64  # channels of the decoder's last block (the mirrored VGG: 64)

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"'adain.alpha' must be in [0, 1], got {self.alpha!r}")
        if self.width < 1:
            raise ConfigError(f"'adain.width' must be >= 1, got {self.width!r}")


# --- AdaIN -------------------------------------------------------------------------------


def channel_stats(
    features: torch.Tensor, region: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation of (B, C, H, W), as (B, C, 1, 1);
    with ``region`` ((B or 1, 1, H, W) weights in [0, 1]), over the positions it weighs."""
    if region is None:
        var, mean = torch.var_mean(features, dim=(2, 3), keepdim=True, correction=0)
    else:
        total = region.sum(dim=(2, 3), keepdim=True).clamp_min(EPS)  # an empty region: no NaN
        mean = (features * region).sum(dim=(2, 3), keepdim=True) / total
        var = ((features - mean).square() * region).sum(dim=(2, 3), keepdim=True) / total
    return mean, (var + EPS).sqrt()


def adain(
    content: torch.Tensor, style: torch.Tensor, region: torch.Tensor | None = None
) -> torch.Tensor:
    """Content features normalised per channel to the style features' mean and std (eq. 8);
    with ``region``, the content's statistics are those of the region (sec. 7)."""
    c_mean, c_std = channel_stats(content, region)
    s_mean, s_std = channel_stats(style)
    return (content - c_mean) / c_std * s_std + s_mean


def blend(
    content: torch.Tensor, styles: Sequence[torch.Tensor], weights=None, region=None
) -> torch.Tensor:
    """The AdaIN target of ``content`` features for several styles: the weighted mean of the
    targets for each (sec. 7); ``weights`` (one per style, >= 0) are normalised, None = equal;
    ``region`` as in :func:`adain`."""
    weights = blend_weights(len(styles), weights)
    return sum(w * adain(content, style, region) for w, style in zip(weights, styles))


def regional(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    weights,
    mask: torch.Tensor,
    outside: torch.Tensor | None = None,
) -> torch.Tensor:
    """Spatial control (sec. 7): the AdaIN target of ``content`` features in the ``styles``
    where ``mask`` ((B or 1, 1, H, W) in [0, 1] at any size, averaged down to the features')
    is white, and in the ``outside`` style features where it is black, each region normalised
    by its own statistics; without ``outside``, the black region keeps the content features."""
    inside = F.adaptive_avg_pool2d(mask, content.shape[-2:])
    target = blend(content, styles, weights, inside)
    rest = content if outside is None else adain(content, outside, 1 - inside)
    return torch.lerp(rest, target, inside)


def blend_weights(n: int, weights=None) -> list[float]:
    """``n`` blend weights that sum to 1 (equal when None); InputError for unusable ones."""
    if n < 1:
        raise InputError("need at least one style image")
    weights = [1.0] * n if weights is None or len(weights) == 0 else [float(w) for w in weights]
    if len(weights) != n:
        raise InputError(f"{len(weights)} blend weights for {n} styles")
    if min(weights) < 0 or sum(weights) <= 0:
        raise InputError(f"blend weights must be >= 0 with a positive sum, got {weights}")
    return [w / sum(weights) for w in weights]


def mix(content: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    """The decoder input for content-style trade-off ``alpha`` (eq. 14): 0 = content features."""
    return (1 - alpha) * content + alpha * target


# --- networks ------------------------------------------------------------------------------

_ENCODERS: dict[tuple[str, str], VGGFeatures] = {}


def encoder(weights: str, device: str | torch.device = "cpu") -> VGGFeatures:
    """The frozen VGG-19 encoder returning ``STYLE_LAYERS`` (built once per device and weights)."""
    key = (str(torch.device(device)), weights)
    if key not in _ENCODERS:
        _ENCODERS[key] = load_vgg("vgg19", weights, STYLE_LAYERS, "max", device)
    return _ENCODERS[key]


class Decoder(nn.Module):
    """The encoder mirrored, as in the paper: relu4_1 features (B, 512, h, w) -> (B, 3, 8h, 8w).

    Pooling layers become nearest upsampling and every conv is 3x3 with reflection padding
    (zero padding leaves border artefacts); no normalisation, which would fix each image's
    statistics to a single style's. The output is not squashed (no tanh), as in the paper;
    callers clamp it to [-1, 1].
    """

    def __init__(self, width: int = 64):
        super().__init__()
        conv = {"norm": "none", "act": "relu", "padding_mode": "reflect"}
        w = width
        self.body = nn.Sequential(
            ConvNormAct(FEATURES, 4 * w, 3, **conv),
            UpsampleConv(4 * w, 4 * w, 3, **conv),
            *[ConvNormAct(4 * w, 4 * w, 3, **conv) for _ in range(2)],
            ConvNormAct(4 * w, 2 * w, 3, **conv),
            UpsampleConv(2 * w, 2 * w, 3, **conv),
            ConvNormAct(2 * w, w, 3, **conv),
            UpsampleConv(w, w, 3, **conv),
            ConvNormAct(w, 3, 3, norm="none", act="none", padding_mode="reflect"),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)


# --- the spec hooks ------------------------------------------------------------------------


def build(p: AdaINConfig, data=None) -> dict[str, nn.Module]:
    """The one trainable net: the ``decoder`` (the encoder is frozen VGG, rebuilt on use)."""
    if data is not None and data.channels != 3:
        raise ConfigError(
            f"adain's VGG encoder takes RGB images: data.channels=3, not {data.channels}"
        )
    return {"decoder": Decoder(p.width)}


def optimizers(nets, p: AdaINConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam (the paper: lr 1e-4)."""
    return {"decoder": adam([nets["decoder"]], p.lr, (0.9, 0.999))}


def losses(decoder: nn.Module, vgg: VGGFeatures, p: AdaINConfig, content, style):
    """The weighted ``content`` and ``style`` loss terms of decoding the AdaIN targets of a
    (content, style) batch, and their sum ``loss`` (fp32 even under autocast)."""
    c, s = loss_terms(decoder, vgg, content, style)
    terms = {"content": p.content_weight * c, "style": p.style_weight * s}
    terms["loss"] = terms["content"] + terms["style"]
    return terms


def loss_terms(decoder: nn.Module, vgg: VGGFeatures, content, style):
    """The unweighted content loss (eq. 12) and style loss (eq. 13) of decoding the AdaIN
    targets of a (content, style) batch, as fp32 scalars even under autocast."""
    with torch.no_grad():
        fc = vgg(content, (CONTENT_LAYER,))[CONTENT_LAYER]
        fs = vgg(style)
        target = adain(fc, fs[CONTENT_LAYER])
    out = vgg(decoder(target))  # the gradients reach the decoder through the frozen VGG
    with torch.autocast(content.device.type, enabled=False):
        c = content_loss(out[CONTENT_LAYER].float(), target.float())
        s = c.new_zeros(())
        for layer in STYLE_LAYERS:
            mean, std = channel_stats(out[layer].float())
            s_mean, s_std = channel_stats(fs[layer].float())
            s = s + F.mse_loss(mean, s_mean) + F.mse_loss(std, s_std)
    return c, s


def train_step(nets, opts, batch, p: AdaINConfig, ctx: StepContext) -> dict[str, torch.Tensor]:
    """One Adam step of the decoder on a batch of ``content`` images paired with ``style`` ones."""
    content, style = batch["content"], batch["style"]
    terms = losses(nets["decoder"], encoder(p.vgg_weights, content.device), p, content, style)
    ctx.update(opts["decoder"], terms["loss"])
    return {k: v.detach() for k, v in terms.items()}


SAMPLE_PAIRS = 8  # rows of a sample grid (its inputs are saved in every checkpoint)


def sample_inputs(p: AdaINConfig, first_batch, n: int, generator=None) -> dict[str, torch.Tensor]:
    """The first (content, style) pairs of the run: stylised again in every sample grid."""
    k = min(n, SAMPLE_PAIRS)
    return {
        key: first_batch[key][:k].detach().float().cpu().clone() for key in ("content", "style")
    }


@torch.no_grad()
def stylize(
    decoder: nn.Module,
    vgg: VGGFeatures,
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    alpha: float = 1.0,
    weights: Sequence[float] | None = None,
    mask: torch.Tensor | None = None,
    outside: torch.Tensor | None = None,
) -> torch.Tensor:
    """``content`` (B, 3, H, W) in [-1, 1], any H and W, in a blend of ``styles`` (each a batch
    of B or 1 images, any size): float32 (B, 3, H, W) in [-1, 1] on ``content``'s device.

    ``mask`` ((B or 1, 1, H, W) in [0, 1]) confines the styles to its white region, and
    ``outside`` (a style batch) fills its black region, else the content's features do
    (:func:`regional`).

    The content is padded (reflection; edge replication where the pad is wider than the
    image) to a multiple of ``STRIDE``, at least ``MIN_CONTENT_SIDE``, and the result cropped
    back: the decoder gives ``STRIDE`` pixels per feature position and needs two positions a
    side, so an 8x8 content works too. A style under ``STRIDE`` a side is padded up to it.
    """
    if not 0.0 <= alpha <= 1.0:  # checked before any work, as the weights are
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    weights = blend_weights(len(styles), weights)
    controls.check_regions(mask, outside)
    height, width = content.shape[-2:]
    padded = pad_to_multiple(content, STRIDE, MIN_CONTENT_SIDE)
    fc = vgg(padded, (CONTENT_LAYER,))[CONTENT_LAYER]

    def style_features(style: torch.Tensor) -> torch.Tensor:
        # A style under STRIDE pixels a side would pool away to nothing: padded to one position.
        return vgg(pad_to_multiple(style, 1, STRIDE), (CONTENT_LAYER,))[CONTENT_LAYER]

    fs = [style_features(style) for style in styles]
    if mask is None:
        target = blend(fc, fs, weights)
    else:
        fo = None if outside is None else style_features(outside)
        target = regional(fc, fs, weights, pad_to_multiple(mask, STRIDE, MIN_CONTENT_SIDE), fo)
    with evaluating(decoder) as module:
        out = module(mix(fc, target, alpha))
    return out[..., :height, :width].float().clamp(-1, 1)


def sample(nets, p: AdaINConfig, inputs) -> torch.Tensor:
    """One row per pair: content | style | stylised at ``alpha``, side by side (n, 3, H, 3W)."""
    decoder = unwrap(nets["decoder"])
    device = next(decoder.parameters()).device
    content, style = (inputs[k].to(device) for k in ("content", "style"))
    out = stylize(decoder, encoder(p.vgg_weights, device), content, [style], p.alpha)
    return torch.cat([content, style, out], dim=-1).cpu()


# The judge of evaluate: the paper's lambda, whatever weights a run trains with, so that runs
# with different style weights (a Tune sweep) are scored on one scale.
JUDGE_STYLE_WEIGHT = 10.0


@torch.no_grad()
def evaluate(nets, p: AdaINConfig, reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """Unweighted content and style losses over the reference pairs (unseen contents and
    styles where the dataset has a ``test/`` split), a chunk at a time, and ``adain``:
    content + ``JUDGE_STYLE_WEIGHT`` x style, the same judge for every run's weights."""
    decoder = unwrap(nets["decoder"])
    device = next(decoder.parameters()).device
    vgg = encoder(p.vgg_weights, device)
    content_total = style_total = 0.0
    for content, style in images.float_chunks(reference["content"], reference["style"]):
        c, s = loss_terms(decoder, vgg, content.to(device), style.to(device))
        content_total += float(c) * len(content)
        style_total += float(s) * len(content)
    n = len(reference["content"])
    content_mean, style_mean = content_total / n, style_total / n
    return {
        "adain": content_mean + JUDGE_STYLE_WEIGHT * style_mean,
        "adain_content": content_mean,
        "adain_style": style_mean,
    }


def held_out(cfg, n: int):
    """Unseen (content, style) pairs of the dataset's ``test/`` split, when it has one."""
    return datasets.content_style_held_out(cfg, n)


def dataset(cfg):
    """Columns ``content`` and ``style`` (``datasets.content_style``), styles from
    ``adain.style_uri`` when set."""
    return datasets.content_style(cfg, cfg.params.style_uri)


SPEC = register(
    TrainedSpec(
        name="adain",
        config=AdaINConfig,
        pipeline="genart.pipelines.adain:AdaINPipeline",
        serve=ARBITRARY_STYLE,
        verbs=("stylize adain", "onnx"),
        build=build,
        optimizers=optimizers,
        train_step=train_step,
        dataset=dataset,
        held_out=held_out,
        sample_inputs=sample_inputs,
        sample=sample,
        evaluate=evaluate,
        export=("decoder",),
        graph_safe=lambda p: True,
        metric="adain",
        mode="min",
    )
)
