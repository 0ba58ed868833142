"""Fast neural style (Johnson, Alahi & Fei-Fei, ECCV 2016) as a registered, Ray-trainable model.

A feed-forward image transformation network learns one style by minimising the perceptual loss
against a frozen VGG: feature reconstruction at ``relu2_2`` (eq. 2) plus Gram-matrix style
reconstruction over ``relu1_2 ... relu4_3`` (eq. 3-5) against the style image, and total
variation (sec. 3.3). Afterwards stylising is one forward pass, at any image size.

The VGG loss network is not trained, so it stays out of ``nets``: the loop checkpoints (and
``genart export`` ships) every net's state_dict, and VGG-16 up to relu4_3 would add ~30 MB to
each. Instead :func:`perceptual_loss` builds it lazily, with the style's Gram targets, once per
(device, config) in a module-level cache: once per Ray Train worker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genart import images
from genart.data import datasets
from genart.errors import ConfigError
from genart.losses import content_loss, gram_matrix, style_loss, tv_loss
from genart.models.layers import ConvNormAct, ResidualBlock, UpsampleConv, adam, forward_any_size
from genart.registry import IMAGE, StepContext, TrainedSpec, register, unwrap
from genart.vgg import VGGFeatures, load_vgg


@dataclass
class FastStyleConfig:
    """Hyper-parameters of one fast-style network (YAML section ``fast_style``)."""

    style_image: str = ""  # the style to learn: local path or URI (s3://...) every worker reads
    style_size: int = 256  # the style image is resized so its long side is this (0 = as is)
    content_weight: float = 1.0
    # PyTorch's fast_neural_style example uses the same Gram normalisation with a style/content
    # ratio of 1e5 for ImageNet VGG-16.
    style_weight: float = 1e5
    tv_weight: float = 0.0
    content_layer: str = "relu2_2"
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    style_layer_weights: tuple[float, ...] = ()  # one per style layer; () = equal (sum to 1)
    lr: float = 1e-3
    vgg_arch: Literal["vgg16", "vgg19"] = "vgg16"
    vgg_weights: str = "auto"  # auto | PATH | s3://... | random (tests and demos only)
    vgg_pooling: Literal["max", "avg"] = "max"
    # The transformer network: "johnson" (Johnson et al., ~1.7 M parameters at width 32) or
    # "lite" (a sixteenth of the multiply-adds, for CPU inference; see LiteTransformerNet).
    arch: Literal["johnson", "lite"] = "johnson"
    width: int = 32  # channels of the first layer (Johnson et al.: 32; lite: most layers)
    residual_blocks: int = 5


# Every hidden conv of the transformer networks, and their tanh output conv.
CONV = {"norm": "instance", "act": "relu", "padding_mode": "reflect"}
OUTPUT = {"norm": "none", "act": "tanh", "padding_mode": "reflect"}


class TransformerNet(nn.Module):
    """Johnson et al.'s image transformation network (supplementary material, Table 1).

    Reflection padding, instance norm (Ulyanov et al. 2016: much better stylisation than batch
    norm) and upsample-then-conv decoding (Odena et al. 2016: no checkerboard artefacts). Maps
    (B, 3, H, W) in [-1, 1] to the same range with tanh; H and W must be multiples of 4 (see
    ``layers.forward_any_size`` for other sizes).
    """

    stride = 4  # input sides must be multiples of this (two stride-2 downsamplings)

    def __init__(self, width: int = 32, residual_blocks: int = 5):
        super().__init__()
        self.body = self.layers(width, residual_blocks)

    @staticmethod
    def layers(width: int, residual_blocks: int) -> nn.Sequential:
        """The network's layers, input to output (a subclass's architecture overrides this)."""
        return nn.Sequential(
            ConvNormAct(3, width, 9, **CONV),
            ConvNormAct(width, 2 * width, 3, stride=2, **CONV),
            ConvNormAct(2 * width, 4 * width, 3, stride=2, **CONV),
            *[ResidualBlock(4 * width) for _ in range(residual_blocks)],
            UpsampleConv(4 * width, 2 * width, 3, **CONV),
            UpsampleConv(2 * width, width, 3, **CONV),
            ConvNormAct(width, 3, 9, **OUTPUT),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class LiteTransformerNet(TransformerNet):
    """A small transformation network for real-time stylisation on CPUs (``arch: lite``).

    Johnson et al.'s layout with the cost moved off the full-resolution grid, where a CPU
    spends most of its time: ``width`` channels (no 2x/4x widening), a strided 5x5 first conv
    instead of the full-resolution 9x9 one, the residual blocks at a quarter of the
    resolution, and a last upsampling layer of ``width / 2`` channels straight into the
    3-channel output conv, the only conv at full resolution (a ``width``-channel input there
    doubled the whole network's CPU time). At width 32 with 5 residual blocks: about 110 k
    parameters and a sixteenth of Johnson's multiply-adds per pixel.
    """

    @staticmethod
    def layers(width: int, residual_blocks: int) -> nn.Sequential:
        return nn.Sequential(
            ConvNormAct(3, width, 5, stride=2, **CONV),
            ConvNormAct(width, width, 3, stride=2, **CONV),
            *[ResidualBlock(width) for _ in range(residual_blocks)],
            UpsampleConv(width, width // 2, 3, **CONV),
            UpsampleConv(width // 2, 3, 5, **OUTPUT),
        )


# The networks ``fast_style.arch`` chooses between (the export's saved config rebuilds its own).
ARCHS: dict[str, type[TransformerNet]] = {"johnson": TransformerNet, "lite": LiteTransformerNet}


# --- the perceptual loss ----------------------------------------------------------------------


class PerceptualLoss:
    """Johnson et al.'s loss against one style: a frozen VGG and the style's Gram targets."""

    def __init__(self, p: FastStyleConfig, device: torch.device):
        layers = (p.content_layer, *p.style_layers)
        self.vgg: VGGFeatures = load_vgg(p.vgg_arch, p.vgg_weights, layers, p.vgg_pooling, device)
        self.p = p
        n = len(p.style_layers)
        self.layer_weights = p.style_layer_weights or (1.0 / n,) * n
        if not p.style_image:
            raise ConfigError("no style image: set fast_style.style_image=PATH")
        style = images.read_tensor(p.style_image, 3, p.style_size).unsqueeze(0).to(device)
        with torch.no_grad():
            features = self.vgg(style)
        self.grams = {k: gram_matrix(features[k].float()) for k in p.style_layers}

    def __call__(self, stylised: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted loss terms (``content``, ``style``, ``tv``) and their sum ``loss``."""
        p = self.p
        with torch.no_grad():  # the content target only needs the layers up to relu2_2
            target = self.vgg(content, layers=(p.content_layer,))[p.content_layer]
        features = self.vgg(stylised)
        # Losses in fp32 even under autocast: Gram sums over H*W products overflow fp16.
        with torch.autocast(stylised.device.type, enabled=False):
            c = content_loss(features[p.content_layer].float(), target.float())
            s = sum(
                w * style_loss(features[k].float(), self.grams[k])
                for k, w in zip(p.style_layers, self.layer_weights)
            )
            terms = {"content": p.content_weight * c, "style": p.style_weight * s}
            terms["tv"] = (
                p.tv_weight * tv_loss(stylised.float()) if p.tv_weight else c.new_zeros(())
            )
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        return terms


_LOSS_CACHE: dict[tuple, PerceptualLoss] = {}


def perceptual_loss(p: FastStyleConfig, device: torch.device) -> PerceptualLoss:
    """The cached :class:`PerceptualLoss` for ``p`` on ``device`` (built on first use)."""
    key = (str(device), dataclasses.astuple(p))
    if key not in _LOSS_CACHE:
        _LOSS_CACHE[key] = PerceptualLoss(p, torch.device(device))
    return _LOSS_CACHE[key]


# --- the spec hooks ------------------------------------------------------------------------


def build(p: FastStyleConfig, data=None) -> dict[str, nn.Module]:
    """The one trainable net: the transformer ``G`` of ``p.arch``."""
    return {"G": ARCHS[p.arch](p.width, p.residual_blocks)}


def optimizers(nets, p: FastStyleConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam, as Johnson et al. (lr 1e-3)."""
    return {"G": adam([nets["G"]], p.lr, (0.9, 0.999))}


def train_step(nets, opts, batch, p: FastStyleConfig, ctx: StepContext) -> dict[str, torch.Tensor]:
    """One Adam step of ``G`` on the perceptual loss of a content batch."""
    content = batch["image"]
    terms = perceptual_loss(p, content.device)(nets["G"](content), content)
    ctx.update(opts["G"], terms["loss"])
    return {k: v.detach() for k, v in terms.items()}


# A sample grid shows this many content images above their stylised versions; more would only
# grow every checkpoint (the fixed inputs are saved in it).
SAMPLE_IMAGES = 8


def sample_inputs(p: FastStyleConfig, first_batch, n: int, generator=None) -> torch.Tensor:
    """The first content images of the run: stylised again in every sample grid."""
    return first_batch["image"][: min(n, SAMPLE_IMAGES)].detach().float().cpu().clone()


@torch.no_grad()
def sample(nets, p: FastStyleConfig, content: torch.Tensor) -> torch.Tensor:
    """The fixed content images followed by their stylised versions (a two-part grid)."""
    return torch.cat([content.cpu(), forward_any_size(nets["G"], content).cpu()])


@torch.no_grad()
def evaluate(nets, p: FastStyleConfig, reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean perceptual loss (and its terms) of the stylised reference images."""
    G = unwrap(nets["G"])
    content = reference["image"]
    device = next(G.parameters()).device
    loss = perceptual_loss(p, device)
    totals: dict[str, float] = {}
    for (chunk,) in images.float_chunks(content):
        chunk = chunk.to(device)
        for k, v in loss(forward_any_size(G, chunk), chunk).items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(chunk)
    means = {k: v / len(content) for k, v in totals.items()}
    return {"perceptual": means.pop("loss"), **{f"perceptual_{k}": v for k, v in means.items()}}


SPEC = register(
    TrainedSpec(
        name="fast_style",
        config=FastStyleConfig,
        pipeline="genart.pipelines.style:FastStylePipeline",
        serve=IMAGE,
        verbs=("stylize fast", "stylize video", "onnx"),
        build=build,
        optimizers=optimizers,
        train_step=train_step,
        dataset=datasets.images,
        sample_inputs=sample_inputs,
        sample=sample,
        evaluate=evaluate,
        export=("G",),
        graph_safe=lambda p: True,
        metric="perceptual",
        mode="min",
    )
)
