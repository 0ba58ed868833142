"""CUDA-graph replay of a whole training step, for steps too small to keep a GPU busy.

A GAN step at small batches launches a few hundred kernels that each run for microseconds, so
the GPU waits on Python and the CUDA driver: such a step takes many times its arithmetic time
(docs/benchmarks.md). Recording the step once as a CUDA graph and replaying it launches all of
it with one call.

What a captured step may do is what CUDA graphs allow: fixed shapes, no host synchronisation
(``.item()``, printing tensors), no host-side random decisions (CycleGAN's image pool draws in
Python, so its spec says ``graph_safe=False``), optimizers with ``capturable`` state. Device
random numbers (noise, dropout) are fine: replays draw fresh ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from genart.train import devices

Step = Callable[[dict[str, Any]], dict[str, torch.Tensor]]


def step_runner(
    spec, nets, opts, params, ctx, device: torch.device, workers: int, dtype, cuda_graphs: str
) -> Step:
    """batch -> metrics: ``spec.train_step`` under the run's precision (autocast ``dtype``),
    eager or as a replayed CUDA graph as the ``cuda_graphs`` setting (auto|on|off) decides.

    The training loop and the step benchmarks both run steps through this, so a benchmark
    times what the loop runs.
    """
    safe = spec.graph_safe(params)
    use_graphs = devices.cuda_graphs(cuda_graphs, device, workers, safe, ctx.scaler)

    def step(batch: dict) -> dict:
        with devices.autocast(dtype, device, graphs=use_graphs):
            return spec.train_step(nets, opts, batch, params, ctx)

    if not use_graphs:
        return step
    make_capturable(opts)
    return CapturedStep(step)


def make_capturable(optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Keep each optimizer's step counters and learning rate on the GPU, as capture requires.

    Call after restoring optimizer state and before the first step. The learning rate becomes
    a device tensor, which LR schedulers update in place, so replays see the schedule (a
    Python float would be recorded as a constant).
    """
    for opt in optimizers.values():
        for group in opt.param_groups:
            if "capturable" in group:
                group["capturable"] = True
            if not isinstance(group["lr"], torch.Tensor):
                device = group["params"][0].device
                group["lr"] = torch.tensor(float(group["lr"]), device=device)


class CapturedStep:
    """Run ``step`` eagerly ``warmup`` times, then record it once and replay the recording.

    ``step(batch)`` must read its inputs only from ``batch``'s tensors: replays copy each new
    batch into the tensors the recording read. Outputs are the recording's tensors, overwritten
    by every replay, so callers copy what they keep.
    """

    def __init__(self, step: Step, warmup: int = 3):
        self.step, self.warmup = step, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        # Warm-up and capture run on a side stream, as torch.cuda.graph requires.
        self.stream = torch.cuda.Stream()

    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.graph is not None:
            for key, tensor in self.inputs.items():
                tensor.copy_(batch[key], non_blocking=True)
            self.graph.replay()
            return self.outputs
        if self.calls <= self.warmup:
            return self._on_side_stream(lambda: self.step(batch))
        return self._capture(batch)

    def _on_side_stream(self, fn):
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out = fn()
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def _capture(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.inputs = {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        static = {**batch, **self.inputs}
        self.graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        # thread_local: other threads (a DataLoader's or Ray Data's pin-memory thread) may
        # call CUDA while this one records; the default mode would abort the capture.
        with torch.cuda.graph(self.graph, stream=self.stream, capture_error_mode="thread_local"):
            self.outputs = self.step(static)
        # Recording ran nothing: replay once to take this batch's step.
        self.graph.replay()
        return self.outputs
