"""Waiting until a Ray cluster takes jobs, so the first ``ray job submit`` is not refused.

Right after ``ray start --head`` (or ``ray up``) the job API answers before the head's
dashboard agent, which runs the jobs, has registered. A submission in between waits 10 s on
the server and fails with "No available agent to submit job, please try again later"
(Ray 2.60; on a busy machine this can last well after the API came up).
Nothing tells a client when the agent is there except a submission that succeeds, so
:func:`wait_for_jobs` submits a no-op job (``true``) until one is taken.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

AGENT_MISSING = "No available agent"  # Ray's "try again later" while the agent registers
PROBE_ENTRYPOINT = "true"  # the no-op job that proves the agent takes jobs
AGENT_LOG = "/tmp/ray/session_latest/logs/dashboard_agent.log"  # on the head, by default


def submit_noop(address: str) -> str:
    """Submit the no-op probe job to the job API at ``address``; its submission id."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)  # raises ConnectionError until the API answers
    return client.submit_job(
        entrypoint=PROBE_ENTRYPOINT, submission_id=f"genart-ready-{secrets.token_hex(4)}"
    )


def is_transient(err: Exception) -> bool:
    """True for the errors of a cluster still starting: no job API yet, or no agent yet.

    The client turns a refused connection into ConnectionError while it checks the API's
    version; one during the submission itself arrives as requests' own ConnectionError.
    """
    import requests

    if isinstance(err, ConnectionError | requests.exceptions.ConnectionError):
        return True
    return isinstance(err, RuntimeError) and AGENT_MISSING in str(err)


def wait_for_jobs(
    address: str,
    timeout_s: float = 300.0,
    interval_s: float = 2.0,
    probe: Callable[[str], str] = submit_noop,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Probe ``address`` until a job is accepted; the accepted probe's submission id.

    Retries only while the cluster is still starting (:func:`is_transient`); any other error,
    such as a missing auth token, is raised at once. Raises TimeoutError after ``timeout_s``.
    """
    deadline = clock() + timeout_s
    while True:
        try:
            return probe(address)
        except Exception as err:  # sorted by is_transient; the rest is re-raised
            if not is_transient(err):
                raise
            last = err
        if clock() + interval_s > deadline:
            raise TimeoutError(
                f"the job API at {address} took no job in {timeout_s:.0f} s; last error: "
                f"{last}. If the API answers, look at the head's agent log ({AGENT_LOG})."
            )
        sleep(interval_s)
