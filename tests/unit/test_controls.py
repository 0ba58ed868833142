"""The style controls every style pipeline shares: strength and colour preservation."""

import math

import numpy as np
import pytest
import torch

from genart import controls
from genart.controls import apply, blend, from_luma_chroma, keep_colours, to_luma_chroma
from genart.errors import InputError


@pytest.mark.parametrize("space", ["ycbcr", "yiq"])
def test_luma_chroma_round_trip(space):
    images = torch.rand(2, 3, 5, 7) * 2 - 1
    luma, chroma = to_luma_chroma(images, space)
    assert luma.shape == (2, 1, 5, 7) and chroma.shape == (2, 2, 5, 7)
    torch.testing.assert_close(from_luma_chroma(luma, chroma, space), images)
    grey = torch.full((1, 3, 2, 2), 0.2)
    assert to_luma_chroma(grey, space)[1].abs().max() < 1e-6  # grey has no chroma


@pytest.mark.parametrize("space", ["ycbcr", "yiq"])
def test_keep_colours_takes_the_results_luma_and_the_contents_chroma(space):
    generator = torch.Generator().manual_seed(0)
    result, content = (torch.rand(1, 3, 6, 5, generator=generator) * 2 - 1 for _ in range(2))
    kept = keep_colours(result, content, space)
    luma, chroma = to_luma_chroma(kept, space)
    torch.testing.assert_close(luma, to_luma_chroma(result, space)[0])
    torch.testing.assert_close(chroma, to_luma_chroma(content, space)[1])
    assert not torch.allclose(kept, result, atol=0.05)  # the result's colours did go


def test_blend_is_content_at_0_the_result_at_1_and_halfway_at_half():
    content, stylised = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert torch.equal(blend(content, stylised, 0.0), content)
    assert torch.equal(blend(content, stylised, 1.0), stylised)
    assert torch.equal(blend(content, stylised, 0.5), torch.full_like(content, 0.5))


def test_apply_on_uint8_images():
    rng = np.random.default_rng(0)
    content, stylised = (rng.integers(0, 256, (4, 6, 3), dtype=np.uint8) for _ in range(2))
    assert apply(content, stylised) is stylised  # the defaults change nothing
    assert np.array_equal(apply(content, stylised, strength=0.0), content)
    half = apply(content, stylised, strength=0.5).astype(int)
    assert np.abs(half - (content.astype(int) + stylised) / 2).max() <= 0.5
    kept = apply(content, stylised, preserve_color="yiq")
    assert kept.shape == stylised.shape and kept.dtype == np.uint8
    assert not np.array_equal(kept, stylised)


@pytest.mark.parametrize(
    ("strength", "preserve_color", "reason"),
    [
        (1.5, "none", "strength must be a number in [0, 1], got 1.5"),
        (-0.1, "none", "strength must be a number in [0, 1], got -0.1"),
        (math.nan, "none", "strength must be a number in [0, 1], got nan"),
        ("x", "none", "strength must be a number in [0, 1], got 'x'"),
        (1.0, "lab", "preserve_color must be one of none, ycbcr, yiq, got 'lab'"),
    ],
)
def test_bad_controls_are_input_errors(strength, preserve_color, reason):
    with pytest.raises(InputError) as caught:
        controls.check(strength, preserve_color)
    assert str(caught.value) == reason
