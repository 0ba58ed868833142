"""The Serve application over real HTTP on the local Ray, with tiny generated checkpoints.

One application serves every family for the whole module (starting its replicas is the
expensive part), the trained ones from a catalogue whose model cache holds two per replica;
each test exercises endpoints against it. Expected images are computed in
this process from the same exports and compared with what came back over HTTP.
"""

import base64
import io
import json
import os
import re
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
import yaml
from PIL import Image

from genart import export as exports
from genart.compat import haproxy
from genart.images import png_bytes
from genart.models import dcgan
from genart.models.layers import forward_any_size
from genart.pipelines.latent import latents
from genart.serve import builder, demo
from genart.serve.ray_settings import free_ports

pytestmark = pytest.mark.ray

TOKEN = "test-token-123"
MAX_BODY = 2 * 2**20
BODY_TIMEOUT_S = 2.0
# Set for Serve's HAProxy where the tests start Ray (tests/conftest.py).
HEADER_TIMEOUT_S = int(os.environ[haproxy.HEADER_TIMEOUT_ENV])
CLIENT_TIMEOUT_S = int(os.environ["RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"])
TINY = {
    "dcgan": ("dcgan", ["data.size=16", "data.channels=1", "dcgan.latent_dim=8",
                        "dcgan.g_width=8", "dcgan.d_width=8"]),
    "mosaic": ("fast_style", ["fast_style.width=8", "fast_style.residual_blocks=1"]),
    "candy": ("fast_style", ["fast_style.width=8", "fast_style.residual_blocks=1"]),
    "facades": ("pix2pix", ["data.size=16", "pix2pix.ngf=4", "pix2pix.ndf=4"]),
    "zebra": ("cyclegan", ["data.size=16", "cyclegan.ngf=4", "cyclegan.ndf=4",
                           "cyclegan.n_blocks=1"]),
    "adain": ("adain", ["adain.vgg_weights=random", "adain.width=8"]),
}  # fmt: skip
SMALL_VGG = {"arch": "vgg16", "content_layers": ["relu2_2"], "style_layers": ["relu1_2", "relu2_2"]}
ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 4}
LIGHT = {"ray_actor_options": {"num_cpus": 0.1}, "autoscaling_config": ONE_REPLICA}
OPTIONS = {
    "Ingress": LIGHT,
    # A long batch window: concurrent requests surely share a batch.
    "LatentModels": LIGHT | {"user_config": {"max_batch_size": 8, "batch_wait_timeout_s": 0.2}},
    # A short queue: a burst overloads it (the 503 test). Serve counts requests not yet
    # assigned to a replica as queued, so keep it >= the concurrency of the other image tests.
    "ImageModels": LIGHT | {"max_ongoing_requests": 4, "max_queued_requests": 4,
                            "user_config": {"max_batch_size": 4, "batch_wait_timeout_s": 0.01}},
    # Frequent health checks: the replica-kill tests wait for Serve to notice and replace.
    "GatysWorker": LIGHT | {"health_check_period_s": 1},
    "JobStore": {"ray_actor_options": {"num_cpus": 0}, "health_check_period_s": 1},
    "Dreamer": LIGHT,
    "AdaIN": LIGHT,
}  # fmt: skip


def png(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def gradient_png(side: int) -> bytes:
    """A large image that compresses to a few kilobytes (for the overload test)."""
    x, y = np.meshgrid(*[np.linspace(0, 255, side, dtype=np.uint8)] * 2)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([x, y, x // 2 + y // 2], -1)).save(buffer, "PNG")
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def expected(images: torch.Tensor) -> list[np.ndarray]:
    """(B, C, H, W) in [-1, 1] -> RGB uint8-valued arrays, as the server encodes them."""
    return [decoded(png_bytes(image)) for image in images]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Client:
    """HTTP calls to the served app, authenticated unless told otherwise."""

    def __init__(self, url: str, models: dict[str, str], root):
        self.url, self.models, self.root = url, models, root
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    from ray import serve

    root = tmp_path_factory.mktemp("models")
    models = {}
    for seed, (name, (model, overrides)) in enumerate(TINY.items()):
        models[name] = str(publish(root, name, model, overrides, seed))
    settings = {
        # Two models per replica: the four image models rotate through its cache.
        "catalogue": {
            "uri": str(root / "cat"),
            "dcgan": "dcgan",
            "adain": "adain",
            "models_per_replica": 2,
        },
        "gatys": {
            "vgg_weights": "random",
            "config": SMALL_VGG,
            "max_side": 64,
            "sync_max_side": 48,
            "jobs_dir": str(tmp_path_factory.mktemp("jobs")),
        },
        "dream": {"vgg_weights": "random", "config": {"layers": ["relu2_2"]}, "max_side": 64},
        "adain": {
            "max_side": 64,
            "styles": {"demo": str(demo.demo_style(root))},
        },
        "limits": {"max_body_bytes": MAX_BODY, "body_timeout_s": BODY_TIMEOUT_S},
    }
    (port,) = free_ports(1)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(builder.build(settings, OPTIONS, api_token=TOKEN), name="genart-test",
              logging_config={"enable_access_log": False})  # fmt: skip
    yield Client(f"http://127.0.0.1:{port}", models, root)
    serve.shutdown()


def publish(root, name: str, model: str, overrides: list[str], seed: int = 0):
    """A freshly initialised ``model`` exported into the test catalogue as ``name``."""
    out = root / "cat" / name
    return demo.export_initialised(model, overrides, out, seed, checkpoints=root / "checkpoints")


def test_health_docs_and_a_self_contained_playground(served):
    assert requests.get(served.url + "/healthz", timeout=10).json() == {"status": "ok"}
    page = requests.get(served.url + "/", timeout=10)
    assert page.status_code == 200 and "genart playground" in page.text
    assert "src=" not in page.text.replace('$("result").src', "").split("<script>")[0]
    assert "http://" not in page.text and "https://" not in page.text  # no external assets
    docs = requests.get(served.url + "/docs", timeout=10)
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text  # works offline
    for asset in re.findall(r'(?:href|src)="([^"]+)"', docs.text):
        assert requests.get(served.url + asset, timeout=10).status_code == 200, asset
    paths = requests.get(served.url + "/openapi.json", timeout=10).json()["paths"]
    for path in ("/dcgan/sample", "/style/{name}", "/translate/{model}", "/gatys/jobs", "/dream"):
        assert path in paths
    assert "image/png" in paths["/style/{name}"]["post"]["requestBody"]["content"]


def test_bearer_token_guards_the_models(served):
    assert requests.get(served.url + "/models", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.get(served.url + "/models", headers=wrong, timeout=10).status_code == 401
    response = requests.post(served.url + "/style/mosaic", data=png(16, 16), timeout=10)
    assert response.status_code == 401


def test_models_say_what_is_served_and_never_where_from(served):
    assert served.post("/style/mosaic", data=png(16, 16)).status_code == 200
    listing = served.get("/models").json()
    catalogue = {entry["name"]: entry for entry in listing["catalogue"]}
    assert {"dcgan", "mosaic", "candy", "facades", "zebra", "adain"} <= set(catalogue)
    assert catalogue["dcgan"]["family"] == "dcgan" and catalogue["dcgan"]["step"] == 0
    assert catalogue["zebra"]["family"] == "cyclegan" and "scores" in catalogue["zebra"]
    # The exports carry checked graphs, and the replicas run on CPU: onnxruntime, with one
    # thread for a replica's share of a CPU.
    mosaic = catalogue["mosaic"]
    assert mosaic["loaded"] and mosaic["backend"] == "onnxruntime" and mosaic["threads"] == 1
    assert "random" in listing["gatys"]["vgg_weights"] and listing["dream"]["max_side"] == 64
    # No server path (of an export, its run or the catalogue) and no training config.
    text = json.dumps(listing)
    assert all(path not in text for path in [*served.models.values(), str(served.root)])
    assert "config" not in catalogue["dcgan"] and "config" not in listing["adain"]


def test_dcgan_sample_interpolate_arithmetic(served):
    G = exports.load(served.models["dcgan"]).nets["G"]
    grid = served.post("/dcgan/sample", json={"n": 4, "seed": 5})
    assert grid.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(grid.content)).size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)
    got = served.post("/dcgan/sample", json={"n": 3, "seed": 5, "format": "json"}).json()
    want = expected(dcgan.generate(G, latents([5, 6, 7], 8)))
    assert got["count"] == 3
    for image, reference in zip(got["images"], want):
        assert np.abs(decoded(base64.b64decode(image)) - reference).max() <= 1
    truncated = served.post(
        "/dcgan/sample", json={"n": 3, "seed": 5, "format": "json", "truncation": 0.3}
    )
    assert truncated.json()["images"] != got["images"]
    walk = served.post(
        "/dcgan/interpolate", json={"seeds": [1, 2, 3], "steps": 5, "mode": "linear"}
    )
    assert Image.open(io.BytesIO(walk.content)).size == (5 * 16 + 6 * 2, 2 * 16 + 3 * 2)
    sums = served.post(
        "/dcgan/arithmetic", json={"a": [1, 2], "b": [3], "c": [4], "format": "json"}
    )
    assert sums.json()["count"] == 4


def test_batching_returns_each_caller_its_own_images(served):
    G = exports.load(served.models["dcgan"]).nets["G"]
    bodies = [{"n": 1 + i % 3, "seed": 100 * i, "format": "json"} for i in range(8)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda body: served.post("/dcgan/sample", json=body), bodies))
    for body, reply in zip(bodies, replies):
        seeds = list(range(body["seed"], body["seed"] + body["n"]))
        want = expected(dcgan.generate(G, latents(seeds, 8)))
        got = [decoded(base64.b64decode(image)) for image in reply.json()["images"]]
        assert len(got) == len(want)
        assert all(np.abs(g - w).max() <= 1 for g, w in zip(got, want))


def test_styles_side_by_side_at_any_size(served):
    nets = {name: exports.load(served.models[name]).nets["G"] for name in ("mosaic", "candy")}
    sizes = [("mosaic", (37, 23)), ("candy", (37, 23)), ("mosaic", (20, 30)), ("candy", (64, 16))]
    jobs = [(name, png(w, h, seed=i)) for i, (name, (w, h)) in enumerate(sizes)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(lambda job: served.post(f"/style/{job[0]}", data=job[1]), jobs))
    for (name, data), reply in zip(jobs, replies):
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
        image = torch.from_numpy(np.moveaxis(decoded(data), -1, 0)).float()[None] / 127.5 - 1
        (want,) = expected(forward_any_size(nets[name], image))
        assert decoded(reply.content).shape == want.shape
        assert np.abs(decoded(reply.content) - want).max() <= 1


def test_translate_pix2pix_and_both_cyclegan_directions(served):
    data = png(37, 23)
    pix = served.post("/translate/facades", data=data)
    assert pix.status_code == 200 and decoded(pix.content).shape == (23, 37, 3)
    assert served.post("/translate/facades?direction=BtoA", data=data).status_code == 422
    nets = exports.load(served.models["zebra"]).nets
    image = torch.from_numpy(np.moveaxis(decoded(data), -1, 0)).float()[None] / 127.5 - 1
    for direction, net in (("AtoB", "G_AB"), ("BtoA", "G_BA")):
        reply = served.post(f"/translate/zebra?direction={direction}", data=data)
        (want,) = expected(forward_any_size(nets[net], image))
        assert np.abs(decoded(reply.content) - want).max() <= 1


def styled_by(served, name: str, data: bytes) -> np.ndarray:
    """What the fast-style export ``name`` of the test catalogue makes of the PNG ``data``."""
    net = exports.load(str(served.root / "cat" / name)).nets["G"]
    image = torch.from_numpy(np.moveaxis(decoded(data), -1, 0)).float()[None] / 127.5 - 1
    (want,) = expected(forward_any_size(net, image))
    return want


def loaded_image_models(served) -> set[str]:
    return {entry["name"] for entry in served.get("/models").json()["catalogue"]
            if entry["loaded"] and entry["family"] != "dcgan"}  # fmt: skip


def test_an_export_published_after_start_answers_without_a_redeploy(served):
    data = png(24, 16)
    assert served.post("/style/fresh", data=data).status_code == 404  # not there yet
    publish(served.root, "fresh", *TINY["mosaic"], seed=42)
    reply = served.post("/style/fresh", data=data)
    assert reply.status_code == 200, reply.text
    assert np.abs(decoded(reply.content) - styled_by(served, "fresh", data)).max() <= 1


def test_more_models_than_the_cache_holds_rotate_and_all_answer(served):
    # Two models per replica: five image models in turn evict one another, twice over.
    data = png(16, 16)
    routes = [
        "/style/mosaic",
        "/style/candy",
        "/translate/facades",
        "/translate/zebra",
        "/style/mosaic",
        "/translate/facades",
        "/style/candy",
        "/translate/zebra",
    ]
    for route in routes:
        reply = served.post(route, data=data)
        assert reply.status_code == 200, (route, reply.text)
    assert loaded_image_models(served) == {"candy", "zebra"}  # the two used last
    reply = served.post("/style/mosaic", data=data)  # evicted, loaded again: still its own
    assert np.abs(decoded(reply.content) - styled_by(served, "mosaic", data)).max() <= 1


def test_a_model_of_another_family_for_the_route_is_404_with_the_reason(served):
    for route, family in (("/style/dcgan", "dcgan"), ("/style/zebra", "cyclegan"),
                          ("/translate/mosaic", "fast_style")):  # fmt: skip
        reply = served.post(route, data=png(16, 16))
        assert reply.status_code == 404 and f"a {family} model" in reply.json()["detail"], route
    reply = served.post("/dcgan/mosaic/sample", json={"n": 1})
    assert reply.status_code == 404 and "fast_style model" in reply.json()["detail"]
    reply = served.post("/style/nobody", data=png(16, 16))
    assert reply.status_code == 404 and "no model named 'nobody'" in reply.json()["detail"]


def test_a_broken_export_is_refused_with_its_reason_and_the_others_answer(served):
    broken = publish(served.root, "broken", *TINY["mosaic"])
    (broken / "G.pt").write_bytes(b"damaged")
    reply = served.post("/style/broken", data=png(16, 16))
    assert reply.status_code == 500 and "G.pt" in reply.json()["detail"]
    assert str(served.root) not in reply.text
    assert served.post("/style/candy", data=png(16, 16)).status_code == 200
    assert served.post("/dcgan/sample", json={"n": 1}).status_code == 200
    listing = {entry["name"]: entry for entry in served.get("/models").json()["catalogue"]}
    assert not listing["broken"]["loaded"] and listing["candy"]["loaded"]


def test_gatys_job_runs_to_completion(served):
    body = {"content": b64(png(40, 30)), "styles": [b64(png(24, 24, seed=1))],
            "settings": {"size": 32, "iterations": 20}}  # fmt: skip
    submitted = served.post("/gatys/jobs", json=body)
    assert submitted.status_code == 202
    status_url = submitted.json()["status_url"]
    assert submitted.headers["location"] == status_url
    deadline = time.monotonic() + 180
    while (job := served.get(status_url).json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["status"] == "done", job.get("error")
    assert job["progress"]["evaluations"] == job["progress"]["total"] == 20
    assert "random" in job["info"]["vgg_weights"] and job["info"]["losses"]["total"] > 0
    result = served.get(job["result_url"])
    assert result.headers["content-type"] == "image/png"
    assert decoded(result.content).shape == (24, 32, 3)  # long side fit to settings.size
    assert base64.b64decode(job["result_png"]) == result.content


def test_a_masked_gatys_job_keeps_the_content_where_the_mask_is_black(served):
    from genart.serve.validation import fit_long_side

    mask = np.zeros((30, 40, 3), np.uint8)
    mask[:, :20] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    body = {"content": b64(png(40, 30)), "styles": [b64(png(24, 24, seed=1))],
            "mask": b64(buffer.getvalue()), "outside_style": None,
            "settings": {"size": 32, "iterations": 10}}  # fmt: skip
    status_url = served.post("/gatys/jobs", json=body).json()["status_url"]
    deadline = time.monotonic() + 180
    while (job := served.get(status_url).json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["status"] == "done", job.get("error")
    result = decoded(base64.b64decode(job["result_png"]))
    content = fit_long_side(decoded(png(40, 30)).astype(np.uint8), 32)  # as the server fit it
    assert result.shape == (24, 32, 3)
    np.testing.assert_array_equal(result[:, 20:], content[:, 20:])  # black: the content
    assert np.abs(result[:, :12] - content[:, :12]).mean() > 1  # white: stylised


def test_gatys_synchronous_mode_is_for_small_work(served):
    body = {"content": b64(png(40, 30)), "styles": [b64(png(24, 24, seed=1))],
            "settings": {"size": 32, "iterations": 5}}  # fmt: skip
    reply = served.post("/gatys/stylize", json=body)
    assert reply.status_code == 200 and decoded(reply.content).shape == (24, 32, 3)
    body["settings"]["size"] = 64  # over sync_max_side 48
    assert served.post("/gatys/stylize", json=body).status_code == 422


def test_dream(served):
    reply = served.post("/dream?size=48&octaves=2&iterations=2", data=png(80, 60))
    assert reply.status_code == 200 and decoded(reply.content).shape == (36, 48, 3)


def test_adain_with_an_uploaded_style_and_a_named_one(served):
    from genart.pipelines.adain import AdaINPipeline

    content, style = png(40, 24), png(32, 32, seed=1)
    body = {"content": b64(content), "style": b64(style), "alpha": 0.6}
    reply = served.post("/adain/stylize", json=body)
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    pipe = AdaINPipeline.from_export(served.models["adain"], "cpu")
    want = pipe(decoded(content).astype(np.uint8), [decoded(style).astype(np.uint8)], alpha=0.6)
    assert np.abs(decoded(reply.content) - want).max() <= 1
    named = served.post("/adain/stylize", json={"content": b64(content), "style_name": "demo"})
    assert named.status_code == 200 and decoded(named.content).shape == (24, 40, 3)
    unknown = served.post("/adain/stylize", json={"content": b64(content), "style_name": "x"})
    assert unknown.status_code == 404 and "available: ['demo']" in unknown.text
    listing = served.get("/models").json()
    assert listing["adain"]["styles"] == ["demo"] and "adain" in listing["adain"]["loaded"]
    # By catalogue name: the same model, and only AdaIN models.
    by_name = served.post("/adain/adain/stylize", json=body)
    assert by_name.status_code == 200 and by_name.content == reply.content
    other = served.post("/adain/mosaic/stylize", json=body)
    assert other.status_code == 404 and "fast_style model" in other.text


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few bytes whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(bytes(64)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def many_scan_mpo(scans: int) -> bytes:
    """A 64x64 progressive JPEG of ``scans`` scans that Pillow opens as MPO (an MPF segment)."""
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last = data.rindex(b"\xff\xda")
    data = data[:last] + data[last:-2] * (scans - data.count(b"\xff\xda") + 1) + data[-2:]
    buffer, frame = io.BytesIO(), Image.new("L", (8, 8))
    frame.save(buffer, "MPO", save_all=True, append_images=[frame])
    mpo = buffer.getvalue()
    start = mpo.index(b"\xff\xe2")  # its APP2 "MPF" segment
    app2 = mpo[start : start + 2 + int.from_bytes(mpo[start + 2 : start + 4], "big")]
    return data[:2] + app2 + data[2:]


JSON_TYPE = {"Content-Type": "application/json"}
SMALL = b64(png(16, 16))
BAD = [
    ("truncated PNG", "/style/mosaic", {"data": png(64, 64)[:300]}, 400),
    ("empty body", "/style/mosaic", {"data": b""}, 400),
    ("not an image", "/style/mosaic", {"data": b"GIF89a" + bytes(200)}, 415),
    ("text", "/translate/zebra", {"data": b"hello world " * 20}, 415),
    ("20,000 x 20,000 PNG", "/style/mosaic", {"data": png_declaring(20_000, 20_000)}, 413),
    ("5,000 x 5,000 PNG", "/dream", {"data": png_declaring(5_000, 5_000)}, 413),
    ("oversized body", "/style/mosaic", {"data": b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY)}, 413),
    ("too small", "/style/mosaic", {"data": png(4, 4)}, 422),
    ("unknown style", "/style/starry", {"data": png(16, 16)}, 404),
    ("unknown translator", "/translate/horses", {"data": png(16, 16)}, 404),
    ("bad direction", "/translate/zebra?direction=sideways", {"data": png(16, 16)}, 422),
    ("string for int", "/dcgan/sample", {"json": {"n": "4"}}, 422),
    ("n too big", "/dcgan/sample", {"json": {"n": 10_000}}, 422),
    ("unknown field", "/dcgan/sample", {"json": {"n": 1, "size": 4096}}, 422),
    ("not JSON", "/dcgan/sample", {"data": b"{n: 4", "headers": JSON_TYPE}, 422),
    ("NaN", "/dcgan/sample", {"data": b'{"n":1,"truncation":NaN}', "headers": JSON_TYPE}, 422),
    ("Infinity", "/dcgan/sample", {"data": b'{"n":1,"truncation":Infinity}',
                                   "headers": JSON_TYPE}, 422),
    ("1e999", "/gatys/jobs", {"data": b'{"content":"x","styles":["y"],'
                                      b'"settings":{"style_weight":1e999}}',
                              "headers": JSON_TYPE}, 422),
    ("dream nan", "/dream?step_size=nan", {"data": png(16, 16)}, 422),
    ("2,020-scan MPO", "/style/mosaic", {"data": many_scan_mpo(2_020)}, 422),
    ("PNG signature, no header", "/style/mosaic", {"data": b"\x89PNG\r\n\x1a\n" + bytes(99)}, 400),
    ("60,000 x 60,000 PNG", "/style/mosaic", {"data": png_declaring(60_000, 60_000)}, 413),
    ("one seed", "/dcgan/interpolate", {"json": {"seeds": [1]}}, 422),
    ("dream octaves", "/dream?octaves=99", {"data": png(16, 16)}, 422),
    ("bad base64", "/gatys/jobs", {"json": {"content": "!!!", "styles": ["!!!"],
                                            "settings": {"size": 32}}}, 422),
    ("gatys too big", "/gatys/jobs", {"json": {"content": SMALL, "styles": [SMALL],
                                               "settings": {"size": 512}}}, 422),
]  # fmt: skip


def strict_json(text: str):
    """JSON as a strict parser reads it: NaN or Infinity in it fail."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_bad_requests_get_4xx_with_a_reason_within_a_second(served):
    for name, path, kwargs, status in BAD:
        start = time.monotonic()
        reply = served.post(path, **kwargs)
        assert reply.status_code == status, (name, reply.status_code, reply.text[:300])
        assert time.monotonic() - start < 1.0, name
        detail = strict_json(reply.text)["detail"]  # the reason, in valid JSON
        assert detail, name
        assert not re.search(r"<_io|object at 0x|decompression bomb", reply.text), (name, detail)
        # A refusal before the body was read ends its connection (the unread rest is of no
        # use); the proxy in front may close it only after answering, so a pooled client could
        # reuse a socket about to close. Each request here gets a fresh one.
        served.session.close()
    assert served.get("/gatys/jobs/no-such-job").status_code == 404
    assert served.post("/style/mosaic", data=png(16, 16)).status_code == 200  # still healthy


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response from a socket: its head and as much body as its Content-Length says."""
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < int(
        re.search(rb"(?i)content-length: *(\d+)", reply)[1]
    ):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {reply[:300]}"
        reply += chunk
    return reply


def raw_connection(served: Client) -> socket.socket:
    """A socket to the served app, with a timeout well past every connection timeout here."""
    host, port = served.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=CLIENT_TIMEOUT_S + 10)


def post_head(length: int, *extra: str) -> bytes:
    """The head of an authenticated PNG upload to /style/mosaic declaring ``length`` bytes."""
    lines = ["POST /style/mosaic HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {TOKEN}",
             "Content-Type: image/png", f"Content-Length: {length}", *extra]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def says_close(reply: bytes) -> bool:
    """Whether an HTTP response's head has ``Connection: close``."""
    return b"connection: close" in reply.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")


def seconds_until_closed(sock: socket.socket, start: float) -> float:
    """Reads until the server closes ``sock``; the seconds from ``start`` until it did."""
    while sock.recv(65536):
        pass
    return time.monotonic() - start


def test_a_body_shorter_than_its_content_length_gets_408_at_the_deadline(served):
    start = time.monotonic()
    with raw_connection(served) as sock:
        sock.sendall(post_head(100000) + png(16, 16)[:50])  # and then nothing more
        reply = read_response(sock)
        elapsed = time.monotonic() - start
        closed = seconds_until_closed(sock, start)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert BODY_TIMEOUT_S <= elapsed < BODY_TIMEOUT_S + 3, elapsed
    assert b"body_timeout_s" in reply
    # Said, and done: the socket ends once the client has sent nothing for the client timeout.
    assert says_close(reply), reply[:300]
    assert closed < elapsed + CLIENT_TIMEOUT_S + 2, (elapsed, closed)
    assert served.post("/style/mosaic", data=png(16, 16)).status_code == 200  # still healthy


def test_half_sent_headers_are_refused_at_the_header_timeout(served):
    start = time.monotonic()
    with raw_connection(served) as sock:
        sock.sendall(post_head(100)[:60])  # a request line and part of a header, then nothing
        reply = sock.recv(65536)
        closed = seconds_until_closed(sock, start)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert HEADER_TIMEOUT_S <= closed < HEADER_TIMEOUT_S + 2, closed


def test_an_over_cap_body_is_refused_before_100_continue_and_the_close_is_said(served):
    for expect in ([], ["Expect: 100-continue"]):
        with raw_connection(served) as sock:
            sock.sendall(post_head(MAX_BODY + 1, *expect))  # no body: the answer comes first
            reply = read_response(sock)
        assert reply.startswith(b"HTTP/1.1 413"), (expect, reply[:300])  # not "100 Continue"
        assert says_close(reply), (expect, reply[:300])
    # An upload that fits still gets its 100 Continue once the app reads it, and its answer.
    data = png(16, 16)
    with raw_connection(served) as sock:
        sock.sendall(post_head(len(data), "Expect: 100-continue"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(data)
        assert read_response(sock).startswith(b"HTTP/1.1 200")


def test_overload_beyond_the_queue_gets_503(served):
    # ImageModels here queues at most 4 requests; 24 at once must overflow it.
    data = gradient_png(512)
    with ThreadPoolExecutor(24) as pool:
        replies = list(pool.map(lambda _: served.post("/style/candy", data=data), range(24)))
    codes = [reply.status_code for reply in replies]
    assert set(codes) <= {200, 503} and codes.count(503) >= 1 and codes.count(200) >= 2, codes
    busy = [reply for reply in replies if reply.status_code == 503]
    assert all(int(reply.headers["Retry-After"]) > 0 for reply in busy)
    assert all("capacity" in reply.json()["detail"] for reply in busy)
    assert served.post("/style/candy", data=png(16, 16)).status_code == 200


def test_cli_prepares_demo_models_and_serves_a_config_file(served, tmp_path, monkeypatch, capsys):
    from ray import serve

    from genart.cli import main

    assert main(["serve", "--prepare", "--demo-dir", str(tmp_path / "demo")]) == 0
    for name in demo.DEMO_MODELS:
        assert (tmp_path / "demo" / demo.CATALOGUE / name / "export.json").is_file()
    config = {
        "http_options": {"host": "127.0.0.1", "port": int(served.url.rsplit(":", 1)[1])},
        "applications": [{
            "name": "cli", "route_prefix": "/cli", "import_path": "genart.serve.builder:build_app",
            "args": {"catalogue": {"uri": str(tmp_path / "demo" / demo.CATALOGUE),
                                   "dcgan": "dcgan"}},
            "deployments": [{"name": name, **LIGHT}
                            for name in ("Ingress", "LatentModels", "ImageModels")],
        }],
    }  # fmt: skip
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("GENART_API_TOKEN", TOKEN)
    try:
        assert main(["serve", "--config", str(path), "--no-block"]) == 0
        printed = capsys.readouterr().out
        assert f"{served.url}/cli/dcgan/sample" in printed and "Bearer $GENART_API_TOKEN" in printed
        # A new connection: HAProxy reloads gracefully for the new route, and a connection kept
        # alive from before gets one more answer routed the old way (README, Serving).
        grid = requests.post(f"{served.url}/cli/dcgan/sample", json={"n": 4}, timeout=60,
                             headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert grid.status_code == 200, grid.text
        assert Image.open(io.BytesIO(grid.content)).size == (2 * 32 + 3 * 2,) * 2  # demo: 32 px
    finally:
        serve.delete("cli")


def replica(deployment: str):
    """The actor of the test app's one replica of ``deployment``."""
    import ray

    (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
               if a["name"].startswith(f"SERVE_REPLICA::genart-test#{deployment}#")]  # fmt: skip
    return ray.get_actor(name, namespace="serve")


def submit_and_wait_until_running(served, iterations: int) -> str:
    body = {"content": b64(png(64, 48)), "styles": [b64(png(32, 32, seed=1))],
            "settings": {"size": 64, "iterations": iterations}}  # fmt: skip
    submitted = served.post("/gatys/jobs", json=body)
    assert submitted.status_code == 202, submitted.text
    status_url = submitted.json()["status_url"]
    deadline = time.monotonic() + 120
    while (job := served.get(status_url).json()).get("progress") is None:
        assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
        time.sleep(0.2)
    return status_url


def poll_until_finished(served, status_url: str, timeout_s: float = 240, waits=None) -> dict:
    """The job once finished; ``waits`` (a list) gets each poll's seconds and status."""
    deadline = time.monotonic() + timeout_s
    while True:
        start = time.monotonic()
        reply = served.get(status_url)
        if waits is not None:
            waits.append((time.monotonic() - start, reply.status_code))
        # The id stays known throughout; a poll that meets the store restarting may get a 503.
        assert reply.status_code in (200, 503), reply.text
        assert reply.status_code == 200 or reply.headers["Retry-After"], reply.headers
        if reply.status_code == 200 and (job := reply.json())["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, reply.text
        time.sleep(0.5)


def test_gatys_jobs_survive_a_restart_of_the_job_store(served):
    import ray

    status_url = submit_and_wait_until_running(served, iterations=400)
    ray.kill(replica("JobStore"), no_restart=False)
    waits = []
    job = poll_until_finished(served, status_url, waits=waits)  # a new store, from jobs_dir
    assert job["status"] == "done", job
    # Polls meeting the restart answer 503 at once instead of waiting seconds for the new
    # replica; the bound is generous, for a busy machine.
    assert 503 in [status for _, status in waits] and max(waits)[0] < 5, waits
    assert served.get(job["result_url"]).headers["content-type"] == "image/png"


def test_a_job_whose_worker_is_killed_fails_with_the_reason(served):
    import ray

    status_url = submit_and_wait_until_running(served, iterations=2000)
    ray.kill(replica("GatysWorker"), no_restart=False)
    job = poll_until_finished(served, status_url, timeout_s=90)
    assert job["status"] == "failed" and "submit it again" in job["error"], job
    # Serve replaces the worker: new jobs run.
    body = {"content": b64(png(40, 30)), "styles": [b64(png(24, 24, seed=1))],
            "settings": {"size": 32, "iterations": 5}}  # fmt: skip
    deadline = time.monotonic() + 120
    while (reply := served.post("/gatys/stylize", json=body)).status_code != 200:
        assert time.monotonic() < deadline, reply.text
        time.sleep(1)
