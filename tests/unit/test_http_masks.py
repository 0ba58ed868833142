"""Spatial control over HTTP, without Ray: ``mask`` and ``outside_style`` on ``POST
/adain/stylize``, ``/gatys/stylize`` and ``/gatys/jobs`` reach the models fit with the content,
and bad ones are refused in the ingress with reasons."""

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from exports import make_export, variance_keeping
from PIL import Image
from test_http_adain import replica_of
from test_http_app import JSON, Handle, call

from genart.serve import app
from genart.serve.deployments import GatysWorker

LIMITS = {"max_pixels": 128 * 128, "max_side": 256}
SETTINGS = {"catalogue": {"uri": "cat", "adain": "adain"},
            "adain": {"styles": {"waves": "w.png"}, "max_side": 64},
            "gatys": {"max_side": 64}, "limits": LIMITS}  # fmt: skip


def b64(width: int, height: int, value: int = 0) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def recording(calls: list, answer):
    """A stand-in model method: records what reached it (images as their shapes)."""

    async def method(*args, **regions):
        shapes = {k: image.shape for k, image in regions.items()}
        calls.append((*(getattr(a, "shape", a) for a in args), shapes))
        return answer

    return method


def adain_api(calls):
    return app.create_api(app.Gateway(SETTINGS, adain=Handle(stylize=recording(calls, b"png"))))


def gatys_api(calls):
    method = recording(calls, (b"png", {}))
    return app.create_api(app.Gateway(SETTINGS, gatys=Handle(stylize=method, run_job=method),
                                      jobs=Handle(create=recording([], "job-1"))))  # fmt: skip


def test_an_adain_mask_and_outside_style_reach_the_model_fit_with_the_content():
    calls = []
    body = {"content": b64(96, 48), "style_name": "waves", "mask": b64(96, 48, 255),
            "outside_style": b64(20, 30)}  # fmt: skip
    reply = call(adain_api(calls), "POST", "/adain/stylize", json.dumps(body).encode(), JSON)
    assert reply.status == 200 and reply.body == b"png", reply.body
    # Content and mask fit to max_side 64 alike; the outside style is small enough as it is.
    assert calls == [("adain", (32, 64, 3), "waves", 1.0, "none",
                      {"mask": (32, 64, 3), "outside_style": (30, 20, 3)})]  # fmt: skip


def test_gatys_masks_reach_the_synchronous_worker_and_the_jobs():
    calls = []
    body = {"content": b64(48, 24), "styles": [b64(16, 16)], "mask": b64(48, 24, 255),
            "settings": {"size": 32, "iterations": 5}}  # fmt: skip
    reply = call(gatys_api(calls), "POST", "/gatys/stylize", json.dumps(body).encode(), JSON)
    assert reply.status == 200, reply.body
    content, styles, settings, regions = calls[0]
    assert content == (16, 32, 3) and regions == {"mask": (16, 32, 3)}
    reply = call(gatys_api(calls), "POST", "/gatys/jobs", json.dumps(body).encode(), JSON)
    assert reply.status == 202, reply.body
    assert calls[1][0] == "job-1" and calls[1][-1] == {"mask": (16, 32, 3)}


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"mask": b64(40, 40)}, 422,
         "mask is 40x40 but the content is 96x48: send a mask of the content's size"),
        ({"mask": base64.b64encode(b"GIF89a not a mask").decode()}, 422,
         "mask: unsupported image format: send one of PNG, JPEG, WEBP"),
        ({"mask": "not base64!"}, 422, "mask: image is not valid base64"),
        ({"mask": b64(300, 10)}, 413, "mask: image is 300x10"),
        ({"outside_style": b64(16, 16)}, 422, "outside_style needs a mask"),
        ({"mask": b64(96, 48), "outside_style": "%%"}, 422, "outside_style: image is not valid"),
        ({"alpha": 1.5}, 422, "less than or equal to 1"),
    ],
)  # fmt: skip
def test_bad_adain_masks_never_reach_the_model(fields, status, words):
    calls = []
    body = {"content": b64(96, 48), "style_name": "waves", **fields}
    reply = call(adain_api(calls), "POST", "/adain/stylize", json.dumps(body).encode(), JSON)
    assert reply.status == status and words in json.dumps(reply.json()["detail"]), reply.body
    assert calls == []


@pytest.mark.parametrize(
    ("fields", "settings", "words"),
    [
        ({"mask": b64(24, 48)}, {}, "mask is 24x48 but the content is 48x24"),
        ({"outside_style": b64(16, 16)}, {}, "outside_style needs a mask"),
        ({}, {"strength": 1.5}, "less than or equal to 1"),
    ],
)
def test_bad_gatys_masks_and_strength_are_422(fields, settings, words):
    calls = []
    body = {"content": b64(48, 24), "styles": [b64(16, 16)], **fields,
            "settings": {"size": 32, "iterations": 5, **settings}}  # fmt: skip
    for route in ("/gatys/stylize", "/gatys/jobs"):
        reply = call(gatys_api(calls), "POST", route, json.dumps(body).encode(), JSON)
        assert reply.status == 422 and words in json.dumps(reply.json()["detail"]), reply.body
    assert calls == []


# --- the real deployments' classes behind the ingress (no Ray) ------------------------------------


def picture(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def encoded(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def half_mask(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w, 3), np.uint8)
    mask[:, : w // 2] = 255
    return mask


def test_the_adain_deployment_stylises_where_the_mask_says(tmp_path):
    tiny = ["adain.vgg_weights=random", "adain.width=8"]
    make_export(tmp_path, "adain", tiny, variance_keeping)
    replica = replica_of(tmp_path)
    pipe = replica._build("adain")
    asgi = app.create_api(app.Gateway(SETTINGS, adain=Handle(stylize=replica.stylize)))
    content, style, other = picture(32, 64, 0), picture(24, 24, 1), picture(16, 16, 2)
    body = {"content": encoded(content), "style": encoded(style),
            "mask": encoded(half_mask(32, 64)), "outside_style": encoded(other)}  # fmt: skip
    reply = call(asgi, "POST", "/adain/stylize", json.dumps(body).encode(), JSON)
    assert reply.status == 200, reply.body
    expected = pipe(content, [style], mask=half_mask(32, 64), outside_style=other)
    np.testing.assert_array_equal(decoded(reply.body), expected)
    assert not np.array_equal(expected, pipe(content, [style]))


def test_the_gatys_worker_keeps_the_content_where_the_mask_is_black():
    layers = {"content_layers": ["relu2_2"], "style_layers": ["relu1_1", "relu2_1"]}
    settings = {"vgg_weights": "random", "max_side": 64, "config": layers}
    worker = GatysWorker.func_or_class(settings, jobs=None)
    content, style = picture(16, 32, 0), picture(16, 16, 1)
    png, _ = asyncio.run(worker.stylize(content, [style], {"size": 32, "iterations": 3},
                                        mask=half_mask(16, 32)))  # fmt: skip
    result = decoded(png)
    np.testing.assert_array_equal(result[:, 16:], content[:, 16:])
    assert not np.array_equal(result[:, :16], content[:, :16])
