"""The 16-mode dataset (genart.data.modes), its classifier's coverage scores, and the DCGAN
options that fight mode collapse (minibatch standard deviation, spectral norm).

The classifier is trained once for this module into a temporary cache (about 10 s on CPU),
never into the user's ``~/.cache``.
"""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize

from genart import modes_classifier
from genart.cli import main
from genart.config import DataConfig
from genart.data import modes, synthetic
from genart.models import dcgan, layers
from genart.registry import StepContext

HELD_OUT_SEED = 7  # neither the classifier's training nor its reference seed


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("genart-cache")
    modes_classifier.load_classifier(folder)
    return folder


@pytest.fixture(scope="module")
def classifier(cache):
    return modes_classifier.load_classifier(cache, train_if_missing=False)


def test_render_is_deterministic_labelled_and_covers_every_mode():
    images, labels = synthetic.render_modes(400, size=32, seed=3)
    again, same = synthetic.render_modes(400, size=32, seed=3)
    other, _ = synthetic.render_modes(400, size=32, seed=4)
    assert images.shape == (400, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, same)
    assert not np.array_equal(images, other)
    assert set(labels.tolist()) == set(range(modes.MODES)) and len(modes.MODE_NAMES) == 16
    # Uniform: no mode far from its 1/16 share.
    assert np.bincount(labels, minlength=16).min() > 400 / 16 / 3


def test_labels_name_the_colour_and_shape_drawn():
    """Colour: the mean of the bright pixels is nearest the label's colour. Shape: the fraction
    of the bounding box the shape fills separates circle, square, triangle and cross."""
    images, labels = synthetic.render_modes(200, size=64, seed=5)
    fills = {name: [] for name in modes.SHAPES}
    for image, label in zip(images.astype(np.float32), labels):
        shape, colour = divmod(int(label), 4)
        mask = image.max(-1) > 100
        assert np.abs(modes._RGB - image[mask].mean(0)).sum(1).argmin() == colour
        rows, cols = np.nonzero(mask)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        fills[modes.SHAPES[shape]].append(mask.sum() / box)
    means = {name: np.mean(values) for name, values in fills.items()}
    assert means["triangle"] < means["cross"] < means["circle"] < means["square"]


def test_generate_writes_render_modes_images_and_labels(tmp_path):
    out = synthetic.generate("modes", tmp_path / "modes", 12, size=24, seed=0, workers=1)
    images, labels = synthetic.render_modes(12, size=24, seed=0)
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == [f"images/{i:05d}.png" for i in range(12)]
    assert [int(row["label"]) for row in rows] == labels.tolist()
    for row, image in zip(rows, images):
        np.testing.assert_array_equal(np.asarray(Image.open(out / row["file"])), image)


def test_cli_synth_modes(tmp_path, capsys):
    assert main(["data", "synth", "modes", "--out", str(tmp_path / "m"), "--n", "5"]) == 0
    assert "modes: wrote 5 images" in capsys.readouterr().out
    assert len((tmp_path / "m" / "labels.csv").read_text().splitlines()) == 6


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.mark.parametrize("size", [32, 64])
def test_classifier_recognises_held_out_modes_at_both_sizes(classifier, size):
    images, labels = synthetic.render_modes(400, size=size, seed=HELD_OUT_SEED)
    with torch.no_grad():
        predicted = classifier(as_tensor(images)).argmax(1)
    assert (predicted == torch.from_numpy(labels)).double().mean() >= 0.98
    scores = modes_classifier.mode_scores(as_tensor(images), classifier)
    assert scores["coverage"] == 16 and scores["recognised"] > 0.95
    assert scores["kl_uniform"] < 0.05 and scores["frechet"] < 20


def test_scores_see_a_collapsed_or_broken_generator(classifier):
    images, labels = synthetic.render_modes(800, size=32, seed=HELD_OUT_SEED)
    images = as_tensor(images)
    half = modes_classifier.mode_scores(images[torch.from_numpy(labels) < 8], classifier)
    assert half["coverage"] == 8 and half["kl_uniform"] == pytest.approx(np.log(2), abs=0.1)
    # A couple of stray samples of a mode do not cover it (under MIN_SHARE).
    mostly_one = torch.cat([images[torch.from_numpy(labels) == 0], images[:2]])
    assert modes_classifier.mode_scores(mostly_one, classifier)["coverage"] <= 3
    noise = modes_classifier.mode_scores(torch.rand(300, 3, 32, 32) * 2 - 1, classifier)
    assert noise["coverage"] == 0 and noise["recognised"] < 0.05
    assert noise["frechet"] > 100
    flat = modes_classifier.mode_scores(torch.zeros(50, 3, 32, 32), classifier)
    assert flat["recognised"] == 0 and flat["kl_uniform"] == pytest.approx(np.log(16))
    # Blurred shapes (a GAN's half-learnt samples) are mostly not recognised with confidence.
    blurred = torch.nn.functional.avg_pool2d(images, 9, 1, 4, count_include_pad=False)
    assert modes_classifier.mode_scores(blurred, classifier)["recognised"] < 0.5


def test_classifier_is_cached_and_reloads_identically(cache, classifier, tmp_path):
    assert modes_classifier.cache_path(cache).is_file()
    images = as_tensor(synthetic.render_modes(8, seed=HELD_OUT_SEED)[0])
    with torch.no_grad():
        torch.testing.assert_close(modes_classifier.load_classifier(cache)(images),
                                   classifier(images))  # fmt: skip
    with pytest.raises(FileNotFoundError):
        modes_classifier.load_classifier(tmp_path, train_if_missing=False)


def test_classifier_needs_rgb():
    with pytest.raises(ValueError, match="RGB"):
        modes_classifier.to_modes_input(torch.zeros(1, 1, 32, 32))


# --- DCGAN options against mode collapse (minibatch stddev, spectral norm) -------------------


def test_minibatch_stddev_appends_each_groups_spread():
    mbstd = layers.MinibatchStdDev(group_size=4)
    x = torch.randn(8, 3, 4, 4)
    out = mbstd(x)
    assert out.shape == (8, 4, 4, 4)
    torch.testing.assert_close(out[:, :3], x)
    # Groups are strided: images 0, 2, 4, 6 form one group, 1, 3, 5, 7 the other.
    for member in (0, 1):
        group = x[member::2]
        expected = group.std(dim=0, unbiased=False).mean()
        torch.testing.assert_close(out[member::2, 3], expected.expand(4, 4, 4), atol=1e-5, rtol=0)
    same = mbstd(x[:1].expand(8, -1, -1, -1))
    assert same[:, 3].abs().max() < 1e-3  # a collapsed batch has no spread
    assert out[:, 3].min() > 0.5  # a varied one does


def test_minibatch_stddev_group_falls_back_to_a_divisor_of_the_batch():
    x = torch.randn(6, 2, 3, 3)
    out = layers.MinibatchStdDev(4)(x)  # groups of 3
    torch.testing.assert_close(out[0, 2, 0, 0], x[0::2].std(0, unbiased=False).mean())
    assert layers.MinibatchStdDev(4)(x[:1])[:, 2].abs().max() < 1e-3  # one image: no spread
    with pytest.raises(ValueError):
        layers.MinibatchStdDev(0)


def test_minibatch_stddev_lets_the_score_depend_on_the_rest_of_the_batch():
    p = dcgan.DCGANConfig(d_mbstd_group=4, g_width=4, d_width=4, latent_dim=8)
    D = dcgan.build(p, DataConfig(size=16, channels=3))["D"].eval()
    assert any(isinstance(m, layers.MinibatchStdDev) for m in D.modules())
    x = torch.randn(4, 3, 16, 16)
    varied = D(x)
    collapsed = D(torch.cat([x[:1], x[:1], x[:1], x[:1]]))
    assert varied.shape == (4,) and not torch.allclose(varied[0], collapsed[0])
    assert dcgan.graph_safe(p)  # no host-side decision: CUDA-graph replay stays allowed


def test_spectral_norm_holds_every_d_layer_near_unit_gain():
    p = dcgan.DCGANConfig(d_spectral_norm=True, g_width=4, d_width=8, latent_dim=8)
    D = dcgan.build(p, DataConfig(size=16, channels=3))["D"]
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    for _ in range(30):  # power iterations run in training forwards
        D(torch.randn(4, 3, 16, 16))
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)
    assert not dcgan.graph_safe(p)  # its buffers change inside forwards: replay not risked


def test_spectral_norm_d_state_round_trips():
    p = dcgan.DCGANConfig(d_spectral_norm=True, d_mbstd_group=2, g_width=4, d_width=4)
    data = DataConfig(size=16, channels=3)
    D = dcgan.build(p, data)["D"]
    D(torch.randn(4, 3, 16, 16))
    again = dcgan.build(p, data)["D"]
    again.load_state_dict(D.state_dict())
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(again.eval()(x), D.eval()(x))


@pytest.mark.parametrize("options", [{"d_mbstd_group": 4}, {"d_spectral_norm": True},
                                     {"d_mbstd_group": 4, "d_spectral_norm": True,
                                      "loss": "hinge"}])  # fmt: skip
def test_options_train_in_the_loops_step_runner(options):
    """Through the loop's step runner (autocast on CPU in bf16, channels-last), D still learns."""
    from genart.train import graphs

    # Both nets at the paper's rate: with bce's auto rates G's faster steps keep D's loss level
    # over these 20 steps, which says nothing about the step runner.
    p = dcgan.DCGANConfig(g_width=8, d_width=8, latent_dim=16, lr_g=2e-4, lr_d=2e-4, **options)
    torch.manual_seed(0)
    nets = {k: v.to(memory_format=torch.channels_last)
            for k, v in dcgan.build(p, DataConfig(size=16, channels=3)).items()}  # fmt: skip
    opts = dcgan.optimizers(nets, p)
    ctx = StepContext()
    step = graphs.step_runner(dcgan.SPEC, nets, opts, p, ctx, torch.device("cpu"), 1,
                              torch.bfloat16, "auto")  # fmt: skip
    real = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    batch = {"image": real.contiguous(memory_format=torch.channels_last)}
    losses = []
    for ctx.step in range(20):
        losses.append(float(step(batch)["loss_d"]))
    assert all(np.isfinite(losses)) and sum(losses[-3:]) < sum(losses[:3]), losses


def test_dcgan_evaluate_adds_mode_scores_when_asked(cache, monkeypatch):
    monkeypatch.setenv("GENART_CACHE", str(cache))
    data = DataConfig(size=32, channels=3)
    images, _ = synthetic.render_modes(64, size=32, seed=HELD_OUT_SEED)
    reference = {"image": torch.from_numpy(images).permute(0, 3, 1, 2)}
    p = dcgan.DCGANConfig(g_width=4, d_width=4, latent_dim=8, eval_modes=True)
    scores = dcgan.evaluate(dcgan.build(p, data), p, reference)
    assert {"swd", "modes_coverage", "modes_recognised", "modes_frechet"} <= set(scores)
    assert scores["modes_coverage"] <= 2  # an untrained generator draws no mode
    # KID against the run's real images in the judge's features: far for an untrained G, near 0
    # for other real images.
    assert scores["kid_modes"] > 10 * scores["kid_modes_std"] > 0
    others = torch.from_numpy(synthetic.render_modes(64, size=32, seed=HELD_OUT_SEED + 1)[0])
    judge = modes_classifier.load_classifier(cache)
    same = dcgan._judge_kid(reference["image"], others.permute(0, 3, 1, 2), "modes", judge)
    assert abs(same["kid_modes"]) < scores["kid_modes"] / 20
    plain = dcgan.DCGANConfig(g_width=4, d_width=4, latent_dim=8)
    assert not any(k.startswith("modes_") for k in dcgan.evaluate(dcgan.build(plain, data),
                                                                  plain, reference))  # fmt: skip


def test_modes_recipe_trains_the_benchmarked_dcgan():
    from pathlib import Path

    from genart import config

    recipe = Path(__file__).resolve().parents[2] / "jobs" / "dcgan-modes.yaml"
    cfg = config.load(recipe=recipe)
    assert cfg.model == "dcgan" and cfg.data.size == 32 and cfg.params.eval_modes
    p = cfg.params
    assert (p.loss, p.lr_g, p.lr_d, p.d_mbstd_group, p.kernel) == ("bce", 2e-4, 1e-4, 8, 5)
