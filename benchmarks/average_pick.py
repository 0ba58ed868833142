"""Which score should choose between a DCGAN's live weights and their average, and how fast the
average's horizon should grow (``dcgan.ema_rampup``).

Trains genart's DCGAN defaults on a quality-matrix cell's data with a plain loop (as
``benchmarks.quality`` does), keeping one weight average (decay 0.995) per ramp-up in
``RAMPUPS``. Every
``--every`` steps it scores the live generator and each average with the scores the loop can
compute without a judge (``dcgan.evaluate``: SWD in pixels, KID in the run's discriminator's
features) and with the cell's judge (a classifier trained on real digits, or the 16-mode
classifier), whose Fréchet distance stands for the truth. The table counts, per score and
average, how often the score chose the side the judge preferred, and the judge's Fréchet
distance of each side at the last step.

    python -m benchmarks.average_pick --seeds 0 1 2 --out bench-results \\
        --cells dcgan-mnist-32px-short-b64 dcgan-modes-32px-short-b64

The MNIST cells need the optional extra: ``pip install 'genart[bench]'``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks import cells, matrix, quality
from benchmarks.common import print_table, write_json
from benchmarks.translation import one_thread
from genart import registry
from genart.models import dcgan
from genart.registry import StepContext
from genart.train import ema

NAME = "average_pick"
RAMPUPS = {"average (ramp-up 1)": 1.0, "average (ramp-up 0.2)": 0.2, "average (ramp-up 0.05)": 0.05}
# Judge-free scores the loop could pick by; lower is better for both.
CANDIDATES = ("swd", "kid_discriminator")
AVERAGE_DECAY = 0.995  # the decay studied (DCGAN's default until this study: now 0, no average)
REFERENCE_ROWS = 500  # as the loop's train.eval_samples: its first training rows


def train(cell: cells.Cell, seed: int, steps: int, every: int, work: Path) -> list[dict]:
    """One run of genart's DCGAN defaults on ``cell``'s data: every ``every`` steps, the live
    generator's and each average's scores."""
    s = matrix.settings(cell, (seed,))
    folder, images, judge = quality._inputs("dcgan", s, work / "data")
    # The defaults, with the average studied (training never reads it).
    cfg = quality.genart_config("dcgan", s, (None, [f"dcgan.ema_decay={AVERAGE_DECAY}"]), folder)
    spec = registry.trained("dcgan")
    torch.manual_seed(seed)
    nets = spec.build(cfg.params, cfg.data)
    opts = spec.optimizers(nets, cfg.params)
    averages = {name: ema.WeightAverage(nets, spec.export, cfg.params.ema_decay, rampup)
                for name, rampup in RAMPUPS.items()}  # fmt: skip
    reference = {"image": torch.from_numpy(images["image"][:REFERENCE_ROWS]).permute(0, 3, 1, 2)}
    z = judge.z[:, : cfg.params.latent_dim]
    ctx, rows, started = StepContext(), [], time.monotonic()
    batches = quality.epochs(images, s.batch, seed, cfg.data.flip)
    for ctx.step, batch in zip(range(steps), batches):
        spec.train_step(nets, opts, batch, cfg.params, ctx)
        for average in averages.values():
            average.update()
        if (ctx.step + 1) % every:
            continue
        sides = {"live": nets} | {name: a.averaged(nets) for name, a in averages.items()}
        for side, candidate in sides.items():
            found = dcgan.evaluate(candidate, cfg.params, reference)
            truth = judge(dcgan.generate(candidate["G"], z))["frechet"]
            rows.append({"cell": cell.name, "seed": seed, "step": ctx.step + 1, "side": side,
                         "judge_frechet": round(truth, 1)}
                        | {c: round(found[c], 5) for c in CANDIDATES})  # fmt: skip
        print(f"{cell.name} seed {seed} step {ctx.step + 1}: "
              f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    return rows


def by_step(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    """The rows of each scored step, (cell, seed, step) -> {side: row}, in the rows' order."""
    steps: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        steps.setdefault((row["cell"], row["seed"], row["step"]), {})[row["side"]] = row
    return steps


def agreement(rows: list[dict]) -> list[dict]:
    """Per candidate score and average: how often it chose the side the judge preferred
    between that average and the live weights at one step (the average on a tie, as the loop
    does)."""
    steps = by_step(rows)
    table = []
    for name in RAMPUPS:
        pairs = [(sides["live"], sides[name]) for sides in steps.values()]
        entry = {"average": name, "steps scored": len(pairs),
                 "judge prefers it": sum(a["judge_frechet"] <= live["judge_frechet"]
                                         for live, a in pairs)}  # fmt: skip
        for score in CANDIDATES:
            agreed = sum((a[score] <= live[score]) == (a["judge_frechet"] <= live["judge_frechet"])
                         for live, a in pairs)  # fmt: skip
            entry[f"{score} agrees"] = f"{agreed}/{len(pairs)}"
        table.append(entry)
    return table


# Rules for what serves: (the average kept, the score that picks; None: never the average).
RULES = {
    "ramp-up 1, SWD (before)": ("average (ramp-up 1)", "swd"),
    "ramp-up 0.05, discriminator KID (with an average)": (
        "average (ramp-up 0.05)",
        "kid_discriminator",
    ),
    "live weights only (now the default)": ("average (ramp-up 1)", None),
}


def served(rows: list[dict]) -> list[dict]:
    """Per run and rule: the judge's Fréchet distance of what the rule serves at each scored
    step (the last one is what the run exports)."""
    runs: dict[tuple, dict[int, dict[str, dict]]] = {}
    for (cell, seed, step), sides in by_step(rows).items():
        runs.setdefault((cell, seed), {})[step] = sides
    table = []
    for (cell, seed), steps in runs.items():
        for rule, (average, score) in RULES.items():
            picks = [sides[average] if score and sides[average][score] <= sides["live"][score]
                     else sides["live"] for _, sides in sorted(steps.items())]  # fmt: skip
            table.append({"cell": cell, "seed": seed, "rule": rule,
                          "judge Fréchet served, by step": " ".join(
                              f"{p['judge_frechet']:.0f}" for p in picks)})  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["dcgan-mnist-32px-short-b64"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--every", type=int, default=100, help="steps between scorings")
    parser.add_argument("--steps", type=int, help="default: each cell's own")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--work", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    todo = cells.select(cells.cells(), args.cells)
    rows = []
    with one_thread(torch.device("cpu")):
        for cell in todo:
            for seed in args.seeds:
                rows += train(cell, seed, args.steps or cell.steps, args.every, args.work)
    table, by_rule = agreement(rows), served(rows)
    print_table(table)
    print()
    print_table(by_rule)
    command = " ".join(["python -m benchmarks.average_pick", *sys.argv[1:]])
    document = {"command": command, "agreement": table, "served": by_rule, "rows": rows}
    write_json(NAME, document, args.out)


if __name__ == "__main__":
    main()
