"""``genart stylize gatys|gatys-batch|fast`` and ``genart dream``.

The hyper-parameter flags of ``stylize gatys``/``gatys-batch`` and ``dream`` map one-to-one onto
the fields of ``GatysConfig``/``DreamConfig`` (``--style-weight 1e5``, ``--style-layers a b``)
and are validated by ``genart.config``; a unit test keeps the tables below in step with the
dataclasses. Results are PNGs with a JSON beside them holding the settings, the final losses and
the loss network's description: ``--vgg-weights random`` results say so there.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

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
    stylize = sub.add_parser("stylize", help="neural style transfer: gatys, gatys-batch, fast")
    verbs = stylize.add_subparsers(dest="verb", required=True, metavar="VERB")

    gatys_defaults = "hyper-parameter defaults: GatysConfig in genart/models/gatys.py"
    p = verbs.add_parser(
        "gatys", help="optimise one image (Gatys et al. 2016)", epilog=gatys_defaults
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
        "gatys-batch", help="every content x style pair as Ray tasks", epilog=gatys_defaults
    )
    p.add_argument("--contents", required=True, help="folder of content images")
    p.add_argument("--styles", required=True, help="folder of style images")
    p.add_argument("--out", required=True, help="output folder (results + contact_sheet.png)")
    _add_common(p, default_size=256)
    _add_config_flags(p, GATYS_FLAGS)
    p.set_defaults(func=gatys_batch)

    p = verbs.add_parser("fast", help="stylise with a trained fast_style network (any size)")
    p.add_argument("--model", required=True, help="exported generator folder, checkpoint or run")
    p.add_argument("--input", required=True, help="an image file, or a folder of images")
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
    p.set_defaults(func=fast)

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


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")


def _add_config_flags(p: argparse.ArgumentParser, table: dict) -> None:
    """One ``--field-name`` flag per config field (values stay strings until validated)."""
    for name, (nargs, text) in table.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, dest=f"cfg_{name}", nargs=nargs, metavar="V", help=text)


def _config(args, kind: type, section: str):
    from genart import config

    given = {
        field.name: getattr(args, f"cfg_{field.name}")
        for field in dataclasses.fields(kind)
        if getattr(args, f"cfg_{field.name}") is not None
    }
    return config.build(kind, given, section)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _warn_random(metadata: dict) -> None:
    from genart.vgg import RANDOM_NOTE

    if metadata.get("vgg_weights") == RANDOM_NOTE:
        print(f"genart: warning: VGG weights are {RANDOM_NOTE}", file=sys.stderr)


def _short(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in losses.items())


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1) + "\n")


# --- stylize gatys -----------------------------------------------------------------------------


def gatys(args) -> int:
    """Stylise one content image; write the PNG, its JSON, and optional intermediate images."""
    from genart.images import to_pil
    from genart.models import gatys as g
    from genart.models.fast_style import read_image

    cfg = _config(args, g.GatysConfig, "gatys")
    vgg = g.loss_network(cfg, args.vgg_weights, _device(args.device))
    _warn_random(vgg.metadata)
    content = read_image(args.content, args.size)
    styles = [read_image(path, args.size) for path in args.style]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def progress(p: g.Progress) -> None:
        if p.iteration == 1 or p.iteration % args.log_every == 0:
            print(f"scale {p.scale + 1}/{cfg.scales} {p.size[0]}x{p.size[1]} "
                  f"iter {p.iteration:4d}  {_short(p.losses)}", flush=True)  # fmt: skip
        if args.save_every and p.iteration % args.save_every == 0:
            frame = output.with_name(f"{output.stem}-s{p.scale}-{p.iteration:05d}.png")
            to_pil(p.image[0]).save(frame)

    image, info = g.stylize(content, styles, cfg, vgg, progress)
    to_pil(image).save(output)
    info = {"content": args.content, "styles": args.style, "size": list(image.shape[-2:]), **info}
    _write_json(output.with_suffix(".json"), info)
    print(f"wrote {output} in {info['seconds']} s; final losses {_short(info['losses'])}")
    return 0


# --- stylize gatys-batch -----------------------------------------------------------------------


def _stylize_pair(content: bytes, style: bytes, cfg_dict: dict, size: int, weights: str):
    """Ray task: one content x style pair -> (PNG bytes, info). Inputs arrive as file bytes, so
    the task runs on any node of a cluster."""
    import torch

    from genart.images import png_bytes
    from genart.models import gatys as g
    from genart.models.fast_style import decode_image

    cfg = g.GatysConfig(**cfg_dict)
    vgg = g.loss_network(cfg, weights, "cuda" if torch.cuda.is_available() else "cpu")
    image, info = g.stylize(decode_image(content, size), [decode_image(style, size)], cfg, vgg)
    return png_bytes(image), info


def gatys_batch(args) -> int:
    """Fan every content x style pair out as a Ray task; write results and a contact sheet."""
    import ray

    from genart.models.gatys import GatysConfig
    from genart.train.launch import init_ray

    cfg = _config(args, GatysConfig, "gatys")
    contents, styles = _images_in(args.contents), _images_in(args.styles)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    init_ray()
    # One slot per pair: a GPU each when the cluster has GPUs, else one CPU each.
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(_stylize_pair).options(**({"num_gpus": 1} if gpus else {"num_cpus": 1}))
    content_refs = [ray.put(path.read_bytes()) for path in contents]
    style_refs = [ray.put(path.read_bytes()) for path in styles]
    settings = dataclasses.asdict(cfg)
    pending = {
        task.remote(c_ref, s_ref, settings, args.size, args.vgg_weights): (ci, si)
        for ci, c_ref in enumerate(content_refs)
        for si, s_ref in enumerate(style_refs)
    }
    print(f"{len(pending)} pairs ({len(contents)} contents x {len(styles)} styles) on Ray")
    results = {}
    while pending:
        (done,), _ = ray.wait(list(pending), num_returns=1)
        ci, si = pending.pop(done)
        png, info = ray.get(done)
        name = f"{contents[ci].stem}__{styles[si].stem}"
        (out / f"{name}.png").write_bytes(png)
        info = {"content": str(contents[ci]), "styles": [str(styles[si])], **info}
        _write_json(out / f"{name}.json", info)
        results[ci, si] = png
        print(f"[{len(results)}/{len(results) + len(pending)}] {name}  {_short(info['losses'])}")
    _warn_random(info)
    sheet = contact_sheet(contents, styles, results)
    sheet.save(out / "contact_sheet.png")
    print(f"wrote {len(results)} results and {out / 'contact_sheet.png'}")
    return 0


def _images_in(folder: str) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    from genart.images import find_images

    return find_images(path, recursive=False)


def contact_sheet(contents: list[Path], styles: list[Path], results: dict, cell: int = 160):
    """A PIL grid: style images across the top, content images down the left, results inside."""
    from PIL import Image, ImageOps

    def thumb(source) -> Image.Image:
        image = Image.open(source if isinstance(source, Path) else io.BytesIO(source))
        return ImageOps.pad(image.convert("RGB"), (cell, cell), color="white")

    sheet = Image.new("RGB", ((len(styles) + 1) * cell, (len(contents) + 1) * cell), "white")
    for si, style in enumerate(styles):
        sheet.paste(thumb(style), ((si + 1) * cell, 0))
    for ci, content in enumerate(contents):
        sheet.paste(thumb(content), (0, (ci + 1) * cell))
        for si in range(len(styles)):
            sheet.paste(thumb(results[ci, si]), ((si + 1) * cell, (ci + 1) * cell))
    return sheet


# --- stylize fast ------------------------------------------------------------------------------


class StylizeBatch:
    """Ray Data callable class: one fast-style network per actor, PNG bytes in and out."""

    def __init__(self, model: str, device: str, size: int = 0, precision: str = "fp32"):
        import torch

        from genart.train.checkpoint import load_exported

        nets, _ = load_exported(model, device)
        # NHWC convolutions help on GPUs; on CPU they measured no faster (benchmarks/style.py).
        fmt = torch.channels_last if device == "cuda" else torch.contiguous_format
        self.net = nets["G"].to(memory_format=fmt)
        self.size = size
        self.precision = precision

    def __call__(self, batch: dict) -> dict:
        from genart.images import png_bytes
        from genart.models.fast_style import decode_image

        images = [decode_image(data, self.size) for data in batch["bytes"]]
        stylised = _stylize(self.net, images, self.precision)
        return {"path": list(batch["path"]), "png": [png_bytes(x) for x in stylised]}


def _stylize(net, images: list, precision: str) -> list:
    """Stylise images of any sizes, batching those that share a size."""
    import torch

    from genart.models.fast_style import apply

    by_size: dict[tuple, list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(tuple(image.shape), []).append(index)
    out = [None] * len(images)
    for indices in by_size.values():
        stylised = apply(net, torch.stack([images[i] for i in indices]), precision).cpu()
        for i, image in zip(indices, stylised):
            out[i] = image
    return out


def fast(args) -> int:
    """Stylise one image directly, or a folder through Ray Data."""
    source, output = Path(args.input), Path(args.output)
    if not source.exists():
        raise FileNotFoundError(f"--input {source} does not exist")
    device = _device(args.device)
    start = time.perf_counter()
    if source.is_file():
        stylizer = StylizeBatch(args.model, device, args.size, args.precision)
        (png,) = stylizer({"bytes": [source.read_bytes()], "path": [str(source)]})["png"]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(png)
        count = 1
    else:
        count = _fast_folder(args, source, output, device)
    print(f"stylised {count} image(s) into {output} in {time.perf_counter() - start:.2f} s")
    return 0


def _fast_folder(args, source: Path, output: Path, device: str) -> int:
    import ray

    from genart import storage
    from genart.data.transforms import IMAGE_EXTENSIONS
    from genart.train.launch import init_ray

    init_ray()
    dataset = ray.data.read_binary_files(
        str(source.resolve()),
        include_paths=True,
        file_extensions=[extension.lstrip(".") for extension in IMAGE_EXTENSIONS],
    )
    stylised = dataset.map_batches(
        StylizeBatch,
        fn_constructor_kwargs={
            "model": storage.absolute(args.model),  # actors need not share our working folder
            "device": device,
            "size": args.size,
            "precision": args.precision,
        },
        batch_size=args.batch_size,
        concurrency=args.actors,
        num_gpus=1 if device == "cuda" else 0,
    )
    output.mkdir(parents=True, exist_ok=True)
    count = 0
    for row in stylised.iter_rows():  # the driver writes: actors may run on other nodes
        (output / f"{Path(row['path']).stem}.png").write_bytes(row["png"])
        count += 1
    return count


# --- dream -------------------------------------------------------------------------------------


def dream(args) -> int:
    """Deep Dream one image; write the result, one frame per octave and a JSON."""
    from genart.images import to_pil
    from genart.models import deepdream as dd
    from genart.models.fast_style import read_image

    cfg = _config(args, dd.DreamConfig, "dream")
    vgg = dd.loss_network(cfg, args.vgg_weights, _device(args.device))
    _warn_random(vgg.metadata)
    image = read_image(args.input, args.size)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def progress(octave: int, iteration: int, value: float) -> None:
        if iteration == 1 or iteration % args.log_every == 0:
            print(f"octave {octave + 1} iter {iteration:3d}  objective {value:.4g} (jittered)",
                  flush=True)  # fmt: skip

    start = time.perf_counter()
    result, frames = dd.dream(image, cfg, vgg, progress)
    seconds = round(time.perf_counter() - start, 3)
    to_pil(result).save(output)
    names = []
    for octave, frame in enumerate(frames):
        names.append(output.with_name(f"{output.stem}-octave{octave}.png"))
        to_pil(frame).save(names[-1])
    info = {
        "input": args.input,
        "frames": [str(name) for name in names],
        "objective": {
            "input": _dream_objective(dd, vgg, image, cfg),
            "result": _dream_objective(dd, vgg, result, cfg),
        },
        "seconds": seconds,
        **dd.info(cfg, vgg),
    }
    _write_json(output.with_suffix(".json"), info)
    print(f"wrote {output} and {len(frames)} octave frames")
    return 0


def _dream_objective(dd, vgg, image, cfg) -> float:
    """The dream objective of one (3, H, W) image, without jitter."""
    import torch

    with torch.no_grad():
        return float(dd.objective(vgg, image[None].to(vgg.scale.device), cfg.layers))
