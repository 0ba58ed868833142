"""Building blocks shared by every model: conv-norm-act, residual and upsampling blocks, init.

Models compose these instead of repeating ``nn.Sequential`` boilerplate, so a fix here (say, to
padding or initialisation) reaches every network at once.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

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
