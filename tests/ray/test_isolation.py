"""Several genart commands at once on one machine: each keeps to a Ray of its own, and to
loopback.

Two ``genart train`` runs and a ``genart serve`` start side by side, as separate processes; each
must start its own private Ray (never join another's, whose end would take it down), finish,
and leave Ray Train's placement group cleaner nothing to complain about: beside another Ray,
Ray's own cleaner asked the wrong cluster and removed a live run's placement group. Nothing they
start may listen beyond loopback (genart.compat.loopback): sampled while they run.
"""

import ipaddress
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from localcloud import listening, terminate_tree

from genart.compat.isolation import get_default_ray_temp_dir
from genart.data import synthetic
from genart.serve import ray_settings

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
GENART = Path(sys.executable).parent / "genart"
SMOKE = ROOT / "jobs" / "dcgan-smoke.yaml"
TIMEOUT_S = 420
LOGS_LINE = re.compile(r"Ray's logs are in (\S+)/logs")
# What Ray Train's own cleaner writes when it asks another cluster, or none, about a run.
CLEANER_TROUBLE = ("Failed to query Ray Train Controller", "Found multiple active Ray instances",
                   "Cleaning up placement group")  # fmt: skip


class Command:
    """A ``genart`` process with its output in a file."""

    def __init__(self, workdir: Path, name: str, *args: str):
        # Each chooses its own Serve ports and joins no cluster: drop what this session set.
        drop = {"RAY_ADDRESS", "GENART_VERBOSE", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S",
                *ray_settings.HAPROXY_ENV, *ray_settings.PORT_VARIABLES}  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in drop}
        self.path = workdir / f"{name}.log"
        with self.path.open("w") as log:
            self.process = subprocess.Popen([str(GENART), *args], cwd=workdir, env=env,
                                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    @property
    def output(self) -> str:
        return self.path.read_text()

    def wait(self, timeout_s: float = TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.path.name} still running:\n{self.output}") from None

    def session(self) -> Path:
        """The session dir of the Ray this command started (it says where its logs are)."""
        found = LOGS_LINE.search(self.output)
        assert found, self.output
        return Path(found.group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            terminate_tree(self.process.pid)


class Listeners(threading.Thread):
    """Samples the listening TCP sockets of some commands' process trees until :meth:`stop`."""

    INTERVAL_S = 0.5

    def __init__(self, commands: list[Command]):
        super().__init__(daemon=True)
        self.pids = [command.process.pid for command in commands]
        self.seen: set[tuple[str, int, str]] = set()
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.wait(self.INTERVAL_S):
            for pid in self.pids:
                self.seen |= listening(pid)

    def stop(self) -> set[tuple[str, int, str]]:
        self.stopping.set()
        self.join()
        return self.seen


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 and ::1, also as an IPv4-mapped IPv6 address (a dual-stack socket's)."""
    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None)
                                       and address.ipv4_mapped.is_loopback)  # fmt: skip


def healthy(url: str, serving: Command, timeout_s: float = TIMEOUT_S) -> bool:
    """Whether ``url`` answers /healthz before ``serving`` exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and serving.process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    return False


@pytest.mark.slow
def test_trainings_and_serving_side_by_side_keep_to_their_own_ray(tmp_path):
    data = synthetic.generate("digits", tmp_path / "digits", n=96, size=16)
    (port,) = ray_settings.free_ports(1)
    # Serve first: it is the slowest to come up, so the trainings start while it does.
    serving = Command(tmp_path, "serve", "serve", "--port", str(port),
                      "--demo-dir", str(tmp_path / "demo"))  # fmt: skip
    runs = [Command(tmp_path, f"train-{i}", "train", "dcgan", "--config", str(SMOKE),
                    "--data", str(data), "--workers", "1", "--steps", "4", "--name", f"run-{i}",
                    "--storage", str(tmp_path / f"runs-{i}")) for i in range(2)]  # fmt: skip
    commands = [serving, *runs]
    sockets = Listeners(commands)
    try:
        for i, run in enumerate(runs):
            assert run.wait() == 0, run.output
            assert f"[run-{i}] step 4/4" in run.output, run.output  # progress reaches the console
            assert (tmp_path / f"runs-{i}" / f"run-{i}" / "metrics.json").is_file()
        assert healthy(f"http://127.0.0.1:{port}", serving), serving.output
        sockets.stop()
        serving.process.terminate()  # as Ctrl-C: deletes its application, then exits
        assert serving.wait(120) == 0, serving.output
    finally:
        sockets.stop()
        for command in commands:
            command.stop()
    # Sampled while Ray, the trainings' process groups and Serve's HAProxy and replicas listened.
    titles = {title for _, _, title in sockets.seen}
    for process in ("gcs_server", "raylet", "ray::RayTrainWorker", "haproxy", "ray::ServeReplica"):
        assert any(title.startswith(process) for title in titles), (process, titles)
    exposed = {(ip, port): title for ip, port, title in sorted(sockets.seen) if not is_loopback(ip)}
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert "started a private local Ray" in serving.output, serving.output
    sessions = [command.session() for command in commands]
    assert len(set(sessions)) == 3, sessions  # nobody joined anybody
    default = Path(get_default_ray_temp_dir())
    assert all(default not in session.parents for session in sessions), sessions
    for command, session in zip(commands, sessions):
        for log in (session / "logs").glob("*"):
            if log.is_file():
                text = log.read_text(errors="replace")
                trouble = [line for line in CLEANER_TROUBLE if line in text]
                assert not trouble, f"{command.path.name}: {log}: {trouble}"
        assert not any(line in command.output for line in CLEANER_TROUBLE), command.output


def test_the_cleaner_frees_the_placement_group_of_a_dead_controller_only(ray_local):
    """Ray Train's cleaner with genart's liveness check, on a stand-in for the controller."""
    ray = ray_local
    from ray.util.placement_group import placement_group, placement_group_table

    from genart.compat.isolation import OwnClusterCleaner

    @ray.remote(num_cpus=0)
    class Controller:
        def actor_id(self) -> str:
            return ray.get_runtime_context().get_actor_id()

    controller = Controller.remote()
    group = placement_group([{"CPU": 0.01}])
    ray.get(group.ready(), timeout=60)
    cleaner = ray.remote(num_cpus=0)(OwnClusterCleaner).remote(
        ray.get(controller.actor_id.remote()), 0.1, 5, None
    )
    ray.get(cleaner.register_placement_group.remote(group))
    ray.get(cleaner.start_monitoring.remote())
    time.sleep(2)  # many checks while the controller lives
    assert placement_group_table(group)["state"] == "CREATED"
    ray.kill(controller)
    deadline = time.monotonic() + 60
    while placement_group_table(group)["state"] != "REMOVED":
        assert time.monotonic() < deadline, placement_group_table(group)
        time.sleep(0.2)
