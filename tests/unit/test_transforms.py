"""Pure image transforms: decode errors, header size, resize + crop, scaling, A|B split, flips."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from genart.data import transforms as T


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def gradient() -> np.ndarray:
    """A 24x40 RGB image whose pixels differ everywhere (so a wrong crop or axis shows)."""
    y, x = np.mgrid[0:24, 0:40]
    return np.stack([x * 6, y * 10, (x + y) * 3], axis=-1).astype(np.uint8)


def test_decode_round_trips_rgb_and_grey(gradient):
    data = encode(gradient)
    assert np.array_equal(T.decode(data), gradient)
    grey = T.decode(data, channels=1)
    assert grey.shape == (24, 40, 1) and grey.dtype == np.uint8
    assert np.array_equal(grey[..., 0], np.asarray(Image.fromarray(gradient).convert("L")))


def test_decode_converts_palette_and_alpha_to_rgb(gradient):
    rgba = np.concatenate([gradient, np.full((24, 40, 1), 255, np.uint8)], axis=-1)
    assert np.array_equal(T.decode(encode(rgba)), gradient)
    palette = Image.fromarray(gradient).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert T.decode(buffer.getvalue()).shape == (24, 40, 3)


def zero_pixel_data(png: bytes) -> bytes:
    """Valid signature and chunk headers, zeros where the compressed pixels were."""
    start = png.index(b"IDAT") + 8
    return png[:start] + bytes(len(png) - start - 16) + png[-16:]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda png: b"", "empty"),
        (lambda png: png[: len(png) // 2], "corrupt"),  # truncated: the header still parses
        (lambda png: b"hello, I am a text file\n", "identify"),
        (zero_pixel_data, "corrupt"),
    ],
    ids=["zero-byte", "truncated", "text", "zeroed-pixel-data"],
)
def test_decode_raises_decode_error_for_unreadable_bytes(gradient, make, message):
    with pytest.raises(T.DecodeError, match=message):
        T.decode(make(encode(gradient)))


def test_image_size_reads_the_header_only(gradient):
    png = encode(gradient)
    assert T.image_size(png) == (40, 24)
    assert T.image_size(png[:100]) == (40, 24)  # truncated pixels do not matter here
    with pytest.raises(T.DecodeError):
        T.image_size(b"not an image")


def test_decode_caps_pixels_before_decoding(gradient):
    png = encode(gradient)
    assert T.decode(png, max_pixels=40 * 24).shape == (24, 40, 3)
    with pytest.raises(T.DecodeError, match="max_pixels"):
        T.decode(png, max_pixels=40 * 24 - 1)


def test_decode_keeps_pils_decompression_bomb_check(gradient, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # bombs are > 2x this
    with pytest.raises(T.DecodeError):
        T.decode(encode(gradient))


def test_decode_min_size_decodes_jpeg_at_reduced_scale():
    photo = np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)
    jpeg = encode(photo, "JPEG")
    assert T.decode(jpeg).shape == (400, 600, 3)
    assert T.decode(jpeg, min_size=64).shape == (100, 150, 3)  # 1/4 scale: shorter side >= 64
    with pytest.raises(ValueError):
        T.decode(jpeg, channels=2)


def progressive_jpeg(scans: int) -> bytes:
    """A 64x64 grey progressive JPEG of ``scans`` scans: its last scan repeated, as in the attack.

    Pillow writes 6 scans for grey; the last one (an AC refinement) runs to the end-of-image
    marker, so repeating it re-refines coefficients and still decodes.
    """
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last = data.rindex(T.JPEG_SCAN_START)
    repeats = scans - data.count(T.JPEG_SCAN_START) + 1
    return data[:last] + data[last:-2] * repeats + data[-2:]


def test_decode_refuses_jpegs_of_too_many_scans_before_decoding():
    assert T.decode(progressive_jpeg(T.MAX_JPEG_SCANS)).shape == (64, 64, 3)
    with pytest.raises(T.DecodeError, match="101 scans"):
        T.decode(progressive_jpeg(T.MAX_JPEG_SCANS + 1))


def mpo_marked(jpeg: bytes) -> bytes:
    """The JPEG with an MPF segment (APP2 "MPF") after its SOI: Pillow then opens it as MPO.

    The segment is the one Pillow writes for a two-frame MPO (cameras write such files).
    """
    buffer = io.BytesIO()
    frame = Image.new("L", (8, 8))
    frame.save(buffer, "MPO", save_all=True, append_images=[frame])
    mpo = buffer.getvalue()
    start = mpo.index(b"\xff\xe2")  # APP2
    app2 = mpo[start : start + 2 + int.from_bytes(mpo[start + 2 : start + 4], "big")]
    assert app2[4:8] == b"MPF\x00"
    return jpeg[:2] + app2 + jpeg[2:]


def test_the_scan_cap_holds_for_jpegs_pillow_calls_mpo():
    attack = mpo_marked(progressive_jpeg(2_020))
    assert Image.open(io.BytesIO(attack)).format == "MPO"  # not "JPEG": the old check passed it
    with pytest.raises(T.DecodeError, match="2020 scans"):
        T.decode(attack)
    with pytest.raises(T.DecodeError, match="2020 scans"):
        T.check_jpeg_scans(attack)
    assert T.decode(mpo_marked(progressive_jpeg(10))).shape == (64, 64, 3)  # a normal MPO


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I"])
def test_16_bit_grey_keeps_its_high_byte(mode):
    ramp = np.linspace(0, 65535, 64, dtype=np.uint32).reshape(8, 8)
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I;16L": "<u2", "I": "<i4"}[mode]
    image = Image.frombytes(mode, (8, 8), ramp.astype(dtype).tobytes())
    for mode_out, channels in (("L", 1), ("RGB", 3)):
        got = np.asarray(T.load_as(image.copy(), mode_out)).reshape(8, 8, channels)
        assert np.array_equal(got, np.repeat((ramp >> 8)[..., None], channels, axis=-1))


def test_decode_of_a_16_bit_png_is_not_white():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    grey = T.decode(encode(ramp), channels=1)[..., 0]
    assert np.array_equal(grey, (ramp >> 8).astype(np.uint8))


def test_decode_applies_the_exif_orientation():
    stored = np.zeros((100, 200, 3), np.uint8)
    stored[:, 100:] = 255  # black left half, white right half
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown rotated 90 degrees clockwise
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", exif=exif)
    for channels in (1, 3):
        shown = T.decode(buffer.getvalue(), channels=channels)
        assert shown.shape == (200, 100, channels)  # portrait, as a viewer shows it
        assert shown[:50].max() < 20 and shown[150:].min() > 235  # the left half is on top


def palette_with_transparent_index() -> Image.Image:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.info["transparency"] = 1
    return image


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (4, 4), (255, 0, 0, 0)),
        Image.new("LA", (4, 4), (30, 0)),
        Image.new("PA", (4, 4), (1, 0)),
        palette_with_transparent_index(),
    ],
    ids=["RGBA", "LA", "PA", "P+transparency"],
)
def test_transparent_pixels_become_white(image):
    assert (np.asarray(T.load_as(image, "RGB")) == 255).all()


def test_translucent_pixels_are_blended_onto_white():
    half_red = np.array([[[255, 0, 0, 128]]], np.uint8)
    blended = T.decode(encode(half_red))[0, 0].astype(int)
    assert np.abs(blended - [255, 127, 127]).max() <= 1


def stripes(height: int, width: int, edge: int) -> np.ndarray:
    """Red up to column ``edge``, blue from ``width - edge``, green in between."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :edge, 0] = image[:, edge : width - edge, 1] = image[:, width - edge :, 2] = 255
    return image


GREEN = np.array([0, 255, 0], np.uint8)


@pytest.mark.parametrize("size", [8, 4])
def test_resize_crop_keeps_the_centre_square(size):
    # 8 x 32, green from column 8 to 24: the centre 8 x 8 square is green with a wide margin,
    # so an exact crop (size 8) and a 2x downscale (size 4) must both be pure green.
    image = stripes(8, 32, 8)
    out = T.resize_crop(image, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.broadcast_to(GREEN, out.shape))
    tall = np.ascontiguousarray(np.swapaxes(image, 0, 1))  # the same along the other axis
    assert np.array_equal(T.resize_crop(tall, size), out)


def test_resize_crop_shapes_and_exact_crop(gradient):
    assert T.resize_crop(gradient, 12).shape == (12, 12, 3)
    assert T.resize_crop(gradient[..., :1], 12).shape == (12, 12, 1)
    # At the shorter side's own size it is a pure crop of the centre (every pixel differs).
    assert np.array_equal(T.resize_crop(gradient, 24), gradient[:, 8:32])
    assert np.array_equal(
        T.resize_crop(np.swapaxes(gradient, 0, 1), 24)[:, :, 0], gradient[:, 8:32, 0].T
    )
    assert T.resize_crop(gradient, 64).shape == (64, 64, 3)  # upsamples small images


def test_to_float_layout_and_range(gradient):
    image = T.to_float(gradient)
    assert image.shape == (3, 24, 40) and image.dtype == np.float32
    assert np.allclose(image[:, 5, 7], gradient[5, 7] / 127.5 - 1)
    batch = T.to_float(np.stack([gradient, 255 - gradient]))
    assert batch.shape == (2, 3, 24, 40)
    extremes = T.to_float(np.array([[[0], [255]]], np.uint8))
    assert extremes.min() == -1.0 and extremes.max() == 1.0


def test_split_ab_halves_images_and_batches():
    a = np.full((4, 6, 3), 10, np.uint8)
    b = np.full((4, 6, 3), 200, np.uint8)
    left, right = T.split_ab(np.concatenate([a, b], axis=1))
    assert np.array_equal(left, a) and np.array_equal(right, b)
    batch = np.stack([np.concatenate([a, b], axis=1)] * 5)
    left, right = T.split_ab(batch)
    assert left.shape == right.shape == (5, 4, 6, 3) and (right == 200).all()


def test_random_flip_shares_one_mask_across_tensors():
    a = torch.arange(64 * 2 * 3 * 4, dtype=torch.float32).view(64, 2, 3, 4)
    b = a * 10
    flipped_a, flipped_b = T.random_flip(a, b, generator=torch.Generator().manual_seed(0))
    flipped = (flipped_a != a).flatten(1).any(1)
    assert 0 < flipped.sum() < 64  # some flipped, some not
    assert torch.equal(flipped_a[flipped], a[flipped].flip(-1))
    assert torch.equal(flipped_a[~flipped], a[~flipped])
    assert torch.equal(flipped_b, flipped_a * 10)  # b flipped exactly where a was


def test_random_flip_is_reproducible_from_the_generator():
    x = torch.randn(32, 1, 2, 5)
    first = T.random_flip(x, generator=torch.Generator().manual_seed(7))
    second = T.random_flip(x, generator=torch.Generator().manual_seed(7))
    assert isinstance(first, tuple) and len(first) == 1
    assert torch.equal(first[0], second[0])


def test_random_flip_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="batch sizes"):
        T.random_flip(torch.zeros(2, 1, 2, 2), torch.zeros(3, 1, 2, 2))
    with pytest.raises(ValueError):
        T.random_flip()


@pytest.mark.parametrize("channels", [1, 3])
def test_tensor_uint8_conversions_and_png_round_trip(gradient, channels):
    from genart.images import encode_png, from_uint8, to_uint8

    image = np.ascontiguousarray(gradient[..., :channels])
    batch = torch.from_numpy(np.stack([image, 255 - image]))
    floats = from_uint8(batch)
    assert floats.shape == (2, channels, 24, 40) and floats.dtype == torch.float32
    assert torch.equal(floats, torch.from_numpy(T.to_float(batch.numpy())))
    assert np.array_equal(to_uint8(floats), batch.numpy())
    assert np.array_equal(T.decode(encode_png(image), channels=channels), image)
