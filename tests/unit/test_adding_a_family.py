"""A family added as docs/adding-a-family.md says: a spec registered here, inside the test, is
trained by the engine's train state for a few steps, checkpointed, exported into a catalogue,
listed there, and loaded by its own pipeline; the CLI verbs it names take it. No Ray."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from genart import config, pipelines, registry
from genart.catalogue import Catalogue
from genart.cli import main
from genart.pipelines.translate import TranslationPipeline
from genart.serve import deployments
from genart.train import checkpoint
from genart.train.state import TrainState, Worker


@dataclass
class ToyConfig:
    """The toy family's hyper-parameters (the YAML section ``toy``)."""

    width: int = 4
    lr: float = 0.01


def build(p: ToyConfig, data) -> dict[str, nn.Module]:
    """A one-layer generator and a critic the export leaves out."""
    return {**build_exported(p, data), "D": nn.Conv2d(data.channels, 1, 3, padding=1)}


def build_exported(p: ToyConfig, data) -> dict[str, nn.Module]:
    return {"G": nn.Sequential(nn.Conv2d(data.channels, data.channels, 3, padding=1), nn.Tanh())}


def optimizers(nets, p: ToyConfig) -> dict[str, torch.optim.Optimizer]:
    return {name: torch.optim.Adam(net.parameters(), p.lr) for name, net in nets.items()}


def train_step(nets, opts, batch, p: ToyConfig, ctx) -> dict[str, torch.Tensor]:
    """G learns to copy its input (L1); pure, as every family's step."""
    loss = (nets["G"](batch["A"]) - batch["A"]).abs().mean()
    ctx.update(opts["G"], loss)
    return {"loss": loss.detach()}


class ToyPipeline(TranslationPipeline):
    """The toy family's inference: a translation pipeline over its one generator ``G`` (one
    direction), which ``genart translate`` and the ``/translate`` route call."""


TOY = registry.TrainedSpec(
    name="toy",
    config=ToyConfig,
    pipeline=f"{__name__}:ToyPipeline",
    serve=registry.IMAGE,
    verbs=("translate",),
    build=build,
    build_exported=build_exported,
    optimizers=optimizers,
    train_step=train_step,
    dataset=lambda cfg: pytest.fail("trained here on fixed batches, not streamed"),
    metric="l1",
    mode="min",
)


@pytest.fixture
def toy(monkeypatch):
    """The toy family registered for one test (the registry as it was afterwards)."""
    registry.names()  # the built-in families first, so the restore keeps them
    monkeypatch.setitem(registry._REGISTRY, "toy", TOY)
    return TOY


def trained_run(folder, steps: int = 3) -> config.Config:
    """The toy family trained for ``steps`` on a fixed batch by the engine's train state, its
    checkpoint written where Ray Train keeps a run's (``folder/checkpoint_*``)."""
    cfg = config.load("toy", overrides=["data.size=8", "data.channels=3", "toy.width=2"])
    torch.manual_seed(0)
    state = TrainState.create(registry.trained("toy"), cfg, Worker())
    batch = {"A": torch.rand(2, 3, 8, 8) * 2 - 1}
    history = []
    for step in range(1, steps + 1):
        metrics = TOY.train_step(state.nets, state.opts, batch, cfg.params, state.ctx)
        state.pos.step = step
        history.append({"step": step, "loss": float(metrics["loss"])})
    history.append({"step": steps, "eval_l1": history[-1]["loss"], "eval_split": "training"})
    checkpoint.write(folder / f"checkpoint_{steps:06d}", state.state_dict(), cfg, history)
    return cfg


def test_a_family_registered_here_trains_exports_lists_and_serves(toy, tmp_path, capsys):
    trained_run(tmp_path / "run")
    cat = str(tmp_path / "cat")
    assert main(["export", str(tmp_path / "run"), "--catalogue", cat, "--name", "copier"]) == 0
    assert main(["models", "list", cat]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("copier") and " toy " in row and "l1 " in row

    entry = Catalogue(cat).entry("copier")
    assert entry.manifest["nets"] == ["G"] and entry.manifest["source"]["step"] == 3
    pipe = pipelines.load(entry.uri, device="cpu")
    assert type(pipe) is ToyPipeline and list(pipe.nets) == ["G"]  # no critic built
    image = np.random.default_rng(0).integers(0, 256, (9, 13, 3), np.uint8)
    assert pipe([image])[0].shape == (9, 13, 3)

    # The verbs it names take it; the others refuse it, naming what they take.
    assert "toy" in registry.families(verb="translate") and ToyPipeline.families() == ("toy",)
    out = tmp_path / "out"
    image_file = tmp_path / "in.png"
    from genart.images import encode_png

    image_file.write_bytes(encode_png(image))
    assert main(["translate", entry.uri, "--input", str(image_file), "--output", str(out)]) == 0
    assert (out / "in.png").is_file()
    assert main(["sample", entry.uri, "--out", str(tmp_path / "grid.png")]) == 2
    assert "holds a 'toy' model; this takes dcgan" in capsys.readouterr().err

    # Served: the deployment of its kind builds it from the catalogue by name, and the route of
    # its verb takes it, others refuse it (tests/ray/test_serve.py serves over real HTTP).
    image_models = deployments.ImageModels.func_or_class({"uri": cat})
    served = image_models._build("copier")
    assert type(served) is ToyPipeline and served([image])[0].shape == (9, 13, 3)
    assert deployments.check_route(served, "copier", "translate", "/translate") is served
    with pytest.raises(deployments.v.RequestError, match="toy model; /style serves fast_style"):
        deployments.check_route(served, "copier", "stylize fast", "/style")
