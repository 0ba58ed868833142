"""Draw a synthetic dataset where a fresh cluster's workers can read it: ``python
jobs/make_data.py digits --out s3://bucket/data/digits --n 6000 --size 32``.

On a multi-node cluster every node reads the training data, so ``--out`` should be shared
storage (``s3://...``); the images are drawn in a local scratch folder and uploaded. Re-running
rewrites identical files, so a resubmitted job is harmless; a target holding other files (a
larger earlier draw, another dataset) is refused rather than mixed in.
"""

import argparse
import sys
import tempfile

from genart import storage
from genart.data import synthetic


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="draw a synthetic dataset (local or s3://)")
    parser.add_argument("kind", choices=synthetic.KINDS)
    parser.add_argument("--out", required=True, help="folder or s3:// prefix")
    parser.add_argument("--n", type=int, default=1000, help="train images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rgb", action="store_true", help="digits: colour digit on colour")
    return parser.parse_args(argv)


def make(args: argparse.Namespace) -> str:
    """Draw the dataset into ``args.out`` (via a scratch folder when remote); returns where."""
    out = storage.absolute(args.out)  # a plain path for local ones, file:// included

    def draw(folder: str) -> str:
        return synthetic.generate(args.kind, folder, args.n, args.size, args.seed, args.rgb)

    if not storage.is_remote(out):
        return str(draw(out))  # generate itself refuses a folder holding other files
    with tempfile.TemporaryDirectory(prefix="genart-data-") as scratch:
        drawn = draw(scratch)
        foreign = foreign_files(out, drawn)
        if foreign:
            raise ValueError(
                f"{out} holds files this dataset would not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}): an earlier, larger or other dataset "
                "would mix into this one; use an empty prefix"
            )
        storage.upload_dir(drawn, out)
    return out


def foreign_files(uri: str, drawn: str) -> list[str]:
    """Files under ``uri`` that are not among the ``drawn`` dataset's (same relative paths).

    The same dataset drawn again writes the same files, so a resubmitted job passes.
    """
    ours = set(storage.list_files(drawn))
    return [name for name in storage.list_files(uri) if name not in ours]


def main(argv: list[str] | None = None) -> int:
    """Draw the dataset; a bad value or an unusable ``--out`` exits 2 with one line."""
    args = parse(argv)
    try:
        where = make(args)
    except (ValueError, OSError) as err:  # synthetic raises ValueError for a bad n, size or seed
        print(f"make_data: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.kind} data ready at {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
