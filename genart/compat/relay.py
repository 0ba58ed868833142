"""Relay a Ray Train run's scored reports, checkpoints included, to the Tune trial running it.

Targets Ray 2.60 (see :mod:`genart.compat`). Depends on these Ray sources:

* ``ray/train/v2/api/callback.py``: ``UserCallback.after_report(run_context, metrics,
  checkpoint)``, a DeveloperAPI called on the Train controller after every report, with each
  worker's metrics and the checkpoint already persisted to storage;
* ``ray/util/queue.py``: ``Queue``, which carries them from the controller to the trial.

Why not ``ray.tune.integration.ray_train.TuneReportCallback``: in Ray 2.60 it relays the
metrics and the checkpoint's *path* only (a ``checkpoint_path`` metric), so Tune never holds a
checkpoint and PBT skips every exploit ("no checkpoint for trial ..."). Here the trial receives
the checkpoint itself and may report it to Tune, which copies it into the trial's folder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from ray.train import Checkpoint
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Empty, Queue


class ReportRelay(UserCallback):
    """Puts each report that carries ``metric`` on ``reports``: (rank 0's metrics, checkpoint)."""

    def __init__(self, reports: Queue, metric: str):
        self.reports = reports
        self.metric = metric

    def after_report(self, run_context, metrics, checkpoint):
        if self.metric in metrics[0]:  # rank 0 holds the quality metrics
            self.reports.put((metrics[0], checkpoint))


def relayed(
    fit: Callable[[Any, list], Any], cfg: Any, metric: str, callbacks: tuple = ()
) -> Iterator[tuple[dict[str, Any], Checkpoint | None]]:
    """Run ``fit(cfg, callbacks)`` (a Ray Train run) in a thread; yield its reports that carry
    ``metric``, in order, each with its checkpoint; then raise the run's error, if any."""
    # maxsize 1: the Train controller hands over one report at a time, in order. Its workers do
    # not wait for it, though: a run whose scoring interval is shorter than Tune's turnaround
    # runs ahead, and PBT then decides on reports that are already old (see the PBT test).
    reports = Queue(maxsize=1, actor_options={"num_cpus": 0})
    # A daemon thread: Tune may end this process while the run is still going.
    run = _Background(fit, cfg, [ReportRelay(reports, metric), *callbacks])
    # Once fit has returned, every report is already in the queue.
    while run.is_alive() or not reports.empty():
        try:
            report = reports.get(timeout=0.5)
        except Empty:
            continue
        yield report
    run.result()  # a failed run fails the trial


class _Background(threading.Thread):
    """``fn(*args)`` in a daemon thread; ``result()`` waits for it and raises its error."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.error = fn, args, None
        self.start()

    def run(self) -> None:
        try:
            self.fn(*self.args)
        except BaseException as err:  # handed to the caller by result()
            self.error = err

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error
