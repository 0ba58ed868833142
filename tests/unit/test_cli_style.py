"""``genart stylize gatys|fast`` and ``genart dream`` through ``genart.cli.main`` (no Ray)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from genart import config
from genart import export as exports
from genart.cli import main, style
from genart.images import read, read_tensor, to_uint8
from genart.models import fast_style
from genart.models.deepdream import DreamConfig
from genart.models.gatys import GatysConfig
from genart.models.layers import forward_any_size
from genart.train import checkpoint
from genart.vgg import RANDOM_NOTE

FAST = ["--vgg-weights", "random", "--iterations", "4"]
SHALLOW = ["--content-layers", "relu2_2", "--style-layers", "relu1_1", "relu2_1"]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    for name, shape in {"content": (30, 44, 3), "style": (36, 36, 3), "other": (20, 50, 3)}.items():
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


@pytest.mark.parametrize(("table", "kind"), [(style.GATYS_FLAGS, GatysConfig),
                                             (style.DREAM_FLAGS, DreamConfig)])  # fmt: skip
def test_every_config_field_has_exactly_one_flag(table, kind):
    assert list(table) == [field.name for field in dataclasses.fields(kind)]


def test_gatys_writes_png_json_and_intermediates(pictures, tmp_path, capsys):
    out = tmp_path / "result.png"
    argv = ["stylize", "gatys", "--content", str(pictures / "content.png"), "--style",
            str(pictures / "style.png"), str(pictures / "other.png"), "--style-blend", "3", "1",
            "--output", str(out), "--size", "48", "--save-every", "2", "--log-every", "2",
            "--scales", "2", "--preserve-color", "yiq", *FAST, *SHALLOW]  # fmt: skip
    assert main(argv) == 0
    assert Image.open(out).size == (48, 33)  # long side 48, aspect of 44x30 kept
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["vgg_weights"] == RANDOM_NOTE
    assert info["config"]["style_blend"] == [3.0, 1.0] and info["config"]["iterations"] == 4
    assert info["config"]["preserve_color"] == "yiq" and info["sizes"] == [[16, 24], [33, 48]]
    assert set(info["losses"]) == {"content", "style", "tv", "total"}
    frames = sorted(p.name for p in tmp_path.glob("result-s*.png"))
    assert frames == [f"result-s{s}-{i:05d}.png" for s in (0, 1) for i in (2, 4)]
    printed = capsys.readouterr()
    assert "scale 2/2 33x48 iter    4" in printed.out and "content" in printed.out
    assert "not ImageNet" in printed.err


def test_bad_settings_and_missing_weights_exit_2(pictures, tmp_path, capsys):
    base = ["stylize", "gatys", "--content", str(pictures / "content.png"), "--style",
            str(pictures / "style.png"), "--output", str(tmp_path / "x.png")]  # fmt: skip
    assert main([*base, *FAST, "--optimizer", "sgd"]) == 2
    assert "gatys.optimizer" in capsys.readouterr().err
    assert main([*base, "--vgg-weights", str(tmp_path / "vgg19.pth")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "vgg19.pth") in err and "--vgg-weights random" in err


def test_dream_writes_result_frames_and_json(pictures, tmp_path):
    out = tmp_path / "dream.png"
    argv = ["dream", "--input", str(pictures / "content.png"), "--output", str(out), "--size",
            "64", "--layers", "relu2_2", "relu2_1:3", "--octaves", "2", "--iterations", "3",
            "--jitter", "4", "--vgg-weights", "random"]  # fmt: skip
    assert main(argv) == 0
    assert Image.open(out).size == (64, 44)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["vgg_weights"] == RANDOM_NOTE and info["config"]["layers"] == [
        "relu2_2",
        "relu2_1:3",
    ]
    assert info["objective"]["result"] > info["objective"]["input"]
    assert [Image.open(f).size for f in info["frames"]] == [(46, 31), (64, 44)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, pictures):
    """A fresh fast_style network exported as ``genart export`` does."""
    root = tmp_path_factory.mktemp("fast")
    cfg = config.load("fast_style", overrides=[
        f"fast_style.style_image={pictures / 'style.png'}", "fast_style.width=8",
        "fast_style.residual_blocks=1", "fast_style.vgg_weights=random"])  # fmt: skip
    torch.manual_seed(0)
    nets = fast_style.build(cfg.params)
    state = {"step": 0, "nets": {name: net.state_dict() for name, net in nets.items()}}
    checkpoint.write(root / "ckpt", state, cfg, [])
    exports.from_checkpoint(str(root / "ckpt"), str(root / "export"))
    return root / "export", nets["G"]


def test_fast_stylizes_one_non_square_image(pictures, exported, tmp_path):
    model, net = exported
    out = tmp_path / "fast.png"
    argv = ["stylize", "fast", "--model", str(model), "--input", str(pictures / "other.png"),
            "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    got = np.asarray(Image.open(out))
    assert got.shape == (20, 50, 3)
    expected = forward_any_size(net, read_tensor(pictures / "other.png")[None])
    assert np.abs(got.astype(int) - to_uint8(expected[0]).astype(int)).max() <= 1


def test_each_image_verb_refuses_another_familys_export(pictures, exported, capsys):
    """`translate` given a fast_style export (and `stylize fast` given a translation one) ends on
    one line naming the model, not with a traceback from options meant for another pipeline."""
    model, _ = exported
    image = str(pictures / "other.png")
    assert main(["translate", str(model), "--input", image, "--output", "unused"]) == 2
    err = capsys.readouterr().err
    assert "holds a 'fast_style' model; this takes cyclegan, pix2pix" in err
    assert "Traceback" not in err


def test_fast_strength_and_preserve_color_flags(pictures, exported, tmp_path):
    model, _ = exported
    source = pictures / "other.png"
    argv = ["stylize", "fast", "--model", str(model), "--input", str(source)]
    assert main([*argv, "--output", str(tmp_path / "zero.png"), "--strength", "0"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "zero.png")), read(source))
    assert main([*argv, "--output", str(tmp_path / "full.png")]) == 0
    assert main([*argv, "--output", str(tmp_path / "kept.png"), "--preserve-color", "yiq"]) == 0
    full, kept = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("full", "kept"))
    assert full.shape == kept.shape and not np.array_equal(full, kept)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_bad_strength_is_one_line_before_any_work(pictures, exported, tmp_path, capsys, value):
    model, _ = exported
    fast = ["stylize", "fast", "--model", str(model), "--input", str(pictures / "other.png"),
            "--output", str(tmp_path / "x.png"), "--strength", value]  # fmt: skip
    gatys = ["stylize", "gatys", "--content", str(pictures / "content.png"), "--style",
             str(pictures / "style.png"), "--output", str(tmp_path / "y.png"), *FAST,
             "--strength", value]  # fmt: skip
    for argv in (fast, gatys):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"genart: error: strength must be a number in [0, 1], got {float(value)}\n"
    assert not list(tmp_path.iterdir())
