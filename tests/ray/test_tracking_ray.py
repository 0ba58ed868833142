"""MLflow tracking end to end: a real `mlflow server` (SQLite backend, on 127.0.0.1) started
and stopped here, a tiny training run and its resume, a two-trial sweep, and the embedded
store of `genart train --tracking local`."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from genart import config, tracking
from genart.cli import main
from genart.data import synthetic
from genart.train.launch import configure, fit
from genart.tune import driver, settings, space

pytestmark = pytest.mark.ray

SMOKE = Path(__file__).resolve().parents[2] / "jobs" / "dcgan-smoke.yaml"  # tiny DCGAN
TINY = ["scaling.workers=1", "scaling.cpus_per_worker=0.5"]
SERVER_START_S = 240  # the server's first start sets up its tables: a minute on a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tracking server with a SQLite backend and its artifacts in a temporary folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    # Its job runner (GenAI scorers) needs packages genart does not install.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()}")
        time.sleep(0.5)
    yield uri
    os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn workers
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return synthetic.generate("digits", tmp_path_factory.mktemp("data") / "digits", n=64, size=16)


def train(digits, storage, name, steps, *extra):
    overrides = [*TINY, f"data.uri={digits}", f"train.steps={steps}", f"run.name={name}",
                 f"run.storage_path={storage}", *extra]  # fmt: skip
    result = fit(configure("dcgan", str(SMOKE), overrides))  # as genart train resolves it
    assert result.error is None, result.error
    return result


def steps_of(mlflow_client, run_id, key):
    return [m.step for m in mlflow_client.get_metric_history(run_id, key)]


def artifacts(mlflow_client, run_id, path=None):
    return {a.path for a in mlflow_client.list_artifacts(run_id, path)}


def test_a_run_and_its_resume_are_one_mlflow_run(ray_local, server, digits, tmp_path, capsys):
    train(digits, tmp_path, "tracked", 4, f"run.tracking_uri={server}")
    record = tracking.read_record(str(tmp_path / "tracked"))
    assert record.tracking_uri == server
    mlflow_client = tracking.client(server)
    run = mlflow_client.get_run(record.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == "4" and run.data.params["model"] == "dcgan"
    assert steps_of(mlflow_client, record.run_id, "loss_g") == [2, 4]
    assert "eval_swd" in run.data.metrics
    assert {"samples", "loss_curve.png", "metrics.json", "config.yaml", "export"} <= artifacts(
        mlflow_client, record.run_id
    )
    assert "samples/step_000004.png" in artifacts(mlflow_client, record.run_id, "samples")
    (first,) = mlflow_client.search_model_versions(f"run_id='{record.run_id}'")
    assert first.name == "genart-dcgan"

    train(digits, tmp_path, "tracked", 8, "run.resume=true")  # the saved config tracks on
    assert tracking.read_record(str(tmp_path / "tracked")) == record
    assert steps_of(mlflow_client, record.run_id, "loss_g") == [2, 4, 6, 8]
    assert mlflow_client.get_run(record.run_id).info.status == "FINISHED"
    versions = mlflow_client.search_model_versions(f"run_id='{record.run_id}'")
    latest = max(versions, key=lambda v: int(v.version))
    assert len(versions) == 2 and latest.tags["genart.step"] == "8"
    local = tracking.download_model(f"models:/genart-dcgan/{latest.version}", server,
                                    str(tmp_path / "download"))  # fmt: skip
    assert json.loads((local / "export.json").read_text())["source"]["step"] == 8
    assert (local / "G.pt").is_file()
    assert "View run" not in capsys.readouterr().out  # MLflow's links to the run stay out


def test_a_sweep_is_a_parent_run_with_a_child_per_trial(ray_local, server, digits, tmp_path):
    searched = space.parse("dcgan", {"dcgan.lr_g": {"grid": [1e-4, 2e-4]}})
    overrides = [*TINY, f"data.uri={digits}", "train.steps=4", "train.eval_every=4",
                 "run.name=sweep", f"run.storage_path={tmp_path}",
                 f"run.tracking_uri={server}"]  # fmt: skip
    cfg = config.load("dcgan", SMOKE, overrides)
    summary = driver.sweep(cfg, searched, settings.Settings(scheduler="fifo", max_concurrent=2))
    assert summary.best is not None
    parent = tracking.read_record(str(tmp_path / "sweep"))
    mlflow_client = tracking.client(server)
    run = mlflow_client.get_run(parent.run_id)
    assert run.info.status == "FINISHED" and "best_eval_swd" in run.data.metrics
    assert {"results.csv", "best.yaml"} <= artifacts(mlflow_client, parent.run_id)
    children = mlflow_client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'"
    )
    assert sorted(c.data.tags["genart.trial"] for c in children) == sorted(summary.table["trial"])
    assert sorted(c.data.params["dcgan.lr_g"] for c in children) == ["0.0001", "0.0002"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert steps_of(mlflow_client, child.info.run_id, "loss_g") == [2, 4]

    cfg.run.resume = True  # a finished sweep resumed: the same parent, no new children
    driver.sweep(cfg, searched, settings.Settings(scheduler="fifo", max_concurrent=2))
    assert tracking.read_record(str(tmp_path / "sweep")) == parent
    assert mlflow_client.get_run(parent.run_id).info.status == "FINISHED"
    again = mlflow_client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'"
    )
    assert sorted(c.info.run_id for c in again) == sorted(c.info.run_id for c in children)


def test_tracking_local_needs_no_server(ray_local, digits, tmp_path, capsys):
    args = ["train", "dcgan", "--config", str(SMOKE), "--data", str(digits), "--steps", "2",
            "--name", "solo", "--storage", str(tmp_path), "--tracking", "local",
            "--workers", "1"]  # fmt: skip
    assert main(args) == 0
    store = tracking.resolve_uri("local", str(tmp_path / "solo"))
    record = tracking.read_record(str(tmp_path / "solo"))
    assert record.tracking_uri == store and (tmp_path / "solo" / "mlflow" / "mlflow.db").is_file()
    mlflow_client = tracking.client(store)
    assert steps_of(mlflow_client, record.run_id, "loss_g") == [2]
    assert (tmp_path / "solo" / "mlflow" / "artifacts").is_dir()  # artifacts beside the store
    out = capsys.readouterr().out
    assert f"MLflow run {record.run_id}; its export is models:/genart-dcgan/1" in out
    assert "mlflow.store.db.utils" not in out  # MLflow's own info lines stay out
