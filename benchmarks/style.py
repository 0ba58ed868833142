"""Style transfer: Gatys time-to-loss against the PyTorch tutorial's implementation, and fast-style
inference throughput against the plain eager network.

Gatys. The reference is the PyTorch "Neural Transfer" tutorial's structure, re-implemented on
the *same* VGG-19 weights, images, layers (content relu4_2; style relu1_1 ... relu5_1, weight 1
each) and loss weights: a normalisation module, then the whole VGG ``features`` with a separate
``ContentLoss``/``StyleLoss`` module after each loss layer (each target computed by its own
partial forward pass while the model is built), ReLUs made out-of-place, L-BFGS stepped in
chunks of 20 with the image clamped inside the closure. genart's ``stylize`` caches every target
from one pass per image, stops the VGG at relu5_1, minimises the scale-normalised loss with one
L-BFGS run, and optionally runs the VGG in bfloat16 (``precision="bf16"``). Every iterate of
every run is scored afterwards, untimed, by the same fp32 objective (the reference's, on the
clamped image); the table reports the time each needs to reach the loss the reference reaches
after 75% of the evaluation budget (the reference may overshoot the budget by up to 19: it
stops only between its chunks of 20).

No ImageNet weights exist on the benchmark machine, so the VGG is random (Kaiming, seed 0):
identical for both sides, but its activations are so small that the tutorial's weights
(1, 1e6) give a starting loss near 0.05. The loss weights are therefore calibrated so that both
terms start near 1e3, as with ImageNet weights; otherwise the reference L-BFGS would drop every
curvature pair (it skips y.s < 1e-10) and the comparison would measure that artefact.

Fast style: images/s of Johnson et al.'s transformer (width 32, 5 residual blocks, random init)
at 256x256 and 512x512, batch 1: the plain eager net under ``torch.no_grad`` against
``layers.forward_any_size`` (inference) in fp32 and bf16, channels-last, and (full mode only:
compiling took 10-60 s here) ``torch.compile``.

Variants run in interleaved rounds so that load from other processes hits them alike; CPU time
is reported beside wall time because the machine is shared. Torch runs one thread: on a shared
2-core machine two threads wait on each other whenever a core is taken.

    python -m benchmarks.style [--quick] [--out bench-results]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import sync
from genart.losses import gram_matrix
from genart.models import fast_style
from genart.models.gatys import GatysConfig, loss_network, stylize
from genart.models.layers import forward_any_size
from genart.vgg import RANDOM_NOTE, layer_names, load_vgg

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# --- the tutorial's implementation ----------------------------------------------------------------


class TutorialNormalization(nn.Module):
    """Images in [-1, 1] -> ImageNet-normalised (the tutorial normalises [0, 1] images)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1))

    def forward(self, images):
        return ((images + 1) / 2 - self.mean) / self.std


class TutorialContentLoss(nn.Module):
    """A transparent layer that stores the MSE to a fixed target feature map."""

    def __init__(self, target):
        super().__init__()
        self.target = target.detach()
        self.loss = None

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


class TutorialStyleLoss(nn.Module):
    """A transparent layer that stores the MSE between Gram matrices."""

    def __init__(self, target_feature):
        super().__init__()
        self.target = gram_matrix(target_feature).detach()
        self.loss = None

    def forward(self, x):
        self.loss = F.mse_loss(gram_matrix(x), self.target)
        return x


class TutorialTransfer:
    """``get_style_model_and_losses`` + ``run_style_transfer``, on a given VGG body."""

    def __init__(self, body: nn.Sequential, content, style, weights: tuple[float, float]):
        self.content_weight, self.style_weight = weights
        self.model = nn.Sequential(TutorialNormalization().to(content.device))
        self.content_losses, self.style_losses = [], []
        for name, layer in zip(layer_names("vgg19"), body):
            if isinstance(layer, nn.ReLU):
                layer = nn.ReLU(inplace=False)  # the tutorial's fix for its loss modules
            self.model.add_module(name, layer)
            if name in CONTENT_LAYERS:
                self.content_losses.append(TutorialContentLoss(self.model(content)))
                self.model.add_module(f"content_loss_{name}", self.content_losses[-1])
            if name in STYLE_LAYERS:
                self.style_losses.append(TutorialStyleLoss(self.model(style)))
                self.model.add_module(f"style_loss_{name}", self.style_losses[-1])
        self.model.eval().requires_grad_(False)

    def objective(self, image) -> torch.Tensor:
        self.model(image)
        style = sum(loss.loss for loss in self.style_losses)
        content = sum(loss.loss for loss in self.content_losses)
        return self.style_weight * style + self.content_weight * content

    def run(self, content, evaluations: int, record) -> None:
        image = content.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([image])
        count = [0]
        while count[0] < evaluations:

            def closure():
                with torch.no_grad():
                    image.clamp_(-1, 1)
                optimizer.zero_grad()
                loss = self.objective(image)
                loss.backward()
                count[0] += 1
                record(image)
                return loss

            optimizer.step(closure)


# --- the race -----------------------------------------------------------------------------------


def _images(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic content (smooth blobs) and style (stripes and noise) images in [-1, 1]."""
    g = torch.Generator().manual_seed(0)
    h, w = size
    content = F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g) * 1.6 - 0.8, size=size,
                            mode="bicubic").clamp(-1, 1)  # fmt: skip
    y = torch.linspace(0, 12, h).view(1, 1, h, 1)
    stripes = torch.sin(y + torch.linspace(0, 7, w).view(1, 1, 1, w) * torch.rand(1, 3, 1, 1))
    style = (0.6 * stripes + 0.4 * (torch.rand(1, 3, h, w, generator=g) * 2 - 1)).clamp(-1, 1)
    return content, style


def _calibrated_weights(body, content, style) -> tuple[float, float]:
    """Loss weights giving both terms ~1e3 at the start (content: the style image's loss)."""
    probe = TutorialTransfer(body, content, style, (1.0, 1.0))
    with torch.no_grad():
        probe.objective(content)
        style_term = float(sum(loss.loss for loss in probe.style_losses))
        probe.objective(style)
        content_term = float(sum(loss.loss for loss in probe.content_losses))
    return 1e3 / content_term, 1e3 / style_term


class Trajectory:
    """CPU and wall time of every loss-network evaluation, and a copy of the image evaluated."""

    def __init__(self):
        self.start_cpu, self.start_wall = time.process_time(), time.perf_counter()
        self.points: list[tuple[float, float, torch.Tensor]] = []

    def record(self, image: torch.Tensor) -> None:
        if image.is_cuda:  # the evaluation's kernels, not just their launches
            torch.cuda.synchronize()
        cpu, wall = time.process_time(), time.perf_counter()
        self.points.append((cpu - self.start_cpu, wall - self.start_wall, image.detach().clone()))

    def scored(self, score) -> list[tuple[float, float, float]]:
        """(cpu s, wall s, best fp32 loss so far) per evaluation, scored outside the timing."""
        out, best = [], float("inf")
        with torch.no_grad():
            for cpu, wall, image in self.points:
                best = min(best, float(score(image.clamp(-1, 1))))
                out.append((cpu, wall, best))
        return out


def _run_variant(variant, body, vgg, content, style, weights, evaluations) -> Trajectory:
    if variant == "tutorial":
        trajectory = Trajectory()  # building the model (and its targets) is timed too
        TutorialTransfer(body, content, style, weights).run(content, evaluations, trajectory.record)
        return trajectory
    cfg = GatysConfig(
        content_layers=CONTENT_LAYERS,
        style_layers=STYLE_LAYERS,
        style_layer_weights=(1.0,) * len(STYLE_LAYERS),
        content_weight=weights[0],
        style_weight=weights[1],
        iterations=evaluations,
        precision="bf16" if variant == "genart-bf16" else "fp32",
        arch="vgg19",
        pooling="max",
    )
    trajectory = Trajectory()
    stylize(content[0], [style[0]], cfg, vgg, progress=lambda p: trajectory.record(p.image))
    return trajectory


def gatys_race(size: tuple[int, int], evaluations: int, rounds: int, device) -> list[dict]:
    """Median time for each variant to reach the loss the tutorial reaches at 75% of its run."""
    content, style = (image.to(device) for image in _images(size))
    cfg = GatysConfig(content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS, pooling="max")
    vgg = loss_network(cfg, "random", device)  # truncated at relu5_1 ...
    body = load_vgg("vgg19", "random", ("pool5",), "max", device).body  # ... whole, same seed
    weights = _calibrated_weights(body, content, style)
    scorer = TutorialTransfer(body, content, style, weights)
    variants = ("tutorial", "genart", "genart-bf16")
    runs: dict[str, list] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            trajectory = _run_variant(variant, body, vgg, content, style, weights, evaluations)
            runs[variant].append(trajectory.scored(scorer.objective))
    at = int(0.75 * evaluations) - 1
    target = statistics.median(run[at][2] for run in runs["tutorial"])
    return [_race_row(v, runs[v], target, size, runs["tutorial"]) for v in variants]


def _race_row(variant, runs, target, size, reference) -> dict:
    def reach(run):
        return next(((cpu, wall, i + 1) for i, (cpu, wall, loss) in enumerate(run)
                     if loss <= target), None)  # fmt: skip

    reached = [reach(run) for run in runs]
    ref = [reach(run) for run in reference]
    row = {"bench": "gatys", "variant": variant, "size": f"{size[0]}x{size[1]}",
           "target_loss": round(target, 2), "evals": statistics.median(len(run) for run in runs),
           "final_loss": round(statistics.median(run[-1][2] for run in runs), 2)}  # fmt: skip
    if any(r is None for r in reached):
        return row | {"reached": f"{sum(r is not None for r in reached)}/{len(runs)}"}
    cpu, wall, evals = (statistics.median(r[k] for r in reached) for k in range(3))
    ref_cpu, ref_wall = (statistics.median(r[k] for r in ref) for k in range(2))
    per_eval = statistics.median(run[-1][0] / len(run) for run in runs)
    return row | {"evals_to_target": evals, "cpu_s_to_target": round(cpu, 2),
                  "wall_s_to_target": round(wall, 2), "cpu_ratio": round(cpu / ref_cpu, 3),
                  "wall_ratio": round(wall / ref_wall, 3),
                  "cpu_s_per_eval": round(per_eval, 4)}  # fmt: skip


# --- fast-style inference -------------------------------------------------------------------------


def fast_style_throughput(sizes: list[int], rounds: int, compile_too: bool, device) -> list[dict]:
    """Images/s of the transformer net at each size, batch 1, per inference variant."""
    torch.manual_seed(0)
    net = fast_style.TransformerNet().eval().to(device)
    nhwc = fast_style.TransformerNet().eval().to(device, memory_format=torch.channels_last)
    nhwc.load_state_dict(net.state_dict())

    def eager(x):
        with torch.no_grad():
            return net(x)

    variants = {
        "eager": eager,
        "genart-fp32": lambda x: forward_any_size(net, x),
        "genart-bf16": lambda x: forward_any_size(net, x, precision="bf16"),
        "genart-channels-last": lambda x: forward_any_size(nhwc, x),
    }
    compile_s = None
    if compile_too:
        compiled = torch.compile(net)
        start = time.perf_counter()
        forward_any_size(compiled, torch.zeros(1, 3, sizes[0], sizes[0], device=device))
        compile_s = round(time.perf_counter() - start, 1)
        variants["genart-compiled"] = lambda x: forward_any_size(compiled, x)
    rows, repeats = [], 20 if torch.device(device).type == "cuda" else 1
    for size in sizes:
        x = (torch.rand(1, 3, size, size) * 2 - 1).to(device)
        reference = eager(x)
        times: dict[str, list] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, fn in variants.items():
                fn(x)  # warm-up (and a recompile for a new size)
                sync(device)
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(repeats):
                    out = fn(x)
                sync(device)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                times[name].append((cpu / repeats, wall / repeats))
                times[name][-1] += (float((out - reference).abs().max()),)
        base = [statistics.median(t[k] for t in times["eager"]) for k in (0, 1)]
        rows += [_throughput_row(name, size, samples, base) for name, samples in times.items()]
        if compile_s is not None:
            rows[-1]["compile_s"] = compile_s  # the compiled variant is the last one
    return rows


def _throughput_row(name: str, size: int, samples: list[tuple], eager: list[float]) -> dict:
    cpu, wall = (statistics.median(t[k] for t in samples) for k in (0, 1))
    return {
        "bench": "fast_style",
        "variant": name,
        "size": f"{size}x{size}",
        "images_per_s": round(1 / wall, 2),
        "speedup": round(eager[1] / wall, 2),
        "cpu_images_per_s": round(1 / cpu, 2),
        "cpu_speedup": round(eager[0] / cpu, 2),
        "max_abs_diff": float(f"{max(t[2] for t in samples):.2g}"),
    }


# --- entry points ---------------------------------------------------------------------------------


def run(out_dir: Path, quick: bool, tiny: bool = False) -> dict:
    """Both benchmarks; prints a table and writes style.json under ``out_dir``."""
    from benchmarks.common import print_table, write_json

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if tiny:  # a dry run of the code (make gpu-check DEVICE=cpu)
            rows = gatys_race((32, 48), evaluations=4, rounds=1, device=device)
            rows += fast_style_throughput([64], rounds=1, compile_too=False, device=device)
        elif device.type == "cuda":  # the tutorial's GPU size, 512 px
            rows = gatys_race((512, 512), 100 if quick else 200, rounds=3, device=device)
            rows += fast_style_throughput([256, 512], 3, compile_too=not quick, device=device)
        elif quick:
            rows = gatys_race((64, 96), evaluations=24, rounds=1, device=device)
            rows += fast_style_throughput([256], rounds=2, compile_too=False, device=device)
        else:
            rows = gatys_race((128, 192), evaluations=60, rounds=2, device=device)
            rows += fast_style_throughput([256, 512], rounds=3, compile_too=True, device=device)
    finally:
        torch.set_num_threads(threads)
    print_table(rows)
    result = {"quick": quick, "tiny": tiny, "device": str(device), "threads": 1,
              "vgg_weights": RANDOM_NOTE, "rows": rows}  # fmt: skip
    write_json("style", result, out_dir)
    return result


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
