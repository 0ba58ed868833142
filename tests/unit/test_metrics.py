"""Metrics against closed forms and independent numpy computations (small sets, fast)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.overrides import TorchFunctionMode

from genart import metrics
from genart.cli import main
from genart.images import load_folder
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


def tensors(values) -> list[torch.Tensor]:
    """The tensors among ``values``, looking one level into lists and tuples (``torch.cat``)."""
    found = []
    for value in values if isinstance(values, (tuple, list)) else (values,):
        nested = value if isinstance(value, (tuple, list)) else (value,)
        found += [v for v in nested if isinstance(v, torch.Tensor)]
    return found


class LargestTensor(TorchFunctionMode):
    """Records the bytes of the largest tensor any torch function or method returns while active.

    A result sharing memory with an argument (a view, a slice, an in-place result, an argument
    passed through) allocated nothing and is skipped, so slicing a caller's batch is not
    counted as the metric allocating it.
    """

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in tensors([*args, *kwargs.values()])}
        for tensor in tensors(out):
            if tensor.untyped_storage().data_ptr() not in inputs:
                self.nbytes = max(self.nbytes, tensor.numel() * tensor.element_size())
        return out


def largest_tensor(fn, *args, **kwargs) -> int:
    """Bytes of the largest tensor ``fn(*args, **kwargs)`` creates."""
    with LargestTensor() as mode:
        fn(*args, **kwargs)
    return mode.nbytes


def conv_batches(monkeypatch, fn, *args, **kwargs) -> list[int]:
    """The batch sizes of every ``conv2d`` that ``fn(*args, **kwargs)`` runs."""
    batches, conv2d = [], F.conv2d

    def recording(input, *rest, **options):
        batches.append(input.shape[0])
        return conv2d(input, *rest, **options)

    monkeypatch.setattr(metrics.F, "conv2d", recording)
    fn(*args, **kwargs)
    monkeypatch.setattr(metrics.F, "conv2d", conv2d)
    return batches


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


def reference_swd(real: np.ndarray, fake: np.ndarray, seed: int = 0, patches_per_image=128):
    """The unchunked SWD that ``metrics.swd`` replaced: both sets' whole pyramids at once.

    A copy of the former implementation (pyramid, projections and resolutions are unchanged
    and reused), kept as the reference the chunked one must reproduce bit for bit.
    """

    def patch_descriptors(level, gen, patch_size=7):
        n, c, h, w = level.shape
        half = patch_size // 2
        count = n * patches_per_image
        y = torch.randint(half, h - half, (count, 1, 1, 1), generator=gen)
        x = torch.randint(half, w - half, (count, 1, 1, 1), generator=gen)
        image = torch.arange(count).div(patches_per_image, rounding_mode="floor")
        image = image.view(-1, 1, 1, 1)
        channel = torch.arange(c).view(1, -1, 1, 1)
        offsets = torch.arange(-half, half + 1)
        rows = (image * c + channel) * h + y + offsets.view(1, 1, -1, 1)
        desc = level.contiguous().view(-1)[rows * w + x + offsets.view(1, 1, 1, -1)]
        desc = desc - desc.mean(dim=(0, 2, 3), keepdim=True)
        desc = desc / desc.std(dim=(0, 2, 3), correction=0, keepdim=True).clamp_min(1e-8)
        return desc.reshape(count, -1)

    resolutions = metrics.swd_resolutions(real.shape[1])
    gen = torch.Generator().manual_seed(seed)
    descriptors = []
    for images in (real, fake):
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        pyramid = metrics.laplacian_pyramid(batch, len(resolutions))
        descriptors.append([patch_descriptors(level, gen) for level in pyramid])
    result = {
        f"swd_{res}": 1e3 * metrics._sliced_wasserstein(a, b, 4, 128, gen)
        for res, a, b in zip(resolutions, *descriptors)
    }
    result["swd"] = float(np.mean(list(result.values())))
    return result


@pytest.mark.parametrize("chunk_images", [None, 1, 3])
def test_swd_in_chunks_is_bit_identical_to_the_one_batch_computation(monkeypatch, chunk_images):
    """Chunking changes neither a random draw nor a rounding, whatever the chunk size."""
    real, fake = shapes(10, 64, seed=2), shapes(10, 64, seed=3)
    if chunk_images is not None:  # None: the default chunk, which holds all 10 images
        monkeypatch.setattr(metrics, "_CHUNK_VALUES", chunk_images * 64 * 64 * 3)
    for seed in (0, 7):
        expected = reference_swd(real, fake, seed=seed)
        assert swd(real, fake, seed=seed) == expected
        assert swd(to_tensor(real), to_tensor(fake), seed=seed) == expected


def test_swd_over_more_images_than_one_chunk_matches_the_one_batch_computation():
    real, fake = shapes(300, 32, seed=4), shapes(300, 32, seed=5)  # several default chunks
    assert swd(real, fake, patches_per_image=16) == reference_swd(real, fake, patches_per_image=16)


def test_swd_builds_pyramids_of_one_chunk_at_a_time(monkeypatch):
    """The pyramid convolutions see at most one chunk of images, however many there are."""
    per_image = 3 * 32 * 32
    rows = metrics._CHUNK_VALUES // per_image
    few, many = (shapes(n, 32) for n in (rows, 3 * rows + 1))
    batches = conv_batches(monkeypatch, swd, many, many, patches_per_image=4)
    assert max(batches) == max(conv_batches(monkeypatch, swd, few, few, patches_per_image=4))
    assert max(batches) * per_image <= metrics._CHUNK_VALUES


def test_swd_takes_uint8_tensors_as_reference_sets_are_kept(real, other):
    def nchw(images):
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    assert swd(nchw(real), nchw(other)) == swd(real, other)
    assert swd(nchw(real), to_tensor(other)) == swd(real, other)


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


def reference_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """The full-batch SSIM that ``metrics.ssim`` replaced: one grouped 11x11 convolution of
    the whole batch's five moment images."""
    x, y = a.double(), b.double()
    channels = x.shape[1]
    window = metrics._gaussian_window(11, 1.5)
    kernel = torch.outer(window, window).expand(5 * channels, 1, 11, 11)
    moments = F.conv2d(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel, groups=5 * channels)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)
    var_x, var_y, cov_xy = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1)


def test_ssim_stays_by_hand_because_torchmetrics_averages_padded_borders():
    """torchmetrics' SSIM (1.9) agrees with genart's to 1e-3 only away from the image border:
    it averages windows reflect-padded over the border too, where the paper, skimage and
    genart average the windows inside the image (see genart.metrics on why SSIM stays)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as library

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(4, 3, 64, 64, generator=gen, dtype=torch.float64) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=gen, dtype=torch.float64)).clamp(-1, 1)
    _, full = library(a, b, data_range=2.0, reduction="none", return_full_image=True)
    inside = full[..., 5:-5, 5:-5].flatten(1).mean(dim=1)  # the windows fully inside
    torch.testing.assert_close(ssim(a, b), inside, atol=1e-6, rtol=0)
    whole = library(a, b, data_range=2.0, reduction="none")
    assert (whole - ssim(a, b)).abs().min() > 1e-3


@pytest.mark.parametrize("chunk_images", [None, 1, 4])
def test_ssim_in_chunks_equals_the_full_batch_computation(monkeypatch, chunk_images):
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(11, 3, 24, 19, generator=generator, dtype=torch.float64) * 2 - 1
    b = (a + 0.4 * torch.randn(a.shape, generator=generator, dtype=torch.float64)).clamp(-1, 1)
    if chunk_images is not None:  # 4 leaves a last chunk of 3
        monkeypatch.setattr(metrics, "_CHUNK_VALUES", chunk_images * 3 * 24 * 19)
    torch.testing.assert_close(ssim(a, b), reference_ssim(a, b), atol=1e-10, rtol=0)
    uint8 = ((a + 1) * 127.5).round().to(torch.uint8)
    expected = reference_ssim(uint8, uint8.flip(0), 255.0).float()
    torch.testing.assert_close(ssim(uint8, uint8.flip(0), 255.0), expected)


@pytest.mark.parametrize("metric", [ssim, psnr], ids=["ssim", "psnr"])
def test_metric_memory_does_not_grow_with_the_batch(metric):
    """The largest tensor a metric creates is one chunk's, however many images it scores.

    Images of 3x32x32: 128 of them are more than a chunk, so twice as many must reach no
    larger a tensor, and none may exceed a float64 chunk.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(256, 3, 32, 32, generator=generator) * 2 - 1
    b = torch.rand(256, 3, 32, 32, generator=generator) * 2 - 1
    assert metrics._CHUNK_VALUES < 128 * 3 * 32 * 32  # so 128 images fill a chunk
    most = largest_tensor(metric, a, b)
    assert most == largest_tensor(metric, a[:128], b[:128])
    assert most <= 8 * metrics._CHUNK_VALUES


def test_psnr_in_chunks_equals_the_full_batch_computation(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(9, 2, 8, 8, generator=generator) * 2 - 1
    b = torch.rand(9, 2, 8, 8, generator=generator) * 2 - 1
    monkeypatch.setattr(metrics, "_CHUNK_VALUES", 2 * 2 * 8 * 8)  # chunks of 2 images
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
    torch.testing.assert_close(psnr(a, b), (10 * torch.log10(4 / mse)).float())
    torch.testing.assert_close(psnr(a, b[:1]), psnr(a, b[:1].expand_as(a)))  # broadcasts


def test_mean_quality_averages_over_all_chunks():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(7, 3, 16, 16, generator=generator) * 2 - 1
    b = (a + 0.2 * torch.randn(a.shape, generator=generator)).clamp(-1, 1)
    scores = metrics.mean_quality(zip(a.split(3), b.split(3)))
    assert scores["psnr"] == pytest.approx(psnr(a, b).double().mean().item(), rel=1e-6)
    assert scores["ssim"] == pytest.approx(ssim(a, b).double().mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        metrics.mean_quality([])


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
    images = load_folder(tmp_path, size=16, channels=1)
    assert images.shape == (4, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert (images[-1] == 1).all()  # the white wide image, centre-cropped
    subset = load_folder(tmp_path, n=2, size=16)
    assert subset.shape == (2, 3, 16, 16)
    torch.testing.assert_close(subset, load_folder(tmp_path, n=2, size=16))
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "missing")


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
