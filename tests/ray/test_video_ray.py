"""``genart stylize video`` on a local Ray: a folder of clips through 2 Ray Data actors, written
back in order with the sources' timing and audio."""

import av
import numpy as np
import pytest
from exports import TINY_FAST_STYLE, make_export
from PIL import Image

from genart import pipelines
from genart.cli import main
from genart.data.synthetic import render_video, write_clip
from genart.pipelines import temporal, video_io

pytestmark = pytest.mark.ray


def expected_frames(export: str, clip: str, smooth: float) -> list[np.ndarray]:
    """What the job should write for ``clip``, computed here in one process."""
    frames = [image for _, _, image in video_io.read_frames(clip)]
    return temporal.smooth(frames, pipelines.load(export, "cpu")(frames), smooth)


def luma(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).convert("L"), np.float32)


def test_a_folder_of_clips_is_stylised_in_order_on_two_actors(ray_local, tmp_path, capsys):
    export = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_clip(inputs / "a.mp4", render_video(30, (48, 64), seed=1), rate=25)
    write_clip(inputs / "b.webm", render_video(12, (32, 48), seed=2, speed=0.0), rate=10,
               video_codec="libvpx-vp9", audio_codec="libopus")  # fmt: skip
    out = tmp_path / "out"
    argv = ["stylize", "video", "--model", export, "--input", str(inputs), "--output", str(out),
            "--actors", "2", "--batch-size", "4", "--smooth", "0.5",
            "--progress-every", "10"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert f"genart video: {inputs / 'a.mp4'}: 30/30 frames" in printed.err
    assert f"genart video: {inputs / 'b.webm'}: 10/12 frames" in printed.err
    assert "audio copied (aac)" in printed.out and "audio copied (opus)" in printed.out
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.webm"]  # no temporary files

    for name, count, rate in (("a.mp4", 30, 25), ("b.webm", 12, 10)):
        source, result = str(inputs / name), str(out / name)
        info, original = video_io.probe(result), video_io.probe(source)
        assert (info.frames, info.rate, info.time_base) == (count, rate, original.time_base)
        read = list(video_io.read_frames(result))
        assert [pts for _, pts, _ in read] == [pts for _, pts, _ in video_io.read_frames(source)]
        with av.open(result) as container:
            (audio,) = container.streams.audio
            samples = sum(frame.samples for frame in container.decode(audio))
        assert samples / audio.rate == pytest.approx(count / rate, abs=0.05)
        # Compared in luma, which 4:2:0 video keeps at full resolution (the random network's
        # per-pixel colour noise is mostly lost to chroma subsampling).
        refs = np.stack([luma(image) for image in expected_frames(export, source, 0.5)])
        got = [luma(image) for _, _, image in read]
        if name == "a.mp4":  # moving shapes: each frame is told apart from the others
            order = [int(np.abs(refs - g).mean(axis=(1, 2)).argmin()) for g in got]
            assert order == list(range(count))
        assert max(np.abs(g - e).mean() for g, e in zip(got, refs)) < 6  # the encoders' loss
