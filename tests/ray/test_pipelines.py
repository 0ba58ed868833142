"""Ray Data pipelines on small local folders (s3:// end to end: tests/ray/test_s3.py)."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from genart.data import pipelines

pytestmark = pytest.mark.ray

COUNT = 20


def colour(i: int) -> np.ndarray:
    """Image i's uniform RGB colour: distinct per image, so order and pairing are visible."""
    return np.array([i * 12, 255 - i * 12, 100], np.uint8)


def expected(i: int) -> np.ndarray:
    return colour(i).astype(np.float32) / 127.5 - 1


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def solid(i: int, height: int = 32, width: int = 32) -> np.ndarray:
    return np.broadcast_to(colour(i), (height, width, 3)).copy()


def write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """20 solid 32x32 PNGs, half of them in a sub-folder, plus a non-image sidecar."""
    root = tmp_path_factory.mktemp("images")
    for i in range(COUNT):
        write(root / ("sub" if i % 2 else "") / f"{i:02d}.png", png(solid(i)))
    (root / "labels.csv").write_text("file,label\n")
    return root


def colours(batches, column: str = "image") -> np.ndarray:
    """The per-image mean colour of every row, in iteration order."""
    return np.concatenate([b[column].mean(axis=(2, 3)) for b in batches])


def order_of(folder) -> list[int]:
    """Image numbers in sorted path order (sub/01.png sorts after 18.png)."""
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    return [int(os.path.basename(p)[:2]) for p in paths]


def test_images_rows_shapes_range_and_stable_order(ray_local, folder):
    ds = pipelines.images(str(folder), size=16)
    first = list(ds.iter_batches(batch_size=8))
    rows = np.concatenate([b["image"] for b in first])
    assert rows.shape == (COUNT, 3, 16, 16) and rows.dtype == np.float32
    assert rows.min() >= -1 and rows.max() <= 1
    np.testing.assert_allclose(colours(first), [expected(i) for i in order_of(folder)], atol=1e-6)
    again = np.concatenate([b["image"] for b in ds.iter_batches(batch_size=8)])
    assert np.array_equal(rows, again)  # same rows, same order, every epoch
    assert "20 of 20 images readable, 1 non-image file(s) ignored" in str(
        pipelines.skip_report(str(folder))
    )


def test_images_grey(ray_local, folder):
    batch = pipelines.images(str(folder), size=8, channels=1).take_batch(4)
    assert batch["image"].shape == (4, 1, 8, 8)


def test_paired_splits_halves_and_direction(ray_local, tmp_path):
    for i in range(6):  # A = colour(i), B = colour(i + 10), side by side
        write(tmp_path / f"{i}.png", png(np.concatenate([solid(i), solid(i + 10)], axis=1)))
    rows = pipelines.paired(str(tmp_path), size=16).take_batch(6)
    assert rows["A"].shape == rows["B"].shape == (6, 3, 16, 16)
    np.testing.assert_allclose(
        rows["A"].mean(axis=(2, 3)), [expected(i) for i in range(6)], atol=1e-6
    )
    np.testing.assert_allclose(
        rows["B"].mean(axis=(2, 3)), [expected(i + 10) for i in range(6)], atol=1e-6
    )
    swapped = pipelines.paired(str(tmp_path), size=16, direction="BtoA").take_batch(6)
    assert np.array_equal(swapped["A"], rows["B"]) and np.array_equal(swapped["B"], rows["A"])
    with pytest.raises(ValueError, match="direction"):
        pipelines.paired(str(tmp_path), size=16, direction="sideways")


def unpaired_colours(root, seed: int) -> tuple[list[int], list[int]]:
    ds = pipelines.unpaired(str(root / "trainA"), str(root / "trainB"), size=8, seed=seed)
    batches = list(ds.iter_batches(batch_size=4))
    index = {tuple(expected(i).round(4)): i for i in range(COUNT)}
    return tuple([index[tuple(c.round(4))] for c in colours(batches, k)] for k in ("A", "B"))


def test_unpaired_cycles_the_shorter_domain_deterministically(ray_local, tmp_path):
    for i in range(7):
        write(tmp_path / "trainA" / f"{i}.png", png(solid(i)))
    for i in range(3):
        write(tmp_path / "trainB" / f"{i}.png", png(solid(i + 10)))
    a, b = unpaired_colours(tmp_path, seed=0)
    assert a == list(range(7))  # the longer domain: every image once, in sorted order
    assert len(b) == 7
    for start in (0, 3):  # each full cycle of B is a permutation of B
        assert sorted(b[start : start + 3]) == [10, 11, 12]
    assert unpaired_colours(tmp_path, seed=0) == (a, b)
    assert any(unpaired_colours(tmp_path, seed=s)[1] != b for s in (1, 2, 3))


def test_a_pass_can_hold_several_copies(ray_local, folder, tmp_path):
    once = pipelines.images(str(folder), size=16).take_batch(COUNT)["image"]
    thrice = pipelines.images(str(folder), size=16, repeat=3).take_all()
    assert np.array_equal(np.stack([r["image"] for r in thrice]), np.concatenate([once] * 3))
    pipelines.pack_parquet(str(folder), str(tmp_path / "pq"), rows_per_file=8)
    twice = pipelines.images(str(tmp_path / "pq"), size=16, repeat=2).take_all()
    assert np.array_equal(np.stack([r["image"] for r in twice]), np.concatenate([once] * 2))
    with pytest.raises(ValueError, match="repeat must be >= 1, got 0"):
        pipelines.images(str(folder), repeat=0)


def test_pass_order_cycles_a_shorter_source_afresh_in_every_copy():
    a, b = pipelines.pass_order([5, 2], repeat=3, seed=0)
    assert list(a) == [0, 1, 2, 3, 4] * 3  # the longer source: sorted, once per copy
    assert len(b) == 15 and all(sorted(b[i : i + 2]) == [0, 1] for i in range(0, 14, 2))
    # One copy is exactly what a pass was before copies existed (checkpointed runs resume).
    assert [list(o) for o in pipelines.pass_order([5, 2], 1, 0)] == [list(a[:5]), list(b[:5])]
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        pipelines.pass_order([3], repeat=0)


def test_pass_order_never_pairs_equal_sized_sources_in_listing_order():
    a, b = pipelines.pass_order([50, 50], repeat=2, seed=0)
    assert list(a) == list(range(50)) * 2
    assert sorted(b[:50]) == list(range(50)) and sorted(b[50:]) == list(range(50))
    assert list(b[:50]) != list(range(50)) and list(b[:50]) != list(b[50:])


def test_parquet_round_trip(ray_local, folder, tmp_path):
    shards = pipelines.pack_parquet(str(folder), str(tmp_path / "pq"), rows_per_file=8)
    assert [os.path.basename(s) for s in shards] == [f"part-0000{i}.parquet" for i in range(3)]
    from_parquet = pipelines.images(str(tmp_path / "pq"), size=16).take_batch(COUNT)["image"]
    from_files = pipelines.images(str(folder), size=16).take_batch(COUNT)["image"]
    assert np.array_equal(from_parquet, from_files)
    one_shard = pipelines.images(shards[0], size=16).take_batch(COUNT)["image"]
    assert np.array_equal(one_shard, from_files[:8])
    with pytest.raises(ValueError, match="no column 'pixels'"):
        pipelines.images(shards[0], column="pixels")


def test_parquet_in_hugging_face_layout(ray_local, tmp_path):
    """An image column of {bytes, path} structs, no top-level path: rows are named by number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [png(solid(i)) for i in range(3)] + [b"broken"]
    column = pa.array([{"bytes": b, "path": None} for b in images])
    pq.write_table(pa.table({"img": column, "label": [0, 1, 2, 3]}), tmp_path / "train.parquet")
    rows = pipelines.images(str(tmp_path), size=8, column="img").take_batch(10)["image"]
    np.testing.assert_allclose(rows.mean(axis=(2, 3)), [expected(i) for i in range(3)], atol=1e-6)
    assert "train.parquet:row 3: not an image" in str(pipelines.skip_report(str(tmp_path)))


def corrupt_folder(root, good: int):
    for i in range(good):
        write(root / f"good{i}.png", png(solid(i)))
    write(root / "empty.png", b"")
    write(root / "truncated.png", png(solid(3))[:60])
    write(root / "notes.png", b"these are my notes, not an image\n")
    write(root / "labels.csv", b"file,label\n")
    return root


def test_unreadable_files_are_skipped_and_counted(ray_local, tmp_path):
    root = str(corrupt_folder(tmp_path, good=4))
    ds = pipelines.images(root, size=8)
    for _ in range(2):  # every epoch skips them again; the report counts each file once
        assert len(ds.take_all()) == 4
    report = pipelines.skip_report(root)
    assert (report.images, report.skipped, report.ignored) == (7, 3, 1)
    line = str(report)
    assert line.startswith("data: 4 of 7 images readable, 3 skipped (e.g. ")
    assert all(name in line for name in ("empty.png", "notes.png", "truncated.png"))
    assert "1 non-image file(s) ignored" in line and "\n" not in line


def test_no_readable_image_is_a_clear_error(ray_local, tmp_path):
    root = str(corrupt_folder(tmp_path, good=0))
    with pytest.raises(pipelines.NoImagesError, match="no readable image.*0 of 3 images"):
        pipelines.images(root)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        pipelines.images(str(tmp_path / "nothing-here"))
    (tmp_path / "text-only").mkdir()
    (tmp_path / "text-only" / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match="no image files"):
        pipelines.images(str(tmp_path / "text-only"))
