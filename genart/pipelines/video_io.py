"""Reading and writing videos with PyAV (FFmpeg): probing a clip, decoding its frames in order,
and writing frames back with the source's timestamps, frame rate and audio.

Probing reads every packet (without decoding), so a file that is not a video, is truncated or
has frames over the pixel cap fails before any work starts, and frame totals are exact. Audio
streams are copied packet for packet where the output container takes their codec, else
re-encoded (AAC; Opus for WebM). A file is written under a temporary name and moved (or
uploaded) into place when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from genart import storage
from genart.errors import InputError
from genart.pipelines.base import with_channels

# What each output extension is written as: (FFmpeg muxer, video encoder, audio encoder for
# audio the container cannot take as it is).
CONTAINERS = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "aac"),
    ".webm": ("webm", "libvpx-vp9", "libopus"),  # WebM holds VP8/VP9/AV1 with Vorbis/Opus only
}
VIDEO_EXTENSIONS = (*CONTAINERS, ".m4v", ".avi")  # the files a folder input picks up
# CRF 18 is about visually lossless for x264; "fast" because the driver encodes every frame
# alone and must keep up with the actors. VP9 in constant-quality mode, threaded by rows.
ENCODER_OPTIONS = {
    "libx264": {"crf": "18", "preset": "fast"},
    "libvpx-vp9": {"crf": "30", "b:v": "0", "row-mt": "1", "cpu-used": "4"},
}
MAX_PIXELS = 4096 * 4096  # frames with more pixels are refused (an 8K frame is 33 MP)
# A clip whose packets end this much before the duration its header declares is truncated.
TRUNCATION_SLACK_S = 0.5


@dataclass(frozen=True)
class VideoInfo:
    """What the writer and the progress line need of a source clip."""

    width: int
    height: int
    rate: Fraction  # average frames per second
    time_base: Fraction  # of the video stream's timestamps
    frames: int  # packets of the video stream
    audio: tuple[str, ...]  # the codec of each audio stream


# --- reading -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _input(uri: str):
    """A PyAV input container over a local file or remote object (read through pyarrow)."""
    import av

    fs, path = storage.filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"video {uri} does not exist")
    with fs.open_input_file(path) as file:
        try:
            container = av.open(file, metadata_errors="ignore")
        except av.error.FFmpegError as err:
            raise InputError(f"{uri} is not a video genart can read (not a video file, or a "
                             f"truncated one): {err.strerror}") from err  # fmt: skip
        with container:
            yield container


def _video_stream(container, uri: str, max_pixels: int):
    """The first video stream, refused if the container is a still image or its frames are
    larger than ``max_pixels``."""
    name = container.format.name
    if name == "image2" or name.endswith("_pipe"):  # FFmpeg's demuxers of single images
        raise InputError(f"{uri} is a still image, not a video (genart stylize fast takes images)")
    if not container.streams.video:
        raise InputError(f"{uri} has no video stream")
    stream = container.streams.video[0]
    width, height = stream.width, stream.height
    if not width or not height:
        raise InputError(f"{uri}: its video stream does not say its frame size")
    if width * height > max_pixels:
        raise InputError(f"{uri} has {width}x{height} frames, over the cap of {max_pixels:,} "
                         "pixels per frame (--max-pixels)")  # fmt: skip
    return stream


def probe(uri: str, max_pixels: int = MAX_PIXELS) -> VideoInfo:
    """The :class:`VideoInfo` of a clip, read from all of its packets (not decoded: the frames
    are counted exactly, and a truncated clip is found before any work starts).

    InputError (one line) if it is not a readable video, is truncated (its packets end well
    before the duration its header declares), has no video stream or frames over
    ``max_pixels``; FileNotFoundError if it is missing.
    """
    import av

    with _input(uri) as container:
        stream = _video_stream(container, uri, max_pixels)
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise InputError(f"{uri}: its video stream does not say its frame rate")
        frames, end = 0, 0.0
        try:
            for packet in container.demux():  # every stream: how far the file really goes
                if packet.pts is not None:
                    end = max(end, float((packet.pts + packet.duration) * packet.time_base))
                frames += packet.stream.index == stream.index and packet.size > 0
        except av.error.FFmpegError as err:
            raise InputError(f"{uri} is corrupt after {frames} frames: {err.strerror}") from err
        declared = container.duration and ((container.start_time or 0) + container.duration) / 1e6
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        info = VideoInfo(stream.width, stream.height, Fraction(rate), Fraction(stream.time_base),
                         frames, audio)  # fmt: skip
    if not frames:
        raise InputError(f"{uri} holds no video frames")
    if declared and end < declared - TRUNCATION_SLACK_S:
        raise InputError(f"{uri} is truncated: its streams stop at {end:.2f} s of the "
                         f"{declared:.2f} s its header declares")  # fmt: skip
    return info


def read_frames(uri: str, max_pixels: int = MAX_PIXELS) -> Iterator[tuple[int, int, np.ndarray]]:
    """(index, pts, uint8 RGB (H, W, 3) frame) of every frame of a clip, in presentation order
    (:func:`probe` it first: a truncated clip just ends early here).

    Frames keep the stream's first size (a mid-stream size change is scaled back to it). An
    InputError if decoding fails or no frame decodes.
    """
    import av

    with _input(uri) as container:
        stream = _video_stream(container, uri, max_pixels)
        size = {"width": stream.width, "height": stream.height}
        index = 0
        try:
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="rgb24", **size)
                yield index, _pts(frame, index, stream), image
                index += 1
        except av.error.FFmpegError as err:
            raise InputError(f"{uri} is corrupt after frame {index}: {err.strerror}") from err
    if not index:
        raise InputError(f"{uri} holds no decodable video frame")


def _pts(frame, index: int, stream) -> int:
    """The frame's timestamp; for streams without them (raw bitstreams), the index's time."""
    if frame.pts is not None:
        return frame.pts
    return round(index / (stream.average_rate or stream.guessed_rate) / stream.time_base)


# --- writing -----------------------------------------------------------------------------------


def output_format(path: str | Path) -> tuple[str, str, str]:
    """(muxer, video encoder, audio encoder) of an output file; InputError for other names."""
    suffix = Path(str(path)).suffix.lower()
    if suffix not in CONTAINERS:
        raise InputError(f"cannot write video {path}: the name must end in "
                         f"{', '.join(CONTAINERS)}")  # fmt: skip
    return CONTAINERS[suffix]


class VideoWriter:
    """Encodes frames into a local file (its extension names the container, see
    ``CONTAINERS``) with a source's frame rate and time base, and carries the audio of the
    source file ``audio_from`` over beside them, interleaved by time.

    The file is opened at the first frame, at that frame's size. :meth:`close` finishes it and
    returns what became of the audio (``copied (aac)``, ``re-encoded opus -> aac``, ``none``).
    """

    def __init__(self, path: str | Path, info: VideoInfo, audio_from: str | None = None):
        self.path, self.info = Path(path), info
        self.format = output_format(path)
        self._stack = contextlib.ExitStack()
        has_audio = bool(audio_from and info.audio)
        self._source = self._stack.enter_context(_input(audio_from)) if has_audio else None
        self.container = self.video = self.audio = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one uint8 (H, W, 1|3) frame at timestamp ``pts`` (in the source's time base)."""
        import av

        height, width = image.shape[:2]
        image = np.ascontiguousarray(with_channels(image, 3)[: height // 2 * 2, : width // 2 * 2])
        if self.container is None:
            self._start(*image.shape[:2])
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, self.info.time_base
        if self.audio is not None:
            self.audio.until(float(pts * self.info.time_base))
        self.container.mux(self.video.encode(frame))

    def close(self) -> str:
        """Flush the encoders and finish the file; what became of the audio."""
        self.container.mux(self.video.encode())
        if self.audio is not None:
            self.audio.finish()
        self.container.close()
        self._stack.close()
        return self.audio.note if self.audio is not None else "none"

    def _start(self, height: int, width: int) -> None:
        """Open the output: audio copied if the container takes it, else re-encoded."""
        import av

        muxer, video_codec, audio_codec = self.format
        for copy in (True, False):
            container = av.open(str(self.path), "w", format=muxer)
            self._stack.callback(container.close)
            video = container.add_stream(video_codec, rate=self.info.rate,
                                         options=ENCODER_OPTIONS[video_codec])  # fmt: skip
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            # Timestamps are the source's, untouched: the same time base keeps them exact.
            video.time_base = video.codec_context.time_base = self.info.time_base
            try:
                audio = None
                if self._source is not None:
                    audio = _AudioTrack(self._source, container, audio_codec, copy)
                container.start_encoding()  # the header: where a muxer refuses a codec
            except ValueError:  # PyAV's (and FFmpeg's) errors for a codec the muxer refuses
                if not copy:
                    raise
                container.close()
                continue
            self.container, self.video, self.audio = container, video, audio
            return


class _AudioTrack:
    """A source's audio streams, copied (or re-encoded) into an output in time order."""

    def __init__(self, source, output, codec: str, copy: bool):
        streams = source.streams.audio
        self.output, self.copy = output, copy
        if copy:
            self.streams = {s.index: output.add_stream_from_template(s) for s in streams}
        else:
            self.streams = {
                s.index: output.add_stream(
                    codec, rate=_sample_rate(codec, s.rate), layout=s.layout.name
                )  # fmt: skip
                for s in streams
            }
        names = sorted({s.codec_context.name for s in streams})
        self.note = (f"copied ({', '.join(names)})" if copy else
                     f"re-encoded {', '.join(names)} -> {codec.removeprefix('lib')}")  # fmt: skip
        self._resamplers: dict[int, Any] = {}
        self._source, self._packets, self._next = source, None, None

    def until(self, seconds: float | None) -> None:
        """Mux every packet that starts before ``seconds`` (all that are left if None)."""
        if self._packets is None:  # demuxed from here on: a refused first attempt read nothing
            self._packets = self._source.demux(*self._source.streams.audio)
            self._next = next(self._packets, None)
        while self._next is not None and (seconds is None or _start(self._next) < seconds):
            self._mux(self._next)
            self._next = next(self._packets, None)

    def finish(self) -> None:
        """Mux what is left and flush the encoders."""
        self.until(None)
        if self.copy:
            return
        for index, stream in self.streams.items():
            if index in self._resamplers:
                self._encode(stream, self._resamplers[index].resample(None))
            self.output.mux(stream.encode())

    def _mux(self, packet) -> None:
        stream = self.streams[packet.stream.index]
        if self.copy:
            if packet.dts is not None:  # the demuxer's end-of-stream markers carry no data
                packet.stream = stream
                self.output.mux(packet)
            return
        import av

        for frame in packet.decode():
            if packet.stream.index not in self._resamplers:
                self._resamplers[packet.stream.index] = av.AudioResampler(
                    stream.format, stream.layout, stream.rate, stream.codec_context.frame_size
                )
            self._encode(stream, self._resamplers[packet.stream.index].resample(frame))

    def _encode(self, stream, frames) -> None:
        for frame in frames:
            self.output.mux(stream.encode(frame))


def _start(packet) -> float:
    """When a packet starts, in seconds (end-of-stream markers last)."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    return float("inf") if stamp is None else float(stamp * packet.time_base)


def _sample_rate(codec: str, rate: int) -> int:
    """``rate`` if the encoder takes it, else 48 kHz (which AAC and Opus both take)."""
    import av

    rates = av.codec.Codec(codec, "w").audio_rates
    return rate if not rates or rate in rates else 48000


@contextlib.contextmanager
def staged(target: str) -> Iterator[Path]:
    """A local path to write ``target`` at, moved (or uploaded) there only if the block
    succeeds: a failed clip leaves neither a half-written file nor a temporary one."""
    remote = storage.is_remote(target)
    name = target.rsplit("/", 1)[-1]
    if remote:
        folder = Path(tempfile.mkdtemp(prefix="genart-video-"))
        part = folder / name
    else:
        folder = Path(target).parent
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f".{Path(name).stem}.partial{Path(name).suffix}"
    try:
        yield part
        if remote:
            storage.upload_dir(folder, target.rsplit("/", 1)[0])
        else:
            os.replace(part, target)
    finally:
        if remote:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            part.unlink(missing_ok=True)
