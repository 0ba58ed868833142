"""Style controls every style pipeline shares (fast style, AdaIN, Gatys): ``strength`` and
``preserve_color``, and the spatial control by a mask image of AdaIN and Gatys. Pure functions
on images; the pipelines apply them, so the CLI, the Ray Data runner and Serve all get them.

- ``strength`` in [0, 1] blends the stylised result with the content in pixel space,
  ``content + strength * (stylised - content)``: 0 gives the content, 1 the full result.
- ``preserve_color`` ``ycbcr`` or ``yiq`` keeps the content's colours: the result's luminance
  with the content's chrominance, in that colour space (Gatys et al. 2016, "Preserving Color in
  Neural Artistic Style Transfer", sec. 2.2, luminance-only transfer). Gatys optimises the
  luminance alone; the feed-forward pipelines recombine their result's luminance with the
  content's chrominance afterwards, the paper's colour transfer applied after the fact.
- ``mask``: a grey image of the content's size (colour masks count by their luminance), read
  as weights in [0, 1]: white (1) is stylised, black (0) keeps the content, or takes the
  ``outside_style`` if one is given; grey levels between weigh the two. The pipelines apply
  it where their method works: Gatys in the Gram matrices it matches (guided Gram matrices,
  Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer"),
  AdaIN in feature space (Huang & Belongie 2017, sec. 7).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from genart.errors import InputError
from genart.images import from_uint8, to_uint8

ColorSpace = Literal["ycbcr", "yiq"]
PreserveColor = Literal["none", "ycbcr", "yiq"]
PRESERVE_COLOR = ("none", "ycbcr", "yiq")

# Rows: luma, then two chroma axes, applied to RGB in [0, 1]. Each chroma row sums to 0, so a
# grey pixel (r = g = b) has zero chroma and its luma equals its grey level.
_LUMA_CHROMA = {
    "ycbcr": ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312)),
    "yiq": ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112)),
}


def check(strength: float = 1.0, preserve_color: str = "none") -> None:
    """InputError (one line, saying what to change) for a strength outside [0, 1] (NaN
    included) or an unknown ``preserve_color``."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 <= value <= 1:  # False for NaN too
        raise InputError(f"strength must be a number in [0, 1], got {strength!r}")
    if preserve_color not in PRESERVE_COLOR:
        raise InputError(
            f"preserve_color must be one of {', '.join(PRESERVE_COLOR)}, got {preserve_color!r}"
        )


def check_mask_size(mask_size: tuple[int, ...], content_size: tuple[int, ...]) -> None:
    """InputError unless a mask's (height, width) is the content's."""
    (h, w), (ch, cw) = mask_size[:2], content_size[:2]
    if (h, w) != (ch, cw):
        raise InputError(
            f"mask is {w}x{h} but the content is {cw}x{ch}: the mask must have the content's size"
        )


def check_regions(mask, outside_style) -> None:
    """InputError for an ``outside_style`` without a ``mask`` (it styles the mask's black)."""
    if outside_style is not None and mask is None:
        raise InputError("an outside style needs a mask: it styles the mask's black region")


def mask_weights(mask: np.ndarray, content_size: tuple[int, ...]) -> torch.Tensor:
    """A uint8 mask image, (H, W) or (H, W, C) with 1 or 3 channels (3: grey by luminance),
    as float (1, 1, H, W) weights in [0, 1], white = 1; InputError unless (H, W) is
    ``content_size``'s."""
    if mask.ndim not in (2, 3) or (mask.ndim == 3 and mask.shape[-1] not in (1, 3)):
        raise InputError(f"a mask is an (H, W) grey or (H, W, 3) RGB image, got {mask.shape}")
    check_mask_size(mask.shape, content_size)
    pixels = torch.from_numpy(np.require(mask, requirements=("C", "W"))).float() / 255
    if mask.ndim == 3 and mask.shape[-1] == 3:
        luma = torch.tensor(_LUMA_CHROMA["ycbcr"][0])
        pixels = (pixels @ luma).clamp(0, 1)  # the weights sum to 1: float error only
    elif mask.ndim == 3:
        pixels = pixels[..., 0]
    return pixels[None, None]


def to_luma_chroma(images: torch.Tensor, space: ColorSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [-1, 1] -> luma (B, 1, H, W) in [0, 1] and chroma (B, 2, H, W)."""
    matrix = torch.tensor(_LUMA_CHROMA[space], dtype=images.dtype, device=images.device)
    mixed = torch.einsum("oc,bchw->bohw", matrix, (images + 1) / 2)
    return mixed[:, :1], mixed[:, 1:]


def from_luma_chroma(luma: torch.Tensor, chroma: torch.Tensor, space: ColorSpace) -> torch.Tensor:
    """Inverse of :func:`to_luma_chroma`: RGB in [-1, 1] (not clamped)."""
    matrix = torch.tensor(_LUMA_CHROMA[space], dtype=torch.float64).inverse()
    matrix = matrix.to(dtype=luma.dtype, device=luma.device)
    rgb = torch.einsum("oc,bchw->bohw", matrix, torch.cat([luma, chroma], dim=1))
    return rgb * 2 - 1


def keep_colours(result: torch.Tensor, content: torch.Tensor, space: ColorSpace) -> torch.Tensor:
    """``result``'s luminance with ``content``'s chrominance: (B, 3, H, W) RGB in [-1, 1], both
    the same size; not clamped (a clamp into the RGB cube may move the chroma)."""
    return from_luma_chroma(
        to_luma_chroma(result, space)[0], to_luma_chroma(content, space)[1], space
    )


def blend(
    content: torch.Tensor, stylised: torch.Tensor, strength: float | torch.Tensor
) -> torch.Tensor:
    """``content + strength * (stylised - content)``: 0 = the content, 1 = ``stylised``;
    ``strength`` may be a tensor of per-pixel weights (a mask) that broadcasts."""
    return torch.lerp(content, stylised, strength)


def apply(
    content: np.ndarray, stylised: np.ndarray, strength: float = 1.0, preserve_color: str = "none"
) -> np.ndarray:
    """Both controls on one uint8 (H, W, C) result and its content (same shape): the colours
    first, then the strength (the two commute before rounding, as both are linear). The
    defaults return ``stylised`` itself; colours are kept only for RGB images."""
    check(strength, preserve_color)
    if strength == 1 and preserve_color == "none":
        return stylised
    # Copied only if need be: torch cannot wrap a read-only array (one read with PIL).
    result, original = (
        from_uint8(torch.from_numpy(np.require(image, requirements=("C", "W"))))[None]
        for image in (stylised, content)
    )
    if preserve_color != "none" and result.shape[1] == 3:
        result = keep_colours(result, original, preserve_color)
    return to_uint8(blend(original, result, strength))[0]
