"""``genart translate`` and ``genart onnx``; :func:`register_translation` adds ``genart eval
translation``.

RUN is an exported generator folder (``genart export``), a checkpoint folder or a run folder,
local or ``s3://``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DIRECTIONS = ("AtoB", "BtoA")  # kept here too: importing the pipelines would load torch


def register(sub) -> None:
    """Add the ``translate`` and ``onnx`` verbs."""
    from genart.cli.style import add_backend, add_tile  # here: genart.cli.style imports this

    p = sub.add_parser("translate", help="translate an image or a folder with a trained generator")
    p.add_argument("run", metavar="RUN", help="exported generator folder, checkpoint or run folder")
    p.add_argument("--input", required=True, help="an image file, or a folder / s3:// prefix")
    p.add_argument("--output", required=True, help="folder for the translated PNGs")
    _add_direction(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per Ray Data batch")
    p.add_argument("--actors", type=int, default=1, help="Ray Data actors (one generator each)")
    add_tile(p)
    add_backend(p)
    p.set_defaults(func=translate)

    p = sub.add_parser(
        "onnx", help="add ONNX graphs, checked with onnxruntime, to an export (or write them)"
    )
    p.add_argument("run", metavar="RUN", help="exported folder, checkpoint or run folder")
    p.add_argument("--out", help="folder for <net>.onnx (default: into the export RUN itself, "
                   "which then runs on onnxruntime on CPU)")  # fmt: skip
    p.set_defaults(func=onnx)


def register_translation(eval_sub) -> None:
    """Add ``translation`` to the sub-parsers of ``genart eval``."""
    p = eval_sub.add_parser(
        "translation", help="PSNR/SSIM on held-out ground truth, beside the identity baseline"
    )
    p.add_argument("run", metavar="RUN", help="exported generator folder, checkpoint or run folder")
    p.add_argument("--data", required=True, help="dataset root: test/ (pix2pix) or testA/, "
                   "testA_truth/, testB/, testB_truth/ (CycleGAN)")  # fmt: skip
    _add_direction(p, "default: the run's direction (pix2pix) or both (CycleGAN)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to this file")
    p.add_argument("--seed", type=int, default=0, help="seed of Pix2Pix's test-time dropout")
    p.set_defaults(func=evaluate)


def _add_direction(p: argparse.ArgumentParser, default: str = "default: AtoB") -> None:
    p.add_argument("--direction", choices=DIRECTIONS, help=f"translation direction ({default})")


def translate(args) -> int:
    from genart.cli.style import apply_to_images

    written = apply_to_images(args, args.run, ("pix2pix", "cyclegan"),
                              {"direction": args.direction}, folder_output=True,
                              options={"tile": args.tile, "backend": args.backend})  # fmt: skip
    print(f"translated {len(written)} image(s) into {args.output}")
    return 0


def onnx(args) -> int:
    """Write the checked graphs into the export RUN (its meta lists them) or into ``--out``."""
    from genart import onnx_export, storage
    from genart.errors import InputError
    from genart.pipelines.base import load_nets

    into_export = args.out is None
    if into_export and (storage.is_remote(args.run) or not storage.exists(
            storage.join(args.run, "meta.json"))):  # fmt: skip
        raise InputError(f"{args.run} is not a local export folder: give --out for the graphs")
    nets, cfg = load_nets(args.run, device="cpu")
    if cfg.model not in onnx_export.GRAPH_FAMILIES:
        raise InputError(f"{args.run} holds a '{cfg.model}' model: ONNX graphs are for "
                         f"{', '.join(onnx_export.GRAPH_FAMILIES)}")  # fmt: skip
    folder = Path(args.run if into_export else args.out)
    folder.mkdir(parents=True, exist_ok=True)
    if into_export:
        written = onnx_export.add_to_export(folder, nets, cfg)
    else:
        written = onnx_export.write_graphs(folder, nets, cfg)
    if not written["onnx"]:
        raise InputError(f"no ONNX graph written: {written['onnx_error']}")
    for file in written["onnx"].values():
        print(f"wrote {folder / file} (max abs diff vs torch {written['onnx_max_diff']:.2e})")
    return 0


def evaluate(args) -> int:
    from genart.pipelines import evaluation

    report = evaluation.evaluate_run(args.run, args.data, args.direction, args.seed)
    print(evaluation.format_table(report))
    if args.json:
        print(f"wrote {evaluation.write_json(report, args.json)}")
    return 0
