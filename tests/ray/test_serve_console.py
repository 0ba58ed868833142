"""What ``genart serve`` tells its user, from a real ``genart serve`` process on its own Ray:
the curl examples as soon as the app answers (not once the slowest deployment runs), a dead
replica in genart's words, and its stopping."""

import signal
import time
import urllib.request

import psutil
import pytest
import yaml
from test_isolation import Command

from genart.serve import demo
from genart.serve.ray_settings import free_ports

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LIGHT = {"ray_actor_options": {"num_cpus": 0.1},
         "autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}  # fmt: skip
START_TIMEOUT_S = 300


def wait_for(command: Command, text: str, timeout_s: float) -> str:
    """The command's output once it holds ``text``; fails if it exits or time runs out first."""
    deadline = time.monotonic() + timeout_s
    while text not in (output := command.output):
        assert command.process.poll() is None, output
        assert time.monotonic() < deadline, f"no {text!r} in:\n{output}"
        time.sleep(0.5)
    return output


def replica_process(root_pid: int, deployment: str) -> psutil.Process:
    """The process of the one replica of ``deployment`` under ``root_pid`` (``ray::`` title)."""
    (found,) = [p for p in psutil.Process(root_pid).children(recursive=True)
                if f":{deployment}" in " ".join(p.cmdline())]  # fmt: skip
    return found


def test_examples_when_the_app_answers_a_dead_replica_in_genarts_words_and_stopping(tmp_path):
    model, overrides = demo.DEMO_MODELS["dcgan"]
    demo.export_initialised(model, overrides, tmp_path / "cat" / "dcgan",
                            checkpoints=tmp_path / "checkpoints")  # fmt: skip
    (port,) = free_ports(1)
    config = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{
            "name": "genart", "route_prefix": "/", "import_path": "genart.serve.builder:build_app",
            "args": {"catalogue": {"uri": str(tmp_path / "cat"), "dcgan": "dcgan"},
                     "gatys": {"jobs_dir": str(tmp_path / "jobs"), "vgg_weights": "random",
                               "config": {"arch": "vgg16"}}},
            "deployments": [
                {"name": "Ingress", **LIGHT}, {"name": "LatentModels", **LIGHT},
                {"name": "ImageModels", **LIGHT},
                {"name": "JobStore", "ray_actor_options": {"num_cpus": 0}},
                # More CPUs than the machine has: this deployment never starts.
                {"name": "GatysWorker", **LIGHT, "ray_actor_options": {"num_cpus": 512}},
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    serving = Command(tmp_path, "serve", "serve", "--config", str(path))
    try:
        output = wait_for(serving, "Ctrl-C stops it.", START_TIMEOUT_S)
        assert f"genart is serving at http://127.0.0.1:{port}/" in output
        (still,) = [x for x in output.splitlines() if x.startswith("Still starting: ")]
        assert "GatysWorker" in still and still.endswith("requests for them wait until they run.")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            assert reply.status == 200

        replica_process(serving.process.pid, "JobStore").kill()  # as the OOM killer would
        output = wait_for(serving, "Serve starts a new replica in its place", 120)
        (line,) = [x for x in output.splitlines() if "deployment JobStore" in x]
        assert line.startswith("genart: warning: replica ") and "application genart" in line
        assert "A worker died" not in output and "\x1b[" not in output  # Ray's coloured text

        serving.process.send_signal(signal.SIGTERM)  # as Ctrl-C
        assert serving.wait(120) == 0, serving.output
        assert serving.output.rstrip().endswith("genart serve stopped"), serving.output
    finally:
        serving.stop()
