"""``genart stylize video``: every frame of a video (or a folder of videos) through a trained
image-to-image model as a Ray Data job (``genart.pipelines.video``), written back in order with
the source's frame rate and audio."""

from __future__ import annotations

from genart.cli.common import add_device, add_direction, add_export_arg, add_style_controls


def register(verbs) -> None:
    """Add ``video`` to the ``stylize`` verbs."""
    p = verbs.add_parser(
        "video", help="stylise or translate videos with a trained image-to-image model (Ray Data)"
    )
    add_export_arg(p, "--model", "stylize video")
    p.add_argument("--input", required=True, help="a video file, or a folder / s3:// prefix")
    p.add_argument(
        "--output",
        required=True,
        help="output video (.mp4 .mov .mkv .webm) for a file input, else a folder",
    )
    add_direction(p, "translation models; default: the model's first")
    add_style_controls(p, strength=True)  # fast_style models only (checked before Ray starts)
    p.add_argument("--batch-size", type=int, default=8, help="frames per Ray Data batch")
    p.add_argument("--actors", type=int, default=1, help="Ray Data actors (one model each)")
    add_device(p)
    p.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="S",
        help="temporal smoothing in [0, 1): blend each frame with the previous output "
        "by S where the input stayed still (0 = off)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse videos with larger frames (default 4096x4096)",
    )
    p.add_argument(
        "--progress-every",
        type=int,
        metavar="N",
        help="a progress line on stderr every N frames of a clip (default 100)",
    )
    p.set_defaults(func=video)


def video(args) -> int:
    """Stylise (or translate) a video, or every video of a folder, through Ray Data."""
    from genart import storage
    from genart.pipelines import runner
    from genart.pipelines import video as videos
    from genart.train.launch import init_ray

    # The flags' defaults live in the pipeline module (the parser must not import torch).
    max_pixels = args.max_pixels or videos.MAX_PIXELS
    every = videos.PROGRESS_EVERY if args.progress_every is None else args.progress_every
    call = {"direction": args.direction} if args.direction else {}
    # Only when changed: translation models take no style controls (check_job says so).
    if args.strength != 1.0 or args.preserve_color != "none":
        call |= {"strength": args.strength, "preserve_color": args.preserve_color}
    # Inputs and model are checked before Ray starts: bad ones fail fast, on one line.
    clips = videos.plan(args.input, args.output, max_pixels)
    source = runner.Source(export=storage.absolute(args.model))
    videos.check_job(source, call, args.smooth)
    init_ray(workers=args.actors)
    gpus = 1 if args.device == "cuda" else 0
    results = videos.stylize_videos(clips, source, call=call, batch_size=args.batch_size,
                                    actors=args.actors, gpus_per_actor=gpus, smooth=args.smooth,
                                    max_pixels=max_pixels, progress_every=every)  # fmt: skip
    for result in results:
        print(f"wrote {result['output']}: {result['frames']} frames in {result['seconds']} s "
              f"({result['frames_per_s']} frames/s), audio {result['audio']}")  # fmt: skip
    return 0
