"""Serving a catalogue without Ray: the cache's size, what the catalogue deployments build for a
name (or refuse, and why), and how the ingress routes a name. The Serve side (multiplexing over
HTTP, hot add, eviction) is tests/ray/test_serve.py."""

import asyncio
import json

import numpy as np
import pytest
from test_http_app import Handle, call, png

from genart.serve import app, demo, deployments
from genart.serve.settings import (
    DEFAULT_MODEL_MB,
    MODEL_OVERHEAD_MB,
    CatalogueSettings,
    cache_size,
)

STYLE = ["fast_style.width=8", "fast_style.residual_blocks=1"]
DCGAN = ["data.size=16", "data.channels=1", "dcgan.latent_dim=8", "dcgan.g_width=8",
         "dcgan.d_width=8"]  # fmt: skip


def test_the_cache_holds_the_budget_over_the_largest_export_or_the_count_given():
    settings = CatalogueSettings(uri="cat", replica_memory_mb=1030)
    assert cache_size(settings, 100 * 2**20) == 1030 // (100 + MODEL_OVERHEAD_MB)
    assert cache_size(settings, 3000 * 2**20) == 1  # one model even beyond the budget
    assert cache_size(settings, None) == 1030 // (DEFAULT_MODEL_MB + MODEL_OVERHEAD_MB)
    assert cache_size(settings, 10) == 1030 // MODEL_OVERHEAD_MB  # a tiny export: its overhead
    assert cache_size(settings.model_copy(update={"models_per_replica": 2}), 10) == 2
    with pytest.raises(ValueError, match="not model names"):
        CatalogueSettings(uri="cat", pinned=["ok", "../etc"])


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    cat, checkpoints = root / "cat", root / "checkpoints"
    for name, model, overrides in (("mosaic", "fast_style", STYLE), ("digits", "dcgan", DCGAN)):
        demo.export_initialised(model, overrides, cat / name, checkpoints=checkpoints)
    broken = cat / "broken"
    demo.export_initialised("fast_style", STYLE, broken, seed=1, checkpoints=checkpoints)
    (broken / "G.pt").write_bytes(b"not the weights")
    return cat


def models(kind, catalogue, **settings):
    """A catalogue deployment's class as plain Python, built on ``catalogue``."""
    return kind.func_or_class({"uri": str(catalogue), **settings})


def refusal(build, name: str):
    with pytest.raises(deployments.v.RequestError) as caught:
        build(name)
    return caught.value


def test_a_name_builds_its_pipeline_or_is_refused_with_a_reason_and_no_path(catalogue):
    image = models(deployments.ImageModels, catalogue)
    styled = image._build("mosaic")([np.zeros((12, 20, 3), np.uint8)])
    assert styled[0].shape == (12, 20, 3)
    wrong = refusal(image._build, "digits")  # a DCGAN at an image route
    assert wrong.status == 404 and "dcgan model" in wrong.reason and "fast_style" in wrong.reason
    absent = refusal(image._build, "nobody")
    assert absent.status == 404 and "no model named 'nobody'" in absent.reason
    broken = refusal(image._build, "broken")
    assert broken.status == 500 and "G.pt" in broken.reason and str(catalogue) not in broken.reason
    latent = models(deployments.LatentModels, catalogue)
    assert latent._build("digits").sample_latents(range(2)).shape == (2, 8)
    assert refusal(latent._build, "mosaic").status == 404


def test_the_cache_is_sized_from_the_catalogue_and_pinned_models_load_at_start(catalogue):
    image = models(deployments.ImageModels, catalogue, pinned=["mosaic", "digits"],
                   replica_memory_mb=16)  # fmt: skip
    assert set(image.pinned) == {"mosaic"}  # the DCGAN is pinned by the latent deployment
    size = max(e.size for e in image.catalogue.entries() if e.family == "fast_style")
    assert image.capacity == max(1, int(16 // (size / 2**20 + MODEL_OVERHEAD_MB)))
    assert image.describe()["loaded"]["mosaic"]["pinned"] is True
    listing = {entry["name"]: entry for entry in image.listing()}
    assert listing["digits"]["family"] == "dcgan" and listing["broken"]["usable"] is True
    assert str(catalogue) not in json.dumps(listing)


def test_an_evicted_model_leaves_the_listing_of_loaded_models_once():
    loaded = {"a": {}}
    cached = deployments.Cached(object(), lambda: loaded.pop("a"))
    cached.__del__()  # Serve evicts it
    loaded["a"] = {}  # and loads it again
    del cached  # the evicted one is collected: the new one stays listed
    assert loaded == {"a": {}}


def test_the_ingress_names_the_model_for_serves_routing_and_refuses_non_names():
    async def stylize(name, image, **controls):
        return b"png"

    async def sample(name, body):
        return b"grid of " + name.encode()

    image, latent = Handle(stylize=stylize), Handle(sample=sample)
    settings = {"catalogue": {"uri": "cat", "dcgan": "digits"}}
    asgi = app.create_api(app.Gateway(settings, image=image, latent=latent))
    assert call(asgi, "POST", "/style/mosaic", png(8, 8)).status == 200
    assert image.options_given == {"multiplexed_model_id": "mosaic"}
    for path in ("/dcgan/sample", "/dcgan/digits/sample"):
        reply = call(asgi, "POST", path, b"{}", {"content-type": "application/json"})
        assert reply.status == 200 and reply.body == b"grid of digits"
    assert latent.options_given == {"multiplexed_model_id": "digits"}
    reply = call(asgi, "POST", "/style/Not..A_name!", png(8, 8))
    assert reply.status == 404 and "not a model name" in reply.json()["detail"]


def test_without_a_default_dcgan_the_unnamed_routes_say_where_to_go():
    asgi = app.create_api(app.Gateway({"catalogue": {"uri": "cat"}}, latent=Handle()))
    reply = call(asgi, "POST", "/dcgan/sample", b"{}", {"content-type": "application/json"})
    assert reply.status == 404 and "/dcgan/{name}/" in reply.json()["detail"]


def test_models_lists_the_catalogue_with_the_backend_of_loaded_models():
    entries = [{"name": "mosaic", "family": "fast_style", "usable": True},
               {"name": "digits", "family": "dcgan", "usable": True}]  # fmt: skip

    async def listing():
        return entries

    async def image_loaded():
        return {"loaded": {"mosaic": {"backend": "onnxruntime", "threads": 1, "step": 0}}}

    async def latent_loaded():
        return {"loaded": {}}

    gateway = app.Gateway({"catalogue": {"uri": "cat"}},
                          image=Handle(listing=listing, describe=image_loaded),
                          latent=Handle(describe=latent_loaded))  # fmt: skip
    described = asyncio.run(gateway.describe())
    mosaic, digits = described["catalogue"]
    assert mosaic == entries[0] | {"loaded": True, "backend": "onnxruntime", "threads": 1}
    assert digits == entries[1] | {"loaded": False}
    assert described["gatys"] is None


def test_models_marks_the_adain_models_its_replicas_hold():
    entries = [{"name": "sketch", "family": "adain", "usable": True}]

    async def listing():
        return entries

    async def holding(*names):
        return {"loaded": {name: {"backend": "torch"} for name in names}, "cache": 1}

    adain_held = {"styles": ["waves"], "max_side": 64}

    async def adain_loaded():
        return await holding("sketch") | adain_held

    gateway = app.Gateway({"catalogue": {"uri": "cat"}, "adain": {}},
                          image=Handle(listing=listing, describe=holding),
                          latent=Handle(describe=holding),
                          adain=Handle(describe=adain_loaded))  # fmt: skip
    described = asyncio.run(gateway.describe())
    assert described["catalogue"] == [entries[0] | {"loaded": True, "backend": "torch"}]
    assert described["adain"]["styles"] == ["waves"]
