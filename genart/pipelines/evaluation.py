"""Scored evaluation of a translation export on held-out ground truth (``genart eval translation``).

PSNR and SSIM of the translated test images against their true translations, beside the
identity baseline (the input itself compared with the target): a model that does not beat the
identity has learnt nothing useful. Layouts: pix2pix ``DIR/test/*`` aligned A|B images;
CycleGAN ``DIR/testA`` vs ``DIR/testA_truth`` and ``DIR/testB`` vs ``DIR/testB_truth`` (same
file names). Images are scored at their own sizes, a chunk at a time: memory stays that of one
chunk however many test images there are.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genart import metrics, storage
from genart.data.transforms import decode, split_ab, to_float
from genart.pipelines.runner import image_files
from genart.pipelines.translate import DIRECTIONS, TranslationPipeline

CHUNK = 16  # images translated and scored at once

Pairs = list[tuple[np.ndarray, np.ndarray]]  # (source, target) uint8 HWC, file by file


def paired_test_set(folder: str, channels: int, direction: str) -> Pairs:
    """(source, target) of each aligned A|B image in ``folder`` (pix2pix layout)."""
    pairs = []
    for uri in image_files(folder):
        a, b = split_ab(decode(storage.read_bytes(uri), channels))
        pairs.append((a, b) if direction == "AtoB" else (b, a))
    return pairs


def truth_test_set(source_dir: str, truth_dir: str, channels: int) -> Pairs:
    """(source, true translation) matched by file name (CycleGAN ``_truth`` layout)."""
    sources = image_files(source_dir)
    names = [uri.rsplit("/", 1)[-1] for uri in sources]
    missing = [n for n in names if not storage.exists(storage.join(truth_dir, n))]
    if missing:
        raise FileNotFoundError(f"no ground truth in {truth_dir} for {missing[:3]} ...")
    read = lambda uri: decode(storage.read_bytes(uri), channels)  # noqa: E731
    return [(read(uri), read(storage.join(truth_dir, n))) for uri, n in zip(sources, names)]


def held_out_sets(data: str, pipe: TranslationPipeline, direction: str | None) -> Iterator:
    """``(direction, pairs)`` for each direction of ``pipe`` to evaluate on ``data``."""
    if len(pipe.directions) == 2:
        for name in [direction] if direction else DIRECTIONS:
            domain = name[0]  # AtoB translates testA, compared with testA_truth
            folder, truth = (
                storage.join(data, f"test{domain}"),
                storage.join(data, f"test{domain}_truth"),
            )
            yield name, truth_test_set(folder, truth, pipe.channels)
    else:
        name = pipe.direction(direction)
        yield name, paired_test_set(storage.join(data, "test"), pipe.channels, name)


def score(pipe: TranslationPipeline, direction: str, pairs: Pairs) -> dict[str, Any]:
    """Mean PSNR/SSIM of the translations and of the identity, chunks of one size at a time."""
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for index, (source, _) in enumerate(pairs):
        by_shape[source.shape].append(index)
    model, identity, weights = [], [], []
    for indices in by_shape.values():
        for start in range(0, len(indices), CHUNK):
            chunk = [pairs[i] for i in indices[start : start + CHUNK]]
            sources, targets = zip(*chunk)
            outputs = pipe(list(sources), direction)
            model.append(metrics.mean_quality([(_batch(outputs), _batch(targets))]))
            identity.append(metrics.mean_quality([(_batch(sources), _batch(targets))]))
            weights.append(len(chunk))
    return {"images": len(pairs), "model": _mean(model, weights),
            "identity": _mean(identity, weights)}  # fmt: skip


def _batch(images) -> torch.Tensor:
    return torch.from_numpy(to_float(np.stack(images)))


def _mean(rows: list[dict[str, float]], weights: list[int]) -> dict[str, float]:
    return {k: float(np.average([row[k] for row in rows], weights=weights)) for k in rows[0]}


def evaluate_run(
    run: str, data_dir: str, direction: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """PSNR/SSIM of a run's translations of the test images, and of the identity baseline.

    Returns ``{"metrics": {"AtoB_psnr": ..., "AtoB_identity_psnr": ..., ...}, "run", "data",
    "model", "directions"}`` (the ``genart eval translation`` JSON shape). ``seed`` fixes
    Pix2Pix's test-time dropout noise, so the numbers are repeatable.
    """
    torch.manual_seed(seed)
    pipe = TranslationPipeline.from_export(str(run), device="cpu")
    found: dict[str, float] = {}
    directions = []
    for name, pairs in held_out_sets(storage.absolute(str(data_dir)), pipe, direction):
        directions.append(name)
        result = score(pipe, name, pairs)
        found[f"{name}_images"] = result["images"]
        found |= {f"{name}_{k}": v for k, v in result["model"].items()}
        found |= {f"{name}_identity_{k}": v for k, v in result["identity"].items()}
    return {"metrics": found, "run": str(run), "data": str(data_dir), "model": pipe.cfg.model,
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
