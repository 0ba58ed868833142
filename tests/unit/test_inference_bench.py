"""The inference benchmark's dry run (``python -m benchmarks.inference --tiny``): every part
runs and writes its rows (the figures mean nothing at these sizes)."""

import json

import pytest

from benchmarks import inference


@pytest.mark.slow  # a process per memory figure, and exports of every family: a minute or more
def test_the_dry_run_compares_both_backends_and_measures_tiled_memory(tmp_path):
    inference.run(tmp_path, quick=False, tiny=True)
    document = json.loads((tmp_path / "inference.json").read_text())
    rows = document["rows"]
    compared = [row for row in rows if "speedup" in row]
    assert {row["model"] for row in compared} == {"fast_style", "pix2pix", "cyclegan",
                                                  "adain decoder"}  # fmt: skip
    assert all(row["max_diff_grey_levels"] <= 1 for row in compared)
    memory = [row for row in rows if "peak_rss_mib" in row]
    assert [(row["tile"], row["backend"]) for row in memory] == [(64, "torch"),
                                                                 (64, "onnxruntime")]  # fmt: skip
    assert all(row["peak_rss_mib"] >= row["rss_before_mib"] > 0 for row in memory)
