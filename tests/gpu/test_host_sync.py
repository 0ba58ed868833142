"""A training step's host path never waits for the GPU (GPU machines only).

A replayed DCGAN step takes ~2 ms on an H100. One host synchronisation per step stops the
host from queuing the next step while the GPU runs this one, so all of the loop's host work
per step (fetching the batch, the copy, the metric sums) adds to the step time.
CUDA's sync debug mode turns every synchronising call into an error, so this checks the whole
per-step path of the Ray Train loop: batch to the device, flip, step, metric window, LR
schedule.
"""

import pytest
import torch

from genart import config, registry
from genart.registry import StepContext
from genart.train import graphs
from genart.train.loop import Window, to_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BATCH, SIZE, WARMUP, STEPS = 4, 64, 4, 6
CASES = {  # model: (overrides, image columns of a batch)
    "dcgan": (["dcgan.g_width=16", "dcgan.d_width=16"], ("image",)),
    "pix2pix": (["pix2pix.ngf=8", "pix2pix.ndf=8"], ("A", "B")),
}


@pytest.fixture
def sync_errors():
    """Within the test body, any host synchronisation with the GPU raises."""
    yield lambda: torch.cuda.set_sync_debug_mode("error")
    torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("cuda_graphs", ["off", "on"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("model", sorted(CASES))
def test_train_steps_do_not_synchronise(model, cuda_graphs, channels_last, sync_errors):
    overrides, columns = CASES[model]
    cfg = config.load(model, overrides=[*overrides, f"data.size={SIZE}", "train.precision=bf16",
                                        f"train.cuda_graphs={cuda_graphs}"])  # fmt: skip
    spec, device = registry.get(model), torch.device("cuda")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    nets = {k: v.to(device, memory_format=fmt) for k, v in spec.build(cfg.params, cfg.data).items()}
    opts = spec.optimizers(nets, cfg.params)
    scheds = spec.schedulers(opts, cfg.params, WARMUP + STEPS) if spec.schedulers else {}
    ctx = StepContext(device_type="cuda")
    step = graphs.step_runner(
        spec, nets, opts, cfg.params, ctx, device, 1, torch.bfloat16, cuda_graphs
    )
    # Ray Data hands the loop float batches in [-1, 1], in pinned memory on a GPU worker.
    batches = [
        {c: (torch.rand(BATCH, 3, SIZE, SIZE) * 2 - 1).pin_memory() for c in columns}
        for _ in range(WARMUP + STEPS)
    ]
    window = Window()
    for i, batch in enumerate(batches):
        if i == WARMUP:  # warm-up: cuDNN autotuning and the graph capture may synchronise
            torch.cuda.synchronize()
            sync_errors()
        ctx.step = i
        window.add(step(to_device(batch, device, channels_last, flip=True)))
        for sched in scheds.values():
            sched.step()
    torch.cuda.set_sync_debug_mode("default")
    metrics = window.read(BATCH)  # the one sync per reporting window
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
