"""Spatial control by a mask image: guided Gram matrices for Gatys (Gatys et al. 2017) and
regional AdaIN (Huang & Belongie 2017, sec. 7), in the pipelines and through the CLI. No Ray.

Tiny images, a random VGG and a random decoder: these check where the style goes, not how it
looks."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exports import make_export, variance_keeping
from PIL import Image

from genart import controls
from genart.cli import main
from genart.errors import InputError
from genart.images import read
from genart.losses import gram_matrix
from genart.models import adain
from genart.pipelines.adain import AdaINPipeline
from genart.pipelines.gatys import GatysPipeline

SMALL = {"content_layers": ("relu2_2",), "style_layers": ("relu1_1", "relu2_1", "relu3_1")}
H, W = 32, 128  # content size: a wide image, white (stylised) on the left half
FAR = 96  # columns from here on lie beyond every network's reach from the mask's edge


def picture(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def smooth_picture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour blobs: a content whose change by a style is plain to see."""
    coarse = torch.rand(1, 3, h // 8, w // 8, generator=torch.Generator().manual_seed(seed))
    image = F.interpolate(coarse, size=(h, w), mode="bilinear")[0].permute(1, 2, 0)
    return (image * 255).round().to(torch.uint8).numpy()


def left_half_mask(value: int = 255) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[:, : W // 2] = value
    return mask


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


# --- the pieces ----------------------------------------------------------------------------------


def test_mask_weights_are_white_1_black_0_and_colour_masks_count_by_luminance():
    grey = left_half_mask(255)
    weights = controls.mask_weights(grey, (H, W, 3))
    assert weights.shape == (1, 1, H, W) and weights.dtype == torch.float32
    assert weights[..., : W // 2].eq(1).all() and weights[..., W // 2 :].eq(0).all()
    same = controls.mask_weights(np.repeat(grey[..., None], 3, axis=2), (H, W))
    torch.testing.assert_close(same, weights)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert controls.mask_weights(red, (2, 2)).flatten().tolist() == pytest.approx([0.299] * 4)


def test_a_mask_of_another_size_or_shape_is_an_input_error():
    with pytest.raises(InputError) as caught:
        controls.mask_weights(np.zeros((30, 40), np.uint8), (32, 40))
    assert (
        str(caught.value)
        == "mask is 40x30 but the content is 40x32: the mask must have the content's size"
    )
    with pytest.raises(InputError, match="a mask is an"):
        controls.mask_weights(np.zeros((4, 4, 2), np.uint8), (4, 4))
    with pytest.raises(InputError, match="an outside style needs a mask"):
        controls.check_regions(None, picture(8, 8, 0))


def test_a_guided_gram_is_the_gram_of_the_guided_region():
    features = torch.randn(2, 5, 6, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gram_matrix(features, torch.ones(1, 1, 6, 8)), gram_matrix(features))
    left = torch.zeros(1, 1, 6, 8)
    left[..., :3] = 1
    torch.testing.assert_close(gram_matrix(features, left), gram_matrix(features[..., :3]))
    assert gram_matrix(features, torch.zeros(1, 1, 6, 8)).abs().max() == 0  # no NaN


def test_regional_statistics_are_those_of_the_region():
    features = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(1))
    top = torch.zeros(1, 1, 5, 6)
    top[..., :2, :] = 1
    for got, expected in zip(
        adain.channel_stats(features, top), adain.channel_stats(features[..., :2, :])
    ):
        torch.testing.assert_close(got, expected)
    style = torch.randn(1, 4, 3, 3) * 3 + 1
    target = adain.regional(features, [style], None, top)
    torch.testing.assert_close(target[..., 2:, :], features[..., 2:, :])  # black keeps the content
    torch.testing.assert_close(target[..., :2, :], adain.adain(features[..., :2, :], style))


# --- Gatys ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gatys():
    return GatysPipeline.from_config({**SMALL, "iterations": 5}, vgg_weights="random", device="cpu")


@pytest.fixture(scope="module")
def gatys_images():
    return smooth_picture(H, W, 0), picture(40, 40, 1), smooth_picture(40, 40, 2)


def test_gatys_stylises_the_white_region_and_keeps_the_content_in_the_black(gatys, gatys_images):
    content, style, _ = gatys_images
    masked, info = gatys(content, [style], mask=left_half_mask())
    left, right = slice(0, W // 2), slice(W // 2, W)
    assert diff(masked[:, left], content[:, left]) > 10  # stylised
    np.testing.assert_array_equal(masked[:, right], content[:, right])
    assert info["losses"]["style"] > 0
    # The style is matched where the mask is white only: not the unmasked optimisation's image.
    unmasked, _ = gatys(content, [style])
    assert diff(masked[:, left], unmasked[:, left]) > 1
    # All white: the guided Grams are the plain ones.
    white, _ = gatys(content, [style], mask=np.full((H, W), 255, np.uint8))
    np.testing.assert_array_equal(white, unmasked)


def test_gatys_gives_the_black_region_an_outside_style(gatys, gatys_images):
    content, style, other = gatys_images
    masked, _ = gatys(content, [style], mask=left_half_mask())
    two, _ = gatys(content, [style], mask=left_half_mask(), outside_style=other)
    right = slice(W // 2, W)
    assert diff(two[:, right], content[:, right]) > 5
    # strength 0 is still the content, mask or not
    kept, _ = gatys(content, [style], mask=left_half_mask(), outside_style=other, strength=0.0)
    np.testing.assert_array_equal(kept, content)
    assert not np.array_equal(two, masked)


def test_gatys_refuses_a_mask_of_another_size_before_optimising(gatys, gatys_images):
    content, style, other = gatys_images
    seen = []
    with pytest.raises(InputError, match="mask is 64x32 but the content is 128x32"):
        gatys(content, [style], seen.append, mask=np.zeros((32, 64), np.uint8))
    with pytest.raises(InputError, match="an outside style needs a mask"):
        gatys(content, [style], seen.append, outside_style=other)
    assert seen == []


# --- AdaIN ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adain_export(tmp_path_factory):
    tiny = ["adain.vgg_weights=random", "adain.width=8"]
    return make_export(tmp_path_factory.mktemp("masks"), "adain", tiny, variance_keeping)


@pytest.fixture(scope="module")
def adain_pipe(adain_export):
    return AdaINPipeline.from_export(adain_export, "cpu")


@pytest.fixture(scope="module")
def adain_images():
    return picture(H, W, 0), picture(32, 32, 1), picture(24, 24, 2)


def test_adain_stylises_the_white_region_in_feature_space(adain_pipe, adain_images):
    content, style, _ = adain_images
    masked = adain_pipe(content, [style], mask=left_half_mask())
    full, plain = adain_pipe(content, [style]), adain_pipe(content, [style], alpha=0.0)
    left = slice(0, W // 2 - 16)
    assert diff(masked[:, left], full[:, left]) < diff(masked[:, left], plain[:, left]) / 2
    # Far from the mask's edge the black region is the content's features, decoded.
    np.testing.assert_array_equal(masked[:, FAR:], plain[:, FAR:])
    white = adain_pipe(content, [style], mask=np.full((H, W), 255, np.uint8))
    assert np.abs(white.astype(int) - full).max() <= 1


def test_adain_gives_the_black_region_an_outside_style(adain_pipe, adain_images):
    content, style, other = adain_images
    two = adain_pipe(content, [style], mask=left_half_mask(), outside_style=other)
    in_other, plain = adain_pipe(content, [other]), adain_pipe(content, [style], alpha=0.0)
    assert diff(two[:, FAR:], in_other[:, FAR:]) < diff(two[:, FAR:], plain[:, FAR:]) / 2
    black = adain_pipe(content, [style], mask=np.zeros((H, W), np.uint8), outside_style=other)
    assert np.abs(black.astype(int) - in_other).max() <= 1


def test_adain_cuts_the_mask_into_tiles_with_the_content(adain_pipe, adain_images):
    content, style, _ = adain_images
    tiled = AdaINPipeline(adain_pipe.nets, adain_pipe.cfg, adain_pipe.description, tile=48)
    masked = tiled(content, [style], mask=left_half_mask())
    np.testing.assert_array_equal(
        masked[:, FAR + 16 :], tiled(content, [style], alpha=0.0)[:, FAR + 16 :]
    )
    assert diff(masked[:, :32], tiled(content, [style])[:, :32]) < 1


def test_adain_refuses_a_mask_of_another_size(adain_pipe, adain_images):
    content, style, other = adain_images
    with pytest.raises(InputError, match="mask is 128x16 but the content is 128x32"):
        adain_pipe(content, [style], mask=np.zeros((16, 128), np.uint8))
    with pytest.raises(InputError, match="an outside style needs a mask"):
        adain_pipe(content, [style], outside_style=other)


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory, adain_images):
    folder = tmp_path_factory.mktemp("mask-files")
    content, style, other = adain_images
    images = {"content": content, "style": style, "other": other, "mask": left_half_mask(),
              "small-mask": np.zeros((16, 64), np.uint8)}  # fmt: skip
    for name, image in images.items():
        Image.fromarray(image).save(folder / f"{name}.png")
    (folder / "notes.png").write_text("not an image\n")
    return folder


def test_cli_adain_mask_and_outside_style(files, adain_export, adain_pipe, tmp_path):
    out = tmp_path / "masked.png"
    argv = ["stylize", "adain", "--model", adain_export, "--content", str(files / "content.png"),
            "--style", str(files / "style.png"), "--mask", str(files / "mask.png"),
            "--outside-style", str(files / "other.png"), "--output", str(out),
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    content, style, other = (read(files / f"{name}.png") for name in ("content", "style", "other"))
    expected = adain_pipe(content, [style], mask=left_half_mask(), outside_style=other)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["mask"] == str(files / "mask.png")
    assert info["outside_style"] == str(files / "other.png")


def test_cli_gatys_resizes_the_mask_with_the_content(files, tmp_path):
    out = tmp_path / "gatys.png"
    argv = ["stylize", "gatys", "--content", str(files / "content.png"), "--style",
            str(files / "style.png"), "--mask", str(files / "mask.png"), "--size", "64",
            "--output", str(out), "--vgg-weights", "random", "--iterations", "4",
            "--content-layers", "relu2_2", "--style-layers", "relu1_1", "relu2_1"]  # fmt: skip
    assert main(argv) == 0
    result, content = np.asarray(Image.open(out)), read(files / "content.png", 3, 64)
    assert result.shape == (16, 64, 3)
    np.testing.assert_array_equal(result[:, 40:], content[:, 40:])  # the black half: as read
    assert not np.array_equal(result[:, :24], content[:, :24])
    assert json.loads(out.with_suffix(".json").read_text())["mask"] == str(files / "mask.png")


@pytest.mark.parametrize("verb", ["gatys", "adain"])
@pytest.mark.parametrize(
    ("flag", "name", "message"),
    [
        ("--mask", "small-mask.png",
         "mask is 64x16 but the content is 128x32: the mask must have the content's size"),
        ("--mask", "notes.png", "notes.png: not an image format PIL can identify"),
        ("--mask", "missing.png", "missing.png does not exist"),
        ("--outside-style", "other.png",
         "an outside style needs a mask: it styles the mask's black region"),
    ],
)  # fmt: skip
def test_cli_bad_masks_are_one_line_errors(files, adain_export, tmp_path, capsys, verb, flag,
                                           name, message):  # fmt: skip
    model = ["--model", adain_export] if verb == "adain" else ["--vgg-weights", "random"]
    argv = ["stylize", verb, *model, "--content", str(files / "content.png"), "--style",
            str(files / "style.png"), "--output", str(tmp_path / "x.png"), flag,
            str(files / name)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genart: error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())
