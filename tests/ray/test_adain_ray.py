"""AdaIN trains through the Ray Train loop on ``genart data synth styles`` output, and its run
exports to a working pipeline."""

import numpy as np
import pytest

from genart import config
from genart import export as exports
from genart.data import synthetic
from genart.pipelines.adain import AdaINPipeline
from genart.train import checkpoint
from genart.train.launch import fit
from genart.vgg import RANDOM_NOTE

pytestmark = pytest.mark.ray


def test_adain_trains_on_content_and_style_folders_and_exports(ray_local, tmp_path):
    # 16 contents, 2 styles, and 2 + 2 unseen ones in test/
    data = synthetic.generate("styles", tmp_path / "data", n=16, size=32)
    cfg = config.load("adain", overrides=[
        f"data.uri={data}", "data.size=32", "data.batch_size=4", "adain.vgg_weights=random",
        "adain.width=8", "train.steps=4", "train.log_every=2", "train.checkpoint_every=4",
        "train.sample_every=4", "train.eval_samples=4", "scaling.workers=1", "run.name=adain",
        f"run.storage_path={tmp_path / 'runs'}"])  # fmt: skip
    result = fit(cfg)
    assert result.error is None, result.error
    assert result.metrics["eval_adain"] > 0 and "style" in result.metrics
    assert result.metrics["eval_split"] == "test"  # scored on the unseen test/ pairs
    run = tmp_path / "runs" / "adain"
    assert (run / "samples" / "step_000004.png").is_file()
    state, _, _ = checkpoint.load(checkpoint.resolve(str(run)))
    assert set(state["nets"]) == {"decoder"}  # the frozen encoder is not checkpointed
    exports.from_checkpoint(str(run), str(tmp_path / "model"))
    pipe = AdaINPipeline.from_export(str(tmp_path / "model"), "cpu")
    assert pipe.describe()["encoder"]["vgg_weights"] == RANDOM_NOTE
    rng = np.random.default_rng(0)
    content, style = (rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in ((18, 26), (32, 32)))
    assert pipe(content, [style], alpha=0.5).shape == (18, 26, 3)
