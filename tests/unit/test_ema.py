"""The moving average of the exported nets: its arithmetic, what it leaves alone, and that the
Train loop's state, checkpoints and exports carry it."""

import json

import pytest
import torch
from torch import nn

from genart import config, registry
from genart import export as exports
from genart.train import checkpoint
from genart.train.ema import WeightAverage, for_spec, judge, warmed_decay
from genart.train.state import TrainState, Worker


def test_the_decay_warms_up_to_its_ceiling():
    assert warmed_decay(0.999, 0) == pytest.approx(0.5)
    assert warmed_decay(0.999, 98) == pytest.approx(0.99)
    assert warmed_decay(0.999, 100_000) == 0.999


def test_a_ramp_up_grows_the_horizon_with_the_run():
    """Karras et al.'s ramp-up: after t updates the horizon 1 / (1 - decay) is 2 + rampup * t,
    up to the decay's own; a ramp-up of 1 is the plain mean's warm-up."""
    assert warmed_decay(0.995, 600, rampup=0.05) == pytest.approx(1 - 1 / 32)
    assert warmed_decay(0.995, 100_000, rampup=0.05) == 0.995
    for t in (0, 7, 300):
        assert warmed_decay(0.999, t, rampup=1.0) == pytest.approx((1 + t) / (2 + t))


def test_an_average_with_a_short_ramp_up_stays_near_the_newest_weights():
    live = nn.Linear(1, 1, bias=False).requires_grad_(False)
    nn.init.zeros_(live.weight)
    plain = WeightAverage({"G": live}, ("G",), decay=0.999)
    ramped = WeightAverage({"G": live}, ("G",), decay=0.999, rampup=0.05)
    for value in range(1, 201):
        with torch.no_grad():
            live.weight.fill_(float(value))
        plain.update()
        ramped.update()
    assert float(plain.nets["G"].weight) == pytest.approx(sum(range(201)) / 201)  # ~100
    assert 180 < float(ramped.nets["G"].weight) < 200  # the last ~12 updates dominate


@pytest.mark.parametrize("rampup", [0.0, 1.5])
def test_a_ramp_up_outside_zero_to_one_is_refused(rampup):
    with pytest.raises(ValueError, match="ramp-up"):
        WeightAverage({"G": nn.Linear(1, 1)}, ("G",), decay=0.9, rampup=rampup)
    with pytest.raises(config.ConfigError, match="ema_rampup"):
        config.load("dcgan", overrides=[f"dcgan.ema_rampup={rampup}"])


def test_each_family_passes_its_ramp_up_to_its_average():
    nets = {"G": nn.Linear(1, 1)}
    dcgan_params = config.load(
        "dcgan", overrides=["dcgan.ema_decay=0.995", "dcgan.ema_rampup=0.2"]
    ).params
    assert for_spec(registry.trained("dcgan"), nets, config.load("dcgan").params) is None
    assert for_spec(registry.trained("dcgan"), nets, dcgan_params).rampup == 0.2
    cyclegan_params = cyclegan_cfg().params
    spec = registry.trained("cyclegan")
    nets = {name: nn.Linear(1, 1) for name in spec.export}
    assert for_spec(spec, nets, cyclegan_params).rampup == 1.0


def test_until_the_ceiling_the_average_is_the_plain_mean():
    live = nn.Linear(1, 1, bias=False).requires_grad_(False)
    average = WeightAverage({"G": live}, ("G",), decay=0.9)  # ceiling after 9 updates
    seen = [float(live.weight)]  # the average starts as a copy of the weights
    for value in range(1, 9):
        with torch.no_grad():
            live.weight.fill_(float(value))
        average.update()
        seen.append(float(value))
        assert float(average.nets["G"].weight) == pytest.approx(sum(seen) / len(seen))


def test_each_update_moves_the_average_towards_the_live_weights():
    live = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = WeightAverage({"G": live, "D": nn.Linear(1, 1)}, ("G",), decay=0.5)
    assert set(average.nets) == {"G"}  # only the named nets are averaged
    start = average.nets["G"][0].weight.clone()
    with torch.no_grad():
        live[0].weight.add_(1.0)
        live[1].running_mean.fill_(4.0)
        live[1].num_batches_tracked.fill_(7)
    average.update()  # first update: decay min(0.5, 1/2) = 0.5
    assert torch.allclose(average.nets["G"][0].weight, start + 0.5)
    assert torch.allclose(average.nets["G"][1].running_mean, torch.full((2,), 2.0))
    assert int(average.nets["G"][1].num_batches_tracked) == 7  # integers are copied
    assert not any(p.requires_grad for p in average.nets["G"].parameters())
    assert average.serving({"G": live, "D": 1})["G"] is average.nets["G"]


def test_a_decay_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="decay"):
        WeightAverage({"G": nn.Linear(1, 1)}, ("G",), decay=1.0)


def cyclegan_cfg(*overrides):
    return config.load("cyclegan", overrides=[
        "data.size=16", "cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1",
        "cyclegan.d_layers=1", "cyclegan.pool_size=2", "train.steps=3", "run.name=t", *overrides,
    ])  # fmt: skip


def trained_state(cfg, steps: int = 3) -> TrainState:
    """A state after ``steps`` steps of the loop's order: step, average, schedulers."""
    torch.manual_seed(0)
    spec = registry.trained(cfg.model)
    state = TrainState.create(spec, cfg, Worker())
    for step in range(steps):
        batch = {k: torch.rand(2, 3, 16, 16) * 2 - 1 for k in "AB"}
        state.ctx.step = step
        spec.train_step(state.nets, state.opts, batch, cfg.params, state.ctx)
        if state.average is not None:
            state.average.update()
        state.pos.step += 1
    return state


def test_only_a_spec_that_asks_for_an_average_gets_one():
    spec = registry.trained("cyclegan")
    nets = {"G_AB": nn.Linear(1, 1), "G_BA": nn.Linear(1, 1)}
    on, off = cyclegan_cfg("cyclegan.ema_decay=0.9"), cyclegan_cfg("cyclegan.ema_decay=0")
    assert set(for_spec(spec, nets, on.params).nets) == set(spec.export)
    assert for_spec(spec, nets, off.params) is None
    assert TrainState.create(spec, off, Worker()).average is None


def test_checkpoints_keep_the_average_and_exports_serve_it(tmp_path):
    cfg = cyclegan_cfg("cyclegan.ema_decay=0.9")
    state = trained_state(cfg)
    averaged = state.average.nets["G_AB"].state_dict()
    live = state.nets["G_AB"].state_dict()
    assert any(not torch.equal(averaged[k], live[k]) for k in averaged)

    ckpt = tmp_path / "run" / "checkpoint_000003"
    checkpoint.write(ckpt, state.state_dict(), cfg, [])
    restored = TrainState.create(registry.trained("cyclegan"), cfg, Worker())
    saved, _, _ = checkpoint.load(ckpt)
    restored.load(saved)
    assert restored.average.updates == 3
    for key, value in averaged.items():
        assert torch.equal(restored.average.nets["G_AB"].state_dict()[key], value)

    exports.from_checkpoint(str(ckpt), str(tmp_path / "export"))
    for source in (tmp_path / "export", ckpt):  # an export, and a checkpoint read directly
        nets = exports.load(str(source)).nets
        for key, value in averaged.items():
            assert torch.equal(nets["G_AB"].state_dict()[key], value), source


def test_a_state_saved_without_an_average_starts_one_from_its_weights(tmp_path):
    plain_cfg = cyclegan_cfg("cyclegan.ema_decay=0")
    plain = trained_state(plain_cfg)
    ckpt = tmp_path / "checkpoint_000003"
    checkpoint.write(ckpt, plain.state_dict(), plain_cfg, [])
    averaging = TrainState.create(
        registry.trained("cyclegan"), cyclegan_cfg("cyclegan.ema_decay=0.9"), Worker()
    )
    saved, _, _ = checkpoint.load(ckpt)
    averaging.load(saved, own=False)
    assert averaging.average.updates == 0
    for key, value in plain.nets["G_BA"].state_dict().items():
        assert torch.equal(averaging.average.nets["G_BA"].state_dict()[key], value)


# --- which weights serve: the better of the average and the live ones ---------------------------


def constant_average(live_value: float, average_value: float) -> tuple[dict, WeightAverage]:
    """Live nets {"G"} whose one weight is ``live_value`` and an average at ``average_value``."""
    live = nn.Linear(1, 1, bias=False)
    nn.init.constant_(live.weight, live_value)
    average = WeightAverage({"G": live}, ("G",), decay=0.9)
    nn.init.constant_(average.nets["G"].weight, average_value)
    return {"G": live}, average


def weight_score(nets) -> dict[str, float]:
    """A score that is the net's weight itself (so the test picks which side is better)."""
    return {"err": nets["G"].weight.item(), "other": 7.0}


@pytest.mark.parametrize(
    ("live_value", "average_value", "mode", "serves"),
    [
        (1.0, 2.0, "min", "live"),  # a blended average that scores worse: the live weights serve
        (2.0, 1.0, "min", "average"),
        (1.0, 2.0, "max", "average"),
        (1.0, 1.0, "min", "average"),  # a tie keeps the average
        (float("nan"), 5.0, "min", "average"),  # a NaN score loses
        (5.0, float("nan"), "max", "live"),
    ],
)
def test_the_better_scoring_weights_serve(live_value, average_value, mode, serves):
    nets, average = constant_average(live_value, average_value)
    scores, record = judge(average, weight_score, nets, "err", mode)
    assert average.serves == serves
    assert record == {
        "live_err": pytest.approx(live_value, nan_ok=True),
        "average_err": pytest.approx(average_value, nan_ok=True),
        "served": serves,
    }
    chosen = average.serving(nets)["G"]
    assert chosen is (nets["G"] if serves == "live" else average.nets["G"])
    assert scores == weight_score({"G": chosen})


def test_the_average_keeps_averaging_while_the_live_weights_serve():
    nets, average = constant_average(1.0, 3.0)
    judge(average, weight_score, nets, "err", "min")
    assert average.serves == "live"
    average.update()  # still moves towards the live weights, and may serve again later
    assert float(average.nets["G"].weight) == pytest.approx(2.0)
    judge(average, weight_score, nets, "err", "max")
    assert average.serves == "average"


def drown(average: WeightAverage) -> None:
    """Wreck an average: its weights drowned in noise (a worse generator by any score)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for net in average.nets.values():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 5)


def test_the_loop_scores_both_and_a_checkpoint_exports_the_better(tmp_path):
    """The evaluation hands the choice to the state; checkpoints keep it; the export and a
    checkpoint read for serving carry the weights that scored better, its manifest says which."""
    from genart.train.evaluation import Evaluation

    cfg = cyclegan_cfg("cyclegan.ema_decay=0.9", "train.eval_samples=2")
    state = trained_state(cfg)
    spec = registry.trained("cyclegan")
    evaluation = Evaluation(spec, cfg, torch.device("cpu"), enabled=True)
    evaluation.add({k: torch.rand(2, 3, 16, 16) * 2 - 1 for k in "AB"})
    drown(state.average)
    scores = evaluation.scores(state.nets, state.average)
    assert scores["eval_served"] == "live" and state.average.serves == "live"
    assert scores["eval_live_psnr"] > scores["eval_average_psnr"]
    assert scores["eval_psnr"] == scores["eval_live_psnr"]
    assert state.serving["G_AB"] is state.nets["G_AB"]

    ckpt = tmp_path / "run" / "checkpoint_000003"
    checkpoint.write(ckpt, state.state_dict(), cfg, [])
    restored = TrainState.create(spec, cfg, Worker())
    restored.load(checkpoint.load(ckpt)[0])
    assert restored.average.serves == "live"
    exports.from_checkpoint(str(ckpt), str(tmp_path / "export"))
    meta = json.loads((tmp_path / "export" / "export.json").read_text())
    assert meta["weights"] == "live"
    live = state.nets["G_AB"].state_dict()
    for source in (tmp_path / "export", ckpt):
        nets = exports.load(str(source)).nets
        assert all(torch.equal(nets["G_AB"].state_dict()[k], v) for k, v in live.items())


def test_a_checkpoint_saved_before_the_choice_serves_its_average():
    state = {"nets": {"G": {"w": 1}}, "average": {"updates": 3, "nets": {"G": {"w": 2}}}}
    assert exports.serving_weights(state, ("G",)) == {"G": {"w": 2}}
    assert exports.served_weights(state) == "average"
    assert exports.served_weights({"nets": {}, "average": None}) == "live (no average)"


def test_a_family_may_pick_by_another_score_than_its_metric():
    """``spec.pick`` names the deciding score (DCGAN: its judge's Fréchet distance when a judge
    scores the run): here an inverted PSNR, so the drowned average serves."""
    import dataclasses

    from genart.models import dcgan
    from genart.train.evaluation import Evaluation

    cfg = cyclegan_cfg("cyclegan.ema_decay=0.9", "train.eval_samples=2")
    state = trained_state(cfg)
    spec = dataclasses.replace(registry.trained("cyclegan"), pick=lambda p: ("psnr", "min"))
    evaluation = Evaluation(spec, cfg, torch.device("cpu"), enabled=True)
    evaluation.add({k: torch.rand(2, 3, 16, 16) * 2 - 1 for k in "AB"})
    drown(state.average)
    scores = evaluation.scores(state.nets, state.average)
    assert scores["eval_served"] == "average"
    assert scores["eval_average_psnr"] < scores["eval_live_psnr"]

    judged = {"eval_modes": ("modes_frechet", "min"), "eval_digits": ("digits_frechet", "min")}
    for flag, expected in judged.items():
        params = config.load("dcgan", overrides=[f"dcgan.{flag}=true"]).params
        assert dcgan.pick(params) == expected
    assert dcgan.pick(config.load("dcgan").params) == ("kid_discriminator", "min")
