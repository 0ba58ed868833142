"""Synthetic datasets in the layouts real data comes in, drawn on the spot and deterministic.

Tests, demos and benchmarks cannot download data, so genart draws its own (``KINDS``):

========  ==============================================================================
digits    MNIST analogue: ``images/*.png`` (white digit on black, or colour with ``rgb``)
          and ``labels.csv`` (``file,label``, for evaluation only)
shapes    coloured shapes on gradient / stripe / noise / check backgrounds: ``images/*.png``
pairs     pix2pix aligned A|B: ``train/ val/ test/``; A = flat label map, B = rendered scene
unpaired  CycleGAN: ``trainA/ trainB/ testA/ testB/`` (day / night renderings of landscapes);
          ``testA_truth/NAME.png`` is the night rendering of ``testA/NAME.png`` (and
          ``testB_truth`` the day rendering of each ``testB``), so translations can be scored
styles    ``content/*.png`` (landscapes and shapes) and ``style/*.png`` (brush strokes,
          wavy stripes, mosaics, rings in strong palettes)
========  ==============================================================================

``n`` is the size of the main folder(s); held-out folders (val, test, style) get 10% of it.

Every image is drawn from its own generator seeded by (seed, stream, index), so an image depends
only on the seed, the folder it belongs to and its position: the same seed gives byte-identical
files, a larger ``n`` extends a dataset without changing its first images, and the truth folders
show exactly the scenes of their test folders. Fonts come from this machine, so ``digits`` is
reproducible per machine (see :func:`digit_fonts`).
"""

from __future__ import annotations

import colorsys
import functools
import multiprocessing
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from genart.images import array_to_pil

KINDS = ("digits", "shapes", "pairs", "unpaired", "styles")
HELD_OUT_FRACTION = 0.1  # val/test/style folders get this share of n (at least one image)
PROGRESS_MIN_IMAGES = 5000  # runs this large report progress on stderr every 10%
PARALLEL_MIN_IMAGES = 10_000  # runs this large are drawn by one process per core
CHUNK = 250  # images per task handed to a worker process
FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
)
DEFAULT_FONT = "default"  # Pillow's built-in scalable font, always available

# A draw function makes one image (H, W, C) uint8 from its own generator, plus a label or None.
Draw = Callable[[np.random.Generator], tuple[np.ndarray, int | None]]


# ---------------------------------------------------------------------------------------------
# Public API


def generate(
    kind: str,
    out: str | Path,
    n: int,
    size: int = 64,
    seed: int = 0,
    rgb: bool = False,
    workers: int | None = None,
) -> Path:
    """Write dataset ``kind`` with ``n`` main images of ``size`` x ``size`` under ``out``.

    ``rgb`` only affects ``digits`` (every other kind is always RGB). Re-running the same
    command rewrites identical files; a folder holding other files (say, from a larger ``n``)
    raises ``FileExistsError`` rather than mixing two datasets or deleting anything.

    ``workers`` processes draw the images (default: one per CPU core from
    ``PARALLEL_MIN_IMAGES`` images on, else 1); the files do not depend on it. They are spawned,
    so a script calling this must do so under ``if __name__ == "__main__":``.
    """
    folders = _plan(kind, n, size, rgb, seed)
    out = Path(out)
    _refuse_foreign_files(out, folders)
    for folder in folders:
        (out / folder.name).mkdir(parents=True, exist_ok=True)
    chunks = [
        _Chunk(kind, n, size, seed, rgb, str(out), index, start, min(start + CHUNK, folder.count))
        for index, folder in enumerate(folders)
        for start in range(0, folder.count, CHUNK)
    ]
    total = sum(folder.count for folder in folders)
    progress = _Progress(total)
    labels = []
    workers = _default_workers(total) if workers is None else workers
    for chunk, rows in zip(chunks, _map(_write_chunk, chunks, workers)):
        labels += rows
        progress.advance(chunk.stop - chunk.start)
    if labels:
        (out / "labels.csv").write_text("file,label\n" + "".join(labels))
    return out


def layout(kind: str, n: int) -> dict[str, int]:
    """The folders ``generate(kind, out, n)`` writes and how many images each holds."""
    return {f.name: f.count for f in _plan(kind, n, size=64, rgb=False)}


def render(
    kind: str, n: int, size: int = 64, seed: int = 0, rgb: bool = False
) -> dict[str, np.ndarray]:
    """In memory, the images ``generate`` would write: folder name -> uint8 (N, H, W, C)."""
    return {
        f.name: np.stack([f.draw(_rng(seed, f.stream, i))[0] for i in range(f.count)])
        for f in _plan(kind, n, size, rgb, seed)
    }


def render_digits(
    n: int, size: int = 28, seed: int = 0, rgb: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digit images, uint8 (N, H, W, C) with C = 1 (or 3 if ``rgb``), and int64 labels (N,).

    The renderer ``generate("digits", ...)`` uses: the same arguments give the same images.
    """
    (folder,) = _plan("digits", n, size, rgb, seed)
    drawn = [folder.draw(_rng(seed, folder.stream, i)) for i in range(n)]
    images = np.stack([image for image, _ in drawn])
    return images, np.array([label for _, label in drawn], dtype=np.int64)


SCENE_CLASSES = (
    "sky",
    "sun",
    "cloud",
    "mountain",
    "ground",
    "water",
    "tree",
    "wall",
    "roof",
    "window",
)
# Flat colours of the label maps (the A side of ``pairs``), one per scene class.
LABEL_COLORS = np.array(
    [
        (70, 130, 180),  # sky
        (255, 215, 0),  # sun
        (255, 255, 255),  # cloud
        (128, 64, 128),  # mountain
        (107, 142, 35),  # ground
        (0, 0, 142),  # water
        (0, 100, 0),  # tree
        (220, 20, 60),  # wall
        (128, 0, 0),  # roof
        (0, 255, 255),  # window
    ],
    dtype=np.uint8,
)


@functools.lru_cache(maxsize=1)
def digit_fonts() -> tuple[str, ...]:
    """Font files under ``FONT_DIRS`` that draw ten distinct digits, then ``DEFAULT_FONT``.

    Sorted, so a seed picks the same font on every run of the same machine.
    """
    files = sorted(
        path
        for folder in FONT_DIRS
        if Path(folder).expanduser().is_dir()
        for path in Path(folder).expanduser().rglob("*")
        if path.suffix.lower() in (".ttf", ".otf")
    )
    return tuple(str(path) for path in files if _draws_digits(str(path))) + (DEFAULT_FONT,)


# ---------------------------------------------------------------------------------------------
# Layouts: which folders a kind has, how many images each, and how each image is drawn


@dataclass(frozen=True)
class _Folder:
    name: str
    count: int
    stream: str  # folders with the same stream show the same scenes (test vs truth)
    draw: Draw
    width: int  # file names are zero-padded indices of this many digits

    def filename(self, index: int) -> str:
        return f"{index:0{self.width}d}.png"


def _plan(kind: str, n: int, size: int, rgb: bool, seed: int = 0) -> list[_Folder]:
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind '{kind}'; valid kinds: {', '.join(KINDS)}")
    if n < 1 or size < 8 or seed < 0:
        raise ValueError(f"need n >= 1, size >= 8 and seed >= 0, got {n=}, {size=}, {seed=}")
    held = max(1, round(n * HELD_OUT_FRACTION))
    day = _unlabelled(lambda rng: _scene(rng, size, "day"))
    night = _unlabelled(lambda rng: _scene(rng, size, "night"))
    # (folder, count, stream, draw); a stream is named after the folder whose scenes it holds
    specs: dict[str, list[tuple[str, int, str, Draw]]] = {
        "digits": [("images", n, "digits", lambda rng: _digit(rng, size, rgb))],
        "shapes": [("images", n, "shapes", _unlabelled(lambda rng: _shapes(rng, size)))],
        "pairs": [
            (split, count, f"pairs/{split}", _unlabelled(lambda rng: _pair(rng, size)))
            for split, count in (("train", n), ("val", held), ("test", held))
        ],
        "unpaired": [
            ("trainA", n, "trainA", day),
            ("trainB", n, "trainB", night),
            ("testA", held, "testA", day),
            ("testA_truth", held, "testA", night),
            ("testB", held, "testB", night),
            ("testB_truth", held, "testB", day),
        ],
        "styles": [
            ("content", n, "content", _unlabelled(lambda rng: _content(rng, size))),
            ("style", held, "style", _unlabelled(lambda rng: _style(rng, size))),
        ],
    }
    width = max(5, len(str(n - 1)))
    return [_Folder(*spec, width=width) for spec in specs[kind]]


def _unlabelled(draw: Callable[[np.random.Generator], np.ndarray]) -> Draw:
    return lambda rng: (draw(rng), None)


def _rng(seed: int, stream: str, index: int) -> np.random.Generator:
    # crc32, not hash(): string hashes are salted per process and would break determinism.
    return np.random.default_rng([seed, zlib.crc32(stream.encode()), index])


def _refuse_foreign_files(out: Path, folders: list[_Folder]) -> None:
    for folder in folders:
        path = out / folder.name
        if not path.is_dir():
            continue
        ours = {folder.filename(i) for i in range(folder.count)}
        foreign = sorted(p.name for p in path.iterdir() if p.name not in ours)
        if foreign:
            raise FileExistsError(
                f"{path} holds files this dataset would not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); use an empty --out folder"
            )


@dataclass(frozen=True)
class _Chunk:
    """Images ``start:stop`` of folder ``folder`` of a ``generate`` call (picklable)."""

    kind: str
    n: int
    size: int
    seed: int
    rgb: bool
    out: str
    folder: int
    start: int
    stop: int


def _write_chunk(chunk: _Chunk) -> list[str]:
    """Draw and save one chunk; returns its ``labels.csv`` rows (empty for unlabelled kinds)."""
    folder = _plan(chunk.kind, chunk.n, chunk.size, chunk.rgb)[chunk.folder]
    rows = []
    for index in range(chunk.start, chunk.stop):
        image, label = folder.draw(_rng(chunk.seed, folder.stream, index))
        name = folder.filename(index)
        # Level 1: twice as fast as the default 6, and no larger on these noisy images.
        array_to_pil(image).save(Path(chunk.out, folder.name, name), compress_level=1)
        if label is not None:
            rows.append(f"{folder.name}/{name},{label}\n")
    return rows


def _default_workers(total: int) -> int:
    if total < PARALLEL_MIN_IMAGES:
        return 1  # spawning workers (~0.5 s each: fresh interpreters) would eat the gain
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, 8)


def _map(function: Callable, items: list, workers: int) -> Iterator:
    """``map`` in order, over ``workers`` processes when more than one."""
    if workers <= 1:
        yield from map(function, items)
        return
    # Spawned, not forked: forking a process that runs torch or Ray threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(function, items)


class _Progress:
    """Reports each 10% on stderr, for runs large enough to take a while."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.report = total >= PROGRESS_MIN_IMAGES

    def advance(self, count: int) -> None:
        tenths = self.done * 10 // self.total
        self.done += count
        if self.report and self.done * 10 // self.total > tenths:
            percent = 100 * self.done // self.total
            print(f"genart data: {self.done}/{self.total} images ({percent}%)", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Shared drawing helpers


@functools.lru_cache(maxsize=16)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v) in [0, 1), u across and v down, each (size, size)."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(coords, coords)


def _clip_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Gaussian noise, float32 (half the cost of numpy's default float64 draws)."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return 255 * np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32)


def _vivid(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid interpolated up to (size, size)."""
    coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC)).clip(0, 1)


def _polygon(cx: float, cy: float, radii: list[float], angle: float) -> list[tuple[float, float]]:
    """Vertices at the given radii, evenly spaced around (cx, cy), starting at ``angle``."""
    turns = angle + 2 * np.pi * np.arange(len(radii)) / len(radii)
    return [(cx + r * np.cos(t), cy + r * np.sin(t)) for r, t in zip(radii, turns)]


# ---------------------------------------------------------------------------------------------
# digits


def _draws_digits(font_path: str) -> bool:
    """Whether a font has real digit glyphs (symbol fonts draw ten equal boxes, or nothing)."""
    try:
        font = ImageFont.truetype(font_path, 24)
    except OSError:
        return False
    glyphs = set()
    for digit in "0123456789":
        mask = Image.new("L", (48, 48))
        ImageDraw.Draw(mask).text((8, 8), digit, fill=255, font=font)
        if not mask.getbbox():
            return False
        glyphs.add(mask.tobytes())
    return len(glyphs) == 10


@functools.lru_cache(maxsize=256)
def _digit_font(source: str, canvas: int) -> ImageFont.FreeTypeFont:
    """``source`` at the point size where its tallest digit is 60% of the canvas high."""

    def load(points: int) -> ImageFont.FreeTypeFont:
        if source == DEFAULT_FONT:
            return ImageFont.load_default(size=points)
        return ImageFont.truetype(source, points)

    reference = load(100)
    tallest = max(reference.getbbox(d)[3] - reference.getbbox(d)[1] for d in "0123456789")
    return load(max(4, round(100 * canvas * 0.6 / tallest)))


def _digit_affine(rng: np.random.Generator, canvas: int) -> tuple[float, ...]:
    """A random rotation, scale, shear and shift about the centre, as PIL's inverse mapping."""
    angle = np.radians(rng.uniform(-15, 15))
    scale = rng.uniform(0.85, 1.15) * np.array([rng.uniform(0.85, 1.1), 1.0])
    shear = rng.uniform(-0.3, 0.3)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rotate @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale)
    inverse = np.linalg.inv(forward)
    centre = np.full(2, canvas / 2)
    shift = rng.uniform(-0.05, 0.05, size=2) * canvas
    # PIL maps each output pixel p back to the input pixel inverse @ (p - centre - shift) + centre.
    offset = centre - inverse @ (centre + shift)
    return (*inverse[0], offset[0], *inverse[1], offset[1])


def _digit(rng: np.random.Generator, size: int, rgb: bool) -> tuple[np.ndarray, int]:
    label = int(rng.integers(10))
    fonts = digit_fonts()
    canvas = 2 * size  # drawn at twice the size, then averaged down: smooth edges like MNIST
    font = _digit_font(fonts[rng.integers(len(fonts))], canvas)
    stroke = int(rng.integers(canvas // 64, canvas // 28 + 1))
    mask = Image.new("L", (canvas, canvas))
    draw = ImageDraw.Draw(mask)
    left, top, right, bottom = draw.textbbox((0, 0), str(label), font=font, stroke_width=stroke)
    origin = (canvas / 2 - (left + right) / 2, canvas / 2 - (top + bottom) / 2)
    draw.text(origin, str(label), fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    mask = mask.transform(
        mask.size, Image.Transform.AFFINE, _digit_affine(rng, canvas), Image.Resampling.BILINEAR
    ).reduce(2)
    ink = np.asarray(mask, dtype=np.float32)[..., None] / 255
    foreground, background = _contrasting_colors(rng) if rgb else (np.full(1, 255.0), np.zeros(1))
    image = background + (foreground - background) * ink
    return _clip_uint8(image + _noise(rng, image.shape, rng.uniform(0, 12))), label


def _contrasting_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Digit and background colours far enough apart in brightness to stay legible."""
    luma = np.array([0.299, 0.587, 0.114])
    while True:
        foreground, background = rng.uniform(0, 255, size=(2, 3))
        if abs(luma @ (foreground - background)) > 100:
            return foreground, background


# ---------------------------------------------------------------------------------------------
# shapes


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float (size, size, 3) texture: gradient, stripes, smooth noise or checks in 2 colours."""
    u, v = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    along = u * np.cos(angle) + v * np.sin(angle)
    pattern = rng.integers(4)
    if pattern == 0:
        mix = (along - along.min()) / (along.max() - along.min())
    elif pattern == 1:
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 7) * along + rng.uniform(0, 6.3))
    elif pattern == 2:
        mix = _value_noise(rng, size, int(rng.integers(3, 9)))
    else:
        cells = rng.integers(2, 7)
        mix = ((np.floor(u * cells) + np.floor(v * cells)) % 2).astype(np.float32)
    low, high = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    return low + (high - low) * mix[..., None] + _noise(rng, (size, size, 1), 4)


def _draw_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, canvas: int) -> None:
    """One circle, square, triangle, star or hexagon of a vivid colour, sometimes outlined."""
    cx, cy = rng.uniform(0.2, 0.8, size=2) * canvas
    radius = rng.uniform(0.12, 0.3) * canvas
    fill = tuple(int(c) for c in _vivid(rng))
    outline = tuple(c // 3 for c in fill) if rng.random() < 0.5 else None
    width = max(1, canvas // 40)
    kind = rng.integers(5)
    if kind == 0:
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        draw.ellipse(box, fill=fill, outline=outline, width=width)
        return
    # square, triangle, star (alternating outer and inner radius), hexagon
    radii = [[radius] * 4, [radius] * 3, [radius, 0.45 * radius] * 5, [radius] * 6][kind - 1]
    points = _polygon(cx, cy, radii, rng.uniform(0, 2 * np.pi))
    draw.polygon(points, fill=fill, outline=outline, width=width)


def _shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    # Shapes are drawn at twice the size and averaged down for anti-aliased edges; the
    # background is made at full size (nearest-upscaled, it averages back to itself).
    background = Image.fromarray(_clip_uint8(_background(rng, size)))
    canvas = 2 * size
    image = background.resize((canvas, canvas), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(1, 5)):
        _draw_shape(draw, rng, canvas)
    return np.asarray(image.reduce(2))


# ---------------------------------------------------------------------------------------------
# scenes: one layout model (a label map) rendered as flat labels, by day or by night

_CLASS = {name: index for index, name in enumerate(SCENE_CLASSES)}


def _scene_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """A landscape label map (size, size) uint8 of ``SCENE_CLASSES`` indices."""
    labels = Image.new("L", (size, size), _CLASS["sky"])
    draw = ImageDraw.Draw(labels)
    horizon = rng.uniform(0.45, 0.7) * size
    if rng.random() < 0.7:  # drawn first: mountains and clouds may hide it
        radius = rng.uniform(0.05, 0.1) * size
        cx, cy = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.3) * size
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=_CLASS["sun"])
    for _ in range(rng.integers(0, 3)):
        _cloud(draw, rng, size, horizon)
    if rng.random() < 0.7:
        _mountains(draw, rng, size, horizon)
    xs = np.linspace(0, size, 9)
    wave = horizon + rng.uniform(0, 0.04) * size * np.sin(xs / size * 6 + rng.uniform(0, 6.3))
    draw.polygon([*zip(xs, wave), (size, size), (0, size)], fill=_CLASS["ground"])
    if rng.random() < 0.5:
        _lake(draw, rng, size, horizon)
    # Objects far away (near the horizon) first, so nearer ones overlap them.
    objects = [(rng.uniform(horizon + 0.05 * size, size), _tree) for _ in range(rng.integers(4))]
    objects += [(rng.uniform(horizon + 0.1 * size, size), _house) for _ in range(rng.integers(3))]
    for base, draw_object in sorted(objects, key=lambda item: item[0]):
        scale = 1.6 * (base - horizon * 0.8) / size  # perspective: nearer objects are larger
        draw_object(draw, rng, rng.uniform(0.05, 0.95) * size, base, scale * size)
    return np.asarray(labels)


def _cloud(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, horizon: float):
    cx, cy = rng.uniform(0, size), rng.uniform(0.05 * size, 0.7 * horizon)
    width = rng.uniform(0.1, 0.2) * size
    for dx in rng.uniform(-width, width, size=3):
        rx, ry = rng.uniform(0.4, 0.7) * width, rng.uniform(0.2, 0.35) * width
        box = (cx + dx - rx, cy - ry, cx + dx + rx, cy + ry)
        draw.ellipse(box, fill=_CLASS["cloud"])


def _mountains(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, horizon: float):
    peaks = np.sort(rng.uniform(0, size, size=rng.integers(2, 5)))
    heights = horizon - rng.uniform(0.15, 0.4, size=len(peaks)) * size
    valleys = horizon - rng.uniform(0.0, 0.1, size=len(peaks) + 1) * size
    edges = np.concatenate([[0], (peaks[1:] + peaks[:-1]) / 2, [size]])
    ridge = [(x, y) for pair in zip(zip(edges, valleys), zip(peaks, heights)) for x, y in pair]
    ridge.append((size, valleys[-1]))
    draw.polygon([*ridge, (size, horizon + 2), (0, horizon + 2)], fill=_CLASS["mountain"])


def _lake(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, horizon: float):
    cx = rng.uniform(0.2, 0.8) * size
    cy = rng.uniform(horizon + 0.1 * size, 0.9 * size)
    rx, ry = rng.uniform(0.15, 0.35) * size, rng.uniform(0.04, 0.1) * size
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_CLASS["water"])


def _tree(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, base: float, scale):
    height = rng.uniform(0.3, 0.6) * scale
    trunk = max(1.0, 0.06 * scale)
    draw.rectangle((x - trunk / 2, base - height * 0.4, x + trunk / 2, base), fill=_CLASS["tree"])
    crown = rng.uniform(0.15, 0.25) * scale
    if rng.random() < 0.5:  # pine: a triangle; broadleaf: a round crown
        points = [(x - crown, base - height * 0.3), (x + crown, base - height * 0.3)]
        draw.polygon([*points, (x, base - height)], fill=_CLASS["tree"])
    else:
        top = base - height
        draw.ellipse((x - crown, top, x + crown, top + 2 * crown), fill=_CLASS["tree"])


def _house(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, base: float, scale):
    width, height = rng.uniform(0.3, 0.5) * scale, rng.uniform(0.2, 0.35) * scale
    left, top = x - width / 2, base - height
    draw.rectangle((left, top, left + width, base), fill=_CLASS["wall"])
    roof = [(left - 0.1 * width, top), (left + 1.1 * width, top), (x, top - 0.5 * height)]
    draw.polygon(roof, fill=_CLASS["roof"])
    pane = max(1.0, 0.15 * width)
    for column in range(int(rng.integers(1, 4))):
        wx = left + (column + 0.5) * width / 3 - pane / 2
        draw.rectangle(
            (wx, top + 0.25 * height, wx + pane, top + 0.25 * height + pane), fill=_CLASS["window"]
        )


# Per class: colour at the top of the image, colour at the bottom, grain (std of per-pixel
# noise), mottle (amplitude of smooth noise) and pattern (strength of the class's regular
# pattern: ripples on water, bricks on walls, tiles on roofs, mullions on windows).
# Everything but grain and mottle is a function of the label map and position, so a network
# can learn label -> day, and day <-> night is a per-class colour and texture change.
_STYLES = {
    "day": {
        "sky": ((60, 110, 200), (190, 220, 245), 2, 0, 0),
        "sun": ((255, 240, 150), (255, 220, 110), 2, 0, 0),
        "cloud": ((250, 250, 252), (190, 195, 210), 3, 0.05, 0),
        "mountain": ((235, 235, 245), (90, 80, 110), 6, 0.1, 0),
        "ground": ((150, 190, 80), (40, 110, 30), 10, 0.2, 0),
        "water": ((110, 170, 230), (30, 80, 160), 4, 0.05, 0.25),
        "tree": ((40, 120, 40), (20, 80, 25), 12, 0.2, 0),
        "wall": ((225, 205, 160), (200, 180, 140), 4, 0, 0.3),
        "roof": ((190, 70, 50), (150, 50, 35), 4, 0, 0.25),
        "window": ((120, 170, 220), (60, 90, 140), 2, 0, 0.3),
    },
    "night": {
        "sky": ((5, 10, 35), (35, 45, 100), 2, 0, 0),
        "sun": ((235, 235, 210), (215, 215, 190), 2, 0, 0),
        "cloud": ((90, 95, 125), (50, 55, 80), 3, 0.05, 0),
        "mountain": ((140, 150, 185), (30, 30, 50), 5, 0.1, 0),
        "ground": ((35, 65, 55), (10, 30, 25), 6, 0.2, 0),
        "water": ((40, 60, 110), (10, 20, 60), 3, 0.05, 0.4),
        "tree": ((15, 40, 30), (5, 25, 15), 5, 0.2, 0),
        "wall": ((80, 75, 95), (60, 55, 75), 3, 0, 0.3),
        "roof": ((60, 30, 40), (45, 20, 30), 3, 0, 0.25),
        "window": ((255, 225, 120), (240, 190, 80), 3, 0, 0.3),
    },
}


@functools.lru_cache(maxsize=2)
def _style_tables(style: str) -> tuple[np.ndarray, ...]:
    """``_STYLES[style]`` as class-indexed arrays: top, bottom, grain, mottle, pattern."""
    rows = [_STYLES[style][name] for name in SCENE_CLASSES]
    return tuple(np.array([row[i] for row in rows], dtype=np.float32) for i in range(5))


@functools.lru_cache(maxsize=16)
def _patterns(size: int) -> np.ndarray:
    """Class-indexed regular patterns in [0, 1], (classes, size, size); 1 darkens fully."""
    period = max(2, round(size / 16))  # the same look at any resolution
    y, x = np.mgrid[0:size, 0:size]
    row = y // period
    ripples = (y % period == 0) & ((x + 3 * row) % (3 * period) < 2 * period)
    bricks = (y % period == 0) | ((x + period * (row % 2)) % (2 * period) == 0)
    tiles = (x + y) % (2 * period) < max(1, period // 2)
    mullions = (x % (2 * period) == 0) | (y % (2 * period) == 0)
    patterns = np.zeros((len(SCENE_CLASSES), size, size), dtype=np.float32)
    for name, pattern in (("water", ripples), ("wall", bricks), ("roof", tiles)):
        patterns[_CLASS[name]] = pattern
    patterns[_CLASS["window"]] = mullions
    patterns[_CLASS["water"]] *= -1  # water ripples are highlights, not shadows
    return patterns


def _render_scene(labels: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """Shade and texture a label map in ``style`` ("day" or "night"): uint8 (H, W, 3)."""
    size = labels.shape[0]
    top, bottom, grain, mottle, strength = _style_tables(style)
    _, v = _grid(size)
    image = top[labels] + (bottom - top)[labels] * v[..., None]
    pattern = np.take_along_axis(_patterns(size), labels[None].astype(np.intp), 0)[0]
    smooth = _value_noise(rng, size, max(2, size // 8)) - 0.5
    image *= (1 - strength[labels] * pattern + mottle[labels] * smooth)[..., None]
    image += _noise(rng, (size, size, 1), 1) * grain[labels][..., None]
    if style == "night":  # stars: sparse random sparkles in the sky
        stars = (labels == _CLASS["sky"]) & (rng.random((size, size)) < 0.01)
        image[stars] = 255
    return _clip_uint8(image)


def _scene(rng: np.random.Generator, size: int, style: str) -> np.ndarray:
    return _render_scene(_scene_labels(rng, size), style, rng)


def _pair(rng: np.random.Generator, size: int) -> np.ndarray:
    labels = _scene_labels(rng, size)
    return np.concatenate([LABEL_COLORS[labels], _render_scene(labels, "day", rng)], axis=1)


# ---------------------------------------------------------------------------------------------
# styles: content pictures and strong-palette style textures


def _content(rng: np.random.Generator, size: int) -> np.ndarray:
    return _scene(rng, size, "day") if rng.random() < 0.5 else _shapes(rng, size)


def _palette(rng: np.random.Generator) -> np.ndarray:
    """3-5 strong colours on an analogous, complementary or triadic hue scheme."""
    scheme = [(0, 0.06, -0.06, 0.12), (0, 0.5, 0.04, 0.54), (0, 1 / 3, 2 / 3, 0.05)]
    offsets = scheme[rng.integers(len(scheme))]
    base = rng.random()
    colors = [
        _hsv(base + offset, rng.uniform(0.6, 1), rng.uniform(0.3, 1))
        for offset in offsets[: rng.integers(3, 5)]
    ]
    return np.stack([*colors, _hsv(base, 0.3, rng.uniform(0.05, 0.95))])


def _bands(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Band coordinate of wavy stripes or of rings around a random centre (a spiral if twisted)."""
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        across = u * np.cos(angle) + v * np.sin(angle)
        along = -u * np.sin(angle) + v * np.cos(angle)
        wave = rng.uniform(0, 0.1) * np.sin(2 * np.pi * rng.uniform(1, 4) * along)
        return (across + wave) * rng.uniform(4, 12)
    cx, cy = rng.uniform(0.2, 0.8, size=2)
    radius, turn = np.hypot(u - cx, v - cy), np.arctan2(v - cy, u - cx) / (2 * np.pi)
    return radius * rng.uniform(6, 16) + turn * rng.integers(0, 3)


def _mosaic(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, colors: int) -> tuple:
    """Voronoi cells: (colour index per pixel, grout mask where two cells nearly meet)."""
    seeds = rng.random((int(rng.integers(12, 40)), 2), dtype=np.float32)
    distance = np.hypot(u[..., None] - seeds[:, 0], v[..., None] - seeds[:, 1])
    nearest, second = np.partition(distance, 1, axis=-1)[..., :2].transpose(2, 0, 1)
    cell_color = rng.integers(colors, size=len(seeds))
    return cell_color[distance.argmin(-1)], second - nearest < 0.015


def _brush_strokes(rng: np.random.Generator, palette: np.ndarray, canvas: int) -> Image.Image:
    """Short thick strokes in palette colours following a smooth random flow field."""
    image = Image.new("RGB", (canvas, canvas), tuple(int(c) for c in palette[-1]))
    draw = ImageDraw.Draw(image)
    flow = rng.uniform(0, np.pi) + np.pi * (_value_noise(rng, canvas, 3) - 0.5)
    count = canvas * canvas // 64
    centres = rng.uniform(0, canvas, size=(count, 2))
    angles = flow[tuple(centres.astype(int).T[::-1])] + rng.normal(0, 0.15, size=count)
    half = (
        rng.uniform(0.04, 0.1, size=(count, 1))
        * canvas
        * np.stack([np.cos(angles), np.sin(angles)], 1)
    )
    ends = np.concatenate([centres - half, centres + half], axis=1).tolist()
    widths = (rng.uniform(0.03, 0.07, size=count) * canvas).astype(int).clip(1).tolist()
    colors = palette[rng.integers(len(palette), size=count)] + rng.normal(0, 12, size=(count, 3))
    fills = [tuple(color) for color in colors.clip(0, 255).astype(int).tolist()]
    # Vectorised above; PIL draws each line (converted to Python numbers: much faster calls).
    for end, width, fill in zip(ends, widths, fills):
        draw.line(end, fill=fill, width=width)
    return image


def _style(rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = 2 * size  # drawn at twice the size, then averaged down: anti-aliased edges
    palette = _palette(rng)
    kind = rng.integers(3)
    if kind == 0:
        return np.asarray(_brush_strokes(rng, palette, canvas).reduce(2))
    u, v = _grid(canvas)
    if kind == 1:
        image = palette[np.floor(_bands(rng, u, v)).astype(int) % len(palette)]
    else:
        cells, grout = _mosaic(rng, u, v, len(palette) - 1)
        image = palette[cells]
        image[grout] = palette[-1] * 0.3  # dark grout lines
    image += _noise(rng, (canvas, canvas, 1), 6)
    return np.asarray(Image.fromarray(_clip_uint8(image)).reduce(2))
