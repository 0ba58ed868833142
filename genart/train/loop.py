"""The one Ray Train loop every model trains through.

It owns everything a ``train_step`` must not know about: devices, DDP, mixed precision, the
dataset shard and its position, RNG, reporting, progress lines, sample grids, TensorBoard and
checkpoints. Models plug in through :class:`genart.registry.TrainedSpec`; what a worker trains
and restores is its :class:`~genart.train.state.TrainState`, what it scores on is in
:mod:`genart.train.evaluation`.

Exact resume: the data order is a pure function of (seed, epoch) — Ray Data runs with
``preserve_order`` so every worker gets the same rows each epoch — and a checkpoint stores the
epoch and the number of batches consumed in it, every worker's RNG states and model state. A
resumed run skips the consumed batches and continues bit-identically on CPU.
"""

from __future__ import annotations

import itertools
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import ray
import torch

from genart import registry
from genart.config import Config, TrainConfig
from genart.data import pipelines
from genart.data.transforms import random_flip
from genart.train import checkpoint, devices, graphs, outputs
from genart.train.evaluation import Evaluation
from genart.train.rng import seed_everything, side_effect_free
from genart.train.state import Position, TrainState, Worker

IMAGE_COLUMNS = ("image", "A", "B", "content", "style")
SAMPLE_GRID = 64  # inputs fixed for the sample grids, at most (an 8 x 8 grid)


@dataclass(frozen=True)
class Due:
    """What the loop does after a step: record a window (progress line, ``metrics.jsonl``,
    TensorBoard), score quality, and report to Ray Train (with a checkpoint if one is due).

    Ray Train gets only the reports with a checkpoint or scores (what Tune and ``Result`` use).
    A report is a barrier that also waits until the Train controller has taken the previous
    one, and the controller polls every 2 s (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``): reporting
    every window of a fast model stalled the workers for most of each window.
    """

    log: bool
    evaluate: bool
    checkpoint: bool

    @property
    def report(self) -> bool:
        return self.checkpoint or self.evaluate

    @classmethod
    def at(cls, step: int, train: TrainConfig) -> Due:
        """What is due after optimizer step ``step`` under ``train``."""
        checkpoint = step % train.checkpoint_every == 0
        log = checkpoint or step % train.log_every == 0
        evaluate = log and bool(train.eval_every) and step % train.eval_every == 0
        return cls(log, evaluate, checkpoint)


class InputClock:
    """Total seconds the loop has waited for input batches (a starved GPU shows up here)."""

    def __init__(self):
        self.total = 0.0

    def timed(self, batches: Iterable[dict]) -> Iterator[dict]:
        """``batches``, adding the time each one took to arrive to ``total``."""
        iterator = iter(batches)
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            self.total += time.perf_counter() - start
            if batch is None:
                return
            yield batch


class Window:
    """Running sums of a reporting window's metrics, read out with one device sync per set of
    metric names (usually one set).

    A step's metrics are stacked into one tensor and added to the sums of that set of names:
    two device operations per step however many metrics a model reports (on a GPU whose step
    is one replayed CUDA graph, a launch per metric would be a visible share of the step).
    Stacking copies, so a replayed graph that overwrites its output tensors leaves the sums be.
    """

    def __init__(self, clock: InputClock | None = None):
        self.sums: dict[tuple[str, ...], torch.Tensor] = {}
        self.counts: dict[tuple[str, ...], int] = {}
        self.steps = 0
        self.start = time.perf_counter()
        self.clock = clock or InputClock()
        self.waited_before = self.clock.total

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        self.steps += 1
        if not metrics:
            return
        names = tuple(metrics)
        stacked = torch.stack([value.detach() for value in metrics.values()]).float()
        if names in self.sums:
            self.sums[names].add_(stacked)
        else:
            self.sums[names] = stacked
        self.counts[names] = self.counts.get(names, 0) + 1

    def read(self, images_per_step: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        # Steps may report different sets of names (a generator update every n-th step).
        for names, sums in self.sums.items():
            for name, total in zip(names, sums.tolist()):
                totals[name] = totals.get(name, 0.0) + total
                counts[name] = counts.get(name, 0) + self.counts[names]
        out = {name: total / counts[name] for name, total in totals.items()}
        out["images_per_s"] = self.steps * images_per_step / elapsed
        out["step_time_s"] = elapsed / max(self.steps, 1)
        out["input_wait_frac"] = (self.clock.total - self.waited_before) / elapsed
        return out


# --- data ---------------------------------------------------------------------------------


class DataTimeoutError(RuntimeError):
    """An epoch's first batch did not arrive in time (``data.first_batch_timeout_s``)."""


def first_within(batches: Iterable, seconds: float) -> Iterator:
    """``batches``, or DataTimeoutError if the first one takes longer than ``seconds``
    (0: no limit).

    Only the first is timed: each epoch is a new Ray Data execution, and one whose decode
    tasks find no free CPU never delivers, so the wait for its first batch would never end.
    (The wait also covers the other workers reaching the epoch: Ray Data starts it for all of
    them at once.) It is taken in a helper thread (a blocked ``next`` cannot be interrupted);
    the rest come from this one, at no cost per step.
    """
    iterator = iter(batches)
    if seconds <= 0:
        yield from iterator
        return
    arrived: queue.SimpleQueue = queue.SimpleQueue()
    # A daemon: when the run fails, the thread still blocked in Ray Data ends with the process.
    threading.Thread(target=_take_first, args=(iterator, arrived), daemon=True).start()
    try:
        first, error = arrived.get(timeout=seconds)
    except queue.Empty:
        raise DataTimeoutError(
            f"no training batch within {seconds:g} s of the epoch's start: most likely Ray "
            "Data found no free CPU for its decode tasks (workers or other jobs hold them all); "
            "free CPUs, run fewer trials or workers at once, or raise data.first_batch_timeout_s"
        ) from None
    if error is not None:
        raise error
    if first is _END:
        return
    yield first
    yield from iterator


_END = object()  # the iterator was empty


def _take_first(iterator: Iterator, arrived: queue.SimpleQueue) -> None:
    """Put ``(first item or _END, None)``, or ``(None, error)``, on ``arrived``."""
    try:
        arrived.put((next(iterator, _END), None))
    except BaseException as error:  # raised again by the consumer
        arrived.put((None, error))


def epoch_batches(shard, cfg: Config, epoch: int, rank: int, skip: int, gpu: bool = False):
    """The batches of one epoch, in an order fixed by (seed, epoch, rank); skips ``skip``.

    For a GPU, batches come in pinned memory (the copy to the device runs asynchronously) and
    a few more are prefetched: a replayed step takes milliseconds. A first batch that does not
    come within ``data.first_batch_timeout_s`` fails the run (:func:`first_within`).
    """
    batches = shard.iter_torch_batches(
        batch_size=cfg.data.batch_size,
        prefetch_batches=4 if gpu else 1,
        pin_memory=gpu,
        drop_last=True,  # equal batch counts on every rank: DDP steps in lockstep
        local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
        local_shuffle_seed=(cfg.train.seed * 1_000_003 + epoch * 1009 + rank)
        if cfg.data.shuffle_buffer
        else None,
        device="cpu",
    )
    # Timed before the skip: skipping the batches a resumed run consumed is honest work.
    return itertools.islice(first_within(batches, cfg.data.first_batch_timeout_s), skip, None)


def to_device(batch: dict, device: torch.device, channels_last: bool, flip: bool) -> dict:
    """Image columns to ``device`` (NHWC layout if asked), flipped with one shared random mask."""
    columns = [c for c in IMAGE_COLUMNS if c in batch]
    # Copy first (asynchronous from pinned memory), then flip on the device: a flip on the host
    # costs a pass over the batch and leaves an unpinned tensor whose copy blocks.
    tensors = [batch[c].to(device, non_blocking=True).float() for c in columns]
    if flip:
        # The mask comes from the global CPU generator: checkpointed, so resume is exact.
        tensors = random_flip(*tensors, generator=torch.default_generator)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    moved = {c: t.contiguous(memory_format=fmt) for c, t in zip(columns, tensors)}
    return {**batch, **moved}


# --- the loop -------------------------------------------------------------------------------


def train_loop_per_worker(config: dict) -> dict:
    """Ray Train entry point: one worker's share of a training run (``config`` = Config dict)."""
    cfg = Config.from_dict(config)
    spec = registry.trained(cfg.model)
    state = TrainState.create(spec, cfg, _join(cfg.train.seed))
    resumed = state.resume(cfg)
    pos = state.pos
    out = outputs.RunOutputs(
        cfg, state.worker.rank == 0, pos.history, pos.step if resumed else None
    )
    if resumed:
        out.log(f"resumed from {pos}")
        if pos.step >= cfg.train.steps:
            return _finished(out, pos)

    attempt = Attempt(spec, cfg, state, out)
    while pos.step < cfg.train.steps:
        for batch in attempt.epoch():
            if pos.step == cfg.train.fail_at_step and not resumed:
                raise RuntimeError(f"fail_at_step={pos.step}: injected failure (testing aid)")
            attempt.step(batch)
            if pos.step >= cfg.train.steps:
                break
            attempt.after(Due.at(pos.step, cfg.train))
        else:
            attempt.end_epoch()
    return attempt.finish()


def _join(seed: int) -> Worker:
    """This process's place in the run; seeds its RNG streams (one stream per rank) and
    configures its device."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    worker = Worker(
        context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device()
    )
    seed_everything(seed * 7919 + worker.rank)
    devices.configure(worker.device)
    return worker


def _finished(out: outputs.RunOutputs, pos: Position) -> dict:
    """The result of a finished run resumed (a job resubmitted after it ended).

    Its checkpoint holds the final state and its history the final scores: scoring again
    without a batch seen would overwrite them with nothing.
    """
    final = {k: v for k, v in pos.history[-1].items() if k != "step"} if pos.history else {}
    return out.finish(final) if out.enabled else {}


class Attempt:
    """One worker's attempt at a run, acting on its :class:`TrainState`: the nets as trained
    (DDP-wrapped), the step runner, the data shard, the reporting window, the evaluation and
    the outputs."""

    def __init__(
        self, spec: registry.TrainedSpec, cfg: Config, state: TrainState, out: outputs.RunOutputs
    ):
        import ray.train

        self.spec, self.cfg, self.state, self.out = spec, cfg, state, out
        worker = state.worker
        self.nets = _for_ddp(state.nets, worker.world)
        self.run_step = graphs.step_runner(
            spec, self.nets, state.opts, cfg.params, state.ctx, worker.device, worker.world,
            state.dtype, cfg.train.cuda_graphs,
        )  # fmt: skip
        self.shard = ray.train.get_dataset_shard("train")
        self.nhwc = devices.channels_last(cfg.train.channels_last, worker.device)
        self.images_per_step = cfg.data.batch_size * worker.world
        self.clock = InputClock()
        self.window = Window(self.clock)
        self.evaluation = Evaluation(spec, cfg, worker.device, enabled=worker.rank == 0)

    def epoch(self) -> Iterator[registry.Batch]:
        """The rest of this epoch's batches, on the device; the first ones also fix the sample
        inputs and fill the evaluation's reference rows."""
        pos, worker = self.state.pos, self.state.worker
        gpu = worker.device.type == "cuda"
        batches = epoch_batches(
            self.shard, self.cfg, pos.epoch, worker.rank, pos.batch_in_epoch, gpu
        )
        for batch in self.clock.timed(batches):
            batch = to_device(batch, worker.device, self.nhwc, self.cfg.data.flip)
            self.evaluation.add(batch)
            self._fix_sample_inputs(batch)
            yield batch

    def step(self, batch: registry.Batch) -> None:
        """One optimizer step (train step, schedulers, position), and a sample grid if due."""
        state, pos = self.state, self.state.pos
        state.ctx.step = pos.step
        self.window.add(self.run_step(batch))
        if state.average is not None:
            state.average.update()
        for sched in state.scheds.values():
            sched.step()
        pos.step += 1
        pos.batch_in_epoch += 1
        if pos.step % self.cfg.train.sample_every == 0 or pos.step == self.cfg.train.steps:
            self._sample()

    def after(self, due: Due) -> None:
        """Record, score and report what is due after a step (every report follows a record)."""
        if not due.log:
            return
        metrics = self.window.read(self.images_per_step)
        self.window = Window(self.clock)
        if due.evaluate:
            metrics |= self.evaluation.scores(self.state.nets, self.state.average)
        self.out.record(self.state.pos.step, metrics)
        if due.report:
            self._report(metrics, save=due.checkpoint)

    def end_epoch(self) -> None:
        """Move on to the next epoch; after the first full pass, log what the data skipped."""
        pos, worker = self.state.pos, self.state.worker
        if pos.batch_in_epoch == 0:
            raise ValueError(
                f"worker {worker.rank} got no full batch of {self.cfg.data.batch_size} images: "
                f"the dataset is smaller than batch_size x workers ({worker.world})"
            )
        if pos.epoch == 0 and self.out.enabled:  # a full pass: every unreadable file was seen
            self.out.log(_skip_summary(complete=True))
        pos.epoch += 1
        pos.batch_in_epoch = 0

    def finish(self) -> dict:
        """The final report: last window, scores and a checkpoint (so ``Result.metrics`` holds
        the scores); rank 0 returns the run's files and final metrics."""
        pos = self.state.pos
        if pos.epoch == 0 and self.out.enabled:  # a run shorter than one pass: what it saw
            self.out.log(_skip_summary(complete=False))
        metrics = self.window.read(self.images_per_step) if self.window.steps else {}
        # Scores go into the history too: a run resumed at its end has no batches to score on.
        metrics |= self.evaluation.scores(self.state.nets, self.state.average)
        self.out.record(pos.step, metrics)
        self._report(metrics, save=True)
        return self.out.finish(metrics) if self.out.enabled else {}

    def _fix_sample_inputs(self, batch: registry.Batch) -> None:
        """The inputs of every sample grid, from the run's first batch (kept in checkpoints)."""
        if self.state.fixed is None and self.spec.sample_inputs is not None:
            generator = torch.Generator().manual_seed(self.cfg.train.seed)
            self.state.fixed = self.spec.sample_inputs(
                self.cfg.params, batch, SAMPLE_GRID, generator
            )

    def _sample(self) -> None:
        """A sample grid from the fixed inputs (rank 0 only; no RNG or autograd side effects)."""
        fixed = self.state.fixed
        if self.out.enabled and self.spec.sample is not None and fixed is not None:
            with side_effect_free(self.state.worker.device):
                images = self.spec.sample(self.state.serving, self.cfg.params, fixed)
                self.out.sample_grid(self.state.pos.step, images)

    def _report(self, metrics: dict, save: bool) -> None:
        """ray.train.report on every rank (a barrier); with ``save``, rank 0 attaches a
        checkpoint of the state gathered from all ranks."""
        import ray.train

        pos = self.state.pos
        state = self.state.state_dict() if save else None  # a collective: on every rank
        metrics = {**metrics, "step": pos.step}  # Tune's schedulers measure progress in steps
        if state is None or not self.out.enabled:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="genart-ckpt-") as tmp:
            checkpoint.write(tmp, state, self.cfg, pos.history)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        self.out.checkpointed(pos.step)


def _for_ddp(nets: registry.Nets, world: int) -> registry.Nets:
    """The nets as trained: on several workers, those with trainable parameters in DDP."""
    import ray.train.torch

    return {
        k: ray.train.torch.prepare_model(v, move_to_device=False)
        if world > 1 and has_trainable(v)
        else v
        for k, v in nets.items()
    }


def has_trainable(net: torch.nn.Module) -> bool:
    """Whether a net has parameters to train (only those are wrapped in DDP)."""
    return any(p.requires_grad for p in net.parameters())


def _skip_summary(complete: bool) -> str:
    """The data skip summary; a lost skip log costs the summary, never the run."""
    try:
        summary = str(pipelines.skip_report())
        return summary if complete else f"{summary} (so far: the first epoch did not finish)"
    except ray.exceptions.RayActorError as error:
        return f"data: skip counts unavailable ({type(error).__name__}: the skip log was lost)"
