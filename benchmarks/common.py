"""Helpers every benchmark shares: the machine's description, a printed table, a JSON file."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPUs, load, library versions and the GPU if any."""
    import torch

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:  # the step and style benchmarks run without Ray
        ray_version = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # shared machines: read numbers with it
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray_version,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """Print dicts as an aligned text table; columns in first-seen key order."""
    if not rows:
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_json(name: str, payload: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``payload`` to ``out_dir/name.json`` with the time and machine added; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    document = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    document |= {"machine": machine()} | payload
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def sync(device) -> None:
    """Wait for the device's queued kernels, so that a host clock read after it means something."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def loop_step(spec, params, nets: dict, device, cuda_graphs: str = "auto"):
    """``spec.train_step`` on ``nets`` (already on ``device``) as the training loop runs it:
    its optimizers, its automatic precision and, where allowed, CUDA-graph replay.

    Returns (batch -> metrics, the step context) for one worker.
    """
    from genart.registry import StepContext
    from genart.train import devices, graphs

    opts = spec.optimizers(nets, params)
    dtype, scaler = devices.precision("auto", device)
    ctx = StepContext(scaler=scaler, device_type=device.type)
    run = graphs.step_runner(spec, nets, opts, params, ctx, device, 1, dtype, cuda_graphs)
    return run, ctx


TINY_HELP = "dry-run sizes (make gpu-check DEVICE=cpu): the code runs, the figures mean nothing"


def parser(doc: str, tiny: bool = False) -> argparse.ArgumentParser:
    """The command line every benchmark takes: ``--out`` (JSON folder) and ``--quick``; with
    ``tiny``, also ``--tiny``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="JSON folder")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    if tiny:
        parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    return parser


def main(run: Callable[..., Any], doc: str) -> None:
    """Run one benchmark from its command line (``python -m benchmarks.NAME``); ``--tiny`` is
    offered when ``run`` takes a ``tiny`` argument."""
    tiny = "tiny" in inspect.signature(run).parameters
    args = parser(doc, tiny).parse_args()
    run(args.out, args.quick, **({"tiny": args.tiny} if tiny else {}))


def run_child(module: str, args: Sequence[str], stdout=None) -> float:
    """``python -m module --child ARGS`` from the repository on one CPU thread and no GPU (how
    the upstream checks run a reference's own script); the seconds it took."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    repo = Path(__file__).resolve().parents[1]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", module, "--child", *args], check=True, env=env,
                   cwd=repo, stdout=stdout, stderr=stdout)  # fmt: skip
    return time.perf_counter() - start


def add_work_and_out(parser: argparse.ArgumentParser) -> None:
    """The upstream checks' --work (where the matrix's data lies) and --out (its JSON)."""
    parser.add_argument("--work", type=Path, default=Path("bench-results"), help="WORK/data")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder of quality_matrix.json (the records are added)")  # fmt: skip
