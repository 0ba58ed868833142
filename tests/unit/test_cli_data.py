"""``genart data``: synth, preview and pack verbs through the real entry point."""

import pytest
from PIL import Image

from genart.cli import data as data_cli
from genart.cli import main
from genart.data.synthetic import KINDS


def test_synth_writes_the_layout_and_reports_counts(tmp_path, capsys):
    out = tmp_path / "pairs"
    argv = ["data", "synth", "pairs", "--out", str(out), "--n", "20", "--size", "16"]
    assert main([*argv, "--seed", "3"]) == 0
    report = capsys.readouterr().out
    assert f"pairs: wrote 24 images to {out}" in report
    assert [line.split() for line in report.splitlines()[1:]] == [
        ["train/", "20"],
        ["val/", "2"],
        ["test/", "2"],
    ]
    assert len(list((out / "train").glob("*.png"))) == 20


def test_synth_rgb_digits_and_labels(tmp_path, capsys):
    out = tmp_path / "digits"
    assert main(["data", "synth", "digits", "--out", str(out), "--n", "5", "--rgb"]) == 0
    assert "labels.csv" in capsys.readouterr().out
    with Image.open(out / "images" / "00000.png") as image:
        assert image.mode == "RGB" and image.size == (64, 64)
    assert len((out / "labels.csv").read_text().splitlines()) == 6


def test_synth_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["data", "synth", "mnist", "--out", str(tmp_path)]) == 2
    assert "valid kinds" in capsys.readouterr().err
    main(["data", "synth", "shapes", "--out", str(tmp_path), "--n", "3", "--size", "8"])
    assert main(["data", "synth", "shapes", "--out", str(tmp_path), "--n", "2"]) == 2
    assert "use an empty --out folder" in capsys.readouterr().err


def test_kinds_in_the_help_are_the_real_kinds():
    assert ", ".join(KINDS) == data_cli.KINDS_HELP


def test_preview_writes_a_grid_of_images_from_every_folder(tmp_path, capsys):
    data = tmp_path / "unpaired"
    main(["data", "synth", "unpaired", "--out", str(data), "--n", "10", "--size", "16"])
    capsys.readouterr()
    assert main(["data", "preview", str(data), "--n", "16"]) == 0
    grid_path = data / "preview.png"
    assert capsys.readouterr().out.strip() == str(grid_path)
    first = grid_path.read_bytes()
    with Image.open(grid_path) as grid:
        assert grid.size == (2 + 4 * 18, 2 + 4 * 18)  # 4 x 4 cells of 16 px, 2 px padding
    # A second run must not pick up the first grid as one of the images.
    assert main(["data", "preview", str(data), "--n", "16"]) == 0
    assert grid_path.read_bytes() == first


def test_preview_mixed_sizes_and_custom_out(tmp_path, capsys):
    Image.new("L", (8, 8), 255).save(tmp_path / "small.png")
    Image.new("L", (12, 6), 0).save(tmp_path / "wide.jpg")
    out = tmp_path / "grids" / "g.png"
    assert main(["data", "preview", str(tmp_path), "--out", str(out)]) == 0
    with Image.open(out) as grid:
        assert grid.size == (2 + 2 * 10, 2 + 10)


def test_preview_of_a_folder_without_images_fails(tmp_path, capsys):
    assert main(["data", "preview", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err


def test_pack_parses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "pack", "--help"])
    assert exit_info.value.code == 0
    assert "--rows-per-file" in capsys.readouterr().out
