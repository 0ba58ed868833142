"""What a training run leaves for people to look at (written by rank 0 only).

Layout of a run folder ``<storage_path>/<name>/`` (next to Ray's ``checkpoint_*`` folders):
``config.yaml`` (resolved config), ``metrics.jsonl`` (one line per report, rebuilt from the
checkpoint on resume so no step is lost or repeated), ``samples/step_XXXXXX.png`` (grids from
the fixed inputs), ``tb/`` (TensorBoard events), and at the end ``loss_curve.png`` and
``metrics.json`` (final losses and quality scores, with ``eval_split``: the split they were
scored on). With ``run.tracking_uri`` the reports, grids, curve and metrics also go to the
run's MLflow run (:mod:`genart.tracking`). For remote storage the files are staged locally
and uploaded at every checkpoint and at the end.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from genart import console, registry, storage, tracking
from genart.config import Config, save
from genart.images import grid, save_grid


class RunOutputs:
    """Progress lines, metrics log, sample grids, TensorBoard and final artifacts of one run."""

    def __init__(self, cfg: Config, enabled: bool, history: list[dict], resumed_from=None):
        self.cfg = cfg
        self.metric = registry.trained(cfg.model).metric
        self.resumed_from = resumed_from  # step of the checkpoint this attempt started from
        self.enabled = enabled
        self.history = history
        self.uri = storage.join(cfg.run.storage_path, cfg.run.name)
        self.started = time.perf_counter()
        if not enabled:
            return
        remote = storage.is_remote(self.uri)
        self.dir = Path(tempfile.mkdtemp(prefix="genart-run-")) if remote else Path(self.uri)
        (self.dir / "samples").mkdir(parents=True, exist_ok=True)
        save(cfg, self.dir / "config.yaml")
        # Rewritten from the restored history: entries past the checkpoint are dropped.
        lines = "".join(json.dumps(h) + "\n" for h in history)
        (self.dir / "metrics.jsonl").write_text(lines)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(
            str(self.dir / "tb"), purge_step=history[-1]["step"] + 1 if history else None
        )
        # The MLflow run the driver started for this run (genart.tracking), logged from here.
        self.tracking = tracking.RunLog.of(self.uri, self.log) if cfg.run.tracking_uri else None

    def log(self, message: str, progress: tuple[int, int] | None = None) -> None:
        """A line on genart's console (from this worker, through the driver's console relay);
        ``progress`` (done, total) makes it the redrawn status line on a terminal."""
        if self.enabled:
            console.emit(f"[{self.cfg.run.name}] {message}", progress)

    def record(self, step: int, metrics: dict[str, float | str]) -> None:
        """Append one report to the history, the metrics log, TensorBoard and the console.

        Values are numbers, or strings that label them (``eval_split``): those go to the logs
        and the console, not to TensorBoard, which plots numbers only.
        """
        if not (self.enabled and metrics):
            return
        entry = {"step": step, **{k: _rounded(v) for k, v in metrics.items()}}
        self.history.append(entry)
        with (self.dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")
        for key, value in metrics.items():
            if not isinstance(value, str):
                self.tb.add_scalar(key, value, step)
        if self.tracking is not None:
            self.tracking.metrics(step, metrics)
        self.log(self._progress(step, metrics), progress=(step, self.cfg.train.steps))

    def _progress(self, step: int, metrics: dict[str, float | str]) -> str:
        total = self.cfg.train.steps
        losses = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k.startswith("loss"))
        rate = metrics.get("images_per_s", 0.0)
        eta = (total - step) * metrics.get("step_time_s", 0.0)
        wait = metrics.get("input_wait_frac", 0.0)  # high: the data pipeline starves the step
        return (
            f"step {step}/{total} ({100 * step // total}%) | {losses} | {self._score(metrics)}"
            f"{rate:.0f} img/s, input wait {100 * wait:.0f}% | "
            f"eta {int(eta // 60)}m{int(eta % 60):02d}s"
        )

    def _score(self, metrics: dict[str, float | str]) -> str:
        """The score Tune optimises and the split it was computed on, if this report has one."""
        if "eval_split" not in metrics:
            return ""
        name = f"eval_{self.metric}"
        value = f"{name} {metrics[name]:.4g} " if name in metrics else ""
        # Where a weight average is kept, which weights the score (and the export) is of.
        served = f"({metrics['eval_served']} weights) " if "eval_served" in metrics else ""
        return f"{value}{served}on {metrics['eval_split']} | "

    def sample_grid(self, step: int, images: torch.Tensor) -> None:
        if not self.enabled:
            return
        path = self.dir / "samples" / f"step_{step:06d}.png"
        save_grid(images, path)
        self.tb.add_image("samples", (grid(images) + 1) / 2, step)
        if self.tracking is not None:
            self.tracking.artifact(path, "samples")

    def checkpointed(self, step: int) -> None:
        if self.enabled:
            self.tb.flush()
            storage.upload_dir(self.dir, self.uri)

    def finish(self, final: dict[str, float | str]) -> dict:
        """Write metrics.json and the loss curve; returns the paths and final metrics."""
        (self.dir / "metrics.json").write_text(json.dumps(final, indent=1))
        curve = plot_losses(self.history, self.dir / "loss_curve.png")
        self.tb.close()
        if self.tracking is not None:
            self.tracking.artifact(self.dir / "metrics.json")
            self.tracking.artifact(curve)
            self.tracking.close()  # all logged before the driver ends the MLflow run
        storage.upload_dir(self.dir, self.uri)
        samples = sorted((self.dir / "samples").glob("step_*.png"))
        files = {
            "run": self.uri,
            "metrics": storage.join(self.uri, "metrics.json"),
            "loss_curve": storage.join(self.uri, curve.name),
            "samples": storage.join(self.uri, "samples", samples[-1].name) if samples else None,
            "tensorboard": storage.join(self.uri, "tb"),
        }
        self.log(f"done in {time.perf_counter() - self.started:.0f}s: " + json.dumps(final))
        return {"files": files, "metrics": final, "resumed_from": self.resumed_from}


def _rounded(value: float | str) -> float | str:
    """A metric as logged: numbers rounded to 6 decimals, labels as they are."""
    return value if isinstance(value, str) else round(value, 6)


def plot_losses(history: list[dict], path: Path) -> Path:
    """Loss curves (every ``loss*`` metric against step) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    keys = sorted({k for h in history for k in h if k.startswith("loss")})
    for key in keys:
        points = [(h["step"], h[key]) for h in history if key in h]
        ax.plot(*zip(*points), label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
