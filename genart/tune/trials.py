"""The Tune functions: what one trial runs, in the trial's own process.

A trial of a trained family is a small Tune function (0.01 CPU) that builds its config from the
base config and the sampled values, then calls :func:`genart.train.launch.fit`: Ray Train places
the trial's workers as one placement group and runs ``train_loop_per_worker``. The loop reports
the model's quality metric (``eval_<spec.metric>``) every ``train.eval_every`` steps and at the
end; :mod:`genart.compat.relay` passes those reports on, and the trial reports them to Tune,
which is what ASHA and PBT act on. Under PBT each report carries its Train checkpoint (Tune
copies it into the trial's folder). An exploited trial restarts with another trial's checkpoint
from ``tune.get_checkpoint()`` and starts a new Train run with ``run.init_from`` pointing at
it: weights, optimizer moments, step and RNG come from the checkpoint, the (perturbed)
hyper-parameters from the trial's config.

A trial of an optimisation family (Gatys, Deep Dream) runs the family's pipeline itself (1 CPU).
Its own loss depends on the settings being tuned, so every trial is scored by the family's
metric under the job's *base* settings (for Gatys the reference objective, ``reference_loss``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from genart import storage, tracking
from genart.config import Config, ConfigError
from genart.train import checkpoint
from genart.tune.settings import RUNS, OptimisationJob
from genart.tune.space import with_values


@dataclass
class Relay:
    """How a trial relays its Train run to Tune."""

    checkpoints: bool  # report each scored checkpoint to Tune too (what PBT exploits)
    janitor: Any  # handle of the sweep's Janitor actor
    extra: dict = field(default_factory=dict)  # added to every report


def train_trial(params: dict, base: dict, metric: str, relay: Relay) -> None:
    """Tune function: one Ray Train run of ``base`` with the sampled ``params`` set.

    Only the reports that carry ``metric`` reach Tune (what its schedulers act on); the
    others stay in the Train run's own metrics log and TensorBoard.
    """
    from ray import tune

    raw = with_values(base, params)
    trial = tune.get_context().get_trial_id()
    runs = storage.join(base["run"]["storage_path"], base["run"]["name"], RUNS)
    start = tune.get_checkpoint()  # set after a PBT exploit, or when a PBT sweep resumes
    raw["run"] = {
        **raw["run"],
        "storage_path": runs,
        "name": _run_name(runs, trial, fresh=start is not None),
        "resume": True,  # a restarted trial without a Tune checkpoint continues its own run
        "init_from": _uri(start) if start is not None else "",
    }
    cfg = Config.from_dict(raw)
    if cfg.run.tracking_uri:
        sweep = storage.join(base["run"]["storage_path"], base["run"]["name"])
        # The trial's child run; its later Train runs (PBT restarts) continue it.
        tracking.start(
            cfg,
            parent=tracking.read_record(sweep),
            tags={"genart.trial": trial},
            inherit=storage.join(runs, trial),
        )
    finished = final_scores(cfg, metric)
    if finished is not None:  # the run ended before an interruption, its last report did not
        tune.report({**finished, "run": cfg.run.name})
        return
    _fit_and_relay(cfg, metric, dataclasses.replace(relay, extra={"run": cfg.run.name}))


def final_scores(cfg: Config, metric: str) -> dict[str, Any] | None:
    """The last scored history entry of a Train run that already reached ``train.steps``."""
    latest = checkpoint.latest_complete(storage.join(cfg.run.storage_path, cfg.run.name))
    if latest is None or checkpoint.verify(latest)["step"] < cfg.train.steps:
        return None
    scored = [h for h in json.loads((latest / "history.json").read_text()) if metric in h]
    return scored[-1] if scored and scored[-1]["step"] >= cfg.train.steps else None


def _run_name(runs: str, trial: str, fresh: bool) -> str:
    """``trial``, or ``trial-k`` for the k-th start from a Tune checkpoint (a new Train run)."""
    if not fresh:
        return trial
    taken = {d for d in storage.list_dirs(runs) if d == trial or d.startswith(f"{trial}-")}
    return f"{trial}-{len(taken)}"


def _uri(found) -> str:
    """A Tune checkpoint's location as a path or URI the loop can read (s3://bucket/key)."""
    return storage.uri(found.filesystem, found.path)


def _fit_and_relay(cfg: Config, metric: str, relay: Relay) -> None:
    """Run ``fit`` and pass its scored reports on to Tune.

    The report at ``train.steps`` reaches Tune only once the run has returned: Tune stops a
    trial at its budget, and the run writes its final outputs after that report.
    """
    from ray import tune

    from genart.compat.janitor import WatchPlacement
    from genart.compat.relay import relayed
    from genart.train.launch import fit

    def send(metrics: dict, reported) -> None:
        keep = reported if relay.checkpoints else None
        tune.report(
            {**metrics, **relay.extra},
            checkpoint=tune.Checkpoint(keep.path, keep.filesystem) if keep else None,
        )

    scored, final = 0, []
    for metrics, reported in relayed(fit, cfg, metric, (WatchPlacement(relay.janitor),)):
        scored += 1
        if metrics["step"] >= cfg.train.steps:
            final.append((metrics, reported))
        else:
            send(metrics, reported)
    if not scored:
        raise ConfigError(f"the Train run never reported '{metric}': check --metric")
    for metrics, reported in final:
        send(metrics, reported)


def optimisation_trial(params: dict, job: OptimisationJob, interval: int) -> None:
    """Tune function: run ``job``'s family on its inputs with the sampled settings.

    A trial's step is its progress in units of the base settings' evaluations per scale
    (``job.budget``), so trials whose tuned settings evaluate more or less still compare at the
    same steps and end at the budget. Reports the family's metric, under the job's base
    settings, every ``interval`` steps and at the end; saves the result under
    ``runs/<trial>/samples``.
    """
    from ray import tune

    spec = job.spec
    base = spec.pipeline_class().from_config(job.params, job.vgg_weights)
    pipe = base.with_settings(**job.values(params))
    inputs = {name: _read(value, job.size) for name, value in job.inputs.items()}
    score = base.scorer(*inputs.values())  # the fixed yardstick
    step = 0

    def progress(update) -> None:
        nonlocal step
        before, step = step, job.budget * update.evaluations // update.total
        if step // interval > before // interval and step < job.budget:
            tune.report({"step": step, spec.metric: score(update.image)})

    image, info = pipe.run(inputs, progress)
    trial = tune.get_context().get_trial_id()
    _save(image, storage.join(job.run.storage_path, job.run.name, RUNS, trial), job.budget)
    losses = {f"loss_{k}": v for k, v in info.get("losses", {}).items()}
    # The optimisation has run to its end: the whole budget, whatever the evaluations counted.
    tune.report({"step": job.budget, spec.metric: score(image), **losses, "run": trial})


def _read(value: str | list[str], size: int):
    """An input image (uint8, long side ``size``), or a list of them."""
    from genart.images import read

    if isinstance(value, list):
        return [read(uri, 3, size) for uri in value]
    return read(value, 3, size)


def _save(image, run_uri: str, step: int) -> None:
    """A trial's result as its run's newest sample (what the report shows for the best)."""
    from genart.images import encode_png

    storage.write_bytes(storage.join(run_uri, "samples", f"step_{step:06d}.png"), encode_png(image))
