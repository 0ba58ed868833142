"""Style transfer on a local Ray: Gatys pairs as tasks, fast style over Ray Data, and training."""

import json

import numpy as np
import pytest
import torch
from exports import TINY_FAST_STYLE, make_export
from PIL import Image

from genart import config
from genart import export as exports
from genart.cli import main
from genart.data import synthetic
from genart.images import read_tensor, to_uint8
from genart.models import fast_style
from genart.models.layers import forward_any_size
from genart.train import checkpoint
from genart.train.launch import fit
from genart.vgg import RANDOM_NOTE

pytestmark = pytest.mark.ray


def write_images(folder, shapes, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index, shape in enumerate(shapes):
        pixels = (rng.random((*shape, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def test_gatys_batch_runs_every_pair_and_draws_a_contact_sheet(ray_local, tmp_path):
    contents = write_images(tmp_path / "contents", [(24, 32), (32, 24)], seed=0)
    # 2 x 1 pairs: each task pays for a worker importing torch, so keep them few.
    styles = write_images(tmp_path / "styles", [(20, 40)], seed=1)
    out = tmp_path / "out"
    argv = ["stylize", "gatys-batch", "--contents", str(contents), "--styles", str(styles),
            "--out", str(out), "--size", "32", "--iterations", "3", "--vgg-weights", "random",
            "--content-layers", "relu2_1", "--style-layers", "relu1_1", "relu2_1"]  # fmt: skip
    assert main(argv) == 0
    pairs = ["img0__img0", "img1__img0"]
    for name in pairs:
        info = json.loads((out / f"{name}.json").read_text())
        assert info["vgg_weights"] == RANDOM_NOTE and info["config"]["iterations"] == 3
        assert Image.open(out / f"{name}.png").size in {(32, 24), (24, 32)}
    # Content rows x style columns plus a header row and column, in 160 px cells.
    assert Image.open(out / "contact_sheet.png").size == (2 * 160, 3 * 160)


def test_fast_stylizes_a_folder_through_ray_data(ray_local, tmp_path):
    model = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    nets = exports.load(model).nets
    inputs = write_images(tmp_path / "in", [(20, 30), (20, 30), (33, 17)], seed=2)
    out = tmp_path / "out"
    argv = ["stylize", "fast", "--model", model, "--input", str(inputs),
            "--output", str(out), "--batch-size", "2"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png", "img2.png"]
    got = np.asarray(Image.open(out / "img2.png")).astype(int)
    assert got.shape == (33, 17, 3)
    image = read_tensor(inputs / "img2.png")[None]
    expected = to_uint8(forward_any_size(nets["G"], image)[0]).astype(int)
    assert np.abs(got - expected).max() <= 1


def test_fast_style_trains_on_two_ray_workers_and_exports(ray_local, tmp_path):
    data = synthetic.generate("styles", tmp_path / "data", n=16, size=32)
    cfg = config.load("fast_style", overrides=[
        f"data.uri={data / 'content'}", "data.size=32", "data.batch_size=4",
        f"fast_style.style_image={data / 'style' / '00000.png'}", "fast_style.style_size=32",
        "fast_style.vgg_weights=random", "fast_style.width=8", "fast_style.residual_blocks=1",
        "train.steps=4", "train.log_every=2", "train.checkpoint_every=4", "train.sample_every=4",
        "train.eval_samples=8", "scaling.workers=2", "run.name=fast",
        f"run.storage_path={tmp_path / 'runs'}"])  # fmt: skip
    result = fit(cfg)
    assert result.error is None, result.error
    assert result.metrics["eval_perceptual"] > 0 and "style" in result.metrics
    run = tmp_path / "runs" / "fast"
    assert (run / "samples" / "step_000004.png").is_file()
    state, _, _ = checkpoint.load(checkpoint.resolve(str(run)))
    assert set(state["nets"]) == {"G"}  # the frozen VGG is neither trained nor checkpointed
    exports.from_checkpoint(str(run), str(tmp_path / "model"))
    exported = exports.load(str(tmp_path / "model"))
    nets, loaded = exported.nets, exported.cfg
    assert isinstance(nets["G"], fast_style.TransformerNet) and loaded.params.width == 8
    assert forward_any_size(nets["G"], torch.zeros(1, 3, 18, 26)).shape == (1, 3, 18, 26)
