"""Latent-space inference of a trained DCGAN: samples, latent walks and latent arithmetic.

Seed ``s`` always gives the same latent (:func:`latents`), so a picture in a grid can be named
by its seed and reused in a walk or a sum. Images come out in the pipelines' one form (uint8
``(H, W, C)`` arrays); :func:`genart.images.grid_png` tiles them.

    pipe = LatentPipeline.from_export("runs/digits/export")
    grid = pipe(pipe.sample_latents(range(16)))
    walk = pipe(pipe.walk_latents([3, 17, 42], steps=8))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from genart.images import to_uint8
from genart.models.dcgan import generate
from genart.pipelines.base import ExportedPipeline, Images

INTERPOLATIONS = ("slerp", "linear")


def latents(seeds: Iterable[int], latent_dim: int) -> torch.Tensor:
    """One latent vector per seed (B, latent_dim): seed s always gives the same z."""
    return torch.stack(
        [torch.randn(latent_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
    )


def truncated_latents(seeds: Iterable[int], dim: int, threshold: float | None) -> torch.Tensor:
    """:func:`latents`, with components beyond +-threshold redrawn (the truncation trick).

    Redraws come from the seed's own generator, so a seed always gives the same latent, and one
    with no component beyond the threshold is exactly :func:`latents`'s.
    """
    if threshold is None:
        return latents(seeds, dim)
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(dim, generator=generator)
        while (outside := z.abs() > threshold).any():
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
        rows.append(z)
    return torch.stack(rows)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, mode: str = "slerp"):
    """``steps`` latents from z0 to z1 (both ends included), linear or spherical.

    Slerp follows the great circle (White 2016): Gaussian latents concentrate near a sphere, so
    linear midpoints have atypically small norms and give washed-out images.
    """
    t = torch.linspace(0, 1, steps, dtype=z0.dtype).unsqueeze(1)
    if mode == "linear":
        return (1 - t) * z0 + t * z1
    if mode != "slerp":
        raise ValueError(f"unknown interpolation '{mode}'; valid: {', '.join(INTERPOLATIONS)}")
    cos = torch.dot(z0 / z0.norm(), z1 / z1.norm()).clamp(-1, 1)
    omega = torch.arccos(cos)
    # (Anti)parallel: the great circle is undefined and dividing by sin(omega) ~ 0 amplifies
    # rounding (opposite float32 latents gave midpoints of twice their norm): lerp instead.
    if torch.sin(omega) < 1e-3:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def arithmetic(za: torch.Tensor, zb: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
    """mean(a) - mean(b) + mean(c) over groups of latents (Radford et al. section 6.3)."""
    return za.mean(0) - zb.mean(0) + zc.mean(0)


class LatentPipeline(ExportedPipeline):
    """A DCGAN generator: latents in, images out."""

    @property
    def latent_dim(self) -> int:
        return self.cfg.params.latent_dim

    def __call__(self, z: torch.Tensor) -> Images:
        """One image per latent of ``z`` (B, latent_dim), the generator in eval mode."""
        return list(to_uint8(generate(self.nets["G"], z)))

    def sample_latents(self, seeds: Iterable[int], truncation: float | None = None):
        """The latents of ``seeds`` (see :func:`truncated_latents`)."""
        return truncated_latents(list(seeds), self.latent_dim, truncation)

    def walk_latents(self, seeds: Sequence[int], steps: int, mode: str = "slerp"):
        """``steps`` latents from each seed to the next, one segment after the other."""
        if len(seeds) < 2:
            raise ValueError("a latent walk needs at least two seeds")
        ends = latents(seeds, self.latent_dim)
        return torch.cat([interpolate(a, b, steps, mode) for a, b in zip(ends, ends[1:])])

    def arithmetic_latents(self, a: Sequence[int], b: Sequence[int], c: Sequence[int]):
        """mean(A), mean(B), mean(C) and mean(A) - mean(B) + mean(C), in that order."""
        groups = [latents(seeds, self.latent_dim) for seeds in (a, b, c)]
        return torch.stack([*(g.mean(0) for g in groups), arithmetic(*groups)])
