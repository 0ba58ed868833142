"""Ray Data ingest against a torch DataLoader over the same PNG folder, on the same two cores.

Both sides read the same generated folder of 64x64 PNGs, decode with PIL, resize + centre-crop
and scale to [-1, 1] with the same ``genart.data.transforms`` functions, and yield float32
batches of 64 as torch tensors:

* torch: a map-style ``Dataset`` and a ``DataLoader`` with 2 worker processes (spawned, and
  persistent across epochs, so warm epochs pay no start-up);
* genart: ``pipelines.images(folder)`` (and the same images packed with ``pack_parquet``)
  iterated with ``iter_torch_batches`` on a local Ray with ``num_cpus=2``;
* for reference, Ray's own ``read_images`` followed by ``map_batches``.

The process and everything it starts is pinned to 2 cores (``sched_setaffinity``), so the
comparison is the same on bigger machines. Epochs of all variants are interleaved, round by
round, so load from other processes hits them alike; the first epoch of each is "cold" (worker
and task start-up), the median of the others "warm". CPU time per image sums every process
involved (Linux ``/proc``): on a shared machine it is the steadier measure of cost. Ray Data's
progress bars are turned off (they cost CPU in the driver).

    python -m benchmarks.ingest [--quick] [--out bench-results]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from genart.data import pipelines, transforms
from genart.data.synthetic import generate

SIZE = 64
BATCH = 64
CORES = 2
Epoch = Callable[[], Iterable[torch.Tensor]]  # a fresh pass over the data, as image batches


class Folder(torch.utils.data.Dataset):
    """The DataLoader side: one PNG per item, through the same transforms as the pipelines."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = transforms.decode(self.paths[index].read_bytes())
        return torch.from_numpy(transforms.to_float(transforms.resize_crop(image, SIZE)))


def torch_epochs(folder: Path) -> Epoch:
    loader = torch.utils.data.DataLoader(
        Folder(sorted(folder.glob("*.png"))),
        batch_size=BATCH,
        num_workers=CORES,
        persistent_workers=True,
        multiprocessing_context="spawn",  # forking a process that runs Ray can hang
    )
    return lambda: iter(loader)


def ray_epochs(dataset, column: str = "image") -> Epoch:
    return lambda: (b[column] for b in dataset.iter_torch_batches(batch_size=BATCH))


def read_images_dataset(folder: Path):
    """Ray's per-file image reader, as in Ray's own examples (the notes' baseline)."""
    import ray

    def scale(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"image": transforms.to_float(batch["image"])}

    return ray.data.read_images(str(folder), mode="RGB").map_batches(scale)


def tree_cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process and all its descendants (Linux).

    Ray's processes started by ``ray.init`` and the DataLoader's workers all descend from this
    one. Unlike wall time, CPU time per image barely depends on what else the machine runs.
    """
    parents, ticks = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
            ticks[int(stat.parent.name)] = int(fields[11]) + int(fields[12])  # utime + stime
    tree, grew = {os.getpid()}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sum(ticks[pid] for pid in tree) / os.sysconf("SC_CLK_TCK")


def measure(epoch: Epoch, expected: int) -> tuple[float, float, float]:
    """One pass: (images/s, seconds to the first batch, CPU ms/image across all processes)."""
    cpu, start = tree_cpu_seconds(), time.perf_counter()
    batches = iter(epoch())
    count = next(batches).shape[0]
    first = time.perf_counter() - start
    count += sum(batch.shape[0] for batch in batches)
    seconds, cpu = time.perf_counter() - start, tree_cpu_seconds() - cpu
    if count != expected:
        raise RuntimeError(f"an epoch yielded {count} images, expected {expected}")
    return count / seconds, first, 1000 * cpu / count


def interleaved(variants: dict[str, Epoch], rounds: int, expected: int) -> dict[str, list]:
    """``measure`` of each variant per round, the variants alternating within every round."""
    results: dict[str, list] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, epoch in variants.items():
            results[name].append(measure(epoch, expected))
    return results


@contextlib.contextmanager
def pinned(count: int) -> Iterator[None]:
    """Pin this process and all it starts later (DataLoader workers, Ray) to ``count`` cores."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(previous)[:count])
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


@contextlib.contextmanager
def local_ray(cpus: int) -> Iterator[None]:
    """A local Ray of ``cpus`` CPUs without Ray Data's progress bars (unless one is running)."""
    import ray

    started = not ray.is_initialized()
    if started:
        # address="local": a fresh instance even where `ray start` left a cluster running.
        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=1024**3,
        )
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = False
    try:
        yield
    finally:
        context.enable_progress_bars = bars
        if started:
            ray.shutdown()


def summary(name: str, results: list[tuple[float, float, float]], baseline: float) -> dict:
    """One table row: the cold (first) epoch, then medians over the warm ones."""
    speeds, firsts, cpus = zip(*results)
    warm = statistics.median(speeds[1:])
    return {
        "variant": name,
        "cold img/s": round(speeds[0]),
        "warm img/s": round(warm),
        "warm min..max": f"{min(speeds[1:]):.0f}..{max(speeds[1:]):.0f}",
        "1st batch ms": round(1000 * statistics.median(firsts[1:])),
        "CPU ms/img": round(statistics.median(cpus[1:]), 3),
        "vs DataLoader": round(warm / baseline, 2),
    }


def run(out_dir: Path, quick: bool) -> dict:
    """Measure every variant; prints a table and writes ingest.json under ``out_dir``."""
    from benchmarks.common import print_table, write_json

    count, rounds = (1000, 4) if quick else (4000, 6)
    with tempfile.TemporaryDirectory() as tmp:
        folder = generate("shapes", Path(tmp) / "shapes", n=count, size=SIZE, seed=0) / "images"
        pack_start = time.perf_counter()
        pipelines.pack_parquet(str(folder), str(Path(tmp) / "parquet"))
        pack_seconds = time.perf_counter() - pack_start
        with pinned(CORES):
            loader = torch_epochs(folder)
            loader_cold = measure(loader, count)  # starts the workers
            with local_ray(CORES):
                build_start = time.perf_counter()
                variants = {
                    "torch DataLoader, 2 workers": loader,
                    "genart images(), PNG folder": ray_epochs(pipelines.images(str(folder))),
                }
                build_seconds = time.perf_counter() - build_start
                parquet = pipelines.images(str(Path(tmp) / "parquet"))
                variants["genart images(), Parquet"] = ray_epochs(parquet)
                if not quick:
                    reference = read_images_dataset(folder)
                    variants["Ray read_images + map_batches"] = ray_epochs(reference)
                results = interleaved(variants, rounds, count)
    results["torch DataLoader, 2 workers"].insert(0, loader_cold)
    baseline = statistics.median(r[0] for r in results["torch DataLoader, 2 workers"][1:])
    rows = [summary(name, r, baseline) for name, r in results.items()]
    print_table(rows)
    payload = {
        "quick": quick,
        "images": count,
        "image_size": SIZE,
        "batch_size": BATCH,
        "cores": CORES,
        "rounds": rounds,
        "pipeline_build_s": round(build_seconds, 3),
        "pack_parquet_s": round(pack_seconds, 3),
        "epochs": {
            name: [
                {
                    "images_per_s": round(speed, 1),
                    "first_batch_s": round(first, 4),
                    "cpu_ms_per_image": round(cpu, 4),
                }
                for speed, first, cpu in r
            ]
            for name, r in results.items()
        },
        "rows": rows,
        "target": "genart warm img/s >= 1.0x the DataLoader's",
    }
    write_json("ingest", payload, out_dir)
    return payload


if __name__ == "__main__":
    from benchmarks import common

    common.main(run, __doc__)
