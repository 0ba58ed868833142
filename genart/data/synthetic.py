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
          wavy stripes, mosaics, rings in strong palettes); ``test/content`` and
          ``test/style`` hold unseen ones of each, to score on
========  ==============================================================================

``n`` is the size of the main folder(s); the others (val, test, style, test/...) get 10% of it.

Every image is drawn from its own generator seeded by (seed, stream, index), so an image depends
only on the seed, the folder it belongs to and its position: the same seed gives byte-identical
files, a larger ``n`` extends a dataset without changing its first images, and the truth folders
show exactly the scenes of their test folders. Fonts come from this machine, so ``digits`` is
reproducible per machine (see :func:`genart.data.drawing.digit_fonts`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genart.data.drawing import _digit, _moving_shapes, _shapes, _style
from genart.data.modes import draw_mode
from genart.data.scenes import _pair, _scene
from genart.images import array_to_pil

KINDS = ("digits", "shapes", "pairs", "unpaired", "styles", "modes")
HELD_OUT_FRACTION = 0.1  # val/test/style folders get this share of n (at least one image)
PROGRESS_MIN_IMAGES = 5000  # runs this large report progress on stderr every 10%
PARALLEL_MIN_IMAGES = 10_000  # runs this large are drawn by one process per core
CHUNK = 250  # images per task handed to a worker process
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
    return _render_labelled("digits", n, size, seed, rgb)


def render_modes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``genart data synth modes``, uint8 (N, H, W, 3), and int64 labels (N,).

    The same arguments give the images ``generate("modes", ...)`` writes.
    """
    return _render_labelled("modes", n, size, seed, rgb=False)


def _render_labelled(kind: str, n: int, size: int, seed: int, rgb: bool):
    """The images and int64 labels of a one-folder labelled ``kind``, as ``generate`` draws."""
    (folder,) = _plan(kind, n, size, rgb, seed)
    drawn = [folder.draw(_rng(seed, folder.stream, i)) for i in range(n)]
    images = np.stack([image for image, _ in drawn])
    return images, np.array([label for _, label in drawn], dtype=np.int64)


def render_video(
    frames: int,
    size: tuple[int, int] = (48, 64),
    seed: int = 0,
    speed: float = 1.0,
    noise: float = 2.0,
) -> np.ndarray:
    """A clip of ``frames`` uint8 frames (N, H, W, 3) at ``size`` (height, width): shapes
    spinning and bouncing over a still background, with fresh sensor noise of std ``noise``
    in each frame. ``speed=0`` films a still scene: the same frame, differing by noise alone.
    """
    height, width = size
    return _moving_shapes(_rng(seed, "video", 0), frames, height, width, speed, noise)


def write_clip(
    path: str | Path,
    frames: np.ndarray,
    rate: int = 25,
    tone_hz: float | None = 440.0,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    sample_rate: int = 48000,
) -> Path:
    """Encode ``frames`` (uint8 (N, H, W, 3), even sides) with PyAV into ``path`` (its
    extension names the container) at ``rate`` frames/s, with a mono sine tone of ``tone_hz``
    as long as the frames (no audio track if None): the clips genart's video tests use."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=rate)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        if tone_hz is not None:
            audio = container.add_stream(audio_codec, rate=sample_rate, layout="mono")
        container.start_encoding()  # opens the encoders: the audio one knows its frame size
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if tone_hz is not None:
            time = np.arange(round(len(frames) * sample_rate / rate)) / sample_rate
            tone = (0.3 * np.sin(2 * np.pi * tone_hz * time)).astype(np.float32)[None]
            source = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            source.sample_rate, source.pts = sample_rate, 0
            resampler = av.AudioResampler(audio.format, "mono", sample_rate,
                                          audio.codec_context.frame_size or None)  # fmt: skip
            for chunk in [*resampler.resample(source), *resampler.resample(None)]:
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
    return Path(path)


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
            # Unseen contents and styles: what AdaIN scores on (datasets.content_style_held_out)
            ("test/content", held, "test/content", _unlabelled(lambda rng: _content(rng, size))),
            ("test/style", held, "test/style", _unlabelled(lambda rng: _style(rng, size))),
        ],
        "modes": [("images", n, "modes", lambda rng: draw_mode(rng, size))],
    }
    width = max(5, len(str(n - 1)))
    return [_Folder(*spec, width=width) for spec in specs[kind]]


def _content(rng: np.random.Generator, size: int) -> np.ndarray:
    """A content picture for style transfer: a day landscape or a shapes image."""
    return _scene(rng, size, "day") if rng.random() < 0.5 else _shapes(rng, size)


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
