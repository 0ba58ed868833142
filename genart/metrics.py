"""Image-quality metrics as pure numpy/torch functions (no downloads, no scipy).

- :func:`swd`: sliced Wasserstein distance between multi-scale patch distributions, exactly the
  recipe of Karras et al. 2018 ("Progressive Growing of GANs", section 5 and its released
  ``metrics/sliced_wasserstein.py``). Lower is better; values are reported x 10^3.
- :func:`psnr` and :func:`ssim` (Wang et al. 2004) for paired outputs (pix2pix, style transfer).
- :func:`frechet_distance` between two feature sets (Heusel et al. 2017), used by
  :mod:`genart.digits` on a classifier's features.

FID and KID come from torchmetrics (:mod:`genart.fid`). These stay here, and why (measured
side by side: ``python -m benchmarks.evaluation --only psnr_ssim psnr_ssim_torchmetrics``):

- PSNR: torchmetrics' ``peak_signal_noise_ratio`` gives the same values at the same cost, but
  importing any of torchmetrics loads all of it (matplotlib among it): about 2 s and
  100 MiB more in a training worker that holds torch and torchvision already, 260 MiB in a bare
  process, for a three-line formula that every Pix2Pix and CycleGAN worker imports.
  :mod:`genart.fid` imports torchmetrics only where FID or KID is computed.
- SSIM: torchmetrics' (1.9) averages the SSIM map over the whole image, its border
  windows reflect-padded, where the paper's reference code and skimage average only windows
  inside the image (its scores differ by about 0.01 on 64 px images); and its one 11x11
  convolution costs 3-13x the time and 3-10x the memory of the separable filter below in
  float32, and 25-40x in float64, the precision SSIM's variances need here.
- SWD: no library has the Karras et al. recipe.
- The Fréchet distance between given statistics (:func:`frechet_from_stats`): the judges keep
  their reference statistics in their weight files, and torchmetrics' FID takes only images
  or features through ``update`` (its distance function is private).

Image conventions: tensors are float (B, C, H, W) in [-1, 1], the range every genart model
produces. :func:`swd` also takes uint8 numpy arrays (N, H, W, C) as decoded from image files,
and uint8 tensors (N, C, H, W) as reference sets are kept.

Memory: :func:`psnr`, :func:`ssim` and :func:`swd` work through their batches a chunk of
images (``_CHUNK_VALUES`` pixel values) at a time, so what they allocate beyond their inputs
and results (SWD's patch descriptors among them) does not grow with the number of images,
however many a caller passes at once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from genart.images import to_uint8

# --------------------------------------------------------------------------------------------
# Chunking: the image metrics process a batch a few images at a time

# Pixel values (images x channels x height x width) one chunk holds. SSIM's float64
# intermediates are about a dozen chunk-sized tensors and SWD's float32 pyramid about as many,
# so one chunk stays within tens of MB whatever the batch a caller passes.
_CHUNK_VALUES = 2**18


def _rows_per_chunk(values_per_image: int) -> int:
    """How many images of ``values_per_image`` pixel values one chunk holds (at least one)."""
    return max(1, _CHUNK_VALUES // max(1, values_per_image))


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


def _patch_positions(
    count: int, height: int, width: int, patch_size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniformly random centres (rows y, columns x), each (count, 1, 1, 1), of ``patch_size``^2
    patches lying fully inside a ``height`` x ``width`` image; rows are drawn before columns."""
    half = patch_size // 2
    y = torch.randint(half, height - half, (count, 1, 1, 1), generator=gen)
    x = torch.randint(half, width - half, (count, 1, 1, 1), generator=gen)
    return y, x


def _gather_patches(
    level: torch.Tensor, y: torch.Tensor, x: torch.Tensor, patches_per_image: int, patch_size: int
) -> torch.Tensor:
    """The patches of ``level`` (N, C, H, W) centred at ``y``, ``x``: (N*P, C, k, k).

    Patch ``i`` is taken from image ``i // patches_per_image``.
    """
    _, c, h, w = level.shape
    half = patch_size // 2
    image = torch.arange(len(y)).div(patches_per_image, rounding_mode="floor").view(-1, 1, 1, 1)
    channel = torch.arange(c).view(1, -1, 1, 1)
    offsets = torch.arange(-half, half + 1)
    # Flat indices into the contiguous (N, C, H, W) level: one gather, (count, C, k, k).
    rows = (image * c + channel) * h + y + offsets.view(1, 1, -1, 1)
    return level.contiguous().view(-1)[rows * w + x + offsets.view(1, 1, 1, -1)]


def _normalise_descriptors(desc: torch.Tensor) -> torch.Tensor:
    """Patches (count, C, k, k) normalised per colour channel over the whole set: (count, C*k*k).

    Mean 0 and std 1 over all patches and pixels, as the original's ``finalize_descriptors``:
    SWD compares the shape of the patch distributions, not their per-channel brightness or
    contrast. Normalises ``desc`` in place: it is the largest tensor SWD keeps, and a copy
    would double it.
    """
    desc.sub_(desc.mean(dim=(0, 2, 3), keepdim=True))
    # The clamp only matters for a constant channel (std 0), which the original turns into NaN.
    desc.div_(desc.std(dim=(0, 2, 3), correction=0, keepdim=True).clamp_min(1e-8))
    return desc.reshape(len(desc), -1)


def _set_descriptors(
    images: np.ndarray | torch.Tensor,
    levels: int,
    patches_per_image: int,
    patch_size: int,
    gen: torch.Generator,
) -> list[torch.Tensor]:
    """Normalised patch descriptors of every Laplacian-pyramid level of one image set.

    Each image contributes ``patches_per_image`` patches per level at uniformly random centres
    lying fully inside the level. The pyramid is built a chunk of images at a time (see
    :func:`_rows_per_chunk`) and only the patches are kept, so memory beyond the descriptors
    does not grow with the number of images. All of a level's positions are drawn before any
    pyramid is built, in the order of the original's one-batch computation (per level: rows,
    then columns), so the chunking changes no random draw and no result.
    """
    n, height, width, channels = _nhwc_shape(images)
    rows = _rows_per_chunk(height * width * channels)
    count = n * patches_per_image
    positions, descriptors = [], []
    for _ in range(levels):
        positions.append(_patch_positions(count, height, width, patch_size, gen))
        descriptors.append(torch.empty(count, channels, patch_size, patch_size))
        height, width = (height + 1) // 2, (width + 1) // 2  # what pyr_down's [::2] leaves
    for start in range(0, n, rows):
        batch = torch.from_numpy(_as_uint8_nhwc(images[start : start + rows]))
        pyramid = laplacian_pyramid(batch.permute(0, 3, 1, 2).float(), levels)
        first, last = start * patches_per_image, (start + len(batch)) * patches_per_image
        for level, (y, x), desc in zip(pyramid, positions, descriptors):
            desc[first:last] = _gather_patches(
                level, y[first:last], x[first:last], patches_per_image, patch_size
            )
    return [_normalise_descriptors(desc) for desc in descriptors]


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
    """uint8 (N, H, W, C) from any accepted image convention (floats are rounded, clipped)."""
    if isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            return images.movedim(1, -1).cpu().numpy()
        return to_uint8(images)
    return images


def _nhwc_shape(images: np.ndarray | torch.Tensor) -> tuple[int, int, int, int]:
    """(N, H, W, C) of a set of images in any accepted convention; raises for anything else."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"image tensors must be (N, C, H, W), got {tuple(images.shape)}")
        n, c, h, w = images.shape
        return n, h, w, c
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"numpy images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}"
        )
    return images.shape


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

    ``real`` and ``fake`` are equally many, equally sized images: uint8 numpy (N, H, W, C),
    uint8 tensors (N, C, H, W) or float tensors (N, C, H, W) in [-1, 1]. Float images are first
    quantised to uint8, as the original did with generated images, so all conventions give
    identical results. Pixel values are on the 0..255 scale, 1 or 3 channels.

    Returns ``{"swd_<res>": ..., "swd": average}`` with one entry per level, finest first
    (e.g. swd_64, swd_32, swd_16 for 64x64 images). Defaults are the paper's: 7x7 patches,
    128 per image per level, levels down to 16x16, 4 repeats of 128 random directions.
    Patch positions and directions come from ``seed``, so results are reproducible; they also
    differ between the two sets, so identical sets give a small positive value, not 0.

    The pyramids are built a chunk of images at a time; what is kept are the patch descriptors
    (``patches_per_image`` x C x 7 x 7 floats per image and level), which the distance needs.
    """
    shape = _nhwc_shape(real)
    if shape != _nhwc_shape(fake):
        raise ValueError(f"swd needs equal shapes, got {shape} and {_nhwc_shape(fake)}")
    _, height, width, _ = shape
    resolutions = swd_resolutions(height, min_resolution)
    scale = 2 ** (len(resolutions) - 1)
    if not resolutions or height % scale or width % scale:
        raise ValueError(
            f"swd needs images of at least {min_resolution} rows whose sides divide by {scale}; "
            f"got {height}x{width}"
        )
    gen = torch.Generator().manual_seed(seed)
    descriptors = [
        _set_descriptors(images, len(resolutions), patches_per_image, patch_size, gen)
        for images in (real, fake)
    ]
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
    Identical images give +inf. The float64 differences are formed a chunk of images at a time.
    """
    a, b = torch.broadcast_tensors(a, b)
    rows = _rows_per_chunk(math.prod(a.shape[1:]))
    mse = torch.cat(
        [
            (x.double() - y.double()).pow_(2).flatten(1).mean(dim=1)
            for x, y in zip(a.split(rows), b.split(rows))
        ]
    )
    return (10 * torch.log10(data_range**2 / mse)).to(_score_dtype(a))


def _score_dtype(images: torch.Tensor) -> torch.dtype:
    """Scores come back in the images' float dtype (float32 for integer images)."""
    return images.dtype if images.is_floating_point() else torch.float32


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _filter_valid(images: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable "valid" filtering of (..., H, W) by ``taps`` along rows, then along columns.

    The weighted sums of shifted slices equal a 2-D convolution with ``outer(taps, taps)`` up
    to rounding, at 2k instead of k^2 multiply-adds per pixel. They also avoid convolution's
    CPU path for float64, which unfolds every k x k neighbourhood into a buffer k^2 times the
    size of its input.
    """
    k = len(taps)
    height, width = images.shape[-2:]
    rows = images[..., : height - k + 1, :] * taps[0]
    for i in range(1, k):
        rows.add_(images[..., i : i + height - k + 1, :], alpha=taps[i])
    out = rows[..., : width - k + 1] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + width - k + 1], alpha=taps[i])
    return out


def _ssim_chunk(x: torch.Tensor, y: torch.Tensor, taps: list[float], c1: float, c2: float):
    """Mean SSIM per image of two float64 chunks (B, C, H, W): shape (B,)."""
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    var_x = _filter_valid(x * x, taps).sub_(mu_x * mu_x)
    var_y = _filter_valid(y * y, taps).sub_(mu_y * mu_y)
    cov_xy = _filter_valid(x * y, taps).sub_(mu_x * mu_y)
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator.div_(denominator).flatten(1).mean(dim=1)


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
    Computed in float64, since sigma^2 = E[x^2] - E[x]^2 cancels badly in float32, a chunk of
    images at a time, so memory does not grow with the batch.
    """
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim needs two equal (B, C, H, W) batches, got {a.shape}, {b.shape}")
    if min(a.shape[-2:]) < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size}")
    taps = _gaussian_window(window_size, sigma).tolist()
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    rows = _rows_per_chunk(math.prod(a.shape[1:]))
    scores = [
        _ssim_chunk(x.double(), y.double(), taps, c1, c2)
        for x, y in zip(a.split(rows), b.split(rows))
    ]
    return torch.cat(scores).to(_score_dtype(a))


def mean_quality(pairs) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM over ``(output, target)`` batches of (B, C, H, W) in [-1, 1].

    Takes an iterable of chunks (a generator that translates one chunk at a time): only one
    chunk's images and SSIM intermediates are in memory at once, however many images there are.
    """
    totals, count = {"psnr": 0.0, "ssim": 0.0}, 0
    for output, target in pairs:
        output, target = output.float().cpu(), target.float().cpu()
        totals["psnr"] += psnr(output, target).double().sum().item()
        totals["ssim"] += ssim(output, target).double().sum().item()
        count += len(output)
    if not count:
        raise ValueError("mean_quality needs at least one image pair")
    return {name: total / count for name, total in totals.items()}


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
