"""Videos through any image pipeline: frames decoded, stylised in batches as a Ray Data job, and
written back in order with the source's timing and audio.

    clips = video.plan("clips/", "styled/")        # every input probed: bad files fail here
    video.check_job(source, smooth=0.5)            # an image-to-image export, valid settings
    video.stylize_videos(clips, source, actors=2)  # needs a running Ray

One Ray Data task per clip, one clip after another (on the driver's node for local files,
anywhere for ``s3://``), decodes its frames in order and streams them in batches of
consecutive frames, each frame with its index and timestamp, to ``actors`` actors that build
the pipeline once (a GPU each when asked). Ray Data keeps the batches in order
(``preserve_order``), so the driver encodes each frame as it arrives: however long the clip,
only the batches in flight are held, bounded by Ray Data's backpressure. Reading, probing and
writing (timestamps, frame rate, audio) are :mod:`genart.pipelines.video_io`'s; the optional
input-gated smoothing against flicker is :mod:`genart.pipelines.temporal`'s.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from genart import storage
from genart.errors import InputError
from genart.pipelines import runner
from genart.pipelines.base import ImagePipeline
from genart.pipelines.temporal import TemporalSmoother, stillnesses
from genart.pipelines.video_io import (
    CONTAINERS,
    MAX_PIXELS,
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoWriter,
    output_format,
    probe,
    read_frames,
    staged,
)

PROGRESS_EVERY = 100  # frames between progress lines


@dataclass(frozen=True)
class Clip:
    """One video to stylise: its input and output (paths or URIs) and the input's info."""

    source: str
    target: str
    info: VideoInfo


# --- planning and checking -----------------------------------------------------------------------


def plan(source: str, target: str, max_pixels: int = MAX_PIXELS) -> list[Clip]:
    """The clips to stylise, every input probed (so bad ones fail before any work starts).

    ``source`` a video file: written to ``target``, a video file. A folder or ``s3://`` prefix:
    each video directly in it, written into folder ``target`` under its own name (``.mp4``
    where genart does not write its extension).
    """
    source, target = storage.absolute(source), storage.absolute(target)
    fs, path = storage.filesystem(source)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.File:
        output_format(target)
        return [Clip(source, target, probe(source, max_pixels))]
    if kind == pafs.FileType.NotFound and not storage.is_remote(source):
        raise FileNotFoundError(f"--input {source} does not exist")
    clips = []
    for uri in runner.image_files(source, VIDEO_EXTENSIONS, "videos"):
        suffix = Path(uri).suffix.lower()
        output = runner.stem(uri) + (suffix if suffix in CONTAINERS else ".mp4")
        clips.append(Clip(uri, storage.join(target, output), probe(uri, max_pixels)))
    return clips


def check_job(source: runner.Source, call: dict[str, Any] | None = None, smooth: float = 0.0):
    """InputError unless ``source`` builds an image-to-image pipeline that takes ``call``
    (a ``direction`` only for translation models, and one they translate; ``strength`` and
    ``preserve_color`` only for fast style, valid ones) and ``smooth`` is a smoothing
    strength.

    Builds the pipeline once on this process's CPU: a bad export fails here, on one line,
    rather than inside every actor.
    """
    from genart import controls
    from genart.pipelines.style import FastStylePipeline
    from genart.pipelines.translate import TranslationPipeline

    call = call or {}
    TemporalSmoother(smooth)
    style_controls = {k: call[k] for k in ("strength", "preserve_color") if k in call}
    controls.check(**style_controls)
    pipe = source.build("cpu")
    model = pipe.cfg.model
    if not isinstance(pipe, ImagePipeline):
        raise InputError(f"{source.export} holds a '{model}' model: videos take image-to-image "
                         "models (fast_style, pix2pix, cyclegan)")  # fmt: skip
    if style_controls and not isinstance(pipe, FastStylePipeline):
        raise InputError(f"strength and preserve_color apply to fast_style models; "
                         f"{source.export} holds a '{model}' model")  # fmt: skip
    direction = call.get("direction")
    if direction is not None:
        if not isinstance(pipe, TranslationPipeline):
            raise InputError(f"a direction applies to translation models (pix2pix, cyclegan); "
                             f"{source.export} holds a '{model}' model")  # fmt: skip
        pipe.direction(direction)


# --- the Ray Data job --------------------------------------------------------------------------


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _decode(batch: dict[str, np.ndarray], max_pixels: int, batch_size: int, still: bool):
    """Ray Data generator: the frames of each clip of ``batch``, ``batch_size`` at a time, with
    their clip, index and timestamp (and, for smoothing, their :func:`stillness`)."""
    for clip, uri in zip(batch["clip"], batch["uri"]):
        previous = None
        for chunk in _batches(read_frames(str(uri), max_pixels), batch_size):
            indices, stamps, frames = zip(*chunk)
            rows = {"clip": np.full(len(chunk), clip), "index": np.array(indices),
                    "pts": np.array(stamps, dtype=np.int64), "frame": np.stack(frames)}  # fmt: skip
            if still:
                rows["still"] = np.stack(list(stillnesses(frames, previous)))
                previous = frames[-1]
            yield rows


class _Stylist:
    """Ray Data callable class: builds the pipeline once, then stylises batches of frames."""

    def __init__(self, source: runner.Source, call: dict[str, Any]):
        self.pipe, self.call = source.build(), call

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**batch, "frame": _column(self.pipe(list(batch["frame"]), **self.call))}


def _column(frames: list[np.ndarray]) -> np.ndarray:
    """Frames as one Ray Data column: stacked, or an array of arrays where the end of one clip
    and the start of the next, at another size, share a batch."""
    if len({frame.shape for frame in frames}) == 1:
        return np.stack(frames)
    column = np.empty(len(frames), dtype=object)
    column[:] = frames
    return column


def stylize_videos(
    clips: list[Clip],
    source: runner.Source,
    *,
    call: dict[str, Any] | None = None,
    batch_size: int = 8,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    smooth: float = 0.0,
    max_pixels: int = MAX_PIXELS,
    progress_every: int = PROGRESS_EVERY,
) -> list[dict[str, Any]]:
    """Stylise ``clips`` (from :func:`plan`) with ``source``'s pipeline in one Ray Data job.

    ``call``: keyword options of every pipeline call (a translation's ``direction``);
    ``smooth``: temporal smoothing strength in [0, 1) (0: off). A progress line goes to stderr
    every ``progress_every`` frames of a clip (0: none). Returns, per clip: input, output,
    frames, seconds, frames_per_s and what became of the audio. Needs a running Ray
    (``genart.train.launch.init_ray``); check the settings first with :func:`check_job`.
    """
    import ray

    frames = _decoded(clips, batch_size, max_pixels, still=smooth > 0)
    styled = frames.map_batches(
        _Stylist,
        fn_constructor_kwargs={"source": source, "call": call or {}},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **runner.actor_resources(gpus_per_actor),
    )
    styled.context.execution_options.preserve_order = True
    rows = _rows(styled.iter_batches(batch_size=None, batch_format="numpy"))
    results = []
    # A clip's time runs from the end of the one before; the first's from here, as actors
    # starting up are part of what a run costs.
    start = time.perf_counter()
    try:
        for clip, group in itertools.groupby(rows, key=lambda row: row[0]):
            results.append(_write_clip(clips[clip], group, smooth, progress_every, start))
            start = time.perf_counter()
    except Exception as err:
        user = _user_error(err)  # a clip that fails to decode fails its Ray task
        if user is None:
            raise
        raise user from None
    return results


def _decoded(clips: list[Clip], batch_size: int, max_pixels: int, still: bool):
    """The lazy dataset of every clip's frames, in order, one block per batch of frames."""
    import ray

    items = [{"clip": i, "uri": clip.source} for i, clip in enumerate(clips)]
    where = {}
    if not all(storage.is_remote(clip.source) for clip in clips):  # the files are on this node
        where["label_selector"] = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
    frames = ray.data.from_items(items).map_batches(
        _decode,
        fn_kwargs={"max_pixels": max_pixels, "batch_size": batch_size, "still": still},
        batch_size=1,
        # One clip at a time, in order: with preserve_order, frames of a clip decoded early
        # would wait, held, until every earlier clip is written.
        compute=ray.data.TaskPoolStrategy(size=1),
        num_cpus=1,
        **where,
    )
    # One block per batch: Ray Data would pack a clip's small frames into a few large blocks,
    # each of which goes to one actor, and leave the other actors idle.
    return frames.repartition(target_num_rows_per_block=batch_size)


def _rows(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[tuple]:
    """(clip, index, pts, frame, stillness or None) of each frame, in order."""
    for batch in batches:
        stills = batch.get("still", [None] * len(batch["index"]))
        yield from zip(batch["clip"], batch["index"], batch["pts"], batch["frame"], stills)


def _write_clip(clip: Clip, rows: Iterator[tuple], smooth: float, every: int, start: float):
    """Encode one clip's frames as they arrive, smoothed, with a progress line every ``every``
    (frames/s counted from ``start``, a ``time.perf_counter()``)."""
    smoother = TemporalSmoother(smooth) if smooth else None
    progress = _Progress(clip, every, start)
    with staged(clip.target) as part, VideoWriter(part, clip.info, clip.source) as writer:
        for expected, (_, index, pts, frame, still) in enumerate(rows):
            if index != expected:  # Ray Data's preserve_order is what the output relies on
                raise RuntimeError(f"frame {index} of {clip.source} came in place of {expected}")
            writer.write(smoother(frame, still) if smoother else frame, int(pts))
            progress.advance()
        audio = writer.close()
    return progress.result() | {"audio": audio}


class _Progress:
    """Frames done / total and frames per second of one clip, on stderr every ``every``."""

    def __init__(self, clip: Clip, every: int, start: float):
        self.clip, self.every, self.start, self.done = clip, every, start, 0

    def advance(self) -> None:
        self.done += 1
        if self.every and self.done % self.every == 0:
            total = self.clip.info.frames
            print(f"genart video: {self.clip.source}: {self.done}/{total} frames, "
                  f"{self._fps():.1f} frames/s", file=sys.stderr, flush=True)  # fmt: skip

    def _fps(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def result(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start
        return {"input": self.clip.source, "output": self.clip.target, "frames": self.done,
                "seconds": round(seconds, 2), "frames_per_s": round(self._fps(), 2)}  # fmt: skip


def _user_error(err: BaseException | None) -> BaseException | None:
    """The InputError or OSError a Ray task failed with, found along ``err``'s causes, on one
    line again (Ray Data appends its retry advice to the message), or None."""
    while err is not None:
        # Ray's wrapper subclasses the error it wraps: the original is its ``cause``.
        if isinstance(err, InputError | OSError) and not type(err).__module__.startswith("ray."):
            return type(err)(str(err).split("\n", 1)[0])
        err = getattr(err, "cause", None) or err.__cause__
    return None
