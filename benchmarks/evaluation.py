"""Evaluation memory and time: the Pix2Pix and CycleGAN ``evaluate`` hooks on growing eval sets,
and the image metrics alone.

Each row runs the registry spec's ``evaluate(nets, params, reference)`` as the training loop
does (``side_effect_free``: no autograd, forked RNG) in a fresh Python process, on a reference
set of random uint8 images, (B, 3, H, W), as the loop keeps it: Pix2Pix pairs ``A``/``B``;
CycleGAN images of both domains with held-out truths ``A_truth``/``B_truth``. The
``psnr_ssim`` rows time :func:`genart.metrics.mean_quality` alone on ``A``/``B`` pairs (no
network: what the metrics themselves cost), the ``psnr_ssim_torchmetrics`` rows the same scores
by torchmetrics (:func:`torchmetrics_quality`; imported before the timing, so its import shows
in ``rss_before``); the ``fid_kid_*`` rows time :func:`genart.fid.scores` of ``A`` against
``B`` in Inception v3's features (seeded random weights: the cost does not depend on the
weights' values, and the scores of random images mean nothing) and in the modes judge's.
Full mode: 128 and 256 pixels, 64 and 512 images (Inception: 64 at most); ``--quick``: 64 and
128 pixels, 16 and 64 images. It runs on CPU even where there is a GPU: the memory in question
is the training worker's RSS.

Columns, per row (MiB of resident memory of that process):

- ``rss_before``: just before ``evaluate``: Python, torch, the nets and the uint8 reference set
  (which grows with the images, as the input must).
- ``eval_peak``: the peak during ``evaluate`` (the kernel's high-water mark, reset just before
  it through ``/proc/self/clear_refs``).
- ``eval_growth``: ``eval_peak - rss_before``, what evaluation itself allocates. It should not
  grow with the number of images: the hooks translate and score a chunk at a time.
- ``process_peak``: the process's peak over its whole life (``wait4``'s ``ru_maxrss``).
- ``wall_s`` and ``ms_per_image`` of the ``evaluate`` call.
- ``psnr``, ``ssim`` (or FID and KID): the mean scores (of random nets on random images: they
  only show that every row did the same work).

The generators are the specs' defaults except their width, ``--ngf`` (16 unless given): at the
default 64 the CPU forward passes take most of the time (CycleGAN's 9-block generators at 256
pixels most of all), and the width only sets the per-chunk activation memory and the forward
time, not how either grows with the number of images. Torch runs one thread, as in the other
CPU benchmarks (see ``benchmarks.translation.one_thread``).

    python -m benchmarks.evaluation [--quick] [--only ROW ...] [--ngf 16] [--out bench-results]
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("pix2pix", "cyclegan", "psnr_ssim", "psnr_ssim_torchmetrics", "fid_kid_modes",
          "fid_kid_inception")  # fmt: skip
SCORES = ("psnr", "ssim", "fid_inception", "kid_inception", "frechet_modes", "kid_modes")
# Most images a row of these takes: each image costs an Inception forward pass at 299 px.
LIMITS = {"fid_kid_inception": 64}
KEYS = {
    "pix2pix": ("A", "B"),
    "cyclegan": ("A", "B", "A_truth", "B_truth"),
    "psnr_ssim": ("A", "B"),
    "psnr_ssim_torchmetrics": ("A", "B"),
    "fid_kid_inception": ("A", "B"),
    "fid_kid_modes": ("A", "B"),
}


def settings(quick: bool) -> dict:
    """Image sizes and eval-set sizes of the rows."""
    if quick:
        return {"sizes": (64, 128), "images": (16, 64)}
    return {"sizes": (128, 256), "images": (64, 512)}


# --- one row, inside its own process --------------------------------------------------------------


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak) in MiB."""
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    return int(match.group(1)) / 1024


def _reset_peak() -> bool:
    """Reset the process's RSS high-water mark to its current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def reference_set(model: str, size: int, images: int, seed: int = 0) -> dict:
    """Random uint8 images (images, 3, size, size) under the keys the model's hook reads."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    shape = (images, 3, size, size)
    return {k: torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8) for k in KEYS[model]}


def evaluator(model: str, size: int, ngf: int):
    """What a row times: ``reference -> scores``, built (nets included) before timing starts."""
    import torch

    from genart import images, metrics, registry
    from genart.config import DataConfig

    if model.startswith("fid_kid_"):
        from genart import fid

        space = model.removeprefix("fid_kid_")
        features = fid.extractor(space, inception_weights="random")
        return lambda reference: fid.scores(reference["A"], reference["B"], space, features)
    if model == "psnr_ssim_torchmetrics":
        import torchmetrics.functional.image  # noqa: F401  (loaded now, not in the timing)

        return lambda reference: torchmetrics_quality(
            images.float_chunks(reference["A"], reference["B"])
        )
    if model == "psnr_ssim":
        return lambda reference: metrics.mean_quality(
            images.float_chunks(reference["A"], reference["B"])
        )
    spec = registry.trained(model)
    params = spec.config(ngf=ngf)
    torch.manual_seed(0)
    nets = spec.build(params, DataConfig(size=size, channels=3))
    return lambda reference: spec.evaluate(nets, params, reference)


def torchmetrics_quality(pairs) -> dict[str, float]:
    """What :func:`genart.metrics.mean_quality` returns, by torchmetrics: its PSNR, and its SSIM
    map averaged over the windows inside the image as genart's (its own mean takes the padded
    border too), in float32: its fast path (float64, genart's precision, is tens of times
    slower)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio as psnr
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    totals, count, border = {"psnr": 0.0, "ssim": 0.0}, 0, 5  # (11 - 1) / 2
    for output, target in pairs:
        found = psnr(output, target, data_range=2.0, reduction="none", dim=(1, 2, 3))
        totals["psnr"] += found.double().sum().item()
        _, full = ssim(output, target, data_range=2.0, reduction="none", return_full_image=True)
        inside = full[..., border:-border, border:-border].flatten(1).mean(dim=1)
        totals["ssim"] += inside.double().sum().item()
        count += len(output)
    return {name: total / count for name, total in totals.items()}


def child(model: str, size: int, images: int, ngf: int) -> dict:
    """Build the nets and the reference set, then time and measure one ``evaluate`` call."""
    import torch

    from genart.train.rng import side_effect_free

    torch.set_num_threads(1)
    evaluate = evaluator(model, size, ngf)
    reference = reference_set(model, size, images)
    gc.collect()
    before = _status_mib("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    with side_effect_free(torch.device("cpu")):
        scores = evaluate(reference)
    wall = time.perf_counter() - start
    peak = _status_mib("VmHWM") if reset else None
    return {"rss_before": before, "eval_peak": peak, "wall_s": wall, "scores": scores}


# --- the table ------------------------------------------------------------------------------------


def measure(model: str, size: int, images: int, ngf: int) -> dict:
    """One row: :func:`child` in a fresh interpreter, plus that process's lifetime peak RSS."""
    task = json.dumps({"model": model, "size": size, "images": images, "ngf": ngf})
    command = [sys.executable, "-m", "benchmarks.evaluation", "--child", task]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read()
    # wait4, not getrusage(RUSAGE_CHILDREN): the latter is the maximum over all children so far.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{model} {size}px {images} images: exit status {proc.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    before, peak = result["rss_before"], result["eval_peak"]
    return {"model": model, "size": size, "images": images, "ngf": ngf,
            "rss_before_mib": round(before), "eval_peak_mib": peak and round(peak),
            "eval_growth_mib": peak and round(peak - before),
            "process_peak_mib": round(usage.ru_maxrss / 1024),  # KiB on Linux
            "wall_s": round(result["wall_s"], 2),
            "ms_per_image": round(1e3 * result["wall_s"] / images, 1),
            **{k: round(v, 4) for k, v in result["scores"].items() if k in SCORES}}  # fmt: skip


def commit() -> str | None:
    """The code measured: ``git describe`` of the checkout (None outside a git checkout)."""
    found = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
    return found.stdout.strip() or None


def run(out_dir: Path, quick: bool, ngf: int = 16, only: tuple[str, ...] = MODELS) -> dict:
    """Measure the rows of ``only``; print the table, write ``evaluation.json`` in ``out_dir``."""
    from benchmarks.common import print_table, write_json

    s = settings(quick)
    rows = []
    for model in only:
        for size in s["sizes"]:
            for images in s["images"]:
                if images > LIMITS.get(model, images):
                    continue
                rows.append(measure(model, size, images, ngf))
                print(f"  {model} {size}px {images} images: {rows[-1]['wall_s']} s", flush=True)
    print_table(rows)
    result = {"quick": quick, "settings": s, "ngf": ngf, "threads": 1, "commit": commit(),
              "rows": rows}  # fmt: skip
    write_json("evaluation", result, out_dir)
    return result


def main() -> None:
    from benchmarks import common

    parser = common.parser(__doc__)
    parser.add_argument("--ngf", type=int, default=16, help="generator width (default 16)")
    parser.add_argument("--only", nargs="+", choices=MODELS, default=MODELS,
                        help="measure only these rows (default: all)")  # fmt: skip
    parser.add_argument("--child", help="internal: measure one row given as JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(**json.loads(args.child))))
    else:
        run(args.out, args.quick, args.ngf, tuple(args.only))


if __name__ == "__main__":
    main()
