"""Free the worker placement groups of Ray Train runs whose Tune trial process was killed.

Targets Ray 2.60 (see :mod:`genart.compat`). Tune ends the trials it stops, pauses or exploits
by killing their process, and with it the Train controller the trial owns. Ray Train's own
cleaner (``ray/train/v2/_internal/execution/controller/placement_group_cleaner.py``, started by
``ray/train/v2/_internal/callbacks/placement_group_callback.py``) then asks the State API
whether the controller is alive (``ray/train/v2/_internal/state/util.py``), which needs the
dashboard; without it (the tests, ``genart`` on a laptop) each such trial kept its workers'
CPUs and the sweep soon stalled waiting for them. Here an actor call to the dead trial fails,
which needs nothing but Ray itself.

Depends on these Ray internals, for no public hook sees a Train run's worker group:

* ``ray/train/v2/_internal/execution/callback.py``: ``WorkerGroupCallback`` and its
  ``after_worker_group_start(worker_group)``;
* ``ray/train/v2/_internal/execution/worker_group/``: ``worker_group.get_worker_group_state()
  .placement_group_handle.placement_group``;
* ``ray/train/v2/api/data_parallel_trainer.py``: run-config callbacks that are not
  ``UserCallback``\\ s are handed to the controller as internal callbacks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import ray
from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.util.placement_group import remove_placement_group


class Janitor:
    """Removes a Train run's worker placement group once the trial process that ran it died.

    Run it as an actor (``ray.remote(num_cpus=0)(Janitor).remote()``); each trial's Train run
    registers its group with :class:`WatchPlacement`.
    """

    def __init__(self, interval_s: float = 1.0):
        self.watched: list[tuple[Any, Any]] = []  # (trial actor, placement group)
        self.interval_s = interval_s
        self.lock = threading.Lock()  # collect() runs in the loop and as an actor call
        threading.Thread(target=self._loop, daemon=True).start()

    def watch(self, trial, group) -> None:
        """Remove ``group`` once the actor ``trial`` has died."""
        self.watched.append((trial, group))

    def collect(self) -> int:
        """Remove the groups of every dead trial; returns how many are still watched."""
        with self.lock:
            return self._collect()

    def _collect(self) -> int:
        watched = list(self.watched)
        if not watched:
            return 0
        pings = [trial.__ray_ready__.remote() for trial, _ in watched]
        ready, _ = ray.wait(pings, num_returns=len(pings), timeout=self.interval_s)
        for ping, entry in zip(pings, watched):
            if ping not in ready:
                continue  # busy or slow: alive
            try:
                ray.get(ping)
            except ray.exceptions.RayActorError:
                # Removing a group Ray Train already removed is harmless.
                with contextlib.suppress(Exception):
                    remove_placement_group(entry[1])
                self.watched.remove(entry)
        return len(self.watched)

    def drain(self, timeout_s: float = 30.0) -> int:
        """Collect until nothing is watched (every trial has ended) or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while self.collect() and time.monotonic() < deadline:
            time.sleep(self.interval_s)
        return len(self.watched)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval_s)
            if self.watched:
                self.collect()


class WatchPlacement(WorkerGroupCallback):
    """Ray Train callback: has ``janitor`` watch each worker group the run starts, on behalf
    of the trial process that creates the callback (it runs on the Train controller)."""

    def __init__(self, janitor):
        self.janitor = janitor
        self.trial = ray.get_runtime_context().current_actor  # this trial's process, as an actor

    def after_worker_group_start(self, worker_group):
        handle = worker_group.get_worker_group_state().placement_group_handle
        self.janitor.watch.remote(self.trial, handle.placement_group)
