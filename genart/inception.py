"""Inception v3 pool features: the feature space of FID and KID (:mod:`genart.fid`).

The network is torchvision's ``inception_v3`` with its ImageNet weights (``IMAGENET1K_V1``),
found by the rules every pretrained network in genart follows (:mod:`genart.pretrained`:
``auto``, a path, ``s3://``; ``genart weights fetch inception_v3`` stages them), or seeded
random weights (``"random"``) for tests and timing. The classifier is cut off: the output is
the 2048 averaged activations after the last block, as in FID (Heusel et al. 2017).

These are torchvision's weights, not the TensorFlow graph of the original FID code (which
``pytorch-fid`` and ``torch-fidelity`` port): the scores rank models alike but are not
comparable with FIDs published in papers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from genart import pretrained

ARCH = "inception_v3"
SIZE = 299  # the input size the network was trained at
FEATURES = 2048
RANDOM_SEED = 0
RANDOM_NOTE = f"random (seed {RANDOM_SEED}) — not ImageNet; scores are meaningless"


class InceptionFeatures(nn.Module):
    """Frozen Inception v3: images (B, 1 or 3, H, W) in [-1, 1] -> pool features (B, 2048)."""

    num_features = FEATURES  # torchmetrics' FID and KID read this instead of a trial forward

    def __init__(self, net: nn.Module, note: str):
        super().__init__()
        self.net = net
        self.note = note  # where the weights came from, for result files
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool features of ``images``, resized to 299x299 (antialiased when shrinking)."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        # The ImageNet weights read inputs scaled to [-1, 1] (torchvision's transform_input
        # converts its normalised input to that scale), which genart's images already are.
        x = F.interpolate(images.float(), (SIZE, SIZE), mode="bilinear", antialias=True)
        return self.net(x)


def load_inception(weights: str = "auto", device: str | torch.device = "cpu") -> InceptionFeatures:
    """Inception v3 features with ``weights``: ``auto`` (torch hub cache, downloaded on first use
    unless ``GENART_OFFLINE=1``), a path to torchvision's ``state_dict``, ``s3://bucket/key``,
    or ``random``. Raises :class:`genart.pretrained.WeightsNotFound` when the file is missing,
    ValueError when it holds something else."""
    if weights == "random":
        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_SEED)
            net = _architecture(aux_logits=False)
            _calibrate(net)
        note = RANDOM_NOTE
    else:
        path, note = pretrained.resolve_weights(ARCH, weights)
        state = pretrained.load_state(path)
        # torchvision's file holds the auxiliary classifier; a file saved without it loads too.
        aux = any(key.startswith("AuxLogits.") for key in state)
        with torch.device("meta"):
            net = _architecture(aux_logits=aux)
        try:
            net.load_state_dict(state, assign=True)
        except RuntimeError as err:
            raise ValueError(f"{path} does not hold Inception v3 weights: {err}") from err
    net.aux_logits, net.AuxLogits = False, None  # only the main branch is run
    net.fc = nn.Identity()  # keep the 2048 pool features, drop the ImageNet classifier
    return InceptionFeatures(net, note).to(device)


@torch.no_grad()
def _calibrate(net: nn.Module) -> None:
    """Batch-norm statistics of a batch of noise for a random network: with the initial ones
    (mean 0, variance 1) its activations grow layer by layer to infinities."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # the batch's own statistics, not 10% of them
    net.train()(torch.randn(2, 3, SIZE, SIZE))
    net.eval()


def _architecture(aux_logits: bool) -> nn.Module:
    """torchvision's Inception v3 (on the current default device), inputs taken as given."""
    init = torch.get_default_device().type != "meta"  # nothing to initialise on meta tensors
    return torchvision.models.inception_v3(
        weights=None, aux_logits=aux_logits, transform_input=False, init_weights=init
    )
