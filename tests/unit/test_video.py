"""Videos without Ray: PyAV reading and writing (order, timing, audio), smoothing, the pieces of
the Ray Data job run in-process, and every bad input as a one-line error before Ray starts."""

import av
import numpy as np
import pytest
from exports import TINY_FAST_STYLE, make_export

from genart import pipelines
from genart.cli import main
from genart.data.synthetic import render_video, write_clip
from genart.errors import InputError
from genart.pipelines import runner, temporal, video, video_io

SIZE = (48, 64)  # (height, width): non-square, so a swapped width and height shows


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="module")
def fast_export(root):
    return make_export(root, "fast_style", TINY_FAST_STYLE)


@pytest.fixture(scope="module")
def clip(root):
    """30 frames of moving shapes at 25 frames/s with a 440 Hz tone (AAC in MP4)."""
    return str(write_clip(root / "clip.mp4", render_video(30, SIZE), rate=25))


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def times(path) -> list[float]:
    """The presentation time of each frame, in seconds."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def audio_seconds(path) -> list[float]:
    """The duration of each audio stream, from its decoded samples."""
    with av.open(str(path)) as container:
        return [sum(f.samples for f in container.decode(s)) / s.rate
                for s in container.streams.audio]  # fmt: skip


def nearest(frames, references) -> list[int]:
    """For each frame, the index of the reference it is closest to (mean absolute difference)."""
    refs = np.stack(references).astype(np.float32)
    return [int(np.abs(refs - f.astype(np.float32)).mean(axis=(1, 2, 3)).argmin()) for f in frames]


def rewrite(source, target, change=lambda image: image) -> str:
    """``source``'s frames through ``change`` into ``target`` with the writer; the audio note."""
    info = video_io.probe(source)
    with video_io.VideoWriter(target, info, source) as writer:
        for _, pts, image in video_io.read_frames(source):
            writer.write(change(image), pts)
        return writer.close()


# --- the generator -------------------------------------------------------------------------------


def test_render_video_moves_shapes_over_a_still_background_deterministically():
    frames = render_video(6, SIZE, seed=3)
    assert frames.shape == (6, *SIZE, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, render_video(6, SIZE, seed=3))
    still = render_video(6, SIZE, seed=3, speed=0.0)
    assert np.array_equal(still[0], frames[0])  # the same scene, not yet moved
    # A still scene changes by its sensor noise alone; moving shapes change far more.
    assert temporal.flicker(still) < 3 < temporal.flicker(frames)
    assert temporal.flicker(render_video(6, SIZE, seed=3, speed=0.0, noise=0.0)) == 0


# --- reading and writing -------------------------------------------------------------------------


def test_probe_reads_size_rate_time_base_frames_and_audio(clip):
    info = video_io.probe(clip)
    assert (info.height, info.width) == SIZE and info.rate == 25 and info.frames == 30
    assert info.time_base == av.open(clip).streams.video[0].time_base and info.audio == ("aac",)


def test_frames_come_back_in_order_with_the_source_timing_and_audio(clip, tmp_path):
    out = tmp_path / "negative.mp4"
    assert rewrite(clip, out, lambda image: 255 - image) == "copied (aac)"
    source, result = decoded(clip), decoded(out)
    assert len(result) == 30 and nearest(result, [255 - f for f in source]) == list(range(30))
    assert times(out) == times(clip)  # the same presentation time, frame by frame
    info, original = video_io.probe(str(out)), video_io.probe(clip)
    assert (info.rate, info.time_base, info.frames) == (original.rate, original.time_base, 30)
    (seconds,) = audio_seconds(out)
    assert seconds == pytest.approx(audio_seconds(clip)[0], abs=0.03)
    assert seconds == pytest.approx(30 / 25, abs=0.05)


@pytest.mark.parametrize(
    ("name", "codecs", "output", "note"),
    [
        ("opus.webm", ("libvpx-vp9", "libopus"), "out.mov", "re-encoded opus -> aac"),
        ("aac.mp4", ("libx264", "aac"), "out.webm", "re-encoded aac -> opus"),
        ("pcm.mkv", ("libx264", "pcm_s16le"), "out.mkv", "copied (pcm_s16le)"),
        ("opus.webm", ("libvpx-vp9", "libopus"), "out.mp4", "copied (opus)"),
    ],
)
def test_audio_is_copied_where_the_container_takes_it_else_re_encoded(
    tmp_path, name, codecs, output, note
):
    source = write_clip(tmp_path / name, render_video(10, SIZE), 25, 440.0, *codecs)
    assert rewrite(str(source), tmp_path / output) == note
    assert len(decoded(tmp_path / output)) == 10
    (seconds,) = audio_seconds(tmp_path / output)
    assert seconds == pytest.approx(10 / 25, abs=0.05)


def test_a_clip_without_audio_is_written_without(tmp_path):
    source = write_clip(tmp_path / "silent.mp4", render_video(5, SIZE), tone_hz=None)
    assert rewrite(str(source), tmp_path / "out.mp4") == "none"
    assert audio_seconds(tmp_path / "out.mp4") == []


def test_odd_sized_grey_frames_are_written_as_even_sided_rgb(clip, tmp_path):
    info = video_io.probe(clip)
    with video_io.VideoWriter(tmp_path / "grey.mkv", info) as writer:
        for index in range(3):
            writer.write(np.full((47, 63, 1), 40 * index, np.uint8), pts=index * 512)
        assert writer.close() == "none"
    frames = decoded(tmp_path / "grey.mkv")
    assert [f.shape for f in frames] == [(46, 62, 3)] * 3
    assert [round(float(f.mean()) / 40) for f in frames] == [0, 1, 2]


def test_a_failed_clip_leaves_no_file_behind(tmp_path):
    target = str(tmp_path / "out" / "clip.mp4")
    with video_io.staged(target) as part:
        part.write_bytes(b"done")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4"]
    with pytest.raises(InputError), video_io.staged(str(tmp_path / "out" / "bad.mp4")) as part:
        part.write_bytes(b"half")
        raise InputError("decoding failed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4"]


def test_clips_are_read_from_and_written_to_object_storage(clip, tmp_path):
    from localcloud import environment, moto_s3, s3_client

    with moto_s3("media") as env, environment(env):
        s3_client(env).upload_file(clip, "media", "in/clip.mp4")
        (planned,) = video.plan("s3://media/in", "s3://media/out")
        assert planned.target == "s3://media/out/clip.mp4" and planned.info.frames == 30
        with video_io.staged(planned.target) as part:
            assert rewrite(planned.source, part) == "copied (aac)"
        s3_client(env).download_file("media", "out/clip.mp4", str(tmp_path / "back.mp4"))
    assert len(decoded(tmp_path / "back.mp4")) == 30


def test_plan_maps_a_folder_onto_an_output_folder(root, tmp_path):
    frames = render_video(3, SIZE)
    write_clip(tmp_path / "b.webm", frames, video_codec="libvpx-vp9", audio_codec="libopus")
    write_clip(tmp_path / "a.m4v", frames)
    (tmp_path / "notes.txt").write_text("not a video")
    clips = video.plan(str(tmp_path), str(root / "styled"))
    assert [(c.source, c.target) for c in clips] == [
        (str(tmp_path / "a.m4v"), str(root / "styled" / "a.mp4")),  # .m4v is read, not written
        (str(tmp_path / "b.webm"), str(root / "styled" / "b.webm")),
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos"):
        video.plan(str(tmp_path / "empty"), str(tmp_path / "x"))


# --- temporal smoothing --------------------------------------------------------------------------


def test_stillness_tells_sensor_noise_from_motion():
    still = render_video(2, SIZE, speed=0.0)
    assert temporal.stillness(still[0], still[0]).min() == 255
    assert temporal.stillness(*still).mean() > 200  # noise of std 2 barely counts
    moving = render_video(2, SIZE, speed=3.0)
    moved = np.abs(moving[1].astype(int) - moving[0].astype(int)).max(-1) > 60
    assert temporal.stillness(*moving)[moved].max() == 0  # where a shape went, no blending


def stylised(export: str, frames: np.ndarray) -> list[np.ndarray]:
    return pipelines.load(export, "cpu")(list(frames))


def test_smoothing_reduces_flicker_on_a_still_clip(fast_export):
    frames = render_video(20, SIZE, speed=0.0)
    outputs = stylised(fast_export, frames)
    raw, smooth = temporal.flicker(outputs), temporal.flicker(temporal.smooth(frames, outputs, 0.8))
    assert raw > 0 and smooth < 0.5 * raw


def test_gating_on_the_input_keeps_blending_from_ghosting_motion(fast_export):
    frames = render_video(20, SIZE, speed=2.0)
    outputs = stylised(fast_export, frames)

    def ghosting(results) -> float:  # how far the results drift from the frames stylised alone
        return float(np.mean([np.abs(r.astype(int) - o).mean() for r, o in zip(results, outputs)]))

    gated = ghosting(temporal.smooth(frames, outputs, 0.8))
    everywhere = ghosting(temporal.smooth(frames, outputs, 0.8, np.inf))  # plain blending
    assert gated < 0.5 * everywhere


def test_smoothing_strength_must_be_below_one():
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        temporal.TemporalSmoother(1.0)


# --- the job's pieces, in-process ----------------------------------------------------------------


def test_decoded_batches_stylised_by_a_translation_export_stay_in_order(root, clip):
    # CycleGAN: deterministic (Pix2Pix keeps its dropout at test time) and two directions.
    tiny = ["cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1"]
    source, call = runner.Source(export=make_export(root, "cyclegan", tiny)), {"direction": "BtoA"}
    video.check_job(source, call, smooth=0.5)
    batch = {"clip": np.array([0]), "uri": np.array([clip])}
    stylist = video._Stylist(source, call)
    out = [stylist(b) for b in video._decode(batch, video_io.MAX_PIXELS, batch_size=8, still=True)]
    assert [len(b["index"]) for b in out] == [8, 8, 8, 6]
    assert np.concatenate([b["index"] for b in out]).tolist() == list(range(30))
    assert out[0]["frame"].shape == (8, *SIZE, 3) and out[0]["still"].shape == (8, *SIZE)
    frames = [image for _, _, image in video_io.read_frames(clip)]
    expected = np.stack(pipelines.load(source.export, "cpu")(frames, **call))
    assert np.abs(np.concatenate([b["frame"] for b in out]).astype(int) - expected).max() <= 1


# --- bad input: one line, exit 2, before Ray starts ------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(root, clip):
    """name -> a bad --input file."""
    folder = root / "bad"
    folder.mkdir()
    long = write_clip(folder / "long.mp4", render_video(50, SIZE))
    data = long.read_bytes()
    (folder / "index-lost.mp4").write_bytes(data[: len(data) // 2])  # MP4's index is at the end
    # A streamable file (index first, as ``movflags=faststart`` writes) cut in half.
    faststart = {"movflags": "faststart"}
    with (
        av.open(str(long)) as source,
        av.open(str(folder / "stream.mp4"), "w", options=faststart) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = (folder / "stream.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    (folder / "text.mp4").write_text("not a video\n" * 50)
    with av.open(str(folder / "tone.m4a"), "w") as out:  # audio only
        stream = out.add_stream("aac", rate=48000, layout="mono")
        samples = np.zeros((1, 1024), np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    from PIL import Image

    Image.fromarray(render_video(1, SIZE)[0]).save(folder / "still.png")
    write_clip(folder / "8k.mp4", np.zeros((1, 4320, 7680, 3), np.uint8), tone_hz=None)
    return folder


def refused(argv: list[str], capsys, monkeypatch) -> str:
    """The error of a ``genart`` run that must fail on one line, exit 2, before Ray starts.

    "Before Ray starts": the verb never calls ``init_ray`` (``ray.is_initialized`` would tell
    nothing when an earlier test of the session left a Ray running).
    """
    from genart.train import launch

    started = []
    monkeypatch.setattr(launch, "init_ray", lambda *a, **k: started.append(a or k))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genart: error: ") and err.count("\n") == 1, err
    assert not started, "Ray was started before the input was refused"
    return err


@pytest.mark.parametrize(
    ("input_name", "flags", "message"),
    [
        ("text.mp4", [], "is not a video genart can read (not a video file, or a truncated one)"),
        ("index-lost.mp4", [], "is not a video genart can read"),
        ("cut.mp4", [], "is truncated: its streams stop at"),
        ("tone.m4a", [], "has no video stream"),
        ("still.png", [], "is a still image, not a video"),
        ("8k.mp4", [], "has 7680x4320 frames, over the cap of 16,777,216 pixels per frame"),
        ("long.mp4", ["--max-pixels", "1000"], "has 64x48 frames, over the cap of 1,000 pixels"),
        ("missing.mp4", [], "does not exist"),
        ("long.mp4", ["--smooth", "1.5"], "smoothing strength must be in [0, 1), got 1.5"),
        ("long.mp4", ["--direction", "BtoA"], "a direction applies to translation models"),
        ("long.mp4", ["--strength", "1.5"], "strength must be a number in [0, 1], got 1.5"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_ray_starts(
    bad_inputs, root, fast_export, capsys, monkeypatch, input_name, flags, message
):
    output = root / "out.mp4"
    argv = ["stylize", "video", "--model", fast_export, "--input", str(bad_inputs / input_name),
            "--output", str(output), *flags]  # fmt: skip
    assert message in refused(argv, capsys, monkeypatch)
    assert not output.exists()


def test_an_output_genart_cannot_write_is_refused(bad_inputs, fast_export, root, capsys,
                                                  monkeypatch):  # fmt: skip
    argv = ["stylize", "video", "--model", fast_export, "--input", str(bad_inputs / "long.mp4"),
            "--output", str(root / "out.gif")]  # fmt: skip
    assert "the name must end in .mp4, .mov, .mkv, .webm" in refused(argv, capsys, monkeypatch)


def test_a_model_that_does_not_map_images_to_images_is_refused(bad_inputs, root, capsys,
                                                               monkeypatch):  # fmt: skip
    argv = ["stylize", "video", "--model", make_export(root, "dcgan", []), "--input",
            str(bad_inputs / "long.mp4"), "--output", str(root / "out.mp4")]  # fmt: skip
    message = "holds a 'dcgan' model: videos take image-to-image models"
    assert message in refused(argv, capsys, monkeypatch)


def test_style_controls_apply_to_fast_style_models_only(bad_inputs, root, capsys, monkeypatch):
    tiny = ["cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1"]
    argv = ["stylize", "video", "--model", make_export(root, "cyclegan", tiny), "--input",
            str(bad_inputs / "long.mp4"), "--output", str(root / "out.mp4"),
            "--preserve-color", "yiq"]  # fmt: skip
    message = "strength and preserve_color apply to fast_style models"
    assert message in refused(argv, capsys, monkeypatch)


@pytest.mark.parametrize(
    ("flags", "call"),
    [
        ([], {}),  # the defaults: nothing a translation model would refuse
        (["--strength", "0.25", "--preserve-color", "ycbcr"],
         {"strength": 0.25, "preserve_color": "ycbcr"}),
    ],
)  # fmt: skip
def test_the_style_control_flags_reach_every_frames_call(fast_export, clip, root, monkeypatch,
                                                         flags, call):  # fmt: skip
    from genart.train import launch

    jobs = []
    monkeypatch.setattr(launch, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(video, "stylize_videos", lambda clips, source, **kw: jobs.append(kw) or [])
    argv = ["stylize", "video", "--model", fast_export, "--input", clip, "--output",
            str(root / "controlled.mp4"), *flags]  # fmt: skip
    assert main(argv) == 0
    assert [job["call"] for job in jobs] == [call]


def test_stylised_frames_take_the_style_controls(fast_export, clip):
    source = runner.Source(export=fast_export)
    batch = {"clip": np.array([0]), "uri": np.array([clip])}
    frames = next(video._decode(batch, video_io.MAX_PIXELS, batch_size=4, still=False))
    none = video._Stylist(source, {"strength": 0.0})(frames)["frame"]
    np.testing.assert_array_equal(none, frames["frame"])  # strength 0: the input frames
    kept = video._Stylist(source, {"preserve_color": "yiq"})(frames)["frame"]
    expected = pipelines.load(fast_export, "cpu")(list(frames["frame"]), preserve_color="yiq")
    np.testing.assert_array_equal(kept, np.stack(expected))
