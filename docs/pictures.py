"""Make the README's pictures with genart's own commands:
``.venv/bin/python docs/pictures.py --photo PHOTO.jpg --style PAINTING.jpg``.

Writes ``docs/images/``:

- ``dcgan-samples.png``: ``genart sample`` of a DCGAN trained on generated digits
  (``jobs/dcgan-digits.yaml``, 2 local Ray Train workers);
- ``dcgan-interpolation.png``: ``genart interpolate`` (slerp) between four latent seeds;
- ``pix2pix-triptych.png``: held-out label maps | ``genart translate`` output | the true scene,
  from a short Pix2Pix run on ``genart data synth pairs``;
- ``gatys-random-vgg.png``: ``genart stylize gatys`` of a photo with a painting's style, with a
  *random* VGG (no ImageNet weights needed; the result is texture, not art);
- ``row.png``: the four side by side, for the README;
- ``gatys-mask-random-vgg.png`` (``--only masks``, not in the row): photo | mask | ``genart
  stylize gatys --mask --outside-style``, the mask being the photo's darkest region (its
  luminance, blurred and thresholded), with a random VGG as above.

Everything else (data, runs, exports) goes under ``--work`` (default ``runs/pictures``, ignored
by git). Rerunning reuses what is there: a finished run is resumed with the same ``--steps``,
which trains nothing. On 2 CPU cores the whole script takes about a quarter of an hour.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
GENART = Path(sys.executable).with_name("genart")  # the console script of this venv
PANEL_HEIGHT = 240  # px: every panel of row.png is scaled to this height
GAP = 12  # px of white between panels


def main(argv: list[str] | None = None) -> int:
    """Run every step named in ``--only`` (default: all), then compose row.png."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "runs" / "pictures",
        help="folder for data, runs and exports (default: runs/pictures)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "docs" / "images",
        help="folder for the PNGs (default: docs/images)",
    )
    # The README's are pytorch/examples' fast_neural_style images (amber.jpg, candy.jpg).
    parser.add_argument("--photo", help="content photo for the Gatys panel (a photo of yours)")
    parser.add_argument("--style", help="style image for the Gatys panel (a painting of yours)")
    parser.add_argument("--outside-style", help="masks: a second painting, outside the mask")
    parser.add_argument("--dcgan-steps", type=int, default=1500)
    parser.add_argument("--pix2pix-steps", type=int, default=600)
    parser.add_argument("--gatys-iterations", type=int, default=150)
    parser.add_argument("--only", nargs="+", choices=["dcgan", "pix2pix", "gatys", "row", "masks"],
                        help="only these steps (masks: only when named)")  # fmt: skip
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = args.only or ["dcgan", "pix2pix", "gatys", "row"]
    start = time.perf_counter()
    if "dcgan" in steps:
        dcgan(args)
    if "pix2pix" in steps:
        pix2pix(args)
    if "gatys" in steps:
        gatys(args)
    if "row" in steps:
        row(args.out)
    if "masks" in steps:
        masks(args)
    print(f"pictures: {time.perf_counter() - start:.0f} s")
    return 0


def genart(*argv: str | Path) -> None:
    """Run one ``genart`` command as a user would; stop the script if it fails."""
    command = [str(GENART), *map(str, argv)]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def train(model: str, name: str, work: Path, *argv: str | Path) -> Path:
    """``genart train`` into ``work/runs/NAME``, resuming a run that is already there (so a
    rerun with the same steps trains nothing), then ``genart export``; returns the export."""
    runs = work / "runs"
    resume = ["--resume"] if any((runs / name).glob("checkpoint_*")) else []
    genart("train", model, *argv, "--name", name, "--storage", runs, *resume)
    export = work / "exports" / name
    genart("export", runs / name, "--out", export)
    return export


def dcgan(args: argparse.Namespace) -> None:
    """(a) a sample grid and (b) an interpolation strip from DCGAN on generated digits."""
    data = args.work / "data" / "digits"
    if not (data / "labels.csv").exists():
        genart("data", "synth", "digits", "--out", data, "--n", "6000", "--size", "32")
    export = train("dcgan", "digits", args.work, "--config", "jobs/dcgan-digits.yaml",
                   "--data", data, "--workers", "2", "--steps", args.dcgan_steps)  # fmt: skip
    genart("sample", export, "--n", "64", "--seed", "0", "--out", args.out / "dcgan-samples.png")
    genart("interpolate", export, "--seeds", "3", "17", "42", "8", "--steps", "8",
           "--out", args.out / "dcgan-interpolation.png")  # fmt: skip


def pix2pix(args: argparse.Namespace, count: int = 4) -> None:
    """(c) input | output | target for ``count`` held-out pairs after a short Pix2Pix run."""
    data = args.work / "data" / "pairs"
    if not (data / "test").is_dir():
        genart("data", "synth", "pairs", "--out", data, "--n", "400", "--size", "64")
    # The recipe is sized for GPUs (128 px, a GPU per worker): smaller and on CPU here.
    export = train("pix2pix", "pairs", args.work, "--config", "jobs/pix2pix-pairs.yaml",
                   "--data", data, "--workers", "2", "--steps", args.pix2pix_steps,
                   "--set", "scaling.gpus_per_worker=0", "--set", "data.size=64",
                   "--set", "data.batch_size=8", "--set", "pix2pix.ngf=32",
                   "--set", "pix2pix.ndf=32")  # fmt: skip
    # Each test file is A|B side by side (label map | scene): translate A, compare with B.
    inputs, outputs = args.work / "triptych" / "inputs", args.work / "triptych" / "outputs"
    inputs.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted((data / "test").glob("*.png"))[:count]:
        pair = Image.open(path).convert("RGB")
        half = pair.width // 2
        source = pair.crop((0, 0, half, pair.height))
        target = pair.crop((half, 0, pair.width, pair.height))
        source.save(inputs / path.name)
        genart("translate", export, "--input", inputs / path.name, "--output", outputs)
        rows.append([source, Image.open(outputs / path.name).convert("RGB"), target])
    save(grid(rows, gap=4), args.out / "pix2pix-triptych.png")


def gatys(args: argparse.Namespace) -> None:
    """(d) a photo stylised by optimisation, with a random (not ImageNet) VGG-19."""
    for path in (args.photo, args.style):
        if not path or not Path(path).is_file():
            sys.exit(f"pictures: {path} not found: pass --photo and --style (images of your own)")
    output = args.work / "gatys" / "gatys.png"
    genart("stylize", "gatys", "--content", args.photo, "--style", args.style,
           "--vgg-weights", "random", "--size", "256", "--iterations", args.gatys_iterations,
           "--output", output)  # fmt: skip
    save(Image.open(output).convert("RGB"), args.out / "gatys-random-vgg.png")


def masks(args: argparse.Namespace) -> None:
    """(e) spatial control: the photo's darkest region in ``--style``, the rest in
    ``--outside-style`` (guided Gram matrices), with a random VGG-19."""
    from PIL import ImageFilter

    for path in (args.photo, args.style, args.outside_style):
        if not path or not Path(path).is_file():
            sys.exit(f"pictures: {path} not found: pass --photo, --style and --outside-style")
    folder = args.work / "masks"
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(args.photo).convert("RGB")
    # Dark (after a blur that merges the door's panels) is white: a mask a user might paint.
    dark = photo.convert("L").filter(ImageFilter.GaussianBlur(12)).point(lambda v: 255 * (v < 90))
    dark.filter(ImageFilter.GaussianBlur(4)).save(folder / "mask.png")
    output = folder / "gatys-mask.png"
    genart("stylize", "gatys", "--content", args.photo, "--style", args.style,
           "--mask", folder / "mask.png", "--outside-style", args.outside_style,
           "--vgg-weights", "random", "--size", "256", "--iterations", args.gatys_iterations,
           "--output", output)  # fmt: skip
    result = Image.open(output).convert("RGB")
    panels = [image.resize(result.size, Image.Resampling.LANCZOS)
              for image in (photo, Image.open(folder / "mask.png").convert("RGB"))]  # fmt: skip
    sheet = grid([[*panels, result]], gap=GAP)
    # As in row(): a 256-colour palette, a third of the bytes, the panels visibly unchanged.
    palette = sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    save(palette, args.out / "gatys-mask-random-vgg.png")


def grid(rows: list[list[Image.Image]], gap: int) -> Image.Image:
    """Images (all one size) in rows and columns with ``gap`` px of white between them."""
    width, height = rows[0][0].size
    columns = max(len(r) for r in rows)
    sheet = Image.new("RGB", (columns * (width + gap) - gap, len(rows) * (height + gap) - gap),
                      "white")  # fmt: skip
    for y, images in enumerate(rows):
        for x, image in enumerate(images):
            sheet.paste(image, (x * (width + gap), y * (height + gap)))
    return sheet


def row(out: Path) -> None:
    """Compose the four pictures side by side at one height into ``row.png``."""
    names = ["dcgan-samples", "dcgan-interpolation", "pix2pix-triptych", "gatys-random-vgg"]
    panels = []
    for name in names:
        image = Image.open(out / f"{name}.png").convert("RGB")
        width = round(image.width * PANEL_HEIGHT / image.height)
        # Nearest for the small GAN pictures keeps their pixels crisp; Lanczos for the photo.
        smooth = image.height > PANEL_HEIGHT
        resample = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
        panels.append(image.resize((width, PANEL_HEIGHT), resample))
    sheet = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1),
                              PANEL_HEIGHT), "white")  # fmt: skip
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 0))
        x += panel.width + GAP
    # 256 colours keep the row under 300 KB: the noisy random-VGG panel costs most of the bytes
    # in full colour, and a median-cut palette leaves the panels visibly unchanged.
    palette = sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    save(palette, out / "row.png")


def save(image: Image.Image, path: Path) -> None:
    """Write a PNG as small as Pillow makes it (the README's pictures live in git)."""
    image.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB, {image.width}x{image.height})")


if __name__ == "__main__":
    sys.exit(main())
