"""``genart sample``, ``genart interpolate`` and ``genart arithmetic`` for latent-space models."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("sample", help="a grid of generated images; image i uses seed SEED+i")
    _common(p)
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed of the first image")
    p.set_defaults(func=sample)

    p = sub.add_parser("interpolate", help="a strip walking the latent space between seeds")
    _common(p)
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="2+ latent seeds")
    p.add_argument("--steps", type=int, default=10, help="images per segment, ends included")
    p.add_argument("--mode", choices=["slerp", "linear"], default="slerp")
    p.set_defaults(func=interpolate)

    p = sub.add_parser("arithmetic", help="mean(A) - mean(B) + mean(C) over latent seeds")
    _common(p)
    for group in "abc":
        p.add_argument(f"--{group}", required=True, help=f"comma-separated seeds of group {group}")
    p.set_defaults(func=arithmetic)


def _common(p) -> None:
    p.add_argument("run", help="run folder, checkpoint folder or exported folder")
    p.add_argument("--out", required=True, help="output PNG")


def _generator(run: str):
    from genart.train.checkpoint import load_exported

    nets, cfg = load_exported(run)
    if "G" not in nets or not hasattr(cfg.params, "latent_dim"):
        raise SystemExit(f"genart: {run} is a '{cfg.model}' model; these verbs need a latent GAN")
    return nets["G"], cfg.params.latent_dim


def _save(images, out: str, nrow: int | None = None) -> int:
    from genart.images import save_grid

    print(f"wrote {save_grid(images, Path(out), nrow)}")
    return 0


def sample(args) -> int:
    from genart.models import dcgan

    G, dim = _generator(args.run)
    z = dcgan.latents(list(range(args.seed, args.seed + args.n)), dim)
    return _save(dcgan.generate(G, z), args.out)


def interpolate(args) -> int:
    import torch

    from genart.models import dcgan

    if len(args.seeds) < 2:
        raise SystemExit("genart: --seeds needs at least two seeds")
    G, dim = _generator(args.run)
    ends = dcgan.latents(args.seeds, dim)
    rows = [dcgan.interpolate(a, b, args.steps, args.mode) for a, b in zip(ends, ends[1:])]
    return _save(dcgan.generate(G, torch.cat(rows)), args.out, nrow=args.steps)


def arithmetic(args) -> int:
    """Rows: the A images, B images, C images; then their means and the result."""
    import torch

    from genart.models import dcgan

    G, dim = _generator(args.run)
    groups = [dcgan.latents([int(s) for s in getattr(args, g).split(",")], dim) for g in "abc"]
    width = max(4, *(len(g) for g in groups))  # the last row holds 4 images
    means = torch.stack([g.mean(0) for g in groups])
    result = dcgan.arithmetic(*groups).unsqueeze(0)
    blank = torch.full((1, *dcgan.generate(G, result).shape[1:]), -1.0)

    def row(images):
        return torch.cat([images, blank.expand(width - len(images), -1, -1, -1)])

    rows = [row(dcgan.generate(G, g)) for g in groups]
    rows.append(row(dcgan.generate(G, torch.cat([means, result]))))
    print("last row: mean(A), mean(B), mean(C), mean(A) - mean(B) + mean(C)")
    return _save(torch.cat(rows), args.out, nrow=width)
