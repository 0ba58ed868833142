"""What several ``genart`` verbs share: flags, the families a verb takes, and writing results.

Imported by the verb modules, importing none of them (no cycles). Torch-free at import time, so
that building the parser (and ``--help``) stays fast: heavy imports stay inside the functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genart.data import DIRECTIONS


class Registered:
    """Names of the registered families: of spec type ``kind``, or taken by the CLI ``verb``
    (``registry.families``), or all; looked up when printed.

    A help text that reads the registry cannot fall behind it; looking the names up only when
    the help is printed keeps the model modules (torchvision among them) out of every other
    command's start-up.
    """

    def __init__(self, kind: type | None = None, verb: str | None = None):
        self.kind = kind
        self.verb = verb

    def __str__(self) -> str:
        from genart import registry

        if self.verb is not None:
            return ", ".join(registry.families(verb=self.verb))
        return ", ".join(registry.names(self.kind))


def add_export_arg(p: argparse.ArgumentParser, flag: str, verb: str) -> None:
    """The argument naming the export a verb runs (``flag``: "run" or "--model"), its help
    listing the families ``verb`` takes."""
    what = "%(registered)s export (folder, checkpoint or run; local or s3://)"
    if flag.startswith("--"):
        action = p.add_argument(flag, required=True, help=what)
    else:
        action = p.add_argument(flag, metavar=flag.upper(), help=what)
    # argparse fills a help text's %(name)s from the action's attributes when it prints it.
    action.registered = Registered(verb=verb)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")


def add_direction(p: argparse.ArgumentParser, default: str = "default: AtoB") -> None:
    p.add_argument("--direction", choices=DIRECTIONS, help=f"translation direction ({default})")


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


# --- results --------------------------------------------------------------------------------


def add_mask_flags(p: argparse.ArgumentParser) -> None:
    """``--mask`` and ``--outside-style``: spatial control (genart.controls)."""
    p.add_argument(
        "--mask",
        metavar="PATH",
        help="an image of the content's size: its white region is stylised, its black region "
        "keeps the content (or takes --outside-style), grey levels weigh the two",
    )
    p.add_argument(
        "--outside-style",
        metavar="PATH",
        help="with --mask: a second style image, for the mask's black region",
    )


def read_content_and_mask(args):
    """``(content, mask, outside_style)`` read for ``args.content``, ``args.mask`` and
    ``args.outside_style`` (the last two None if not given), fit to ``args.size``.

    The mask must have the content's size as both files are (a one-line error if not), and
    is then resized with the content, so that the two stay aligned.
    """
    from genart import controls
    from genart.data.transforms import fit_long_side
    from genart.errors import InputError
    from genart.images import read

    def read_flag(flag: str, path: str | None, channels: int, side: int = 0):
        """The image a flag names (None if not given); a refusal names the flag and file."""
        if path is None:
            return None
        try:
            return read(path, channels, side)
        except InputError as err:
            raise InputError(f"{flag} {path}: {err}") from err

    controls.check_regions(args.mask, args.outside_style)
    content = read(args.content, 3)
    mask = read_flag("--mask", args.mask, 1)
    if mask is not None:
        controls.check_mask_size(mask.shape, content.shape)
    content, mask = (
        None if image is None else fit_long_side(image, args.size, upscale=True)
        for image in (content, mask)
    )
    return content, mask, read_flag("--outside-style", args.outside_style, 3, args.size)


def add_backend(p: argparse.ArgumentParser) -> None:
    """``--backend``: which runs the networks (the pipelines' ``backend`` option)."""
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="auto (default): onnxruntime on CPU where the export has checked ONNX graphs, "
        "else torch; onnxruntime uses as many threads as torch (OMP_NUM_THREADS)",
    )


def save_image(image, path: Path) -> None:
    """Write a uint8 (H, W, C) image as PNG."""
    from genart.images import encode_png

    path.write_bytes(encode_png(image))


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1) + "\n")


def warn_random(metadata: dict) -> None:
    """A warning on stderr when a loss network's ``metadata`` says its weights are random."""
    from genart.vgg import RANDOM_NOTE

    if metadata.get("vgg_weights") == RANDOM_NOTE:
        print(f"genart: warning: VGG weights are {RANDOM_NOTE}", file=sys.stderr)


# --- an export over one image here, or a folder through Ray Data ------------------------------


def apply_to_images(args, model: str, verb: str, call: dict, folder_output: bool,
                    options=None) -> list:  # fmt: skip
    """Run the export ``model`` (of a family ``verb`` takes) over ``args.input`` (an image, a
    folder or an ``s3://`` prefix) into ``args.output``; returns the files written.

    One image runs in this process on ``args.device`` (if the verb has it); a folder goes
    through the Ray Data runner with ``args.actors`` actors. ``folder_output``: a single image
    is written into the output folder under its own name, not to the output path itself.
    """
    from genart import pipelines, registry, storage

    source = args.input
    if not storage.is_remote(source) and not Path(source).exists():
        raise FileNotFoundError(f"--input {source} does not exist")
    size = getattr(args, "size", 0)
    device = getattr(args, "device", "auto")
    single = not storage.is_remote(source) and Path(source).is_file()
    # A folder's actors build it too: built here first, a wrong export fails on one line.
    families = registry.families(verb=verb)
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
    save_image(image, output)
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
