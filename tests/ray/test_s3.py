"""Data, checkpoints, resume and exported generators in S3, against a local S3 server.

moto runs in server mode on loopback: boto3, pyarrow and Ray all talk real HTTP to it through
the standard AWS variables (``AWS_ENDPOINT_URL`` included), as on a cluster. Ray's workers
inherit their environment when Ray starts, so this module runs its own Ray started with those
variables set (the shared one is restarted afterwards).
"""

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from localcloud import Faults, environment, moto_s3, private_ray, s3_client

from genart import config, storage
from genart import export as exports
from genart.data import pipelines
from genart.train import checkpoint
from genart.train.launch import fit
from genart.tune import driver, settings, space

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "jobs" / "dcgan-smoke.yaml"  # the tiny DCGAN recipe
BUCKET = "genart-test"
DATA = f"s3://{BUCKET}/data/digits"
RUNS = f"s3://{BUCKET}/runs"
FAULTS = Faults()  # in front of the module's S3 server, disarmed unless a test arms it


@pytest.fixture(scope="module")
def s3():
    """A bucket holding 96 digits (drawn by jobs/make_data.py) and a Ray that can reach it."""
    with moto_s3(BUCKET, FAULTS) as env, environment(env):
        script = [sys.executable, "jobs/make_data.py", "digits", "--out", DATA, "--n", "96",
                  "--size", "16"]  # fmt: skip
        subprocess.run(script, cwd=ROOT, check=True, capture_output=True, timeout=300)
        with private_ray(num_cpus=4, include_dashboard=False, log_to_driver=False,
                         object_store_memory=300 * 1024**2):  # fmt: skip
            yield env


def keys(env, prefix: str) -> list[str]:
    pages = s3_client(env).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def read(env, key: str) -> bytes:
    return s3_client(env).get_object(Bucket=BUCKET, Key=key)["Body"].read()


def logged_steps(env, run: str) -> list[int]:
    lines = read(env, f"runs/{run}/metrics.jsonl").decode().splitlines()
    return [json.loads(line)["step"] for line in lines]


def run(name: str, steps: int, *extra: str):
    cfg = config.load(
        "dcgan",
        SMOKE,
        [
            f"data.uri={DATA}",
            f"train.steps={steps}",
            f"run.name={name}",
            f"run.storage_path={RUNS}",
            *extra,
        ],
    )
    result = fit(cfg)
    assert result.error is None, result.error
    return result


def test_images_and_parquet_read_from_s3(s3):
    assert sum(k.endswith(".png") for k in keys(s3, "data/digits/images/")) == 96
    folder = pipelines.images(DATA, size=16, channels=1).take_all()
    assert len(folder) == 96 and folder[0]["image"].shape == (1, 16, 16)
    shards = pipelines.pack_parquet(DATA, f"s3://{BUCKET}/data/digits-parquet", rows_per_file=64)
    assert len(shards) == 2 and all(s.startswith("s3://") for s in shards)
    packed = pipelines.images(f"s3://{BUCKET}/data/digits-parquet", size=16, channels=1)
    images = [row["image"] for row in packed.take_all()]
    assert len(images) == 96
    assert all((a == b["image"]).all() for a, b in zip(images, folder))


def test_train_checkpoint_and_resume_in_s3(s3):
    FAULTS.arm("state.pt", times=1)  # every request writing a checkpoint's state fails once
    try:
        first = run("digits", 4)
    finally:
        injected = FAULTS.injected
        FAULTS.arm("", times=0)
    assert injected > 0  # the failed writes were retried: the checkpoint verifies below
    assert first.return_value["files"]["run"] == f"{RUNS}/digits"
    resumed = run("digits", 8, "run.resume=true")
    assert resumed.return_value["resumed_from"] == 4
    assert logged_steps(s3, "digits") == [2, 4, 6, 8]
    names = keys(s3, "runs/digits/")
    for name in ("metrics.json", "config.yaml", "loss_curve.png", "samples/step_000008.png"):
        assert f"runs/digits/{name}" in names, name
    folders = [d for d in storage.list_dirs(f"{RUNS}/digits") if d.startswith("checkpoint_")]
    steps = [checkpoint.verify(checkpoint.resolve(f"{RUNS}/digits/{d}"))["step"] for d in folders]
    assert sorted(steps) == [4, 8]


def test_partial_checkpoint_in_s3_is_never_restored(s3):
    newest = checkpoint.latest_complete(f"{RUNS}/digits")
    assert checkpoint.verify(newest)["step"] == 8
    # What an upload cut short leaves: the step-8 state object holds only its first bytes.
    state_key = next(k for k in keys(s3, "runs/digits/checkpoint_") if k.endswith("/state.pt")
                     and read(s3, k) == (newest / checkpoint.STATE).read_bytes())  # fmt: skip
    s3_client(s3).put_object(Bucket=BUCKET, Key=state_key, Body=read(s3, state_key)[:100])
    resumed = run("digits", 10, "run.resume=true")
    assert resumed.return_value["resumed_from"] == 4
    assert logged_steps(s3, "digits") == [2, 4, 6, 8, 10]


def test_s3_filesystem_keeps_its_retries_when_pickled(s3):
    # pyarrow's S3FileSystem forgets its retry strategy when pickled; Ray pickles the storage
    # filesystem to the workers that upload checkpoints.
    fs, _ = storage.filesystem(RUNS)
    copy = pickle.loads(pickle.dumps(fs))
    assert isinstance(copy.handler, storage.RetryingS3) and copy.handler == fs.handler
    assert storage.uri(copy, f"{BUCKET}/runs") == RUNS


def test_sweep_with_s3_storage(s3):
    cfg = config.load("dcgan", SMOKE, [
        f"data.uri={DATA}", "train.steps=4", "train.eval_every=4", "scaling.workers=1",
        "scaling.cpus_per_worker=0.5", "run.name=lr", f"run.storage_path=s3://{BUCKET}/sweeps",
    ])  # fmt: skip
    searched = space.parse("dcgan", {"dcgan.lr_g": {"grid": [1e-4]}})  # storage, not search
    report = driver.sweep(cfg, searched, settings.Settings(scheduler="fifo", search="grid"))
    assert list(report.table["status"]) == ["done"]
    names = set(keys(s3, "sweeps/lr/"))
    for name in ("results.csv", "results.parquet", "best.yaml", "metric.png", "sweep.yaml"):
        assert f"sweeps/lr/{name}" in names, name
    best = yaml.safe_load(read(s3, "sweeps/lr/best.yaml"))
    assert best["dcgan"]["lr_g"] == pytest.approx(report.best["dcgan.lr_g"])


def test_export_to_s3_and_load_for_serving(s3):
    spec = importlib.util.spec_from_file_location("deploy", ROOT / "jobs" / "deploy.py")
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    export = f"s3://{BUCKET}/export/digits"
    assert deploy.deploy([f"{RUNS}/digits", "--out", export]) == 0
    exported = {key.rsplit("/", 1)[1] for key in keys(s3, "export/digits/")}
    assert {"G.pt", "config.yaml", "export.json"} <= exported
    exported = exports.load(export)
    nets, cfg = exported.nets, exported.cfg
    state, _, _ = checkpoint.load(checkpoint.resolve(f"{RUNS}/digits"))
    assert state["step"] == 10 and cfg.model == "dcgan"
    served = exports.serving_weights(state, ("G",))["G"]
    average = state["average"]  # the smoke recipe keeps one; its last evaluation chose
    chosen = average["nets"] if average["serves"] == "average" else state["nets"]
    assert served is chosen["G"]
    for key, value in served.items():
        assert torch.equal(nets["G"].state_dict()[key], value), key
    with torch.no_grad():
        images = nets["G"](torch.randn(2, cfg.params.latent_dim, 1, 1))
    assert images.shape == (2, 1, 16, 16)
