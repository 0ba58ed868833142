"""The DCGAN upstream check's wrapper: the options it gives their main.py and where it stops."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `benchmarks`

from benchmarks import cells, matrix, upstream_examples  # noqa: E402


def settings_of(name: str):
    (cell,) = cells.select(cells.cells(), [name])
    return matrix.settings(cell, [0])


def test_a_64px_mnist_cell_maps_to_their_flags_and_enough_passes():
    s = settings_of("dcgan-mnist-64px-short-b64")
    argv = upstream_examples.script_options(s, 2, Path("data"), Path("run"))
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--dataset"] == "folder" and flags["--dataroot"] == "data"
    assert (flags["--imageSize"], flags["--batchSize"]) == ("64", "64")
    assert (flags["--ngf"], flags["--ndf"]) == ("32", "32")
    assert (flags["--workers"], flags["--manualSeed"], flags["--outf"]) == ("0", "2", "run")
    # 4,500 digits in batches of 64: 71 a pass (the last one of 20), so 600 steps need 9.
    assert flags["--niter"] == "9"


def test_32px_cells_are_refused_their_nets_are_64px_only():
    with pytest.raises(SystemExit, match="64 px"):
        upstream_examples.script_options(
            settings_of("dcgan-mnist-32px-short-b64"), 0, Path("d"), Path("r")
        )


def test_their_loader_stops_after_exactly_the_steps_across_passes(monkeypatch):
    monkeypatch.setattr(torch.utils.data, "DataLoader", torch.utils.data.DataLoader)
    upstream_examples.stop_loader_after(7)
    data = torch.utils.data.TensorDataset(torch.arange(10.0))
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)  # 3 batches a pass
    seen = [len(batch[0]) for _ in range(4) for batch in loader]  # their epochs loop
    assert seen == [4, 4, 2, 4, 4, 2, 4]


def test_main_scores_their_last_checkpoint_and_records_each_seed(tmp_path, monkeypatch):
    work, out, loaded = tmp_path / "work", tmp_path / "out", []
    judge = lambda fake: {"coverage": 1, "recognised": 0.5, "frechet": float(fake.sum())}  # noqa: E731
    judge.z = torch.zeros(3, 100)
    monkeypatch.setattr(upstream_examples.quality, "_inputs",
                        lambda model, s, root: (root / "mnist", None, judge))  # fmt: skip
    monkeypatch.setattr(upstream_examples, "train", lambda script, s, argv, log: 5.0)

    def their_generator(script, argv, weights):
        loaded.append(weights.name)
        return "net"

    monkeypatch.setattr(upstream_examples, "their_generator", their_generator)
    monkeypatch.setattr(upstream_examples, "samples", lambda net, z: torch.ones(len(z), 3, 4, 4))
    monkeypatch.setattr(sys, "argv", ["x", "--script", "main.py", "--cell",
                        "dcgan-mnist-64px-short-b64", "--seeds", "0", "2", "--work", str(work),
                        "--out", str(out)])  # fmt: skip
    upstream_examples.main()
    assert loaded == ["netG_epoch_8.pth"] * 2  # their save at the end of the 9th pass
    document = cells.load(cells.document_path(out))
    records = document["records"]
    assert [(r["side"], r["seed"], r["frechet"], r["seeded"]) for r in records] == [
        ("upstream", 0, 144.0, True), ("upstream", 2, 144.0, True)]  # fmt: skip
    assert records[0]["confident"] == 0.5  # the modes judge's share, named as in the matrix
    (line,) = document["upstream_commands"].values()
    assert "--dataroot WORK/data/mnist" in line and "--outf WORK/upstream-runs/" in line
    assert line.endswith("--manualSeed N --outf WORK/upstream-runs/dcgan-mnist-64px-short-b64/"
                         "upstream/seedN")  # fmt: skip


def test_their_generator_reruns_their_script_loading_the_weights_quietly(tmp_path, capsys):
    script = tmp_path / "main.py"
    script.write_text(
        "import argparse\n"
        "parser = argparse.ArgumentParser()\n"
        "for flag in ('--dataset', '--niter', '--netG', '--outf'):\n"
        "    parser.add_argument(flag)\n"
        "opt = parser.parse_args()\n"
        "print('their options', opt)\n"
        "netG = (opt.dataset, opt.niter, opt.netG)\n"
    )
    weights = tmp_path / "run" / "netG_epoch_8.pth"
    weights.parent.mkdir()
    argv = ["--dataset", "folder", "--niter", "9", "--outf", str(weights.parent)]
    net = upstream_examples.their_generator(script, argv, weights)
    assert net == ("folder", "0", str(weights))  # built, not trained: --niter 0 --netG
    assert capsys.readouterr().out == ""
    assert sys.argv[0] != str(script)  # the caller's argv is back
    assert "their options" in (weights.parent / "scoring.txt").read_text()
