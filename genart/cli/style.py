"""``genart stylize gatys|gatys-batch|fast|video`` and ``genart dream``: thin callers of the
pipelines.

The hyper-parameter flags of ``stylize gatys``/``gatys-batch`` and ``dream`` map one-to-one onto
the fields of the ``gatys``/``dream`` families' configs (``--style-weight 1e5``,
``--style-layers a b``) and are validated by ``genart.config``; a unit test keeps the tables
below in step with the dataclasses. Results are PNGs with a JSON beside them holding the
settings, the final losses and the loss network's description: ``--vgg-weights random`` results
say so there. Folders (and ``s3://`` prefixes) go through the Ray Data runner
(``genart.pipelines.runner``); single images run here. Videos always go through Ray Data
(``genart.pipelines.video``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from genart.cli import adain, video
from genart.cli.common import (
    add_backend,
    add_device,
    add_export_arg,
    add_mask_flags,
    add_style_controls,
    add_tile,
    apply_to_images,
    read_content_and_mask,
    save_image,
    warn_random,
    write_json,
)

_MANY = "+"  # a flag taking one or more values (a tuple field)

# Flag tables, kept torch-free so that building the parser (and --help) stays fast.
# field -> (nargs, help); the defaults live in the dataclasses only (see the epilogs).
GATYS_FLAGS = {
    "content_layers": (_MANY, "VGG layers of the content loss"),
    "style_layers": (_MANY, "VGG layers of the style loss"),
    "style_layer_weights": (_MANY, "one weight per style layer"),
    "content_weight": (None, "alpha"),
    "style_weight": (None, "beta"),
    "tv_weight": (None, "gamma, total variation"),
    "optimizer": (None, "lbfgs | adam"),
    "lr": (None, "step size; unset = 1.0 for L-BFGS, 0.02 for Adam"),
    "iterations": (None, "loss-network evaluations per scale"),
    "init": (None, "content | style | noise"),
    "style_blend": (_MANY, "one weight per --style image"),
    "preserve_color": (None, "none | ycbcr | yiq: luminance-only transfer"),
    "strength": (None, "[0, 1]: blend with the content, 0 = content, 1 = full result"),
    "scales": (None, "coarse-to-fine pyramid levels"),
    "scale_factor": (None, "size ratio between pyramid levels"),
    "style_scale": (None, "style long side relative to the content's"),
    "seed": (None, "seed of the noise init"),
    "precision": (None, "auto | fp32 | bf16 (loss network in bfloat16: faster where native)"),
    "cuda_graphs": (None, "true | false: on GPU, replay each evaluation as a CUDA graph"),
    "arch": (None, "vgg19 | vgg16"),
    "pooling": (None, "avg | max"),
}
DREAM_FLAGS = {
    "layers": (_MANY, "layers or layer:channel targets, e.g. relu4_3 relu5_1:7"),
    "octaves": (None, "pyramid levels"),
    "octave_scale": (None, "size ratio between octaves"),
    "iterations": (None, "gradient steps per octave"),
    "step_size": (None, "step on the normalised gradient, [-1, 1] units"),
    "jitter": (None, "max random shift in pixels"),
    "smooth": (None, "Gaussian sigma on the gradient in pixels; 0 = no smoothing"),
    "seed": (None, "seed of the jitter"),
    "arch": (None, "vgg16 | vgg19"),
    "pooling": (None, "max | avg"),
}


def register(sub) -> None:
    """Add the ``stylize`` verbs and ``dream``."""
    stylize = sub.add_parser(
        "stylize", help="neural style transfer: gatys, gatys-batch, fast, adain, video"
    )
    verbs = stylize.add_subparsers(dest="verb", required=True, metavar="VERB")
    _register_gatys(verbs)
    _register_fast(verbs)
    video.register(verbs)
    adain.register(verbs)
    _register_dream(sub)


GATYS_DEFAULTS = "hyper-parameter defaults: GatysConfig in genart/models/gatys.py"


def _register_gatys(verbs) -> None:
    p = verbs.add_parser(
        "gatys", help="optimise one image (Gatys et al. 2016)", epilog=GATYS_DEFAULTS
    )
    p.add_argument("--content", required=True, help="content image")
    p.add_argument("--style", required=True, nargs="+", help="style image(s); see --style-blend")
    p.add_argument("--output", required=True, help="result PNG (a .json is written beside it)")
    p.add_argument("--save-every", type=int, default=0, help="also write every K-th iterate")
    p.add_argument("--log-every", type=int, default=10, help="print losses every K iterations")
    _add_common(p, default_size=512)
    add_device(p)
    add_mask_flags(p)
    _add_config_flags(p, GATYS_FLAGS)
    p.set_defaults(func=gatys)

    p = verbs.add_parser(
        "gatys-batch", help="every content x style pair as Ray tasks", epilog=GATYS_DEFAULTS
    )
    p.add_argument("--contents", required=True, help="folder of content images")
    p.add_argument("--styles", required=True, help="folder of style images")
    p.add_argument("--out", required=True, help="output folder (results + contact_sheet.png)")
    _add_common(p, default_size=256)
    _add_config_flags(p, GATYS_FLAGS)
    p.set_defaults(func=gatys_batch)


def _register_fast(verbs) -> None:
    p = verbs.add_parser("fast", help="stylise with a trained fast_style network (any size)")
    add_export_arg(p, "--model", "stylize fast")
    p.add_argument("--input", required=True, help="an image file, or a folder / s3:// prefix")
    p.add_argument("--output", required=True, help="output PNG (file input) or folder")
    p.add_argument("--size", type=int, default=0, help="resize long side first (0 = as is)")
    p.add_argument("--batch-size", type=int, default=4, help="images per Ray Data batch")
    p.add_argument("--actors", type=int, default=1, help="Ray Data actors (one model each)")
    add_device(p)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: bfloat16 autocast, faster on CPUs with AVX512-BF16 and on GPUs",
    )
    add_style_controls(p, strength=True)
    add_tile(p)
    add_backend(p)
    p.set_defaults(func=fast)


def _register_dream(sub) -> None:
    p = sub.add_parser(
        "dream",
        help="Deep Dream: amplify what VGG layers/channels see",
        epilog="hyper-parameter defaults: DreamConfig in genart/models/deepdream.py",
    )
    p.add_argument("--input", required=True, help="input image")
    p.add_argument("--output", required=True, help="result PNG; per-octave frames beside it")
    p.add_argument("--log-every", type=int, default=5, help="print the objective every K steps")
    _add_common(p, default_size=512)
    add_device(p)
    _add_config_flags(p, DREAM_FLAGS)
    p.set_defaults(func=dream)


def _add_common(p: argparse.ArgumentParser, default_size: int) -> None:
    p.add_argument(
        "--size",
        type=int,
        default=default_size,
        help=f"long side of the content image in pixels (0 = as is; default {default_size})",
    )
    p.add_argument(
        "--vgg-weights",
        default="auto",
        help="auto (torch hub cache) | PATH | s3://bucket/key | random (tests/demos only)",
    )


def _add_config_flags(p: argparse.ArgumentParser, table: dict) -> None:
    """One ``--field-name`` flag per config field (values stay strings until validated)."""
    for name, (nargs, text) in table.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, dest=f"cfg_{name}", nargs=nargs, metavar="V", help=text)


def _config(args, family: str):
    """The family's config from the flags given (validated; the rest take their defaults)."""
    from genart import config, registry

    kind = registry.get(family).config
    given = {
        field.name: getattr(args, f"cfg_{field.name}")
        for field in dataclasses.fields(kind)
        if getattr(args, f"cfg_{field.name}") is not None
    }
    return config.build(kind, given, family)


def _short(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in losses.items())


# --- stylize gatys -----------------------------------------------------------------------------


def gatys(args) -> int:
    """Stylise one content image; write the PNG, its JSON, and optional intermediate images."""
    from genart.images import read, to_uint8
    from genart.pipelines.gatys import GatysPipeline

    cfg = _config(args, "gatys")
    content, mask, outside = read_content_and_mask(args)
    styles = [read(path, 3, args.size) for path in args.style]
    pipe = GatysPipeline.from_config(cfg, args.vgg_weights, args.device)
    warn_random(pipe.vgg.metadata)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def progress(u) -> None:
        if u.iteration == 1 or u.iteration % args.log_every == 0:
            print(f"scale {u.stage + 1}/{u.stages} {u.size[0]}x{u.size[1]} "
                  f"iter {u.iteration:4d}  {_short(u.losses)}", flush=True)  # fmt: skip
        if args.save_every and u.iteration % args.save_every == 0:
            frame = output.with_name(f"{output.stem}-s{u.stage}-{u.iteration:05d}.png")
            save_image(to_uint8(u.image[0]), frame)

    image, info = pipe(content, styles, progress, mask=mask, outside_style=outside)
    save_image(image, output)
    info = {"content": args.content, "styles": args.style, "mask": args.mask,
            "outside_style": args.outside_style, "size": list(image.shape[:2]), **info}  # fmt: skip
    write_json(output.with_suffix(".json"), info)
    print(f"wrote {output} in {info['seconds']} s; final losses {_short(info['losses'])}")
    return 0


# --- stylize gatys-batch -----------------------------------------------------------------------


def gatys_batch(args) -> int:
    """Every content x style pair through the Ray Data runner; results and a contact sheet."""
    import ray

    from genart.pipelines import runner
    from genart.train.launch import init_ray

    cfg = _config(args, "gatys")
    contents, styles = _images_in(args.contents), _images_in(args.styles)
    rows = [
        {"name": f"{runner.stem(c)}__{runner.stem(s)}", "content": c, "styles": [s],
         "meta": json.dumps({"content": c, "styles": [s]})}
        for c in contents
        for s in styles
    ]  # fmt: skip
    init_ray()
    # A GPU per optimisation where the cluster has GPUs, else a CPU each (one left for Ray Data).
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    slots = gpus or max(1, int(resources.get("CPU", 1)) - 1)
    print(f"{len(rows)} pairs ({len(contents)} contents x {len(styles)} styles) on Ray")
    source = runner.Source(family="gatys", params=dataclasses.asdict(cfg),
                           vgg_weights=args.vgg_weights)  # fmt: skip
    runner.run(rows, source, args.out, long_side=args.size, batch_size=1,
               actors=min(len(rows), slots), gpus_per_actor=1 if gpus else 0)  # fmt: skip
    _report_random(Path(args.out) / f"{rows[-1]['name']}.json")
    sheet = contact_sheet(contents, styles, Path(args.out))
    sheet.save(Path(args.out) / "contact_sheet.png")
    print(f"wrote {len(rows)} results and {Path(args.out) / 'contact_sheet.png'}")
    return 0


def _report_random(info_path: Path) -> None:
    if info_path.is_file():
        warn_random(json.loads(info_path.read_text()))


def _images_in(folder: str) -> list[str]:
    from genart import storage
    from genart.pipelines.runner import image_files

    if not storage.is_remote(folder) and not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return image_files(storage.absolute(folder))


def contact_sheet(contents: list[str], styles: list[str], results: Path, cell: int = 160):
    """A PIL grid: style images across the top, content images down the left, results inside."""
    from PIL import Image, ImageOps

    from genart import images
    from genart.pipelines.runner import stem

    def thumb(uri: str) -> Image.Image:
        # The one decoder: upright by EXIF orientation, as the results were computed.
        return ImageOps.pad(images.array_to_pil(images.read(uri)), (cell, cell), color="white")

    sheet = Image.new("RGB", ((len(styles) + 1) * cell, (len(contents) + 1) * cell), "white")
    for si, style in enumerate(styles):
        sheet.paste(thumb(style), ((si + 1) * cell, 0))
    for ci, content in enumerate(contents):
        sheet.paste(thumb(content), (0, (ci + 1) * cell))
        for si, style in enumerate(styles):
            result = str(results / f"{stem(content)}__{stem(style)}.png")
            sheet.paste(thumb(result), ((si + 1) * cell, (ci + 1) * cell))
    return sheet


# --- stylize fast: one image here, a folder through Ray Data ----------------------------------


def fast(args) -> int:
    """Stylise one image directly, or a folder through Ray Data."""
    from genart import controls

    start = time.perf_counter()
    call = {"strength": args.strength, "preserve_color": args.preserve_color}
    controls.check(**call)  # here, not in each Ray Data actor
    written = apply_to_images(args, args.model, "stylize fast", call, folder_output=False,
                              options={"precision": args.precision, "tile": args.tile,
                                       "backend": args.backend})  # fmt: skip
    took = time.perf_counter() - start
    print(f"stylised {len(written)} image(s) into {args.output} in {took:.2f} s")
    return 0


# --- dream -------------------------------------------------------------------------------------


def dream(args) -> int:
    """Deep Dream one image; write the result, one frame per octave and a JSON."""
    from genart.images import read
    from genart.pipelines.dream import DreamPipeline

    cfg = _config(args, "dream")
    pipe = DreamPipeline.from_config(cfg, args.vgg_weights, args.device)
    warn_random(pipe.vgg.metadata)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def progress(u) -> None:
        if u.iteration == 1 or u.iteration % args.log_every == 0:
            value = u.losses["objective"]
            print(f"octave {u.stage + 1} iter {u.iteration:3d}  objective {value:.4g} (jittered)",
                  flush=True)  # fmt: skip

    result, frames, info = pipe(read(args.input, 3, args.size), progress)
    save_image(result, output)
    names = []
    for octave, frame in enumerate(frames):
        names.append(output.with_name(f"{output.stem}-octave{octave}.png"))
        save_image(frame, names[-1])
    info = {"input": args.input, "frames": [str(name) for name in names], **info}
    write_json(output.with_suffix(".json"), info)
    print(f"wrote {output} and {len(frames)} octave frames")
    return 0
