"""``genart weights fetch vgg16|vgg19|inception_v3 [--to PATH|s3://...]``: stage pretrained
weights ahead of time, for a cluster whose workers cannot reach the internet (they then take
``--vgg-weights`` or ``--inception-weights`` with the path or ``s3://`` URI printed here)."""

from __future__ import annotations

import argparse
from pathlib import Path

# genart.vgg.Arch and genart.inception.ARCH, not imported here: both load torch.
ARCHS = ("vgg16", "vgg19", "inception_v3")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``weights fetch`` to the ``genart`` parser."""
    weights = subparsers.add_parser("weights", help="fetch pretrained weights ahead of time")
    verbs = weights.add_subparsers(dest="verb", required=True, metavar="VERB")
    fetch = verbs.add_parser(
        "fetch",
        help="download torchvision's ImageNet weights (verified) and copy them somewhere",
        description="Download torchvision's ImageNet weights of VGG (style losses) or Inception "
        "v3 (FID/KID) into the torch hub cache (where --vgg-weights/--inception-weights auto "
        "look; kept if already there), checking their sha256, and optionally copy them to a "
        "file, folder or s3:// URI that a cluster's workers can read.",
    )
    fetch.add_argument("arch", choices=ARCHS)
    fetch.add_argument(
        "--to",
        metavar="PATH|s3://...",
        help="also copy them here: a file, or a folder (ending in / or existing) for "
        "torchvision's file name (default: the hub cache only)",
    )
    fetch.set_defaults(func=fetch_command)


def fetch_command(args) -> int:
    """Make sure the hub cache holds ``args.arch``'s weights; copy them to ``args.to``."""
    from genart import pretrained, storage

    cached = pretrained.cached_weights(args.arch)
    where = str(cached)
    if args.to:
        where = destination(args.to, cached.name)
        storage.upload_file(cached, where)
    flag = pretrained.FLAGS[args.arch]
    print(f"{args.arch} weights: {where} (pass {flag} {where}, or auto for the cache)")
    return 0


def destination(to: str, name: str) -> str:
    """``to`` itself, or ``to/name`` when ``to`` is a folder (ends in / or exists as one)."""
    from genart import storage

    if to.endswith("/") or (not storage.is_remote(to) and Path(to).expanduser().is_dir()):
        return storage.join(storage.absolute(to), name)
    return storage.absolute(to)
