"""Gatys style transfer: the losses by hand, optimisation, colour preservation, pyramid, blends.

A random (seeded) VGG truncated at relu3_1 and 32x48 images keep every run well under a second.
"""

import pytest
import torch
import torch.nn.functional as F

from genart.controls import to_luma_chroma
from genart.losses import content_loss, gram_matrix, style_loss, tv_loss
from genart.models.gatys import GatysConfig, loss_network, match_luma, stylize
from genart.vgg import RANDOM_NOTE

SMALL = {"content_layers": ("relu2_2",), "style_layers": ("relu1_1", "relu2_1", "relu3_1")}


def smooth_image(h: int, w: int, seed: int, amplitude: float = 0.8) -> torch.Tensor:
    """A (3, h, w) image of smooth colour blobs in [-amplitude, amplitude]."""
    g = torch.Generator().manual_seed(seed)
    coarse = (torch.rand(1, 3, max(1, h // 8), max(1, w // 8), generator=g) * 2 - 1) * amplitude
    return F.interpolate(coarse, size=(h, w), mode="bilinear")[0]


@pytest.fixture(scope="module")
def vgg():
    return loss_network(GatysConfig(**SMALL), "random")


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return smooth_image(32, 48, 0), torch.rand(3, 40, 40, generator=g) * 2 - 1


def run(images, vgg, **overrides):
    content, style = images
    cfg = GatysConfig(**SMALL, **{"iterations": 10, **overrides})
    seen = []
    image, info = stylize(content, [style], cfg, vgg, progress=seen.append)
    return image, info, seen


# --- the losses, against values computed by hand -------------------------------------------------


def test_gram_matrix_by_hand():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    # F F^T = [[1+4, 3+8], [3+8, 9+16]], normalised by C*H*W = 4.
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(features), expected)


def test_style_content_and_tv_losses_by_hand():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    # Gram entries 1.25, 2.75, 2.75, 6.25 against a zero target: mean of squares.
    assert style_loss(features, torch.zeros(1, 2, 2)).item() == pytest.approx(55.75 / 4)
    assert content_loss(features, torch.zeros_like(features)).item() == pytest.approx(7.5)
    image = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).view(1, 1, 2, 2)
    # Vertical |3-0|, |5-1| -> mean 3.5; horizontal |1-0|, |5-3| -> mean 1.5.
    assert tv_loss(image).item() == pytest.approx(5.0)


# --- optimisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_total_loss_drops_by_a_large_factor_in_a_few_iterations(images, vgg, optimizer):
    image, info, seen = run(images, vgg, init="noise", optimizer=optimizer,
                            lr=0.05 if optimizer == "adam" else None)  # fmt: skip
    first = seen[0].losses["total"]
    assert info["losses"]["total"] < first / (8 if optimizer == "lbfgs" else 3)
    assert image.shape == (3, 32, 48)  # non-square size kept
    assert image.min() >= -1 and image.max() <= 1
    assert [p.iteration for p in seen] == list(range(1, 11)) and info["evaluations"] == 10


def test_losses_are_weighted_terms_that_sum_to_the_total(images, vgg):
    _, info, seen = run(images, vgg, tv_weight=0.5, iterations=3)
    losses = info["losses"]
    assert losses["tv"] > 0 and losses["content"] > 0 and losses["style"] > 0
    assert losses["total"] == pytest.approx(losses["content"] + losses["style"] + losses["tv"])
    assert info["vgg_weights"] == RANDOM_NOTE and info["config"]["tv_weight"] == 0.5


def test_inits_start_where_they_say(images, vgg):
    content, style = images
    *_, from_content = run(images, vgg, init="content", iterations=1)
    assert from_content[0].losses["content"] == 0  # the content image reproduces its features
    *_, from_style = run(images, vgg, init="style", iterations=1)
    assert from_style[0].losses["content"] > 0


def test_coarse_to_fine_optimises_each_scale_and_ends_at_full_size(images, vgg):
    image, info, seen = run(images, vgg, scales=2, iterations=4)
    assert info["sizes"] == [[16, 24], [32, 48]]
    assert [p.size for p in seen] == [(16, 24)] * 4 + [(32, 48)] * 4
    assert info["evaluations"] == 8 and image.shape == (3, 32, 48)


def test_blend_weights_choose_between_styles(images, vgg):
    content, style = images
    other = torch.rand(3, 24, 56, generator=torch.Generator().manual_seed(5)) * 2 - 1
    cfg = GatysConfig(**SMALL, iterations=5)
    alone, _ = stylize(content, [style], cfg, vgg)
    cfg_blend = GatysConfig(**SMALL, iterations=5, style_blend=(1.0, 0.0))
    blended, _ = stylize(content, [style, other], cfg_blend, vgg)
    torch.testing.assert_close(blended, alone)  # a zero-weight style changes nothing
    mixed, _ = stylize(content, [style, other], GatysConfig(**SMALL, iterations=5), vgg)
    assert (mixed - alone).abs().max() > 1e-3


def test_invalid_requests_fail_early(images, vgg):
    content, style = images
    with pytest.raises(ValueError, match="lacks layers"):
        stylize(content, [style], GatysConfig(style_layers=("relu5_1",)), vgg)
    with pytest.raises(ValueError, match="style_blend"):
        stylize(content, [style], GatysConfig(**SMALL, style_blend=(1.0, 2.0)), vgg)
    with pytest.raises(ValueError, match="at least one style"):
        stylize(content, [], GatysConfig(**SMALL), vgg)


# --- colour preservation (luminance-only transfer) ----------------------------------------------


def test_match_luma_copies_mean_and_std():
    source, reference = torch.rand(1, 1, 9, 9) * 0.2, torch.rand(1, 1, 6, 6)
    matched = match_luma(source, reference)
    assert matched.mean().item() == pytest.approx(reference.mean().item(), abs=1e-6)
    assert matched.std().item() == pytest.approx(reference.std().item(), rel=1e-5)


@pytest.mark.parametrize("space", ["ycbcr", "yiq"])
def test_colour_preservation_keeps_the_content_chroma(images, vgg, space):
    content, _ = images
    kept, _, _ = run(images, vgg, preserve_color=space)
    changed, _, _ = run(images, vgg)
    content_chroma = to_luma_chroma(content[None], space)[1]
    unclamped = (kept.abs() < 0.999).all(0)  # clamping into RGB range may move chroma
    assert unclamped.float().mean() > 0.5
    kept_chroma = to_luma_chroma(kept[None], space)[1]
    assert (kept_chroma - content_chroma)[0][:, unclamped].abs().max() < 1e-4
    assert (to_luma_chroma(changed[None], space)[1] - content_chroma).abs().max() > 0.05
    assert not torch.allclose(kept, content, atol=1e-3)  # the luminance did change


def test_bf16_loss_network_still_optimises_in_fp32(images, vgg):
    image, info, seen = run(images, vgg, init="noise", precision="bf16")
    assert image.dtype == torch.float32
    assert info["losses"]["total"] < seen[0].losses["total"] / 4
