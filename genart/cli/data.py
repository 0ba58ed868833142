"""``genart data``: draw synthetic datasets, preview image folders, pack folders into Parquet."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Checked against synthetic.KINDS by a unit test (importing it here would load numpy and PIL).
KINDS_HELP = "digits, shapes, pairs, unpaired, styles, modes"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data synth|preview|pack`` to the ``genart`` parser."""
    data = subparsers.add_parser("data", help="make, preview and pack image datasets")
    verbs = data.add_subparsers(dest="verb", required=True, metavar="VERB")

    synth = verbs.add_parser(
        "synth",
        help="draw a synthetic dataset (deterministic for a seed)",
        description="Draw a synthetic dataset in a standard layout; see genart.data.synthetic.",
    )
    synth.add_argument("kind", metavar="KIND", help=f"one of: {KINDS_HELP}")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, default=1000, help="train images (held-out sets: 10%%)")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--rgb", action="store_true", help="digits: colour digit on colour")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: auto)")
    synth.set_defaults(func=synth_command)

    preview = verbs.add_parser("preview", help="write a grid PNG of images found under a folder")
    preview.add_argument("dir", metavar="DIR")
    preview.add_argument(
        "--out",
        help="grid PNG to write (default: DIR-preview.png beside DIR, where training on DIR "
        "does not read it)",
    )
    preview.add_argument(
        "--n", type=positive_int, default=64, help="images in the grid, spread evenly"
    )
    preview.set_defaults(func=preview_command)

    pack = verbs.add_parser("pack", help="pack an image folder into Parquet shards")
    pack.add_argument("dir", metavar="DIR")
    pack.add_argument("--out", required=True, help="PATH.parquet (shards are named after it)")
    pack.add_argument("--rows-per-file", type=int, default=2048)
    pack.set_defaults(func=pack_command)


def synth_command(args: argparse.Namespace) -> int:
    """Draw a dataset and print what was written (images per folder) and the time taken."""
    from genart.data.synthetic import generate, layout

    start = time.perf_counter()
    try:
        out = generate(args.kind, args.out, args.n, args.size, args.seed, args.rgb, args.workers)
    except ValueError as err:  # a bad kind, n, size or seed (an unusable --out: OSError, main)
        print(f"genart: error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    counts = {name: _count_images(out / name) for name in layout(args.kind, args.n)}
    print(f"{args.kind}: wrote {sum(counts.values())} images to {out} in {seconds:.1f} s")
    for name, count in counts.items():
        print(f"  {name + '/':<14}{count:>7}")
    if (out / "labels.csv").exists():
        print(f"  {'labels.csv':<14}{counts['images']:>7} rows")
    return 0


def preview_command(args: argparse.Namespace) -> int:
    """Write a grid of ``--n`` images spread evenly over the sorted files under DIR.

    Unreadable files among them are skipped, each named on stderr, and counted in the summary.
    """
    import torch
    from PIL import Image

    from genart.config import InputError
    from genart.images import find_images, from_pil, save_grid

    root = Path(args.dir)
    out = Path(args.out) if args.out else default_preview(root)
    files = [p for p in find_images(root) if p.resolve() != out.resolve()]
    if not files:
        raise FileNotFoundError(f"no images under {root} besides {out.name}")
    # Evenly spaced rather than the first n: every folder of a layout shows up.
    count = min(args.n, len(files))
    picked = [files[i * len(files) // count] for i in range(count)]
    images = [Image.fromarray(pixels) for pixels in _readable(picked)]
    if not images:
        raise InputError(f"none of the {count} images picked under {root} could be read")
    cell = images[0].size  # the grid needs one size; the first image sets it
    tensors = [from_pil(image.resize(cell)) for image in images]
    save_grid(torch.stack(tensors), out)
    skipped = count - len(images)
    note = f" ({skipped} unreadable skipped)" if skipped else ""
    print(f"preview of {len(images)} images from {root}{note} written to {out}")
    return 0


def default_preview(root: Path) -> Path:
    """``DIR-preview.png`` beside DIR: inside it, the next training run would read the grid."""
    root = root.resolve()  # "." and "data/" have a name and a parent once resolved
    return root.parent / f"{root.name}-preview.png"


def _readable(files: list[Path]) -> Iterator:
    """The decoded RGB pixels of each file that decodes; the others are named on stderr."""
    from genart.data.transforms import DecodeError, decode

    for path in files:
        try:
            yield decode(path.read_bytes())
        except (DecodeError, OSError) as err:
            print(f"genart: skipped {path}: {err}", file=sys.stderr)


def pack_command(args: argparse.Namespace) -> int:
    """Pack DIR into Parquet shards of ``--rows-per-file`` rows; prints the files written."""
    from genart.data.pipelines import pack_parquet

    for path in pack_parquet(args.dir, args.out, args.rows_per_file):
        print(path)
    return 0


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (argparse names the function in its message for non-ints)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _count_images(folder: Path) -> int:
    from genart.data.transforms import IMAGE_EXTENSIONS

    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
