"""The upstream check's wrapper: the options it gives their train.py and where it stops it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `benchmarks`

from benchmarks import cells, matrix, upstream_junyanz  # noqa: E402


def options_of(name: str) -> dict[str, str]:
    (cell,) = cells.select(cells.cells(), [name])
    argv = upstream_junyanz.train_options(cell, matrix.settings(cell, [0]))
    flags = {}
    for index, arg in enumerate(argv):
        if arg.startswith("--"):
            following = argv[index + 1] if index + 1 < len(argv) else "--"
            flags[arg] = "" if following.startswith("--") else following
    return flags


def test_pix2pix_cell_maps_to_their_flags_as_the_reference_side_trains():
    flags = options_of("pix2pix-pairs-128px-short-b1")
    assert flags["--model"] == "pix2pix" and flags["--netG"] == "unet_128"
    assert (flags["--ngf"], flags["--ndf"], flags["--batch_size"]) == ("32", "32", "1")
    # Their default jitter at this size: resize to round(128 * 286 / 256), crop back to 128.
    assert (flags["--load_size"], flags["--crop_size"]) == ("143", "128")
    # 600 steps of 800 pairs: the reference's schedule of one epoch plus one decaying.
    assert (flags["--n_epochs"], flags["--n_epochs_decay"]) == ("1", "1")
    assert "--no_html" in flags and flags["--num_threads"] == "0"


def test_cyclegan_cell_maps_to_their_resnet_generator_of_the_cells_blocks():
    flags = options_of("cyclegan-unpaired-128px-short-b1")
    assert flags["--model"] == "cycle_gan" and flags["--netG"] == "resnet_6blocks"
    assert (flags["--ngf"], flags["--ndf"]) == ("16", "32")


class FakeModel:
    def __init__(self):
        self.steps, self.saved = 0, []
        self.optimizers = [type("Opt", (), {"param_groups": [{"lr": 2e-4}]})()]

    def optimize_parameters(self):
        self.steps += 1

    def save_networks(self, suffix):
        self.saved.append((suffix, self.steps))


def test_stop_after_saves_their_latest_weights_at_exactly_the_last_step():
    model = FakeModel()
    upstream_junyanz.stop_after(model, 3)
    model.optimize_parameters()
    model.optimize_parameters()
    assert model.saved == []
    with pytest.raises(upstream_junyanz.Stopped):
        model.optimize_parameters()
    assert model.saved == [("latest", 3)]


def test_main_records_each_run_and_its_command_without_machine_paths(tmp_path, monkeypatch):
    work, out = tmp_path / "work", tmp_path / "out"
    monkeypatch.setattr(upstream_junyanz.quality, "dataset", lambda root, s: root / "pairs")

    def train(tree, cell, s, folder, run_dir, extra):
        return ["python", "train.py", "--dataroot", str(folder), "--name", run_dir.name], 12.3

    monkeypatch.setattr(upstream_junyanz, "train", train)
    monkeypatch.setattr(upstream_junyanz, "score", lambda *a: {"psnr": 20.0 + a[-1], "ssim": 0.5})
    monkeypatch.setattr(sys, "argv", ["x", "--tree", str(tmp_path), "--cell",
                        "pix2pix-pairs-64px-short-b1", "--runs", "0", "1", "--work", str(work),
                        "--out", str(out)])  # fmt: skip
    upstream_junyanz.main()
    document = cells.load(cells.document_path(out))
    assert [(r["side"], r["seed"], r["psnr"]) for r in document["records"]] == [
        ("upstream", 0, 20.0), ("upstream", 1, 21.0)]  # fmt: skip
    (line,) = document["upstream_commands"].values()
    assert line == "python train.py --dataroot WORK/data/pairs --name runN"
