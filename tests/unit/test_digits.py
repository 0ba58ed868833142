"""The synthetic-digit classifier: held-out accuracy, caching, and the scores built on it.

The classifier is trained once for this module into a temporary cache (about 10-30 s on CPU,
mostly rendering digits), never into the user's ``~/.cache``.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genart import digits
from genart.cli import main
from genart.data.synthetic import render_digits

HELD_OUT_SEED = 7  # neither digits.TRAIN_SEED nor digits.REFERENCE_SEED


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("genart-cache")
    digits.load_classifier(folder)
    return folder


@pytest.fixture(scope="module")
def classifier(cache):
    return digits.load_classifier(cache, train_if_missing=False)


@pytest.fixture(scope="module")
def held_out():
    return digits.synthetic_digits(1000, HELD_OUT_SEED)


def accuracy(classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (classifier(images).argmax(dim=1) == labels).double().mean().item()


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_classifier_reaches_95_percent_on_held_out_digits(classifier, held_out):
    assert accuracy(classifier, *held_out) >= 0.95


def test_classifier_reads_colour_and_larger_digits(classifier):
    colour, labels = render_digits(300, size=28, seed=HELD_OUT_SEED + 1, rgb=True)
    assert accuracy(classifier, as_tensor(colour), torch.from_numpy(labels)) >= 0.95
    large, labels = render_digits(300, size=64, seed=HELD_OUT_SEED + 2)
    assert accuracy(classifier, as_tensor(large), torch.from_numpy(labels)) >= 0.95


def test_classifier_is_cached_and_reloads_identically(cache, classifier, held_out, tmp_path):
    assert digits.cache_path(cache).is_file()
    images = held_out[0][:16]
    with torch.no_grad():
        torch.testing.assert_close(digits.load_classifier(cache)(images), classifier(images))
    with pytest.raises(FileNotFoundError):
        digits.load_classifier(tmp_path, train_if_missing=False)


def test_training_works_even_when_called_under_no_grad(monkeypatch):
    monkeypatch.setattr(digits, "REFERENCE_SIZE", 256)
    with torch.no_grad():
        model = digits.train_classifier(n=256, epochs=1)
    assert not model.training
    assert model.ref_mean.abs().sum() > 0  # reference statistics were filled in (zeros before)


def test_cache_location_argument_then_environment_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("GENART_CACHE", str(tmp_path))
    assert digits.cache_path() == tmp_path / digits.WEIGHTS_FILE
    assert digits.cache_path(tmp_path / "given") == tmp_path / "given" / digits.WEIGHTS_FILE
    monkeypatch.delenv("GENART_CACHE")
    assert digits.cache_path() == Path.home() / ".cache" / "genart" / digits.WEIGHTS_FILE


def test_input_is_grey_28x28_whatever_the_channels_and_size():
    grey = torch.rand(2, 1, 56, 56) * 2 - 1
    prepared = digits.to_digit_input(grey)
    assert prepared.shape == (2, 1, 28, 28)
    torch.testing.assert_close(digits.to_digit_input(grey.expand(-1, 3, -1, -1)), prepared)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        digits.to_digit_input(torch.zeros(1, 2, 28, 28))


def test_scores_of_real_digits_are_balanced_and_close_to_the_reference(classifier, held_out):
    scores = digits.digit_scores(held_out[0], classifier)
    assert scores["coverage"] == 10 and scores["n"] == 1000
    assert scores["kl_uniform"] < 0.02
    noise = digits.digit_scores(torch.rand(1000, 1, 28, 28) * 2 - 1, classifier)
    assert noise["frechet"] > 10 * scores["frechet"]


def test_scores_of_a_collapsed_generator(classifier, held_out):
    """All threes plus one stray five (0.5% < 1% of samples): one class covered, KL ~ log 10."""
    images, labels = held_out
    threes = images[labels == 3]
    fives = images[labels == 5]
    count = min(len(threes), 199)
    collapsed = torch.cat([threes[:count], fives[:1]])
    scores = digits.digit_scores(collapsed, classifier)
    assert scores["coverage"] == 1
    assert scores["kl_uniform"] == pytest.approx(math.log(10), abs=0.1)
    assert scores["frechet"] > digits.digit_scores(images, classifier)["frechet"]


def test_cli_eval_digits(cache, held_out, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GENART_CACHE", str(cache))
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, image in enumerate(held_out[0][:50]):
        pixels = ((image[0] + 1) * 127.5).round().byte().numpy()
        Image.fromarray(pixels).resize((64, 64)).save(folder / f"{i:02d}.png")
    out = tmp_path / "digits.json"
    assert main(["eval", "digits", str(folder), "--json", str(out)]) == 0
    saved = json.loads(out.read_text())["metrics"]
    assert set(saved) == {"coverage", "confident", "kl_uniform", "frechet", "n"}
    assert saved["n"] == 50 and saved["coverage"] >= 8
    assert "kl_uniform" in capsys.readouterr().out
