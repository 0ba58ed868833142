"""The inference layer: one pipeline per family, built from an export or a config, called with
uint8 images; ``pipelines.load`` picks the pipeline an export's family names."""

import asyncio
import json

import numpy as np
import pytest
import torch

from genart import config, pipelines, registry
from genart import export as exports
from genart.controls import to_luma_chroma
from genart.errors import ConfigError, InputError
from genart.images import from_uint8
from genart.pipelines.dream import DreamPipeline
from genart.pipelines.gatys import GatysPipeline
from genart.pipelines.latent import LatentPipeline, latents
from genart.pipelines.style import FastStylePipeline
from genart.pipelines.translate import TranslationPipeline
from genart.train import checkpoint

TINY = {
    "dcgan": ["data.size=16", "data.channels=1", "dcgan.latent_dim=8", "dcgan.g_width=8",
              "dcgan.d_width=8"],
    "fast_style": ["fast_style.width=8", "fast_style.residual_blocks=1"],
    "pix2pix": ["data.size=32", "pix2pix.ngf=4", "pix2pix.ndf=4"],
    "cyclegan": ["data.size=32", "cyclegan.ngf=4", "cyclegan.ndf=4", "cyclegan.n_blocks=1"],
}  # fmt: skip
SMALL_GATYS = {"arch": "vgg16", "content_layers": ("relu2_2",),
               "style_layers": ("relu1_2", "relu2_2"), "iterations": 3}  # fmt: skip


def export(tmp_path, model: str) -> str:
    cfg = config.load(model, overrides=TINY[model])
    torch.manual_seed(0)
    nets = registry.trained(model).build(cfg.params, cfg.data)
    state = {"step": 0, "nets": {name: net.state_dict() for name, net in nets.items()}}
    checkpoint.write(tmp_path / f"{model}-ckpt", state, cfg, [])
    exports.from_checkpoint(str(tmp_path / f"{model}-ckpt"), str(tmp_path / model))
    return str(tmp_path / model)


def image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), np.uint8)


@pytest.mark.parametrize(
    ("model", "kind"),
    [("dcgan", LatentPipeline), ("fast_style", FastStylePipeline),
     ("pix2pix", TranslationPipeline), ("cyclegan", TranslationPipeline)],
)  # fmt: skip
def test_load_builds_the_pipeline_the_family_names(tmp_path, model, kind):
    pipe = pipelines.load(export(tmp_path, model), device="cpu")
    assert type(pipe) is kind
    assert pipe.cfg.model == model
    # What a server may show: no path of its files or its run, no training config.
    shown = pipe.describe()
    assert (shown["family"], shown["step"], shown["scores"]) == (model, 0, {})
    assert str(tmp_path) not in json.dumps(shown) and "config" not in shown


def test_from_export_refuses_another_family(tmp_path):
    with pytest.raises(ConfigError, match="holds a 'dcgan' model"):
        TranslationPipeline.from_export(export(tmp_path, "dcgan"))


def test_latent_pipeline_samples_walks_and_sums(tmp_path):
    pipe = LatentPipeline.from_export(export(tmp_path, "dcgan"), device="cpu")
    z = pipe.sample_latents([3, 4])
    assert torch.equal(z, latents([3, 4], 8))
    images = pipe(z)
    assert len(images) == 2 and images[0].shape == (16, 16, 1) and images[0].dtype == np.uint8
    assert pipe.walk_latents([1, 2, 3], steps=4).shape == (8, 8)
    sums = pipe.arithmetic_latents([1, 2], [3], [4])
    torch.testing.assert_close(sums[3], sums[0] - sums[1] + sums[2])
    with pytest.raises(ValueError, match="two seeds"):
        pipe.walk_latents([1], steps=4)


def test_image_pipelines_keep_each_images_size_and_channels(tmp_path):
    style = FastStylePipeline.from_export(export(tmp_path, "fast_style"), device="cpu")
    outputs = style([image(20, 30), image(17, 9), image(20, 30, seed=1)])
    assert [o.shape for o in outputs] == [(20, 30, 3), (17, 9, 3), (20, 30, 3)]
    translate = pipelines.load(export(tmp_path, "cyclegan"), device="cpu")
    grey_in = translate([image(24, 36, channels=1)], direction="BtoA")  # grey to an RGB model
    assert grey_in[0].shape == (24, 36, 3)
    with pytest.raises(ValueError, match="precision"):
        FastStylePipeline.from_export(export(tmp_path, "fast_style"), precision="fp8")


def test_gatys_settings_change_per_call_but_not_the_network():
    pipe = GatysPipeline.from_config(SMALL_GATYS, vgg_weights="random", device="cpu")
    updates = []
    result, info = pipe(image(24, 32), [image(20, 20, seed=1)], updates.append, iterations=2)
    assert result.shape == (24, 32, 3) and info["evaluations"] == 2
    assert [u.evaluations for u in updates] == [1, 2] and updates[-1].total == 2
    with pytest.raises(ConfigError, match="loss network"):
        pipe(image(24, 32), [image(20, 20)], arch="vgg19")
    same_network = pipe.with_settings(style_weight=10.0)
    assert same_network.vgg is pipe.vgg and same_network.params.style_weight == 10.0
    deeper = pipe.with_settings(style_layers=("relu1_2", "relu3_3"))
    assert deeper.vgg is not pipe.vgg and "relu3_3" in deeper.vgg.layers
    score = pipe.scorer(image(24, 32), [image(20, 20, seed=1)])
    assert score(torch.zeros(1, 3, 12, 16)) > 0  # any size: scored at the content's size


def test_dream_progress_counts_the_octaves_it_runs():
    pipe = DreamPipeline.from_config(
        {"layers": ("relu3_1",), "octaves": 6, "iterations": 2, "jitter": 0},
        vgg_weights="random",
        device="cpu",
    )
    updates = []
    result, frames, info = pipe(image(48, 64), updates.append)
    assert result.shape == (48, 64, 3) and len(frames) < 6  # small octaves are dropped
    assert updates[-1].evaluations == updates[-1].total == 2 * len(frames)
    assert {u.stages for u in updates} == {len(frames)}
    assert info["objective"]["result"] > info["objective"]["input"]


def test_optimisation_pipelines_come_from_their_family():
    assert type(pipelines.optimisation("dream", None, "random", "cpu")) is DreamPipeline
    with pytest.raises(ConfigError, match="trained family"):
        pipelines.optimisation("dcgan")


def chroma(images: np.ndarray, space: str = "ycbcr") -> torch.Tensor:
    """The chroma planes of a uint8 (H, W, 3) image."""
    return to_luma_chroma(from_uint8(torch.from_numpy(images))[None], space)[1]


def test_fast_style_strength_and_colour_controls(tmp_path):
    pipe = FastStylePipeline.from_export(export(tmp_path, "fast_style"), device="cpu")
    content = [image(20, 30), image(17, 9, seed=1)]
    full = pipe(content)
    assert [np.array_equal(a, b) for a, b in zip(pipe(content, strength=0.0), content)] == [1, 1]
    half = pipe(content, strength=0.5)[0].astype(int)
    assert np.abs(half - (content[0].astype(int) + full[0]) / 2).max() <= 1
    kept = pipe(content, preserve_color="ycbcr")[0]
    # Kept to the content's chroma up to rounding and the clamp into the RGB cube.
    assert (chroma(kept) - chroma(content[0])).abs().median() < 0.01
    assert (chroma(full[0]) - chroma(content[0])).abs().median() > 0.02
    with pytest.raises(InputError, match=r"strength must be a number in \[0, 1\], got 1.5"):
        pipe(content, strength=1.5)


def test_gatys_strength_blends_the_optimised_image_with_the_content():
    pipe = GatysPipeline.from_config(SMALL_GATYS, vgg_weights="random", device="cpu")
    content, style = image(24, 32), [image(20, 20, seed=1)]
    full, _ = pipe(content, style)
    assert np.array_equal(pipe(content, style, strength=0.0)[0], content)
    half = pipe(content, style, strength=0.5)[0].astype(int)
    assert np.abs(half - (content.astype(int) + full) / 2).max() <= 1
    assert not np.array_equal(full, content)
    with pytest.raises(InputError, match="strength"):
        pipe(content, style, strength=float("nan"))


def test_the_image_deployment_applies_and_checks_the_style_controls(tmp_path):
    from genart.serve import deployments
    from genart.serve.validation import RequestError

    export(tmp_path, "fast_style")  # into tmp_path, the catalogue, as "fast_style"
    replica = deployments.ImageModels.func_or_class({"uri": str(tmp_path)})  # no Ray
    pipe = replica._build("fast_style")

    async def cached(name):  # Serve's model cache, which needs a replica
        return deployments.Cached(pipe)

    replica.model = cached
    content = image(20, 30)
    key = deployments.freeze((pipe, {"strength": 0.0, "preserve_color": "none"}))
    assert np.array_equal(deployments.apply_image_model(key, [content])[0], content)
    key = deployments.freeze((pipe, {"strength": 1.0, "preserve_color": "yiq"}))
    kept = deployments.apply_image_model(key, [content])[0]
    assert np.array_equal(kept, pipe([content], preserve_color="yiq")[0])
    with pytest.raises(RequestError) as refused:
        asyncio.run(replica.stylize("fast_style", content, strength=2.0))
    assert refused.value.status == 422 and "strength" in refused.value.reason
