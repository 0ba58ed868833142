"""benchmarks/quality.py and its re-implementations of the reference implementations."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `benchmarks`

from benchmarks import quality  # noqa: E402
from benchmarks.reference import dcgan as ref_dcgan  # noqa: E402
from benchmarks.reference import translation as ref  # noqa: E402
from genart import modes_classifier  # noqa: E402

# --- junyanz/pytorch-CycleGAN-and-pix2pix ------------------------------------------------------


@pytest.mark.parametrize(("size", "dropouts"), [(64, 1), (128, 2), (256, 3)])
def test_unet_has_a_1x1_bottleneck_and_num_downs_minus_5_dropout_blocks(size, dropouts):
    G = ref.UnetGenerator(3, 3, int(np.log2(size)), ngf=4, use_dropout=True)
    assert sum(isinstance(m, nn.Dropout) for m in G.modules()) == dropouts
    G.train()
    bottleneck = []
    innermost = [m for m in G.modules() if isinstance(m, ref.UnetSkipConnectionBlock)][-1]
    innermost.model[1].register_forward_hook(lambda m, i, o: bottleneck.append(o.shape[-2:]))
    assert G(torch.randn(2, 3, size, size)).shape == (2, 3, size, size)
    assert bottleneck == [(1, 1)]


def test_unet_biases_follow_the_norm_and_the_outermost_upconv_has_one():
    G = ref.UnetGenerator(3, 3, 6, ngf=4, norm="batch")
    convs = [m for m in G.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with_bias = [m for m in convs if m.bias is not None]
    assert len(with_bias) == 1 and with_bias[0].out_channels == 3  # the outermost transposed
    G = ref.UnetGenerator(3, 3, 6, ngf=4, norm="instance")
    assert all(m.bias is not None for m in G.modules() if isinstance(m, nn.Conv2d))


def test_patchgan_and_resnet_shapes():
    D = ref.NLayerDiscriminator(6, ndf=8)
    assert D(torch.randn(2, 6, 64, 64)).shape == (2, 1, 6, 6)
    assert [m.stride[0] for m in D if isinstance(m, nn.Conv2d)] == [2, 2, 2, 1, 1]
    G = ref.ResnetGenerator(3, 3, ngf=4, n_blocks=2)
    assert G(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert not any(isinstance(m, nn.InstanceNorm2d) and m.affine for m in G.modules())


def test_init_is_normal_002_with_batch_norm_scales_around_one():
    torch.manual_seed(0)
    G = ref.init_weights(ref.UnetGenerator(3, 3, 6, ngf=16))
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    scales = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)


def test_linear_policy_is_stepped_at_the_end_of_each_epoch():
    """As upstream's train.py today: epochs 1-3 at the full rate, then a linear decay."""
    opt = ref.Options(n_epochs=3, n_epochs_decay=3)
    model = ref.Pix2Pix(ref.Options(size=32, ngf=4, ndf=4, n_epochs=3, n_epochs_decay=3))
    rates = []
    for epoch in range(1, 7):
        model.update_learning_rate(epoch)
        rates.append(model.optimizers[0].param_groups[0]["lr"] / opt.lr)
    assert rates == pytest.approx([1, 1, 1, 0.75, 0.5, 0.25])


def test_aligned_loader_crops_and_flips_a_and_b_together():
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    opt = ref.Options(size=32)
    assert opt.load_size == 36
    loader = ref.Loader({"A": images, "B": images.copy()}, opt, batch_size=2, aligned=True, seed=0)
    batches = list(loader.epoch())
    assert [len(b["A"]) for b in batches] == [2, 2, 1] and len(loader) == 3
    for batch in batches:
        assert batch["A"].shape[-2:] == (32, 32)
        torch.testing.assert_close(batch["A"], batch["B"])
    unaligned = ref.Loader({"A": images, "B": images.copy()}, opt, 5, aligned=False, seed=0)
    batch = next(unaligned.epoch())
    assert not torch.equal(batch["A"], batch["B"])  # random partners, crops and flips


def test_reference_steps_train_and_test_in_training_mode():
    opt = ref.Options(size=32, ngf=4, ndf=4, n_blocks=1, pool_size=2, n_epochs=1,
                      n_epochs_decay=1)  # fmt: skip
    batch = {k: torch.rand(2, 3, 32, 32) * 2 - 1 for k in "AB"}
    for model in (ref.Pix2Pix(opt), ref.CycleGAN(opt)):
        G = model.generator("AtoB")
        before = [p.detach().clone() for p in G.parameters()]
        model.optimize_parameters(batch)
        assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
        model.update_learning_rate(2)  # the second of 1 + 1 epochs: decaying
        assert all(g["lr"] == pytest.approx(opt.lr * 0.5) for o in model.optimizers
                   for g in o.param_groups)  # fmt: skip
    pix2pix = ref.Pix2Pix(replace(opt, size=64))  # 6 levels: one dropout block
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    pix2pix.netG.eval()
    first, second = (ref.translate(pix2pix, "AtoB", [image])[0] for _ in range(2))
    assert pix2pix.netG.training  # test.py never calls model.eval()
    assert first.dtype == np.uint8 and not np.array_equal(first, second)  # dropout stays on


def test_pool_trains_cyclegans_discriminators_on_history():
    opt = ref.Options(size=32, ngf=4, ndf=4, n_blocks=1, pool_size=3)
    model = ref.CycleGAN(opt)
    for _ in range(4):
        model.optimize_parameters({k: torch.rand(1, 3, 32, 32) * 2 - 1 for k in "AB"})
    assert len(model.pool_A.images) == len(model.pool_B.images) == 3


# --- pytorch/examples dcgan ----------------------------------------------------------------------


def test_examples_dcgan_nets_and_step():
    net = ref_dcgan.DCGAN(ngf=8, ndf=8, size=64)
    assert [m.out_channels for m in net.netG if isinstance(m, nn.ConvTranspose2d)] == [
        64, 32, 16, 8, 3
    ]  # fmt: skip
    convs = [m for m in net.netG.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(m.bias is None for m in convs)
    x = net.sample(torch.randn(5, 100))
    assert x.shape == (5, 3, 64, 64) and ((net.netD(x) > 0) & (net.netD(x) < 1)).all()
    before = [p.detach().clone() for p in net.netG.parameters()]
    net.step(torch.rand(4, 3, 64, 64) * 2 - 1)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.netG.parameters()))
    assert ref_dcgan.DCGAN(ngf=8, ndf=8, size=32).sample(torch.randn(2, 100)).shape[-1] == 32
    with pytest.raises(ValueError):
        ref_dcgan.Generator(size=128)


# --- the benchmark ------------------------------------------------------------------------------


def test_dcgan_is_scored_with_its_defaults_and_the_modes_recipe():
    variants = quality.GENART["dcgan"].values()
    assert (None, []) in variants and ("jobs/dcgan-modes.yaml", []) in variants
    s = quality.SETTINGS["full"]["dcgan"]
    cfg = quality.genart_config("dcgan", s, ("jobs/dcgan-modes.yaml", []))
    assert (cfg.params.g_width, cfg.data.size, cfg.params.kernel) == (s.ngf, s.size, 5)


def test_genart_batches_keep_pairs_and_shuffle_domains_apart():
    images = {"A": np.arange(8, dtype=np.uint8).reshape(8, 1, 1, 1).repeat(2, 1).repeat(3, -1)}
    images["B"] = images["A"].copy()
    batch = next(quality.epochs(images, 4, seed=0, flip=True, paired=True))
    torch.testing.assert_close(batch["A"], batch["B"])  # pairs: one order, one flip mask
    batch = next(quality.epochs(images, 4, seed=0, flip=False))
    assert not torch.equal(batch["A"], batch["B"])  # two domains of one size: own orders
    images["B"] = images["B"][:6]
    batch = next(quality.epochs(images, 3, seed=0, flip=False))
    assert not torch.equal(batch["A"], batch["B"])


TINY = {
    "pix2pix": quality.Settings("pairs", 8, 32, 2, 3, ngf=4, ndf=4, seeds=(0, 1)),
    "cyclegan": quality.Settings("unpaired", 4, 32, 1, 2, ngf=4, ndf=4, n_blocks=1, seeds=(0,)),
    "dcgan": quality.Settings("modes", 16, 32, 8, 2, ngf=4, ndf=4, samples=16, seeds=(0,)),
}


@pytest.fixture
def tiny_benchmark(monkeypatch):
    monkeypatch.setitem(quality.SETTINGS, "quick", TINY)
    # An untrained classifier: the scores are only checked for their shape here.
    monkeypatch.setattr(modes_classifier, "load_classifier", modes_classifier.ModesClassifier)
    monkeypatch.setitem(quality.GENART, "dcgan", {"genart": (None, []),
                        "genart, mbstd.yaml": (None, ["dcgan.d_mbstd_group=4"])})  # fmt: skip


def test_quick_run_writes_every_row_and_the_targets(tmp_path, tiny_benchmark):
    result = quality.run(tmp_path, quick=True, jobs=1, grids=True)
    document = json.loads((tmp_path / "quality.json").read_text())
    assert document["machine"]["cpus"] >= 1 and document["quick"] is True
    assert document["settings"]["pix2pix"]["size"] == 32
    runs = [(r["model"], r["implementation"], r["seed"]) for r in document["runs"]]
    assert runs[:4] == [("pix2pix", "reference", 0), ("pix2pix", "genart", 0),
                        ("pix2pix", "reference", 1), ("pix2pix", "genart", 1)]  # fmt: skip
    assert ("dcgan", "genart, mbstd.yaml", 0) in runs and len(runs) == 9
    summary = {(r["model"], r["implementation"]): r for r in result["rows"]}
    assert summary[("pix2pix", "genart")]["seeds"] == 2
    assert {"psnr", "ssim", "identity_psnr"} <= set(summary[("cyclegan", "reference")])
    assert {"coverage", "swd", "coverage_min"} <= set(summary[("dcgan", "reference")])
    assert [t["target"].split(",")[0] for t in document["targets"]] == [
        "pix2pix", "cyclegan", "dcgan", "dcgan"
    ]  # fmt: skip
    grids = tmp_path / "quality-grids"
    comparisons = sorted(p.name for p in grids.glob("*-comparison-*.png"))
    assert comparisons == ["cyclegan-comparison-seed0.png", "pix2pix-comparison-seed0.png",
                           "pix2pix-comparison-seed1.png"]  # fmt: skip
    assert len(list(grids.glob("*.png"))) == 9 + len(comparisons)  # one per run, and those
    assert (grids / "dcgan-genart_mbstd.yaml-seed0.png").exists()  # named in full, seed kept
    # input | reference | genart | truth: four columns of the runs' own three
    one_run = Image.open(grids / "pix2pix-genart-seed0.png")
    side_by_side = Image.open(grids / "pix2pix-comparison-seed0.png")
    assert side_by_side.height == one_run.height
    assert side_by_side.width > one_run.width * 4 // 3 - 4


def test_results_do_not_depend_on_running_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setitem(
        quality.SETTINGS, "quick", {"pix2pix": replace(TINY["pix2pix"], seeds=(0,))}
    )
    one = quality.run(tmp_path / "one", quick=True, only=("pix2pix",), jobs=1)
    two = quality.run(tmp_path / "two", quick=True, only=("pix2pix",), jobs=2)
    assert one["runs"] == [r | {"train_s": one["runs"][i]["train_s"]}
                           for i, r in enumerate(two["runs"])]  # fmt: skip


def test_sides_score_the_live_and_averaged_weights_and_the_export_is_the_chosen_one(
    tmp_path, tiny_benchmark, monkeypatch
):
    monkeypatch.setitem(quality.GENART, "dcgan", {"genart": (None, []),
                        "genart, averaged": (None, ["dcgan.ema_decay=0.995"])})  # fmt: skip
    result = quality.run(tmp_path, quick=True, only=("cyclegan", "dcgan"), jobs=1, sides=True,
                         sizes={"steps": 3})  # fmt: skip
    assert result["settings"]["dcgan"]["steps"] == 3
    runs = {(r["model"], r["implementation"]): r for r in result["runs"]}
    assert runs[("dcgan", "genart")]["served"] == "live (no average)"  # DCGAN's defaults
    averaged = (("cyclegan", "genart", "psnr"), ("dcgan", "genart, averaged", "swd"))
    for model, side, score in averaged:
        served = runs[(model, side)]["served"]
        assert served in ("live", "average")
        chosen = runs[(model, f"{side} [{served}]")]
        assert runs[(model, side)][score] == chosen[score]
        assert "served" not in runs[(model, "reference")]


def test_datasets_go_to_the_work_folder_and_only_results_to_out(tmp_path, monkeypatch):
    monkeypatch.setitem(
        quality.SETTINGS, "quick", {"pix2pix": replace(TINY["pix2pix"], seeds=(0,))}
    )
    quality.run(tmp_path / "out", quick=True, only=("pix2pix",), jobs=1, work=tmp_path / "work")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["quality.json"]
    assert any((tmp_path / "work" / "data").iterdir())
