"""Frozen VGG feature extractor: the loss network of Gatys, fast style (Johnson) and Deep Dream.

The architecture is torchvision's (``vgg16``/``vgg19``); only its convolutional ``features`` part
is kept, truncated after the deepest layer a caller asks for, so no time is spent on layers
whose outputs nobody reads. Layers are named the way the style-transfer papers name them
(``conv3_1``, ``relu4_2``, ``pool2`` ...: block number, then position in the block), computed from
the architecture rather than hard-coded indices.

Weights are torchvision's ImageNet ``state_dict``: from an explicit path, an ``s3://`` object the
caller names, or (``auto``) the torch hub cache, where they are downloaded from torchvision's URL
on first use as torchvision does (:mod:`genart.download`; not with ``GENART_OFFLINE=1``). Every
model gets its weights through :func:`resolve_weights` (:mod:`genart.pretrained`, the rules
Inception v3 follows too). Without them :class:`WeightsNotFound` says where we looked and how
to provide them. ``weights="random"`` builds a seeded, Kaiming-initialised network for tests
and demos; every result made with it carries ``metadata["vgg_weights"]`` saying so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torchvision
from torch import nn

from genart.pretrained import load_state, resolve_weights

Arch = Literal["vgg16", "vgg19"]
Pooling = Literal["max", "avg"]

# torchvision's ImageNet normalisation: the statistics the VGG weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0
RANDOM_NOTE = f"random (seed {RANDOM_SEED}) — not ImageNet; results are not artistic"

_ARCHS = {"vgg16": torchvision.models.vgg16, "vgg19": torchvision.models.vgg19}


def layer_names(arch: str = "vgg16") -> list[str]:
    """Every module name of ``arch``'s feature extractor, in order: ``conv1_1``, ``relu1_1``..."""
    return _names(_architecture(arch))


class VGGFeatures(nn.Module):
    """Frozen VGG features: images in [-1, 1] -> ``{layer name: activation}`` for chosen layers.

    ImageNet normalisation happens inside, so callers pass images as the rest of genart keeps
    them. ``metadata`` describes the network (architecture, weights, pooling) for result files.
    """

    def __init__(
        self,
        body: nn.Sequential,
        names: Sequence[str],
        layers: Sequence[str],
        metadata: dict[str, str],
    ):
        super().__init__()
        self.body = body
        self.names = list(names)
        self.layers = tuple(dict.fromkeys(layers))
        self.metadata = dict(metadata)
        self.channels_last = False
        # [-1, 1] -> [0, 1] -> (x - mean) / std folded into one multiply-add.
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", 0.5 / std, persistent=False)
        self.register_buffer("shift", (0.5 - mean) / std, persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(
        self, images: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Activations of ``layers`` (default: ``self.layers``) for (B, 3, H, W) in [-1, 1].

        Stops after the deepest of ``layers``: e.g. a content target at ``relu2_2`` costs a
        fraction of the full network.
        """
        wanted = set(self.layers if layers is None else layers)
        missing = wanted - set(self.names)
        if missing:
            raise ValueError(f"layers {sorted(missing)} are not in this network: {self.names}")
        depth = max(self.names.index(name) for name in wanted) + 1
        x = images * self.scale + self.shift
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = {}
        for name, module in zip(self.names[:depth], self.body):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

    def use_channels_last(self, enabled: bool = True) -> VGGFeatures:
        """Run convolutions in NHWC memory format (faster on GPUs; not on CPU in our runs)."""
        self.channels_last = enabled
        self.body.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        return self

    @property
    def is_random(self) -> bool:
        """True when the weights are seeded random, not ImageNet."""
        return self.metadata["vgg_weights"] == RANDOM_NOTE


def load_vgg(
    arch: Arch = "vgg16",
    weights: str = "auto",
    layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    pooling: Pooling = "max",
    device: str | torch.device = "cpu",
) -> VGGFeatures:
    """Build a frozen VGG feature extractor returning ``layers``, truncated after the deepest.

    ``weights``: ``"auto"`` (the torch hub cache, downloaded there on first use), a local path
    to torchvision's ImageNet ``state_dict`` (full model or ``features`` only), an
    ``s3://bucket/key`` URI (downloaded once with boto3 into a local cache), or ``"random"``
    (seeded Kaiming init; tests and demos).
    ``pooling="avg"`` swaps max pooling for average pooling, as Gatys et al. (2016, sec. 2) did.
    Raises :class:`WeightsNotFound` when no weights file exists where we looked, or when
    ``auto``'s download fails.
    """
    features = _architecture(arch)
    names = _names(features)
    layers = tuple(layers)
    unknown = [layer for layer in layers if layer not in names]
    if not layers or unknown:
        raise ValueError(f"unknown {arch} layers {unknown or '(none given)'}; valid: {names}")
    depth = max(names.index(layer) for layer in layers) + 1
    body = nn.Sequential(*list(features)[:depth]).to_empty(device="cpu")
    if weights == "random":
        _random_init(body, RANDOM_SEED)
        note = RANDOM_NOTE
    else:
        path, note = resolve_weights(arch, weights)
        _load_state(body, path)
    for index, name in enumerate(names[: depth - 1]):
        if name.startswith("conv") and name in layers:
            body[index + 1].inplace = False  # keep a requested conv output from being overwritten
    if pooling == "avg":
        _use_avg_pooling(body)
    elif pooling != "max":
        raise ValueError(f"unknown pooling '{pooling}'; valid: max, avg")
    metadata = {"vgg_arch": arch, "vgg_weights": note, "vgg_pooling": pooling}
    return VGGFeatures(body, names[:depth], layers, metadata).to(device)


def public_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """A loss network's ``metadata`` as a server may show it: the weights' file named, not
    where it lies (``imagenet (vgg19-dcbb9e9d.pth)``)."""
    source = re.fullmatch(r"imagenet \((.+)\)", metadata["vgg_weights"])
    if source is None:
        return dict(metadata)
    return {**metadata, "vgg_weights": f"imagenet ({source.group(1).rsplit('/', 1)[-1]})"}


def _check_arch(arch: str) -> str:
    if arch not in _ARCHS:
        raise ValueError(f"unknown VGG architecture '{arch}'; valid: {sorted(_ARCHS)}")
    return arch


def _architecture(arch: str) -> nn.Sequential:
    """torchvision's ``features`` for ``arch``, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return _ARCHS[_check_arch(arch)](weights=None).features


def _names(features: nn.Sequential) -> list[str]:
    names, block, position = [], 1, 1
    for module in features:
        if isinstance(module, nn.Conv2d):
            names.append(f"conv{block}_{position}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{position}")
            position += 1
        else:  # the max pool that closes a block
            names.append(f"pool{block}")
            block, position = block + 1, 1
    return names


def _random_init(body: nn.Sequential, seed: int) -> None:
    """torchvision's VGG init (Kaiming normal, fan_out, zero bias) from a private seeded generator.

    Layers are initialised in order, so a truncated network equals the first layers of a deeper
    one built with the same seed.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in body:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(
                module.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
            nn.init.zeros_(module.bias)


def _load_state(body: nn.Sequential, path: Path) -> None:
    state = load_state(path)  # memory-mapped: only the kept layers are read from ~550 MB
    if any(key.startswith("features.") for key in state):
        state = {k.removeprefix("features."): v for k, v in state.items() if k[:9] == "features."}
    # Keys look like "28.weight" (module index in ``features``); drop the layers we cut off.
    kept = {k: v for k, v in state.items() if _index(k) < len(body)}
    try:
        body.load_state_dict(kept)
    except RuntimeError as err:
        raise ValueError(f"{path} does not hold weights for this VGG architecture: {err}") from err


def _index(key: str) -> int:
    head = key.split(".")[0]
    return int(head) if head.isdigit() else -1  # unexpected keys stay and fail loudly below


def _use_avg_pooling(body: nn.Sequential) -> None:
    for index, module in enumerate(body):
        if isinstance(module, nn.MaxPool2d):
            body[index] = nn.AvgPool2d(kernel_size=2, stride=2)
