"""Synthetic datasets: layouts, determinism, labels, and that the data carries its signal."""

import csv

import numpy as np
import pytest
from PIL import Image

from genart.data import drawing, scenes, synthetic
from genart.data.scenes import LABEL_COLORS
from genart.data.synthetic import KINDS, generate, layout, render, render_digits

SIZE = 24
N = 10  # held-out folders get 1 image each


def files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def edges(images):
    """Per pixel: absolute brightness differences to the right and lower neighbours, summed."""
    grey = images.mean(-1)
    return np.abs(np.diff(grey, axis=-1))[..., :-1, :] + np.abs(np.diff(grey, axis=-2))[..., :-1]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Every kind generated once with seed 0 (shared by the read-only tests below)."""
    root = tmp_path_factory.mktemp("synthetic")
    return {kind: generate(kind, root / kind, N, size=SIZE, seed=0, workers=1) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_layout_folders_counts_sizes_and_modes(datasets, kind):
    out = datasets[kind]
    expected = layout(kind, N)
    assert {p.name for p in out.iterdir() if p.is_dir()} == {f.split("/")[0] for f in expected}
    for folder, count in expected.items():
        paths = sorted((out / folder).glob("*.png"))
        assert [p.name for p in paths] == [f"{i:05d}.png" for i in range(count)]
        for path in paths:
            with Image.open(path) as image:
                width = 2 * SIZE if kind == "pairs" else SIZE
                assert image.size == (width, SIZE)
                assert image.mode == ("L" if kind == "digits" else "RGB")


def test_layout_sizes_follow_n():
    assert layout("pairs", 200) == {"train": 200, "val": 20, "test": 20}
    assert layout("styles", 3) == {"content": 3, "style": 1, "test/content": 1, "test/style": 1}
    truth = {"testA_truth", "testB_truth"}
    assert set(layout("unpaired", 1)) == {"trainA", "trainB", "testA", "testB", *truth}


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_bytes_other_seed_other_bytes(datasets, tmp_path, kind):
    again = generate(kind, tmp_path / "again", N, size=SIZE, seed=0, workers=1)
    other = generate(kind, tmp_path / "other", N, size=SIZE, seed=1, workers=1)
    first = files(datasets[kind])
    assert [p.relative_to(datasets[kind]) for p in first] == [
        p.relative_to(again) for p in files(again)
    ]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, files(again)))
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(first, files(other)))


def test_worker_processes_write_the_same_files(datasets, tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK", 3)  # 4 chunks shared by the 2 workers
    parallel = generate("digits", tmp_path / "parallel", N, size=SIZE, seed=0, workers=2)
    serial = datasets["digits"]
    assert [p.read_bytes() for p in files(parallel)] == [p.read_bytes() for p in files(serial)]


def test_render_matches_generated_files(datasets):
    for folder, images in render("unpaired", N, size=SIZE, seed=0).items():
        on_disk = [
            np.asarray(Image.open(p)) for p in sorted((datasets["unpaired"] / folder).iterdir())
        ]
        np.testing.assert_array_equal(images, np.stack(on_disk))


def test_labels_csv_matches_files_and_render_digits(datasets):
    out = datasets["digits"]
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == [f"images/{i:05d}.png" for i in range(N)]
    images, labels = render_digits(N, size=SIZE, seed=0)
    assert images.shape == (N, SIZE, SIZE, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert [int(row["label"]) for row in rows] == labels.tolist()
    for row, image in zip(rows, images):
        np.testing.assert_array_equal(np.asarray(Image.open(out / row["file"])), image[..., 0])


def test_digits_are_white_on_black_and_centred():
    images, labels = render_digits(200, seed=3)
    assert set(labels.tolist()) == set(range(10))
    ink = images[..., 0].astype(np.float32)
    assert np.median(ink) < 30 and ink.max() > 200
    rows, cols = np.mgrid[0:28, 0:28]
    mass = ink.sum(axis=(1, 2))
    centre_y, centre_x = (ink * rows).sum((1, 2)) / mass, (ink * cols).sum((1, 2)) / mass
    assert np.all(np.abs(centre_y - 13.5) < 5) and np.all(np.abs(centre_x - 13.5) < 5)


def test_digits_are_recognisable_by_a_nearest_centroid_classifier():
    """Labels match images: even the crudest classifier beats chance (10%) by far."""
    train, train_labels = render_digits(500, size=16, seed=0)
    test, test_labels = render_digits(200, size=16, seed=1)
    flat = train.reshape(len(train), -1).astype(np.float32)
    centroids = np.stack([flat[train_labels == d].mean(0) for d in range(10)])
    distances = ((test.reshape(len(test), -1)[:, None] - centroids[None]) ** 2).sum(-1)
    assert (distances.argmin(1) == test_labels).mean() > 0.4


def test_rgb_digits_are_colour_with_contrast():
    images, _ = render_digits(20, seed=0, rgb=True)
    assert images.shape == (20, 28, 28, 3)
    assert np.abs(np.diff(images.astype(int), axis=-1)).mean() > 10  # not grey
    luma = images @ np.array([0.299, 0.587, 0.114])
    assert all(np.ptp(image) > 80 for image in luma)  # the digit stands out


def test_digits_work_with_only_pillows_built_in_font(monkeypatch):
    monkeypatch.setattr(drawing, "FONT_DIRS", ())
    drawing.digit_fonts.cache_clear()
    try:
        assert drawing.digit_fonts() == (drawing.DEFAULT_FONT,)
        images, _ = render_digits(4, seed=0)
        assert images.max() > 200
    finally:
        drawing.digit_fonts.cache_clear()


def test_pairs_a_is_a_flat_label_map_and_b_a_rendering(datasets):
    for path in files(datasets["pairs"]):
        pair = np.asarray(Image.open(path))
        label_map, scene = pair[:, :SIZE], pair[:, SIZE:]
        colors = np.unique(label_map.reshape(-1, 3), axis=0)
        assert len(colors) <= len(LABEL_COLORS)
        assert all((color == LABEL_COLORS).all(1).any() for color in colors)
        assert len(np.unique(scene.reshape(-1, 3), axis=0)) > 4 * len(colors)


def test_pairs_mapping_is_learnable():
    """B is mostly a function of (label, row): such a predictor leaves a small residual."""
    pairs = render("pairs", 40, size=32, seed=0)["train"].astype(np.float64)
    label_maps, scenes = pairs[:, :, :32], pairs[:, :, 32:]
    classes = (label_maps[..., None, :] == LABEL_COLORS).all(-1).argmax(-1)
    rows = np.broadcast_to(np.arange(32)[None, :, None], classes.shape)
    key = (classes * 32 + rows).ravel()
    residual, total = 0.0, 0.0
    for channel in range(3):
        values = scenes[..., channel].ravel()
        means = np.bincount(key, values) / np.maximum(np.bincount(key), 1)
        residual += ((values - means[key]) ** 2).mean()
        total += values.var()
    assert residual / total < 0.1
    identity_error = ((label_maps - scenes) ** 2).mean()
    assert residual / 3 < 0.2 * identity_error


@pytest.mark.parametrize("test, truth_is_darker", [("testA", True), ("testB", False)])
def test_unpaired_truth_is_the_same_scene_in_the_other_domain(datasets, test, truth_is_darker):
    out = datasets["unpaired"]
    names = [p.name for p in sorted((out / test).iterdir())]
    assert names == [p.name for p in sorted((out / f"{test}_truth").iterdir())]
    for name in names:
        source = np.asarray(Image.open(out / test / name), dtype=np.float32)
        truth = np.asarray(Image.open(out / f"{test}_truth" / name), dtype=np.float32)
        assert (truth.mean() < source.mean()) == truth_is_darker  # A is day, B is night
        # Same scene: the sky/land boundary (a brightness edge in both domains) lines up.
        assert np.corrcoef(edges(source).ravel(), edges(truth).ravel())[0, 1] > 0.2  # others: < 0.2


def test_unpaired_train_domains_show_different_scenes():
    maps = {
        stream: [scenes._scene_labels(synthetic._rng(0, stream, i), SIZE) for i in range(N)]
        for stream in ("trainA", "trainB", "testA")
    }
    assert all((a != b).any() for a, b in zip(maps["trainA"], maps["trainB"]))
    assert all((a != b).any() for a, b in zip(maps["trainA"], maps["testA"]))


def test_unknown_kind_and_bad_sizes_are_errors(tmp_path):
    with pytest.raises(ValueError, match="valid kinds: digits, shapes, pairs, unpaired, styles"):
        generate("mnist", tmp_path, 10)
    with pytest.raises(ValueError, match="n >= 1"):
        render("shapes", 0)
    with pytest.raises(ValueError, match="seed=-1"):
        generate("shapes", tmp_path, 2, seed=-1)
    assert not any(tmp_path.iterdir())


def test_rerun_is_idempotent_but_foreign_files_are_refused(tmp_path):
    generate("shapes", tmp_path, 3, size=SIZE)
    before = [p.read_bytes() for p in files(tmp_path)]
    generate("shapes", tmp_path, 3, size=SIZE)
    assert [p.read_bytes() for p in files(tmp_path)] == before
    with pytest.raises(FileExistsError, match="00002.png"):
        generate("shapes", tmp_path, 2, size=SIZE)


def test_progress_is_reported_only_for_large_runs(capsys):
    small = synthetic._Progress(100)
    small.advance(100)
    large = synthetic._Progress(synthetic.PROGRESS_MIN_IMAGES)
    for _ in range(20):
        large.advance(synthetic.PROGRESS_MIN_IMAGES // 20)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].endswith("(100%)")
