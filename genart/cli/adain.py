"""``genart stylize adain``: a content image in any style (or a blend of styles) with a trained
AdaIN decoder, a thin caller of ``genart.pipelines.adain``. The PNG gets a JSON beside it with
the inputs, the settings and the encoder's description (random VGG weights say so there)."""

from __future__ import annotations

from pathlib import Path

from genart.cli.common import (
    add_backend,
    add_device,
    add_export_arg,
    add_mask_flags,
    add_style_controls,
    add_tile,
    read_content_and_mask,
    save_image,
    warn_random,
    write_json,
)


def register(verbs) -> None:
    """Add ``adain`` to the ``stylize`` verbs."""
    p = verbs.add_parser(
        "adain", help="arbitrary style transfer with a trained AdaIN decoder (any style image)"
    )
    add_export_arg(p, "--model", "stylize adain")
    p.add_argument("--content", required=True, help="content image")
    p.add_argument(
        "--style",
        required=True,
        action="extend",
        nargs="+",
        help="style image(s); repeat the flag or list several to blend them (see --blend)",
    )
    p.add_argument("--output", required=True, help="result PNG (a .json is written beside it)")
    p.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="content-style trade-off in [0, 1]: 0 = content only, 1 = full style (default)",
    )
    p.add_argument(
        "--blend", type=float, nargs="+", metavar="W", help="one weight per --style image"
    )
    # No --strength: --alpha is AdaIN's strength (in feature space, which looks better than a
    # pixel blend); a second name for it would only raise the question which one wins.
    add_style_controls(p, strength=False)
    add_mask_flags(p)
    p.add_argument(
        "--size", type=int, default=0, help="resize long sides of all images first (0 = as is)"
    )
    p.add_argument(
        "--vgg-weights",
        help="encoder weights: auto | PATH | s3://bucket/key | random (default: the training's)",
    )
    add_device(p)
    add_tile(p)
    add_backend(p)
    p.set_defaults(func=stylize)


def stylize(args) -> int:
    """Stylise one content image; write the PNG and its JSON."""
    from genart.images import read
    from genart.pipelines.adain import AdaINPipeline

    content, mask, outside = read_content_and_mask(args)
    styles = [read(path, 3, args.size) for path in args.style]
    pipe = AdaINPipeline.from_export(
        args.model, args.device, vgg_weights=args.vgg_weights, tile=args.tile, backend=args.backend
    )
    warn_random(pipe.encoder.metadata)
    image = pipe(content, styles, alpha=args.alpha, weights=args.blend,
                 preserve_color=args.preserve_color, mask=mask,
                 outside_style=outside)  # fmt: skip
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(image, output)
    info = {"model": args.model, "content": args.content, "styles": args.style,
            "alpha": args.alpha, "blend": args.blend, "preserve_color": args.preserve_color,
            "mask": args.mask, "outside_style": args.outside_style,
            "size": list(image.shape[:2]),
            "encoder": pipe.encoder.metadata, "backend": pipe.describe()["backend"]}  # fmt: skip
    write_json(output.with_suffix(".json"), info)
    print(f"wrote {output} ({image.shape[1]}x{image.shape[0]}, alpha {args.alpha})")
    return 0
