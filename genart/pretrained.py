"""Where pretrained torchvision weights come from: one set of rules for every network genart loads
(VGG for the style losses, Inception v3 for FID/KID).

A weights spec is ``auto`` (the torch hub cache, where the file is downloaded from torchvision's
URL on first use as torchvision does, :mod:`genart.download`; not with ``GENART_OFFLINE=1``), a
local path, or an ``s3://`` object the caller names (copied once into a local cache). Without a
file :class:`WeightsNotFound` says where we looked and how to provide one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torchvision

from genart import download

# Every torchvision network genart loads ImageNet weights for, and the flag that names its file.
PUBLISHED = {
    "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    "vgg19": torchvision.models.VGG19_Weights.IMAGENET1K_V1,
    "inception_v3": torchvision.models.Inception_V3_Weights.IMAGENET1K_V1,
}
FLAGS = {"vgg16": "--vgg-weights", "vgg19": "--vgg-weights", "inception_v3": "--inception-weights"}

# Tests only: arch -> URL of a file served on 127.0.0.1 (named with that file's own sha256
# prefix), in place of torchvision's. genart itself never sets it.
TEST_URLS: dict[str, str] = {}


class WeightsNotFound(FileNotFoundError):
    """No weights where we looked, or their download failed; the message says how to provide
    them."""


def weights_url(arch: str) -> str:
    """Where torchvision publishes the ImageNet weights of ``arch``."""
    return TEST_URLS.get(check_arch(arch)) or PUBLISHED[arch].url


def hub_cache_path(arch: str) -> Path:
    """The torch hub cache file torchvision would download ``arch``'s weights to."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_url(arch))


def check_arch(arch: str) -> str:
    """``arch`` itself, or ValueError naming the known ones."""
    if arch not in PUBLISHED:
        raise ValueError(f"unknown architecture '{arch}'; valid: {sorted(PUBLISHED)}")
    return arch


def resolve_weights(arch: str, weights: str) -> tuple[Path, str]:
    """The local file holding ``arch``'s weights for a ``weights`` spec, and a description of it.

    ``auto`` is the torch hub cache, filled from torchvision's URL when empty (unless offline).
    """
    check_arch(arch)
    if weights.startswith("s3://"):
        return _download_s3(arch, weights), f"imagenet ({weights})"
    if weights == "auto":
        path = cached_weights(arch)
        return path, f"imagenet ({path})"
    path = Path(weights).expanduser()
    if path.is_file():
        return path, f"imagenet ({path})"
    raise WeightsNotFound(_missing_message(arch, [f"{path} (given path)"]))


def cached_weights(arch: str) -> Path:
    """``arch``'s weights in the torch hub cache, downloaded there first if missing.

    Raises :class:`WeightsNotFound` when offline (``GENART_OFFLINE=1``) with nothing cached, or
    with a one-line reason when the download fails (nothing is left in the cache then).
    """
    path = hub_cache_path(arch)
    if path.is_file():
        return path
    if download.offline():
        looked = [f"{path} (torch hub cache; downloading is off: {download.OFFLINE_ENV}=1)"]
        raise WeightsNotFound(_missing_message(arch, looked))
    try:
        return download.download(weights_url(arch), path)
    except download.DownloadError as err:
        raise WeightsNotFound(
            f"could not download the {arch} weights: {err}; nothing was saved. Retry, or pass "
            f"{FLAGS[arch]} PATH|s3://... (genart weights fetch stages them)"
        ) from err


def _missing_message(arch: str, looked: list[str]) -> str:
    cache, flag = hub_cache_path(arch), FLAGS[arch]
    lines = [f"no ImageNet weights for {arch} found. Looked in:"]
    lines += [f"  - {place}" for place in looked]
    lines += [
        "Provide them by one of:",
        f"  - fetching {weights_url(arch)} to {cache} (the torch hub cache; TORCH_HOME moves it;"
        f" genart weights fetch {arch} does it)",
        f"  - passing a local file: {flag} /path/to/{cache.name}",
        f"  - passing an S3 object: {flag} s3://bucket/{cache.name}",
        f"  - or {flag} random: a seeded random network for tests and demos (meaningless results)",
    ]
    return "\n".join(lines)


def _download_s3(arch: str, uri: str) -> Path:
    """Fetch ``s3://bucket/key`` into the hub cache once; reuse it while the size matches."""
    import boto3
    import botocore.exceptions

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    target = Path(torch.hub.get_dir()) / "genart-s3" / bucket / key
    try:
        client = boto3.client("s3")
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if target.is_file() and target.stat().st_size == size:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Download beside the target, then rename: concurrent workers never read a partial file.
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(fd)
        client.download_file(bucket, key, partial)
        os.replace(partial, target)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise WeightsNotFound(_missing_message(arch, [f"{uri} (S3: {err})"])) from err
    return target


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in ``path``, tensors only (``weights_only``), memory-mapped where the
    file allows: only the tensors a caller keeps are then read from disk."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files in torch's legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)
