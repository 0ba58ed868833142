"""One image decoder for every path: a phone photo stored sideways (EXIF orientation 6) comes out
upright, pixel for pixel the same, from the CLI's stylise path, the HTTP upload path and the
training data decode."""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from genart import pipelines
from genart.cli import main
from genart.data.pipelines import _Decoder
from genart.serve.validation import Limits, decode_image

SIDE = 32  # square: the training decode then keeps the whole image (no resize, no crop)


@pytest.fixture()
def sideways_jpeg(tmp_path):
    """A JPEG whose pixels are stored rotated, with EXIF saying how to show them (as phones do),
    and the upright pixels a viewer shows."""
    rng = np.random.default_rng(0)
    stored = np.zeros((SIDE, SIDE, 3), np.uint8)
    stored[: SIDE // 4] = (255, 0, 0)  # a red band at the top of the stored pixels
    stored[SIDE // 4 :] = rng.integers(0, 256, (SIDE - SIDE // 4, SIDE, 3), np.uint8) // 4
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", exif=exif, quality=95)
    path = tmp_path / "phone.jpg"
    path.write_bytes(buffer.getvalue())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    return path, upright


class Recorder:
    """A stand-in pipeline that returns its inputs: the CLI writes what it decoded."""

    def __call__(self, images, **call):
        return list(images)


def test_cli_http_and_training_decode_the_same_upright_pixels(sideways_jpeg, tmp_path, monkeypatch):
    path, upright = sideways_jpeg
    data = path.read_bytes()
    raw = np.asarray(Image.open(path).convert("RGB"))  # the stored pixels, not upright
    assert not np.array_equal(raw, upright)  # the file really is sideways
    assert upright[:, -SIDE // 4 :, 0].min() > 200  # shown upright, the band is on the right

    monkeypatch.setattr(
        pipelines, "load", lambda uri, device="auto", families=(), **options: Recorder()
    )
    out = tmp_path / "styled.png"
    argv = ["stylize", "fast", "--model", "any", "--input", str(path), "--output", str(out)]
    assert main(argv) == 0
    from_cli = np.asarray(Image.open(out))

    from_http = decode_image(data, Limits())
    from_training = _Decoder(SIDE, 3, ("image",))(data)["image"]

    np.testing.assert_array_equal(from_cli, upright)
    np.testing.assert_array_equal(from_http, upright)
    np.testing.assert_array_equal(from_training, upright)


def test_the_gatys_batch_contact_sheet_shows_photos_upright(sideways_jpeg, tmp_path):
    from genart.cli.style import contact_sheet

    path, upright = sideways_jpeg
    style = tmp_path / "style.png"
    Image.fromarray(np.full((SIDE, SIDE, 3), 128, np.uint8)).save(style)
    Image.fromarray(upright).save(tmp_path / "phone__style.png")  # the result of the pair

    sheet = np.asarray(contact_sheet([str(path)], [str(style)], tmp_path, cell=SIDE))
    content_cell = sheet[SIDE:, :SIDE]  # content images down the left, below the styles
    # As a viewer shows the photo: its red band on the right, not along the top.
    assert content_cell[:, -SIDE // 8 :, 0].min() > 200
    assert content_cell[: SIDE // 8, : SIDE // 2, 0].max() < 200
