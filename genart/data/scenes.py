"""Landscape scenes: one layout model (a label map) rendered as flat labels, by day or by night.

The label maps are the A side of the ``pairs`` dataset (Pix2Pix), their day renderings the B
side; day and night renderings of the same scenes are the two CycleGAN domains.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from genart.data.drawing import _clip_uint8, _grid, _noise, _value_noise

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
