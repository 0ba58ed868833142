"""Pix2Pix and CycleGAN training-step time: genart's step against the reference implementation's.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix, ``optimize_parameters``) is re-implemented
faithfully on the *same* networks and batch, in fp32 as it trains (it has no mixed precision):
NCHW tensors; torch's default Adam (a per-parameter loop on CPU, foreach on CUDA);
``set_requires_grad`` toggling; D on real and fake in separate forward passes; CycleGAN's six
separate generator passes and its two D backward passes before one optimizer step. genart's
step is ``spec.train_step`` as the loop runs it: channels-last, fused Adam, one pass over
real+fake (and over translation+identity) where the norm is per-sample, one backward per
optimizer; on GPU the loop's automatic mixed precision (bf16 autocast). cuDNN autotuning is on
for both sides, as the loop turns it on.

Variants are timed in interleaved rounds so that load from other processes hits them alike;
the table shows the median wall and CPU time per step of each ("genart-nchw" = genart's step
without channels-last, to show what the memory format contributes). On CPU torch runs one
thread (see :func:`one_thread`).

``--quality MINUTES`` instead trains each model with a plain loop over the spec's functions for
that long on generated 64x64 data (CPU, one thread) and scores it against the ground truth and
the identity baseline.

    python -m benchmarks.translation [--quick] [--out bench-results]
    python -m benchmarks.translation --quality 5 --out bench-results
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import loop_step
from genart import registry
from genart.config import DataConfig
from genart.registry import StepContext

# --- the reference implementation's step, on genart's networks ---------------------------------


class ReferenceGANLoss:
    """networks.GANLoss: a target tensor expanded to the prediction's shape, then BCE or MSE."""

    def __init__(self, mode: str):
        self.loss = nn.MSELoss() if mode == "lsgan" else nn.BCEWithLogitsLoss()

    def __call__(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        target = torch.tensor(1.0 if target_is_real else 0.0, device=prediction.device)
        return self.loss(prediction, target.expand_as(prediction))


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for param in net.parameters():
            param.requires_grad = flag


def reference_adam(nets: list[nn.Module], p) -> torch.optim.Adam:
    params = itertools.chain(*(net.parameters() for net in nets))
    return torch.optim.Adam(params, lr=p.lr, betas=(p.beta1, 0.999))


class ReferencePix2Pix:
    """Pix2PixModel.optimize_parameters: forward, D update, G update."""

    def __init__(self, nets, p):
        self.G, self.D, self.p = nets["G"], nets["D"], p
        self.opt_G, self.opt_D = reference_adam([self.G], p), reference_adam([self.D], p)
        self.gan, self.l1 = ReferenceGANLoss(p.gan_loss), nn.L1Loss()

    def step(self, batch) -> None:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self.G(real_a)
        set_requires_grad([self.D], True)
        self.opt_D.zero_grad()
        loss_fake = self.gan(self.D(torch.cat((real_a, fake_b), 1).detach()), False)
        loss_real = self.gan(self.D(torch.cat((real_a, real_b), 1)), True)
        ((loss_fake + loss_real) * 0.5).backward()
        self.opt_D.step()
        set_requires_grad([self.D], False)
        self.opt_G.zero_grad()
        loss_gan = self.gan(self.D(torch.cat((real_a, fake_b), 1)), True)
        (loss_gan + self.l1(fake_b, real_b) * self.p.l1_weight).backward()
        self.opt_G.step()


class ReferenceImagePool:
    """util.image_pool.ImagePool (Python's ``random``; a list of single images)."""

    def __init__(self, size: int, seed: int = 0):
        import random

        self.size, self.images, self.random = size, [], random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images.data:
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.random.uniform(0, 1) > 0.5:
                slot = self.random.randint(0, self.size - 1)
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.cat(out)


class ReferenceCycleGAN:
    """CycleGANModel.optimize_parameters: six G passes, G update, then D_A and D_B backward."""

    def __init__(self, nets, p):
        self.G_AB, self.G_BA, self.D_A, self.D_B = (nets[k] for k in ("G_AB", "G_BA", "D_A", "D_B"))
        self.p = p
        self.opt_G = reference_adam([self.G_AB, self.G_BA], p)
        self.opt_D = reference_adam([self.D_A, self.D_B], p)
        self.gan, self.l1 = ReferenceGANLoss(p.gan_loss), nn.L1Loss()
        self.pool_A, self.pool_B = ReferenceImagePool(p.pool_size), ReferenceImagePool(p.pool_size)

    def backward_d(self, D, real, fake) -> None:
        loss = (self.gan(D(real), True) + self.gan(D(fake.detach()), False)) * 0.5
        loss.backward()

    def step(self, batch) -> None:
        real_a, real_b, lam = batch["A"], batch["B"], self.p.cycle_weight
        fake_b = self.G_AB(real_a)
        rec_a = self.G_BA(fake_b)
        fake_a = self.G_BA(real_b)
        rec_b = self.G_AB(fake_a)
        set_requires_grad([self.D_A, self.D_B], False)
        self.opt_G.zero_grad()
        same_b, same_a = self.G_AB(real_b), self.G_BA(real_a)
        loss_idt = (
            (self.l1(same_b, real_b) + self.l1(same_a, real_a)) * lam * self.p.identity_weight
        )
        loss_gan = self.gan(self.D_B(fake_b), True) + self.gan(self.D_A(fake_a), True)
        loss_cycle = (self.l1(rec_a, real_a) + self.l1(rec_b, real_b)) * lam
        (loss_gan + loss_cycle + loss_idt).backward()
        self.opt_G.step()
        set_requires_grad([self.D_A, self.D_B], True)
        self.opt_D.zero_grad()
        self.backward_d(self.D_B, real_b, self.pool_B.query(fake_b))
        self.backward_d(self.D_A, real_a, self.pool_A.query(fake_a))
        self.opt_D.step()


REFERENCE = {"pix2pix": ReferencePix2Pix, "cyclegan": ReferenceCycleGAN}


# --- set-up and timing --------------------------------------------------------------------------


def settings(quick: bool, device: torch.device) -> dict:
    """Image size, width and batch: the reference's batch of 1; on a GPU its defaults (256 px,
    unet_256, resnet_9blocks), on CPU smaller sizes."""
    if device.type == "cuda":
        return {"size": 256, "batch": 1, "ngf": 64, "n_blocks": 9, "rounds": 5,
                "steps": 4 if quick else 10}  # fmt: skip
    if quick:
        return {"size": 64, "batch": 1, "ngf": 32, "n_blocks": 6, "rounds": 3, "steps": 1}
    return {"size": 128, "batch": 1, "ngf": 64, "n_blocks": 6, "rounds": 5, "steps": 2}


def make_params(model: str, s: dict):
    spec = registry.trained(model)
    extra = {"n_blocks": s["n_blocks"]} if model == "cyclegan" else {}
    return spec, spec.config(ngf=s["ngf"], ndf=64, lr_decay=0.0, **extra)


def make_step(model: str, variant: str, s: dict, device: torch.device):
    """A zero-argument callable running one training step of ``variant`` on a fixed batch."""
    spec, p = make_params(model, s)
    torch.manual_seed(0)
    nets = spec.build(p, DataConfig(size=s["size"], channels=3))
    channels_last = variant in ("genart", "genart-eager")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    nets = {k: v.to(device, memory_format=fmt) for k, v in nets.items()}
    shape = (s["batch"], 3, s["size"], s["size"])
    batch = {k: (torch.rand(shape) * 2 - 1).to(device).contiguous(memory_format=fmt)
             for k in ("A", "B")}  # fmt: skip
    if variant == "reference":
        reference = REFERENCE[model](nets, p)
        return lambda: reference.step(batch)
    run, _ = loop_step(spec, p, nets, device, "off" if variant == "genart-eager" else "auto")
    return lambda: run(batch)


def timed(step, device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one step.

    CPU time is reported beside wall time because this machine is shared: time spent waiting
    for a core that another process holds counts in wall time only.
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def variants(device: torch.device) -> tuple[str, ...]:
    """What to time: on CPU what channels-last contributes, on GPU what CUDA graphs do."""
    if device.type == "cuda":
        return ("reference", "genart-eager", "genart")
    return ("reference", "genart-nchw", "genart")


def measure(model: str, s: dict, device: torch.device) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per step of each variant, interleaved, after one warm-up step each."""
    torch.backends.cudnn.benchmark = True  # fixed sizes: let cuDNN pick (both sides alike)
    steps = {v: make_step(model, v, s, device) for v in variants(device)}
    for step in steps.values():  # warm-up: allocator, kernel selection, CUDA-graph capture
        for _ in range(5 if device.type == "cuda" else 1):
            step()
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in steps}
    for _ in range(s["rounds"]):
        for variant, step in steps.items():
            times[variant] += [timed(step, device) for _ in range(s["steps"])]
    return times


def summarise(model: str, times: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """One row per variant: median wall and CPU step time and the speedups over the reference."""

    def median(variant: str, index: int) -> float:
        return statistics.median(t[index] for t in times[variant])

    rows = []
    for variant in times:
        wall, cpu = median(variant, 0), median(variant, 1)
        rows.append({"model": model, "variant": variant, "steps": len(times[variant]),
                     "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
                     "speedup_wall": round(median("reference", 0) / wall, 2),
                     "speedup_cpu": round(median("reference", 1) / cpu, 2)})  # fmt: skip
    return rows


@contextlib.contextmanager
def one_thread(device: torch.device):
    """Run torch on one thread on CPU (restored afterwards).

    On a shared 2-core machine two threads wait on each other whenever another process holds a
    core, which swamps what is being measured.
    """
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run(out_dir: Path, quick: bool) -> dict:
    """Time both models' steps; print the table and write ``translation.json`` in ``out_dir``."""
    from benchmarks.common import print_table, write_json

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    s = settings(quick, device)
    with one_thread(device):
        rows = [row for model in ("pix2pix", "cyclegan")
                for row in summarise(model, measure(model, s, device))]  # fmt: skip
        threads = torch.get_num_threads()
    print_table(rows)
    result = {"quick": quick, "settings": s, "device": str(device), "threads": threads,
              "rows": rows}  # fmt: skip
    write_json("translation", result, out_dir)
    return result


# --- quality within a CPU time budget ------------------------------------------------------------

QUALITY = {  # per model: dataset kind, batch size, config overrides (CPU-sized networks)
    "pix2pix": ("pairs", 8, ["pix2pix.ngf=32", "pix2pix.ndf=32"]),
    "cyclegan": ("unpaired", 2, ["cyclegan.ngf=32", "cyclegan.ndf=32"]),
}


def training_images(model: str, data_dir: Path) -> dict[str, torch.Tensor]:
    """All training images in memory: {"A": (N, C, H, W), "B": ...} in [-1, 1]."""
    from genart.data.transforms import split_ab
    from genart.images import find_images, read_tensor

    if model == "pix2pix":
        halves = [
            split_ab(read_tensor(p).movedim(0, -1))
            for p in find_images(data_dir / "train", recursive=False)
        ]
        return {"A": torch.stack([a.movedim(-1, 0) for a, _ in halves]),
                "B": torch.stack([b.movedim(-1, 0) for _, b in halves])}  # fmt: skip
    folders = {key: find_images(data_dir / f"train{key}", recursive=False) for key in ("A", "B")}
    return {key: torch.stack([read_tensor(p) for p in paths])
            for key, paths in folders.items()}  # fmt: skip


def random_batch(model: str, images: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """A random batch with horizontal flips; pix2pix pairs share indices and flips."""
    from genart.data.transforms import random_flip

    if model == "pix2pix":
        index = torch.randint(len(images["A"]), (size,))
        a, b = random_flip(images["A"][index], images["B"][index])
        return {"A": a, "B": b}
    return {key: random_flip(images[key][torch.randint(len(images[key]), (size,))])[0]
            for key in ("A", "B")}  # fmt: skip


def train_for(model: str, data_dir: Path, seconds: float, seed: int = 0):
    """Train ``model`` with a plain loop for about ``seconds``; returns (nets, cfg, steps).

    The step count is fixed after timing a few steps, so the learning rate's linear decay to
    zero (the spec's schedulers) ends when the budget does.
    """
    from genart import config

    _, batch_size, overrides = QUALITY[model]
    cfg = config.load(
        model, overrides=["data.size=64", f"data.batch_size={batch_size}", *overrides]
    )
    spec = registry.trained(model)
    torch.manual_seed(seed)
    nets = spec.build(cfg.params, cfg.data)
    opts = spec.optimizers(nets, cfg.params)
    images, ctx = training_images(model, data_dir), StepContext()
    start = time.perf_counter()
    for ctx.step in range(5):  # timing probe, at the full learning rate
        spec.train_step(nets, opts, random_batch(model, images, batch_size), cfg.params, ctx)
    total = max(10, int(seconds / ((time.perf_counter() - start) / 5)))
    scheds = spec.schedulers(opts, cfg.params, total)
    for step in range(total):
        ctx.step = 5 + step
        spec.train_step(nets, opts, random_batch(model, images, batch_size), cfg.params, ctx)
        for sched in scheds.values():
            sched.step()
    return nets, cfg, 5 + total


def quality_rows(model: str, data_dir: Path, minutes: float, seed: int) -> list[dict]:
    """Train ``model`` for ``minutes``; one row of test scores per translation direction."""
    from genart.pipelines import evaluation
    from genart.pipelines.translate import TranslationPipeline

    start = time.perf_counter()
    nets, cfg, steps = train_for(model, data_dir, minutes * 60, seed)
    train_s = round(time.perf_counter() - start)
    torch.manual_seed(seed)  # Pix2Pix's test-time dropout
    pipe = TranslationPipeline({k: nets[k].eval() for k in registry.trained(model).export}, cfg, {})
    rows = []
    for direction, pairs in evaluation.held_out_sets(str(data_dir), pipe, None):
        r = evaluation.score(pipe, direction, pairs)
        rows.append({"model": model, "direction": direction, "steps": steps,
                     "batch": cfg.data.batch_size, "train_s": train_s, "test_images": r["images"],
                     "psnr": round(r["model"]["psnr"], 2),
                     "identity_psnr": round(r["identity"]["psnr"], 2),
                     "ssim": round(r["model"]["ssim"], 3),
                     "identity_ssim": round(r["identity"]["ssim"], 3)})  # fmt: skip
    return rows


def quality(out_dir: Path, minutes: float, n: int = 400, seed: int = 0) -> dict:
    """Train each model for ``minutes`` on generated 64x64 data; PSNR/SSIM vs identity baseline."""
    from benchmarks.common import print_table, write_json
    from genart.data import synthetic

    rows = []
    with one_thread(torch.device("cpu")):
        for model, (kind, _, _) in QUALITY.items():
            data_dir = Path(out_dir) / "data" / kind
            if not data_dir.exists():
                synthetic.generate(kind, data_dir, n=n, size=64, seed=seed)
            rows += quality_rows(model, data_dir, minutes, seed)
    print_table(rows)
    result = {"minutes_per_model": minutes, "train_images": n, "threads": 1, "rows": rows}
    write_json("translation_quality", result, out_dir)
    return result


def main() -> None:
    from benchmarks import common

    parser = common.parser(__doc__)
    parser.add_argument("--quality", type=float, metavar="MINUTES",
                        help="instead: train each model MINUTES on CPU and score it")  # fmt: skip
    args = parser.parse_args()
    if args.quality:
        quality(Path(args.out), args.quality)
    else:
        run(Path(args.out), args.quick)


if __name__ == "__main__":
    main()
