"""FID and KID between two image sets, in a feature space named in every score's key.

- FID (Heusel et al. 2017): the Fréchet distance of Gaussians fitted to the two feature sets.
- KID (Bińkowski et al. 2018): the unbiased squared MMD under the cubic polynomial kernel
  ``(x.y / d + 1)^3``, averaged over random subsets (with its standard deviation); unlike FID
  it has no bias from small sets, so it compares runs scored on few images.

torchmetrics computes both (``FrechetInceptionDistance`` and ``KernelInceptionDistance``, which
stream and sync across DDP workers). Each set's features are computed once here and handed to
both metrics, through a pass-through extractor, rather than running the network twice.

The feature spaces (:data:`SPACES`) and their keys, which say which network judged:

- ``inception``: torchvision's Inception v3 ImageNet features (:mod:`genart.inception`):
  ``fid_inception``, ``kid_inception``. For natural images; not comparable with published FIDs
  (those use the TensorFlow network).
- ``digits`` / ``modes``: the penultimate features of genart's own judge classifiers
  (:mod:`genart.digits`, :mod:`genart.modes_classifier`), trained on genart's synthetic sets:
  ``frechet_digits``, ``kid_digits``, ``frechet_modes``, ``kid_modes``. Only meaningful for
  images of those sets; cheap (a tiny CNN at 28 or 32 px) and need no download.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

# The modules, not torchmetrics.image: that package lists these two only when torch-fidelity
# (whose Inception genart does not use) is installed.
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from genart import images, judges

SPACES = ("inception", "digits", "modes")
KID_SUBSETS = 100  # the KID paper's and torchmetrics' default
KID_SUBSET_SIZE = 1000  # at most; smaller sets use all their images per subset
# Images per forward pass: what one pass allocates (the float images among it) stays tens of MB.
BATCH = {"inception": 32, "digits": 64, "modes": 64}


class _Given(nn.Module):
    """The extractor torchmetrics calls on what ``update`` receives: features computed already."""

    def __init__(self, width: int):
        super().__init__()
        self.num_features = width  # read by torchmetrics instead of a trial forward pass

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def extractor(
    space: str, inception_weights: str = "auto"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images (B, C, H, W) in [-1, 1] -> features (B, D) of feature space ``space``."""
    if space == "inception":
        from genart import inception

        return inception.load_inception(inception_weights)
    if space == "digits":
        from genart import digits

        return digits.load_classifier().features
    if space == "modes":
        from genart import modes_classifier

        return modes_classifier.load_classifier().features
    raise ValueError(f"unknown feature space '{space}'; valid: {', '.join(SPACES)}")


def keys(space: str) -> tuple[str, str]:
    """The FID and KID keys of ``space``: ``fid_inception``/``kid_inception``, else
    ``frechet_<space>``/``kid_<space>`` (a judge's features are not Inception's)."""
    return ("fid_inception", "kid_inception") if space == "inception" else (
        f"frechet_{space}", f"kid_{space}")  # fmt: skip


def distances(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """``{"fid", "kid", "kid_std"}`` of two feature sets (N, D) and (M, D), N, M >= 2.

    KID's subsets are drawn from ``seed`` (the global RNG is left as it was): repeatable.
    """
    # No sync: by default compute() gathers the states of every process of an initialised
    # torch.distributed group, and in a Ray Train run only rank 0 scores (the others would never
    # join the gather, and rank 0 would wait for ever).
    width, local = real.shape[1], {"sync_on_compute": False}
    fid = FrechetInceptionDistance(feature=_Given(width), **local)
    size = min(KID_SUBSET_SIZE, len(real), len(fake))
    with warnings.catch_warnings():  # that KID keeps every feature: it must, and these are small
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(
            feature=_Given(width), subsets=KID_SUBSETS, subset_size=size, **local
        )
    for features, is_real in ((real, True), (fake, False)):
        for chunk in features.split(4096):  # FID's float64 outer products, a chunk at a time
            fid.update(chunk, real=is_real)
            kid.update(chunk, real=is_real)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": fid.compute().item(), "kid": kid_mean.item(), "kid_std": kid_std.item()}


def whole_set_kid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """KID of two feature sets (N, D) and (N, D) computed once over all their rows.

    Where both sets are no larger than a KID subset, each of :func:`distances`' subsets holds
    every row and gives the same value: one is enough (a 4096-wide feature set costs a
    hundredth of the time). In float64: the value is a small difference of large kernel sums.
    """
    size = len(real)
    if len(fake) != size or size > KID_SUBSET_SIZE or size < 2:
        raise ValueError(f"whole_set_kid needs two sets of 2..{KID_SUBSET_SIZE} rows each, "
                         f"got {len(real)} and {len(fake)}")  # fmt: skip
    with warnings.catch_warnings():  # that KID keeps every feature: it must, and these are small
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(
            feature=_Given(real.shape[1]), subsets=1, subset_size=size, sync_on_compute=False
        )
        kid.update(real.double(), real=True)
        kid.update(fake.double(), real=False)
        return kid.compute()[0].item()


def scores(
    real: torch.Tensor,
    fake: torch.Tensor,
    space: str,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """FID and KID of image sets ``real`` and ``fake`` (N, C, H, W; uint8, or float in [-1, 1])
    in ``space`` (``features``: its extractor, built by :func:`extractor` when not given), under
    keys that name it (:func:`keys`), with KID's standard deviation over subsets.

    Images are converted to float a forward batch at a time: uint8 sets stay uint8 in memory.
    """
    features = features or extractor(space)
    extract = lambda batch: features(images.as_float(batch))  # noqa: E731
    found = distances(*(judges.batched(extract, x, BATCH[space]) for x in (real, fake)), seed)
    fid_key, kid_key = keys(space)
    return {fid_key: found["fid"], kid_key: found["kid"], f"{kid_key}_std": found["kid_std"]}
