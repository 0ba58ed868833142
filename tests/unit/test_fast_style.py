"""Fast style (Johnson et al.): the transformer net, the registered spec, training, ONNX."""

from pathlib import Path

import numpy as np
import pytest
import torch
from exports import TINY_FAST_STYLE, make_export
from PIL import Image
from steps import train_on_batch

from genart import config, images, registry
from genart.data import datasets
from genart.errors import ConfigError
from genart.models import fast_style as fs
from genart.models.layers import ConvNormAct, ResidualBlock, UpsampleConv, forward_any_size
from genart.onnx_export import export_checked
from genart.pipelines.style import FastStylePipeline
from genart.registry import StepContext
from genart.vgg import RANDOM_NOTE

TINY = {"width": 8, "residual_blocks": 1, "style_size": 32, "vgg_weights": "random"}
SHALLOW = {"style_layers": ("relu1_2", "relu2_2"), "content_layer": "relu2_2"}


@pytest.fixture(scope="module")
def style_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("style") / "style.png"
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def params(style_path):
    return fs.FastStyleConfig(style_image=style_path, **TINY, **SHALLOW)


def batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, size, size, generator=g) * 2 - 1}


def test_transformer_net_is_built_from_the_shared_layers_and_keeps_size():
    net = fs.TransformerNet(width=8, residual_blocks=2)
    kinds = [type(m) for m in net.body]
    assert kinds.count(ResidualBlock) == 2 and kinds.count(UpsampleConv) == 2
    assert kinds[0] is ConvNormAct and kinds[-1] is ConvNormAct
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules())
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())
    out = net(torch.rand(2, 3, 24, 40) * 2 - 1)
    assert out.shape == (2, 3, 24, 40) and out.abs().max() <= 1
    assert fs.TransformerNet.stride == 4  # what forward_any_size pads to


def test_any_size_inference_by_reflection_padding():
    net = fs.TransformerNet(width=8, residual_blocks=1)
    images = torch.rand(1, 3, 30, 45) * 2 - 1
    out = forward_any_size(net, images)
    assert out.shape == (1, 3, 30, 45)
    # Where no padding is needed, it is exactly the net.
    square = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(forward_any_size(net, square), net(square))


def test_spec_is_registered_with_only_the_generator_as_a_net(style_path):
    spec = registry.get("fast_style")
    assert spec.dataset is datasets.images and spec.export == ("G",)
    assert (spec.metric, spec.mode) == ("perceptual", "min")
    cfg = config.load("fast_style", overrides=[f"fast_style.style_image={style_path}",
                      "fast_style.style_layers=relu1_2,relu2_2", "fast_style.width=8"])  # fmt: skip
    assert cfg.params.style_layers == ("relu1_2", "relu2_2") and cfg.params.width == 8
    nets = spec.build(cfg.params, cfg.data)
    assert set(nets) == {"G"}  # the VGG loss network is not checkpointed or exported
    assert all(key.startswith("body.") for key in nets["G"].state_dict())


def test_train_step_lowers_the_perceptual_loss(params):
    torch.manual_seed(0)
    nets = fs.build(params)
    opts = fs.optimizers(nets, params)
    data = batch()
    before = fs.evaluate(nets, params, data)["perceptual"]
    for _ in range(15):
        metrics = fs.train_step(nets, opts, data, params, StepContext())
    after = fs.evaluate(nets, params, data)
    assert after["perceptual"] < 0.8 * before
    assert set(metrics) == {"loss", "content", "style", "tv"}
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())
    total = metrics["content"] + metrics["style"] + metrics["tv"]
    torch.testing.assert_close(metrics["loss"], total)


def test_loss_network_is_cached_per_device_and_config(params):
    first = fs.perceptual_loss(params, torch.device("cpu"))
    assert fs.perceptual_loss(params, torch.device("cpu")) is first
    other = fs.FastStyleConfig(**{**params.__dict__, "style_weight": 1.0})
    assert fs.perceptual_loss(other, torch.device("cpu")) is not first
    assert first.vgg.metadata["vgg_weights"] == RANDOM_NOTE
    # Truncated at the deepest loss layer (relu2_2), and the style targets are fixed Grams.
    assert first.vgg.names[-1] == "relu2_2"
    assert first.grams["relu1_2"].shape == (1, 64, 64)


def test_train_step_under_bf16_autocast_keeps_fp32_losses(params):
    nets = fs.build(params)
    opts = fs.optimizers(nets, params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        metrics = fs.train_step(nets, opts, batch(2), params, StepContext())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in metrics.values())


def test_sample_shows_the_fixed_content_above_its_stylised_version(params):
    nets = fs.build(params)
    fixed = fs.sample_inputs(params, batch(4), 64)
    assert fixed.shape == (4, 3, 32, 32)
    grid = fs.sample(nets, params, fixed)
    assert grid.shape == (8, 3, 32, 32)
    torch.testing.assert_close(grid[:4], fixed)
    assert fs.sample_inputs(params, batch(12), 64).shape[0] == fs.SAMPLE_IMAGES


def test_missing_style_image_is_a_clear_error(params, tmp_path):
    missing = fs.FastStyleConfig(**{**params.__dict__, "style_image": str(tmp_path / "no.png")})
    with pytest.raises(FileNotFoundError, match="no.png"):
        fs.perceptual_loss(missing, torch.device("cpu"))
    unset = fs.FastStyleConfig(**{**params.__dict__, "style_image": ""})
    with pytest.raises(ConfigError, match="style_image"):
        fs.perceptual_loss(unset, torch.device("cpu"))


def test_read_image_resizes_the_long_side(style_path):
    image = images.read_tensor(style_path, 3, 28)
    assert image.shape == (3, 20, 28) and image.min() >= -1 and image.max() <= 1


def test_onnx_export_matches_torch_and_accepts_other_sizes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = fs.TransformerNet(width=8, residual_blocks=1)
    path = tmp_path / "G.onnx"
    diff = export_checked(net, path, torch.rand(1, 3, 32, 48) * 2 - 1)
    assert diff < 1e-4
    probe = torch.rand(2, 3, 24, 40) * 2 - 1  # dynamic batch, height and width
    (got,) = ort.InferenceSession(str(path)).run(None, {"image": probe.numpy()})
    np.testing.assert_allclose(got, net(probe).detach().numpy(), atol=1e-4)


# --- the small CPU network (fast_style.arch: lite) ------------------------------------------


def parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_lite_arch_is_a_small_network_and_johnson_stays_the_default():
    default = fs.FastStyleConfig()
    assert default.arch == "johnson"
    johnson = fs.build(default)["G"]
    assert type(johnson) is fs.TransformerNet and parameters(johnson) == 1_677_635
    lite = fs.build(fs.FastStyleConfig(arch="lite"))["G"]
    assert isinstance(lite, fs.LiteTransformerNet) and parameters(lite) <= 200_000
    assert lite.stride == 4  # what forward_any_size pads to
    # Built from the shared layers, and no transposed convolution.
    kinds = {type(m) for m in lite.body}
    assert ResidualBlock in kinds and UpsampleConv in kinds and ConvNormAct in kinds
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in lite.modules())


@pytest.mark.parametrize("size", [(32, 48), (31, 45), (7, 5)])
def test_lite_output_has_the_input_size_at_any_size(size):
    net = fs.LiteTransformerNet(width=8, residual_blocks=1)
    images = torch.rand(2, 3, *size) * 2 - 1
    out = forward_any_size(net, images)
    assert out.shape == images.shape and out.abs().max() <= 1


def test_lite_train_step_changes_the_weights(params):
    lite = fs.FastStyleConfig(**{**params.__dict__, "arch": "lite"})
    torch.manual_seed(0)
    before = fs.build(lite)["G"].state_dict()
    history, nets, _ = train_on_batch("fast_style", lite, config.DataConfig(), batch(2), 2)
    assert isinstance(nets["G"], fs.LiteTransformerNet)
    assert all(torch.isfinite(m["loss"]) for m in history)
    after = nets["G"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_lite_export_round_trips_through_the_pipeline(tmp_path):
    export = make_export(tmp_path, "fast_style", [*TINY_FAST_STYLE, "fast_style.arch=lite"])
    pipe = FastStylePipeline.from_export(export, device="cpu")
    assert isinstance(pipe.nets["G"], fs.LiteTransformerNet)
    assert pipe.cfg.params.arch == "lite"
    photo = np.random.default_rng(0).integers(0, 256, (33, 47, 3), np.uint8)
    (styled,) = pipe([photo])
    assert styled.shape == photo.shape and styled.dtype == np.uint8
    # The export carries the lite net's checked graph, which the CPU pipeline runs.
    assert pipe.describe()["backend"] == "onnxruntime"


def test_lite_recipe_trains_the_lite_network():
    recipe = Path(__file__).resolve().parents[2] / "jobs" / "fast-style-lite.yaml"
    cfg = config.load(recipe=recipe)
    assert cfg.model == "fast_style" and cfg.params.arch == "lite"
    assert isinstance(fs.build(cfg.params)["G"], fs.LiteTransformerNet)


def test_unknown_arch_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"'fast_style\.arch' = 'big' is not one of.*lite"):
        config.load("fast_style", overrides=["fast_style.arch=big"])
