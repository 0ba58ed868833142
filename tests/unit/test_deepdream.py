"""Deep Dream: it amplifies the target activations, over octaves, for layers or channels."""

import pytest
import torch

from genart.models.deepdream import DreamConfig, dream, loss_network, objective, parse_targets


def image(h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g) * 1.2 - 0.6


@pytest.fixture(scope="module")
def vgg():
    return loss_network(DreamConfig(layers=("relu2_2", "relu3_1:5")), "random")


def test_parse_targets():
    assert parse_targets(("relu4_3", "relu5_1:7")) == [("relu4_3", None), ("relu5_1", 7)]


@pytest.mark.parametrize("layers", [("relu2_2",), ("relu3_1:5",)])
def test_dream_increases_the_target_activation(vgg, layers):
    cfg = DreamConfig(layers=layers, octaves=2, iterations=5, jitter=4)
    start = image()
    result, frames = dream(start, cfg, vgg)
    before = objective(vgg, start[None], layers).item()
    after = objective(vgg, result[None], layers).item()
    assert after > 1.5 * before
    assert result.shape == start.shape and result.abs().max() <= 1


def test_octaves_go_coarse_to_fine_and_report_progress(vgg):
    cfg = DreamConfig(layers=("relu2_2",), octaves=3, octave_scale=1.5, iterations=2, jitter=2)
    calls = []
    result, frames = dream(image(), cfg, vgg, lambda *a: calls.append(a))
    sizes = [tuple(f.shape[-2:]) for f in frames]
    assert sizes == [(21, 29), (32, 43), (48, 64)]  # each level = the previous / 1.5
    assert torch.equal(result, frames[-1])
    assert [(o, i) for o, i, _, _ in calls] == [(o, i) for o in range(3) for i in (1, 2)]
    assert [tuple(c[3].shape[-2:]) for c in calls[::2]] == sizes  # the image after each step


def test_octaves_too_small_for_the_layer_are_skipped(vgg):
    cfg = DreamConfig(layers=("relu3_1",), octaves=6, iterations=1, jitter=0)
    _, frames = dream(image(), cfg, vgg)
    # relu3_1 sits behind two poolings: an octave keeps at least 4 * 2**2 = 16 pixels a side.
    assert len(frames) < 6 and min(frames[0].shape[-2:]) >= 16


def test_smoothing_and_seeded_jitter(vgg):
    cfg = DreamConfig(layers=("relu2_2",), octaves=1, iterations=3, smooth=1.0, jitter=3)
    first, _ = dream(image(), cfg, vgg)
    again, _ = dream(image(), cfg, vgg)
    torch.testing.assert_close(first, again)  # same seed, same dream
    rougher, _ = dream(image(), DreamConfig(**{**cfg.__dict__, "smooth": 0.0}), vgg)
    # A blurred gradient adds smoother detail: smaller pixel-to-pixel differences.
    assert (first - image()).diff(dim=-1).abs().mean() < (rougher - image()).diff(
        dim=-1
    ).abs().mean()


def test_bad_targets_are_clear_errors(vgg):
    with pytest.raises(ValueError, match="lacks layers"):
        dream(image(), DreamConfig(layers=("relu4_3",)), vgg)
    with pytest.raises(ValueError, match="no channel 999"):
        dream(image(), DreamConfig(layers=("relu2_2:999",), octaves=1, iterations=1), vgg)
