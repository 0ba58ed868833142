"""AdaIN (Huang & Belongie 2017): the statistics it transfers, the decoder, training on one batch,
the pipeline from an export (alpha, blends), ONNX and ``genart stylize adain``. No Ray."""

import asyncio
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from steps import train_on_batch
from test_http_adain import replica_of

from genart import config, registry
from genart import export as exports
from genart.cli import main
from genart.controls import to_luma_chroma
from genart.data import datasets, synthetic
from genart.errors import ConfigError, InputError
from genart.images import from_uint8, to_uint8
from genart.models import adain
from genart.models.layers import ConvNormAct, UpsampleConv, pad_to_multiple
from genart.pipelines.adain import AdaINPipeline
from genart.registry import StepContext
from genart.train import checkpoint
from genart.vgg import RANDOM_NOTE

TINY = ["adain.vgg_weights=random", "adain.width=8"]


def features(n=2, c=6, h=5, w=7, seed=0, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g) * scale + shift


def picture(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fresh decoder exported as ``genart export`` does, and the decoder itself."""
    root = tmp_path_factory.mktemp("adain")
    cfg = config.load("adain", overrides=TINY)
    torch.manual_seed(0)
    nets = registry.trained("adain").build(cfg.params, cfg.data)
    # Variance-keeping weights: torch's default init shrinks the signal at every layer, and an
    # untrained decoder would then draw the same flat colour for any input.
    for m in nets["decoder"].modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    state = {"step": 0, "nets": {name: net.state_dict() for name, net in nets.items()}}
    checkpoint.write(root / "ckpt", state, cfg, [])
    exports.from_checkpoint(str(root / "ckpt"), str(root / "export"))
    return str(root / "export"), nets["decoder"].eval()


@pytest.fixture(scope="module")
def pipe(exported):
    return AdaINPipeline.from_export(exported[0], "cpu")


def test_adain_gives_the_content_the_style_channel_statistics():
    content, style = features(seed=0), features(h=9, w=4, seed=1, scale=3.0, shift=2.0)
    out = adain.adain(content, style)
    mean, std = adain.channel_stats(out)
    s_mean, s_std = adain.channel_stats(style)
    torch.testing.assert_close(mean, s_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(std, s_std, atol=1e-4, rtol=1e-4)
    # The spatial pattern is the content's: normalising both gives the same maps.
    c_mean, c_std = adain.channel_stats(content)
    torch.testing.assert_close((out - mean) / std, (content - c_mean) / c_std, atol=1e-4, rtol=0)
    assert out.shape == content.shape


def test_blends_interpolate_the_targets_and_refuse_bad_weights():
    content, a, b = features(seed=0), features(seed=1, scale=2.0), features(seed=2, shift=1.0)
    torch.testing.assert_close(adain.blend(content, [a, b], [1, 0]), adain.adain(content, a))
    mixed = adain.blend(content, [a, b], [1, 3])  # normalised to 0.25, 0.75
    expected = 0.25 * adain.adain(content, a) + 0.75 * adain.adain(content, b)
    torch.testing.assert_close(mixed, expected)
    assert adain.blend_weights(2) == [0.5, 0.5]
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0]):
        with pytest.raises(InputError):
            adain.blend_weights(2, bad)


def test_decoder_mirrors_the_encoder_with_shared_layers_and_no_norm():
    decoder = adain.Decoder(width=8)
    kinds = [type(m) for m in decoder.body]
    assert kinds.count(UpsampleConv) == 3 and set(kinds) == {ConvNormAct, UpsampleConv}
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in decoder.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in decoder.modules())
    ups = [m for m in decoder.modules() if isinstance(m, torch.nn.Upsample)]
    assert {m.mode for m in ups} == {"nearest"}
    assert decoder(torch.randn(1, adain.FEATURES, 3, 5)).shape == (1, 3, 24, 40)


def test_spec_trains_and_exports_only_the_decoder():
    spec = registry.trained("adain")
    assert spec.export == ("decoder",) and (spec.metric, spec.mode) == ("adain", "min")
    cfg = config.load("adain", overrides=[*TINY, "adain.style_weight=3"])
    assert cfg.params.style_weight == 3.0 and cfg.params.lr == 1e-4  # the paper's Adam step
    assert set(spec.build(cfg.params, cfg.data)) == {"decoder"}
    with pytest.raises(ConfigError, match="adain.styles"):
        config.load("adain", overrides=["adain.styles=x"])
    with pytest.raises(ConfigError, match="alpha"):
        config.load("adain", overrides=["adain.alpha=1.5"])
    with pytest.raises(ConfigError, match="RGB"):
        spec.build(cfg.params, config.DataConfig(channels=1))


def test_the_dataset_needs_style_images(tmp_path):
    (tmp_path / "content").mkdir()
    cfg = config.load("adain", overrides=[f"data.uri={tmp_path}"])
    with pytest.raises(ConfigError, match="style"):
        datasets.content_style(cfg)


def test_train_step_lowers_the_loss_on_one_batch():
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for k in ("content", "style")}
    params = config.load("adain", overrides=[*TINY, "adain.lr=1e-3"]).params
    history, nets, _ = train_on_batch("adain", params, config.DataConfig(), batch, 12)
    first, last = history[0], history[-1]
    assert float(last["loss"]) < 0.9 * float(first["loss"])  # 1.62 -> 1.35 here
    assert set(last) == {"loss", "content", "style"}
    assert all(v.dim() == 0 and not v.requires_grad for v in last.values())
    torch.testing.assert_close(last["loss"], last["content"] + last["style"])
    # The encoder stays frozen and out of the nets: nothing of it is trained or checkpointed.
    assert not any(p.requires_grad for p in adain.encoder("random").parameters())
    scores = adain.evaluate(nets, params, batch)
    assert set(scores) == {"adain", "adain_content", "adain_style"}
    grid = adain.sample(nets, params, adain.sample_inputs(params, batch, 64))
    assert grid.shape == (2, 3, 32, 96) and grid.abs().max() <= 1


def test_train_step_under_bf16_autocast_keeps_fp32_losses():
    params = config.load("adain", overrides=TINY).params
    nets = adain.build(params)
    opts = adain.optimizers(nets, params)
    batch = {k: torch.rand(2, 3, 16, 16) * 2 - 1 for k in ("content", "style")}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        metrics = adain.train_step(nets, opts, batch, params, StepContext())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in metrics.values())


def test_pipeline_keeps_the_content_size_and_says_the_weights_are_random(pipe):
    assert pipe.describe()["encoder"]["vgg_weights"] == RANDOM_NOTE
    out = pipe(picture(20, 30, 0), [picture(24, 16, 1)], alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    with pytest.raises(InputError, match="alpha"):
        pipe(picture(16, 16, 0), [picture(16, 16, 1)], alpha=1.5)
    with pytest.raises(InputError, match="2 blend weights for 1 styles"):
        pipe(picture(16, 16, 0), [picture(16, 16, 1)], weights=[1, 2])


@pytest.mark.parametrize(
    ("content", "style"),
    [((8, 8), (64, 64)), ((8, 16), (16, 8)), ((16, 8), (8, 8)), ((24, 40), (3, 5))],
)
def test_images_down_to_the_served_minimum_side_are_stylised(pipe, content, style):
    # 8 px a side is the server's minimum; the decoder needs 16 (two relu4_1 positions for its
    # reflection padding), so small contents are padded up and the result cropped back.
    out = pipe(picture(*content, 0), [picture(*style, 1)])
    assert out.shape == (*content, 3) and out.dtype == np.uint8


def test_alpha_zero_decodes_the_content_features(pipe, exported):
    content = picture(20, 30, 0)
    got = pipe(content, [picture(16, 16, 1)], alpha=0.0)
    x = from_uint8(torch.from_numpy(content))[None]
    with torch.no_grad():
        fc = pipe.encoder(pad_to_multiple(x, adain.STRIDE), ("relu4_1",))["relu4_1"]
        expected = to_uint8(exported[1](fc)[0, :, :20, :30])
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert got.std() > 5  # a picture, not a flat colour: the comparison means something
    assert not np.array_equal(got, pipe(content, [picture(16, 16, 1)], alpha=1.0))


def test_blend_weights_pick_and_mix_styles(pipe):
    content, a, b = picture(16, 24, 0), picture(16, 16, 1), picture(32, 24, 2)
    np.testing.assert_array_equal(pipe(content, [a, b], weights=[1, 0]), pipe(content, [a]))
    assert not np.array_equal(pipe(content, [a, b], weights=[0.5, 0.5]), pipe(content, [a]))


def test_genart_onnx_writes_the_decoder_graph_checked_against_torch(exported, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    assert main(["onnx", exported[0], "--out", str(tmp_path)]) == 0
    path = tmp_path / "decoder.onnx"
    assert f"wrote {path} (max abs diff vs torch" in capsys.readouterr().out
    features = torch.rand(2, adain.FEATURES, 3, 5, generator=torch.Generator().manual_seed(1))
    (got,) = ort.InferenceSession(str(path)).run(None, {"image": features.numpy()})
    with torch.no_grad():
        expected = exported[1](features)  # sizes other than the export's probe: dynamic
    assert got.shape == (2, 3, 24, 40)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_cli_blends_two_styles_and_writes_what_it_did(exported, pipe, tmp_path, capsys):
    paths = []
    for name, (h, w, seed) in {"c": (20, 28, 0), "s1": (16, 16, 1), "s2": (24, 20, 2)}.items():
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(picture(h, w, seed)).save(paths[-1])
    out = tmp_path / "out" / "styled.png"
    argv = ["stylize", "adain", "--model", exported[0], "--content", str(paths[0]),
            "--style", str(paths[1]), "--style", str(paths[2]), "--blend", "1", "3",
            "--alpha", "0.8", "--output", str(out), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    got = np.asarray(Image.open(out))
    styles = [np.asarray(Image.open(p)) for p in paths[1:]]
    expected = pipe(np.asarray(Image.open(paths[0])), styles, alpha=0.8, weights=[1, 3])
    np.testing.assert_array_equal(got, expected)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["blend"] == [1.0, 3.0] and info["encoder"]["vgg_weights"] == RANDOM_NOTE
    assert "random" in capsys.readouterr().err
    argv[argv.index("--blend") + 2] = "-3"
    assert main(argv) == 2  # a user error: one line, no traceback
    assert "blend weights" in capsys.readouterr().err


def stylized(worker, *args) -> np.ndarray:
    """What the AdaIN deployment answers for the catalogue's model ``export``, decoded."""
    png = asyncio.run(worker.stylize("export", *args))
    return np.asarray(Image.open(io.BytesIO(png)))


def test_the_serve_deployment_stylises_uploaded_and_named_styles(exported, pipe, tmp_path):
    style = picture(24, 40, 3)
    Image.fromarray(style).save(tmp_path / "waves.png")
    # The replica's class, without Ray, over the catalogue the export lies in.
    worker = replica_of(Path(exported[0]).parent, styles={"waves": str(tmp_path / "waves.png")},
                        max_side=32)  # fmt: skip
    assert worker.describe()["styles"] == ["waves"] and worker.styles["waves"].shape == (19, 32, 3)
    content = picture(20, 28, 0)
    named = stylized(worker, content, "waves", 0.6)
    np.testing.assert_array_equal(named, pipe(content, [worker.styles["waves"]], alpha=0.6))
    np.testing.assert_array_equal(stylized(worker, content, style, 1.0), pipe(content, [style]))


def test_held_out_pairs_are_the_unseen_test_images(tmp_path):
    root = synthetic.generate("styles", tmp_path / "data", n=20, size=16, workers=1)
    cfg = config.load("adain", overrides=[*TINY, f"data.uri={root}", "data.size=16"])
    batch, split = datasets.content_style_held_out(cfg, 8)
    assert split == "test" and batch["content"].shape == batch["style"].shape == (2, 3, 16, 16)
    first = np.asarray(Image.open(root / "test" / "content" / "00000.png").convert("RGB"))
    assert np.array_equal(batch["content"][0].permute(1, 2, 0).numpy(), first)
    trained = np.asarray(Image.open(root / "content" / "00000.png").convert("RGB"))
    assert not np.array_equal(first, trained)
    # Without content/, training reads every image under data.uri: no split to hold out.
    shutil.copytree(root / "test", tmp_path / "bare" / "test")
    bare = config.load("adain", overrides=[*TINY, f"data.uri={tmp_path / 'bare'}"])
    assert datasets.content_style_held_out(bare, 8) is None


def test_evaluate_judges_every_style_weight_on_one_scale():
    g = torch.Generator().manual_seed(1)
    batch = {k: torch.rand(2, 3, 16, 16, generator=g) * 2 - 1 for k in ("content", "style")}
    nets = adain.build(config.load("adain", overrides=TINY).params)
    weighted = [config.load("adain", overrides=[*TINY, f"adain.style_weight={w}"]).params
                for w in (1.0, 100.0)]  # fmt: skip
    scores = [adain.evaluate(nets, params, batch) for params in weighted]
    assert scores[0] == scores[1]
    s = scores[0]
    judged = s["adain_content"] + adain.JUDGE_STYLE_WEIGHT * s["adain_style"]
    assert s["adain"] == pytest.approx(judged) and s["adain_style"] > 0


@pytest.mark.parametrize("space", ["ycbcr", "yiq"])
def test_preserve_color_keeps_the_contents_chroma(pipe, space):
    content, style = picture(20, 28, 0), [picture(16, 16, 1)]

    def chroma(image):
        return to_luma_chroma(from_uint8(torch.from_numpy(image))[None], space)[1]

    kept, styled = pipe(content, style, preserve_color=space), pipe(content, style)
    assert (chroma(kept) - chroma(content)).abs().median() < 0.01
    assert (chroma(styled) - chroma(content)).abs().median() > 0.02
    with pytest.raises(InputError, match="preserve_color must be one of none, ycbcr, yiq"):
        pipe(content, style, preserve_color="lab")


def test_cli_preserve_color_flag(exported, pipe, tmp_path):
    paths = [tmp_path / "c.png", tmp_path / "s.png"]
    for path, (h, w, seed) in zip(paths, [(20, 28, 0), (16, 16, 1)]):
        Image.fromarray(picture(h, w, seed)).save(path)
    out = tmp_path / "kept.png"
    argv = ["stylize", "adain", "--model", exported[0], "--content", str(paths[0]),
            "--style", str(paths[1]), "--preserve-color", "yiq", "--output", str(out),
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    content, style = (np.asarray(Image.open(p)) for p in paths)
    expected = pipe(content, [style], preserve_color="yiq")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    assert json.loads(out.with_suffix(".json").read_text())["preserve_color"] == "yiq"


def test_the_serve_deployment_preserves_colour_on_request(exported, pipe):
    worker = replica_of(Path(exported[0]).parent, max_side=32)
    content, style = picture(20, 28, 0), picture(16, 16, 1)
    kept = stylized(worker, content, style, 0.7, "ycbcr")
    expected = pipe(content, [style], alpha=0.7, preserve_color="ycbcr")
    np.testing.assert_array_equal(kept, expected)
