"""Pure image transforms: decode, resize + centre crop, scale to [-1, 1], split A|B, flip.

Everything here is a plain function of numpy arrays or torch tensors, so the Ray Data pipelines
(``genart.data.pipelines``), the torch DataLoader baseline in the benchmarks and the unit tests
share exactly the same arithmetic. Nothing here draws random numbers except :func:`random_flip`,
which takes an explicit generator: the training loop flips on device with its checkpointed RNG,
so a resumed run sees the same flips as an uninterrupted one.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # what genart reads as images


class DecodeError(ValueError):
    """Bytes that are not a readable image: empty, truncated, corrupt, or not an image at all."""


def _open(data: bytes) -> Image.Image:
    """Parse only the header; raises DecodeError for anything PIL cannot identify."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        # Image.open also enforces Image.MAX_IMAGE_PIXELS (decompression bombs) on the header.
        return Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError as err:
        raise DecodeError("not an image format PIL can identify") from err
    except Exception as err:  # PIL's plugins raise many types (OSError, SyntaxError, ...)
        raise DecodeError(f"unreadable image header: {err}") from err


def image_size(data: bytes) -> tuple[int, int]:
    """Declared ``(width, height)`` of encoded image bytes, read from the header only.

    Costs microseconds (no pixel is decoded), so callers can reject or cap huge images before
    paying for :func:`decode`. Raises :class:`DecodeError` if the header is unreadable.
    """
    return _open(data).size


def decode(
    data: bytes,
    channels: int = 3,
    max_pixels: int | None = None,
    min_size: int | None = None,
) -> np.ndarray:
    """Decode image bytes to a uint8 array ``(H, W, channels)`` (RGB for 3, grey for 1).

    ``max_pixels`` rejects images whose header declares more pixels (before decoding them);
    PIL's own ``Image.MAX_IMAGE_PIXELS`` bomb check applies in any case. ``min_size`` lets
    formats that can decode at a reduced scale (JPEG) do so, never below ``min_size`` pixels on
    either side: decoding + resizing a 4000x3000 JPEG to 64 is ~16x faster (measured).
    Raises :class:`DecodeError` for empty, truncated, corrupt or non-image bytes.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _open(data)
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(f"{width}x{height} image exceeds max_pixels={max_pixels}")
    mode = "L" if channels == 1 else "RGB"
    try:
        if min_size is not None:
            image.draft(mode, (min_size, min_size))
        image.load()  # the full decode: truncated or corrupt pixel data fails here
        array = np.asarray(image if image.mode == mode else image.convert(mode))
    except Exception as err:  # see _open: decoding untrusted bytes can fail in many ways
        raise DecodeError(f"corrupt image data: {err}") from err
    return array[..., None] if channels == 1 else array


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(H, W, C)`` uint8 so its shorter side is ``size``, then centre-crop to a square.

    Done as one resampling of the centred square region (PIL ``resize(box=...)``): the same
    result as resize-then-crop, with a single pass and no intermediate image. An image that
    already has the target size is returned as is (a quarter of the decode cost at 64x64).
    """
    height, width, channels = image.shape
    if height == width == size:
        return image
    side = min(height, width)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC, box=box))
    return out[..., None] if channels == 1 else out


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., H, W, C)`` -> float32 ``(..., C, H, W)`` in [-1, 1] (one image or a batch)."""
    chw = np.moveaxis(images, -1, -3)
    return np.ascontiguousarray(chw, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def split_ab(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split aligned side-by-side images ``(..., H, 2W, C)`` into the left (A) and right (B) halves.

    This is the pix2pix dataset layout. An odd width drops the middle column.
    """
    half = images.shape[-2] // 2
    return images[..., :half, :], images[..., -half:, :]


def random_flip(
    *tensors: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, ...]:
    """Flip a random half of a batch horizontally, with one mask shared by all ``tensors``.

    Every tensor is ``(N, C, H, W)`` with the same ``N``; image ``i`` of every tensor is flipped
    or not together, which keeps paired images (pix2pix A and B) aligned. The mask is drawn from
    ``generator`` (on the generator's device) so a checkpointed generator reproduces the flips.
    Always returns a tuple, one tensor per input.
    """
    import torch  # here, not at the top: Ray Data's decode tasks then never import torch

    if not tensors:
        raise ValueError("random_flip needs at least one tensor")
    batch = tensors[0].shape[0]
    if any(t.shape[0] != batch for t in tensors):
        raise ValueError(f"batch sizes differ: {[t.shape[0] for t in tensors]}")
    device = generator.device if generator is not None else tensors[0].device
    flip = torch.rand(batch, generator=generator, device=device) < 0.5
    target = tensors[0].device
    if flip.device != target and target.type == "cuda":
        # From pinned memory the copy is queued on the stream; a copy from pageable memory
        # waits for all queued GPU work, which at millisecond steps stalls every step.
        flip = flip.pin_memory()
    flip = flip.to(target, non_blocking=True).view(batch, 1, 1, 1)
    return tuple(torch.where(flip, t.flip(-1), t) for t in tensors)
