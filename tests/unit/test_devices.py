"""What the loop decides per device: precision, memory format, CUDA graphs (no GPU needed)."""

import warnings

import pytest
import torch

from genart import config, registry
from genart.train import devices, graphs
from genart.train.loop import Due, InputClock, Window

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_auto_precision_and_layout_follow_the_device():
    assert devices.precision("auto", CPU) == (None, None)
    assert devices.precision("bf16", CPU) == (torch.bfloat16, None)
    assert devices.channels_last("auto", CPU) is False
    assert devices.channels_last("auto", CUDA) is True
    assert devices.channels_last("off", CUDA) is False


def test_cuda_graphs_only_where_a_step_can_be_recorded():
    assert devices.cuda_graphs("auto", CUDA, 1, True, None) is True
    blocked = [(CPU, 1, True, None), (CUDA, 2, True, None), (CUDA, 1, False, None),
               (CUDA, 1, True, object())]  # fmt: skip
    for device, workers, safe, scaler in blocked:
        assert devices.cuda_graphs("auto", device, workers, safe, scaler) is False
        with pytest.raises(ValueError, match="cuda_graphs=on cannot be used"):
            devices.cuda_graphs("on", device, workers, safe, scaler)
    assert devices.cuda_graphs("off", CUDA, 1, True, None) is False
    with pytest.raises(ValueError, match="one worker only; fp16"):
        devices.cuda_graphs("on", CUDA, 4, True, object())


def test_models_declare_whether_their_step_can_be_recorded():
    dcgan = registry.get("dcgan").graph_safe
    assert dcgan(config.load("dcgan", overrides=["dcgan.loss=bce"]).params)
    assert dcgan(config.load("dcgan", overrides=["dcgan.loss=lsgan"]).params)
    assert not dcgan(config.load("dcgan", overrides=["dcgan.loss=wgan"]).params)  # n critic
    assert not dcgan(config.load("dcgan", overrides=["dcgan.loss=wgan-gp"]).params)
    assert registry.get("pix2pix").graph_safe(registry.get("pix2pix").config())
    assert not registry.get("cyclegan").graph_safe(registry.get("cyclegan").config())


def test_on_and_off_survive_yaml_parsing():
    cfg = config.load("dcgan", overrides=["train.cuda_graphs=off", "train.channels_last=on"])
    assert (cfg.train.cuda_graphs, cfg.train.channels_last) == ("off", "on")


def test_capturable_optimizers_keep_the_learning_rate_in_a_tensor_schedulers_update():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / 4)
    graphs.make_capturable({"G": opt})
    group = opt.param_groups[0]
    assert group["capturable"] and isinstance(group["lr"], torch.Tensor)
    lr = group["lr"]
    with warnings.catch_warnings():  # "scheduler stepped before the optimizer": a capturable
        warnings.simplefilter("ignore")  # Adam step needs CUDA, and only the schedule matters
        sched.step()
    assert group["lr"] is lr and float(lr) == pytest.approx(0.075)  # updated in place


def test_window_sums_copy_the_first_value():
    # A replayed CUDA graph overwrites its output tensors in place on every step.
    window, metric = Window(), torch.tensor(1.0)
    window.add({"loss": metric})
    metric.fill_(3.0)
    window.add({"loss": metric})
    assert window.read(images_per_step=1)["loss"] == pytest.approx(2.0)


def test_window_averages_each_metric_over_the_steps_that_reported_it():
    # A WGAN critic reports loss_g only on the steps that update the generator.
    window = Window()
    for step in range(6):
        metrics = {"loss_d": torch.tensor(float(step))}
        if step % 3 == 2:
            metrics["loss_g"] = torch.tensor(10.0 * step, dtype=torch.bfloat16)
        window.add(metrics)
    out = window.read(images_per_step=4)
    assert out["loss_d"] == pytest.approx(2.5)  # mean of 0..5
    assert out["loss_g"] == pytest.approx(35.0)  # mean of 20 and 50
    assert window.steps == 6


def test_window_add_costs_the_same_few_ops_however_many_metrics():
    from torch.profiler import profile

    def data_ops(n_metrics: int) -> int:
        window = Window()
        window.add({f"m{i}": torch.tensor(1.0) for i in range(n_metrics)})
        metrics = {f"m{i}": torch.tensor(float(i)) for i in range(n_metrics)}
        with profile() as prof:
            window.add(metrics)
        # Ops that move data (a kernel launch each on a GPU); views and no-op casts are free.
        moving = {"aten::cat", "aten::add", "aten::add_", "aten::clone", "aten::copy_"}
        return sum(e.name in moving for e in prof.events())

    assert data_ops(2) == data_ops(12) <= 2


def test_input_clock_counts_the_time_spent_waiting_for_batches():
    import time

    def slow():
        for i in range(3):
            time.sleep(0.02)
            yield {"i": i}

    clock = InputClock()
    window = Window(clock)
    assert [b["i"] for b in clock.timed(slow())] == [0, 1, 2]
    assert clock.total >= 0.06
    assert 0.5 < window.read(images_per_step=1)["input_wait_frac"] <= 1.0


def test_ray_train_gets_only_the_reports_with_a_checkpoint_or_scores():
    cfg = config.load(
        "dcgan",
        overrides=["train.log_every=25", "train.checkpoint_every=100", "train.eval_every=50"],
    )
    due = {step: Due.at(step, cfg.train) for step in (10, 25, 50, 75, 100)}
    assert [step for step, d in due.items() if d.log] == [25, 50, 75, 100]
    assert [step for step, d in due.items() if d.report] == [50, 100]
    assert [step for step, d in due.items() if d.checkpoint] == [100]
    assert [step for step, d in due.items() if d.evaluate] == [50, 100]
    # A checkpoint step is also a window, even off the log interval.
    odd = config.load("dcgan", overrides=["train.log_every=30", "train.checkpoint_every=45"])
    assert Due.at(45, odd.train) == Due(log=True, evaluate=False, checkpoint=True)
    assert not Due.at(60, odd.train).report
