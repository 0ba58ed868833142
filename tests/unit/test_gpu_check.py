"""benchmarks/gpu_check.py: parts within their time, stopped whole when over, headlines read
from the benchmarks' JSON. (The dry run itself: tests/ray/test_gpu_check_dry_run.py.)"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `benchmarks`

from benchmarks import cells, gpu_check  # noqa: E402
from benchmarks.gpu_check import Part  # noqa: E402

H100 = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "h100-2026-11-22"


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    """Running (a killed orphan may stay a zombie until init reaps it: that is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setattr(gpu_check, "GRACE_S", 0.5)


def test_a_part_over_its_time_is_stopped_with_what_it_started(tmp_path, short_grace):
    # The part starts a grandchild (as a benchmark starts Ray) and outlives its limit.
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(p.pid, flush=True); time.sleep(60)")  # fmt: skip
    log = tmp_path / "part.log"
    status, seconds = gpu_check.run_part(python(code), os.environ, 3, log)

    assert status == "timed out"
    assert seconds < 6
    grandchild = int(log.read_text().split()[0])
    time.sleep(0.2)
    assert not alive(grandchild)


def test_exit_codes_and_output(tmp_path):
    log = tmp_path / "ok.log"
    assert gpu_check.run_part(python("print('hello')"), os.environ, 60, log)[0] == "ok"
    assert log.read_text() == "hello\n"
    failed = gpu_check.run_part(python("raise SystemExit(3)"), os.environ, 60, tmp_path / "f")
    assert failed[0] == "failed (exit 3)"


def test_time_a_part_leaves_passes_on_and_the_budget_holds(tmp_path, short_grace):
    parts = (Part("quick", 0.5), Part("slow", 0.5), Part("late", 0.0))
    commands = {"quick": python("pass"), "slow": python("import time; time.sleep(60)"),
                "late": python("pass")}  # fmt: skip
    start = time.monotonic()
    rows = gpu_check.run_parts(parts, tmp_path, 6, os.environ, commands.__getitem__)
    took = time.monotonic() - start

    assert [row["status"] for row in rows] == ["ok", "timed out", "skipped (no time left)"]
    assert rows[1]["limit_s"] > 3  # its own 3 s and what "quick" left
    assert took < 6 + 1
    assert (tmp_path / "logs" / "slow.log").exists()


def test_a_stale_result_is_not_taken_for_this_runs(tmp_path):
    (tmp_path / "style.json").write_text(json.dumps({"benchmark": "style", "rows": []}))
    parts = (Part("style", 1.0, "style"),)
    rows = gpu_check.run_parts(parts, tmp_path, 60, os.environ, lambda _: python("pass"))
    assert not (tmp_path / "style.json").exists()
    assert rows[0]["result"] == "-"


def test_headlines_from_the_benchmarks_json(tmp_path):
    for name in ("dcgan", "serve", "style"):
        (tmp_path / f"{name}.json").write_text((H100 / f"{name}.json").read_text())
    assert gpu_check.summary("dcgan", tmp_path) == (
        "loop/plain 0.504x (>= 0.98); step vs pytorch/examples 5.106x (>= 1.3)"
    )
    assert gpu_check.summary("serve", tmp_path) == (
        "p50 over direct +14.1 ms (<= 3); batching 0.99x at 16 clients (>= 2)"
    )
    assert gpu_check.summary("style", tmp_path) == (
        "Gatys 0.522 of the tutorial's time (<= 0.7); fast style 512 px 3.52 ms (512 px: <= 5)"
    )
    assert gpu_check.summary("quality", tmp_path) == "-"  # not written


def test_folder_names():
    assert gpu_check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_check.slug("cpu-dry-run") == "cpu-dry-run"


def test_one_gpu_gets_two_half_workers_several_get_one_each(tmp_path):
    def share(count):
        argv = gpu_check.command("multi_worker", tmp_path, count, tiny=False)
        return argv[argv.index("--gpus-per-worker") + 1]

    assert share(1) == "0.5"
    assert share(8) == "1"
    tiny = gpu_check.command("dcgan", tmp_path, 0, tiny=True)
    assert "--tiny" in tiny and str(tmp_path) in tiny


def test_the_matrix_part_runs_the_quick_cells_three_seeds_one_run_per_core(tmp_path):
    argv = gpu_check.command("matrix", tmp_path, 1, tiny=False)
    assert argv[1:4] == ["-m", "benchmarks.matrix", "--quick"] and "--tiny" not in argv
    assert argv[argv.index("--seeds") + 1 : argv.index("--jobs")] == ["0", "1", "2"]
    jobs = int(argv[argv.index("--jobs") + 1])
    assert 1 <= jobs <= min(os.cpu_count() or 1, len(cells.QUICK) * 3 * 2)
    assert argv[argv.index("--out") + 1] == argv[argv.index("--work") + 1] == str(tmp_path)

    tiny = gpu_check.command("matrix", tmp_path, 0, tiny=True)
    assert "--tiny" in tiny and "--quick" in tiny
    assert tiny[tiny.index("--seeds") + 1 : tiny.index("--jobs")] == ["0"]
    assert tiny[tiny.index("--jobs") + 1] == "1"  # tiny runs in-process


def test_the_shares_add_up_and_the_matrix_runs_last_and_is_resumed():
    assert sum(part.share for part in gpu_check.PARTS) == pytest.approx(1.0)
    assert gpu_check.PARTS[-1].name == "matrix" and gpu_check.PARTS[-1].writes is None


def test_a_second_check_resumes_the_matrix(tmp_path):
    (tmp_path / "quality_matrix.json").write_text(json.dumps({"records": [], "added": 0}))
    rows = gpu_check.run_parts((Part("matrix", 1.0),), tmp_path, 60, os.environ,
                               lambda _: python("pass"))  # fmt: skip
    assert (tmp_path / "quality_matrix.json").exists()
    assert (
        rows[0]["result"]
        == "0 records (+0 this run) in 0 cells (0 on real data); verdicts by metric: none yet"
    )


def test_the_matrix_headline_counts_records_cells_and_verdicts(tmp_path):
    pairs, photos = (
        cells.Cell("pix2pix", data, 128, "short", 1) for data in ("pairs", "photo-pairs")
    )
    sides = (("reference", 20.0), ("genart", 25.0))
    records = [cells.record(pairs, seed, side, {"psnr": base + seed, "ssim": 0.5})
               for seed in range(3) for side, base in sides]  # fmt: skip
    records.append(cells.record(photos, 0, "genart", {"psnr": 20.0, "ssim": 0.5}))
    document = {"records": records, "added": 2}
    cells.write_atomically(cells.document_path(tmp_path, tiny=True), document)
    assert gpu_check.summary("matrix", tmp_path) == (
        "7 records (+2 this run) in 2 cells (1 on real data); verdicts by metric: 1 genart, 1 tie"
    )
    cells.write_atomically(cells.document_path(tmp_path), document | {"records": []})
    assert gpu_check.summary("matrix", tmp_path).startswith("0 records")  # the real one first
