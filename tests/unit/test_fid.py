"""FID and KID (genart.fid, computed by torchmetrics) against independent computations, and the
Inception v3 feature network loaded from a local file of random weights (never downloaded)."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision
from PIL import Image

from genart import fid, inception, metrics
from genart.cli import main
from genart.pretrained import WeightsNotFound


@pytest.fixture(scope="module")
def sets() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    fake = rng.normal(size=(200, 8)) * 2 + 0.5
    return torch.from_numpy(real).float(), torch.from_numpy(fake).float()


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def numpy_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 of the whole sets under the kernel (x.y / d + 1)^3 (Bińkowski et al.)."""
    kernel = lambda x, y: (x @ y.T / a.shape[1] + 1) ** 3  # noqa: E731
    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    m, n = len(a), len(b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def test_fid_agrees_with_scipy_and_with_the_judges_frechet(sets):
    real, fake = sets
    expected = scipy_frechet(real.double().numpy(), fake.double().numpy())
    assert fid.distances(real, fake)["fid"] == pytest.approx(expected, rel=1e-3)
    assert metrics.frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)


def test_kid_over_whole_sets_agrees_with_the_unbiased_mmd(sets, monkeypatch):
    real, fake = sets[0][:150], sets[1][:150]  # subsets of all 150: every subset is the set
    monkeypatch.setattr(fid, "KID_SUBSETS", 3)
    found = fid.distances(real, fake)
    expected = numpy_kid(real.double().numpy(), fake.double().numpy())
    assert found["kid"] == pytest.approx(expected, rel=1e-3)
    assert found["kid_std"] == pytest.approx(0.0, abs=1e-3 * abs(expected))


def test_whole_set_kid_is_the_unbiased_mmd_of_two_equal_sets(sets):
    real, fake = sets[0][:150], sets[1][:150]
    expected = numpy_kid(real.double().numpy(), fake.double().numpy())
    assert fid.whole_set_kid(real, fake) == pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="two sets"):
        fid.whole_set_kid(real, fake[:100])


def test_kid_subsets_are_seeded_and_leave_the_global_rng_alone(sets):
    real, fake = sets
    state = torch.random.get_rng_state()
    first, again = fid.distances(real, fake, seed=3), fid.distances(real, fake, seed=3)
    assert first == again and first["kid_std"] > 0  # 200 of 300 real: subsets differ
    assert torch.equal(torch.random.get_rng_state(), state)
    assert fid.distances(real, fake, seed=4)["kid"] != first["kid"]


def test_distances_stay_local_in_a_distributed_group(sets, tmp_path, monkeypatch):
    """In a Ray Train run only rank 0 scores: a gather across the group would wait for ranks
    that never join. In a group (of one here), nothing may be gathered."""
    import torch.distributed as dist

    def gather(*args, **kwargs):
        raise AssertionError("gathered across the process group")

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)  # fmt: skip
    monkeypatch.setattr(dist, "all_gather", gather)
    try:
        found = fid.distances(*sets)
    finally:
        dist.destroy_process_group()
    assert found == fid.distances(*sets)


def test_scores_are_named_for_their_feature_space_and_take_uint8_images():
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (20, 3, 8, 8), generator=gen, dtype=torch.uint8)
    fake = torch.randint(0, 128, (20, 3, 8, 8), generator=gen, dtype=torch.uint8)
    features = lambda x: x.flatten(1)[:, :6]  # noqa: E731
    digits = fid.scores(real, fake, "digits", features)
    assert list(digits) == ["frechet_digits", "kid_digits", "kid_digits_std"]
    floats = fid.scores(real.float() / 127.5 - 1, fake.float() / 127.5 - 1, "inception", features)
    assert list(floats) == ["fid_inception", "kid_inception", "kid_inception_std"]
    assert floats["fid_inception"] == pytest.approx(digits["frechet_digits"], rel=1e-6)
    assert digits["frechet_digits"] > 0.1  # darker fake images: far apart
    with pytest.raises(ValueError, match="valid: inception, digits, modes"):
        fid.extractor("vgg")


# --- Inception v3 from a local file ---------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """torchvision's Inception v3 state_dict (auxiliary classifier included, as published) with
    seeded random weights, under torchvision's file name."""
    torch.manual_seed(1)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    state = net.state_dict()
    path = tmp_path_factory.mktemp("weights") / "inception_v3_google-0cc3c7bd.pth"
    torch.save(state, path)
    return path, state


def test_inception_loads_a_torchvision_file_and_gives_2048_pool_features(inception_file):
    path, state = inception_file
    net = inception.load_inception(str(path))
    for key, value in net.net.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert net.note == f"imagenet ({path})" and net.net.AuxLogits is None
    images = torch.rand(3, 1, 40, 40) * 2 - 1  # grey, small: widened and resized to 299
    features = net(images)
    assert features.shape == (3, inception.FEATURES) and torch.isfinite(features).all()
    # Pool features: what the network computes before its (removed) ImageNet classifier.
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    reference.load_state_dict(state)
    reference.fc = torch.nn.Identity()
    resized = torch.nn.functional.interpolate(
        images.expand(-1, 3, -1, -1), (299, 299), mode="bilinear", antialias=True
    )
    torch.testing.assert_close(features, reference.eval()(resized))


def test_inception_weights_from_the_hub_cache_and_errors(inception_file, tmp_path, monkeypatch):
    path, _ = inception_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFound, match="--inception-weights /path/to/"):
        inception.load_inception("auto")  # GENART_OFFLINE=1 in tests: nothing downloads
    cache = inception.pretrained.hub_cache_path(inception.ARCH)
    cache.parent.mkdir(parents=True)
    cache.symlink_to(path)
    assert inception.load_inception("auto").note == f"imagenet ({cache})"
    vgg_file = tmp_path / "vgg.pth"
    torch.save({"0.weight": torch.zeros(1)}, vgg_file)
    with pytest.raises(ValueError, match="does not hold Inception v3 weights"):
        inception.load_inception(str(vgg_file))


def test_random_inception_is_seeded_and_its_features_are_finite():
    """With their initial batch-norm statistics, random weights give features near 1e11, whose
    cubes overflow KID's float32 kernel; calibrated, they stay small."""
    net = inception.load_inception("random")
    assert net.note == inception.RANDOM_NOTE
    images = torch.stack([torch.zeros(3, 32, 32), torch.rand(3, 32, 32) * 2 - 1])
    features = net(images)
    assert features.abs().max() < 1e4 and not torch.allclose(features[0], features[1])
    torch.testing.assert_close(inception.load_inception("random")(images), features)


def write_pngs(folder, count: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_cli_eval_fid_scores_folders_with_given_inception_weights(inception_file, tmp_path, capsys):
    path, _ = inception_file
    write_pngs(tmp_path / "real", 3, seed=0)
    write_pngs(tmp_path / "fake", 4, seed=1)
    out = tmp_path / "fid.json"
    argv = ["eval", "fid", str(tmp_path / "real"), str(tmp_path / "fake"), "--size", "16"]
    assert main([*argv, "--inception-weights", str(path), "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert list(saved["metrics"]) == ["fid_inception", "kid_inception", "kid_inception_std"]
    assert saved["n"] == 3 and saved["inception_weights"] == f"imagenet ({path})"
    assert "fid_inception" in capsys.readouterr().out
    assert main([*argv, "--inception-weights", str(tmp_path / "none.pth")]) == 2
    assert "--inception-weights /path/to/" in capsys.readouterr().err
