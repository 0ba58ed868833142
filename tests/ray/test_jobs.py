"""The jobs/ scripts through the real `ray job submit` against a `ray start --head` cluster.

The cluster is a separate set of processes on loopback with its own ports, temp dir and auth
token, so it cannot disturb the shared in-process Ray of the other tests or anyone else's Ray
on this machine. It is stopped by terminating exactly the processes it started: `ray stop`
would kill every Ray on the machine.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from localcloud import terminate_tree

from genart.serve.ray_settings import free_ports
from genart.train import checkpoint

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180
JOB_TIMEOUT_S = 420
# `ray job status` says "Job 'x' succeeded|was stopped|failed" or "Status for job 'x': RUNNING".
STATUS_LINE = r"Job '[^']+' (succeeded|was stopped|failed)|Status for job '[^']+': (\w+)"
STATUS_WORDS = {"succeeded": "SUCCEEDED", "was stopped": "STOPPED", "failed": "FAILED"}
RUNTIME_ENV = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1"}}


class Head:
    """A `ray start --head --block` process tree; ``env`` is what clients need to reach it."""

    def __init__(self, workdir: Path):
        gcs, dashboard, client, agent = free_ports(4)
        token = workdir / "auth_token"
        token.write_text(os.urandom(16).hex())
        self.address = f"http://127.0.0.1:{dashboard}"
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # `python` in jobs = this venv
            "RAY_AUTH_MODE": "token",  # the CLI needs it to send the token ray start wrote
            "RAY_AUTH_TOKEN_PATH": str(token),  # ours, not the shared ~/.ray/auth_token
            "RAY_ADDRESS": self.address,
        }
        # A short temp dir: Ray's Unix socket paths must stay under 108 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")
        command = [
            str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent}", "--num-cpus=4",
            "--object-store-memory=300000000", f"--temp-dir={self.temp_dir}",
        ]  # fmt: skip
        env = {k: v for k, v in self.env.items() if k != "RAY_ADDRESS"}
        with (workdir / "ray-start.log").open("w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_for_job_api()
            self._wait_for_job_agent()
        except BaseException:
            self.stop()  # no fixture teardown runs for a head that never came up
            raise

    def _wait_for_job_api(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "ray start exited; see ray-start.log"
            try:
                urllib.request.urlopen(f"{self.address}/api/version", timeout=5)
                return
            except urllib.error.HTTPError:
                return  # it answers (401: token auth is on)
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"no job API at {self.address} after {START_TIMEOUT_S} s")

    def _wait_for_job_agent(self) -> None:
        """`genart cluster-ready`: submit a no-op job until the head's dashboard agent takes it.

        The job API answers before the agent that runs jobs has registered; a submission in
        between fails with "No available agent to submit job" after 10 s (a CI run on a busy
        2-core machine lost both tests to that).
        """
        done = subprocess.run(
            [str(BIN / "genart"), "cluster-ready", "--timeout", str(START_TIMEOUT_S)],
            env=self.env, text=True, capture_output=True, timeout=START_TIMEOUT_S + 60,
        )  # fmt: skip
        if done.returncode != 0:
            agent_log = Path(self.temp_dir, "session_latest", "logs", "dashboard_agent.log")
            tail = agent_log.read_text()[-4000:] if agent_log.exists() else "(no agent log)"
            raise RuntimeError(f"{done.stdout}{done.stderr}\ndashboard_agent.log:\n{tail}")
        assert "takes jobs" in done.stdout, done.stdout

    def ray(self, *args: str, timeout: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run a `ray` CLI command against this cluster."""
        return subprocess.run([str(BIN / "ray"), *args], env=self.env, cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout)  # fmt: skip

    def submit(self, submission_id: str, *entrypoint: str, wait: bool = True):
        """`ray job submit` of ``entrypoint`` with the repo as working dir."""
        return self.ray(
            "job", "submit", "--working-dir", ".", "--submission-id", submission_id,
            "--runtime-env-json", json.dumps(RUNTIME_ENV), *([] if wait else ["--no-wait"]),
            "--", *entrypoint,
        )  # fmt: skip

    def status(self, submission_id: str) -> str:
        """The job's status, from the line `ray job status` logs (to stderr)."""
        done = self.ray("job", "status", submission_id, timeout=120)
        line = re.search(STATUS_LINE, done.stdout + done.stderr)
        assert line, done.stdout + done.stderr
        final, other = line.groups()
        return STATUS_WORDS[final] if final else other

    def stop(self) -> None:
        terminate_tree(self.process.pid)
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # session logs: kept until here


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    cluster = Head(tmp_path_factory.mktemp("head"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    return {"data": root / "digits", "runs": root / "runs"}


def train(places, name: str, steps: int, *extra: str) -> list[str]:
    return [
        "python", "jobs/train.py", "--config", "jobs/dcgan-smoke.yaml",
        "--data", str(places["data"]), "--storage", str(places["runs"]),
        "--name", name, "--steps", str(steps), *extra,
    ]  # fmt: skip


def logged_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]


def test_fresh_cluster_makes_data_and_trains(head, places):
    make_data = ["python", "jobs/make_data.py", "digits", "--out", str(places["data"]),
                 "--n", "96", "--size", "16"]  # fmt: skip
    # One job, two steps: the CLI quotes each entrypoint word (shlex.join), so `&&` needs a shell.
    steps = f"{shlex.join(make_data)} && {shlex.join(train(places, 'first', 8))}"
    done = head.submit("data-and-train", "bash", "-c", steps)
    assert done.returncode == 0, done.stdout + done.stderr
    assert head.status("data-and-train") == "SUCCEEDED"
    run = places["runs"] / "first"
    assert json.loads((run / "metrics.json").read_text())["eval_swd"] > 0
    assert checkpoint.verify(checkpoint.latest_complete(str(run)))["step"] == 8
    assert logged_steps(run) == [2, 4, 6, 8]


def test_stopped_job_resumes_when_resubmitted(head, places):
    run = places["runs"] / "stopped"
    started = head.submit("long", *train(places, "stopped", 5000), wait=False)
    assert started.returncode == 0, started.stdout + started.stderr
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while checkpoint.latest_complete(str(run)) is None:
        assert time.monotonic() < deadline and head.status("long") in ("PENDING", "RUNNING")
        time.sleep(0.5)
    stopped = head.ray("job", "stop", "long")  # SIGTERM to the driver, SIGKILL if it lingers
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert head.status("long") == "STOPPED"
    last = checkpoint.verify(checkpoint.latest_complete(str(run)))["step"]

    done = head.submit("resume", *train(places, "stopped", last + 4, "--resume"))
    assert done.returncode == 0, done.stdout + done.stderr
    resumed_from = int(re.search(r'"resumed_from": (\d+)', done.stdout).group(1))
    assert 4 <= resumed_from <= last and resumed_from % 4 == 0
    assert logged_steps(run) == list(range(2, last + 5, 2))  # none lost, none repeated
