"""DCGAN training throughput: the Ray Train loop vs a plain PyTorch loop, and genart's step vs
pytorch/examples' DCGAN step.

Part 1 (target >= 0.98x): images/s of the genart Ray Train loop with one worker against a plain
PyTorch loop (torch DataLoader over the same PNG folder, same model, same batch size, same
train_step). Steady state only: Ray's fixed start-up (10-20 s per fit) is excluded by skipping
the first reporting window, and the plain loop skips its warm-up steps the same way. On CPU a
second pair runs a step ~50x cheaper (width 8, 32 px): a 64 px step there takes a second, which
hides what the loop itself costs per step, and a GPU step takes milliseconds. The fast pair (on
a GPU the 64 px one) runs again with ``data.repeat`` several copies per epoch, so that Ray
Data's pause at the start of each epoch comes less often.

Part 2 (target >= 1.3x): step time of genart's DCGAN train_step against a faithful
re-implementation of pytorch/examples' dcgan/main.py step (same 64 px architecture, batch and
Adam settings; Sigmoid + BCELoss, two separate D backward passes, torch's default Adam,
zero_grad to zeros, cudnn.benchmark), in-memory batches, interleaved rounds, medians. genart's
step runs as the loop runs it: on CUDA with bf16 autocast and channels-last ("auto").

On a GPU both loops run the same device choices, and the plain loop's DataLoader gets up to 8
worker processes with pinned memory (one would starve the GPU); Ray Data spreads decoding over
the CPUs Ray Train leaves free. On the 2-core CPU machine both read with one process.
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

from benchmarks.common import loop_step, sync
from genart import config
from genart.data import transforms
from genart.data.synthetic import generate
from genart.data.transforms import random_flip
from genart.models import dcgan
from genart.train import devices


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
    """Images/s of the same model and train_step fed by a torch DataLoader."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    nhwc = devices.channels_last(cfg.train.channels_last, device)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    torch.manual_seed(0)
    nets = {k: v.to(device, memory_format=fmt) for k, v in dcgan.build(p, cfg.data).items()}
    run, ctx = loop_step(dcgan.SPEC, p, nets, device, cfg.train.cuda_graphs)
    loader = DataLoader(
        PngFolder(folder, cfg.data.size),
        batch_size=cfg.data.batch_size,
        shuffle=True,
        num_workers=_loader_workers(device),
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=True,
    )
    done, start = 0, None
    while done < steps:
        for images in loader:
            if done == warmup:
                sync(device)
                start = time.perf_counter()
            ctx.step = done
            images = images.to(device, non_blocking=True)
            if cfg.data.flip:  # the same augmentation as the loop's, the same way
                (images,) = random_flip(images, generator=torch.default_generator)
            run({"image": images.contiguous(memory_format=fmt)})
            done += 1
            if done == steps:
                break
    sync(device)
    return (steps - warmup) * cfg.data.batch_size / (time.perf_counter() - start)


def _loader_workers(device: torch.device) -> int:
    """One reader on the 2-core CPU machine; on a GPU machine enough to keep the GPU fed."""
    import os

    return 1 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 2))


def ray_loop(folder: Path, overrides: list[str], storage: Path, workers: int = 1,
             gpus_per_worker: float | None = None) -> dict[str, float]:  # fmt: skip
    """Steady-state images/s of the genart Ray Train loop with ``workers`` workers (default:
    one GPU each where there is one), and the fraction of its time spent waiting for input
    batches (medians over the reporting windows)."""
    from genart.train.launch import fit

    if gpus_per_worker is None:
        gpus_per_worker = 1 if torch.cuda.is_available() else 0
    cfg = config.load(
        "dcgan",
        overrides=[
            *overrides,
            f"data.uri={folder}",
            f"scaling.workers={workers}",
            f"scaling.gpus_per_worker={gpus_per_worker}",
            f"run.storage_path={storage}",
            f"run.name=bench-{len(list(storage.glob('bench-*')))}",
        ],
    )
    result = fit(cfg)
    if result.error:
        raise result.error
    lines = (storage / cfg.run.name / "metrics.jsonl").read_text().splitlines()
    windows = [json.loads(line) for line in lines][1:-1]  # skip start-up and final windows
    return {key: statistics.median(w[key] for w in windows)
            for key in ("images_per_s", "input_wait_frac")}  # fmt: skip


def examples_step(batch: int, real: torch.Tensor):
    """pytorch/examples dcgan/main.py, re-implemented: nz 100, ngf = ndf = 64, 64 px, RGB."""
    nz, ngf, ndf, device = 100, 64, 64, real.device

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
    ).to(device)
    D = nn.Sequential(
        *down(3, ndf, False),
        *down(ndf, ndf * 2),
        *down(ndf * 2, ndf * 4),
        *down(ndf * 4, ndf * 8),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    ).to(device)
    criterion = nn.BCELoss()
    # torch's default Adam, as main.py builds it (foreach on CUDA, a per-tensor loop on CPU).
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step():
        D.zero_grad(set_to_none=False)
        label = torch.full((batch,), 1.0, device=device)
        criterion(D(real).view(-1), label).backward()
        fake = G(torch.randn(batch, nz, 1, 1, device=device))
        label.fill_(0.0)
        criterion(D(fake.detach()).view(-1), label).backward()
        opt_d.step()
        G.zero_grad(set_to_none=False)
        label.fill_(1.0)
        criterion(D(fake).view(-1), label).backward()
        opt_g.step()

    return step


def genart_step(batch: int, real: torch.Tensor, cuda_graphs: str = "auto"):
    """genart's DCGAN train_step as the loop runs it on ``real``'s device: same architecture,
    batch and optimizer settings; on CUDA the loop's "auto" choices (bf16 autocast, NHWC and,
    unless ``cuda_graphs="off"``, the step replayed as a CUDA graph)."""
    device = real.device
    cfg = config.load("dcgan", overrides=["data.size=64", f"data.batch_size={batch}",
                                          f"train.cuda_graphs={cuda_graphs}"])  # fmt: skip
    nhwc = devices.channels_last(cfg.train.channels_last, device)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    nets = dcgan.build(cfg.params, cfg.data)
    nets = {k: v.to(device, memory_format=fmt) for k, v in nets.items()}
    run, _ = loop_step(dcgan.SPEC, cfg.params, nets, device, cfg.train.cuda_graphs)
    batch_ = {"image": real.contiguous(memory_format=fmt)}
    return lambda: run(batch_)


def step_times(batch: int, rounds: int, per_round: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step of both implementations, measured in interleaved rounds."""
    torch.manual_seed(0)
    # pytorch/examples sets cudnn.benchmark; both sides get it (it is a no-op on CPU).
    torch.backends.cudnn.benchmark = True
    real = (torch.rand(batch, 3, 64, 64) * 2 - 1).to(device)
    steps = {"pytorch/examples": examples_step(batch, real), "genart": genart_step(batch, real)}
    if device.type == "cuda":  # what replaying the step as a CUDA graph contributes
        steps["genart, eager"] = genart_step(batch, real, cuda_graphs="off")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up: allocator, oneDNN/cuDNN kernel selection
        for _ in range(5 if device.type == "cuda" else 1):  # (graphs: 3 eager, 1 capture)
            step()
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            sync(device)
            times[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(t) for name, t in times.items()}


def loop_overrides(width: int, size: int, batch: int, steps: int, log_every: int) -> list[str]:
    """The Ray loop's settings for a throughput run: no checkpoints, samples or scores."""
    return [
        f"dcgan.g_width={width}",
        f"dcgan.d_width={width}",
        f"data.size={size}",
        f"data.batch_size={batch}",
        f"train.steps={steps}",
        f"train.log_every={log_every}",
        "train.checkpoint_every=100000",
        "train.sample_every=100000",
        "train.eval_samples=0",
        "data.shuffle_buffer=256",
    ]


def shapes_folder(root: Path, n: int, size: int) -> Path:
    """``n`` generated shapes images of ``size`` px under ``root``; generated once per (n, size),
    so the loops that read the same data share it."""
    folder = root / f"shapes-{n}-{size}"
    if not folder.exists():
        generate("shapes", folder, n=n, size=size, seed=0)
    return folder / "images"


def compare_loops(tmp: Path, n: int, overrides: list[str], warmup: int) -> dict:
    """Plain loop and Ray Train loop over ``n`` generated images with the same settings."""
    cfg = config.load("dcgan", overrides=overrides)
    folder = shapes_folder(tmp, n, cfg.data.size)
    plain = plain_loop(folder, cfg.params, cfg, cfg.train.steps, warmup)
    ray = ray_loop(folder, overrides, tmp / "runs")
    return {"plain": plain, "ray_train": ray["images_per_s"],
            "ray_input_wait_frac": ray["input_wait_frac"]}  # fmt: skip


def loop_plans(device: torch.device, quick: bool, tiny: bool) -> tuple[int, int, dict]:
    """The step benchmark's width and batch, and {name: (images, overrides, warm-up steps)}
    of each loop pair to compare."""
    if tiny:  # a dry run of the code: one small pair, no data.repeat variant
        return 8, 8, {"tiny": (64, loop_overrides(8, 32, 8, 6, 2), 2)}
    width, batch = (32, 32) if quick else (64, 64)
    steps, warmup = (25, 5) if quick else (60, 10)
    n = 1024
    if device.type == "cuda":  # milliseconds per step: many more steps for a steady window
        # and more images: epochs of 1,024 would time little but Ray Data's start of each.
        steps, warmup, n = (200, 40, 16384) if quick else (600, 100, 16384)
    loops = {"64 px": (n, loop_overrides(width, 64, batch, steps, warmup), warmup)}
    if device.type == "cpu":
        # The same loop around a step ~50x cheaper (width 8, 32 px): what the loop itself costs
        # when steps take milliseconds, as they do on a GPU.
        fast = (200, 40) if quick else (400, 50)
        loops["fast step"] = (4096, loop_overrides(8, 32, 64, *fast), fast[1])
    # With epochs of a few seconds, Ray Data's start of each epoch shows: data.repeat's effect.
    name, repeat = ("64 px", 4) if device.type == "cuda" else ("fast step", 8)
    images, overrides, skip = loops[name]
    loops[f"{name}, data.repeat={repeat}"] = (images, [*overrides, f"data.repeat={repeat}"], skip)
    return width, batch, loops


def run(out_dir: Path, quick: bool, tiny: bool = False) -> dict:
    """Both comparisons; prints a table and writes dcgan.json."""
    from benchmarks.common import machine, print_table, write_json

    # Ray Train workers run with OMP_NUM_THREADS=1 (one CPU each): the baselines get the same,
    # else the plain loop's 2 torch threads fight its DataLoader worker for the 2 cores.
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    width, batch, loops = loop_plans(device, quick, tiny)
    with tempfile.TemporaryDirectory() as tmp:
        measured = {name: compare_loops(Path(tmp), *args) for name, args in loops.items()}
    per_round = 1 if tiny else 20 if device.type == "cuda" else 2
    rounds = 1 if tiny else 3 if quick else 5
    step = step_times(batch, rounds=rounds, per_round=per_round, device=device)
    rows = [
        {
            "comparison": f"Ray Train loop (1 worker) vs plain loop, {name}",
            "genart": f"{m['ray_train']:.1f} img/s",
            "baseline": f"{m['plain']:.1f} img/s",
            "ratio": round(m["ray_train"] / m["plain"], 3),
            "target": ">= 0.98",
        }
        for name, m in measured.items()
    ]
    rows.append(
        {
            "comparison": "DCGAN step vs pytorch/examples",
            "genart": f"{step['genart'] * 1e3:.2f} ms",
            "baseline": f"{step['pytorch/examples'] * 1e3:.2f} ms",
            "ratio": round(step["pytorch/examples"] / step["genart"], 3),
            "target": ">= 1.3",
        }
    )
    print_table(rows)
    payload = {
        "machine": machine(),
        "quick": quick,
        "tiny": tiny,
        "device": str(device),
        "width": width,
        "batch": batch,
        "loops": measured,
        "step_seconds": step,
        "rows": rows,
    }
    write_json("dcgan", payload, out_dir)
    return payload


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
