"""Images in and out: the one way genart reads an image file, conversions between uint8 arrays
and tensors in [-1, 1], PNG encoding and sample grids.

Every path that reads an image (training data, the CLI, Tune trials, the HTTP upload, a style
image of a fast-style run) decodes it with :func:`genart.data.transforms.decode`: upright by
its EXIF orientation, 16-bit grey scaled to 8 bits, transparency composited onto white, JPEGs of
too many scans refused. :func:`read` is that decoder for a file path or URI.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genart import storage
from genart.data.transforms import IMAGE_EXTENSIONS, decode, fit_long_side, resize_crop, to_float


def read(uri: str | Path, channels: int = 3, long_side: int = 0) -> np.ndarray:
    """An image file (local path or ``s3://`` URI) as uint8 ``(H, W, channels)``, decoded as
    every genart path decodes images; resized so its long side is ``long_side`` if > 0."""
    uri = str(uri)
    if not storage.is_remote(uri):
        path = Path(uri).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"image {uri} does not exist")
        uri = str(path)
    image = decode(storage.read_bytes(uri), channels)
    return fit_long_side(image, long_side, upscale=True)


def read_tensor(uri: str | Path, channels: int = 3, long_side: int = 0) -> torch.Tensor:
    """:func:`read` as a float ``(C, H, W)`` tensor in [-1, 1]."""
    return torch.from_numpy(to_float(read(uri, channels, long_side)))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) or (C, H, W) in [-1, 1] -> uint8 array (B, H, W, C) or (H, W, C)."""
    return quantise(images).movedim(-3, -1).cpu().numpy()


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1], on the input's device.

    The inverse of ``to_uint8`` and equal to ``transforms.to_float``; on a GPU, copying the
    uint8 images and converting there moves a quarter of the bytes.
    """
    return images.movedim(-1, -3).float() / 127.5 - 1


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [-1, 1]: uint8 (B, C, H, W) converted, float tensors as they are.

    Reference sets are kept as uint8 (a quarter of float32's memory) and converted a chunk at a
    time where they are scored.
    """
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1
    return images.float()


def float_chunks(*batches: torch.Tensor, size: int = 16) -> Iterator[tuple[torch.Tensor, ...]]:
    """Aligned chunks of ``size`` rows of several batches (uint8 or float) as float images in
    [-1, 1], one chunk converted at a time: how reference sets are scored."""
    for chunks in zip(*(batch.split(size) for batch in batches)):
        yield tuple(as_float(chunk) for chunk in chunks)


def quantise(images: torch.Tensor) -> torch.Tensor:
    """Float (B, C, H, W) in [-1, 1] as uint8 with the same layout: exact for images that were
    decoded from 8-bit files and scaled by :func:`genart.data.transforms.to_float`."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def encode_png(array: np.ndarray) -> bytes:
    """A uint8 (H, W, C) image with 1 or 3 channels, encoded as PNG.

    Pillow releases the GIL while it compresses, so encodes in several threads run in parallel.
    zlib level 1, not Pillow's 6: several times as fast for a few percent more bytes, and
    encoding is most of a served request's CPU time.
    """
    buffer = io.BytesIO()
    array_to_pil(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def png_bytes(image: torch.Tensor) -> bytes:
    """One (C, H, W) image in [-1, 1] encoded as PNG."""
    return encode_png(to_uint8(image))


def array_to_pil(array: np.ndarray) -> Image.Image:
    """A uint8 (H, W, C) image -> a PIL image (L for 1 channel, RGB for 3)."""
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def to_pil(image: torch.Tensor) -> Image.Image:
    """One (C, H, W) image in [-1, 1] -> a PIL image (L for 1 channel, RGB for 3)."""
    return array_to_pil(to_uint8(image))


def from_pil(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """A PIL image -> (C, H, W) float tensor in [-1, 1] with 1 or 3 channels."""
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1


Batchable = torch.Tensor | Sequence[np.ndarray]


def as_batch(images: Batchable) -> torch.Tensor:
    """A float (B, C, H, W) batch in [-1, 1] from a tensor batch or equally sized uint8 arrays."""
    if isinstance(images, torch.Tensor):
        return images.detach().float().cpu()
    return from_uint8(torch.from_numpy(np.stack(list(images))))


def grid(images: Batchable, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """Tile a batch (a tensor in [-1, 1], or uint8 (H, W, C) arrays of one size) into one
    (C, H', W') image in [-1, 1], near-square by default."""
    # torchvision imported here: it pulls in torch._dynamo (seconds), which serving replicas and
    # data workers that never draw a grid should not pay for.
    from torchvision.utils import make_grid

    batch = as_batch(images)
    nrow = nrow or max(1, int(np.ceil(np.sqrt(batch.shape[0]))))
    return make_grid(batch, nrow=nrow, padding=padding, pad_value=1.0)


def grid_png(images: Batchable, nrow: int | None = None) -> bytes:
    """:func:`grid` encoded as PNG."""
    return png_bytes(grid(images, nrow))


def save_grid(images: Batchable, path: str | Path, nrow: int | None = None) -> Path:
    """Write a batch (see :func:`grid`) as one PNG grid; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(grid(images, nrow)).save(path)
    return path


def find_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files (by extension) under ``root``, sorted; FileNotFoundError if there are none."""
    pattern = "**/*" if recursive else "*"
    paths = sorted(
        p for p in Path(root).glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
    return paths


def load_folder(
    directory: str | Path,
    n: int | None = None,
    size: int = 64,
    channels: int = 3,
    seed: int = 0,
) -> torch.Tensor:
    """Images under ``directory`` (recursively) as (N, C, size, size) floats in [-1, 1].

    Decoded, scaled (shorter side) and centre-cropped by the training pipeline's own
    transforms, so real images are compared exactly as the models saw them. With more than
    ``n`` files, a seeded random subset is taken, not the first ``n`` in name order: folders
    are often sorted by class, and a prefix would miss classes.
    """
    paths = find_images(directory)
    if n is not None and n < len(paths):
        paths = sorted(random.Random(seed).sample(paths, n))
    arrays = [resize_crop(decode(path.read_bytes(), channels), size) for path in paths]
    return torch.from_numpy(to_float(np.stack(arrays)))
