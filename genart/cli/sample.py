"""``genart sample``, ``genart interpolate`` and ``genart arithmetic`` for latent-space models."""

from __future__ import annotations

from pathlib import Path

from genart.cli.common import add_export_arg


def register(sub) -> None:
    p = sub.add_parser("sample", help="a grid of generated images; image i uses seed SEED+i")
    _common(p, "sample")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed of the first image")
    p.set_defaults(func=sample)

    p = sub.add_parser("interpolate", help="a strip walking the latent space between seeds")
    _common(p, "interpolate")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="2+ latent seeds")
    p.add_argument("--steps", type=int, default=10, help="images per segment, ends included")
    p.add_argument("--mode", choices=["slerp", "linear"], default="slerp")
    p.set_defaults(func=interpolate)

    p = sub.add_parser("arithmetic", help="mean(A) - mean(B) + mean(C) over latent seeds")
    _common(p, "arithmetic")
    for group in "abc":
        p.add_argument(f"--{group}", required=True, help=f"comma-separated seeds of group {group}")
    p.set_defaults(func=arithmetic)


def _common(p, verb: str) -> None:
    add_export_arg(p, "run", verb)
    p.add_argument("--out", required=True, help="output PNG")


def _pipeline(run: str, verb: str):
    """The latent pipeline of ``run``; an InputError for a family ``verb`` does not take."""
    from genart import pipelines, registry

    return pipelines.load(run, "cpu", registry.families(verb=verb))


def _save(images, out: str, nrow: int | None = None) -> int:
    from genart.images import save_grid

    print(f"wrote {save_grid(images, Path(out), nrow)}")
    return 0


def sample(args) -> int:
    pipe = _pipeline(args.run, "sample")
    return _save(pipe(pipe.sample_latents(range(args.seed, args.seed + args.n))), args.out)


def interpolate(args) -> int:
    from genart.errors import InputError

    if len(args.seeds) < 2:
        raise InputError("--seeds needs at least two seeds")
    pipe = _pipeline(args.run, "interpolate")
    walk = pipe.walk_latents(args.seeds, args.steps, args.mode)
    return _save(pipe(walk), args.out, nrow=args.steps)


def arithmetic(args) -> int:
    """Rows: the A images, B images, C images; then their means and the result."""
    import numpy as np

    pipe = _pipeline(args.run, "arithmetic")
    groups = [[int(s) for s in getattr(args, g).split(",")] for g in "abc"]
    width = max(4, *(len(g) for g in groups))  # the last row holds 4 images
    rows = [pipe(pipe.sample_latents(seeds)) for seeds in groups]
    rows.append(pipe(pipe.arithmetic_latents(*groups)))
    blank = np.zeros_like(rows[0][0])  # black cells pad the shorter rows

    cells = [image for row in rows for image in row + [blank] * (width - len(row))]
    print("last row: mean(A), mean(B), mean(C), mean(A) - mean(B) + mean(C)")
    return _save(cells, args.out, nrow=width)
