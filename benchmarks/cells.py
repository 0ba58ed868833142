"""The quality matrix's cells, its resumable records and its verdicts (standard library only).

A cell is one family x data kind x size x run length x batch; each is trained from several
seeds by each side (genart, the reference). Every finished (cell, seed, side) is one record in
the matrix's JSON file, rewritten atomically as each finishes, so a stopped run resumes where
it stopped (:func:`pending`). :func:`summary` gives mean +- SD per cell and side, and
:func:`verdicts` calls a difference a win only beyond twice its standard error.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NAME = "quality_matrix"  # the benchmark's name and its JSON's
LENGTHS = {"short": 600, "long": 2000}  # optimizer steps: the issue's <= 600 and >= 2,000
SIDES = ("reference", "genart")
SEEDS = (0, 1, 2)

# family -> (data kinds: today's synthetic one first, then real data; sizes on CPU; batches).
# DCGAN's nets batch-normalise, so batch 1 is no setting for it; the reference DCGAN exists
# at 32 and 64 px only.
FAMILIES = {
    "pix2pix": (("pairs", "photo-pairs"), (64, 128), (1, 4)),
    "cyclegan": (("unpaired", "photo-unpaired"), (64, 128), (1, 4)),
    "dcgan": (("modes", "mnist"), (32, 64), (64,)),
}
GPU_SIZES = {"pix2pix": (256,), "cyclegan": (256,)}  # added where a GPU runs the matrix

# What each family is judged by: metric -> True where higher is better.
METRICS = {
    "pix2pix": {"psnr": True, "ssim": True},
    "cyclegan": {"psnr": True, "ssim": True},
    "dcgan": {"coverage": True, "confident": True, "frechet": False},
}

# Shown beside a family's metrics, never judged: the identity baseline (the input itself as the
# output). A translation scoring below it did the test images harm (e.g. colour casts where the
# true colours are faint).
CONTEXT = {"pix2pix": ("identity_psnr",), "cyclegan": ("identity_psnr",)}

# --quick: the cells that decide defaults first (the settings), short runs, in the order
# they start. The last two need no real data, so the quick cells run without the bench extra
# too: DCGAN on the 16 modes (where the weight average blended modes) and CycleGAN at the
# issue's 128 px, batch 1.
QUICK = ("dcgan-mnist-32px-short-b64", "dcgan-mnist-64px-short-b64",
         "pix2pix-pairs-128px-short-b1", "pix2pix-photo-pairs-128px-short-b1",
         "dcgan-modes-32px-short-b64", "cyclegan-unpaired-128px-short-b1")  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One setting of the matrix."""

    family: str
    data: str
    size: int
    length: str
    batch: int

    @property
    def name(self) -> str:
        return f"{self.family}-{self.data}-{self.size}px-{self.length}-b{self.batch}"

    @property
    def steps(self) -> int:
        return LENGTHS[self.length]


def cells(gpu: bool = False) -> list[Cell]:
    """Every cell of the matrix (with ``gpu``, also the GPU-only sizes)."""
    out = []
    for family, (kinds, sizes, batches) in FAMILIES.items():
        sizes = (*sizes, *GPU_SIZES.get(family, ())) if gpu else sizes
        out += [Cell(family, data, size, length, batch) for data in kinds for size in sizes
                for length in LENGTHS for batch in batches]  # fmt: skip
    return out


def select(all_cells: Sequence[Cell], patterns: Sequence[str] | None = None,
           quick: bool = False) -> list[Cell]:  # fmt: skip
    """The cells whose name matches any of the shell-style ``patterns`` (all if none), or the
    ``QUICK`` cells; in the patterns' order (so the first named run first), each once."""
    if quick:
        patterns = QUICK
    if not patterns:
        return list(all_cells)
    chosen = [c for p in patterns for c in all_cells if fnmatch.fnmatchcase(c.name, p)]
    return list(dict.fromkeys(chosen))


def key(record: dict) -> tuple[str, int, str]:
    """What identifies a record: (cell name, seed, side)."""
    return record["cell"], record["seed"], record["side"]


def pending(todo: Iterable[Cell], seeds: Sequence[int], records: Sequence[dict],
            sides: Sequence[str] = SIDES) -> list[tuple[Cell, int, str]]:  # fmt: skip
    """The (cell, seed, side) runs that have no record yet, cell by cell."""
    done = {key(r) for r in records}
    return [(c, seed, side) for c in todo for seed in seeds for side in sides
            if (c.name, seed, side) not in done]  # fmt: skip


def load(path: Path) -> dict:
    """The document an earlier run of the matrix wrote at ``path`` ({} if there is none)."""
    return json.loads(path.read_text()) if path.exists() else {}


def record(c: Cell, seed: int, side: str, scores: dict[str, Any]) -> dict:
    """One finished run's record: the cell's fields, the seed, the side and its scores."""
    return {"cell": c.name, **asdict(c), "steps": c.steps, "seed": seed, "side": side, **scores}


def document_path(out: Path, tiny: bool = False) -> Path:
    """The matrix's JSON in folder ``out``; the dry run's (``tiny``) has its own name, so its
    records never mix with real ones."""
    return out / f"{NAME}{'_tiny' if tiny else ''}.json"


def write_atomically(path: Path, document: dict) -> None:
    """Write ``document`` as JSON so that a reader (or a crash) never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2, default=str) + "\n")
    os.replace(partial, path)


def add_record(path: Path, new: dict, commands: dict[str, str]) -> None:
    """Add ``new`` to the document at ``path`` (replacing a record of the same key) and
    ``commands`` to its ``upstream_commands`` (the command lines of runs outside genart)."""
    document = load(path) or {"benchmark": NAME, "records": []}
    document["records"] = [r for r in document["records"] if key(r) != key(new)] + [new]
    document.setdefault("upstream_commands", {}).update(commands)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, document)


# --- statistics ---------------------------------------------------------------------------------


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None from fewer than two values)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def verdict(ours: Sequence[float], theirs: Sequence[float], higher_better: bool) -> dict:
    """genart's values against the reference's: the difference of the means, twice its standard
    error (sqrt(sd1^2/n1 + sd2^2/n2)) and who wins, a win counting only beyond 2 SE."""
    (m1, s1), (m2, s2) = mean_sd(ours), mean_sd(theirs)
    diff = m1 - m2
    if s1 is None or s2 is None:
        return {"diff": diff, "two_se": None, "verdict": "n/a (one seed)"}
    two_se = 2 * math.sqrt(s1**2 / len(ours) + s2**2 / len(theirs))
    better = diff > 0 if higher_better else diff < 0
    won = abs(diff) > two_se
    return {"diff": diff, "two_se": two_se,
            "verdict": "tie" if not won else "genart" if better else "reference"}  # fmt: skip


def _grouped(records: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["cell"], r["side"]), []).append(r)
    return groups


def _pm(values: Sequence[float]) -> str:
    """ "mean ± SD", both with the decimals the mean's magnitude calls for."""
    mean, sd = mean_sd(values)
    decimals = 0 if abs(mean) >= 100 else 2 if abs(mean) >= 1 else 3
    return f"{mean:.{decimals}f}" + ("" if sd is None else f" ± {sd:.{decimals}f}")


def summary(records: Sequence[dict]) -> list[dict]:
    """Per cell and side: seeds run and mean ± SD of each of the family's metrics (and of its
    ``CONTEXT`` where the records have it)."""
    rows = []
    for (name, side), group in _grouped(records).items():
        row = {"cell": name, "side": side, "seeds": len(group)}
        family = group[0]["family"]
        for metric in (*METRICS[family], *CONTEXT.get(family, ())):
            if all(metric in r for r in group):
                row[metric] = _pm([r[metric] for r in group])
        rows.append(row)
    return rows


def contenders(records: Sequence[dict]) -> list[str]:
    """The genart sides that face the reference: its defaults (``genart``) and each recipe run
    (``genart, RECIPE-FILE``); not the live and averaged weights scored apart (``[...]``)."""
    sides = dict.fromkeys(r["side"] for r in records)
    return [s for s in sides if s.startswith("genart") and "[" not in s]


def verdicts(records: Sequence[dict]) -> list[dict]:
    """Per cell, genart side (with the reference run too) and metric: the means, their
    difference, 2 SE and who won."""
    groups = _grouped(records)
    rows = []
    for name in dict.fromkeys(r["cell"] for r in records):
        theirs = groups.get((name, "reference"))
        for side in contenders(records):
            ours = groups.get((name, side))
            if ours and theirs:
                rows += _verdict_rows(name, side, ours, theirs)
    return rows


def _verdict_rows(name: str, side: str, ours: list[dict], theirs: list[dict]) -> list[dict]:
    """One cell's verdict rows of genart ``side`` against the reference, one per metric."""
    rows = []
    for metric, higher in METRICS[ours[0]["family"]].items():
        a, b = [r[metric] for r in ours], [r[metric] for r in theirs]
        v = verdict(a, b, higher)
        rows.append({"cell": name, "side": side, "metric": metric,
                     "genart": round(statistics.fmean(a), 3),
                     "reference": round(statistics.fmean(b), 3),
                     "diff": round(v["diff"], 3),
                     "2 SE": None if v["two_se"] is None else round(v["two_se"], 3),
                     "seeds": f"{len(a)}/{len(b)}", "win": v["verdict"]})  # fmt: skip
    return rows
