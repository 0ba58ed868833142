"""The upstream check of ``benchmarks.reference.dcgan``: their own code, unmodified.

pytorch/examples' ``dcgan/main.py`` trained and scored on one DCGAN cell of the quality matrix.

Their script is no part of genart and is never committed here: put a copy of it anywhere
outside the repository and pass it as ``--script``. Each run:

- writes nothing new: the cell's dataset is the matrix's own (``benchmarks.quality.dataset``
  under ``WORK/data``), whose ``images/`` folder is one class to their ``--dataset folder``
  (read as RGB, as the re-implementation trains);
- runs their script in a child process on one torch thread with the cell's sizes and the seed
  as ``--manualSeed`` (:func:`script_options`; their defaults otherwise: Adam 2e-4, beta1
  0.5, nz 100). Their options count whole passes, so their ``DataLoader`` is made to stop
  after exactly the cell's steps (:func:`stop_loader_after`; the last pass is cut short, as
  the re-implementation's is) and their own code saves ``netG_epoch_N.pth`` at its end;
- scores their generator: their script run again with ``--niter 0 --netG`` builds and loads
  it, then it draws the matrix judge's latents in training mode, 64 at a time, as their
  ``fixed_noise`` grids are drawn, scored by the cell's judge (``benchmarks.quality``).

Their nets are for 64 px images only: 32 px cells are refused. The records join the cell's
others in ``OUT/quality_matrix.json`` under side ``upstream``; their runs go under
``WORK/upstream-runs``.

    python -m benchmarks.upstream_examples --script ~/upstream/examples/dcgan/main.py \\
        --cell dcgan-mnist-64px-short-b64 --seeds 0 1 2 --work bench-results --out bench-results
"""

from __future__ import annotations

import argparse
import contextlib
import runpy
import sys
from pathlib import Path

import torch

from benchmarks import cells, matrix, quality
from benchmarks.common import add_work_and_out, run_child
from benchmarks.translation import one_thread

SIDE = "upstream"
SAMPLE_BATCH = 64  # their fixed_noise grids: one batch of batchSize latents


def passes(s: quality.Settings) -> int:
    """Their ``--niter``: the shuffled passes over the data that ``s.steps`` steps reach."""
    per_pass = -(-s.n // s.batch)
    return -(-s.steps // per_pass)


def script_options(s: quality.Settings, seed: int, folder: Path, run_dir: Path) -> list[str]:
    """Their options for one training run of the cell ``s`` describes."""
    if s.size != 64:
        raise SystemExit(f"benchmarks.upstream_examples: their DCGAN is for 64 px, not {s.size}")
    return ["--dataset", "folder", "--dataroot", str(folder), "--imageSize", str(s.size),
            "--batchSize", str(s.batch), "--ngf", str(s.ngf), "--ndf", str(s.ndf),
            "--niter", str(passes(s)), "--workers", "0", "--manualSeed", str(seed),
            "--outf", str(run_dir)]  # fmt: skip


def stop_loader_after(steps: int) -> None:
    """Make every ``torch.utils.data.DataLoader`` created from now on stop for good once
    ``steps`` batches have come out of all of them together."""
    served = [0]

    class Counted(torch.utils.data.DataLoader):
        def __iter__(self):
            for batch in super().__iter__():
                if served[0] == steps:
                    return
                served[0] += 1
                yield batch

    torch.utils.data.DataLoader = Counted


def _child(script: str, steps: int, argv: list[str]) -> None:
    """In the child process: their script, its data stopped after ``steps`` batches."""
    torch.set_num_threads(1)
    stop_loader_after(steps)
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")


def train(script: Path, s: quality.Settings, argv: list[str], log: Path) -> float:
    """Train once in a child process (their per-step lines go to ``log``); seconds taken."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        args = [str(script), str(s.steps), "--", *argv]
        return run_child("benchmarks.upstream_examples", args, out)


def their_generator(script: Path, argv: list[str], weights: Path) -> torch.nn.Module:
    """Their ``netG`` as their script builds it and loads ``weights`` (``--niter 0``); what
    their script prints goes to ``scoring.txt`` beside ``weights``."""
    options = dict(zip(argv[::2], argv[1::2]))
    options |= {"--niter": "0", "--netG": str(weights), "--outf": str(weights.parent / "scoring")}
    saved, sys.argv = sys.argv, [str(script), *(x for pair in options.items() for x in pair)]
    try:
        with (weights.parent / "scoring.txt").open("w") as log, contextlib.redirect_stdout(log):
            return runpy.run_path(str(script))["netG"]
    finally:
        sys.argv = saved


@torch.no_grad()
def samples(net: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Images for latents ``z`` (N, nz), net in training mode, ``SAMPLE_BATCH`` at a time."""
    net.train()
    return torch.cat([net(c.view(len(c), -1, 1, 1)) for c in z.split(SAMPLE_BATCH)])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        script, steps, _, *argv = sys.argv[2:]
        _child(script, int(steps), argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True, help="their dcgan/main.py")
    parser.add_argument("--cell", required=True, help="a 64 px DCGAN cell (matrix --list)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(cells.SEEDS))
    add_work_and_out(parser)
    args = parser.parse_args()
    (cell,) = cells.select(cells.cells(), [args.cell])
    if cell.family != "dcgan":
        raise SystemExit("benchmarks.upstream_examples: DCGAN cells only")
    s = matrix.settings(cell, args.seeds)
    script = args.script.resolve()
    folder, _, judge = quality._inputs("dcgan", s, args.work / "data")
    for seed in args.seeds:
        run_dir = args.work / "upstream-runs" / cell.name / SIDE / f"seed{seed}"
        argv = script_options(s, seed, folder, run_dir)
        seconds = train(script, s, argv, run_dir / "log.txt")
        with one_thread(torch.device("cpu")):
            net = their_generator(script, argv, run_dir / f"netG_epoch_{passes(s) - 1}.pth")
            scores = judge(samples(net, judge.z))
        # Named as the matrix names them (the modes judge's confident share, for one).
        scores = matrix.scores({k: round(v, 4) for k, v in scores.items()})
        scores |= {"train_s": round(seconds), "seeded": True}
        record = cells.record(cell, seed, SIDE, scores)
        print(record, flush=True)
        # Recorded without this machine's paths: WORK for --work, seedN for the run's folder.
        line = " ".join(["python", "main.py", *argv]).replace(str(args.work), "WORK")
        line = line.replace(run_dir.name, "seedN").replace(f"--manualSeed {seed}", "--manualSeed N")
        cells.add_record(cells.document_path(args.out), record, {f"{cell.name}, {SIDE}": line})


if __name__ == "__main__":
    main()
