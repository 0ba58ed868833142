"""Image-quality metrics as pure numpy/torch functions (no downloads, no scipy).

- :func:`swd`: sliced Wasserstein distance between multi-scale patch distributions, exactly the
  recipe of Karras et al. 2018 ("Progressive Growing of GANs", section 5 and its released
  ``metrics/sliced_wasserstein.py``). Lower is better; values are reported x 10^3.
- :func:`psnr` and :func:`ssim` (Wang et al. 2004) for paired outputs (pix2pix, style transfer).
- :func:`frechet_distance` between two feature sets (Heusel et al. 2017), used by
  :mod:`genart.digits` on a classifier's features.
- :func:`load_folder`: a folder of image files as a tensor in [-1, 1].

Image conventions: tensors are float (B, C, H, W) in [-1, 1], the range every genart model
produces. :func:`swd` also takes uint8 numpy arrays (N, H, W, C) as decoded from image files.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genart.data.transforms import decode, resize_crop, to_float
from genart.images import to_uint8

# --------------------------------------------------------------------------------------------
# Sliced Wasserstein distance (Karras et al. 2018)

# Binomial 5x5 kernel [1, 4, 6, 4, 1]^T [1, 4, 6, 4, 1] / 256: the kernel of cv2.pyrDown.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
_PYRAMID_KERNEL = torch.outer(_BINOMIAL, _BINOMIAL)


def _filter(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Same-size depthwise 2-D filtering with mirror borders (d c b | a b c d | c b a).

    Mirror (not edge-repeating) reflection is scipy.ndimage's mode="mirror" used by the
    original, i.e. OpenCV's BORDER_REFLECT_101.
    """
    channels = images.shape[1]
    pad = kernel.shape[-1] // 2
    weight = kernel.to(images).expand(channels, 1, *kernel.shape)
    return F.conv2d(F.pad(images, (pad,) * 4, mode="reflect"), weight, groups=channels)


def pyr_down(images: torch.Tensor) -> torch.Tensor:
    """Gaussian blur then drop every other row and column (matches cv2.pyrDown)."""
    return _filter(images, _PYRAMID_KERNEL)[..., ::2, ::2]


def pyr_up(images: torch.Tensor) -> torch.Tensor:
    """Insert zeros between pixels, then blur with 4x the kernel (matches cv2.pyrUp).

    The factor 4 restores the brightness lost to the three zeros in every 2x2 block.
    """
    b, c, h, w = images.shape
    stuffed = images.new_zeros(b, c, 2 * h, 2 * w)
    stuffed[..., ::2, ::2] = images
    return _filter(stuffed, 4 * _PYRAMID_KERNEL)


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels, finest first; the last level is the low-pass residual.

    Level i is ``G_i - pyr_up(G_{i+1})`` where ``G_{i+1} = pyr_down(G_i)`` (Burt & Adelson 1983).
    """
    gaussians = [images]
    for _ in range(levels - 1):
        gaussians.append(pyr_down(gaussians[-1]))
    bands = [fine - pyr_up(coarse) for fine, coarse in zip(gaussians, gaussians[1:])]
    return bands + [gaussians[-1]]


def _patch_descriptors(
    level: torch.Tensor, patches_per_image: int, patch_size: int, gen: torch.Generator
) -> torch.Tensor:
    """Random ``patch_size``^2 neighbourhoods of every image, normalised: (N*P, C*k*k).

    Each image contributes ``patches_per_image`` patches at uniformly random centres lying fully
    inside the image. The whole set is then normalised per colour channel (mean 0, std 1 over
    all patches and pixels), as the original's ``finalize_descriptors``: SWD compares the shape
    of the patch distributions, not their per-channel brightness or contrast.
    """
    n, c, h, w = level.shape
    half = patch_size // 2
    count = n * patches_per_image
    y = torch.randint(half, h - half, (count, 1, 1, 1), generator=gen)
    x = torch.randint(half, w - half, (count, 1, 1, 1), generator=gen)
    image = torch.arange(count).div(patches_per_image, rounding_mode="floor").view(-1, 1, 1, 1)
    channel = torch.arange(c).view(1, -1, 1, 1)
    offsets = torch.arange(-half, half + 1)
    # Flat indices into the contiguous (N, C, H, W) level: one gather, (count, C, k, k).
    rows = (image * c + channel) * h + y + offsets.view(1, 1, -1, 1)
    desc = level.contiguous().view(-1)[rows * w + x + offsets.view(1, 1, 1, -1)]
    desc = desc - desc.mean(dim=(0, 2, 3), keepdim=True)
    # The clamp only matters for a constant channel (std 0), which the original turns into NaN.
    desc = desc / desc.std(dim=(0, 2, 3), correction=0, keepdim=True).clamp_min(1e-8)
    return desc.reshape(count, -1)


def _sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, dir_repeats: int, dirs_per_repeat: int, gen: torch.Generator
) -> float:
    """Mean 1-D Wasserstein-1 distance of the two sets projected on random unit directions.

    In 1-D the optimal transport pairs the sorted samples, so W1 is the mean absolute difference
    of the sorted projections (Rabin et al. 2011).
    """
    results = []
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=gen)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        # Rows of (directions, samples) sorted in place by numpy: its SIMD sort along the
        # contiguous axis is about 10x faster than torch.sort on CPU.
        proj_a, proj_b = (dirs.T @ a.T).numpy(), (dirs.T @ b.T).numpy()
        proj_a.sort(axis=1)
        proj_b.sort(axis=1)
        results.append(np.abs(proj_a - proj_b).mean())
    return float(np.mean(results))


def _as_uint8_nhwc(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 (N, H, W, C) from either accepted image convention (floats are rounded, clipped)."""
    if isinstance(images, torch.Tensor):
        return to_uint8(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"numpy images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}"
        )
    return images


def swd_resolutions(height: int, min_resolution: int = 16) -> list[int]:
    """Pyramid level resolutions used for images of ``height`` rows: height, height/2, ... >= 16."""
    resolutions = []
    while height >= min_resolution:
        resolutions.append(height)
        height //= 2
    return resolutions


def swd(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    seed: int = 0,
    *,
    patches_per_image: int = 128,
    patch_size: int = 7,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    min_resolution: int = 16,
) -> dict[str, float]:
    """Sliced Wasserstein distance x 10^3 per Laplacian-pyramid level and on average.

    ``real`` and ``fake`` are equally many, equally sized images: uint8 numpy (N, H, W, C) or
    float tensors (N, C, H, W) in [-1, 1]. Float images are first quantised to uint8, as the
    original did with generated images, so both conventions give identical results. Pixel
    values are on the 0..255 scale, 1 or 3 channels.

    Returns ``{"swd_<res>": ..., "swd": average}`` with one entry per level, finest first
    (e.g. swd_64, swd_32, swd_16 for 64x64 images). Defaults are the paper's: 7x7 patches,
    128 per image per level, levels down to 16x16, 4 repeats of 128 random directions.
    Patch positions and directions come from ``seed``, so results are reproducible; they also
    differ between the two sets, so identical sets give a small positive value, not 0.
    """
    real_u8, fake_u8 = _as_uint8_nhwc(real), _as_uint8_nhwc(fake)
    if real_u8.shape != fake_u8.shape:
        raise ValueError(f"swd needs equal shapes, got {real_u8.shape} and {fake_u8.shape}")
    _, height, width, _ = real_u8.shape
    resolutions = swd_resolutions(height, min_resolution)
    scale = 2 ** (len(resolutions) - 1)
    if not resolutions or height % scale or width % scale:
        raise ValueError(
            f"swd needs images of at least {min_resolution} rows whose sides divide by {scale}; "
            f"got {height}x{width}"
        )
    gen = torch.Generator().manual_seed(seed)
    descriptors = []
    for images in (real_u8, fake_u8):
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        pyramid = laplacian_pyramid(batch, len(resolutions))
        descriptors.append(
            [_patch_descriptors(lv, patches_per_image, patch_size, gen) for lv in pyramid]
        )
    result = {
        f"swd_{res}": 1e3 * _sliced_wasserstein(a, b, dir_repeats, dirs_per_repeat, gen)
        for res, a, b in zip(resolutions, *descriptors)
    }
    result["swd"] = float(np.mean(list(result.values())))
    return result


# --------------------------------------------------------------------------------------------
# PSNR and SSIM for paired images


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(range^2 / MSE), in dB: shape (B,).

    ``data_range`` is max - min of the pixel scale: 2 for [-1, 1], 255 for uint8 values.
    Identical images give +inf.
    """
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(data_range**2 / mse)).to(_score_dtype(a))


def _score_dtype(images: torch.Tensor) -> torch.dtype:
    """Scores come back in the images' float dtype (float32 for integer images)."""
    return images.dtype if images.is_floating_point() else torch.float32


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    data_range: float = 2.0,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity per image (Wang et al. 2004, eq. 13): shape (B,).

    Local statistics use an 11x11 Gaussian window (sigma 1.5) and population (not sample)
    covariances; only windows fully inside the image count ("valid"), and the SSIM map is
    averaged over positions and channels. This matches skimage's ``structural_similarity``
    with ``gaussian_weights=True, use_sample_covariance=False, data_range=...``.
    Computed in float64, since sigma^2 = E[x^2] - E[x]^2 cancels badly in float32.
    """
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim needs two equal (B, C, H, W) batches, got {a.shape}, {b.shape}")
    if min(a.shape[-2:]) < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size}")
    x, y = a.double(), b.double()
    channels = x.shape[1]
    window = _gaussian_window(window_size, sigma).to(x.device)
    kernel = torch.outer(window, window).expand(5 * channels, 1, window_size, window_size)
    # One grouped convolution gives all five local moments: E[x], E[y], E[x^2], E[y^2], E[xy].
    moments = F.conv2d(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel, groups=5 * channels)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)
    var_x, var_y, cov_xy = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1).to(_score_dtype(a))


# --------------------------------------------------------------------------------------------
# Fréchet distance between feature sets


def feature_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and sample covariance (D, D) of features (N, D), in float64."""
    feats = np.asarray(
        features.detach().cpu() if isinstance(features, torch.Tensor) else features,
        dtype=np.float64,
    )
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix via eigh."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def frechet_from_stats(
    mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """Squared Fréchet distance of N(mu_a, cov_a) and N(mu_b, cov_b) (Dowson & Landau 1982).

    d^2 = ||mu_a - mu_b||^2 + Tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)), the quantity FID
    reports. A B and A^(1/2) B A^(1/2) have the same eigenvalues (X Y and Y X do, X = A^(1/2)),
    and the latter is symmetric PSD, so two eigh calls replace scipy's general ``sqrtm``.
    """
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    return max(float(distance), 0.0)  # rounding can leave identical sets at about -1e-12


def frechet_distance(
    feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor
) -> float:
    """Squared Fréchet distance of Gaussians fitted to feature sets (N, D) and (M, D)."""
    return frechet_from_stats(*feature_stats(feats_a), *feature_stats(feats_b))


# --------------------------------------------------------------------------------------------
# Image folders


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
    from genart.images import find_images

    paths = find_images(directory)
    if n is not None and n < len(paths):
        paths = sorted(random.Random(seed).sample(paths, n))
    images = [resize_crop(decode(path.read_bytes(), channels), size) for path in paths]
    return torch.from_numpy(to_float(np.stack(images)))
