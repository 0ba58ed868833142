"""``genart tune``: Ray Tune sweeps of loss weights and learning rates, one Train run per trial."""

from __future__ import annotations

from genart.cli.train import add_config_args, add_model_arg, overrides


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="sweep hyper-parameters with Ray Tune (each trial a Ray Train run)",
        description="Sweep a search space (YAML keyed by config paths) around a base config. "
        "--name/--storage place the sweep, --resume continues it, --steps/--budget is each "
        "trial's budget, --workers/--workers-per-trial and --gpus-per-worker size each trial.",
    )
    add_model_arg(p, "a registered family")
    add_config_args(p)
    p.add_argument(
        "--space",
        default="builtin",
        help="search space YAML, or 'builtin' (genart/tune/spaces/MODEL.yaml)",
    )
    p.add_argument(
        "--samples",
        type=int,
        help="trials, or repetitions of a grid (default: 4, or 1 grid with grid search)",
    )
    p.add_argument("--scheduler", choices=["asha", "pbt", "fifo"], default="asha")
    p.add_argument("--search", choices=["random", "grid", "optuna-if-installed"], default="random")
    p.add_argument(
        "--pbt-sync",
        action="store_true",
        help="synchronous PBT: compare trials at the same step (each perturbation restarts "
        "every trial from its checkpoint)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=0,
        help="trials at once (default, 0: as many as the cluster holds, each trial with its "
        "workers and a CPU for its Ray Data tasks; more is lowered to that)",
    )
    p.add_argument(
        "--workers-per-trial",
        type=int,
        dest="workers",
        help="Ray Train workers per trial (same as --workers)",
    )
    p.add_argument(
        "--budget", type=int, dest="steps", help="optimizer steps per trial (same as --steps)"
    )
    p.add_argument("--metric", default="", help="metric to optimise (default: eval_<model's>)")
    p.add_argument(
        "--mode",
        choices=["min", "max"],
        default="",
        help="whether lower or higher --metric is better (default: the model's)",
    )
    g = p.add_argument_group("publishing", "the best trial's export, added to a catalogue")
    g.add_argument("--catalogue", help="catalogue (folder or s3:// prefix) to publish it to")
    g.add_argument("--publish-as", metavar="NAME", help="its name there (default: --name)")
    g.add_argument("--replace", action="store_true", help="replace a model of that name")
    g = p.add_argument_group("gatys, dream", "trials optimise one image; --data: the first input")
    g.add_argument("--style", nargs="+", default=[], help="style image(s) (gatys)")
    g.add_argument("--size", type=int, default=256, help="long side of the inputs in pixels")
    g.add_argument(
        "--vgg-weights",
        default="auto",
        help="auto | PATH | s3://... | random (tests and demos only)",
    )
    p.set_defaults(func=tune)


def tune(args) -> int:
    from genart import config, registry
    from genart.tune import driver, settings, space

    searching = settings.Settings(
        samples=args.samples,
        scheduler=args.scheduler,
        search=args.search,
        pbt_sync=args.pbt_sync,
        max_concurrent=args.max_concurrent,
        metric=args.metric,
        mode=args.mode,
    )
    searched = space.load(args.model, args.space)
    if args.catalogue:
        check_publishable(args, registry.get(args.model))
    if registry.get(args.model).trained:
        cfg = config.load(args.model, args.config, overrides(args))
        report = driver.sweep(cfg, searched, searching)
        if args.catalogue and report.best_run is not None:
            publish_best(report, args)
    else:
        raw = config.given(args.model, args.config, overrides(args))
        job = settings.optimisation_job(args.model, raw, args.style, args.size, args.vgg_weights)
        report = driver.sweep_optimisation(job, searched, searching)
    return 0 if report.best is not None else 1


def check_publishable(args, spec) -> None:
    """Refuse, before a sweep starts, a publication that would fail at its end."""
    from genart.catalogue import Catalogue
    from genart.errors import InputError

    if not spec.trained:
        raise InputError(f"{spec.name} trains nothing to publish: leave out --catalogue")
    name = args.publish_as or args.name
    if name:  # else the sweep's generated name, URL-safe and new
        Catalogue(args.catalogue).claim(name, args.replace)


def publish_best(report, args) -> None:
    """Export the sweep's best trial to ``args.catalogue``."""
    from genart.catalogue import Catalogue

    name = args.publish_as or report.name
    Catalogue(args.catalogue).publish(report.best_run, name, args.replace)
    print(f"published trial {report.best['trial']} to {args.catalogue} as {name}")
