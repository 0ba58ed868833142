"""One GPU check in one command, for the few minutes a GPU is lent: ``make gpu-check``.

    python -m benchmarks.gpu_check [--device cuda|cpu] [--results DIR] [--budget S] [--verbose]

Runs, one after another, each in its own process with its own time limit:

  tests         ``pytest tests/gpu``
  dcgan         ``python -m benchmarks.dcgan --quick``: Ray Train loop vs plain loop, genart's
                step vs pytorch/examples'
  serve         ``python -m benchmarks.serve --quick``: HTTP vs direct call, batching off vs on
  style         ``python -m benchmarks.style --quick``: Gatys ratio, fast-style latency
  multi_worker  a short DCGAN Ray Train run with two workers: one GPU each where the host has
                several, else halves of the one GPU (``scaling.gpus_per_worker=0.5``)
  quality       ``python -m benchmarks.quality --quick``: the quality benchmark's quick cells
  matrix        ``python -m benchmarks.matrix --quick``: the quality matrix's quick cells, three
                seeds, one run per CPU core. Its runs train on CPU (one thread each, like
                every quality run), not on the GPU: the lent host's cores are what it uses.
                Each finished (cell, seed, side) is kept in ``quality_matrix.json`` as it
                finishes, so stopping it at its limit loses only the runs in progress, and a
                second check the same day into the same folder resumes it. Cells whose real
                data needs the ``bench`` extra are left out where it is not installed.

Every JSON goes into one folder, ``DIR/<gpu name>-<date>/`` (default DIR: benchmarks/results,
where docs/benchmarks.md is generated from), beside ``gpu_check.json`` (this table) and
``logs/`` (each part's output). Each part gets a share of the time budget (default 8 minutes);
time a part leaves unused passes to the next ones. A part still running when its time is up is
stopped (its whole process group: Ray's processes with it) and recorded as timed out, so the
check never runs over the budget.

``--device cpu`` is the dry run the test suite runs so that this script does not rot: CUDA
hidden, each benchmark at its ``--tiny`` sizes, the folder under bench-results/ (its figures
mean nothing and stay out of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import cells, realdata
from benchmarks.common import print_table, write_json

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = {"cuda": 8 * 60, "cpu": 10 * 60}  # the dry run's is a cap for a loaded CI machine
DEFAULT_RESULTS = {"cuda": REPO / "benchmarks" / "results", "cpu": REPO / "bench-results"}
GRACE_S = 5  # from SIGTERM to SIGKILL, counted inside the part's limit
# The quality benchmark's quick cells, which can train side by side: reference and genart for
# Pix2Pix and CycleGAN, reference and two genart recipes for DCGAN.
QUALITY_RUNS = 7
MATRIX_SEEDS = ("0", "1", "2")  # the fewest a verdict of the matrix is drawn from
# Its quick runs, each on one CPU thread: no more processes than runs.
MATRIX_RUNS = len(cells.QUICK) * len(MATRIX_SEEDS) * len(cells.SIDES)


@dataclass(frozen=True)
class Part:
    """One step of the check: its share of the budget and the JSON it leaves in the folder."""

    name: str
    share: float
    writes: str | None = None  # NAME.json that its process writes, if any


# In the order they run. Shares are a guess at each part's quick run on one GPU with a 16-core
# host; the later parts inherit what the earlier ones leave. The matrix runs last: it keeps
# whatever finished when stopped, so it can use all the time the others leave, and its own
# fifth of the budget was taken from the others in proportion (tests/gpu kept its tenth).
# It writes no ``writes`` file to delete first: its JSON is resumed, not replaced.
PARTS = (
    Part("tests", 0.10),
    Part("dcgan", 0.22, "dcgan"),
    Part("serve", 0.15, "serve"),
    Part("style", 0.10, "style"),
    Part("multi_worker", 0.09, "multi_worker"),
    Part("quality", 0.14, "quality"),
    Part("matrix", 0.20),
)


def main(argv: list[str] | None = None) -> int:
    """Run every part, print and write the table; returns 0 when every part succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda: the check (needs a GPU); cpu: the tiny dry run")  # fmt: skip
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="where the <gpu>-<date> folder goes (default: benchmarks/results, "
                        "bench-results for the dry run)")  # fmt: skip
    parser.add_argument("--budget", type=float, metavar="S",
                        help=f"seconds for all the parts together (default: {BUDGET_S['cuda']}; "
                        f"dry run {BUDGET_S['cpu']})")  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="show each part's output")
    parser.add_argument("--multi-worker", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    parser.add_argument("--gpus-per-worker", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    tiny = args.device == "cpu"
    if args.multi_worker:  # the multi_worker part's own process
        multi_worker(args.multi_worker, args.gpus_per_worker, tiny)
        return 0
    if tiny:  # on a GPU host too: the dry run takes the CPU paths, and its JSON says so
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    env = child_env()
    count, gpu = gpus(env)
    if args.device == "cuda" and not count:
        print("gpu-check: no CUDA GPU here; `make gpu-check DEVICE=cpu` is the dry run")
        return 2
    name = f"{slug(gpu or 'cpu-dry-run')}-{time.strftime('%Y-%m-%d')}"
    folder = (args.results or DEFAULT_RESULTS[args.device]) / name
    budget = args.budget or BUDGET_S[args.device]
    print(f"gpu-check: {gpu or 'CPU dry run'}, {budget:.0f} s budget, results in {folder}")
    rows = run_parts(PARTS, folder, budget, env,
                     lambda name: command(name, folder, count, tiny), args.verbose)  # fmt: skip
    total = sum(row["seconds"] for row in rows)
    print()
    print_table(rows)
    print(f"total {total:.0f} s of {budget:.0f}; JSON in {folder}")
    write_json("gpu_check", {"device": args.device, "tiny": tiny, "gpus": count,
                             "budget_s": budget, "total_s": round(total, 1), "rows": rows},
               folder)  # fmt: skip
    return 0 if all(row["status"] == "ok" for row in rows) else 1


def child_env() -> dict[str, str]:
    """The parts' environment: this one, unbuffered, with the repository importable."""
    env = os.environ | {"PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def gpus(env: dict[str, str]) -> tuple[int, str | None]:
    """The number of GPUs the parts will see and the first one's name, asked of a child process
    (a CUDA context here would hold GPU memory for the whole check)."""
    probe = ("import torch; n = torch.cuda.device_count(); "
             "print(n); print(torch.cuda.get_device_name(0) if n else '')")  # fmt: skip
    lines = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                           text=True, check=True).stdout.splitlines()  # fmt: skip
    return int(lines[0]), (lines[1] if len(lines) > 1 and lines[1] else None)


def slug(name: str) -> str:
    """A folder name from a device name: ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_parts(parts, folder: Path, budget: float, env, argv_of: Callable[[str], list[str]],
              verbose: bool = False) -> list[dict]:  # fmt: skip
    """Run ``parts`` in order within ``budget`` seconds, each as ``argv_of(part.name)``, from
    the repository; one table row per part."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    start, rows, cumulative = time.monotonic(), [], 0.0
    for part in parts:
        cumulative += part.share
        limit = start + budget * cumulative - time.monotonic()
        if part.writes:  # a stale file from an earlier run must not pass for this one's
            (folder / f"{part.writes}.json").unlink(missing_ok=True)
        argv = argv_of(part.name)
        print(f"[{part.name}] {' '.join(argv[1:])} (limit {limit:.0f} s)", flush=True)
        status, seconds = run_part(argv, env, limit, folder / "logs" / f"{part.name}.log",
                                   verbose)  # fmt: skip
        row = {"part": part.name, "status": status, "seconds": round(seconds, 1),
               "limit_s": round(max(limit, 0.0), 1),
               "result": summary(part.name, folder)}  # fmt: skip
        print(f"[{part.name}] {status} in {seconds:.0f} s: {row['result']}", flush=True)
        rows.append(row)
    # The quality benchmark and the matrix draw their datasets under --work, this folder:
    # inputs, not results.
    shutil.rmtree(folder / "data", ignore_errors=True)
    return rows


def command(name: str, folder: Path, gpu_count: int, tiny: bool) -> list[str]:
    """The argv of part ``name``, writing into ``folder``."""
    python, size = sys.executable, ["--tiny"] if tiny else ["--quick"]
    if name == "tests":
        report = folder / "logs" / "tests_gpu.xml"
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu",
                f"--junitxml={report}"]  # fmt: skip
    if name == "multi_worker":
        share = 0 if tiny else 1 if gpu_count > 1 else 0.5
        device = "cpu" if tiny else "cuda"
        return [python, "-m", "benchmarks.gpu_check", "--multi-worker", str(folder),
                "--gpus-per-worker", str(share), "--device", device]  # fmt: skip
    if name == "matrix":  # --tiny: the quick cells at tiny sizes, in its own JSON
        jobs = 1 if tiny else max(1, min(MATRIX_RUNS, os.cpu_count() or 1))
        seeds = MATRIX_SEEDS[:1] if tiny else MATRIX_SEEDS
        return [python, "-m", "benchmarks.matrix", "--quick", *(["--tiny"] if tiny else []),
                "--seeds", *seeds, "--jobs", str(jobs), "--out", str(folder),
                "--work", str(folder)]  # fmt: skip
    argv = [python, "-m", f"benchmarks.{name}", *size, "--out", str(folder)]
    if name == "quality":  # single-threaded CPU runs side by side; tiny ones in-process
        jobs = 1 if tiny else max(1, min(QUALITY_RUNS, os.cpu_count() or 1))
        argv += ["--jobs", str(jobs), "--work", str(folder)]
    return argv


def run_part(argv: list[str], env, limit: float, log: Path, verbose: bool = False):
    """Run ``argv`` from the repository with its output in ``log`` (and on the console with
    ``verbose``); after ``limit`` seconds stop its process group. Returns (status, seconds)."""
    if limit < GRACE_S + 1:
        return "skipped (no time left)", 0.0
    started = time.monotonic()
    with open(log, "w") as out:
        # Its own session: on time-out the group holds everything it started, Ray included.
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        copier = threading.Thread(target=_copy, args=(process.stdout, out, verbose))
        copier.start()
        try:
            code = process.wait(timeout=limit - GRACE_S)
        except subprocess.TimeoutExpired:
            code = None
        stop(process, GRACE_S if code is None else 0)
        copier.join(GRACE_S)
    seconds = time.monotonic() - started
    if code is None:
        return "timed out", seconds
    return ("ok" if code == 0 else f"failed (exit {code})"), seconds


def _copy(stream, out, verbose: bool) -> None:
    for line in iter(stream.readline, b""):
        text = line.decode(errors="replace")
        out.write(text)
        if verbose:
            sys.stdout.write(text)
    stream.close()


def stop(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group (if ``grace``), then after ``grace`` seconds SIGKILL to
    whatever is left of it: a part's Ray processes must not outlive the part."""
    if grace:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def multi_worker(out: Path, gpus_per_worker: float, tiny: bool) -> dict:
    """A short DCGAN Ray Train run with two workers; writes ``multi_worker.json`` in ``out``."""
    import tempfile

    from benchmarks import dcgan

    if tiny:
        n, overrides = 64, dcgan.loop_overrides(8, 32, 8, 6, 2)
    else:
        n, overrides = 4096, dcgan.loop_overrides(32, 64, 32, 200, 40)
    with tempfile.TemporaryDirectory() as tmp:
        folder = dcgan.shapes_folder(Path(tmp), n, 32 if tiny else 64)
        started = time.perf_counter()
        measured = dcgan.ray_loop(folder, overrides, Path(tmp) / "runs", 2, gpus_per_worker)
        wall = time.perf_counter() - started
    rows = [{"workers": 2, "gpus_per_worker": gpus_per_worker,
             "images_per_s": round(measured["images_per_s"], 1),
             "input_wait_frac": round(measured["input_wait_frac"], 3),
             "wall_s": round(wall, 1)}]  # fmt: skip
    print_table(rows)
    result = {"tiny": tiny, "overrides": overrides, "rows": rows}
    write_json("multi_worker", result, out)
    return result


def summary(name: str, folder: Path) -> str:
    """The part's headline figures beside their targets, read from what it wrote."""
    try:
        if name == "tests":
            return _tests(folder / "logs" / "tests_gpu.xml")
        if name == "matrix":  # a check's folder holds the real or the dry run's, not both
            paths = [cells.document_path(folder, tiny) for tiny in (False, True)]
            return _matrix(json.loads(next(p for p in paths if p.exists()).read_text()))
        document = json.loads((folder / f"{name}.json").read_text())
        return SUMMARIES[name](document)
    except (OSError, ValueError, KeyError, StopIteration):  # nothing (complete) written
        return "-"


def _tests(report: Path) -> str:
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(report).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return (f"{passed} passed, {counts['failures'] + counts['errors']} failed, "
            f"{counts['skipped']} skipped")  # fmt: skip


def _dcgan(doc: dict) -> str:
    loop = next(r for r in doc["rows"] if r["comparison"].startswith("Ray Train loop"))
    step = next(r for r in doc["rows"] if r["comparison"].startswith("DCGAN step"))
    return (f"loop/plain {loop['ratio']}x (>= 0.98); "
            f"step vs pytorch/examples {step['ratio']}x (>= 1.3)")  # fmt: skip


def _serve(doc: dict) -> str:
    derived = doc["derived"]
    return (
        f"p50 over direct {derived['overhead_p50_ms_256_batching_off']:+} ms (<= 3); "
        f"batching {derived['batching_speedup_256_16_clients']}x at 16 clients (>= 2)"
    )


def _style(doc: dict) -> str:
    gatys = next(r for r in doc["rows"] if r["bench"] == "gatys" and r["variant"] == "genart")
    ratio = gatys.get("wall_ratio", "not reached")
    fast = [r for r in doc["rows"] if r["bench"] == "fast_style" and r["variant"] == "genart-fp32"]
    largest = max(fast, key=lambda r: int(r["size"].split("x")[0]))
    side = largest["size"].split("x")[0]
    return (f"Gatys {ratio} of the tutorial's time (<= 0.7); fast style {side} px "
            f"{1000 / largest['images_per_s']:.2f} ms (512 px: <= 5)")  # fmt: skip


def _multi_worker(doc: dict) -> str:
    row = doc["rows"][0]
    return f"2 workers x {row['gpus_per_worker']:g} GPU: {row['images_per_s']} img/s"


def _quality(doc: dict) -> str:
    met = sum(bool(t["met"]) for t in doc["targets"])
    return f"{met}/{len(doc['targets'])} targets met (quick cells: smoke figures)"


def _matrix(doc: dict) -> str:
    records = doc["records"]
    data = {r["cell"]: r["data"] for r in records}  # the cells' names are in the JSON
    real = sum(kind in realdata.KINDS for kind in data.values())
    wins = Counter(row["win"] for row in cells.verdicts(records))
    verdicts = ", ".join(f"{n} {w}" for w, n in wins.items()) or "none yet"
    return (f"{len(records)} records (+{doc['added']} this run) in {len(data)} cells "
            f"({real} on real data); verdicts by metric: {verdicts}")  # fmt: skip


SUMMARIES = {"dcgan": _dcgan, "serve": _serve, "style": _style, "multi_worker": _multi_worker,
             "quality": _quality}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
