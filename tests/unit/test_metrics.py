"""Metrics against closed forms and independent numpy computations (small sets, fast)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genart import metrics
from genart.cli import main
from genart.metrics import frechet_distance, psnr, ssim, swd


def shapes(n: int = 32, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3) images of random coloured rectangles on random backgrounds.

    Values stay in [40, 200] so a brightness shift of up to 40 never clips.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for image in images:
        image[:] = rng.integers(40, 200, 3)
        for _ in range(4):
            top, left = rng.integers(0, size - 4, 2)
            height, width = rng.integers(4, size // 2, 2)
            image[top : top + height, left : left + width] = rng.integers(40, 200, 3)
    return images


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def box_blur(images: torch.Tensor, times: int) -> torch.Tensor:
    for _ in range(times):
        images = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    return images


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return shapes(seed=0)


@pytest.fixture(scope="module")
def other() -> np.ndarray:
    """A second sample of the same distribution as ``real``."""
    return shapes(seed=1)


# --- SWD ---------------------------------------------------------------------------------------


def test_swd_reports_each_pyramid_level_and_their_mean(real, other):
    result = swd(real, other)
    assert list(result) == ["swd_32", "swd_16", "swd"]
    assert result["swd"] == pytest.approx((result["swd_32"] + result["swd_16"]) / 2)
    assert list(swd(shapes(4, 64), shapes(4, 64, seed=1))) == ["swd_64", "swd_32", "swd_16", "swd"]


def test_swd_is_seeded(real, other):
    assert swd(real, other, seed=3) == swd(real, other, seed=3)
    assert swd(real, other, seed=3) != swd(real, other, seed=4)


def test_swd_grows_monotonically_with_blur(real, other):
    blurred = [to_uint8(box_blur(to_tensor(other), times)) for times in (1, 2, 4)]
    scores = [swd(real, images) for images in blurred]
    same = swd(real, other)
    assert same["swd"] < scores[0]["swd"] < scores[1]["swd"] < scores[2]["swd"]
    # Blur removes fine detail, so the finest level reacts most.
    assert same["swd_32"] < scores[0]["swd_32"] < scores[1]["swd_32"] < scores[2]["swd_32"]
    assert scores[2]["swd_32"] > 2 * same["swd_32"]


def test_swd_of_identical_sets_tends_to_zero_with_more_patches(real, other):
    """Each set draws its own patches, so identical sets only differ by sampling noise."""
    few = swd(real, real, patches_per_image=32)["swd"]
    many = swd(real, real, patches_per_image=512)["swd"]
    assert many < few / 3
    assert swd(real, real)["swd"] < swd(real, other)["swd"]


def test_swd_ignores_a_global_brightness_shift_as_the_original_does(real):
    """Descriptors are normalised per set (Karras et al.), so an unclipped shift cancels out."""
    shifted = real + np.uint8(40)
    assert swd(real, shifted)["swd"] == pytest.approx(swd(real, real)["swd"], rel=1e-3)


def test_swd_gives_the_same_result_for_uint8_arrays_and_float_tensors(real, other):
    assert swd(to_tensor(real), to_tensor(other)) == swd(real, other)


def test_swd_rejects_mismatched_or_unsplittable_images(real):
    with pytest.raises(ValueError, match="equal shapes"):
        swd(real, real[:8])
    with pytest.raises(ValueError, match="divide"):
        swd(shapes(2, 66), shapes(2, 66))  # levels 66, 33, 16


def test_laplacian_pyramid_reconstructs_the_image_exactly():
    images = torch.from_numpy(shapes(2, 32)).permute(0, 3, 1, 2).float()
    pyramid = metrics.laplacian_pyramid(images, 3)
    assert [level.shape[-1] for level in pyramid] == [32, 16, 8]
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        rebuilt = metrics.pyr_up(rebuilt) + band
    torch.testing.assert_close(rebuilt, images, atol=1e-3, rtol=0)


def test_pyramid_filters_keep_a_constant_image_constant():
    flat = torch.full((1, 1, 16, 16), 7.0)
    torch.testing.assert_close(metrics.pyr_down(flat), torch.full((1, 1, 8, 8), 7.0))
    torch.testing.assert_close(metrics.pyr_up(flat), torch.full((1, 1, 32, 32), 7.0))


# --- PSNR and SSIM ----------------------------------------------------------------------------


def test_psnr_of_constant_images_with_known_mse():
    a = torch.zeros(2, 3, 8, 8)
    b = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), -0.5)])
    # MSE 0.01 and 0.25 on a range of 2: 10 log10(4 / MSE).
    torch.testing.assert_close(psnr(a, b), torch.tensor([26.0206, 12.0412]), atol=1e-4, rtol=0)
    assert psnr(b, b).isinf().all()
    uint8 = torch.tensor([[[[100, 110]]]], dtype=torch.uint8)
    assert psnr(uint8, uint8 - 10, data_range=255.0).item() == pytest.approx(28.1308, abs=1e-4)


def test_ssim_of_identical_images_is_one():
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(ssim(images, images), torch.ones(3))


def test_ssim_of_constant_images_matches_the_luminance_term():
    """Zero variances leave SSIM = (2 m_a m_b + C1) / (m_a^2 + m_b^2 + C1)."""
    a, b = torch.full((1, 1, 12, 12), 0.2), torch.full((1, 1, 12, 12), -0.3)
    c1 = (0.01 * 2) ** 2
    expected = (2 * 0.2 * -0.3 + c1) / (0.2**2 + 0.3**2 + c1)
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-5)


def numpy_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Independent SSIM of one (C, H, W) pair: explicit weighted sums over every 11x11 window."""
    x = np.arange(11) - 5
    window = np.exp(-(x**2) / (2 * 1.5**2))
    weights = np.outer(window, window) / np.outer(window, window).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for ca, cb in zip(a, b):
        wa = np.lib.stride_tricks.sliding_window_view(ca, (11, 11))
        wb = np.lib.stride_tricks.sliding_window_view(cb, (11, 11))
        mean_a, mean_b = (wa * weights).sum((-2, -1)), (wb * weights).sum((-2, -1))
        var_a = (weights * (wa - mean_a[..., None, None]) ** 2).sum((-2, -1))
        var_b = (weights * (wb - mean_b[..., None, None]) ** 2).sum((-2, -1))
        cov = (weights * (wa - mean_a[..., None, None]) * (wb - mean_b[..., None, None])).sum(
            (-2, -1)
        )
        numerator = (2 * mean_a * mean_b + c1) * (2 * cov + c2)
        denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
        values.append((numerator / denominator).mean())
    return float(np.mean(values))


def test_ssim_matches_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (2, 2, 16, 14))
    b = np.clip(a + rng.normal(0, 0.3, a.shape), -1, 1)
    ours = ssim(torch.from_numpy(a), torch.from_numpy(b))
    expected = [numpy_ssim(a[i], b[i], 2.0) for i in range(2)]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))
    assert 0.1 < min(expected) < max(expected) < 0.9


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


# --- Fréchet distance ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feats() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6)


def test_frechet_of_identical_sets_is_zero(feats):
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_a_shifted_set_is_the_squared_shift(feats):
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert frechet_distance(feats, feats + shift) == pytest.approx(14.25, rel=1e-8)


def test_frechet_of_a_doubled_set_matches_the_closed_form(feats):
    """For B = 2A: ||mu||^2 + Tr(S + 4S - 2 * 2S) = ||mu||^2 + Tr(S)."""
    expected = np.sum(feats.mean(0) ** 2) + np.trace(np.cov(feats, rowvar=False))
    assert frechet_distance(feats, 2 * feats) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_unrelated_sets_matches_eigenvalues_of_the_covariance_product(feats):
    rng = np.random.default_rng(1)
    other = rng.normal(size=(400, 6)) * np.arange(1, 7)
    cov_a, cov_b = np.cov(feats, rowvar=False), np.cov(other, rowvar=False)
    # (A B) is similar to a PSD matrix, so its eigenvalues are real and >= 0.
    trace_sqrt = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real).sum()
    mean_term = np.sum((feats.mean(0) - other.mean(0)) ** 2)
    expected = mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    assert frechet_distance(torch.from_numpy(feats), other) == pytest.approx(expected, rel=1e-8)


# --- Image folders and the CLI ------------------------------------------------------------------


def write_images(folder, images: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")


def test_load_folder_fits_sizes_and_channels_and_samples_a_seeded_subset(tmp_path):
    write_images(tmp_path / "a", shapes(3, 32))
    Image.new("L", (40, 20), 255).save(tmp_path / "a" / "wide.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = metrics.load_folder(tmp_path, size=16, channels=1)
    assert images.shape == (4, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert (images[-1] == 1).all()  # the white wide image, centre-cropped
    subset = metrics.load_folder(tmp_path, n=2, size=16)
    assert subset.shape == (2, 3, 16, 16)
    torch.testing.assert_close(subset, metrics.load_folder(tmp_path, n=2, size=16))
    with pytest.raises(FileNotFoundError):
        metrics.load_folder(tmp_path / "missing")


def test_cli_eval_swd_prints_every_level_and_writes_json(tmp_path, capsys):
    write_images(tmp_path / "real", shapes(8, 32, seed=0))
    write_images(tmp_path / "fake", shapes(8, 32, seed=1))
    out = tmp_path / "swd.json"
    argv = ["eval", "swd", str(tmp_path / "real"), str(tmp_path / "fake"), "--size", "32"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert list(saved["metrics"]) == ["swd_32", "swd_16", "swd"]
    assert saved["n"] == 8 and all(name in printed for name in saved["metrics"])
    expected = swd(shapes(8, 32), shapes(8, 32, seed=1))["swd"]  # PNG is lossless
    assert saved["metrics"]["swd"] == pytest.approx(expected)


def test_cli_eval_swd_reports_a_missing_folder_as_an_error(tmp_path, capsys):
    assert main(["eval", "swd", str(tmp_path), str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err
