"""``POST /adain/{name}/stylize`` and ``/adain/stylize`` (the default model) through the ingress
without Ray: what reaches the AdaIN deployment, and the 4xx answers (with reasons) for what never
should."""

import base64
import io
import json

import pytest
from exports import make_export
from PIL import Image
from test_http_app import JSON, Handle, call, png

from genart.serve import app, deployments
from genart.serve.settings import AppSettings

SETTINGS = {"catalogue": {"uri": "cat", "adain": "m"},
            "adain": {"styles": {"waves": "w.png"}, "max_side": 64},
            "limits": {"max_pixels": 128 * 128, "max_side": 256}}  # fmt: skip


def api(settings=SETTINGS, **backends):
    return app.create_api(app.Gateway(settings, **backends))


def b64(width: int, height: int) -> str:
    return base64.b64encode(png(width, height)).decode()


def recording(calls: list):
    async def stylize(name, content, style, alpha, preserve_color):
        calls.append((name, content.shape, style if isinstance(style, str) else style.shape, alpha,
                      preserve_color))  # fmt: skip
        return b"png"

    return Handle(stylize=stylize)


def body(**fields) -> bytes:
    return json.dumps({"content": b64(96, 48), **fields}).encode()


def test_an_uploaded_style_reaches_the_model_fit_to_the_servers_side():
    calls = []
    reply = call(api(adain=recording(calls)), "POST", "/adain/stylize",
                 body(style=b64(32, 40), alpha=0.3, preserve_color="ycbcr"), JSON)  # fmt: skip
    assert reply.status == 200 and reply.body == b"png"
    assert reply.headers["content-type"] == "image/png"
    assert calls == [("m", (32, 64, 3), (40, 32, 3), 0.3, "ycbcr")]  # content fit to max_side 64


def test_a_named_style_goes_by_name_and_an_unknown_one_is_404():
    calls = []
    reply = call(api(adain=recording(calls)), "POST", "/adain/stylize",
                 body(style_name="waves", size=32), JSON)  # fmt: skip
    assert reply.status == 200 and calls == [("m", (16, 32, 3), "waves", 1.0, "none")]
    reply = call(api(adain=recording(calls)), "POST", "/adain/stylize",
                 body(style_name="candy"), JSON)  # fmt: skip
    assert reply.status == 404 and "available: ['waves']" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({}, 422, "exactly one of style"),
        ({"style": "x", "style_name": "waves"}, 422, "exactly one of style"),
        ({"style_name": "waves", "alpha": 1.5}, 422, "less than or equal to 1"),
        ({"style_name": "waves", "preserve_color": "lab"}, 422, "'none', 'ycbcr' or 'yiq'"),
        ({"style_name": "waves", "preserve_color": True}, 422, "'none', 'ycbcr' or 'yiq'"),
        ({"style": b64(200, 200)}, 413, "style: image is 200x200"),
        ({"style": "not base64!"}, 422, "style: image is not valid base64"),
    ],
)
def test_bad_requests_never_reach_the_model(fields, status, words):
    calls = []
    reply = call(api(adain=recording(calls)), "POST", "/adain/stylize", body(**fields), JSON)
    assert reply.status == status and words in str(reply.json()["detail"]), reply.body
    assert calls == []


def test_a_named_model_is_served_by_name_and_the_default_only_when_configured():
    calls = []
    handle = recording(calls)
    reply = call(api(adain=handle), "POST", "/adain/sketchy/stylize", body(style_name="waves"),
                 JSON)  # fmt: skip
    assert reply.status == 200 and calls[0][0] == "sketchy"
    assert handle.options_given == {"multiplexed_model_id": "sketchy"}  # Serve routes by it
    reply = call(api(adain=handle), "POST", "/adain/Not..A_name!/stylize",
                 body(style_name="waves"), JSON)  # fmt: skip
    assert reply.status == 404 and "not a model name" in reply.json()["detail"]
    no_default = SETTINGS | {"catalogue": {"uri": "cat"}}
    reply = call(api(no_default, adain=handle), "POST", "/adain/stylize",
                 body(style_name="waves"), JSON)  # fmt: skip
    assert reply.status == 404 and "/adain/{name}/stylize" in reply.json()["detail"]
    assert len(calls) == 1


def test_adain_needs_a_catalogue():
    with pytest.raises(ValueError, match="configure a catalogue"):
        AppSettings.model_validate({"adain": {}})


def test_a_server_without_adain_answers_404():
    reply = call(api(), "POST", "/adain/stylize", body(style_name="waves"), JSON)
    assert reply.status == 404 and "'adain' is not configured" in reply.json()["detail"]


@pytest.fixture(scope="module")
def adain_replica(tmp_path_factory):
    """The AdaIN deployment's class itself (no Ray) over a tiny random decoder."""
    catalogue = tmp_path_factory.mktemp("adain")
    make_export(catalogue, "adain", ["adain.vgg_weights=random", "adain.width=8"])
    return replica_of(catalogue)


@pytest.mark.parametrize(("content", "style"), [((8, 8), (8, 8)), ((16, 8), (8, 16))])
def test_images_of_the_minimum_side_are_stylised(adain_replica, content, style):
    asgi = api(SETTINGS | {"catalogue": {"uri": "cat", "adain": "adain"}},
               adain=Handle(stylize=adain_replica.stylize))  # fmt: skip
    sent = {"content": b64(*content), "style": b64(*style)}
    reply = call(asgi, "POST", "/adain/stylize", json.dumps(sent).encode(), JSON)
    assert reply.status == 200, reply.body
    assert Image.open(io.BytesIO(reply.body)).size == content


def replica_of(catalogue, **settings):
    """The AdaIN deployment's class over ``catalogue`` (no Ray): its model cache, which needs a
    replica, stands in by building each model anew."""
    replica = deployments.AdaIN.func_or_class({"uri": str(catalogue)}, {"max_side": 64, **settings})

    async def build(name):
        return deployments.Cached(replica._build(name))

    replica.model = build
    return replica


def test_the_replica_serves_the_catalogues_adain_models_with_the_servers_encoder(tmp_path):
    make_export(tmp_path, "adain", ["adain.vgg_weights=random", "adain.width=8"])
    make_export(tmp_path, "fast_style", ["fast_style.width=8", "fast_style.residual_blocks=1"])
    assert replica_of(tmp_path)._build("adain").cfg.model == "adain"
    with pytest.raises(deployments.v.RequestError) as refused:
        replica_of(tmp_path)._build("fast_style")
    assert refused.value.status == 404 and "not served here" in str(refused.value)
    # The settings' encoder weights, not the export's own (random), build every model.
    with pytest.raises(Exception, match="no-such-vgg"):
        replica_of(tmp_path, vgg_weights=str(tmp_path / "no-such-vgg.pt"))._build("adain")
