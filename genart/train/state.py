"""What a training worker trains and a resume restores, and where a run starts from.

:class:`TrainState` holds everything a step changes: the nets, optimizers, schedulers, grad
scaler and step context (model state such as image pools), the position in the data stream,
and the fixed inputs of the sample grids. :meth:`TrainState.state_dict` is the ``state.pt`` of
a checkpoint (whose folder format :mod:`genart.train.checkpoint` owns), gathered from every
worker; :meth:`TrainState.load` restores one, and :meth:`TrainState.resume` finds the one a run
starts from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from genart import registry, storage
from genart.config import Config
from genart.train import checkpoint, devices, ema
from genart.train.rng import rng_state, set_rng_state


@dataclass
class Position:
    """Where training stands: optimizer step and place in the data stream."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        return f"step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch})"


@dataclass(frozen=True)
class Worker:
    """Where this process sits in a run: its rank, the number of workers and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Start(NamedTuple):
    """A state to start from, the metrics history saved with it, and whether it is this run's
    own (a resume) or another run's (``run.init_from``)."""

    state: dict
    history: list[dict]
    own: bool


@dataclass
class TrainState:
    """One worker's training state.

    ``nets`` are the single-device modules (a DDP wrapper shares their parameters); ``dtype``
    is the autocast dtype of the step (fp16 comes with ``ctx.scaler``).
    """

    nets: registry.Nets
    opts: registry.Optimizers
    scheds: dict[str, Any]
    ctx: registry.StepContext
    worker: Worker = field(default_factory=Worker)
    dtype: torch.dtype | None = None
    pos: Position = field(default_factory=Position)
    fixed: Any = None  # the inputs of every sample grid (``spec.sample_inputs``)
    average: ema.WeightAverage | None = None  # of the exported nets, where the spec asks for one

    @property
    def serving(self) -> registry.Nets:
        """The nets as sampled and exported: the averaged ones where there are, unless the last
        evaluation scored the live ones better (:func:`genart.train.ema.judge`)."""
        return self.average.serving(self.nets) if self.average else self.nets

    @classmethod
    def create(cls, spec: registry.TrainedSpec, cfg: Config, worker: Worker) -> TrainState:
        """A fresh state: the spec's nets on the worker's device, their optimizers, ..."""
        device = worker.device
        nets = spec.build(cfg.params, cfg.data)
        if spec.sync_bn(cfg.params) and worker.world > 1 and device.type == "cuda":
            # Batch statistics over the global batch (small per-GPU batches); NCCL/CUDA only.
            nets = {k: torch.nn.SyncBatchNorm.convert_sync_batchnorm(v) for k, v in nets.items()}
        nhwc = devices.channels_last(cfg.train.channels_last, device)
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        nets = {k: v.to(device, memory_format=fmt) for k, v in nets.items()}
        opts = spec.optimizers(nets, cfg.params)
        scheds = spec.schedulers(opts, cfg.params, cfg.train.steps) if spec.schedulers else {}
        dtype, scaler = devices.precision(cfg.train.precision, device)
        ctx = registry.StepContext(scaler=scaler, device_type=device.type)
        average = ema.for_spec(spec, nets, cfg.params)
        return cls(nets, opts, scheds, ctx, worker, dtype, average=average)

    def state_dict(self) -> dict:
        """Everything a resume needs. Per-worker parts (RNG, model state) are gathered from all
        ranks, so every rank must call this at the same point (a collective)."""
        scaler = self.ctx.scaler
        return {
            "step": self.pos.step,
            "epoch": self.pos.epoch,
            "batch_in_epoch": self.pos.batch_in_epoch,
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "average": self.average.state_dict() if self.average else None,
            "opts": {k: v.state_dict() for k, v in self.opts.items()},
            "scheds": {k: v.state_dict() for k, v in self.scheds.items()},
            "scaler": scaler.state_dict() if scaler is not None else None,
            "workers": gather({"rng": rng_state(), "ctx_state": self.ctx.state}),
            "fixed": self.fixed,
        }

    def load(self, state: dict, own: bool = True) -> None:
        """Restore ``state`` (a :meth:`state_dict`); the metrics history is not part of it.

        ``own=False``: another run's state (``run.init_from``) whose weights, moments, step and
        RNG are taken while this config's optimizer hyper-parameters stay (see
        :func:`adopt_settings`).
        """
        settings = optimizer_settings(self.opts)
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
        if self.average is not None:
            # A state saved without an average (averaging off then): start it from its weights.
            saved = state.get("average")
            self.average.load_state_dict(saved) if saved else self.average.restart()
        for name, opt in self.opts.items():
            opt.load_state_dict(state["opts"][name])
        for name, sched in self.scheds.items():
            sched.load_state_dict(state["scheds"][name])
        if not own:
            adopt_settings(self.opts, self.scheds, settings)
        if self.ctx.scaler is not None and state["scaler"] is not None:
            self.ctx.scaler.load_state_dict(state["scaler"])
        workers, rank = state["workers"], self.worker.rank
        # A state saved by fewer workers (another run's): the ranks beyond keep their own seeds.
        if len(workers) > rank:
            set_rng_state(workers[rank]["rng"])
            self.ctx.state = _to(workers[rank]["ctx_state"], self.worker.device)
        self.pos = Position(state["step"], state["epoch"], state["batch_in_epoch"])
        self.fixed = state["fixed"]

    def resume(self, cfg: Config) -> bool:
        """Load the state this run starts from (:func:`starting_point`) with its history;
        False when there is none (a fresh start)."""
        start = starting_point(cfg)
        if start is None:
            return False
        self.load(start.state, start.own)
        self.pos.history = start.history
        return True


def gather(obj: Any) -> list[Any]:
    """Every worker's ``obj`` in rank order (just ``[obj]`` on a single worker)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def optimizer_settings(opts: registry.Optimizers) -> dict[str, list[dict]]:
    """Each optimizer's per-group hyper-parameters (lr, betas, ...), without the parameters."""
    return {
        name: [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
        for name, opt in opts.items()
    }


def adopt_settings(
    opts: registry.Optimizers, scheds: dict[str, Any], settings: dict[str, list[dict]]
) -> None:
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


# --- where a run starts from -----------------------------------------------------------------


def starting_point(cfg: Config) -> Start | None:
    """The state a run starts from, or None for a fresh start.

    In order: the checkpoint Ray registered for this run; else the newest complete one in the
    run folder (Ray registers a checkpoint only after uploading it, so a crash in between
    leaves a complete one Ray does not know about, still the run's newest state); else
    ``run.init_from`` (another run's checkpoint, e.g. a PBT exploit).
    """
    import ray.train

    found = ray.train.get_checkpoint()
    if found is not None:
        return _load_registered(found)
    unregistered = checkpoint.latest_complete(storage.join(cfg.run.storage_path, cfg.run.name))
    if unregistered is not None:
        state, _, history = checkpoint.load(unregistered)
        return Start(state, history, own=True)
    if cfg.run.init_from:
        state, _, history = checkpoint.load(checkpoint.resolve(cfg.run.init_from))
        return Start(state, history, own=False)
    return None


def _load_registered(found) -> Start:
    """The state of the checkpoint Ray registered, or of the run's newest complete one."""
    with found.as_directory() as local:
        try:
            state, _, history = checkpoint.load(local)
        except checkpoint.IncompleteCheckpoint as err:
            # Ray registered a checkpoint whose files are not all there (e.g. a crash during
            # upload): fall back to the newest complete one in the run folder.
            run_uri = storage.uri(found.filesystem, str(Path(found.path).parent))
            fallback = checkpoint.latest_complete(run_uri)
            if fallback is None:
                raise RuntimeError(f"no complete checkpoint to resume from ({err})") from err
            state, _, history = checkpoint.load(fallback)
    return Start(state, history, own=True)


def _to(obj, device: torch.device):
    """Move the tensors of a nested dict/list structure to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj
