"""The one Ray Train loop every model trains through.

It owns everything a ``train_step`` must not know about: devices, DDP, mixed precision, the
dataset shard and its position, RNG, reporting, progress lines, sample grids, TensorBoard and
checkpoints. Models plug in through :class:`genart.registry.ModelSpec`.

Exact resume: the data order is a pure function of (seed, epoch) — Ray Data runs with
``preserve_order`` so every worker gets the same rows each epoch — and a checkpoint stores the
epoch and the number of batches consumed in it, every worker's RNG states and model state. A
resumed run skips the consumed batches and continues bit-identically on CPU.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
import torch.distributed as dist

from genart import registry, storage
from genart.config import Config, TrainConfig
from genart.data import pipelines
from genart.data.transforms import random_flip
from genart.train import checkpoint, devices, graphs, outputs

IMAGE_COLUMNS = ("image", "A", "B")


@dataclass
class Position:
    """Where training stands: optimizer step and place in the data stream."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[dict] = field(default_factory=list)


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


# --- set-up helpers -----------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's RNG states (Python's as a JSON string: weights_only loads no tuples)."""
    state = {
        "python": json.dumps(random.getstate()),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": pos,
        "has_gauss": has_gauss,
        "gauss": gauss,
        "kind": kind,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather(obj: Any) -> list[Any]:
    """Every worker's ``obj`` in rank order (just ``[obj]`` on a single worker)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def has_trainable(net: torch.nn.Module) -> bool:
    """Whether a net has parameters to train (only those are wrapped in DDP)."""
    return any(p.requires_grad for p in net.parameters())


# --- data ---------------------------------------------------------------------------------


def epoch_batches(shard, cfg: Config, epoch: int, rank: int, skip: int, gpu: bool = False):
    """The batches of one epoch, in an order fixed by (seed, epoch, rank); skips ``skip``.

    For a GPU, batches come in pinned memory (the copy to the device runs asynchronously) and
    a few more are prefetched: a replayed step takes milliseconds.
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
    return itertools.islice(batches, skip, None)


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
    import ray.train
    import ray.train.torch

    cfg = Config.from_dict(config)
    spec = registry.get(cfg.model)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    seed_everything(cfg.train.seed * 7919 + rank)
    devices.configure(device)

    nets = spec.build(cfg.params, cfg.data)
    if getattr(cfg.params, "sync_bn", False) and world > 1 and device.type == "cuda":
        # Batch statistics over the global batch (small per-GPU batches); NCCL/CUDA only.
        nets = {k: torch.nn.SyncBatchNorm.convert_sync_batchnorm(v) for k, v in nets.items()}
    nhwc = devices.channels_last(cfg.train.channels_last, device)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    nets = {k: v.to(device, memory_format=fmt) for k, v in nets.items()}
    opts = spec.optimizers(nets, cfg.params)
    scheds = spec.schedulers(opts, cfg.params, cfg.train.steps) if spec.schedulers else {}
    dtype, scaler = devices.precision(cfg.train.precision, device)
    ctx = registry.StepContext(scaler=scaler, device_type=device.type)
    pos, fixed = Position(), None

    restored = _restore(cfg, nets, opts, scheds, scaler, ctx, rank, device)
    if restored is not None:
        pos, fixed = restored
    wrapped = {
        k: ray.train.torch.prepare_model(v, move_to_device=False)
        if world > 1 and has_trainable(v)
        else v
        for k, v in nets.items()
    }
    resumed_from = pos.step if restored is not None else None
    out = outputs.RunOutputs(cfg, rank == 0, pos.history, resumed_from)
    if restored is not None:
        out.log(f"resumed from step {pos.step} (epoch {pos.epoch}, batch {pos.batch_in_epoch})")

    if resumed_from is not None and resumed_from >= cfg.train.steps:
        # A finished run resumed (a job resubmitted after it ended): its checkpoint holds the
        # final state and its history the final scores. Scoring again without a batch seen
        # would overwrite them with nothing.
        final = {k: v for k, v in pos.history[-1].items() if k != "step"} if pos.history else {}
        return out.finish(final) if rank == 0 else {}
    shard = ray.train.get_dataset_shard("train")
    images_per_step = cfg.data.batch_size * world
    clock = InputClock()
    window = Window(clock)
    reference = outputs.Reference(cfg.train.eval_samples)
    gpu = device.type == "cuda"
    run_step = graphs.step_runner(
        spec, wrapped, opts, cfg.params, ctx, device, world, dtype, cfg.train.cuda_graphs
    )
    while pos.step < cfg.train.steps:
        batches = epoch_batches(shard, cfg, pos.epoch, rank, pos.batch_in_epoch, gpu)
        for batch in clock.timed(batches):
            batch = to_device(batch, device, nhwc, cfg.data.flip)
            if rank == 0:
                reference.add(batch)
            if fixed is None and spec.sample_inputs is not None:
                generator = torch.Generator().manual_seed(cfg.train.seed)
                fixed = spec.sample_inputs(cfg.params, batch, 64, generator)
            if pos.step == cfg.train.fail_at_step and restored is None:
                raise RuntimeError(f"fail_at_step={pos.step}: injected failure (testing aid)")
            ctx.step = pos.step
            window.add(run_step(batch))
            for sched in scheds.values():
                sched.step()
            pos.step += 1
            pos.batch_in_epoch += 1
            if pos.step % cfg.train.sample_every == 0 or pos.step == cfg.train.steps:
                _sample(out, spec, wrapped, cfg, fixed, pos.step, device)
            if pos.step >= cfg.train.steps:
                break
            due = Due.at(pos.step, cfg.train)
            if due.log:
                metrics = window.read(images_per_step)
                window = Window(clock)
                if due.evaluate:
                    metrics |= _evaluate(rank, spec, wrapped, cfg, reference, device)
                out.record(pos.step, metrics)
            if due.report:
                state = None
                if due.checkpoint:
                    state = _state(pos, nets, opts, scheds, scaler, ctx, fixed)
                _report(out, metrics, pos, state, cfg)
        else:
            if pos.batch_in_epoch == 0:
                raise ValueError(
                    f"worker {rank} got no full batch of {cfg.data.batch_size} images: the "
                    f"dataset is smaller than batch_size x workers ({world})"
                )
            if pos.epoch == 0 and out.enabled:  # a full pass: every unreadable file was seen
                out.log(_skip_summary(complete=True))
            pos.epoch += 1
            pos.batch_in_epoch = 0

    if pos.epoch == 0 and out.enabled:  # a run shorter than one pass: what it saw
        out.log(_skip_summary(complete=False))
    # Final report: last window, evaluation, a checkpoint (so Result.metrics holds the scores).
    metrics = window.read(images_per_step) if window.steps else {}
    # Scores go into the history too: a run resumed at its end has no batches to score on.
    metrics |= _evaluate(rank, spec, wrapped, cfg, reference, device)
    out.record(pos.step, metrics)
    state = _state(pos, nets, opts, scheds, scaler, ctx, fixed)
    _report(out, metrics, pos, state, cfg)
    return out.finish(metrics) if rank == 0 else {}


@contextlib.contextmanager
def side_effect_free(device: torch.device):
    """Run evaluation or sampling without touching the training RNG streams (exact resume)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        yield


def _evaluate(rank, spec, nets, cfg: Config, reference, device) -> dict[str, float]:
    """Quality metrics on rank 0 (``eval_`` prefixed), computed without side effects."""
    if rank != 0 or spec.evaluate is None or not len(reference):
        return {}
    with side_effect_free(device):
        scores = spec.evaluate(_unwrapped(nets), cfg.params, reference.batch())
    return {f"eval_{k}": v for k, v in scores.items()}


def _sample(out, spec, nets, cfg: Config, fixed, step: int, device) -> None:
    """A sample grid from the fixed inputs (rank 0 only; no RNG or autograd side effects)."""
    if out.enabled and spec.sample is not None and fixed is not None:
        with side_effect_free(device):
            out.sample_grid(step, spec.sample(_unwrapped(nets), cfg.params, fixed))


def _unwrapped(nets: dict) -> dict:
    return {k: registry.unwrap(v) for k, v in nets.items()}


def _state(pos, nets, opts, scheds, scaler, ctx, fixed) -> dict:
    """Everything a resume needs; per-worker parts (RNG, model state) gathered from all ranks."""
    per_worker = gather({"rng": rng_state(), "ctx_state": ctx.state})
    return {
        "step": pos.step,
        "epoch": pos.epoch,
        "batch_in_epoch": pos.batch_in_epoch,
        "nets": {k: registry.unwrap(v).state_dict() for k, v in nets.items()},
        "opts": {k: v.state_dict() for k, v in opts.items()},
        "scheds": {k: v.state_dict() for k, v in scheds.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "workers": per_worker,
        "fixed": fixed,
    }


def _skip_summary(complete: bool) -> str:
    """The data skip summary; a lost skip log costs the summary, never the run."""
    try:
        summary = str(pipelines.skip_report())
        return summary if complete else f"{summary} (so far: the first epoch did not finish)"
    except ray.exceptions.RayActorError as error:
        return f"data: skip counts unavailable ({type(error).__name__}: the skip log was lost)"


def _report(out, metrics: dict, pos: Position, state: dict | None, cfg: Config) -> None:
    """ray.train.report on every rank (a barrier); rank 0 attaches the checkpoint if any."""
    import ray.train

    metrics = {**metrics, "step": pos.step}  # Tune's schedulers measure progress in steps
    if state is None or not out.enabled:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="genart-ckpt-") as tmp:
        checkpoint.write(tmp, state, cfg, pos.history)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    out.checkpointed(pos.step)


def _restore(cfg, nets, opts, scheds, scaler, ctx, rank, device):
    """Load the state to start from (see :func:`_start_state`) into the nets, optimizers, ...

    Returns (Position, fixed inputs), or None when there is nothing to start from.
    """
    start = _start_state(cfg)
    if start is None:
        return None
    state, history, own = start
    own_settings = _optimizer_settings(opts)
    for name, net in nets.items():
        net.load_state_dict(state["nets"][name])
    for name, opt in opts.items():
        opt.load_state_dict(state["opts"][name])
    for name, sched in scheds.items():
        sched.load_state_dict(state["scheds"][name])
    if not own:  # another run's weights and moments, this run's hyper-parameters
        _adopt_settings(opts, scheds, own_settings)
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    workers = state["workers"]
    if len(workers) > rank:
        set_rng_state(workers[rank]["rng"])
        ctx.state = _to(workers[rank]["ctx_state"], device)
    pos = Position(state["step"], state["epoch"], state["batch_in_epoch"], history)
    return pos, state["fixed"]


def _start_state(cfg) -> tuple[dict, list[dict], bool] | None:
    """(state, history, whether it is this run's own) to start from, or None for a fresh start.

    In order: the checkpoint Ray registered for this run; else the newest complete one in the
    run folder (Ray registers a checkpoint only after uploading it, so a crash in between
    leaves a complete one Ray does not know about, still the run's newest state); else
    ``run.init_from`` (another run's checkpoint, e.g. a PBT exploit).
    """
    import ray.train

    found = ray.train.get_checkpoint()
    if found is not None:
        return (*_load_own(found), True)
    unregistered = checkpoint.latest_complete(_own_run(cfg))
    if unregistered is not None:
        state, _, history = checkpoint.load(unregistered)
        return state, history, True
    if cfg.run.init_from:
        state, _, history = checkpoint.load(checkpoint.resolve(cfg.run.init_from))
        return state, history, False
    return None


def _load_own(found) -> tuple[dict, list[dict]]:
    """(state, history) of this run's checkpoint, or of its newest complete one."""
    with found.as_directory() as local:
        try:
            state, _, history = checkpoint.load(local)
        except checkpoint.IncompleteCheckpoint as err:
            # Ray registered a checkpoint whose files are not all there (e.g. a crash during
            # upload): fall back to the newest complete one in the run folder.
            fallback = checkpoint.latest_complete(_run_uri(found))
            if fallback is None:
                raise RuntimeError(f"no complete checkpoint to resume from ({err})") from err
            state, _, history = checkpoint.load(fallback)
    return state, history


def _optimizer_settings(opts: dict) -> dict[str, list[dict]]:
    """Each optimizer's per-group hyper-parameters (lr, betas, ...), without the parameters."""
    return {
        name: [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
        for name, opt in opts.items()
    }


def _adopt_settings(opts: dict, scheds: dict, settings: dict[str, list[dict]]) -> None:
    """Put this config's optimizer hyper-parameters back after loading another run's state.

    ``load_state_dict`` restores the other run's learning rates too, which would silently undo
    a PBT perturbation. The lr keeps the other run's schedule position: it is this config's
    base lr times the factor the other run's schedule had reached.
    """
    for name, opt in opts.items():
        for group, own in zip(opt.param_groups, settings[name]):
            factor = group["lr"] / group.get("initial_lr", group["lr"])
            group.update(own)
            group["lr"] = group.get("initial_lr", group["lr"]) * factor
    for sched in scheds.values():
        sched.base_lrs = [group["initial_lr"] for group in sched.optimizer.param_groups]


def _own_run(cfg: Config) -> str:
    """This run's folder (local path or URI)."""
    return storage.join(cfg.run.storage_path, cfg.run.name)


def _run_uri(found) -> str:
    """The run folder (local path or URI) holding a Ray checkpoint."""
    return storage.uri(found.filesystem, str(Path(found.path).parent))


def _to(obj, device):
    """Move the tensors of a nested dict/list structure to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj
