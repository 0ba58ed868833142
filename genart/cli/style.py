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
import sys
import time
from pathlib import Path

from genart.cli import adain, video

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
        "stylize", help="neural style transfer: gatys, gatys-batch, fast, video"
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
    _add_device(p)
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
    p.add_argument("--model", required=True, help="exported generator folder, checkpoint or run")
    p.add_argument("--input", required=True, help="an image file, or a folder / s3:// prefix")
    p.add_argument("--output", required=True, help="output PNG (file input) or folder")
    p.add_argument("--size", type=int, default=0, help="resize long side first (0 = as is)")
    p.add_argument("--batch-size", type=int, default=4, help="images per Ray Data batch")
    p.add_argument("--actors", type=int, default=1, help="Ray Data actors (one model each)")
    _add_device(p)
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
    _add_device(p)
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


def add_style_controls(p: argparse.ArgumentParser, strength: bool) -> None:
    """``--preserve-color`` and, if ``strength``, ``--strength`` (genart.controls checks them:
    a bad value is a one-line error, before any work)."""
    if strength:
        p.add_argument(
            "--strength",
            type=float,
            default=1.0,
            help="in [0, 1]: blend with the input, 0 = the input, 1 = full style (default)",
        )
    p.add_argument(
        "--preserve-color",
        choices=("none", "ycbcr", "yiq"),
        default="none",
        help="keep the input's colours: only the luminance is stylised (default none)",
    )


def add_tile(p: argparse.ArgumentParser) -> None:
    """``--tile N``: the side of the overlapping tiles a larger image runs in (the pipelines'
    ``tile`` option; 1024 is theirs too, kept here so --help stays torch-free)."""
    p.add_argument(
        "--tile",
        type=int,
        default=1024,
        metavar="N",
        help="run images larger than N px a side in overlapping N px tiles, blended, so memory "
        "follows N, not the image (default 1024; 0 = never tile)",
    )


def add_backend(p: argparse.ArgumentParser) -> None:
    """``--backend``: which runs the networks (the pipelines' ``backend`` option)."""
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="auto (default): onnxruntime on CPU where the export has checked ONNX graphs, "
        "else torch; onnxruntime uses as many threads as torch (OMP_NUM_THREADS)",
    )


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")


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


def _warn_random(metadata: dict) -> None:
    from genart.vgg import RANDOM_NOTE

    if metadata.get("vgg_weights") == RANDOM_NOTE:
        print(f"genart: warning: VGG weights are {RANDOM_NOTE}", file=sys.stderr)


def _short(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in losses.items())


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1) + "\n")


def _save(image, path: Path) -> None:
    from genart.images import encode_png

    path.write_bytes(encode_png(image))


# --- stylize gatys -----------------------------------------------------------------------------


def gatys(args) -> int:
    """Stylise one content image; write the PNG, its JSON, and optional intermediate images."""
    from genart.images import read, to_uint8
    from genart.pipelines.gatys import GatysPipeline

    cfg = _config(args, "gatys")
    pipe = GatysPipeline.from_config(cfg, args.vgg_weights, args.device)
    _warn_random(pipe.vgg.metadata)
    content = read(args.content, 3, args.size)
    styles = [read(path, 3, args.size) for path in args.style]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def progress(u) -> None:
        if u.iteration == 1 or u.iteration % args.log_every == 0:
            print(f"scale {u.stage + 1}/{u.stages} {u.size[0]}x{u.size[1]} "
                  f"iter {u.iteration:4d}  {_short(u.losses)}", flush=True)  # fmt: skip
        if args.save_every and u.iteration % args.save_every == 0:
            frame = output.with_name(f"{output.stem}-s{u.stage}-{u.iteration:05d}.png")
            _save(to_uint8(u.image[0]), frame)

    image, info = pipe(content, styles, progress)
    _save(image, output)
    info = {"content": args.content, "styles": args.style, "size": list(image.shape[:2]), **info}
    _write_json(output.with_suffix(".json"), info)
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
        _warn_random(json.loads(info_path.read_text()))


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


# --- stylize fast and translate: one image here, a folder through Ray Data ---------------------


def apply_to_images(args, model: str, families: tuple[str, ...], call: dict,
                    folder_output: bool, options=None) -> list:  # fmt: skip
    """Run the export ``model`` (of one of ``families``) over ``args.input`` (an image, a
    folder or an ``s3://`` prefix) into ``args.output``; returns the files written.

    One image runs in this process on ``args.device`` (if the verb has it); a folder goes
    through the Ray Data runner with ``args.actors`` actors. ``folder_output``: a single image
    is written into the output folder under its own name, not to the output path itself.
    """
    from genart import pipelines, storage

    source = args.input
    if not storage.is_remote(source) and not Path(source).exists():
        raise FileNotFoundError(f"--input {source} does not exist")
    size = getattr(args, "size", 0)
    device = getattr(args, "device", "auto")
    single = not storage.is_remote(source) and Path(source).is_file()
    # A folder's actors build it too: built here first, a wrong export fails on one line.
    pipe = pipelines.load(model, device if single else "cpu", families, **(options or {}))
    if single:
        return [_one_image(args, pipe, call, folder_output, size)]
    return _folder(args, model, call, size, options or {})


def _one_image(args, pipe, call: dict, folder_output: bool, size: int) -> Path:
    from genart.images import read

    (image,) = pipe([read(args.input, 3, size)], **call)
    output = Path(args.output)
    if folder_output:
        output = output / f"{Path(args.input).stem}.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    _save(image, output)
    return output


def _folder(args, model: str, call: dict, size: int, options) -> list:
    from genart import storage
    from genart.pipelines import runner
    from genart.train.launch import init_ray

    files = runner.image_files(storage.absolute(args.input))
    rows = [{"name": runner.stem(uri), "image": uri} for uri in files]
    init_ray(workers=args.actors)
    gpus = 1 if getattr(args, "device", "auto") == "cuda" else 0
    # Actors need not share our working folder: give them the export's absolute location.
    source = runner.Source(export=storage.absolute(model), options=options)
    out = storage.absolute(args.output)
    return runner.run(rows, source, out, call=call, long_side=size, batch_size=args.batch_size,
                      actors=args.actors, gpus_per_actor=gpus)  # fmt: skip


def fast(args) -> int:
    """Stylise one image directly, or a folder through Ray Data."""
    from genart import controls

    start = time.perf_counter()
    call = {"strength": args.strength, "preserve_color": args.preserve_color}
    controls.check(**call)  # here, not in each Ray Data actor
    written = apply_to_images(args, args.model, ("fast_style",), call, folder_output=False,
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
    _warn_random(pipe.vgg.metadata)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def progress(u) -> None:
        if u.iteration == 1 or u.iteration % args.log_every == 0:
            value = u.losses["objective"]
            print(f"octave {u.stage + 1} iter {u.iteration:3d}  objective {value:.4g} (jittered)",
                  flush=True)  # fmt: skip

    result, frames, info = pipe(read(args.input, 3, args.size), progress)
    _save(result, output)
    names = []
    for octave, frame in enumerate(frames):
        names.append(output.with_name(f"{output.stem}-octave{octave}.png"))
        _save(frame, names[-1])
    info = {"input": args.input, "frames": [str(name) for name in names], **info}
    _write_json(output.with_suffix(".json"), info)
    print(f"wrote {output} and {len(frames)} octave frames")
    return 0
