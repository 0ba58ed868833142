"""DCGAN training throughput: the Ray Train loop vs a plain PyTorch loop, and genart's step vs
pytorch/examples' DCGAN step.

Part 1 (target >= 0.98x): images/s of the genart Ray Train loop with one worker against a plain
PyTorch loop (torch DataLoader over the same PNG folder, same model, same batch size, same
train_step). Steady state only: Ray's fixed start-up (10-20 s per fit) is excluded by skipping
the first reporting window, and the plain loop skips its warm-up steps the same way.

Part 2 (target >= 1.3x): step time of genart's DCGAN train_step against a faithful
re-implementation of pytorch/examples' dcgan/main.py step (same 64 px architecture, batch and
Adam settings; Sigmoid + BCELoss, two separate D backward passes, for-loop Adam, zero_grad to
zeros), in-memory batches, interleaved rounds, medians.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from genart import config
from genart.data import transforms
from genart.data.synthetic import generate
from genart.models import dcgan
from genart.registry import StepContext


class PngFolder(Dataset):
    """The plain-PyTorch reader: PIL decode, resize + centre crop, scale to [-1, 1]."""

    def __init__(self, folder: Path, size: int):
        self.files = sorted(folder.rglob("*.png"))
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = transforms.decode(self.files[index].read_bytes(), channels=3)
        image = transforms.resize_crop(image, self.size)
        return torch.from_numpy(transforms.to_float(image[None])[0])


def plain_loop(folder: Path, p: dcgan.DCGANConfig, cfg, steps: int, warmup: int) -> float:
    """Images/s of the same model and train_step fed by a torch DataLoader (1 process)."""
    torch.manual_seed(0)
    nets = dcgan.build(p, cfg.data)
    opts = dcgan.optimizers(nets, p)
    loader = DataLoader(
        PngFolder(folder, cfg.data.size),
        batch_size=cfg.data.batch_size,
        shuffle=True,
        num_workers=1,
        drop_last=True,
        persistent_workers=True,
    )
    ctx, done, start = StepContext(), 0, None
    while done < steps:
        for images in loader:
            if done == warmup:
                start = time.perf_counter()
            ctx.step = done
            dcgan.train_step(nets, opts, {"image": images}, p, ctx)
            done += 1
            if done == steps:
                break
    return (steps - warmup) * cfg.data.batch_size / (time.perf_counter() - start)


def ray_loop(folder: Path, overrides: list[str], storage: Path) -> float:
    """Steady-state images/s of the genart Ray Train loop with one worker."""
    from genart.train.launch import fit

    cfg = config.load(
        "dcgan",
        overrides=[
            *overrides,
            f"data.uri={folder}",
            "scaling.workers=1",
            f"run.storage_path={storage}",
            "run.name=bench",
        ],
    )
    result = fit(cfg)
    if result.error:
        raise result.error
    lines = (storage / "bench" / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(line)["images_per_s"] for line in lines][1:]  # skip start-up window
    return statistics.median(rates)


def examples_step(batch: int, real: torch.Tensor):
    """pytorch/examples dcgan/main.py, re-implemented: nz 100, ngf = ndf = 64, 64 px, RGB."""
    nz, ngf, ndf = 100, 64, 64

    def up(i, o, first=False):
        conv = nn.ConvTranspose2d(i, o, 4, 1 if first else 2, 0 if first else 1, bias=False)
        return [conv, nn.BatchNorm2d(o), nn.ReLU(True)]

    def down(i, o, norm=True):
        return [
            nn.Conv2d(i, o, 4, 2, 1, bias=False),
            *([nn.BatchNorm2d(o)] if norm else []),
            nn.LeakyReLU(0.2, inplace=True),
        ]

    G = nn.Sequential(
        *up(nz, ngf * 8, True),
        *up(ngf * 8, ngf * 4),
        *up(ngf * 4, ngf * 2),
        *up(ngf * 2, ngf),
        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    D = nn.Sequential(
        *down(3, ndf, False),
        *down(ndf, ndf * 2),
        *down(ndf * 2, ndf * 4),
        *down(ndf * 4, ndf * 8),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=False)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=False)

    def step():
        D.zero_grad(set_to_none=False)
        label = torch.full((batch,), 1.0)
        criterion(D(real).view(-1), label).backward()
        fake = G(torch.randn(batch, nz, 1, 1))
        label.fill_(0.0)
        criterion(D(fake.detach()).view(-1), label).backward()
        opt_d.step()
        G.zero_grad(set_to_none=False)
        label.fill_(1.0)
        criterion(D(fake).view(-1), label).backward()
        opt_g.step()

    return step


def genart_step(batch: int, real: torch.Tensor):
    """genart's DCGAN train_step with the same architecture, batch and optimizer settings."""
    p = dcgan.DCGANConfig()
    nets = dcgan.build(p, config.DataConfig(size=64, channels=3, batch_size=batch))
    opts = dcgan.optimizers(nets, p)
    ctx = StepContext()
    return lambda: dcgan.train_step(nets, opts, {"image": real}, p, ctx)


def step_times(batch: int, rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per step of both implementations, measured in interleaved rounds."""
    torch.manual_seed(0)
    real = torch.rand(batch, 3, 64, 64) * 2 - 1
    steps = {"pytorch/examples": examples_step(batch, real), "genart": genart_step(batch, real)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up: allocator, oneDNN primitive caches
        step()
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(t) for name, t in times.items()}


def run(out_dir: Path, quick: bool) -> dict:
    """Both comparisons; prints a table and writes dcgan.json."""
    from benchmarks.common import machine, print_table, write_json

    # Ray Train workers run with OMP_NUM_THREADS=1 (one CPU each): the baselines get the same,
    # else the plain loop's 2 torch threads fight its DataLoader worker for the 2 cores.
    torch.set_num_threads(1)
    width, batch = (32, 32) if quick else (64, 64)
    steps, warmup = (25, 5) if quick else (60, 10)
    overrides = [
        f"dcgan.g_width={width}",
        f"dcgan.d_width={width}",
        "data.size=64",
        f"data.batch_size={batch}",
        f"train.steps={steps}",
        f"train.log_every={warmup}",
        "train.checkpoint_every=100000",
        "train.sample_every=100000",
        "train.eval_samples=0",
        "data.shuffle_buffer=256",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = generate("shapes", Path(tmp) / "shapes", n=1024, size=64, seed=0) / "images"
        cfg = config.load("dcgan", overrides=overrides)
        plain = plain_loop(folder, cfg.params, cfg, steps, warmup)
        through_ray = ray_loop(folder, overrides, Path(tmp) / "runs")
    step = step_times(batch=64 if not quick else 32, rounds=3 if quick else 5, per_round=2)
    rows = [
        {
            "comparison": "Ray Train loop (1 worker) vs plain loop",
            "genart": f"{through_ray:.1f} img/s",
            "baseline": f"{plain:.1f} img/s",
            "ratio": round(through_ray / plain, 3),
            "target": ">= 0.98",
        },
        {
            "comparison": "DCGAN step vs pytorch/examples",
            "genart": f"{step['genart']:.3f} s",
            "baseline": f"{step['pytorch/examples']:.3f} s",
            "ratio": round(step["pytorch/examples"] / step["genart"], 3),
            "target": ">= 1.3",
        },
    ]
    print_table(rows)
    payload = {
        "machine": machine(),
        "quick": quick,
        "width": width,
        "batch": batch,
        "loop_images_per_s": {"ray_train": through_ray, "plain": plain},
        "step_seconds": step,
        "rows": rows,
    }
    write_json("dcgan", payload, out_dir)
    return payload


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
