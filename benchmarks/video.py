"""Video stylisation through Ray Data: frames/s on 1 and 2 actors, and flicker with and without
temporal smoothing.

Throughput: a clip of moving shapes (``genart.data.synthetic.render_video``, 25 frames/s, an AAC
tone) through ``genart.pipelines.video.stylize_videos`` with Johnson et al.'s fast-style network
(width 32, 5 residual blocks, random weights): decoding, the Ray Data actors, and the in-order
encode with the audio copied, end to end. Actor start-up and model loading are included, as a
user's run pays them. On CPU each actor holds one CPU, so Ray gives it one torch thread; where
GPUs are present each actor gets a GPU (a share of one when there are fewer GPUs than actors).

Flicker: the mean absolute difference between consecutive frames of a still clip (one scene,
fresh sensor noise of std 2 in each frame), in grey levels: the input's; the network's frames
before encoding, unsmoothed, smoothed by genart's blending (only where the input stayed still)
and by plain blending (everywhere, the same strength); and the decoded files the job writes with
``smooth`` off and on (the encoder's own losses hide much of it). Ghosting: on the moving clip,
the mean absolute difference between the smoothed and unsmoothed frames where the input moved
(its luma changed by more than ``MOVED``): what smoothing costs where things move.

    python -m benchmarks.video [--quick] [--out bench-results]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genart import config, pipelines
from genart import export as exports
from genart.data.synthetic import render_video, write_clip
from genart.models import fast_style
from genart.pipelines import runner, temporal, video, video_io
from genart.train import checkpoint

STRENGTH = 0.7  # the smoothing strength measured
MOVED = 24  # grey levels of luma change where the input moved (its noise: std 2 a frame)


def _export(folder: Path) -> str:
    """Johnson et al.'s network at its default size, with random weights, exported."""
    cfg = config.load("fast_style", overrides=["fast_style.style_image=unused.png"])
    torch.manual_seed(0)
    nets = fast_style.build(cfg.params)
    checkpoint.write(folder / "ckpt", {"step": 0, "nets": {"G": nets["G"].state_dict()}}, cfg, [])
    exports.from_checkpoint(str(folder / "ckpt"), str(folder / "model"))
    return str(folder / "model")


def _job(export: str, clip: Path, out: Path, actors: int, gpus: float, smooth: float) -> dict:
    (result,) = video.stylize_videos(video.plan(str(clip), str(out)), runner.Source(export=export),
                                     actors=actors, gpus_per_actor=gpus, smooth=smooth,
                                     progress_every=0)  # fmt: skip
    return result


def _frames(path: Path) -> list[np.ndarray]:
    return [image for _, _, image in video_io.read_frames(str(path))]


def throughput(export: str, folder: Path, size: tuple[int, int], frames: int) -> list[dict]:
    """Frames/s of the whole job on 1 and 2 actors."""
    clip = write_clip(folder / "moving.mp4", render_video(frames, size), rate=25)
    gpus = torch.cuda.device_count()
    rows = []
    for actors in (1, 2):
        share = min(1.0, gpus / actors) if gpus else 0.0
        result = _job(export, clip, folder / f"moving-{actors}.mp4", actors, share, 0.0)
        rows.append({"bench": "throughput", "device": "cuda" if gpus else "cpu",
                     "actors": actors, "gpus_per_actor": share, "size": f"{size[1]}x{size[0]}",
                     "frames": result["frames"], "seconds": result["seconds"],
                     "frames_per_s": result["frames_per_s"], "audio": result["audio"]})  # fmt: skip
    return rows


def flicker(export: str, folder: Path, size: tuple[int, int], frames: int) -> list[dict]:
    """Flicker on the still clip and ghosting on the moving one, smoothed or not."""
    pipe = pipelines.load(export)
    still, moving = render_video(frames, size, speed=0.0), render_video(frames, size)
    styled, styled_moving = pipe(list(still)), pipe(list(moving))
    gated = temporal.smooth(still, styled, STRENGTH)
    plain = temporal.smooth(still, styled, STRENGTH, threshold=np.inf)  # the same weight everywhere

    luma = [np.asarray(Image.fromarray(frame).convert("L"), np.float32) for frame in moving]
    moved = [np.abs(b - a) > MOVED for a, b in zip(luma, luma[1:])]

    def ghosting(threshold: float) -> float:
        smoothed = temporal.smooth(moving, styled_moving, STRENGTH, threshold)
        pairs = zip(smoothed[1:], styled_moving[1:], moved)
        diffs = [np.abs(s - o.astype(np.float32))[where] for s, o, where in pairs]
        return round(float(np.concatenate(diffs).mean()), 3)

    def row(frames_of: str, smoothing: str, value: float, ghost: float | None = None) -> dict:
        return {"bench": "flicker", "frames": frames_of, "smoothing": smoothing,
                "flicker": round(value, 3), "ghosting": "" if ghost is None else ghost}  # fmt: skip

    clip = write_clip(folder / "still.mp4", still, rate=25)
    encoded = {s: _frames(Path(_job(export, clip, folder / f"still-{s}.mp4", 1, 0.0, s)["output"]))
               for s in (0.0, STRENGTH)}  # fmt: skip
    return [
        row("input", "-", temporal.flicker(still)),
        row("network output", "off", temporal.flicker(styled), 0.0),
        row("network output", f"gated {STRENGTH}", temporal.flicker(gated),
            ghosting(video.MOTION_THRESHOLD)),
        row("network output", f"plain {STRENGTH}", temporal.flicker(plain), ghosting(np.inf)),
        row("job's file", "off", temporal.flicker(encoded[0.0])),
        row("job's file", f"gated {STRENGTH}", temporal.flicker(encoded[STRENGTH])),
    ]  # fmt: skip


def run(out_dir: Path, quick: bool) -> dict:
    """Both measurements; prints the tables and writes video.json under ``out_dir``."""
    from benchmarks.common import print_table, write_json
    from benchmarks.ingest import local_ray

    size, frames = ((96, 128), 48) if quick else ((240, 320), 150)
    # 4 logical CPUs: 2 actors, the decode task and the repartition beside them.
    with tempfile.TemporaryDirectory() as tmp, local_ray(4):
        folder = Path(tmp)
        export = _export(folder)
        speed = throughput(export, folder, size, frames)
        noise = flicker(export, folder, size, min(frames, 48))
    print_table(speed)
    print()
    print_table(noise)
    result = {"quick": quick, "strength": STRENGTH, "threshold": video.MOTION_THRESHOLD,
              "rows": speed + noise}  # fmt: skip
    write_json("video", result, out_dir)
    return result


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
