"""genart.cluster.wait_for_jobs: retries only while the cluster is starting, then gives up.

A scripted probe and a fake clock stand in for the job API; the real one is exercised by the
`ray start` fixture of tests/ray/test_jobs.py, which waits with `genart cluster-ready`.
"""

import pytest
import requests

from genart.cli import main
from genart.cluster import wait_for_jobs

AGENT_MISSING = RuntimeError(
    "Request failed with status code 500: No available agent to submit job, please try again later."
)


class FakeCluster:
    """Answers each probe with the next scripted outcome (an exception or an id) on a fake clock."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.now = 0.0
        self.probes = 0

    def probe(self, address: str) -> str:
        self.probes += 1
        self.now += 10.0  # a refused submission waits 10 s on the server
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, timeout_s: float = 300.0) -> str:
        return wait_for_jobs("http://head:8265", timeout_s, 2.0, self.probe, lambda: self.now,
                             self.sleep)  # fmt: skip


def test_retries_while_the_api_or_the_agent_is_missing():
    cluster = FakeCluster(
        ConnectionError("Failed to connect to Ray at address: http://head:8265."),
        requests.exceptions.ConnectionError("connection reset"),
        AGENT_MISSING,
        AGENT_MISSING,
        "genart-ready-1",
    )
    assert cluster.wait() == "genart-ready-1"
    assert cluster.probes == 5


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("Request failed with status code 400: bad entrypoint"),
        PermissionError("token"),
        FileNotFoundError("auth token"),
    ],
    ids=["other-server-error", "auth", "missing-file"],
)
def test_other_errors_are_raised_at_once(error):
    cluster = FakeCluster(error)
    with pytest.raises(type(error)):
        cluster.wait()
    assert cluster.probes == 1


def test_gives_up_at_the_deadline_naming_the_address_and_the_last_error():
    cluster = FakeCluster(AGENT_MISSING)
    with pytest.raises(TimeoutError, match=r"http://head:8265.*No available agent"):
        cluster.wait(timeout_s=60)
    # Probes start at 0, 12, ..., 60 s (10 s refused + 2 s pause); none after the deadline.
    assert cluster.probes == 6
    assert cluster.now == 70


def test_cli_reports_a_timeout_as_exit_1(monkeypatch, capsys):
    def no_agent(address, timeout_s):
        raise TimeoutError(f"the job API at {address} took no job in {timeout_s:.0f} s")

    monkeypatch.setattr("genart.cluster.wait_for_jobs", no_agent)
    assert main(["cluster-ready", "--address", "http://head:8265", "--timeout", "5"]) == 1
    assert "took no job in 5 s" in capsys.readouterr().err
