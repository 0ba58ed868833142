"""What a run loses when a worker process or a whole node dies: nothing.

A training worker killed with SIGKILL, or a node removed from a (simulated) two-node cluster,
stops the worker group; with ``run.max_failures=1`` Ray Train restarts it from the newest
complete checkpoint, and the run ends at its planned step with every step logged exactly once.
(A partial checkpoint in S3 is covered in test_s3.py, one in a local folder in test_train.py.)
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from localcloud import descendants, private_ray

from genart import config
from genart.data import synthetic
from genart.train import checkpoint
from genart.train.launch import fit

pytestmark = pytest.mark.ray

SMOKE = Path(__file__).resolve().parents[2] / "jobs" / "dcgan-smoke.yaml"  # tiny DCGAN
STEPS = 60  # long enough that the first checkpoint (step 4) comes well before the end
WAIT_S = 300
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's registry of checkpoints
STORE = 200 * 1024**2  # object store bytes per simulated node


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return synthetic.generate("digits", tmp_path_factory.mktemp("data") / "digits", n=96, size=16)


def tiny(digits, storage, name: str, cpus_per_worker: float = 1.0) -> config.Config:
    return config.load("dcgan", SMOKE, [
        f"data.uri={digits}", f"train.steps={STEPS}", "train.sample_every=20",
        f"scaling.cpus_per_worker={cpus_per_worker}", "run.max_failures=1",
        f"run.name={name}", f"run.storage_path={storage}",
    ])  # fmt: skip


class Background:
    """``fit(cfg)`` in a thread, so the test can break things while it runs."""

    def __init__(self, cfg: config.Config):
        self.result = None
        self.thread = threading.Thread(target=self._fit, args=(cfg,), daemon=True)
        self.thread.start()

    def _fit(self, cfg):
        self.result = fit(cfg)

    def join(self):
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), f"fit() still running after {WAIT_S} s"
        assert self.result is not None and self.result.error is None, self.result
        return self.result


def wait_for_checkpoint(run_dir, background: Background) -> None:
    """Block until Ray Train has registered a complete checkpoint of the run.

    Registered, not just written: a worker group that dies between the two restarts from the
    previous registered checkpoint (here: from scratch).
    """
    deadline = time.monotonic() + WAIT_S
    while not (run_dir / SNAPSHOT).exists() or checkpoint.latest_complete(str(run_dir)) is None:
        assert background.thread.is_alive(), "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


def train_workers() -> list:
    """This test process's Ray Train worker processes (not other Ray instances' on the host)."""
    found = []
    for process in descendants(os.getpid()):
        try:
            if "RayTrainWorker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # it exited (or is a zombie) since it was listed
            continue
    return found


def assert_finished_without_loss(result, run_dir):
    resumed_from = result.return_value["resumed_from"]
    assert resumed_from is not None and resumed_from >= 4 and resumed_from % 4 == 0
    assert checkpoint.verify(checkpoint.latest_complete(str(run_dir)))["step"] == STEPS
    logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert logged == list(range(2, STEPS + 1, 2))  # none lost, none repeated


def test_sigkilled_worker_restarts_from_last_checkpoint(ray_local, digits, tmp_path):
    background = Background(tiny(digits, tmp_path, "killed"))
    deadline = time.monotonic() + WAIT_S
    while len(workers := train_workers()) < 2:  # found first: the kill must come right away
        assert time.monotonic() < deadline and background.thread.is_alive(), workers
        time.sleep(0.2)
    wait_for_checkpoint(tmp_path / "killed", background)
    os.kill(workers[1].pid, signal.SIGKILL)
    assert_finished_without_loss(background.join(), tmp_path / "killed")


def test_lost_node_run_waits_and_recovers_when_capacity_returns(digits, tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    # Cluster writes its address to /tmp/ray/ray_current_cluster, where every later ray.init()
    # on this machine (anyone's) would find it and connect instead of starting its own Ray.
    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)

    # One 2.5-CPU worker fits on each node but two fit on neither: losing a node leaves too
    # little capacity, and the run must wait (fixed-size ScalingConfig: not elastic). The head's
    # spare 1.5 CPUs run Ray Data's read tasks.
    with private_ray():
        head = {"num_cpus": 4, "include_dashboard": False, "object_store_memory": STORE}
        cluster = Cluster(initialize_head=True, connect=True, head_node_args=head)
        node = cluster.add_node(num_cpus=3, object_store_memory=STORE)
        try:
            background = Background(tiny(digits, tmp_path, "node", cpus_per_worker=2.5))
            wait_for_checkpoint(tmp_path / "node", background)
            cluster.remove_node(node)
            time.sleep(5)
            assert background.thread.is_alive(), "finished on one node: capacity was not lost"
            cluster.add_node(num_cpus=3, object_store_memory=STORE)  # main thread only
            assert_finished_without_loss(background.join(), tmp_path / "node")
        finally:
            ray.shutdown()  # the driver first: Cluster refuses to remove the node it is on
            cluster.shutdown()
