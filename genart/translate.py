"""Image-to-image translation with trained Pix2Pix/CycleGAN generators, and its scored evaluation.

- :func:`translate`: any image size through a fully convolutional generator, by reflection
  padding to a multiple of the network's stride and cropping back (non-square images work).
- :func:`translate_folder`: a folder of images through Ray Data (``map_batches`` with a
  callable class, so each actor loads the generator once), PNGs written under the output.
- :func:`evaluate_run`: PSNR and SSIM of translated test images against their ground truth,
  beside the identity baseline (the input itself compared with the target): a model that does
  not beat the identity has learnt nothing useful. Layouts: pix2pix ``DIR/test/*`` aligned A|B
  images; CycleGAN ``DIR/testA`` vs ``DIR/testA_truth`` and ``DIR/testB`` vs ``DIR/testB_truth``
  (same file names).
- :func:`export_onnx`: a generator as ONNX with dynamic batch/height/width, checked against
  torch with onnxruntime.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genart.config import Config, ConfigError
from genart.images import find_images, png_bytes
from genart.models.layers import without_test_dropout
from genart.registry import unwrap

DIRECTIONS = ("AtoB", "BtoA")

# --- any-size inference -----------------------------------------------------------------------


def stride_of(G: nn.Module) -> int:
    """The multiple an input side must be (2^depth for a U-Net, 4 for the ResNet generator)."""
    return getattr(unwrap(G), "stride", 1)


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right up to sides divisible by ``multiple``.

    Reflection padding continues the image's texture (zeros would add a dark border that the
    generator then "translates"); a pad wider than the image falls back to edge replication,
    which reflection cannot do.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


@torch.no_grad()
def translate(G: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """G(images) for (B, C, H, W) in [-1, 1] of any H, W: padded, run in eval mode, cropped.

    Runs on G's device in chunks of ``batch_size`` and returns float32 on ``images``' device.
    G's training flag is restored afterwards (the training loop samples mid-run).
    """
    G = unwrap(G)
    was_training = G.training
    G.eval()
    device, stride = next(G.parameters()).device, stride_of(G)
    height, width = images.shape[-2:]
    try:
        outputs = [
            G(pad_to_multiple(chunk.to(device).float(), stride))[..., :height, :width]
            for chunk in images.split(batch_size)
        ]
    finally:
        G.train(was_training)
    return torch.cat(outputs).float().to(images.device)


def translate_images(G: nn.Module, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Translate (C, H, W) images of possibly different sizes, batching those of equal size."""
    outputs: list[torch.Tensor | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape), []).append(index)
    for indices in by_shape.values():
        translated = translate(G, torch.stack([images[i] for i in indices]))
        for i, out in zip(indices, translated):
            outputs[i] = out
    return outputs


# --- metrics ----------------------------------------------------------------------------------


def image_quality(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of (B, C, H, W) images in [-1, 1] against their targets."""
    from genart import metrics

    output, target = output.float().cpu(), target.float().cpu()
    return {
        "psnr": metrics.psnr(output, target).mean().item(),
        "ssim": metrics.ssim(output, target).mean().item(),
    }


def score(G: nn.Module, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """PSNR/SSIM of G(source) against target, and of the identity baseline (source itself)."""
    identity = image_quality(source, target)
    return image_quality(translate(G, source), target) | {
        f"{name}_identity": value for name, value in identity.items()
    }


# --- runs and image files ---------------------------------------------------------------------


def load_run(run: str | Path) -> tuple[dict[str, nn.Module], Config]:
    """The exported generators of a run (eval mode, CPU) and its resolved config."""
    from genart.train.checkpoint import load_exported

    nets, cfg = load_exported(str(run))
    return {name: net.eval() for name, net in nets.items()}, cfg


def select_generator(
    nets: dict[str, nn.Module], cfg: Config, direction: str | None = None
) -> tuple[nn.Module, str]:
    """The generator for ``direction`` and the direction it translates.

    CycleGAN exports ``G_AB`` and ``G_BA`` (default AtoB); a Pix2Pix ``G`` translates only the
    direction it was trained in (``params.direction``), so asking for the other one is an error.
    """
    if direction not in (None, *DIRECTIONS):
        raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if "G_AB" in nets and "G_BA" in nets:
        direction = direction or "AtoB"
        return nets["G_AB" if direction == "AtoB" else "G_BA"], direction
    trained = getattr(cfg.params, "direction", "AtoB")
    if direction not in (None, trained):
        raise ConfigError(
            f"this {cfg.model} run was trained {trained}; it cannot translate {direction}"
        )
    return nets["G"], trained


def read_array(path: str | Path, channels: int) -> np.ndarray:
    """One image file as uint8 (H, W, C) at its own size (decoded as the training data are)."""
    from genart.data.transforms import decode

    return decode(Path(path).read_bytes(), channels)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> float (C, H, W) in [-1, 1]."""
    from genart.data.transforms import to_float

    return torch.from_numpy(to_float(array))


# --- translating files ------------------------------------------------------------------------


def translate_file(G: nn.Module, source: Path, output_dir: Path, channels: int) -> Path:
    """Translate one image file into ``output_dir`` (same name, PNG); returns the new path."""
    (image,) = translate_images(G, [to_tensor(read_array(source, channels))])
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{source.stem}.png"
    target.write_bytes(png_bytes(image))
    return target


class TranslateBatch:
    """Ray Data ``map_batches`` class: each actor loads the run's generator once.

    Batches hold encoded image bytes and their paths (``read_binary_files(include_paths=True)``);
    each image is translated at its own size and returned PNG-encoded.
    """

    def __init__(self, run: str, direction: str | None = None):
        nets, cfg = load_run(run)
        self.generator, _ = select_generator(nets, cfg, direction)
        self.channels = cfg.data.channels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from genart.data.transforms import decode

        images = [to_tensor(decode(data, self.channels)) for data in batch["bytes"]]
        outputs = translate_images(self.generator, images)
        pngs = np.array([png_bytes(image) for image in outputs], dtype=object)
        return {"path": batch["path"], "png": pngs}


def translate_folder(
    run: str,
    input_dir: str | Path,
    output_dir: str | Path,
    direction: str | None = None,
    batch_size: int = 16,
    actors: int = 1,
) -> list[Path]:
    """Translate every image in ``input_dir`` through Ray Data; returns the written paths.

    Needs a running Ray (``ray.init()``, or it starts a local one). The PNGs come back to the
    driver and are written there, so the output folder need not be visible to the workers.
    """
    import ray

    sources = find_images(input_dir, recursive=False)
    dataset = ray.data.read_binary_files([str(p) for p in sources], include_paths=True)
    translated = dataset.map_batches(
        TranslateBatch,
        fn_constructor_kwargs={"run": str(run), "direction": direction},
        batch_size=batch_size,
        concurrency=actors,
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for row in translated.iter_rows():
        target = output_dir / f"{Path(row['path']).stem}.png"
        target.write_bytes(row["png"])
        written.append(target)
    return sorted(written)


# --- scored evaluation on held-out ground truth -----------------------------------------------


def paired_test_set(folder: Path, channels: int, direction: str):
    """Sources and targets from aligned A|B images (pix2pix layout), as two lists of (C, H, W)."""
    from genart.data.transforms import split_ab

    sources, targets = [], []
    for path in find_images(folder, recursive=False):
        a, b = (to_tensor(half) for half in split_ab(read_array(path, channels)))
        sources.append(a if direction == "AtoB" else b)
        targets.append(b if direction == "AtoB" else a)
    return sources, targets


def truth_test_set(source_dir: Path, truth_dir: Path, channels: int):
    """Sources and their true translations, matched by file name (CycleGAN ``_truth`` layout)."""
    sources = find_images(source_dir, recursive=False)
    missing = [p.name for p in sources if not (truth_dir / p.name).exists()]
    if missing:
        raise FileNotFoundError(f"no ground truth in {truth_dir} for {missing[:3]} ...")
    return (
        [to_tensor(read_array(p, channels)) for p in sources],
        [to_tensor(read_array(truth_dir / p.name, channels)) for p in sources],
    )


def held_out_sets(data_dir: Path, cfg: Config, nets, direction: str | None) -> Iterator[tuple]:
    """``(direction, generator, sources, targets)`` for each direction to evaluate."""
    channels = cfg.data.channels
    if "G_AB" in nets and "G_BA" in nets:
        for name in [direction] if direction else DIRECTIONS:
            domain = name[0]  # AtoB translates testA, compared with testA_truth
            G, _ = select_generator(nets, cfg, name)
            folder = data_dir / f"test{domain}"
            yield name, G, *truth_test_set(folder, data_dir / f"test{domain}_truth", channels)
    else:
        G, name = select_generator(nets, cfg, direction)
        yield name, G, *paired_test_set(data_dir / "test", channels, name)


def evaluate_translation(G: nn.Module, sources, targets) -> dict[str, Any]:
    """Scores of G and of the identity baseline over lists of (C, H, W) images."""
    outputs = translate_images(G, sources)
    model, identity = [], []
    for output, source, target in zip(outputs, sources, targets):
        model.append(image_quality(output[None], target[None]))
        identity.append(image_quality(source[None], target[None]))

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}

    return {"images": len(sources), "model": mean(model), "identity": mean(identity)}


def evaluate_run(
    run: str, data_dir: str | Path, direction: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """PSNR/SSIM of a run's translations of the test images, and of the identity baseline.

    Returns ``{"metrics": {"AtoB_psnr": ..., "AtoB_identity_psnr": ..., ...}, "run", "data",
    "model", "directions"}`` (the ``genart eval`` JSON shape). ``seed`` fixes Pix2Pix's
    test-time dropout noise, so the numbers are repeatable.
    """
    from genart.storage import local_copy

    torch.manual_seed(seed)
    nets, cfg = load_run(run)
    data = local_copy(str(data_dir))
    metrics: dict[str, float] = {}
    directions = []
    for name, G, sources, targets in held_out_sets(data, cfg, nets, direction):
        directions.append(name)
        result = evaluate_translation(G, sources, targets)
        metrics[f"{name}_images"] = result["images"]
        for kind in ("model", "identity"):
            prefix = name if kind == "model" else f"{name}_identity"
            metrics |= {f"{prefix}_{k}": v for k, v in result[kind].items()}
    return {"metrics": metrics, "run": str(run), "data": str(data_dir), "model": cfg.model,
            "directions": directions}  # fmt: skip


def format_table(report: dict[str, Any]) -> str:
    """The evaluation as a plain-text table, one row per direction."""
    m = report["metrics"]
    header = ("direction", "images", "PSNR dB", "SSIM", "identity PSNR", "identity SSIM")
    rows = [
        (d, str(m[f"{d}_images"]), f"{m[f'{d}_psnr']:.2f}", f"{m[f'{d}_ssim']:.3f}",
         f"{m[f'{d}_identity_psnr']:.2f}", f"{m[f'{d}_identity_ssim']:.3f}")
        for d in report["directions"]
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *rows]]
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write the evaluation report as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


# --- ONNX -------------------------------------------------------------------------------------


def export_onnx(G: nn.Module, path: str | Path, channels: int) -> float:
    """Write G as ONNX (dynamic batch, height, width); returns max |onnxruntime - torch|.

    Exported in eval mode with Pix2Pix's test-time dropout off: onnxruntime's training-mode
    Dropout is not reproducible, and a deterministic graph is what serving wants. The probe is
    non-square, a few strides per side. Raises AssertionError above 1e-4.
    """
    from genart.onnx_export import export_checked

    stride = stride_of(G)
    probe = torch.rand(2, channels, 2 * stride, 3 * stride) * 2 - 1
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with without_test_dropout(unwrap(G)):
        return export_checked(G, path, probe)
