"""Pix2Pix and CycleGAN end to end on a local Ray: 2-worker DDP training, export, Ray Data
translation of a folder of mixed-size images, and the scored evaluation.

Each fit() costs 10-20 s of fixed Ray overhead: one small run per model carries every check.
"""

import numpy as np
import pytest
from PIL import Image

from genart import config
from genart import export as exports
from genart.cli import main
from genart.data import synthetic
from genart.pipelines import evaluation
from genart.train import checkpoint
from genart.train.launch import fit

pytestmark = pytest.mark.ray

DATA = {"pix2pix": "pairs", "cyclegan": "unpaired"}
TINY = {"pix2pix": ["pix2pix.ngf=4", "pix2pix.ndf=4"],
        "cyclegan": ["cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1",
                     "cyclegan.pool_size=4"]}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("translation")


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_ddp_training_export_translate_and_evaluate(ray_local, root, model):
    # 16 training images / 2 workers / batch 2 = 4 steps per epoch: 6 steps cross an epoch.
    data = synthetic.generate(DATA[model], root / DATA[model], n=16, size=32, seed=0)
    # The dataset roots: trained on train/ (trainA/ + trainB/), scored on the held-out split.
    cfg = config.load(model, overrides=[
        f"data.uri={data}", "data.size=32", "data.batch_size=2", *TINY[model],
        "train.steps=6", "train.log_every=2", "train.checkpoint_every=3", "train.sample_every=3",
        "train.eval_samples=8", "scaling.workers=2", f"run.name={model}",
        f"run.storage_path={root / 'runs'}",
    ])  # fmt: skip
    result = fit(cfg)
    assert result.error is None, result.error
    assert np.isfinite(result.metrics["eval_psnr"])
    assert result.metrics["eval_split"] == ("val" if model == "pix2pix" else "test")
    for key in ("loss_d", "loss_g_gan") if model == "pix2pix" else ("loss_cycle", "loss_d_A"):
        assert np.isfinite(result.metrics[key])
    state, _, _ = checkpoint.load(checkpoint.resolve(str(root / "runs" / model)))
    assert state["step"] == 6
    if model == "cyclegan":  # each worker's image pools are checkpointed (2 x 6 fakes, cap 4)
        assert [w["ctx_state"]["pool_A"].shape[0] for w in state["workers"]] == [4, 4]

    exported = str(root / f"{model}-export")
    exports.from_checkpoint(str(root / "runs" / model), exported)
    inputs = root / f"{model}-inputs"
    inputs.mkdir()
    sizes = [(32, 32), (45, 70), (20, 33)]  # (height, width): non-square and odd sides
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(inputs / f"{i}.png")
    out = root / f"{model}-out"
    argv = ["translate", exported, "--input", str(inputs), "--output", str(out), "--batch-size",
            "2"]  # fmt: skip
    assert main(argv) == 0  # a folder: through the Ray Data runner
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == ["0.png", "1.png", "2.png"]
    for path, (h, w) in zip(written, sizes):
        with Image.open(path) as image:
            assert image.size == (w, h)

    report = evaluation.evaluate_run(exported, data)
    directions = ["AtoB"] if model == "pix2pix" else ["AtoB", "BtoA"]
    assert report["directions"] == directions
    assert all(np.isfinite(report["metrics"][f"{d}_psnr"]) for d in directions)
