"""`make gpu-check DEVICE=cpu`: the GPU check's dry run, every part at tiny sizes, so that the
one command a lent GPU gets runs the day it is lent."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genart.serve import ray_settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository: `benchmarks`

from benchmarks import cells  # noqa: E402

pytestmark = pytest.mark.ray
PARTS = ["tests", "dcgan", "serve", "style", "multi_worker", "quality", "matrix"]


def test_the_dry_run_runs_every_part_and_writes_one_folder(tmp_path):
    # Its Rays choose their own Serve ports: drop the ones this session's Ray holds.
    drop = {"RAY_ADDRESS", *ray_settings.HAPROXY_ENV, *ray_settings.PORT_VARIABLES,
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--results", tmp_path],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]  # the table: each part's status
    folder = tmp_path / f"cpu-dry-run-{time.strftime('%Y-%m-%d')}"

    summary = json.loads((folder / "gpu_check.json").read_text())
    assert [row["part"] for row in summary["rows"]] == PARTS
    assert {row["status"] for row in summary["rows"]} == {"ok"}
    assert summary["machine"]["gpu"] is None and summary["tiny"] is True
    for name in ["dcgan", "serve", "style", "multi_worker", "quality"]:
        document = json.loads((folder / f"{name}.json").read_text())
        assert document["tiny"] is True, name
    by_part = {row["part"]: row["result"] for row in summary["rows"]}
    assert by_part["tests"].startswith("0 passed, 0 failed, ")  # no GPU: all skipped
    assert "loop/plain" in by_part["dcgan"] and "batching" in by_part["serve"]
    assert "2 workers x 0 GPU" in by_part["multi_worker"]
    # The matrix's quick cells, one seed, at tiny sizes: records beside none of the real ones.
    matrix = json.loads((folder / "quality_matrix_tiny.json").read_text())
    assert matrix["tiny"] is True and not (folder / "quality_matrix.json").exists()
    assert {(r["seed"], r["steps"]) for r in matrix["records"]} == {(0, 2)}
    ran = {r["cell"] for r in matrix["records"]}
    assert "dcgan-modes-32px-short-b64" in ran and ran <= set(cells.QUICK)
    assert by_part["matrix"].startswith(f"{len(matrix['records'])} records (+")
    # The table, with each part's time, on the console.
    assert "part          status  seconds  limit_s  result" in done.stdout
    assert not (folder / "data").exists()  # the quality benchmark's inputs are not results
