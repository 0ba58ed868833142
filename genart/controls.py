"""Style controls every style pipeline shares (fast style, AdaIN, Gatys): ``strength`` and
``preserve_color``. Pure functions on images; the pipelines apply them, so the CLI, the Ray
Data runner and Serve all get them.

- ``strength`` in [0, 1] blends the stylised result with the content in pixel space,
  ``content + strength * (stylised - content)``: 0 gives the content, 1 the full result.
- ``preserve_color`` ``ycbcr`` or ``yiq`` keeps the content's colours: the result's luminance
  with the content's chrominance, in that colour space (Gatys et al. 2016, "Preserving Color in
  Neural Artistic Style Transfer", sec. 2.2, luminance-only transfer). Gatys optimises the
  luminance alone; the feed-forward pipelines recombine their result's luminance with the
  content's chrominance afterwards, the paper's colour transfer applied after the fact.
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


def blend(content: torch.Tensor, stylised: torch.Tensor, strength: float) -> torch.Tensor:
    """``content + strength * (stylised - content)``: 0 = the content, 1 = ``stylised``."""
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
