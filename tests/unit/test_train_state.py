"""TrainState: a state_dict restores exactly (through a checkpoint file), another run's state
keeps this run's hyper-parameters, and a run starts from the right checkpoint."""

import random

import numpy as np
import pytest
import torch

from genart import config, registry
from genart.train import checkpoint
from genart.train.state import TrainState, Worker, starting_point

STEPS = 4  # cyclegan.lr_decay=0.5: the lr falls over the last 2 steps


def cyclegan_cfg(*overrides):
    return config.load("cyclegan", overrides=[
        "data.size=16", "cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1",
        "cyclegan.d_layers=2", "cyclegan.pool_size=2", f"train.steps={STEPS}", "run.name=t",
        *overrides,
    ])  # fmt: skip


def trained(cfg, steps: int, seed: int = 0) -> TrainState:
    """A CycleGAN state after ``steps`` steps: Adam moments, a decayed lr, filled image pools."""
    torch.manual_seed(seed)
    spec = registry.trained(cfg.model)
    state = TrainState.create(spec, cfg, Worker())
    for _ in range(steps):
        batch = {k: torch.rand(2, 3, 16, 16) * 2 - 1 for k in "AB"}
        state.ctx.step = state.pos.step
        spec.train_step(state.nets, state.opts, batch, cfg.params, state.ctx)
        for sched in state.scheds.values():
            sched.step()
        state.pos.step += 1
        state.pos.batch_in_epoch += 1
    state.fixed = {"A": torch.rand(2, 3, 16, 16)}
    return state


def assert_same(a, b, where="state"):
    """Nested dicts/lists/tuples of tensors and plain values are equal, tensors bit for bit."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3)


def saved(state: TrainState, cfg, folder) -> dict:
    """``state.state_dict()`` as a resume reads it back: written to a checkpoint and loaded."""
    checkpoint.write(folder, state.state_dict(), cfg, [])
    return checkpoint.load(folder)[0]


def test_state_dict_then_load_restores_everything(tmp_path):
    cfg = cyclegan_cfg()
    original = trained(cfg, 3)
    state = saved(original, cfg, tmp_path / "c")
    after = draws()
    assert state["workers"][0]["ctx_state"]["pool_A"].shape[0] == 2  # model state is kept
    assert_same(state["nets"], {k: v.state_dict() for k, v in original.nets.items()})
    torch.manual_seed(1)  # other weights and another RNG position
    random.seed(1)
    restored = TrainState.create(registry.trained("cyclegan"), cfg, Worker())
    restored.load(state)
    assert_same(restored.state_dict(), state)
    assert_same(restored.fixed, original.fixed)
    assert (restored.pos.step, restored.pos.batch_in_epoch) == (3, 3)
    assert_same(draws(), after)  # the RNG streams continue where they were saved


def test_another_runs_state_keeps_this_runs_hyper_parameters(tmp_path):
    other = trained(cyclegan_cfg(), 3)
    state = saved(other, cyclegan_cfg(), tmp_path / "c")
    cfg = cyclegan_cfg("cyclegan.lr=0.001", "cyclegan.beta1=0.9")
    adopted = TrainState.create(registry.trained("cyclegan"), cfg, Worker())
    adopted.load(state, own=False)
    for name, opt in adopted.opts.items():
        theirs = other.opts[name].param_groups[0]
        factor = theirs["lr"] / theirs["initial_lr"]
        assert factor < 1  # the other run's schedule had started to decay
        group = opt.param_groups[0]
        assert group["initial_lr"] == 0.001 and group["betas"] == (0.9, 0.999)
        assert group["lr"] == pytest.approx(0.001 * factor)  # its schedule position, our lr
        assert_same(opt.state_dict()["state"], other.opts[name].state_dict()["state"])
    sched = adopted.scheds["G"]
    assert sched.base_lrs == [0.001]
    sched.step()  # the schedule goes on from this run's base lr
    assert adopted.opts["G"].param_groups[0]["lr"] == pytest.approx(0.001 * sched.lr_lambdas[0](4))
    assert adopted.pos.step == 3

    own = TrainState.create(registry.trained("cyclegan"), cfg, Worker())
    own.load(state)  # this run's own state (a resume): its hyper-parameters too
    assert own.opts["G"].param_groups[0] == {
        **other.opts["G"].param_groups[0],
        "params": own.opts["G"].param_groups[0]["params"],
    }


@pytest.fixture
def no_registered_checkpoint(monkeypatch):
    import ray.train

    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)


def test_a_run_starts_from_its_newest_complete_checkpoint(tmp_path, no_registered_checkpoint):
    cfg = cyclegan_cfg(f"run.storage_path={tmp_path}", "run.init_from=/nowhere")
    assert starting_point(cyclegan_cfg(f"run.storage_path={tmp_path}")) is None
    state = trained(cfg, 2)
    saved(state, cfg, tmp_path / "t" / "checkpoint_000000")
    state.pos.step += 1
    state.pos.history = [{"step": 3}]
    checkpoint.write(tmp_path / "t" / "checkpoint_000001", state.state_dict(), cfg, [{"step": 3}])
    (tmp_path / "t" / "checkpoint_000002").mkdir()  # a checkpoint Ray never finished writing
    start = starting_point(cfg)
    assert (start.state["step"], start.history, start.own) == (3, [{"step": 3}], True)


def test_without_a_checkpoint_of_its_own_a_run_starts_from_init_from(
    tmp_path, no_registered_checkpoint
):
    other = tmp_path / "other"
    cfg = cyclegan_cfg(f"run.storage_path={other}")
    saved(trained(cfg, 2), cfg, other / "t" / "checkpoint_000000")
    start = starting_point(
        cyclegan_cfg(f"run.storage_path={tmp_path}", f"run.init_from={other / 't'}")
    )
    assert (start.state["step"], start.own) == (2, False)
