"""``genart eval``: score folders of images (SWD or FID/KID against real images, digit scores).

Each verb is one ``_add_<verb>`` function in ``VERBS`` that adds its parser and sets ``func``;
every verb prints a table and, with ``--json OUT``, writes ``{"metrics": ..., **details}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from genart.cli.translate import register_translation


def register(sub) -> None:
    """Add ``genart eval`` and its verbs to the top-level sub-parsers."""
    parser = sub.add_parser("eval", help="score generated images (swd, fid, digits)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add_verb in VERBS:
        add_verb(verbs)


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")


def _report(args, metrics: dict[str, float], **details: Any) -> int:
    """Print ``metrics`` as a table (and ``details`` above it); write JSON when asked."""
    for key, value in details.items():
        print(f"# {key}: {value}")
    width = max(map(len, metrics))
    for name, value in metrics.items():
        shown = value if isinstance(value, int) else f"{value:.4f}"
        print(f"{name:<{width}}  {shown}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"metrics": metrics, **details}, indent=1) + "\n")
    return 0


def _add_two_folders(p: argparse.ArgumentParser, seed_help: str) -> None:
    """REAL_DIR FAKE_DIR and the --n, --size, --seed that pick and scale their images."""
    p.add_argument("real_dir", metavar="REAL_DIR", help="folder of real (training) images")
    p.add_argument("fake_dir", metavar="FAKE_DIR", help="folder of generated images")
    p.add_argument("--n", type=int, default=1000, help="images per folder (default: 1000)")
    p.add_argument("--size", type=int, default=64, help="image size (default: 64)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def _load_two_folders(args, channels: int = 3):
    """(n, (real, fake)): as many images from each folder (at most --n), scaled and
    centre-cropped to --size."""
    from genart import images

    folders = (args.real_dir, args.fake_dir)
    n = min(args.n, *(len(images.find_images(d)) for d in folders))
    return n, [images.load_folder(d, n, args.size, channels, seed=args.seed) for d in folders]


# --- swd ----------------------------------------------------------------------------------------


def _add_swd(verbs) -> None:
    p = verbs.add_parser(
        "swd",
        help="sliced Wasserstein distance x 1e3 per pyramid level (Karras et al. 2018)",
        description="SWD between two image folders (lower is better). Images are scaled and "
        "centre-cropped to --size; the same number is taken from each folder.",
    )
    _add_two_folders(p, seed_help="patch and direction seed (default: 0)")
    _add_json_flag(p)
    p.set_defaults(func=_run_swd)


def _run_swd(args) -> int:
    from genart import metrics

    n, (real, fake) = _load_two_folders(args)
    result = metrics.swd(real, fake, seed=args.seed)
    return _report(args, result, n=n, size=args.size, real=args.real_dir, fake=args.fake_dir)


# --- fid ----------------------------------------------------------------------------------------


def _add_fid(verbs) -> None:
    p = verbs.add_parser(
        "fid",
        help="FID and KID between two image folders, in Inception v3's or a judge's features",
        description="FID and KID (lower is better) of generated images against real ones. "
        "--features inception (default): torchvision's ImageNet Inception v3 (scores "
        "fid_inception, kid_inception; weights as --inception-weights says). digits or modes: "
        "genart's judge classifier of that synthetic set (frechet_digits/kid_digits, "
        "frechet_modes/kid_modes), only meaningful for images of that set. Images are scaled "
        "and centre-cropped to --size; the same number is taken from each folder.",
    )
    _add_two_folders(p, seed_help="subset and KID seed (default: 0)")
    p.add_argument("--features", choices=("inception", "digits", "modes"), default="inception",
                   help="the feature space (default: inception)")  # fmt: skip
    p.add_argument(
        "--inception-weights",
        default="auto",
        metavar="auto|PATH|s3://...|random",
        help="Inception v3 weights: auto (torch hub cache, downloaded on first use), a file of "
        "torchvision's state_dict, an s3:// object, or random (tests; meaningless scores)",
    )
    _add_json_flag(p)
    p.set_defaults(func=_run_fid)


def _run_fid(args) -> int:
    from genart import fid

    n, (real, fake) = _load_two_folders(args, channels=3 if args.features != "digits" else 1)
    features = fid.extractor(args.features, args.inception_weights)
    result = fid.scores(real, fake, args.features, features, seed=args.seed)
    details = {"n": n, "size": args.size, "real": args.real_dir, "fake": args.fake_dir}
    if args.features == "inception":
        details["inception_weights"] = features.note
    return _report(args, result, **details)


# --- digits -------------------------------------------------------------------------------------


def _add_digits(verbs) -> None:
    p = verbs.add_parser(
        "digits",
        help="coverage, KL from uniform and Fréchet distance of generated digits",
        description="Score generated digits with genart's synthetic-digit classifier "
        "(trained once and cached in $GENART_CACHE, default ~/.cache/genart).",
    )
    p.add_argument("dir", metavar="DIR", help="folder of generated digit images")
    p.add_argument("--n", type=int, default=None, help="score a random subset of N images")
    _add_json_flag(p)
    p.set_defaults(func=_run_digits)


def _run_digits(args) -> int:
    from genart import digits, images

    generated = images.load_folder(args.dir, args.n, size=digits.SIZE, channels=1)
    result = digits.digit_scores(generated)
    return _report(args, result, dir=args.dir)


VERBS = (_add_swd, _add_fid, _add_digits, register_translation)
