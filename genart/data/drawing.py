"""Drawing the synthetic images: digits, shapes, content pictures and style textures.

Every function draws one image from the generator it is given (uint8 (H, W, C) arrays), so an
image depends only on its generator's seed. Landscape scenes live in ``genart.data.scenes``.
"""

from __future__ import annotations

import colorsys
import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
)
DEFAULT_FONT = "default"  # Pillow's built-in scalable font, always available


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
# Shared drawing helpers (also used by genart.data.scenes)


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
# styles: content pictures and strong-palette style textures


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


# ---------------------------------------------------------------------------------------------
# video: shapes gliding over a still background


def _bounce(position: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``position`` folded back into [low, high] as a ball bouncing between two walls."""
    span = high - low
    folded = np.mod(position - low, 2 * span)
    return low + span - np.abs(folded - span)


def _moving_shapes(
    rng: np.random.Generator, frames: int, height: int, width: int, speed: float, noise: float
) -> np.ndarray:
    """``frames`` frames (N, H, W, 3) of 2-4 vivid shapes spinning and bouncing over a still
    background, each frame with fresh Gaussian noise of std ``noise`` (a camera sensor's).

    ``speed`` scales the motion (0: a still scene, where only the noise changes).
    """
    side = max(height, width)
    background = Image.fromarray(_clip_uint8(_background(rng, side)[:height, :width]))
    canvas = background.resize((2 * width, 2 * height), Image.Resampling.NEAREST)
    count = int(rng.integers(2, 5))
    radii = rng.uniform(0.08, 0.16, size=count) * 2 * side
    start = rng.uniform(0.25, 0.75, size=(count, 2)) * canvas.size
    velocity = rng.uniform(-0.03, 0.03, size=(count, 2)) * 2 * side * speed  # per frame
    spin = rng.uniform(-0.15, 0.15, size=count) * speed  # radians per frame
    angles = rng.uniform(0, 2 * np.pi, size=count)
    corners = rng.integers(3, 7, size=count)  # triangle ... hexagon
    fills = [tuple(int(c) for c in _vivid(rng)) for _ in range(count)]
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        image = canvas.copy()
        draw = ImageDraw.Draw(image)
        centres = _bounce(start + velocity * t, radii[:, None], canvas.size - radii[:, None])
        for (cx, cy), radius, angle, turn, n, fill in zip(
            centres, radii, angles, spin, corners, fills
        ):
            draw.polygon(_polygon(cx, cy, [radius] * n, angle + turn * t), fill=fill)
        frame = np.asarray(image.reduce(2), dtype=np.float32)
        clip[t] = _clip_uint8(frame + _noise(rng, frame.shape, noise))
    return clip
