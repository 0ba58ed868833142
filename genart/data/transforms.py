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
from PIL import Image, ImageOps

from genart.errors import InputError

if TYPE_CHECKING:
    import torch


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # what genart reads as images

# A progressive JPEG is decoded scan by scan, each over the whole image, so a few kilobytes of
# repeated tiny scans cost seconds of CPU (3,000 scans of a 2048x2048 image: 4.5 s). Encoders
# write about 10 (Pillow: 6 grey, 10 colour); libjpeg's djpeg has -maxscans N against this
# attack but no default. 100 leaves tenfold headroom and costs ~0.3 s at 2048x2048 (grey).
MAX_JPEG_SCANS = 100
JPEG_START = b"\xff\xd8"  # the SOI marker: every JPEG (and MPO) file begins with it
JPEG_SCAN_START = b"\xff\xda"  # the SOS marker


class DecodeError(InputError):
    """Bytes that are not a readable image: empty, truncated, corrupt, or not an image at all."""


class SizeError(InputError):
    """An image too elongated to resize: its short side would shrink below the minimum."""


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
    return webp_canvas_size(data) or _open(data).size


def webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """The ``(width, height)`` a WebP file's first chunk declares, read from its bytes; None
    for bytes that are not a WebP or too short to say.

    Read without Pillow, whose WebP parser applies its decompression-bomb check itself: a
    canvas over ~179 MP fails to open there, with Pillow's error rather than the caller's
    caps, so callers check this size first. Layouts from the WebP container specification
    (RFC 9649).
    """
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None

    def number(start: int, end: int) -> int:  # little-endian, as every RIFF field
        return int.from_bytes(data[start:end], "little")

    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: the canvas, 24-bit sides less one
        return number(24, 27) + 1, number(27, 30) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: after the frame's start code
        return number(26, 28) & 0x3FFF, number(28, 30) & 0x3FFF  # 14-bit sides, 2-bit scales
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: signature, then 14-bit sides less one
        bits = number(21, 25)
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    return None


def check_jpeg_scans(data: bytes) -> None:
    """Raise :class:`DecodeError` for a JPEG of more than ``MAX_JPEG_SCANS`` scans (others pass).

    A JPEG is told by its bytes (the start-of-image marker), not by the format name Pillow
    gives it: Pillow opens a JPEG that carries an MPF segment as "MPO" and decodes it with the
    same JPEG decoder, scan by scan. Counts scan-start markers in the raw bytes, before any
    pixel is decoded: entropy-coded data byte-stuffs every 0xFF, so it never holds one.
    Metadata can (an EXIF thumbnail adds its own scans, an MPO its other frames'), so the
    count errs high, by a few scans on real photos.
    """
    if not data.startswith(JPEG_START):
        return
    scans = data.count(JPEG_SCAN_START)
    if scans > MAX_JPEG_SCANS:
        raise DecodeError(f"JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are decoded")


def load_as(image: Image.Image, mode: str) -> Image.Image:
    """Decode all pixels of an opened image: upright, 8-bit, opaque, in ``mode`` ("RGB" or "L").

    Upright: the EXIF orientation is applied, as viewers do (phone photos are stored sideways).
    Width and height may swap; the pixel count does not, so header size checks stay valid.
    Opaque: transparent pixels are composited onto white, never shown in whatever colour the
    encoder left under them. Raises whatever Pillow raises for truncated or corrupt data.
    """
    image.load()  # the full decode: truncated or corrupt pixel data fails here
    # Only with EXIF present (JPEG APP1, PNG eXIf, WebP EXIF all land in info): parsing it
    # anyway is a sizeable share of a small PNG's decode.
    if "exif" in image.info:
        ImageOps.exif_transpose(image, in_place=True)
    image = _on_white(_to_8_bit(image))
    return image if image.mode == mode else image.convert(mode)


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (Pillow's I;16 modes, or 32-bit I) as L, keeping the high byte.

    ``convert`` would clip at 255 instead, turning all but the darkest pixels white.
    """
    if not image.mode.startswith("I"):
        return image
    high_byte = np.asarray(image).clip(0, 65535) >> 8  # I is signed 32-bit: clip before shifting
    return Image.fromarray(high_byte.astype(np.uint8))


def _on_white(image: Image.Image) -> Image.Image:
    """An image with alpha or a transparent colour (P, L or RGB + tRNS) composited onto white."""
    if not image.has_transparency_data:
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)


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
    either side: a large JPEG read for a small training size then decodes many times faster.
    Pixels come out as :func:`load_as` gives them (upright, 8-bit, transparency on white).
    Raises :class:`DecodeError` for empty, truncated, corrupt or non-image bytes, and for JPEGs
    of more than ``MAX_JPEG_SCANS`` scans.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _open(data)
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(f"{width}x{height} image exceeds max_pixels={max_pixels}")
    check_jpeg_scans(data)
    mode = "L" if channels == 1 else "RGB"
    try:
        if min_size is not None:
            image.draft(mode, (min_size, min_size))
        array = np.asarray(load_as(image, mode))
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


def fit_long_side(
    image: np.ndarray, side: int, upscale: bool = False, min_side: int = 1
) -> np.ndarray:
    """Resize a uint8 ``(H, W, C)`` image so its longest side is ``side`` (Lanczos).

    Larger images are scaled down; smaller ones are scaled up only with ``upscale``. Raises
    :class:`SizeError` when the short side would come out under ``min_side`` (a 4000x10 strip
    fit to 256 would be 256x1: no picture any model can work on).
    """
    height, width = image.shape[:2]
    if side <= 0 or max(height, width) == side or (max(height, width) < side and not upscale):
        return image
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if min(size) < min_side:
        raise SizeError(
            f"image is {width}x{height}: fit to {side} on its long side, its short side would "
            f"be {min(size)}, under {min_side}; send a less elongated image"
        )
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize(size, Image.Resampling.LANCZOS))
    return out[..., None] if image.shape[-1] == 1 else out


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
