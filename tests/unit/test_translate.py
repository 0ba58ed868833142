"""Translation at any size (the pipeline), scored evaluation against ground truth, ONNX, CLI."""

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from genart import config
from genart import export as exports
from genart.cli import main
from genart.cli import translate as cli
from genart.data import synthetic
from genart.images import from_uint8, to_uint8
from genart.models import cyclegan, layers, pix2pix
from genart.pipelines import evaluation
from genart.pipelines.translate import TranslationPipeline
from genart.train import checkpoint

TINY = {"pix2pix": ["pix2pix.ngf=4", "pix2pix.ndf=4"],
        "cyclegan": ["cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1"]}  # fmt: skip


def export_run(tmp_path, model: str, *overrides: str) -> str:
    """A freshly initialised run of ``model`` (32x32) exported as ``genart export`` does."""
    cfg = config.load(model, overrides=["data.size=32", *TINY[model], *overrides])
    torch.manual_seed(0)
    nets = registry_build(cfg)
    state = {"step": 0, "nets": {name: net.state_dict() for name, net in nets.items()}}
    checkpoint.write(tmp_path / "ckpt", state, cfg, [])
    exports.from_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "export"))
    return str(tmp_path / "export")


def registry_build(cfg):
    from genart import registry

    return registry.trained(cfg.model).build(cfg.params, cfg.data)


def run_cli(argv: list[str]) -> int:
    """The ``translate``/``onnx`` verbs through a parser holding just their module."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


class Negate(nn.Module):
    """A stand-in generator with a parameter (translate finds its device through it)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return -self.scale * x


# --- any-size inference -----------------------------------------------------------------------


def test_pad_to_multiple_reflects_and_falls_back_to_replication():
    x = torch.arange(5.0).reshape(1, 1, 1, 5).expand(1, 1, 3, 5)
    padded = layers.pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 8)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]  # mirrored, no zeros
    assert layers.pad_to_multiple(x, 1) is x
    wide = layers.pad_to_multiple(x, 16)  # pad 13 > side 3: replicate the edge
    assert wide.shape == (1, 1, 16, 16)
    assert wide[0, 0, -1, -1] == 4


@pytest.mark.parametrize(
    "G",
    [
        pix2pix.UNetGenerator(3, 3, depth=5, ngf=4, dropout_at_test=False),
        cyclegan.ResnetGenerator(3, 3, ngf=4, n_blocks=1),
    ],  # fmt: skip
    ids=["unet", "resnet"],
)
def test_translate_non_square_image_returns_its_size(G):
    G.train()
    x = torch.rand(3, 3, 37, 53) * 2 - 1
    out = layers.forward_any_size(G, x, batch_size=2)
    assert out.shape == x.shape
    assert G.training  # restored
    torch.testing.assert_close(out[:1], layers.forward_any_size(G, x[:1]))


def pipeline(model: str, **nets) -> TranslationPipeline:
    """A translation pipeline around stand-in generators (no export needed)."""
    return TranslationPipeline(nets, config.load(model), {})


def test_translate_images_of_mixed_sizes():
    G = cyclegan.ResnetGenerator(3, 3, ngf=4, n_blocks=1)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, np.uint8) for shape in
              [(20, 30, 3), (17, 9, 3), (20, 30, 3)]]  # fmt: skip
    outputs = pipeline("cyclegan", G_AB=G, G_BA=G)(images)
    assert [o.shape for o in outputs] == [i.shape for i in images]
    alone = layers.forward_any_size(G, from_uint8(torch.from_numpy(images[1]))[None])
    assert np.abs(outputs[1].astype(int) - to_uint8(alone[0]).astype(int)).max() <= 1


def test_select_generator_by_direction():
    nets = {"G_AB": Negate(), "G_BA": Negate()}
    both = pipeline("cyclegan", **nets)
    assert (both.generator(), both.direction()) == (nets["G_AB"], "AtoB")
    assert (both.generator("BtoA"), both.direction("BtoA")) == (nets["G_BA"], "BtoA")
    p2p = config.load("pix2pix", overrides=["pix2pix.direction=BtoA"])
    one = TranslationPipeline({"G": nets["G_AB"]}, p2p, {})
    assert one.direction() == "BtoA" and one.directions == ("BtoA",)
    with pytest.raises(config.ConfigError, match="trained BtoA"):
        one.generator("AtoB")


# --- evaluation ---------------------------------------------------------------------------------


def _write_pair(path, a: np.ndarray, b: np.ndarray):
    Image.fromarray(np.concatenate([a, b], axis=1)).save(path)


def test_paired_test_set_splits_and_follows_the_direction(tmp_path):
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 255, np.uint8)
    _write_pair(tmp_path / "0.png", a, b)
    ((source, target),) = evaluation.paired_test_set(str(tmp_path), 3, "AtoB")
    assert source.shape == (16, 16, 3)
    assert source.max() == 0 and target.min() == 255
    ((source, _),) = evaluation.paired_test_set(str(tmp_path), 3, "BtoA")
    assert source.min() == 255


def test_truth_test_set_needs_every_truth_file(tmp_path):
    for folder in ("testA", "testA_truth"):
        (tmp_path / folder).mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "testA" / "0.png")
    with pytest.raises(FileNotFoundError, match="ground truth"):
        evaluation.truth_test_set(str(tmp_path / "testA"), str(tmp_path / "testA_truth"), 3)


def test_identity_generator_scores_like_the_identity_baseline():
    class Same(Negate):
        def forward(self, x):
            return x * self.scale

    rng = np.random.default_rng(0)
    sources = [rng.integers(0, 256, (16, 16, 3), np.uint8) for _ in range(3)]
    pairs = [(s, s[:, ::-1].copy()) for s in sources]
    result = evaluation.score(pipeline("pix2pix", G=Same()), "AtoB", pairs)
    assert result["images"] == 3
    assert result["model"] == pytest.approx(result["identity"])
    inverted = [(s, 255 - s) for s in sources]  # what Negate does to images in [-1, 1]
    perfect = evaluation.score(pipeline("pix2pix", G=Negate()), "AtoB", inverted)
    assert perfect["model"]["psnr"] == float("inf") and perfect["model"]["ssim"] == 1.0


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_eval_translation_cli_writes_table_and_json(tmp_path, capsys, model):
    kind = "pairs" if model == "pix2pix" else "unpaired"
    data = synthetic.generate(kind, tmp_path / "data", n=20, size=32, seed=0)
    run = export_run(tmp_path, model)
    out = tmp_path / "eval.json"
    assert main(["eval", "translation", run, "--data", str(data), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    directions = ["AtoB"] if model == "pix2pix" else ["AtoB", "BtoA"]
    assert report["directions"] == directions and report["model"] == model
    for d in directions:
        metrics = report["metrics"]
        assert metrics[f"{d}_images"] == 2
        assert 0 < metrics[f"{d}_identity_psnr"] < 100 and 0 < metrics[f"{d}_psnr"] < 100
        assert -1 <= metrics[f"{d}_ssim"] <= 1
    table = capsys.readouterr().out
    assert "identity PSNR" in table and directions[-1] in table


# --- translate CLI and ONNX ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_translate_cli_single_non_square_file(tmp_path, model):
    run = export_run(tmp_path, model)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), np.uint8)).save(
        tmp_path / "in.jpg"
    )
    argv = ["translate", run, "--input", str(tmp_path / "in.jpg"), "--output", str(tmp_path / "o")]
    assert run_cli(argv) == 0
    with Image.open(tmp_path / "o" / "in.png") as image:
        assert image.size == (70, 45)


def test_translate_cli_rejects_the_untrained_direction(tmp_path):
    run = export_run(tmp_path, "pix2pix")
    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    argv = ["translate", run, "--input", str(tmp_path / "in.png"), "--output", str(tmp_path),
            "--direction", "BtoA"]  # fmt: skip
    with pytest.raises(config.ConfigError, match="trained AtoB"):
        run_cli(argv)


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_onnx_export_matches_torch_at_other_sizes(tmp_path, model, capsys):
    import onnxruntime

    run = export_run(tmp_path, model)
    assert run_cli(["onnx", run, "--out", str(tmp_path / "onnx")]) == 0
    assert "max abs diff" in capsys.readouterr().out
    nets = exports.load(run).nets
    for name, G in nets.items():
        session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / f"{name}.onnx"))
        probe = torch.rand(1, 3, 32, 96) * 2 - 1  # not the export's shape: dynamic sides
        (got,) = session.run(None, {"image": probe.numpy()})
        with layers.without_test_dropout(G), torch.no_grad():
            expected = G(probe).numpy()
        assert np.abs(got - expected).max() <= 1e-4
