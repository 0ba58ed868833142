"""A small classifier of the 16-mode set (``genart.data.modes``) and the mode-coverage scores.

Like :mod:`genart.digits` for digits: a CNN fit in seconds on CPU to images from
:func:`genart.data.synthetic.render_modes`, cached at ``$GENART_CACHE/modes_classifier-v2.pt``
(default ``~/.cache/genart``), then used to judge generated images:

- ``coverage``: how many of the 16 modes get at least ``MIN_SHARE`` of the samples, counting
  only samples the classifier recognises with confidence ``CONFIDENCE`` (the "high-quality
  samples" count of mode-collapse studies such as Srivastava et al. 2017). Besides the 16
  modes it has a 17th class, "none", trained on noise, flat images, blurred shapes and blends
  of two modes: a blob that is half red circle, half blue square covers neither;
- ``recognised``: the share of samples recognised at all (low for garbage, whatever coverage);
- ``kl_uniform``: KL divergence of the recognised samples' mode histogram from uniform;
- ``frechet``: Fréchet distance of the penultimate features to those of real mode images
  drawn at the samples' size (the statistics shift with the size images are drawn at).

Inputs are RGB tensors (B, 3, H, W) in [-1, 1] of any size (resized to 32x32, antialiased).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genart import judges
from genart.data.modes import MODES
from genart.data.synthetic import render_modes
from genart.metrics import feature_stats, frechet_from_stats

SIZE = 32
FEATURES = 64  # width of the penultimate layer (the Fréchet features)
WEIGHTS_FILE = "modes_classifier-v2.pt"  # bump the version when the network or data change
TRAIN_SEED, REFERENCE_SEED = 0, 1  # render_modes seeds; tests hold out other seeds
TRAIN_SIZES = (32, 64)  # drawn at both, so that it reads 32 px and downsampled 64 px alike
REFERENCE_SIZE = 2000  # real images whose feature statistics the Fréchet distance uses
CLASSES = MODES + 1  # the modes, then "none"
NONE_SHARE = 0.25  # of each training batch: images that are no mode
MIN_SHARE = 0.01  # a mode counts as covered once 1% of the samples are recognised as it
CONFIDENCE = 0.8  # softmax probability from which a sample counts as recognised


class ModesClassifier(nn.Module):
    """Three conv-BN-ReLU-pool stages (32 -> 4 px), a 64-unit feature layer, a 17-way head."""

    def __init__(self):
        super().__init__()
        stages = []
        for c_in, c_out in ((3, 16), (16, 32), (32, 64)):
            stages += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.body = nn.Sequential(*stages, nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, CLASSES)
        self._reference: dict[int, tuple] = {}  # image size -> real feature statistics

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 64) of RGB images (B, 3, H, W) in [-1, 1]."""
        return self.body(to_modes_input(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 17: the modes, then "none") of RGB images (B, 3, H, W) in [-1, 1]."""
        return self.head(self.features(images))


def to_modes_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> float (B, 3, 32, 32), the classifier's input."""
    if images.shape[1] != 3:
        raise ValueError(f"mode images are RGB, got {images.shape[1]} channels")
    images = images.float()
    if images.shape[-2:] != (SIZE, SIZE):
        images = F.interpolate(images, (SIZE, SIZE), mode="bilinear", antialias=True)
    return images


def synthetic_modes(n: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` mode images as (N, 3, size, size) in [-1, 1], and their labels."""
    images, labels = render_modes(n, size=size, seed=seed)
    scaled = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return scaled, torch.from_numpy(labels)


def not_a_mode(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images of no mode, as many as ``images`` (B, 3, H, W) in [-1, 1], made from them: uniform
    or Gaussian noise, flat colours, strong blurs, and blends of two images of different modes
    (what a generator between modes draws)."""
    count = len(images)
    kind = torch.randint(5, (count,), generator=gen)
    noise = torch.rand(images.shape, generator=gen) * 2 - 1
    gauss = torch.randn(images.shape, generator=gen) * torch.rand(count, 1, 1, 1, generator=gen)
    flat = (torch.rand(count, 3, 1, 1, generator=gen) * 2 - 1).expand_as(images)
    blurred = F.avg_pool2d(images, 9, 1, 4, count_include_pad=False)
    other = torch.randperm(count, generator=gen)
    mix = torch.rand(count, 1, 1, 1, generator=gen) * 0.4 + 0.3
    blend = mix * images + (1 - mix) * images[other]
    blend = torch.where((labels == labels[other]).view(-1, 1, 1, 1), blurred, blend)
    options = torch.stack([noise, gauss.clamp(-1, 1), flat, blurred, blend])
    return options[kind, torch.arange(count)]


def train_classifier(
    n: int = 6000, epochs: int = 4, batch_size: int = 128, seed: int = TRAIN_SEED
) -> ModesClassifier:
    """Fit a fresh classifier to ``n`` mode images, drawn half at each of ``TRAIN_SIZES``, and
    to images of no mode (``NONE_SHARE`` of each batch, :func:`not_a_mode`).

    Adam (lr 2e-3, cosine decay), random horizontal flips (the modes are mirror-symmetric, and
    generators trained with flips make mirrored images); the global torch RNG is left untouched.
    """
    drawn = [synthetic_modes(n // len(TRAIN_SIZES), seed, size) for size in TRAIN_SIZES]
    images = torch.cat([to_modes_input(x) for x, _ in drawn])
    labels = torch.cat([y for _, y in drawn])
    n = len(images)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ModesClassifier()
    steps = epochs * (n // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    none = round(batch_size * NONE_SHARE)
    with judges.training_threads():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n - batch_size + 1, batch_size):
                index = order[start : start + batch_size]
                batch, target = images[index], labels[index].clone()
                batch = torch.cat([batch[none:], not_a_mode(batch[:none], target[:none], gen)])
                target[:none] = MODES
                target = torch.cat([target[none:], target[:none]])
                flip = torch.rand(len(batch), 1, 1, 1, generator=gen) < 0.5
                batch = torch.where(flip, batch.flip(-1), batch)
                loss = F.cross_entropy(model(batch), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
    return model.eval()


def reference_stats(classifier: ModesClassifier, size: int) -> tuple:
    """Mean and covariance of the classifier's features of real images drawn at ``size``
    (computed on first use per size, in a second or two, then kept on the classifier)."""
    if size not in classifier._reference:
        reference, _ = synthetic_modes(REFERENCE_SIZE, REFERENCE_SEED, size)
        classifier._reference[size] = feature_stats(judges.batched(classifier.features, reference))
    return classifier._reference[size]


def cache_path(cache_dir: str | Path | None = None) -> Path:
    """Where the weights live: beside the digit classifier's (``cache_dir``, ``$GENART_CACHE``
    or ``~/.cache/genart``)."""
    return judges.cache_path(WEIGHTS_FILE, cache_dir)


def load_classifier(
    cache_dir: str | Path | None = None, train_if_missing: bool = True
) -> ModesClassifier:
    """The cached classifier in eval mode; trained (seconds on CPU) and cached if absent.

    Raises FileNotFoundError when absent and ``train_if_missing`` is False.
    """
    return judges.load_or_train(cache_path(cache_dir), ModesClassifier, train_classifier,
                                "modes classifier", train_if_missing)  # fmt: skip


def mode_scores(
    images: torch.Tensor,
    classifier: ModesClassifier | None = None,
    min_share: float = MIN_SHARE,
    confidence: float = CONFIDENCE,
) -> dict[str, float]:
    """Coverage, recognised share, KL from uniform and Fréchet distance of generated images.

    ``images``: (B, 3, H, W) in [-1, 1]. ``coverage`` counts the modes that at least
    ``min_share`` of all samples are recognised as (softmax >= ``confidence``), and at least one.
    ``kl_uniform`` = sum_k p_k log(16 p_k) over the recognised samples' mode frequencies p (0 when
    balanced, log 16 = 2.77 when one mode takes all, and that worst value too when nothing is
    recognised: a finite number keeps the metrics valid JSON and a Tune sweep's ordering sane).
    """
    classifier = classifier or load_classifier()
    features = judges.batched(classifier.features, images.cpu())
    probs = judges.batched(classifier.head, features).softmax(dim=1)
    best, predicted = probs.max(dim=1)
    sure = predicted[(best >= confidence) & (predicted < MODES)]
    counts = torch.bincount(sure, minlength=MODES).double()
    share = counts / len(images)
    if len(sure):
        p = counts / len(sure)
        kl = float((p[p > 0] * torch.log(p[p > 0] * MODES)).sum())
    else:
        kl = math.log(MODES)
    mean, cov = feature_stats(features)
    reference = reference_stats(classifier, images.shape[-1])
    return {
        "coverage": int(((share >= min_share) & (counts > 0)).sum()),
        "recognised": len(sure) / len(images),
        "kl_uniform": kl,
        "frechet": frechet_from_stats(mean, cov, *reference),
        "n": len(images),
    }
