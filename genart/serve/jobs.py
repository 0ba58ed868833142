"""The Gatys job store: one replica holding every job's status, progress and result.

With a ``jobs_dir`` (a local folder or an ``s3://`` prefix, through ``genart.storage``) each
job's state is kept there as ``<id>.json`` and its result as ``<id>.png``, written before the
call that changed them returns; a restarted replica reads them back, so a job's id stays valid
across restarts of this replica. Without one, state lives in this replica's memory only.

A running job's worker reports every fraction of a second. A job that stops reporting for
``HEARTBEAT_TIMEOUT_S`` lost its worker (a replica or node gone while the ingress that would
have recorded the failure went too) and is marked failed, with the reason, the next time it
is read; so no job stays "running" forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections import OrderedDict
from typing import Any

from ray import serve

from genart import storage
from genart.serve import validation as v

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")  # secrets.token_urlsafe(12): file names, URL segments
FINAL = ("done", "failed")
# Far above the workers' reporting interval, so that a busy machine delaying a few reports
# does not fail a live job; a restarted store gives loaded running jobs this long to report.
HEARTBEAT_TIMEOUT_S = 60.0


@serve.deployment(num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class JobStore:
    """Status, progress and results of Gatys jobs: one replica, so every ingress sees one state.

    Holds at most ``max_jobs`` jobs; the oldest finished ones make room for new ones (their
    files go with them), and a new job is refused (503) while that many are queued or running.
    Progress is kept in memory only (it changes every fraction of a second); everything else
    about a job is saved in ``jobs_dir`` when set (see the module docstring).
    """

    def __init__(self, max_jobs: int, jobs_dir: str | None = None):
        self.max_jobs = max_jobs
        self.jobs_dir = jobs_dir
        self.jobs: OrderedDict[str, dict] = OrderedDict()  # oldest first
        self.results: dict[str, bytes] = {}  # result PNGs read or written by this replica
        self.heartbeats: dict[str, float] = {}  # job id -> time.monotonic() of its last report
        self.saving = asyncio.Lock()  # one write at a time: a job's files never go back in time
        if jobs_dir:
            self._load()

    def _path(self, job_id: str, suffix: str) -> str:
        return storage.join(self.jobs_dir, f"{job_id}.{suffix}")

    def _load(self) -> None:
        """Jobs saved by earlier replicas, oldest first; running ones get a fresh heartbeat."""
        found = []
        for name in storage.list_files(self.jobs_dir):
            job_id, _, suffix = name.rpartition(".")
            if suffix == "json" and JOB_ID.match(job_id):
                found.append(json.loads(storage.read_bytes(self._path(job_id, "json"))))
        now = time.monotonic()
        for job in sorted(found, key=lambda job: job["created"]):
            self.jobs[job["id"]] = job
            if job["status"] not in FINAL:
                self.heartbeats[job["id"]] = now

    async def _save(self, job_id: str, png: bytes | None = None) -> None:
        """Write a job's state (and first its result, if given) to jobs_dir, if there is one."""
        if not self.jobs_dir:
            return
        async with self.saving:
            if png is not None:
                await asyncio.to_thread(storage.write_bytes, self._path(job_id, "png"), png)
            if job_id in self.jobs:  # as it is now, not as it was when the write was asked for
                data = json.dumps(dict(self.jobs[job_id], progress=None)).encode()
                await asyncio.to_thread(storage.write_bytes, self._path(job_id, "json"), data)

    async def _forget(self, job_id: str) -> None:
        """Evict a job, and its files."""
        del self.jobs[job_id]
        self.results.pop(job_id, None)
        self.heartbeats.pop(job_id, None)
        if self.jobs_dir:
            async with self.saving:
                for suffix in ("json", "png"):
                    await asyncio.to_thread(_delete, self._path(job_id, suffix))

    async def create(self, settings: dict) -> str:
        """A new queued job's id (unguessable: results are only visible to whoever has it)."""
        finished = [k for k, job in self.jobs.items() if job["status"] in FINAL]
        while len(self.jobs) >= self.max_jobs and finished:
            await self._forget(finished.pop(0))
        if len(self.jobs) >= self.max_jobs:
            raise v.RequestError(503, f"{self.max_jobs} Gatys jobs are in progress; retry later")
        job_id = secrets.token_urlsafe(12)
        self.jobs[job_id] = {"id": job_id, "status": "queued", "created": time.time(),
                             "settings": settings, "progress": None}  # fmt: skip
        try:
            await self._save(job_id)  # before the client has the id: it must survive a restart
        except OSError as err:
            del self.jobs[job_id]
            raise v.RequestError(
                503, "the job store cannot save jobs right now (its storage failed); retry later"
            ) from err
        return job_id

    async def update(self, job_id: str, **fields: Any) -> None:
        """A worker's report: progress (kept in memory) and other fields (saved when changed).

        A finished or evicted job's late reports are dropped.
        """
        job = self.jobs.get(job_id)
        if job is None or job["status"] in FINAL:
            return
        self.heartbeats[job_id] = time.monotonic()
        changed = any(job.get(key) != val for key, val in fields.items() if key != "progress")
        job.update(fields)
        if changed:
            await self._save(job_id)

    async def finish(self, job_id: str, png: bytes, info: dict) -> None:
        """A job's result. Taken even after the job was marked failed: a result is a result."""
        if job_id in self.jobs:
            self.results[job_id] = png
            self.jobs[job_id].update(status="done", finished=time.time(), info=info)
            self.heartbeats.pop(job_id, None)
            await self._save(job_id, png)

    async def abandon(self, job_id: str, reason: str) -> None:
        """Mark an unfinished job failed, with the reason (its worker could not run it)."""
        job = self.jobs.get(job_id)
        if job is not None and job["status"] not in FINAL:
            job.update(status="failed", error=reason, finished=time.time())
            self.heartbeats.pop(job_id, None)
            await self._save(job_id)

    async def get(self, job_id: str) -> dict | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        last = self.heartbeats.get(job_id)
        if job["status"] == "running" and last and time.monotonic() - last > HEARTBEAT_TIMEOUT_S:
            await self.abandon(
                job_id,
                f"its Gatys worker stopped reporting for {HEARTBEAT_TIMEOUT_S:g} s (its replica "
                f"or node was lost); submit it again",
            )
        return dict(job)

    async def result(self, job_id: str) -> bytes | None:
        job = self.jobs.get(job_id)
        if job is None or job["status"] != "done":
            return None
        if job_id not in self.results and self.jobs_dir:  # finished before this replica started
            self.results[job_id] = await asyncio.to_thread(
                storage.read_bytes, self._path(job_id, "png")
            )
        return self.results.get(job_id)


def _delete(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    with contextlib.suppress(FileNotFoundError):  # a failed job has no result file
        fs.delete_file(path)
