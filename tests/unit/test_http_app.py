"""The ingress's HTTP answers without Ray: its FastAPI app driven over ASGI, stand-in handles.

Each test sends what a hostile or unlucky client sent and checks the answer is a 4xx or 503
with a reason, in valid JSON, soon.
"""

import asyncio
import base64
import io
import json
import re
import struct
import time
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.responses import PlainTextResponse
from PIL import Image
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError
from starlette.routing import Mount

from genart.serve import app, validation

REPO = Path(__file__).resolve().parents[2]
MAX_BODY = 64 * 1024
CALL_TIMEOUT_S = 10  # an app that never answers fails its test instead of hanging it


class Handle:
    """Stands in for a DeploymentHandle: ``handle.method.remote(...)`` awaits ``method``."""

    def __init__(self, **methods):
        self.methods = methods

    def options(self, **options):
        self.options_given = options  # what the latest call asked of Serve's routing
        return self

    def __getattr__(self, name):
        method = self.methods[name]
        return types.SimpleNamespace(remote=lambda *args, **kwargs: method(*args, **kwargs))


async def stylize(name, image, **controls):
    return b"png of %dx%d" % image.shape[1::-1]


async def overloaded(*args, **kwargs):
    raise BackPressureError(num_queued_requests=32, max_queued_requests=32)


async def died(*args, **kwargs):
    raise ActorDiedError()


def api(body_timeout_s: float = 5.0, **backends):
    limits = {"max_body_bytes": MAX_BODY, "body_timeout_s": body_timeout_s, "retry_after_s": 3}
    settings = {"catalogue": {"uri": "models", "dcgan": "d"}, "limits": limits}
    return app.create_api(app.Gateway(settings, **backends))


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes, seconds: float):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self):
        def strict(constant):  # what a strict JSON parser does with NaN or Infinity
            raise ValueError(f"not JSON: {constant}")

        return json.loads(self.body, parse_constant=strict)


def call(asgi, method: str, url: str, body: bytes = b"", headers: dict | None = None,
         chunks: list[bytes] | None = None, then_hang: bool = False) -> Reply:  # fmt: skip
    """One request through the ASGI app: the body at once, or ``chunks`` (``then_hang``: the
    client then sends nothing more, as one whose body is shorter than its Content-Length)."""
    path, _, query = url.partition("?")
    headers = {"content-length": str(len(body))} | (headers or {})
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    parts = chunks if chunks is not None else [body]
    events = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1 or then_hang}
              for i, part in enumerate(parts)]  # fmt: skip
    sent = []

    async def receive():
        if events:
            return events.pop(0)
        await asyncio.Event().wait()  # nothing more ever comes (no disconnect either)

    async def send(message):
        sent.append(message)

    start = time.monotonic()
    asyncio.run(asyncio.wait_for(asgi(scope, receive, send), CALL_TIMEOUT_S))
    seconds = time.monotonic() - start
    (head,) = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    reply_headers = {k.decode().lower(): v.decode() for k, v in head.get("headers", [])}
    return Reply(head["status"], reply_headers, body, seconds)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_json_numbers_are_422_in_valid_json(number):
    reply = call(api(), "POST", "/dcgan/sample", f'{{"n":1,"truncation":{number}}}'.encode(), JSON)
    assert reply.status == 422, reply.body
    (error,) = reply.json()["detail"]  # parses as strict JSON
    assert error["loc"] == ["body", "truncation"] and "finite" in error["msg"]
    assert error["input"] == ("Infinity" if number == "1e999" else number)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
def test_json_sent_as_a_form_is_422_saying_what_to_send(content_type):
    headers = {"content-type": content_type} if content_type else {}
    reply = call(api(), "POST", "/dcgan/sample", b'{"n": 1}', headers)  # what curl -d sends
    assert reply.status == 422, reply.body
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["header", "content-type"]
    assert "send the body as JSON with Content-Type: application/json" in error["msg"]
    assert (content_type or "the request has none") in error["msg"]


def test_validation_errors_quote_refused_values_briefly():
    body = {"content": "A" * 50_000, "styles": ["x"], "settings": {"size": "9" * 900, "seed": -1}}
    reply = call(api(), "POST", "/gatys/jobs", json.dumps(body).encode(), JSON)
    assert reply.status == 422 and len(reply.body) < 1000  # the body was 51 kB
    size, seed = reply.json()["detail"]  # in the order the fields are declared
    assert seed["loc"] == ["body", "settings", "seed"] and seed["input"] == -1
    assert seed["ctx"] == {"ge": 0}
    assert size["input"] == "9" * validation.MAX_ECHOED_CHARS + "..."  # a string for an int: quoted
    blend = {"content": "x", "styles": ["y", "z"], "settings": {"style_blend": [1.0]}}
    (error,) = call(api(), "POST", "/gatys/jobs", json.dumps(blend).encode(), JSON).json()["detail"]
    assert "2 styles" in error["msg"] and "2 styles" in error["ctx"]["error"]


@pytest.mark.parametrize("route", ["/style/", "/translate/"])
def test_an_unknown_name_is_quoted_briefly_in_its_404(route):
    reply = call(api(image=Handle(stylize=stylize)), "POST", route + "n" * 5000, png(16, 16))
    assert reply.status == 404 and len(reply.body) < 300
    assert f"'{'n' * validation.MAX_ECHOED_CHARS}...'" in reply.json()["detail"]


def test_a_body_shorter_than_its_content_length_gets_408_at_the_deadline():
    asgi = api(body_timeout_s=0.3, image=Handle(stylize=stylize))
    headers = {"content-length": "5000", "content-type": "image/png"}
    reply = call(asgi, "POST", "/style/mosaic", headers=headers, chunks=[png(16, 16)[:40]],
                 then_hang=True)  # fmt: skip
    assert reply.status == 408 and 0.3 <= reply.seconds < 1.5
    assert "0.3 s" in reply.json()["detail"] and "body_timeout_s" in reply.json()["detail"]
    assert reply.headers["connection"] == "close"
    # JSON bodies are read by FastAPI itself: the same deadline applies.
    reply = call(asgi, "POST", "/dcgan/sample", headers=JSON | {"content-length": "100"},
                 chunks=[b'{"n": '], then_hang=True)  # fmt: skip
    assert reply.status == 408


def test_a_slow_trickle_does_not_reset_the_deadline():
    asgi = api(body_timeout_s=0.3, image=Handle(stylize=stylize))
    data = png(16, 16)

    async def trickle(scope, receive, send):  # one byte every 50 ms, without end
        async def slow():
            await asyncio.sleep(0.05)
            return {"type": "http.request", "body": data[:1], "more_body": True}

        await asgi(scope, slow, send)

    reply = call(trickle, "POST", "/style/mosaic", headers={"content-length": "50000"})
    assert reply.status == 408 and reply.seconds < 1.5


def test_bodies_over_the_cap_are_413_naming_the_limit():
    asgi = api(image=Handle(stylize=stylize))
    declared = call(asgi, "POST", "/style/mosaic", headers={"content-length": str(10**9)})
    assert declared.status == 413 and f"limit is {MAX_BODY} bytes" in declared.json()["detail"]
    chunks = [bytes(MAX_BODY // 2)] * 3  # chunked: no Content-Length
    chunked = call(asgi, "POST", "/style/mosaic", headers={"transfer-encoding": "chunked"},
                   chunks=chunks)  # fmt: skip
    assert chunked.status == 413 and str(MAX_BODY) in chunked.json()["detail"]
    assert call(asgi, "POST", "/style/mosaic", png(16, 16)).status == 200  # under the cap
    assert "send a smaller image" in declared.json()["detail"]
    as_json = JSON | {"content-length": str(10**9)}
    json_body = call(asgi, "POST", "/gatys/jobs", headers=as_json).json()["detail"]
    assert "send smaller images (base64 adds a third)" in json_body


def test_full_model_queues_are_503_with_retry_after_and_a_reason():
    asgi = api(image=Handle(stylize=overloaded))
    # What Serve does when the replica starts: its own bare-text handler replaces the app's.
    asgi.add_exception_handler(BackPressureError, lambda request, err: PlainTextResponse("", 503))
    reply = call(asgi, "POST", "/style/candy", png(16, 16))
    assert reply.status == 503 and reply.headers["retry-after"] == "3"
    assert "capacity" in reply.json()["detail"] and "/style/candy" in reply.json()["detail"]


def test_a_model_replica_lost_mid_request_is_503():
    reply = call(api(image=Handle(stylize=died)), "POST", "/style/candy", png(16, 16))
    assert reply.status == 503 and reply.headers["retry-after"] == "3"
    assert "stopped" in reply.json()["detail"]


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def webp_declaring(width: int, height: int, chunk: str = "VP8X") -> bytes:
    """A 16x16 WebP made by Pillow (lossy "VP8 ", lossless "VP8L" or extended "VP8X"), its
    header patched to declare ``width`` x ``height``: a valid file when that is 16x16."""
    exif = Image.Exif()
    exif[0x0112] = 1  # orientation: upright (any metadata makes Pillow write "VP8X")
    params = {"VP8 ": {}, "VP8L": {"lossless": True}, "VP8X": {"exif": exif.tobytes()}}
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, "WEBP", **params[chunk])
    data = bytearray(buffer.getvalue())
    assert data[12:16] == chunk.encode()
    if chunk == "VP8X":  # the canvas: 24-bit sides less one
        data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif chunk == "VP8 ":  # the key frame's sides
        data[26:30] = struct.pack("<HH", width, height)
    else:  # 14-bit sides less one, then the alpha and version bits kept
        data[21:25] = struct.pack("<I", (width - 1) | (height - 1) << 14 | data[24] >> 4 << 28)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(64), 400, "header is damaged"),
        (b"\xff\xd8\xff" + bytes(64), 400, "header is damaged"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(8), 400, "header is damaged"),
        (png(64, 64)[:-30], 400, "truncated or corrupt"),
        (png_declaring(20_000, 20_000), 413, "the limit is 4194304 pixels and 4096 per side"),
        (png_declaring(60_000, 60_000), 413, "the limit is 4194304 pixels"),
        (webp_declaring(16383, 12000), 413, "image is 16383x12000; the limit is 4194304"),
    ],
    ids=["png", "jpeg", "webp", "truncated", "400-mp", "3600-mp", "webp-197-mp"],
)
def test_image_refusals_are_sentences_of_the_apps_own(data, status, words):
    reply = call(api(image=Handle(stylize=stylize)), "POST", "/style/mosaic", data)
    detail = reply.json()["detail"]
    assert reply.status == status and words in detail, detail
    assert not re.search(r"<|0x[0-9a-f]{6}|BytesIO|decompression bomb", detail), detail


def test_docs_need_no_other_host():
    asgi = api()
    page = call(asgi, "GET", "/docs")
    html = page.body.decode()
    assert page.status == 200 and "SwaggerUIBundle" in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert {url.rsplit("/", 1)[1] for url in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for url in assets:  # all of them from this server, and there
        served = call(asgi, "GET", url)
        assert url.startswith("/") and served.status == 200 and served.body, url
    assert call(asgi, "GET", "/openapi.json").status == 200


def answering_without_a_token(asgi) -> set[str]:
    """Every path of the app (a mount as its prefix + "/") that answers a request without a
    token other than 401."""
    paths = {route.path: route.methods - {"HEAD"} for route in asgi.routes
             if getattr(route, "methods", None)}  # fmt: skip
    paths |= {path: set(ops) for path, ops in asgi.openapi()["paths"].items()}
    asked = {path: path.format(name="mosaic", model="m", job_id="abc") for path in paths}
    for mount in (route for route in asgi.routes if isinstance(route, Mount)):
        paths[mount.path + "/"], asked[mount.path + "/"] = {"get"}, mount.path + "/swagger-ui.css"
    return {path for path, methods in paths.items() for method in methods
            if call(asgi, method.upper(), asked[path]).status != 401}  # fmt: skip


def test_with_a_token_set_only_the_documented_public_paths_answer_without_it():
    settings = {"catalogue": {"uri": "m", "dcgan": "secret-dcgan"}, "limits": {"retry_after_s": 3}}
    asgi = app.create_api(app.Gateway(settings, api_token="t0ken"))
    auth = (REPO / "docs" / "serving.md").read_text().split("## Authentication and exposure")[1]
    documented = set(re.findall(r"`(/[^`]*)`", auth.split("\n\n")[1]))
    assert answering_without_a_token(asgi) == documented
    assert {"/openapi.json", "/docs", "/models"} - documented == {"/models"}
    schema = call(asgi, "GET", "/openapi.json")  # public: it carries no configured names
    assert schema.status == 200 and "secret-dcgan" not in schema.body.decode()
    assert schema.json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_style_controls_reach_the_model_as_query_parameters():
    calls = []

    async def recording(name, image, **controls):
        calls.append((name, controls))
        return b"png"

    asgi = api(image=Handle(stylize=recording))
    reply = call(asgi, "POST", "/style/candy?strength=0.25&preserve_color=yiq", png(16, 16))
    assert reply.status == 200 and reply.body == b"png"
    reply = call(asgi, "POST", "/style/candy", png(16, 16))
    assert reply.status == 200
    assert calls == [("candy", {"strength": 0.25, "preserve_color": "yiq"}),
                     ("candy", {"strength": 1.0, "preserve_color": "none"})]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("strength=1.5", "less than or equal to 1"),
        ("strength=-0.1", "greater than or equal to 0"),
        ("strength=nan", "finite number"),
        ("preserve_color=lab", "'none', 'ycbcr' or 'yiq'"),
    ],
)
def test_bad_style_controls_are_422_with_reasons(query, words):
    reply = call(api(image=Handle(stylize=stylize)), "POST", f"/style/candy?{query}", png(16, 16))
    assert reply.status == 422 and words in json.dumps(reply.json()["detail"]), reply.body


def test_gatys_strength_is_a_setting_bounded_to_0_1():
    calls = []

    async def recording(content, styles, settings):
        calls.append(settings)
        return b"png", {}

    asgi = app.create_api(app.Gateway({"gatys": {}}, gatys=Handle(stylize=recording)))
    image = base64.b64encode(png(16, 16)).decode()
    body = {"content": image, "styles": [image], "settings": {"size": 32, "strength": 0.5}}
    reply = call(asgi, "POST", "/gatys/stylize", json.dumps(body).encode(), JSON)
    assert reply.status == 200 and calls[0]["strength"] == 0.5
    body["settings"]["strength"] = 1.5
    reply = call(asgi, "POST", "/gatys/stylize", json.dumps(body).encode(), JSON)
    assert reply.status == 422 and "less than or equal to 1" in json.dumps(reply.json())
    assert len(calls) == 1
