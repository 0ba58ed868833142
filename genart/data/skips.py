"""The record of unreadable training images: counted, named, and summarised in one line.

Data tasks on any node record what they could not decode in a small named actor of the Ray
job; the training loop prints :func:`skip_report` once the first epoch has seen every file.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

SKIP_LOG_NAME = "genart.data.skips"
EXAMPLES = 3  # unreadable paths named in the summary


@dataclass(frozen=True)
class SkipReport:
    """What was skipped so far; ``str()`` gives the one-line summary to print."""

    images: int  # image files (or Parquet rows) listed
    skipped: int  # of those, found unreadable so far (each counted once, however many epochs)
    ignored: int  # files without an image extension, never read
    examples: tuple[str, ...]  # a few unreadable paths with the reason

    def __str__(self) -> str:
        line = f"data: {self.images - self.skipped} of {self.images} images readable"
        if self.skipped:
            line += f", {self.skipped} skipped (e.g. {'; '.join(self.examples)})"
        if self.ignored:
            line += f", {self.ignored} non-image file(s) ignored"
        return line


def skip_report(*uris: str) -> SkipReport:
    """Counts for the given sources (default: every source read in this Ray job).

    Complete once a full pass over the data has run (e.g. after the first epoch); works on the
    driver and inside Ray Train workers alike. Call ``print(skip_report())`` for the summary.
    """
    return ray.get(skip_log().report.remote(list(uris)))


@ray.remote(num_cpus=0)
class _SkipLog:
    """This job's record, by source URI, of listed images and of the unreadable ones."""

    def __init__(self) -> None:
        self._listed: dict[str, tuple[int, int]] = {}  # source -> (images, ignored files)
        self._bad: dict[str, dict[str, str]] = {}  # source -> {path: reason}

    def listed(self, source: str, images: int, ignored: int) -> None:
        self._listed[source] = (images, ignored)

    def skipped(self, source: str, bad: dict[str, str]) -> None:
        self._bad.setdefault(source, {}).update(bad)

    def report(self, sources: list[str]) -> SkipReport:
        sources = sources or list(self._listed)
        bad = {path: why for s in sources for path, why in self._bad.get(s, {}).items()}
        listed = [self._listed.get(s, (0, 0)) for s in sources]
        return SkipReport(
            images=sum(images for images, _ in listed),
            skipped=len(bad),
            ignored=sum(ignored for _, ignored in listed),
            examples=tuple(f"{path}: {bad[path]}" for path in sorted(bad)[:EXAMPLES]),
        )


_SKIP_LOGS: dict[str, ray.actor.ActorHandle] = {}  # namespace (one per job) -> handle


def skip_log() -> ray.actor.ActorHandle:
    """The job's skip log, created by the first caller (the driver, building a dataset).

    Named in the job's namespace, so the driver, data tasks on any node and Train workers all
    share it. A named actor dies with its last handle, so each process keeps its handle. It is
    placed on its creator's node (the driver's, which the job cannot outlive anyway): left to
    the scheduler it may land on a worker node, and losing that node would fail the training
    run that asks it for the report.
    """
    if not ray.is_initialized():
        ray.init()  # what any Ray Data call would do first
    context = ray.get_runtime_context()
    if context.namespace not in _SKIP_LOGS:
        here = NodeAffinitySchedulingStrategy(context.get_node_id(), soft=True)
        log = _SkipLog.options(name=SKIP_LOG_NAME, get_if_exists=True, scheduling_strategy=here)
        _SKIP_LOGS[context.namespace] = log.remote()
    return _SKIP_LOGS[context.namespace]
