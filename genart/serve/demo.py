"""Tiny demo exports of every served family, so ``genart serve`` answers on a fresh checkout.

The networks are freshly initialised (step 0), not trained: the endpoints work and return
images of the right size and type, but the pictures are noise until real runs are exported
(``genart train ...`` then ``genart export RUN --catalogue CAT --name NAME``). The one exception
is DCGAN: the newest ``genart demo`` run under ``runs/``, if there is one, is exported and served
instead.

The demo folder holds a catalogue (``models/``, what the application serves), the step-0
checkpoints the exports were made from (``checkpoints/``), AdaIN's named style and the Gatys jobs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genart import config, export, registry
from genart.train import checkpoint

# name -> (registered model, config overrides): small enough to build in a second on CPU.
DEMO_MODELS = {
    "dcgan": ("dcgan", ["data.size=32", "data.channels=1", "dcgan.latent_dim=64",
                        "dcgan.g_width=32", "dcgan.d_width=32"]),
    "demo": ("fast_style", []),  # /style/demo
    "pix2pix-demo": ("pix2pix", ["data.size=64", "pix2pix.ngf=16", "pix2pix.ndf=16"]),
    "cyclegan-demo": ("cyclegan", ["data.size=64", "cyclegan.ngf=16", "cyclegan.ndf=16",
                                   "cyclegan.n_blocks=2"]),
    "adain-demo": ("adain", ["adain.vgg_weights=random", "adain.width=16"]),
}  # fmt: skip
DEMO_STYLE = "adain-style.png"  # the named AdaIN style of the demo: a synthetic style image
JOBS_DIR = "jobs"  # the Gatys jobs of the demo application, beside its exports
CATALOGUE, CHECKPOINTS = "models", "checkpoints"  # sub-folders of the demo folder


def export_initialised(
    model: str, overrides: list[str], out: Path, seed: int = 0, checkpoints: Path | None = None
) -> Path:
    """Export freshly initialised networks of ``model``, as ``genart export`` would a run.

    The step-0 checkpoint is kept (``checkpoints/<name>``, default beside the export as
    ``<out>.checkpoint``), so the export's manifest names a folder that exists; give a
    ``checkpoints`` folder when ``out`` is in a catalogue, where it would be a foreign entry.
    """
    cfg = config.load(model, overrides=overrides)
    torch.manual_seed(seed)
    nets = registry.trained(model).build(cfg.params, cfg.data)
    state = {"step": 0, "nets": {name: net.state_dict() for name, net in nets.items()}}
    source = (checkpoints / out.name) if checkpoints else out.with_name(out.name + ".checkpoint")
    checkpoint.write(source, state, cfg, [])
    export.from_checkpoint(str(source), str(out))
    return out


def latest_demo_run(runs: Path) -> Path | None:
    """The newest ``genart demo`` DCGAN run (``runs/dcgan-<timestamp>``) with a checkpoint."""
    for run in sorted(runs.glob("dcgan-*"), reverse=True):
        if checkpoint.latest_complete(str(run)) is not None:
            return run
    return None


def demo_style(directory: Path) -> Path:
    """A synthetic style image (``genart data synth styles``) for AdaIN's named style."""
    from genart.data import synthetic
    from genart.images import array_to_pil

    path = directory / DEMO_STYLE
    if not path.is_file():
        array_to_pil(synthetic.render("styles", 1, size=256)["style"][0]).save(path)
    return path


def vgg_weights() -> str:
    """ImageNet VGG weights when the torch hub cache has them, else a seeded random network."""
    from genart import pretrained

    cached = all(pretrained.hub_cache_path(arch).is_file() for arch in ("vgg16", "vgg19"))
    return "auto" if cached else "random"


def prepare(directory: str | Path, runs: str | Path = "runs") -> dict:
    """Create any missing demo export in the catalogue ``directory/models``; returns the app's
    settings (args), which keep the Gatys jobs in ``directory/jobs``."""
    directory = Path(directory).resolve()
    models = directory / CATALOGUE
    for name, (model, overrides) in DEMO_MODELS.items():
        out = models / name
        if export.is_export(str(out)):
            continue
        trained = latest_demo_run(Path(runs)) if name == "dcgan" else None
        if trained is not None:
            print(f"exporting the DCGAN of {trained} to {out}")
            export.from_checkpoint(str(trained), str(out))
        else:
            print(f"creating an untrained {model} demo export in {out}")
            export_initialised(model, overrides, out, checkpoints=directory / CHECKPOINTS)
    weights = vgg_weights()
    style = demo_style(directory)
    return {
        # Every export in it answers at its family's routes; the DCGAN also at /dcgan/sample,
        # the AdaIN decoder at /adain/stylize.
        "catalogue": {"uri": str(models), "dcgan": "dcgan", "adain": "adain-demo"},
        # Jobs on disk: a restarted job store still knows them (docs/serving.md).
        "gatys": {"vgg_weights": weights, "jobs_dir": str(directory / JOBS_DIR)},
        "dream": {"vgg_weights": weights},
        "adain": {"styles": {"demo": str(style)}},
    }  # fmt: skip
