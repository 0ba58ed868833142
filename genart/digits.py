"""A small digit classifier trained on genart's own synthetic digits, and the scores it gives.

There is no MNIST to download, so genart trains its own judge: a LeNet-style CNN (LeCun et al.
1998) fit in seconds on CPU to digits from :func:`genart.data.synthetic.render_digits`, cached
at ``$GENART_CACHE/digit_classifier-v1.pt`` (default ``~/.cache/genart``). Given other labelled
digits (``train_classifier(digits=..., reference=...)``, e.g. real MNIST digits that a package
ships), the same network is trained on those instead. It then scores a set of generated digits,
as the "MNIST score" family of GAN metrics does:

- ``coverage``: how many of the 10 classes the samples hit (mode collapse lowers it);
- ``confident``: the share of samples the classifier gives one class with probability at least
  ``CONFIDENCE`` (low for blurry or noisy samples, whatever the coverage);
- ``kl_uniform``: KL divergence of the predicted class histogram from uniform (0 = balanced);
- ``frechet``: Fréchet distance between the classifier's penultimate-layer features of the
  samples and of a fixed reference set of synthetic digits (FID with a digit network).

Inputs are tensors (B, C, H, W) in [-1, 1] of any size with 1 or 3 channels; they are turned
to grey (ITU-R 601 luma, as PIL's "L") and resized to 28x28. Training randomises the digit and
background brightness (including dark-on-light), so colour digits score like grey ones.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genart import judges
from genart.data.synthetic import render_digits
from genart.metrics import feature_stats, frechet_from_stats

SIZE = 28
CLASSES = 10
FEATURES = 128  # width of the penultimate layer, whose activations feed the Fréchet distance
WEIGHTS_FILE = "digit_classifier-v1.pt"  # bump the version when the network or data change
TRAIN_SEED, REFERENCE_SEED = 0, 1  # render_digits seeds; tests hold out other seeds
REFERENCE_SIZE = 2000  # reference digits whose feature statistics the Fréchet distance uses
MIN_SHARE = 0.01  # a class counts as covered once it gets at least 1% of the predictions
CONFIDENCE = 0.8  # softmax probability from which a sample counts as confidently a digit
_LUMA = (0.299, 0.587, 0.114)


class DigitClassifier(nn.Module):
    """Two conv-BN-ReLU-pool stages, a 128-unit feature layer and a 10-way linear head.

    Holds the reference feature statistics as buffers, so one ``state_dict`` carries everything
    :func:`digit_scores` needs.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(16, 32, 5, padding=2, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, CLASSES)
        self.register_buffer("ref_mean", torch.zeros(FEATURES, dtype=torch.float64))
        self.register_buffer("ref_cov", torch.eye(FEATURES, dtype=torch.float64))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 128) of images (B, C, H, W) in [-1, 1]."""
        return self.body(to_digit_input(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 10) of images (B, C, H, W) in [-1, 1]."""
        return self.head(self.features(images))


def to_digit_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) in [-1, 1] -> grey (B, 1, 28, 28), the classifier's input."""
    images = images.float()
    if images.shape[1] == 3:
        luma = torch.tensor(_LUMA, device=images.device).view(1, 3, 1, 1)
        images = (images * luma).sum(dim=1, keepdim=True)
    elif images.shape[1] != 1:
        raise ValueError(f"digit images need 1 or 3 channels, got {images.shape[1]}")
    if images.shape[-2:] != (SIZE, SIZE):
        # Antialiased: plain bilinear would alias thin strokes of large images away.
        images = F.interpolate(images, (SIZE, SIZE), mode="bilinear", antialias=True)
    return images


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic grey 28x28 digits as (N, 1, 28, 28) in [-1, 1], and their labels."""
    images, labels = render_digits(n, size=SIZE, seed=seed)
    scaled = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return scaled, torch.from_numpy(labels)


def _recolour(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random ink and background brightness, either polarity, for half of a batch.

    The other half stays white on black, the common case. The two levels differ by at least
    0.4 of the range, like the luma gap of at least 100/255 of ``render_digits(rgb=True)``.
    """
    count = images.shape[0]
    contrast = 0.4 + 0.6 * torch.rand(count, 1, 1, 1, generator=gen)
    low = torch.rand(count, 1, 1, 1, generator=gen) * (1 - contrast)
    inverted = torch.rand(count, 1, 1, 1, generator=gen) < 0.5
    ink = low + contrast * ~inverted
    background = low + contrast * inverted
    recoloured = (background + (ink - background) * (images + 1) / 2) * 2 - 1
    keep = torch.rand(count, 1, 1, 1, generator=gen) < 0.5
    return torch.where(keep, images, recoloured)


def train_classifier(
    n: int = 8000, epochs: int = 3, batch_size: int = 128, seed: int = TRAIN_SEED,
    digits: tuple[torch.Tensor, torch.Tensor] | None = None,
    reference: torch.Tensor | None = None,
) -> DigitClassifier:  # fmt: skip
    """Fit a fresh classifier and store its reference statistics.

    It trains on ``digits`` (images (N, 1, H, W) in [-1, 1], int64 labels (N,)) when given,
    else on ``n`` synthetic digits; the Fréchet distance's statistics come from ``reference``
    images when given, else from ``REFERENCE_SIZE`` synthetic digits of another seed. Adam
    (lr 2e-3, cosine decay) for ``epochs`` passes; the global torch RNG is left untouched.
    """
    images, labels = digits if digits is not None else synthetic_digits(n, seed)
    images = to_digit_input(images)
    n = len(images)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitClassifier()
    steps = epochs * (n // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    with judges.training_threads():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n - batch_size + 1, batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(model(_recolour(images[batch], gen)), labels[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
    model.eval()
    if reference is None:
        reference, _ = synthetic_digits(REFERENCE_SIZE, REFERENCE_SEED)
    mean, cov = feature_stats(judges.batched(model.features, reference))
    model.ref_mean.copy_(torch.from_numpy(mean))
    model.ref_cov.copy_(torch.from_numpy(cov))
    return model


def cache_path(cache_dir: str | Path | None = None) -> Path:
    """Where the weights live: ``cache_dir``, else ``$GENART_CACHE``, else ``~/.cache/genart``."""
    return judges.cache_path(WEIGHTS_FILE, cache_dir)


def load_classifier(
    cache_dir: str | Path | None = None, train_if_missing: bool = True
) -> DigitClassifier:
    """The cached classifier in eval mode; trained (tens of seconds on CPU) and cached if absent.

    Raises FileNotFoundError when absent and ``train_if_missing`` is False.
    """
    return judges.load_or_train(cache_path(cache_dir), DigitClassifier, train_classifier,
                                "digit classifier", train_if_missing)  # fmt: skip


def digit_scores(
    images: torch.Tensor, classifier: DigitClassifier | None = None, min_share: float = MIN_SHARE
) -> dict[str, float]:
    """Coverage, confident share, KL from uniform and Fréchet distance of generated digits
    (B, C, H, W) in [-1, 1].

    ``coverage`` counts the classes that receive at least ``min_share`` of the argmax
    predictions (at least one sample), so a few stray samples of a collapsed generator do not
    count as covering a class. ``kl_uniform`` = sum_k p_k log(10 p_k) in nats over the
    predicted class frequencies p (0 when balanced, log 10 = 2.30 when one class takes all).
    ``frechet`` compares the penultimate features to the reference digits' statistics; like
    FID it is noisy and biased upwards for small sets (held-out real digits: about 5-20 at
    500 samples, 4-11 at 2000; uniform noise: about 2000), so compare at equal sample counts.
    """
    classifier = classifier or load_classifier()
    features = judges.batched(classifier.features, images.cpu())
    probabilities = judges.batched(classifier.head, features).softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    share = torch.bincount(predicted, minlength=CLASSES).double() / len(predicted)
    nonzero = share[share > 0]
    mean, cov = feature_stats(features)
    reference = (classifier.ref_mean.numpy(), classifier.ref_cov.numpy())
    return {
        "coverage": int(((share >= min_share) & (share > 0)).sum()),
        "confident": float((confidence >= CONFIDENCE).double().mean()),
        "kl_uniform": float((nonzero * torch.log(nonzero * CLASSES)).sum()),
        "frechet": frechet_from_stats(mean, cov, *reference),
        "n": len(images),
    }
