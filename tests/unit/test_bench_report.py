"""benchmarks/report.py: benchmark JSON files in, docs/benchmarks.md's tables out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `benchmarks`

from benchmarks import report  # noqa: E402

MACHINE = {
    "cpus": 2,
    "cpu_model": "Test CPU 9000",
    "load_average_1m": 1.25,
    "memory_gib": 7.5,
    "python": "3.12.0",
    "torch": "2.9.0",
    "ray": "2.60.0",
    "gpu": None,
}


def write(folder: Path, name: str, document: dict) -> Path:
    """One benchmark JSON as benchmarks.common.write_json lays it out."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    header = {"benchmark": name, "time": "2026-01-02T03:04:05+0000", "machine": MACHINE}
    path.write_text(json.dumps(header | document))
    return path


def generate(tmp_path: Path, *folders: Path) -> str:
    out = tmp_path / "docs" / "benchmarks.md"
    assert report.main(["--results", *map(str, folders), "--out", str(out)]) == 0
    return out.read_text()


def test_rows_become_a_table_with_the_machine_and_command(tmp_path):
    rows = [
        {"comparison": "step vs reference", "genart": "2.29 ms", "baseline": "11.70 ms",
         "ratio": 5.106, "target": ">= 1.3"},
        {"comparison": "loop vs plain", "genart": "68.4 img/s", "baseline": "68.6 img/s",
         "ratio": 0.997, "target": ">= 0.98"},
    ]  # fmt: skip
    write(tmp_path / "cpu", "dcgan", {"quick": True, "device": "cpu", "rows": rows})
    page = generate(tmp_path, tmp_path / "cpu")

    assert page.startswith("# Benchmarks\n")
    section = page.split("## `dcgan`", 1)[1].split("\n## ", 1)[0]
    assert "| comparison | genart | baseline | ratio | target |" in section
    assert "| step vs reference | 2.29 ms | 11.70 ms | 5.106 | >= 1.3 |" in section
    assert "| loop vs plain | 68.4 img/s | 68.6 img/s | 0.997 | >= 0.98 |" in section
    assert "`python -m benchmarks.dcgan --quick`" in section
    assert "2 CPUs (Test CPU 9000)" in section and "no GPU" in section
    assert "torch 2.9.0" in section and "load average 1.25" in section
    assert "2026-01-02 03:04:05 +0000" in section
    assert "`device`: cpu" in section  # fields beside the rows are listed too


def test_every_benchmark_has_a_section_and_missing_ones_say_how_to_run_them(tmp_path):
    write(tmp_path / "r", "serve", {"rows": [{"path": "direct", "p50_ms": 27.3}]})
    page = generate(tmp_path, tmp_path / "r")
    for name in ["ingest", "dcgan", "style", "translation", "tune", "serve"]:
        assert f"## `{name}`" in page
    assert "No results yet: `python -m benchmarks.tune`." in page
    # serve's JSON does not say whether --quick was given: the page must not guess.
    assert "does not record whether `--quick` was given" in page
    assert "| direct | 27.3 |" in page


def test_two_folders_two_machines_and_rows_split_by_their_columns(tmp_path):
    gpu = MACHINE | {"gpu": "NVIDIA Test GPU", "cpus": 16}
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "style.json").write_text(json.dumps({
        "benchmark": "style", "time": "2026-03-04T05:06:07+0000", "machine": gpu, "quick": False,
        "rows": [
            {"bench": "gatys", "variant": "genart", "wall_ratio": 0.522},
            {"bench": "fast_style", "variant": "genart-fp32", "images_per_s": 277.74},
        ],
    }))  # fmt: skip
    write(tmp_path / "cpu", "style", {"quick": True, "rows": [{"bench": "gatys", "x": 1}]})
    page = generate(tmp_path, tmp_path / "gpu", tmp_path / "cpu")

    assert "### NVIDIA Test GPU, 2026-03-04" in page
    assert "### 2 x Test CPU 9000, 2026-01-02" in page
    assert page.index("NVIDIA Test GPU") < page.index("2 x Test CPU 9000")  # folder order
    assert "| bench | variant | wall_ratio |" in page
    assert "| bench | variant | images_per_s |" in page  # its own table, not blank columns
    assert "| fast_style | genart-fp32 | 277.7 |" in page


def test_quality_file_bad_files_and_formatting(tmp_path, capsys):
    folder = tmp_path / "r"
    write(folder, "translation_quality", {"minutes_per_model": 5, "rows": [
        {"model": "pix2pix", "psnr": 24.61, "big": 14063.46577, "n": 123456, "ok": True,
         "pipe": "a|b", "none": None},
    ]})  # fmt: skip
    (folder / "broken.json").write_text("{not json")
    (folder / "other.json").write_text('{"no": "benchmark field"}')
    page = generate(tmp_path, folder)

    assert "`python -m benchmarks.translation --quality 5`" in page
    assert "| pix2pix | 24.61 | 14,063.5 | 123,456 | yes | a\\|b | - |" in page
    assert "skipped" in capsys.readouterr().err
    assert str(tmp_path) not in page  # no path of the machine it ran on


def test_a_missing_results_folder_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no such folder"):
        report.main(["--results", str(tmp_path / "nope"), "--out", str(tmp_path / "x.md")])


def test_the_committed_results_render():
    """Every committed JSON goes through the report (catches a shape it cannot lay out)."""
    folders = [p for p in report.COMMITTED.iterdir() if p.is_dir()]
    page = report.render(report.load(folders))
    assert page.count("\n### ") >= len(folders)


def test_a_gpu_check_folder_is_read_and_its_own_files_name_make_gpu_check(tmp_path, monkeypatch):
    gpu = MACHINE | {"gpu": "NVIDIA Test GPU"}
    folder = tmp_path / "results" / "nvidia-test-gpu-2026-01-02"
    rows = [{"part": "dcgan", "status": "timed out", "seconds": 130.0, "limit_s": 134.4,
             "result": "-"}]  # fmt: skip
    write(folder, "gpu_check", {"device": "cuda", "tiny": False, "rows": rows})
    write(folder, "multi_worker", {"rows": [{"workers": 2, "gpus_per_worker": 0.5}]})
    write(folder, "dcgan", {"quick": True, "rows": [{"comparison": "x", "ratio": 1.0}]})
    for name in ("gpu_check", "multi_worker", "dcgan"):  # measured on the GPU
        path = folder / f"{name}.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"machine": gpu}))
    monkeypatch.setattr(report, "COMMITTED", tmp_path / "results")
    monkeypatch.setattr(report, "LOCAL", tmp_path / "absent")
    assert report.default_folders() == [folder]

    page = report.render(report.load(report.default_folders()))
    assert "## The GPU check" in page and "make gpu-check DEVICE=cpu" in " ".join(page.split())
    sections = page.split("\n## `")[1:]
    assert [s.split("`", 1)[0] for s in sections[:3]] == ["gpu_check", "ingest", "dcgan"]
    check = sections[0]
    assert "### NVIDIA Test GPU, 2026-01-02" in check and "- Command: `make gpu-check`\n" in check
    assert "| dcgan | timed out | 130.0 | 134.4 | - |" in check
    multi = page.split("## `multi_worker`", 1)[1].split("\n## ", 1)[0]
    assert page.index("## `dcgan`") < page.index("## `multi_worker`")
    assert "- Command: `make gpu-check`\n" in multi and "| 2 | 0.5 |" in multi
