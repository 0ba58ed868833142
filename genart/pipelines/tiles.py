"""Tiled inference: an image-to-image function over a large image, one overlapping tile at a
time, so that its working memory is bounded by the tile, not the image.

Tiles start at multiples of a step (itself a multiple of the network's stride, so that every
tile samples the image on the same grid as a whole-image pass would); the last tile of a row
or column is cut short at the image's edge. Neighbours overlap by ``tile - step`` pixels, and
each tile's output is weighted by a feather: a linear ramp across each overlap with an inner
neighbour, 1 elsewhere. The two ramps of an overlap sum to 1, so the weights of all tiles sum
to 1 at every pixel (a partition of unity) and the output is normalised by that sum.

Networks with instance normalisation (fast style, CycleGAN) normalise each tile by its own
statistics, so neighbouring tiles can differ slightly in tone; the feathered overlap blends
them instead of leaving a seam.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genart.errors import InputError

# The pipelines' default tile side: one tile holds as many pixels as one forward pass may
# (genart.pipelines.base.PIXELS_PER_FORWARD).
DEFAULT_TILE = 1024


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_step(tile: int, overlap: int, align: int = 1) -> int:
    """The distance between tile starts: ``tile - overlap`` rounded down to a multiple of
    ``align``, but at least half a tile (rounded up to ``align``) so that no pixel lies in more
    than two tiles of a row. ``tile`` must be a multiple of ``align``."""
    if tile <= 0 or align <= 0 or tile % align:
        raise ValueError(f"tile ({tile}) must be a positive multiple of align ({align})")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, {tile}), got {overlap}")
    return max((tile - overlap) // align * align, _round_up(-(-tile // 2), align))


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``(start, end)`` of the tiles covering ``range(length)``: one span if ``length <= tile``,
    else spans of at most ``tile`` starting every :func:`tile_step`, the last cut at
    ``length``."""
    if length <= tile:
        return [(0, length)]
    step = tile_step(tile, overlap, align)
    # A start is needed while the tile before it ends short of ``length``.
    return [(start, min(start + tile, length)) for start in range(0, length - tile + step, step)]


def feather(span: tuple[int, int], length: int, ramp: int) -> torch.Tensor:
    """1-D weights of the tile ``span`` of a side ``length``: a linear ramp up over its first
    ``ramp`` pixels if it has a neighbour before, down over its last ``ramp`` if it has one
    after, 1 elsewhere. A ramp up and a ramp down over the same pixels sum to 1."""
    start, end = span
    weights = torch.ones(end - start)
    rising = (torch.arange(ramp) + 0.5) / ramp
    if start > 0:
        weights[:ramp] = rising
    if end < length:
        weights[len(weights) - ramp :] = rising.flip(0)
    return weights


def tiles(
    height: int, width: int, tile: int, overlap: int, align: int = 1
) -> list[tuple[slice, slice, torch.Tensor]]:
    """Every tile of a ``height`` x ``width`` image as (rows, columns, weights (h, w)); the
    weights of all tiles sum to 1 at every pixel."""
    ramp = tile - tile_step(tile, overlap, align)
    out = []
    for rows in tile_spans(height, tile, overlap, align):
        row_weights = feather(rows, height, ramp)
        for cols in tile_spans(width, tile, overlap, align):
            weights = row_weights[:, None] * feather(cols, width, ramp)[None, :]
            out.append((slice(*rows), slice(*cols), weights))
    return out


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tile: int,
    overlap: int,
    align: int = 1,
) -> torch.Tensor:
    """``fn`` over (B, C, H, W) ``images`` in overlapping tiles of at most ``tile`` a side,
    blended by their feather weights; ``fn`` maps (B, C, h, w) to (B, C', h, w) (any size it
    is given). Images no larger than ``tile`` go through ``fn`` whole. Returns float32 on
    ``images``' device.

    Only one tile's activations exist at a time: beside ``fn``'s, the memory is the input
    and a float32 output buffer.
    """
    height, width = images.shape[-2:]
    if height <= tile and width <= tile:
        return fn(images).float()
    out = None
    weight_sum = torch.zeros(height, width, device=images.device)
    for rows, cols, weights in tiles(height, width, tile, overlap, align):
        result = fn(images[..., rows, cols])
        if out is None:
            out = torch.zeros(*result.shape[:-2], height, width, device=images.device)
        weights = weights.to(images.device)
        out[..., rows, cols] += result.to(images.device, torch.float32) * weights
        weight_sum[rows, cols] += weights
    return out / weight_sum


def check_tile(tile) -> int:
    """A pipeline's ``tile`` option: a side in pixels >= 0 (0 = never tile); InputError if not."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
        raise InputError(f"tile must be a whole number of pixels >= 0, got {tile!r}")
    return tile


def tile_geometry(tile: int, stride: int) -> tuple[int, int]:
    """(side, overlap) of the tiles of a network with ``stride``: ``tile`` rounded down to a
    multiple of the stride (at least one stride), so that a tile is never padded beyond it,
    and an eighth of that side of overlap."""
    side = max(stride, tile // stride * stride)
    return side, side // 8


def run_with_tile_option(
    fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: int, stride: int
) -> torch.Tensor:
    """``fn`` over ``images`` as a pipeline's ``tile`` option says: whole if it is 0, else in
    tiles of :func:`tile_geometry` starting on multiples of the network's ``stride``."""
    if not tile:
        return fn(images)
    side, overlap = tile_geometry(tile, stride)
    return run_tiled(fn, images, side, overlap, stride)
