"""Tiled inference: tiles cover the image within the side, feathers sum to 1, and image-to-image
pipelines run large images tile by tile without seams."""

import numpy as np
import pytest
import torch
from exports import TINY_FAST_STYLE, make_export
from torch import nn

from genart import config
from genart.models import cyclegan
from genart.pipelines.style import FastStylePipeline
from genart.pipelines.tiles import run_tiled, tile_spans, tiles
from genart.pipelines.translate import TranslationPipeline


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [(96, 48, 16, 4), (1030, 1024, 128, 4), (4096, 1024, 128, 256), (100, 32, 0, 1),
     (97, 24, 4, 8), (50, 50, 8, 1), (7, 16, 4, 4)],
)  # fmt: skip
def test_tile_spans_cover_every_pixel_within_the_side(length, tile, overlap, align):
    spans = tile_spans(length, tile, overlap, align)
    covered = np.zeros(length, int)
    for start, end in spans:
        assert 0 < end - start <= tile and start % align == 0
        covered[start:end] += 1
    assert covered.min() >= 1  # every pixel
    assert covered.max() <= 2  # only neighbours overlap, as the feathers assume
    # Neighbours overlap by at least ``overlap`` and all by the same amount (the feather ramp).
    overlaps = {prev_end - start for (_, prev_end), (start, _) in zip(spans, spans[1:])}
    assert len(overlaps) <= 1 and min(overlaps, default=overlap) >= overlap


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "align"),
    [((96, 96), 48, 16, 4), ((70, 130), 32, 8, 8), ((40, 40), 16, 0, 4)],
)
def test_feather_weights_sum_to_one_at_every_pixel(size, tile, overlap, align):
    total = torch.zeros(size)
    for rows, cols, weights in tiles(*size, tile, overlap, align):
        assert weights.min() > 0  # every tile counts wherever it lies
        total[rows, cols] += weights
    torch.testing.assert_close(total, torch.ones(size))


def test_a_pointwise_function_through_tiles_gives_its_whole_image_result():
    images = torch.randint(0, 256, (2, 3, 101, 77)).float()
    out = run_tiled(lambda x: 2 * x + 1, images, tile=32, overlap=8)
    torch.testing.assert_close(out, 2 * images + 1)
    assert torch.equal(out.round(), 2 * images + 1)


class Counting(nn.Module):
    """The identity, counting its calls and the largest side it is given."""

    stride = 4

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls, self.largest = 0, 0

    def forward(self, x):
        self.calls += 1
        self.largest = max(self.largest, *x.shape[-2:])
        return x * self.scale


def test_the_pipeline_tiles_only_images_above_the_tile_side():
    net = Counting()
    pipe = TranslationPipeline({"G": net}, config.load("pix2pix"), {}, tile=48)
    image = np.random.default_rng(0).integers(0, 256, (96, 90, 3), np.uint8)
    (out,) = pipe([image])
    assert np.array_equal(out, image)  # the feathered blend of identities is exact
    assert net.calls == 9 and net.largest <= 48  # 3 x 3 tiles of at most 48 pixels
    net.calls = 0
    pipe([image[:48, :40]])
    assert net.calls == 1
    whole = TranslationPipeline({"G": net}, config.load("pix2pix"), {}, tile=0)
    net.calls = 0
    whole([image])
    assert net.calls == 1 and net.largest == 96
    with pytest.raises(ValueError, match="tile must be"):
        TranslationPipeline({"G": net}, config.load("pix2pix"), {}, tile=-1)


def smooth_image(size: int = 96) -> np.ndarray:
    """Gradients in every channel: tiles with different statistics, as in a photo."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([2 * y, 2 * x, y + x], -1).astype(np.uint8)


def test_tiles_match_the_whole_image_where_a_network_has_no_per_image_statistics():
    # Batch norm in eval mode uses its running statistics: a tile sees the same transform as
    # the whole image, so what differs is only the context cut at tile edges, which the
    # feathered overlap weighs down. Measured: max 1 grey level (rounding), mean 0.01.
    torch.manual_seed(0)
    net = cyclegan.ResnetGenerator(3, 3, ngf=4, n_blocks=1, norm="batch")
    cfg = config.load("cyclegan")
    for image in (smooth_image(), np.random.default_rng(0).integers(0, 256, (96, 96, 3), np.uint8)):
        whole = TranslationPipeline({"G": net}, cfg, {}, tile=0)([image])[0].astype(int)
        tiled = TranslationPipeline({"G": net}, cfg, {}, tile=48)([image])[0].astype(int)
        assert np.abs(whole - tiled).max() <= 2 and np.abs(whole - tiled).mean() < 0.1


def border_step_ratio(image: np.ndarray, borders: list[int]) -> float:
    """Mean |step| between column c - 1 and c over the ``borders`` c, relative to the mean
    step between the other neighbouring columns: about 1 where the borders do not show."""
    steps = np.abs(np.diff(image.astype(int), axis=1)).mean(axis=(0, 2))  # steps[c - 1]
    at = [c - 1 for c in borders]
    return float(steps[at].mean() / np.delete(steps, at).mean())


def test_fast_style_tiles_leave_no_seam_at_their_borders(tmp_path):
    # Instance norm normalises each tile by its own statistics, so a tiled result differs in
    # tone from the whole-image one (here a random tiny network: ~30 grey levels on average).
    # The feathered overlaps must hide where tiles meet. Measured ratios at the columns where
    # tiles start or end: feathered 1.0; without feathers, plain averaging 1.7 and letting the
    # later tile win 3.2.
    path = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    tiled = FastStylePipeline.from_export(path, device="cpu", tile=48)([smooth_image()])[0]
    borders = sorted({c for span in tile_spans(96, 48, 6, 4) for c in span} - {0, 96})
    assert borders == [40, 48, 80, 88]
    assert border_step_ratio(tiled, borders) < 1.3


def test_the_tile_flag_reaches_the_pipeline(tmp_path, capsys):
    from PIL import Image

    from genart.cli import main

    path = make_export(tmp_path, "fast_style", TINY_FAST_STYLE)
    Image.fromarray(smooth_image()).save(tmp_path / "in.png")
    fast = ["stylize", "fast", "--model", path, "--input", str(tmp_path / "in.png")]
    outputs = {}
    for tile in ("0", "48"):
        assert main([*fast, "--output", str(tmp_path / f"{tile}.png"), "--tile", tile]) == 0
        outputs[tile] = np.asarray(Image.open(tmp_path / f"{tile}.png"))
    assert outputs["0"].shape == outputs["48"].shape == (96, 96, 3)
    assert not np.array_equal(outputs["0"], outputs["48"])  # instance norm saw other tiles
    assert main([*fast, "--output", str(tmp_path / "bad.png"), "--tile", "-1"]) == 2
    assert "tile must be a whole number of pixels >= 0, got -1" in capsys.readouterr().err


def test_adain_stylises_a_large_content_tile_by_tile(tmp_path):
    from genart.pipelines.adain import AdaINPipeline

    path = make_export(tmp_path, "adain", ["adain.vgg_weights=random", "adain.width=8"])
    sides = []
    for tile in (32, 0):
        pipe = AdaINPipeline.from_export(path, "cpu", tile=tile, backend="torch")  # the hook's
        decoder = pipe.nets["decoder"]
        hook = decoder.register_forward_hook(lambda _m, args, _o: sides.append(args[0].shape))
        out = pipe(smooth_image()[:64, :56], [smooth_image()[:40, :40]])
        hook.remove()
        assert out.shape == (64, 56, 3)
    # Rows 0-32, 24-56, 48-64 by columns 0-32, 24-56 (a feature position per 8 pixels), then
    # the whole content.
    assert [tuple(s[-2:]) for s in sides] == [(4, 4)] * 4 + [(2, 4)] * 2 + [(8, 7)]
