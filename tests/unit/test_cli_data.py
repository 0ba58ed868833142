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
    before = sorted(data.rglob("*"))
    assert main(["data", "preview", str(data), "--n", "16"]) == 0
    # Beside the dataset, not in it: the next training run on it would read the grid too.
    grid_path = tmp_path / "unpaired-preview.png"
    assert capsys.readouterr().out.strip().endswith(f"written to {grid_path}")
    assert sorted(data.rglob("*")) == before
    with Image.open(grid_path) as grid:
        assert grid.size == (2 + 4 * 18, 2 + 4 * 18)  # 4 x 4 cells of 16 px, 2 px padding


def test_preview_written_inside_the_folder_is_not_previewed_again(tmp_path):
    data = tmp_path / "shapes"
    main(["data", "synth", "shapes", "--out", str(data), "--n", "4", "--size", "16"])
    inside = ["data", "preview", str(data), "--out", str(data / "preview.png")]
    assert main(inside) == 0
    first = (data / "preview.png").read_bytes()
    assert main(inside) == 0
    assert (data / "preview.png").read_bytes() == first


def test_preview_mixed_sizes_and_custom_out(tmp_path, capsys):
    Image.new("L", (8, 8), 255).save(tmp_path / "small.png")
    Image.new("L", (12, 6), 0).save(tmp_path / "wide.jpg")
    out = tmp_path / "grids" / "g.png"
    assert main(["data", "preview", str(tmp_path), "--out", str(out)]) == 0
    with Image.open(out) as grid:
        assert grid.size == (2 + 2 * 10, 2 + 10)


def test_preview_skips_and_counts_unreadable_images(tmp_path, capsys):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), "red").save(tmp_path / name)
    (tmp_path / "corrupt.png").write_bytes(b"garbage")
    (tmp_path / "empty.jpg").write_bytes(b"")
    out = tmp_path / "grid.png"
    assert main(["data", "preview", str(tmp_path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    skipped = "(2 unreadable skipped)"
    assert captured.out.strip() == f"preview of 2 images from {tmp_path} {skipped} written to {out}"
    assert "corrupt.png" in captured.err and "empty.jpg" in captured.err
    with Image.open(out) as grid:
        assert grid.size == (2 + 2 * 10, 2 + 10)  # the two readable images only


def test_preview_of_unreadable_images_only_fails(tmp_path, capsys):
    (tmp_path / "corrupt.png").write_bytes(b"garbage")
    assert main(["data", "preview", str(tmp_path)]) == 2
    assert "could be read" in capsys.readouterr().err


@pytest.mark.parametrize("n", ["0", "-3"])
def test_preview_needs_at_least_one_image(tmp_path, capsys, n):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "preview", str(tmp_path), "--n", n])
    assert exit_info.value.code == 2
    assert f"argument --n: must be >= 1, got {n}" in capsys.readouterr().err


def test_preview_of_a_folder_without_images_fails(tmp_path, capsys):
    assert main(["data", "preview", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err


def test_pack_parses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "pack", "--help"])
    assert exit_info.value.code == 0
    assert "--rows-per-file" in capsys.readouterr().out
