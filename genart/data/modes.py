"""A labelled 16-mode image set for measuring mode coverage: 4 shapes x 4 colours.

Each image is one filled shape (circle, square, triangle or cross) in one of four colours (red,
green, blue, yellow) on a dark, slightly noisy background. Within a mode the shape's position,
size, rotation, colour and the background vary a little, so a mode is a small cloud of images
rather than one point, but no two modes are close: a classifier (``genart.modes_classifier``)
tells them apart almost perfectly, and the share of generated images it gives each mode says
how many modes a generator covers (what "stacked MNIST" does for 1000 modes, Metz et al. 2017,
at a size a CPU can train).

Labels are ``shape * 4 + colour`` (:data:`MODE_NAMES`), drawn uniformly. ``genart data synth
modes`` writes ``images/*.png`` and ``labels.csv`` like ``digits``;
:func:`genart.data.synthetic.render_modes` gives the same images and labels in memory.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from genart.data.drawing import _clip_uint8, _noise, _polygon

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
MODES = len(SHAPES) * len(COLOURS)
MODE_NAMES = tuple(f"{colour} {shape}" for shape in SHAPES for colour in COLOURS)
# Far apart in RGB (each pair differs by >= 150 in some channel) and all bright on the dark
# background, so colour alone never confuses two modes.
_RGB = np.array([(225, 45, 40), (40, 200, 70), (50, 90, 240), (235, 215, 40)], dtype=np.float32)


def draw_mode(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    """One (size, size, 3) uint8 image of a random mode, and its label (``shape * 4 + colour``)."""
    label = int(rng.integers(MODES))
    shape, colour = divmod(label, len(COLOURS))
    canvas = 2 * size  # drawn at twice the size and averaged down: anti-aliased edges
    level = rng.uniform(15, 45)
    image = Image.new("RGB", (canvas, canvas), (round(level),) * 3)
    cx, cy = (0.5 + rng.uniform(-0.1, 0.1, size=2)) * canvas
    radius = rng.uniform(0.26, 0.34) * canvas
    angle = np.radians(rng.uniform(-15, 15))
    fill = tuple(int(c) for c in np.clip(_RGB[colour] + rng.uniform(-20, 20, 3), 0, 255))
    draw = ImageDraw.Draw(image)
    if SHAPES[shape] == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif SHAPES[shape] == "square":
        draw.polygon(_polygon(cx, cy, [radius] * 4, np.pi / 4 + angle), fill=fill)
    elif SHAPES[shape] == "triangle":
        draw.polygon(_polygon(cx, cy + 0.2 * radius, [radius] * 3, -np.pi / 2 + angle), fill=fill)
    else:  # a plus sign: two bars a third of the shape wide
        cos, sin = np.cos(angle), np.sin(angle)
        for dx, dy in ((radius, radius / 3), (radius / 3, radius)):
            corners = [(-dx, -dy), (dx, -dy), (dx, dy), (-dx, dy)]
            draw.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners],
                         fill=fill)  # fmt: skip
    pixels = np.asarray(image.reduce(2), dtype=np.float32)
    return _clip_uint8(pixels + _noise(rng, pixels.shape, 3)), label
