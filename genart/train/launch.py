"""``fit(cfg)``: build the TorchTrainer for a resolved config and run it.

The same call works on a laptop (a local Ray started in-process) and on a cluster (``ray job
submit`` sets ``RAY_ADDRESS``, and ``ray.init()`` connects to it).
"""

from __future__ import annotations

import os
import time

from genart import config, registry, storage, tracking
from genart.config import Config, ConfigError
from genart.train.checkpoint import CHECKPOINT_PREFIX, newest_config


def init_ray(workers: int = 2, cpus_per_worker: float = 1.0) -> None:
    """Connect to ``RAY_ADDRESS`` if set, else start a private local Ray sized for this run;
    then start genart's console (:mod:`genart.console`).

    A local instance gets logical CPUs beyond the physical ones: Ray Data must have CPUs left
    beside the Train workers, or a streaming dataset fed to workers that hold every CPU hangs.
    """
    import ray

    from genart import console
    from genart.compat.isolation import enable_token_auth

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        console.start(ray.init(**console.ray_init_args()))
        return
    enable_token_auth()
    console.start(ray.init(**local_ray_args(workers, cpus_per_worker)))


def local_ray_args(workers: int, cpus_per_worker: float) -> dict:
    """``ray.init`` arguments of a private local Ray for a run.

    Private: ``address="local"`` always starts a fresh instance, never joins one found on the
    machine, and its own temp dir keeps it apart from a ``ray start`` cluster's files. It
    listens on loopback only (:mod:`genart.compat.loopback`).
    """
    from genart import console
    from genart.compat.isolation import private_temp_dir
    from genart.compat.loopback import start_on_loopback

    cpus = max(os.cpu_count() or 2, int(workers * cpus_per_worker) + 2)
    return {
        "address": "local",
        "num_cpus": cpus,
        "include_dashboard": False,
        "_temp_dir": private_temp_dir(),
        "_system_config": start_on_loopback(),
        **console.ray_init_args(),
    }


def configure(model: str, recipe: str | None, overrides: list[str]) -> Config:
    """The config ``genart train`` runs: from the recipe and overrides, or, resuming a run
    that has a checkpoint, the config saved with it, changed only where the recipe and
    overrides change what a resumed run may change (``config.resumed``): a longer
    ``--steps``, more workers, a new data location. So ``--name NAME --resume`` alone
    continues a run exactly as it was configured.
    """
    raw = config.given(model, recipe, overrides)
    cfg = Config.from_dict(raw)
    saved = saved_config(cfg) if cfg.run.resume else None
    return config.resumed(saved, raw) if saved is not None else cfg


def saved_config(cfg: Config) -> Config | None:
    """The config saved with the newest checkpoint of ``cfg``'s run, or None."""
    if not cfg.run.name:
        return None
    return newest_config(storage.join(storage.absolute(cfg.run.storage_path), cfg.run.name))


def resolve_run(cfg: Config) -> Config:
    """Fill in the run name, absolute storage path and tracking URI (``local``: the store in
    the run folder); refuse to clobber an existing run, or to resume one with a config that
    changes the experiment (``config.refuse_changes``)."""
    if not cfg.run.name:
        cfg.run.name = f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg.run.storage_path = storage.absolute(cfg.run.storage_path)
    run_uri = storage.join(cfg.run.storage_path, cfg.run.name)
    cfg.run.tracking_uri = tracking.resolve_uri(cfg.run.tracking_uri, run_uri)
    has_checkpoints = any(d.startswith(CHECKPOINT_PREFIX) for d in storage.list_dirs(run_uri))
    if has_checkpoints and not cfg.run.resume:
        raise ConfigError(
            f"run '{cfg.run.name}' already has checkpoints in {run_uri}: pass --resume to "
            "continue it, or choose another --name"
        )
    saved = saved_config(cfg) if has_checkpoints else None
    if saved is not None:
        config.refuse_changes(saved, cfg)
    return cfg


def process_group_backend(scaling: config.ScalingConfig) -> str | None:
    """The torch.distributed backend of a run's workers, or None for Ray Train's own choice
    (NCCL with GPUs, gloo without). Workers holding a fraction of a GPU may share one device
    with another rank, which NCCL refuses ("Duplicate GPU detected"); gloo runs DDP's
    collectives on CUDA tensors too, through the host."""
    return "gloo" if scaling.workers > 1 and 0 < scaling.gpus_per_worker < 1 else None


def fit(cfg: Config, callbacks: list | None = None):
    """Train ``cfg`` with Ray Train; returns the ``ray.train.Result``.

    ``callbacks``: Ray Train ``UserCallback``s run on the controller (Tune relays reports).
    With ``run.tracking_uri``, the run's MLflow run is started (or continued) before the
    workers start and ended after them, its export registered (:mod:`genart.tracking`).
    """
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchConfig, TorchTrainer

    from genart import console
    from genart.compat.isolation import use_own_cluster_cleaner
    from genart.train.loop import train_loop_per_worker

    cfg = resolve_run(cfg)
    tracked = tracking.start(cfg)  # before Ray starts: a missing MLflow fails at once
    s = cfg.scaling
    init_ray(s.workers, s.cpus_per_worker)
    resources = {
        "CPU": s.cpus_per_worker,
        **({"GPU": s.gpus_per_worker} if s.gpus_per_worker else {}),
    }
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=s.workers, use_gpu=s.gpus_per_worker > 0, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend=process_group_backend(s)),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            **storage.ray_storage(cfg.run.storage_path),
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            callbacks=callbacks,
        ),
        datasets={"train": registry.trained(cfg.model).dataset(cfg)},
        # preserve_order: each worker gets the same rows every epoch, so resume is exact.
        dataset_config=ray.train.DataConfig(
            execution_options=ExecutionOptions(preserve_order=True)
        ),
    )
    use_own_cluster_cleaner()  # Ray's asks whichever cluster it finds (genart.compat.isolation)
    try:
        result = trainer.fit()
    finally:
        console.flush()  # the run's last lines before whatever the caller prints next
    if tracked is not None:
        version = tracking.finish(cfg, tracked, failed=result.error is not None)
        registered = f"; its export is {version}" if version else ""
        console.emit(f"[{cfg.run.name}] MLflow run {tracked.run_id}{registered}")
    return result
