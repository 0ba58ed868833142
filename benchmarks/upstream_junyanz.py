"""The upstream check of ``benchmarks.reference.translation``: their own code, unmodified.

junyanz/pytorch-CycleGAN-and-pix2pix trained and scored on one cell of the quality matrix.

Their code is no part of genart and is never committed here: put a copy of their tree (its
``train.py``, ``options/``, ``models/``, ``data/`` and ``util/`` at one commit) anywhere outside
the repository and pass its folder as ``--tree``. Each run:

- writes nothing new: the cell's dataset is the matrix's own (``benchmarks.quality.dataset``
  under ``WORK/data``; Pix2Pix's ``train/`` pairs are already their aligned A|B format, the
  CycleGAN set already their ``trainA``/``trainB``);
- runs their ``train.py`` in a child process on one torch thread with the options of the
  matrix's reference side (:func:`train_options`), and stops it after exactly the cell's
  optimizer steps (their options count whole epochs) by counting ``optimize_parameters`` calls,
  then saves the weights with their own ``save_networks('latest')``. What their code imports
  but a CPU run with ``--no_html`` never calls (``wandb``, ``dominate``) is stubbed in the child;
- scores their generator (their ``networks.define_G`` loaded with their ``latest_net_*.pth``,
  their test transform and ``util.tensor2im``; training mode, as their ``test.py`` leaves it
  without ``--eval``) on the cell's held-out test pairs with the matrix's own scoring
  (``benchmarks.quality.score_translation``).

Their code seeds nothing, so runs differ: ``--runs`` numbers them. The records join the cell's
others in ``OUT/quality_matrix.json`` under side ``upstream`` (``upstream, FLAGS`` with
``--set``; ``seed`` is the run's number); their checkpoints go under ``WORK/upstream-runs``.

    python -m benchmarks.upstream_junyanz --tree ~/upstream/junyanz \\
        --cell pix2pix-pairs-128px-short-b1 --runs 3 --work bench-results --out bench-results
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks import cells, matrix, quality
from benchmarks.common import add_work_and_out, run_child
from benchmarks.translation import one_thread

SIDE = "upstream"
STUBBED = {"wandb": {}, "dominate": {}, "dominate.tags": dict.fromkeys(
    ("meta", "h3", "table", "tr", "td", "p", "a", "img", "br"))}  # fmt: skip


class Stopped(Exception):
    """Raised in their training loop once the cell's steps are done."""


def train_options(cell: cells.Cell, s: quality.Settings) -> list[str]:
    """Their ``train.py`` options for ``cell``: the reference side's settings
    (``benchmarks.quality.reference_options``) in their flags; their defaults otherwise."""
    opt = quality.reference_options(cell.family, s)
    common = ["--batch_size", str(s.batch), "--ngf", str(s.ngf), "--ndf", str(s.ndf),
              "--crop_size", str(opt.size), "--load_size", str(opt.load_size),
              "--n_epochs", str(opt.n_epochs), "--n_epochs_decay", str(opt.n_epochs_decay),
              "--num_threads", "0", "--no_html"]  # fmt: skip
    if cell.family == "pix2pix":
        return ["--model", "pix2pix", "--netG", f"unet_{opt.size}", *common]
    return ["--model", "cycle_gan", "--netG", f"resnet_{opt.n_blocks}blocks", *common]


def _stub_unused_imports() -> None:
    for name, attributes in STUBBED.items():
        module = types.ModuleType(name)
        for attribute in attributes:
            setattr(module, attribute, None)
        sys.modules[name] = module


def stop_after(model, steps: int) -> None:
    """Make ``model.optimize_parameters`` (one optimizer step of each network) save the weights
    with the model's own ``save_networks('latest')`` and raise ``Stopped`` on its ``steps``-th
    call."""
    step, done = model.optimize_parameters, [0]

    def counted():
        step()
        done[0] += 1
        if done[0] == steps:
            model.save_networks("latest")
            print(f"stopped after {steps} steps, lr {model.optimizers[0].param_groups[0]['lr']}")
            raise Stopped

    model.optimize_parameters = counted


def _child(tree: str, steps: int, argv: list[str]) -> None:
    """In the child process: their train.py, stopped after ``steps`` optimizer steps."""
    torch.set_num_threads(1)
    _stub_unused_imports()
    sys.path.insert(0, tree)
    import models  # their package, from ``tree``

    create = models.create_model

    def create_model(opt):
        model = create(opt)
        stop_after(model, steps)
        return model

    models.create_model = create_model
    sys.argv = [str(Path(tree) / "train.py"), *argv]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except Stopped:
        return
    raise SystemExit(f"their train.py ended before {steps} steps")


def train(tree: Path, cell: cells.Cell, s: quality.Settings, folder: Path, run_dir: Path,
          extra: list[str]) -> tuple[list[str], float]:  # fmt: skip
    """Train their model once in a child process (``extra``: more of their options, after the
    cell's); (their command line, seconds)."""
    argv = ["--dataroot", str(folder), "--checkpoints_dir", str(run_dir.parent),
            "--name", run_dir.name, *train_options(cell, s), *extra]  # fmt: skip
    seconds = run_child("benchmarks.upstream_junyanz", [str(tree), str(s.steps), "--", *argv])
    return ["python", "train.py", *argv], seconds


def _their(tree: Path):
    """Their ``networks``, ``get_transform`` and ``tensor2im`` (imported from ``tree``)."""
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    from data.base_dataset import get_transform
    from models import networks
    from util.util import tensor2im

    return networks, get_transform, tensor2im


def generators(tree: Path, cell: cells.Cell, s: quality.Settings, run_dir: Path) -> dict:
    """Per direction, their trained generator as their test.py runs it (training mode)."""
    networks, _, _ = _their(tree)
    opt = quality.reference_options(cell.family, s)
    if cell.family == "pix2pix":  # their pix2pix defaults: batch norm, dropout
        files, arch = {"AtoB": "G"}, (f"unet_{opt.size}", "batch", True)
    else:  # their cycle_gan defaults: instance norm, no dropout
        files, arch = (
            {"AtoB": "G_A", "BtoA": "G_B"},
            (f"resnet_{opt.n_blocks}blocks", "instance", False),
        )
    nets = {}
    for direction, name in files.items():
        net = networks.define_G(3, 3, s.ngf, *arch)
        state = torch.load(
            run_dir / f"latest_net_{name}.pth", map_location="cpu", weights_only=True
        )
        net.load_state_dict(state)
        nets[direction] = net.train()
    return nets


def score(tree: Path, cell: cells.Cell, s: quality.Settings, folder: Path, run_dir: Path,
          run: int) -> dict:  # fmt: skip
    """The matrix's scores of one trained run on the cell's test split."""
    from PIL import Image

    _, get_transform, tensor2im = _their(tree)
    # Their test options: load_size = crop_size (no crop), no flip.
    test_opt = SimpleNamespace(preprocess="resize_and_crop", load_size=s.size, crop_size=s.size,
                               no_flip=True)  # fmt: skip
    transform = get_transform(test_opt)
    nets = generators(tree, cell, s, run_dir)

    @torch.no_grad()
    def translate(images, direction):
        net = nets[direction]
        return [tensor2im(net(transform(Image.fromarray(im))[None])) for im in images]

    return quality.score_translation(quality._Translator(translate), cell.family, folder, run)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        tree, steps, _, *argv = sys.argv[2:]
        _child(tree, int(steps), argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="their tree (outside the repo)")
    parser.add_argument("--cell", required=True, help="a Pix2Pix or CycleGAN cell (matrix --list)")
    parser.add_argument("--runs", type=int, nargs="+", default=[0, 1], help="run numbers")
    add_work_and_out(parser)
    parser.add_argument(
        "--set",
        default="",
        metavar="'FLAGS'",
        help="more of their train.py options, quoted: side 'upstream, FLAGS'",
    )
    args = parser.parse_args()
    (cell,) = cells.select(cells.cells(), [args.cell])
    if cell.family == "dcgan":
        raise SystemExit("benchmarks.upstream_junyanz: Pix2Pix and CycleGAN cells only")
    s = matrix.settings(cell, args.runs)
    folder = quality.dataset(args.work / "data", s)
    path = cells.document_path(args.out)
    extra = shlex.split(args.set)
    side = ", ".join([SIDE, *([" ".join(extra)] if extra else [])])
    for run in args.runs:
        # Their checkpoints stay with the data, out of the results folder.
        run_dir = args.work / "upstream-runs" / cell.name / re.sub(r"\W+", "_", side) / f"run{run}"
        command, seconds = train(args.tree.resolve(), cell, s, folder, run_dir, extra)
        with one_thread(torch.device("cpu")):
            scores = score(args.tree.resolve(), cell, s, folder, run_dir, run)
        record = cells.record(cell, run, side, {"train_s": round(seconds), "seeded": False,
                              **{k: round(v, 4) for k, v in scores.items()}})  # fmt: skip
        print(record, flush=True)
        # Recorded without this machine's paths: WORK for --work, runN for the run's name.
        line = " ".join(command).replace(str(args.work), "WORK").replace(run_dir.name, "runN")
        cells.add_record(path, record, {f"{cell.name}, {side}": line})


if __name__ == "__main__":
    main()
