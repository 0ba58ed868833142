"""``genart train``, ``genart export`` and ``genart demo``."""

from __future__ import annotations

import argparse
import json

from genart.cli.common import Registered

# Shortcut flags: each is sugar for one --set override.
SHORTCUTS = {
    "data": "data.uri",
    "workers": "scaling.workers",
    "gpus_per_worker": "scaling.gpus_per_worker",
    "steps": "train.steps",
    "name": "run.name",
    "storage": "run.storage_path",
    "max_failures": "run.max_failures",
    "tracking": "run.tracking_uri",
}


def register(sub) -> None:
    from genart.registry import TrainedSpec

    p = sub.add_parser("train", help="train a model with Ray Train (local Ray or RAY_ADDRESS)")
    add_model_arg(p, "a trained family", TrainedSpec)
    add_config_args(p)
    p.set_defaults(func=train)

    p = sub.add_parser("export", help="export a run's generator(s) + config for serving")
    p.add_argument(
        "run",
        help="run folder or checkpoint folder (local or s3://); with --catalogue also a model "
        "registered in MLflow, models:/NAME/VERSION",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output folder (local or s3://)")
    where.add_argument("--catalogue", help="catalogue (folder or s3:// prefix) to add it to")
    p.add_argument("--name", help="its name in the catalogue (URL-safe; with --catalogue)")
    p.add_argument("--replace", action="store_true", help="replace a model of that name")
    p.set_defaults(func=export)

    p = sub.add_parser("demo", help="generate digits and train DCGAN on 2 local workers")
    p.add_argument("--out", default="runs", help="folder for data and runs (default: runs)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=demo)


def add_model_arg(p: argparse.ArgumentParser, what: str, kind: type | None = None) -> None:
    """The positional ``model`` argument, its help listing the registered families of ``kind``."""
    action = p.add_argument("model", help=f"{what}: %(registered)s")
    # argparse fills a help text's %(name)s from the action's attributes when it prints it.
    action.registered = Registered(kind=kind)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """Recipe, shortcut flags and --set overrides (shared by train and tune)."""
    p.add_argument("--config", help="YAML recipe (jobs/*.yaml)")
    p.add_argument("--data", help="dataset: folder, s3:// prefix or Parquet (data.uri)")
    p.add_argument("--workers", type=int, help="Ray Train workers (scaling.workers)")
    p.add_argument(
        "--gpus-per-worker", type=float, help="GPUs per worker (scaling.gpus_per_worker)"
    )
    p.add_argument("--steps", type=int, help="optimizer steps (train.steps)")
    p.add_argument("--name", help="run name (run.name)")
    p.add_argument("--storage", help="storage path: folder or s3:// URI (run.storage_path)")
    p.add_argument("--max-failures", type=int, help="automatic restarts (run.max_failures)")
    p.add_argument("--resume", action="store_true", help="continue the named run")
    p.add_argument(
        "--tracking",
        metavar="URI",
        help="track in MLflow: a server (http://HOST:PORT), any MLflow tracking URI, or "
        "'local' (a store in the run folder) (run.tracking_uri)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config value (repeatable)",
    )


def overrides(args) -> list[str]:
    """The --set list extended with the shortcut flags that were given."""
    extra = [
        f"{key}={getattr(args, flag)}"
        for flag, key in SHORTCUTS.items()
        if getattr(args, flag, None) is not None
    ]
    if getattr(args, "resume", False):
        extra.append("run.resume=true")
    return extra + list(args.set)


def train(args) -> int:
    from genart.train.launch import configure, fit

    cfg = configure(args.model, args.config, overrides(args))
    result = fit(cfg)
    if result.error:
        raise result.error
    print(json.dumps(result.return_value, indent=1))
    return 0


def export(args) -> int:
    from genart import export as exports
    from genart.catalogue import Catalogue
    from genart.errors import InputError

    if args.catalogue is None:
        if args.name or args.replace:
            raise InputError("--name and --replace go with --catalogue")
        manifest = exports.from_checkpoint(args.run, args.out)
        where = args.out
    else:
        if not args.name:
            raise InputError("--catalogue needs --name: the model's name in the catalogue")
        manifest = Catalogue(args.catalogue).publish(args.run, args.name, args.replace).manifest
        where = f"{args.catalogue} as {args.name}"
    step = manifest["source"]["step"]
    print(f"exported {manifest['family']} (step {step}, {manifest['weights']} weights) to {where}")
    return 0


def demo(args) -> int:
    """Generate digits, train DCGAN on local Ray workers, write and list what people look at."""
    from pathlib import Path

    from genart import config, recipes
    from genart import export as exports
    from genart.data import synthetic
    from genart.train.launch import fit

    out = Path(args.out)
    data = out / "data" / "digits"
    if not (data / "labels.csv").exists():
        synthetic.generate("digits", data, n=6000, size=32, seed=0)
    cfg = config.load(
        "dcgan",
        recipes.path("dcgan-digits"),
        [
            f"data.uri={data}",
            f"train.steps={args.steps}",
            f"scaling.workers={args.workers}",
            f"run.storage_path={out}",
        ],
    )
    result = fit(cfg)
    if result.error:
        raise result.error
    run_dir = Path(result.return_value["files"]["run"])
    export_dir = run_dir / "export"
    exports.from_checkpoint(str(run_dir), str(export_dir))
    strip = run_dir / "interpolation.png"
    from genart.cli import main as cli_main

    cli_main(
        [
            "interpolate",
            str(export_dir),
            "--seeds",
            "0",
            "1",
            "2",
            "3",
            "--steps",
            "8",
            "--out",
            str(strip),
        ]
    )
    files = result.return_value["files"] | {"interpolation": str(strip), "export": str(export_dir)}
    print("\nDemo finished. Look at:")
    for key, value in files.items():
        print(f"  {key:13s} {value}")
    print("Scores (all metrics in metrics.json):", scores(result.return_value["metrics"]))
    print("Serve it (the newest demo run under runs/ becomes /dcgan):  genart serve")
    print(
        """  then: curl -H 'Content-Type: application/json' -d '{"n": 16, "seed": 0}' """
        "http://127.0.0.1:8000/dcgan/sample -o grid.png"
    )
    return 0


def scores(metrics: dict) -> str:
    """The quality scores among ``metrics`` on one line: ``eval_swd 96.04, ...``."""
    return ", ".join(
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in metrics.items()
        if key.startswith("eval_")
    )
