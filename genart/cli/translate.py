"""``genart translate`` and ``genart onnx``; :func:`register_translation` adds ``genart eval
translation``.

RUN is an exported generator folder (``genart export``), a checkpoint folder or a run folder,
local or ``s3://``.
"""

from __future__ import annotations

from pathlib import Path

from genart.cli.common import add_backend, add_direction, add_export_arg, add_tile, apply_to_images


def register(sub) -> None:
    """Add the ``translate`` and ``onnx`` verbs."""
    p = sub.add_parser("translate", help="translate an image or a folder with a trained generator")
    add_export_arg(p, "run", "translate")
    p.add_argument("--input", required=True, help="an image file, or a folder / s3:// prefix")
    p.add_argument("--output", required=True, help="folder for the translated PNGs")
    add_direction(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per Ray Data batch")
    p.add_argument("--actors", type=int, default=1, help="Ray Data actors (one generator each)")
    add_tile(p)
    add_backend(p)
    p.set_defaults(func=translate)

    p = sub.add_parser(
        "onnx", help="add ONNX graphs, checked with onnxruntime, to an export (or write them)"
    )
    add_export_arg(p, "run", "onnx")
    p.add_argument("--out", help="folder for <net>.onnx (default: into the export RUN itself, "
                   "which then runs on onnxruntime on CPU)")  # fmt: skip
    p.set_defaults(func=onnx)


def register_translation(eval_sub) -> None:
    """Add ``translation`` to the sub-parsers of ``genart eval``."""
    p = eval_sub.add_parser(
        "translation", help="PSNR/SSIM on held-out ground truth, beside the identity baseline"
    )
    add_export_arg(p, "run", "eval translation")
    p.add_argument("--data", required=True, help="dataset root: test/ (pix2pix) or testA/, "
                   "testA_truth/, testB/, testB_truth/ (CycleGAN)")  # fmt: skip
    add_direction(p, "default: the run's direction (pix2pix) or both (CycleGAN)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to this file")
    p.add_argument("--seed", type=int, default=0, help="seed of Pix2Pix's test-time dropout")
    p.set_defaults(func=evaluate)


def translate(args) -> int:
    written = apply_to_images(args, args.run, "translate",
                              {"direction": args.direction}, folder_output=True,
                              options={"tile": args.tile, "backend": args.backend})  # fmt: skip
    print(f"translated {len(written)} image(s) into {args.output}")
    return 0


def onnx(args) -> int:
    """Write the checked graphs into the export RUN (rewritten with them) or into ``--out``."""
    from genart import export, onnx_export
    from genart.errors import InputError

    if args.out is None:
        manifest = export.add_graphs(args.run)
        where = args.run
    else:
        loaded = export.load(args.run)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        manifest = onnx_export.write_graphs(args.out, loaded.nets, loaded.cfg)
        where = args.out
    if not manifest["onnx"]:
        raise InputError(f"no ONNX graph written: {manifest['onnx_error']}")
    for file in manifest["onnx"].values():
        print(f"wrote {where}/{file} (max abs diff vs torch {manifest['onnx_max_diff']:.2e})")
    return 0


def evaluate(args) -> int:
    from genart.pipelines import evaluation

    report = evaluation.evaluate_run(args.run, args.data, args.direction, args.seed)
    print(evaluation.format_table(report))
    if args.json:
        print(f"wrote {evaluation.write_json(report, args.json)}")
    return 0
