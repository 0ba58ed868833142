"""``POST /adain/stylize`` through the ingress without Ray: what reaches the AdaIN deployment,
and the 4xx answers (with reasons) for what never should."""

import base64
import io
import json

import pytest
from exports import make_export
from PIL import Image
from test_http_app import JSON, Handle, call, png

from genart.serve import app

SETTINGS = {"adain": {"model": "m", "styles": {"waves": "w.png"}, "max_side": 64},
            "limits": {"max_pixels": 128 * 128, "max_side": 256}}  # fmt: skip


def api(**backends):
    return app.create_api(app.Gateway(SETTINGS, **backends))


def b64(width: int, height: int) -> str:
    return base64.b64encode(png(width, height)).decode()


def recording(calls: list):
    async def stylize(content, style, alpha, preserve_color):
        calls.append((content.shape, style if isinstance(style, str) else style.shape, alpha,
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
    assert calls == [((32, 64, 3), (40, 32, 3), 0.3, "ycbcr")]  # content fit to max_side 64


def test_a_named_style_goes_by_name_and_an_unknown_one_is_404():
    calls = []
    reply = call(api(adain=recording(calls)), "POST", "/adain/stylize",
                 body(style_name="waves", size=32), JSON)  # fmt: skip
    assert reply.status == 200 and calls == [((16, 32, 3), "waves", 1.0, "none")]
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


def test_a_server_without_adain_answers_404():
    reply = call(api(), "POST", "/adain/stylize", body(style_name="waves"), JSON)
    assert reply.status == 404 and "'adain' is not configured" in reply.json()["detail"]


@pytest.fixture(scope="module")
def adain_replica(tmp_path_factory):
    """The AdaIN deployment's class itself (no Ray) over a tiny random decoder."""
    from genart.serve.deployments import AdaIN

    tiny = ["adain.vgg_weights=random", "adain.width=8"]
    export = make_export(tmp_path_factory.mktemp("adain"), "adain", tiny)
    return AdaIN.func_or_class({"model": export, "max_side": 64})


@pytest.mark.parametrize(("content", "style"), [((8, 8), (8, 8)), ((16, 8), (8, 16))])
def test_images_of_the_minimum_side_are_stylised(adain_replica, content, style):
    asgi = api(adain=Handle(stylize=adain_replica.stylize))
    sent = {"content": b64(*content), "style": b64(*style)}
    reply = call(asgi, "POST", "/adain/stylize", json.dumps(sent).encode(), JSON)
    assert reply.status == 200, reply.body
    assert Image.open(io.BytesIO(reply.body)).size == content
