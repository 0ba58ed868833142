"""The Ray Train loop end to end on a local Ray: outputs, exact resume, failures, checkpoints.

Each fit() costs 10-20 s of fixed Ray overhead, so the checks share a few small runs.
"""

import json
from pathlib import Path

import pytest
import torch

from genart import config
from genart.data import synthetic
from genart.train import checkpoint
from genart.train.launch import fit

pytestmark = pytest.mark.ray

SMOKE = Path(__file__).resolve().parents[2] / "jobs" / "dcgan-smoke.yaml"  # tiny DCGAN


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    # 96 images / 2 workers / batch 8 = 6 batches per epoch: 8 steps cross an epoch boundary.
    return synthetic.generate("digits", tmp_path_factory.mktemp("data") / "digits", n=96, size=16)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def run(digits, storage, name, steps, *extra):
    overrides = [f"data.uri={digits}", f"train.steps={steps}", f"run.name={name}",
                 f"run.storage_path={storage}", *extra]  # fmt: skip
    cfg = config.load("dcgan", SMOKE, overrides)
    result = fit(cfg)
    assert result.error is None, result.error
    return result


def final_nets(path):
    """Step, live weights and weight averages (dcgan.ema_decay) of a run's newest checkpoint."""
    state, _, _ = checkpoint.load(checkpoint.resolve(str(path)))
    averages = {f"average {k}": v for k, v in state["average"]["nets"].items()}
    return state["step"], state["nets"] | averages


def logged_steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]


def test_outputs_and_exact_resume(ray_local, digits, storage):
    run(digits, storage, "straight", 8)
    first = run(digits, storage, "split", 4)
    out = storage / "split"
    for name in ("config.yaml", "metrics.jsonl", "metrics.json", "loss_curve.png"):
        assert (out / name).is_file(), name
    assert (out / "samples" / "step_000004.png").is_file()
    assert list((out / "tb").iterdir())
    assert "eval_swd" in first.metrics and first.metrics["eval_swd"] > 0
    assert first.metrics["eval_split"] == "train"  # images/ only: scored on training rows
    # With a weight average both sides are scored by the pick's score (DCGAN: the KID in its
    # discriminator's features); the served one's score is the eval_ score.
    served = first.metrics["eval_served"]
    picked = first.metrics["eval_kid_discriminator"]
    assert picked == first.metrics[f"eval_{served}_kid_discriminator"]
    assert first.return_value["files"]["metrics"] == str(out / "metrics.json")

    resumed = run(digits, storage, "split", 8, "run.resume=true")
    assert resumed.return_value["resumed_from"] == 4
    step_a, nets_a = final_nets(storage / "straight")
    step_b, nets_b = final_nets(out)
    assert step_a == step_b == 8
    assert "average G" in nets_a  # the export's weights resume exactly too
    for net in nets_a:
        for key, value in nets_a[net].items():
            assert torch.equal(value, nets_b[net][key]), f"{net}.{key} differs after resume"
    assert logged_steps(out) == [2, 4, 6, 8]


def test_existing_run_needs_resume(ray_local, digits, storage):
    with pytest.raises(config.ConfigError, match="--resume"):
        run(digits, storage, "straight", 8)


def test_resuming_a_finished_run_keeps_its_results(ray_local, digits, storage):
    out = storage / "straight"
    before = json.loads((out / "metrics.json").read_text())
    checkpoints = sorted(p.name for p in out.glob("checkpoint_*"))
    result = run(digits, storage, "straight", 8, "run.resume=true")
    assert result.return_value["resumed_from"] == 8
    after = json.loads((out / "metrics.json").read_text())
    assert after.pop("eval_split") == before.pop("eval_split") == "train"  # no held-out split
    assert after.pop("eval_served") == before.pop("eval_served")  # which weights, kept too
    # The final scores are computed again: KID is a small difference of large kernel sums, so
    # float rounding in the features moves it by ~1e-7 absolute.
    assert "eval_swd" in after and after == pytest.approx(before, rel=1e-5, abs=1e-6)
    assert sorted(p.name for p in out.glob("checkpoint_*")) == checkpoints  # nothing rewritten
    assert logged_steps(out) == [2, 4, 6, 8]


def test_worker_failure_restarts_from_last_checkpoint(ray_local, digits, storage):
    result = run(digits, storage, "crash", 8, "train.fail_at_step=6", "run.max_failures=1")
    assert result.return_value["resumed_from"] == 4
    assert logged_steps(storage / "crash") == [2, 4, 6, 8]  # none lost, none repeated
    # The automatic restart is exact too: the same weights as the run that never failed.
    _, straight = final_nets(storage / "straight")
    _, crashed = final_nets(storage / "crash")
    assert all(torch.equal(v, crashed["G"][k]) for k, v in straight["G"].items())


def test_partial_checkpoint_is_never_restored(ray_local, digits, storage):
    newest = checkpoint.latest_complete(str(storage / "split"))
    assert checkpoint.verify(newest)["step"] == 8
    state = newest / checkpoint.STATE  # a crash half-way through writing the step-8 checkpoint
    state.write_bytes(state.read_bytes()[:100])
    result = run(digits, storage, "split", 10, "run.resume=true")
    assert result.return_value["resumed_from"] == 4
    assert logged_steps(storage / "split") == [2, 4, 6, 8, 10]
