"""Building blocks shared by every model: conv-norm-act, residual and upsampling blocks, init.

Models compose these instead of repeating ``nn.Sequential`` boilerplate, so a fix here (say, to
padding or initialisation) reaches every network at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genart.registry import evaluating, unwrap

Norm = Literal["batch", "instance", "none"]
Act = Literal["relu", "lrelu", "tanh", "none"]


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Batch norm, instance norm (learned affine, as Johnson et al.; no running stats) or none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; valid: batch, instance, none")


def activation(kind: str) -> nn.Module:
    """ReLU, LeakyReLU(0.2) (the DCGAN/PatchGAN slope), tanh, or identity."""
    table = {
        "relu": lambda: nn.ReLU(inplace=True),
        "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }
    if kind not in table:
        raise ValueError(f"unknown activation '{kind}'; valid: {sorted(table)}")
    return table[kind]()


class ConvNormAct(nn.Sequential):
    """[reflection pad] -> conv (or transposed conv) -> norm -> activation -> [dropout].

    ``padding_mode="reflect"`` pads explicitly with ``nn.ReflectionPad2d`` (CycleGAN, Johnson):
    it avoids the dark borders zero padding leaves in generated images. A conv followed by a
    norm has no bias: the norm's shift makes it redundant.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        padding: int | None = None,
        norm: str = "batch",
        act: str = "relu",
        padding_mode: Literal["zeros", "reflect"] = "zeros",
        transpose: bool = False,
        output_padding: int = 0,
        dropout: float = 0.0,
    ):
        pad = kernel // 2 if padding is None else padding
        layers: list[nn.Module] = []
        if padding_mode == "reflect" and pad > 0 and not transpose:
            layers.append(nn.ReflectionPad2d(pad))
            pad = 0
        bias = norm == "none"
        if transpose:
            conv = nn.ConvTranspose2d(
                in_ch, out_ch, kernel, stride, pad, output_padding=output_padding, bias=bias
            )
        else:
            conv = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias=bias)
        layers += [conv, norm_layer(norm, out_ch), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*[m for m in layers if not isinstance(m, nn.Identity)])


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm layers with a skip connection (Johnson et al.; CycleGAN's R256)."""

    def __init__(self, channels: int, norm: str = "instance", padding_mode="reflect", dropout=0.0):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm=norm, act="relu", padding_mode=padding_mode),
            *([nn.Dropout(dropout)] if dropout > 0 else []),
            ConvNormAct(channels, channels, 3, norm=norm, act="none", padding_mode=padding_mode),
        )

    def forward(self, x):
        return x + self.body(x)


class UpsampleConv(nn.Sequential):
    """Nearest-neighbour upsampling then a conv: no checkerboard artefacts (Odena et al. 2016)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, scale: int = 2, **conv_kwargs):
        super().__init__(
            nn.Upsample(scale_factor=scale, mode="nearest"),
            ConvNormAct(in_ch, out_ch, kernel, **conv_kwargs),
        )


class MinibatchStdDev(nn.Module):
    """Appends one feature map: the batch's spread, so D can see a batch lacking variety.

    Karras et al. (2018, section 3): split the batch into groups of ``group_size`` images, take
    each feature's standard deviation over a group at every position, average those over
    features and positions, and append that value as a constant extra channel to the group's
    images. A generator that draws the same few images everywhere gives a visibly smaller
    value than real batches, which D then penalises (mode collapse costs G directly). The group
    size falls to the largest divisor of the batch size not above ``group_size`` (1 for a
    single image: a zero map). Samples are compared only within a batch, so real and fake
    batches must go through D separately (DCGAN's step does).
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        if group_size < 1:
            raise ValueError(f"minibatch stddev group size must be >= 1, got {group_size}")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, b) + 1) if b % d == 0)
        # Group members are strided (image i is in group i % (b / g)), as in the paper's code.
        y = x.float().reshape(g, b // g, c, h, w)
        spread = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
        maps = spread.to(x.dtype).view(1, b // g, 1, 1, 1).expand(g, -1, 1, h, w)
        return torch.cat([x, maps.reshape(b, 1, h, w)], dim=1)


def spectral_normed(net: nn.Module) -> nn.Module:
    """``net`` with spectral normalisation on every conv and linear weight (Miyato et al. 2018):
    each layer's largest singular value is held near 1 by one power iteration per training
    forward, which bounds D's Lipschitz constant without a gradient penalty."""
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(net.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            spectral_norm(m)
    return net


def init_weights(net: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN/pix2pix initialisation: conv weights ~ N(0, std), norm scales ~ N(1, std), biases 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return net


# --- image-to-image translation: U-Net skip block, test-time dropout, PatchGAN -----------------


class NoiseDropout(nn.Dropout):
    """Dropout that can stay on in eval mode: pix2pix's only source of noise.

    Isola et al. (2017, section 3.1) give the generator noise "only in the form of dropout,
    applied on several layers of our generator at both training and test time". ``at_test``
    keeps it on after ``.eval()``; set it False for deterministic inference (ONNX export).
    """

    def __init__(self, p: float = 0.5, at_test: bool = True):
        super().__init__(p)
        self.at_test = at_test

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, self.training or self.at_test)


class ImageStatsBatchNorm(nn.BatchNorm2d):
    """Batch norm that, in eval mode, normalises each image by its own statistics.

    Isola et al. (2017, section 3.3) run the pix2pix generator at test time "in exactly the
    same manner as during the training phase", with "batch normalization using the statistics
    of the test batch" (batch size 1 in their test code). Per-image statistics are that, and
    keep an image's output independent of the images batched with it (serving batches several
    callers' requests). The running statistics are kept, and used when ``at_test`` is False.
    """

    def __init__(self, num_features: int, at_test: bool = True, **kwargs):
        super().__init__(num_features, **kwargs)
        self.at_test = at_test

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.at_test:
            return super().forward(x)
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def image_stats_at_test(net: nn.Module) -> nn.Module:
    """``net`` with each ``nn.BatchNorm2d`` replaced by an :class:`ImageStatsBatchNorm` holding
    the same parameters and running statistics (the state_dict keys are unchanged)."""
    for name, child in net.named_children():
        if type(child) is nn.BatchNorm2d:
            norm = ImageStatsBatchNorm(child.num_features, eps=child.eps, momentum=child.momentum)
            norm.load_state_dict(child.state_dict())
            setattr(net, name, norm)
        else:
            image_stats_at_test(child)
    return net


@contextlib.contextmanager
def without_test_dropout(net: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every :class:`NoiseDropout` of ``net`` is off in eval mode.

    For deterministic inference (ONNX export and its parity check); the flags are restored.
    """
    modules = [m for m in net.modules() if isinstance(m, NoiseDropout)]
    flags = [m.at_test for m in modules]
    for m in modules:
        m.at_test = False
    try:
        yield net
    finally:
        for m, flag in zip(modules, flags):
            m.at_test = flag


class UNetSkipBlock(nn.Module):
    """One level of a U-Net: down-sample, the inner levels, up-sample, concatenate the skip.

    Built recursively from the innermost level outwards (Ronneberger et al. 2015; the pix2pix
    generator, Isola et al. 2017 section 3.2.1 and appendix 6.1.1). Down path: LeakyReLU(0.2) ->
    4x4 stride-2 conv -> norm (neither activation nor norm on the outermost level, no norm on
    the innermost). Up path: ReLU -> 4x4 stride-2 transposed conv -> norm [-> dropout], and tanh
    instead of the norm on the outermost level. Every level but the outermost returns
    ``cat([x, up(inner(down(x)))])``, so the decoder sees the encoder's features at its scale.
    """

    def __init__(
        self,
        outer_ch: int,
        inner_ch: int,
        inner: nn.Module | None = None,
        in_ch: int | None = None,
        norm: str = "batch",
        dropout: float = 0.0,
        dropout_at_test: bool = True,
        outermost: bool = False,
    ):
        super().__init__()
        innermost = inner is None
        self.outermost = outermost
        # Not in-place: ``x`` itself is concatenated as the skip after the inner levels ran.
        down_act = [] if outermost else [nn.LeakyReLU(0.2)]
        down_norm = "none" if outermost or innermost else norm
        self.down = nn.Sequential(
            *down_act,
            ConvNormAct(in_ch or outer_ch, inner_ch, 4, 2, 1, norm=down_norm, act="none"),
        )
        self.inner = inner if inner is not None else nn.Identity()
        up_in = inner_ch if innermost else 2 * inner_ch
        up_norm, up_act = ("none", "tanh") if outermost else (norm, "none")
        up_conv = ConvNormAct(up_in, outer_ch, 4, 2, 1, norm=up_norm, act=up_act, transpose=True)
        up = [nn.ReLU(), up_conv]
        if dropout > 0:
            up.append(NoiseDropout(dropout, dropout_at_test))
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.inner(self.down(x)))
        return y if self.outermost else torch.cat([x, y], dim=1)


class PatchDiscriminator(nn.Sequential):
    """PatchGAN: one real/fake logit per overlapping image patch (Isola et al. 2017, 3.2.2).

    ``n_layers=3`` is the paper's 70x70 discriminator C64-C128-C256-C512 (appendix 6.1.2): 4x4
    convs, stride 2 except the last two, LeakyReLU(0.2), no norm on the first layer, then a
    4x4 conv to one channel. Each channel count doubles up to 8 * ``ndf``. Being fully
    convolutional, it scores images of any size (>= the receptive field for a non-empty map).
    """

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        layers = [ConvNormAct(in_ch, ndf, 4, 2, 1, norm="none", act="lrelu")]
        channels = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers.append(ConvNormAct(channels, out, 4, stride, 1, norm=norm, act="lrelu"))
            channels = out
        layers.append(ConvNormAct(channels, 1, 4, 1, 1, norm="none", act="none"))
        super().__init__(*layers)


def receptive_field(n_layers: int = 3) -> int:
    """Side in pixels of the input patch one PatchGAN output sees (70 for ``n_layers=3``).

    Read off the architecture itself (every conv of a :class:`PatchDiscriminator`), with the
    usual recursion r += (k - 1) * dilation * j, j *= stride, where j is the distance in input
    pixels between neighbouring positions of the current layer.
    """
    field, jump = 1, 1
    # Built on the meta device: no storage, and no draw from the global RNG, which would
    # otherwise shift the initial weights of every network built after this call.
    with torch.device("meta"):
        layers = PatchDiscriminator(1, ndf=1, n_layers=n_layers, norm="none")
    for m in layers.modules():
        if isinstance(m, nn.Conv2d):
            field += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return field


def patch_layers(size: int) -> int:
    """PatchGAN strided layers for images of side ``size``: the paper's 3 (70x70) from 256 px
    up, the size it was chosen at; for smaller images the field closest to a sixth of the
    side (64 px: 0 layers, a 10x10 field; 128 px: 1, 16x16). A 70x70 field sees all of a
    64 px image, and a D that judges whole scenes pushes G to invent layout; benchmarks/
    quality.py measured the small field at 64 px (docs/benchmarks.md).
    """
    if size >= 256:
        return 3
    return min(range(4), key=lambda n: abs(receptive_field(n) - size / 6))


def has_batch_norm(net: nn.Module) -> bool:
    """Whether ``net`` normalises across the batch (so batch composition changes its outputs)."""
    return any(isinstance(m, nn.BatchNorm2d | nn.SyncBatchNorm) for m in net.modules())


def forward_split(net: nn.Module, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``net`` applied to each batch: one forward pass over their concatenation when it can be.

    With per-sample (instance or no) normalisation one pass over the concatenation is faster
    and gives the same outputs. Batch norm must see each batch alone, as in the reference
    implementation: for D, mixed real/fake statistics would let it tell them apart by the
    statistics alone. ``net`` may be a DDP wrapper: one or several forwards, then one backward.
    """
    if len(batches) == 1 or has_batch_norm(net):
        return tuple(net(x) for x in batches)
    return net(torch.cat(batches)).split([len(x) for x in batches])


def adam(nets: Iterable[nn.Module], lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam over the parameters of ``nets`` (DDP wrappers unwrapped), fused into one kernel.

    The fused kernel updates every parameter in one pass (CPU and CUDA) instead of a loop of
    small ops per parameter tensor, which is what torch's default Adam does on CPU; on a GPU
    those per-tensor launches are a visible share of a small GAN's step.
    """
    params = [q for net in nets for q in unwrap(net).parameters()]
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


# --- inference at any image size ------------------------------------------------------------


def stride_of(net: nn.Module) -> int:
    """The multiple an input side must be (2^depth for a U-Net, 4 for ResNet/transformer nets)."""
    return getattr(unwrap(net), "stride", 1)


def pad_to_multiple(images: torch.Tensor, multiple: int, min_side: int = 1) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right up to sides divisible by ``multiple`` and at least
    ``min_side`` long.

    Reflection padding continues the image's texture (zeros would add a dark border that the
    network then "translates"); a pad wider than the image falls back to edge replication,
    which reflection cannot do.
    """
    height, width = images.shape[-2:]
    # The smallest multiple of ``multiple`` that is >= both the side and min_side, less the side.
    pad_h, pad_w = (
        -(-max(side, min_side) // multiple) * multiple - side for side in (height, width)
    )
    if pad_h == 0 and pad_w == 0:
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


def forward_any_size(
    net: nn.Module, images: torch.Tensor, batch_size: int = 16, precision: str = "fp32"
) -> torch.Tensor:
    """``net(images)`` for (B, C, H, W) in [-1, 1] of any H, W: the image-to-image forward of
    every trained family (fast style, Pix2Pix, CycleGAN), in training samples and inference.

    Padded to the net's stride and cropped back, run in eval mode without autograd in chunks of
    ``batch_size`` on the net's device, dtype and memory format; the training flag is restored.
    ``precision="bf16"`` runs under bfloat16 autocast (fast where the hardware has it).
    Returns float32 on ``images``' device.
    """
    parameter = next(unwrap(net).parameters())
    height, width = images.shape[-2:]
    nhwc = parameter.dim() == 4 and parameter.is_contiguous(memory_format=torch.channels_last)
    outputs = []
    with evaluating(net) as module:
        for chunk in images.split(batch_size):
            x = pad_to_multiple(chunk.to(parameter.device, parameter.dtype), stride_of(module))
            if nhwc:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, torch.bfloat16, enabled=precision == "bf16"):
                outputs.append(module(x)[..., :height, :width].float())
    return torch.cat(outputs).to(images.device)
