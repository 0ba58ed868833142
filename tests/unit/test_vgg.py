"""The VGG loss network: layer names, truncation, freezing, pooling, and where weights come from."""

import pytest
import torch
from torch import nn

from genart import pretrained
from genart import vgg as vgg_module
from genart.pretrained import WeightsNotFound
from genart.vgg import RANDOM_NOTE, layer_names, load_vgg


def test_layer_names_follow_the_papers_and_cover_the_architecture():
    names16, names19 = layer_names("vgg16"), layer_names("vgg19")
    assert names16[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert len(names16) == 31 and len(names19) == 37  # torchvision's features lengths
    assert [n for n in names16 if n.startswith("relu4")] == ["relu4_1", "relu4_2", "relu4_3"]
    assert "relu5_4" in names19 and "relu5_4" not in names16
    assert sum(n.startswith("pool") for n in names19) == 5


def test_outputs_shapes_truncation_and_freezing():
    net = load_vgg("vgg16", "random", layers=("relu2_2", "relu1_2"))
    assert len(net.body) == layer_names("vgg16").index("relu2_2") + 1  # nothing deeper is built
    out = net(torch.rand(2, 3, 32, 48) * 2 - 1)
    assert set(out) == {"relu1_2", "relu2_2"}
    assert out["relu1_2"].shape == (2, 64, 32, 48)
    assert out["relu2_2"].shape == (2, 128, 16, 24)  # non-square sizes keep their aspect
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    # A shallower request stops early and returns only what was asked.
    assert set(net(torch.zeros(1, 3, 8, 8), layers=("relu1_2",))) == {"relu1_2"}
    with pytest.raises(ValueError, match="not in this network"):
        net(torch.zeros(1, 3, 8, 8), layers=("relu3_1",))


def test_conv_outputs_are_not_overwritten_by_the_inplace_relu():
    out = load_vgg("vgg16", "random", layers=("conv1_1", "relu1_1"))(torch.rand(1, 3, 8, 8))
    assert (out["conv1_1"] < 0).any()
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp_min(0))


def test_inputs_in_minus_one_one_are_imagenet_normalised_inside():
    net = load_vgg("vgg16", "random", layers=("conv1_1",))
    images = torch.rand(1, 3, 8, 8) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    conv = net.body[0]
    expected = conv(((images + 1) / 2 - mean) / std)
    torch.testing.assert_close(net(images)["conv1_1"], expected, rtol=1e-5, atol=1e-5)


def test_random_weights_are_seeded_and_a_prefix_of_the_deeper_network():
    shallow = load_vgg("vgg19", "random", layers=("relu2_1",))
    deep = load_vgg("vgg19", "random", layers=("relu5_4",))
    for key, value in shallow.body.state_dict().items():
        assert torch.equal(value, deep.body.state_dict()[key]), key
    assert shallow.metadata["vgg_weights"] == RANDOM_NOTE and shallow.is_random
    assert "not ImageNet" in RANDOM_NOTE


def test_average_pooling_replaces_max_pooling():
    net = load_vgg("vgg19", "random", layers=("relu3_1",), pooling="avg")
    kinds = {type(m) for m in net.body}
    assert nn.AvgPool2d in kinds and nn.MaxPool2d not in kinds
    assert net.metadata["vgg_pooling"] == "avg"


def test_unknown_layers_and_architectures_are_rejected():
    with pytest.raises(ValueError, match="relu9_9"):
        load_vgg("vgg16", "random", layers=("relu9_9",))
    with pytest.raises(ValueError, match="vgg16"):
        load_vgg("vgg11", "random")


def _torchvision_style_file(tmp_path, arch="vgg16"):
    """A state_dict with torchvision's keys holding known features (up to conv3_1: small)."""
    features = load_vgg(arch, "random", layers=("relu3_1",)).body.state_dict()
    state = {f"features.{k}": v + 1.0 for k, v in features.items()}  # differs from "random"
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored: only features are loaded
    path = tmp_path / pretrained.hub_cache_path(arch).name
    torch.save(state, path)
    return path, state


def test_weights_from_a_local_file_round_trip(tmp_path):
    path, state = _torchvision_style_file(tmp_path)
    net = load_vgg("vgg16", str(path), layers=("relu3_1",))
    for key, value in net.body.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    assert net.metadata["vgg_weights"] == f"imagenet ({path})" and not net.is_random
    # What a server shows of it: the file, not where it lies on the server.
    assert vgg_module.public_metadata(net.metadata)["vgg_weights"] == f"imagenet ({path.name})"
    # A features-only state_dict ("0.weight" ...) loads the same.
    features_only = tmp_path / "features.pth"
    torch.save({k.removeprefix("features."): v for k, v in state.items() if "features" in k},
               features_only)  # fmt: skip
    again = load_vgg("vgg16", str(features_only), layers=("relu3_1",))
    assert torch.equal(again.body[0].weight, net.body[0].weight)


def test_weights_for_another_architecture_fail_clearly(tmp_path):
    path, _ = _torchvision_style_file(tmp_path, "vgg16")
    with pytest.raises(ValueError, match="does not hold weights"):
        load_vgg("vgg19", str(path), layers=("relu5_4",))


def test_auto_finds_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = pretrained.hub_cache_path("vgg16")
    assert cache == tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    cache.parent.mkdir(parents=True)
    path, state = _torchvision_style_file(cache.parent)
    assert path == cache
    net = load_vgg("vgg16", "auto", layers=("relu1_1",))
    assert torch.equal(net.body[0].weight, state["features.0.weight"])


def test_missing_weights_name_every_place_looked_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFound) as err:
        load_vgg("vgg19", "auto")
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    for hint in ("--vgg-weights /path/to/", "s3://", "--vgg-weights random", "TORCH_HOME"):
        assert hint in message
    with pytest.raises(WeightsNotFound, match="nowhere.pth"):
        load_vgg("vgg16", str(tmp_path / "nowhere.pth"))


@pytest.fixture
def s3(monkeypatch, tmp_path):
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="weights")
        yield client


def test_weights_from_s3_are_downloaded_once_into_the_cache(tmp_path, s3):
    path, state = _torchvision_style_file(tmp_path)
    s3.upload_file(str(path), "weights", "vgg/vgg16-397923af.pth")
    uri = "s3://weights/vgg/vgg16-397923af.pth"
    net = load_vgg("vgg16", uri, layers=("relu1_1",))
    assert torch.equal(net.body[0].weight, state["features.0.weight"])
    assert net.metadata["vgg_weights"] == f"imagenet ({uri})"
    cached = tmp_path / "torch" / "hub" / "genart-s3" / "weights" / "vgg" / path.name
    assert cached.read_bytes() == path.read_bytes()
    with pytest.raises(WeightsNotFound, match="s3://weights/missing.pth"):
        load_vgg("vgg16", "s3://weights/missing.pth")
