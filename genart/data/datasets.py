"""What each trained family reads: its training stream and its held-out reference set.

These are the ``dataset`` and ``held_out`` hooks of the trained specs (``genart.registry``):
``images``, ``paired``, ``unpaired`` and ``content_style`` pick the folders a dataset layout
implies and build the Ray Data stream (``genart.data.pipelines``, imported on use: model
modules import this one);
``paired_held_out`` and ``unpaired_held_out`` read a dataset's held-out split into one uint8
batch, with the one image decoder, for the in-training scores Tune optimises.

Layouts (those ``genart data synth`` writes, and the reference implementations read): pix2pix
``ROOT/{train,val,test}/`` of aligned A|B images; CycleGAN ``ROOT/{trainA,trainB,testA,testB}/``
plus, where true translations exist, ``testA_truth/`` and ``testB_truth/`` (same file names);
style transfer ``ROOT/{content,style}/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from genart import storage
from genart.data import transforms
from genart.errors import ConfigError

if TYPE_CHECKING:
    from genart.config import Config

Batch = dict[str, torch.Tensor]


def images(cfg: Config):
    """Column ``image``: every image under ``data.uri`` (folder, s3:// prefix or Parquet)."""
    from genart.data import pipelines

    d = cfg.data
    return pipelines.images(
        _uri(cfg), size=d.size, channels=d.channels, column=d.parquet_column, repeat=d.repeat
    )


def paired(cfg: Config, direction: str = "AtoB"):
    """Columns ``A`` (input) and ``B`` (target) from aligned A|B images.

    A pix2pix root (``train/ val/ test/``) trains on ``train/`` only: never on held-out pairs.
    """
    from genart.data import pipelines

    d, root = cfg.data, _uri(cfg)
    train_dir = storage.join(root, "train")
    uri = train_dir if storage.exists(train_dir) else root
    return pipelines.paired(uri, size=d.size, channels=d.channels, direction=direction,
                            column=d.parquet_column, repeat=d.repeat)  # fmt: skip


def unpaired(cfg: Config):
    """Columns ``A`` and ``B``: a CycleGAN root's ``trainA/`` and ``trainB/``, or ``data.uri``
    and ``data.uri_b`` as the two domains."""
    from genart.data import pipelines

    d, root = cfg.data, _uri(cfg)
    uri_a, uri_b = (
        (root, d.uri_b) if d.uri_b else (storage.join(root, "trainA"), storage.join(root, "trainB"))
    )
    return pipelines.unpaired(
        uri_a, uri_b, d.size, d.channels, seed=cfg.train.seed, repeat=d.repeat
    )


def content_style(cfg: Config, style_uri: str = ""):
    """Columns ``content`` and ``style``: random pairs of a content image and a style image.

    Contents come from ``data.uri``'s ``content/`` folder (the layout ``genart data synth
    styles`` writes), or from ``data.uri`` itself when it has none; styles from ``style_uri``
    when given, else from the ``style/`` folder beside the contents. Folders (local or s3://),
    not Parquet; the smaller set is cycled in seeded permutations (``pipelines.unpaired``).
    """
    from genart.data import pipelines

    d, root = cfg.data, _uri(cfg)
    contents = storage.join(root, "content")
    if not storage.exists(contents):
        contents = root
    styles = style_uri or storage.join(root, "style")
    if not storage.exists(styles):
        raise ConfigError(
            f"no style images at {styles}: give data.uri a style/ folder beside content/, "
            "or set the style folder (adain.style_uri=DIR|s3://...)"
        )
    pairs = pipelines.unpaired(
        contents, styles, d.size, d.channels, seed=cfg.train.seed, repeat=d.repeat
    )
    return pairs.rename_columns({"A": "content", "B": "style"})


def _uri(cfg: Config) -> str:
    if not cfg.data.uri:
        raise ConfigError("data.uri is empty: pass --data DIR|s3://...|FILE.parquet")
    return cfg.data.uri


# --- held-out reference sets ----------------------------------------------------------------


def paired_held_out(cfg: Config, n: int, direction: str = "AtoB") -> tuple[Batch, str] | None:
    """Up to ``n`` pairs ``{"A", "B"}`` from ``val/`` (else ``test/``) beside ``train/``, and the
    split's name; None when the dataset has neither (then the loop scores training pairs)."""
    root = cfg.data.uri
    for split in ("val", "test"):
        files = _image_files(storage.join(root, split), n)
        if files:
            halves = [transforms.split_ab(_decode(uri, cfg)) for uri in files]
            a, b = ([h[i] for h in halves] for i in (0, 1))
            if direction == "BtoA":
                a, b = b, a
            return {"A": _stack(a, cfg), "B": _stack(b, cfg)}, split
    return None


def unpaired_held_out(cfg: Config, n: int) -> tuple[Batch, str] | None:
    """Up to ``n`` images per domain from ``testA/`` and ``testB/`` with their true translations
    (``testA_truth/`` holds B for each testA file, ``testB_truth/`` A for each testB one): keys
    ``A``, ``A_truth``, ``B``, ``B_truth``. None when the dataset has no truth folders."""
    if cfg.data.uri_b:
        return None
    root, batch = cfg.data.uri, {}
    for domain in "AB":
        sources = _image_files(storage.join(root, f"test{domain}"), n)
        truth = storage.join(root, f"test{domain}_truth")
        if not sources or not storage.exists(truth):
            return None
        names = [uri.rsplit("/", 1)[-1] for uri in sources]
        batch[domain] = _stack([_decode(uri, cfg) for uri in sources], cfg)
        batch[f"{domain}_truth"] = _stack(
            [_decode(storage.join(truth, x), cfg) for x in names], cfg
        )
    return batch, "test"


def content_style_held_out(cfg: Config, n: int) -> tuple[Batch, str] | None:
    """Up to ``n`` pairs ``{"content", "style"}`` of unseen images from ``test/content/`` and
    ``test/style/`` beside ``content/`` under ``data.uri`` (the styles cycled when fewer), and
    the split's name; None when ``content/`` or either test folder is missing or empty (then
    the loop scores training pairs)."""
    root = _uri(cfg)
    if not storage.exists(storage.join(root, "content")):
        return None  # training then reads every image under data.uri, test/ included
    contents = _image_files(storage.join(root, "test", "content"), n)
    styles = _image_files(storage.join(root, "test", "style"), n)
    if not contents or not styles:
        return None
    style_images = [_decode(uri, cfg) for uri in styles]  # each read once, however often paired
    return {
        "content": _stack([_decode(uri, cfg) for uri in contents], cfg),
        "style": _stack([style_images[i % len(styles)] for i in range(len(contents))], cfg),
    }, "test"


def _image_files(folder: str, n: int) -> list[str]:
    """The first ``n`` image files (sorted) directly in ``folder``; [] if there is none."""
    names = [
        name
        for name in storage.list_files(folder)
        if "/" not in name and name.lower().endswith(transforms.IMAGE_EXTENSIONS)
    ]
    return [storage.join(folder, name) for name in names[:n]]


def _decode(uri: str, cfg: Config) -> np.ndarray:
    """One image file, decoded as the training stream decodes it (uint8 HWC, its own size)."""
    return transforms.decode(storage.read_bytes(uri), cfg.data.channels)


def _stack(arrays: list[np.ndarray], cfg: Config) -> torch.Tensor:
    """Images resized and cropped as in training, as one uint8 (B, C, H, W) batch."""
    cropped = [transforms.resize_crop(a, cfg.data.size) for a in arrays]
    return torch.from_numpy(np.stack(cropped)).permute(0, 3, 1, 2).contiguous()
