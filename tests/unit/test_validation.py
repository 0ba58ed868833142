"""What the HTTP app accepts, without Ray: images, bodies, app settings, serve_config.yaml."""

import asyncio
import base64
import dataclasses
import io
import json
import struct
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, PngImagePlugin
from pydantic import ValidationError
from test_http_app import webp_declaring

from genart.data import transforms
from genart.models import deepdream, gatys
from genart.pipelines import base as pipeline_base
from genart.pipelines.latent import latents, truncated_latents
from genart.serve import app, builder, deployments, validation
from genart.serve.settings import AppSettings
from genart.serve.validation import Limits, RequestError

REPO = Path(__file__).resolve().parents[2]


def encoded(width: int, height: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def saved(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    data = bytearray(encoded(8, 8, "JPEG"))
    sof = data.index(b"\xff\xc0") + 5  # marker, 2 length bytes, 1 precision byte
    data[sof : sof + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def status_of(data: bytes, limits: Limits = Limits()) -> int:
    with pytest.raises(RequestError) as caught:
        validation.decode_image(data, limits)
    return caught.value.status


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt):
    image = validation.decode_image(encoded(33, 17, fmt), Limits())
    assert image.shape == (17, 33, 3) and image.dtype == np.uint8


def test_grey_and_alpha_images_become_rgb():
    for mode in ("L", "RGBA", "P"):
        assert validation.decode_image(saved(Image.new(mode, (9, 12))), Limits()).shape == (
            12,
            9,
            3,
        )


def test_images_decode_upright_8_bit_and_opaque():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    grey = validation.decode_image(saved(Image.fromarray(ramp)), Limits())  # a 16-bit PNG
    assert np.array_equal(grey[..., 0], ramp >> 8)  # not clipped to white
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown rotated 90 degrees clockwise, as phones store photos
    sideways = saved(Image.new("RGB", (200, 100)), "JPEG", exif=exif)
    assert validation.decode_image(sideways, Limits()).shape == (200, 100, 3)
    transparent_red = saved(Image.new("RGBA", (16, 16), (255, 0, 0, 0)))
    assert (validation.decode_image(transparent_red, Limits()) == 255).all()


def test_jpegs_of_too_many_scans_are_422_before_decoding(monkeypatch):
    monkeypatch.setattr(transforms, "MAX_JPEG_SCANS", 4)  # Pillow writes 10 for colour
    assert status_of(saved(Image.new("RGB", (16, 16)), "JPEG", progressive=True)) == 422
    assert validation.decode_image(encoded(16, 16, "JPEG"), Limits()).shape == (16, 16, 3)
    text = PngImagePlugin.PngInfo()
    text.add_text("note", "\xff\xda" * 10)  # latin-1: the scan-start marker's bytes
    png = saved(Image.new("L", (9, 9)), pnginfo=text)
    assert png.count(transforms.JPEG_SCAN_START) == 10
    assert validation.decode_image(png, Limits()).shape == (9, 9, 3)  # only JPEGs are counted


def test_mpo_marked_jpegs_of_too_many_scans_are_422_before_decoding():
    from test_transforms import mpo_marked, progressive_jpeg

    start = time.perf_counter()
    assert status_of(mpo_marked(progressive_jpeg(2_020))) == 422
    assert time.perf_counter() - start < 0.5  # refused from the bytes, nothing decoded


@pytest.mark.parametrize(
    "data",
    [b"hello, this is text", encoded(16, 16, "GIF"), encoded(16, 16, "BMP"), b"RIFF0000WAVEfmt "],
    ids=["text", "gif", "bmp", "riff-not-webp"],
)
def test_other_formats_are_415_by_content(data):
    assert status_of(data) == 415


def test_truncated_and_empty_images_are_400():
    assert status_of(encoded(64, 64)[:300]) == 400
    assert status_of(encoded(64, 64, "JPEG")[:400]) == 400
    assert status_of(b"") == 400


def test_pixel_bombs_are_413_from_the_header_alone():
    start = time.perf_counter()
    # 400 MP: beyond Pillow's own bomb limit; 25 MP: below it, where Pillow only warns.
    assert status_of(jpeg_declaring(20_000, 20_000)) == 413
    assert status_of(jpeg_declaring(5_000, 5_000)) == 413
    assert time.perf_counter() - start < 0.5  # nothing was decoded


@pytest.mark.parametrize("chunk", ["VP8 ", "VP8L", "VP8X"])
def test_webps_over_the_caps_are_413_from_their_declared_size(chunk):
    # Over Pillow's own decompression-bomb limit too, which its WebP parser applies itself.
    huge = webp_declaring(16383, 12000, chunk)
    assert transforms.image_size(huge) == (16383, 12000)
    with pytest.raises(RequestError) as caught:
        validation.decode_image(huge, Limits())
    assert caught.value.status == 413 and "image is 16383x12000" in caught.value.reason
    assert transforms.webp_canvas_size(webp_declaring(16, 16, chunk)) == (16, 16)
    assert validation.decode_image(webp_declaring(16, 16, chunk), Limits()).shape == (16, 16, 3)


def test_side_caps():
    assert status_of(encoded(300, 10), Limits(max_side=256)) == 413
    assert status_of(encoded(4, 40)) == 422  # below min_side 8
    assert validation.decode_image(encoded(256, 10), Limits(max_side=256)).shape == (10, 256, 3)


def test_base64_images_with_or_without_data_url():
    raw = encoded(10, 11)
    text = base64.b64encode(raw).decode()
    for sent in (text, "data:image/png;base64," + text):
        assert validation.decode_base64_image(sent, Limits()).shape == (11, 10, 3)
    with pytest.raises(RequestError) as caught:
        validation.decode_base64_image("not base64 at all!", Limits())
    assert caught.value.status == 400


def test_request_error_survives_pickling():
    # Errors raised in model replicas reach the ingress pickled (class, args).
    import pickle

    err = pickle.loads(pickle.dumps(RequestError(422, "bad direction")))
    assert (err.status, err.reason) == (422, "bad direction")


def test_fit_long_side_only_shrinks():
    image = np.zeros((100, 40, 3), np.uint8)
    assert validation.fit_long_side(image, 50).shape == (50, 20, 3)
    assert validation.fit_long_side(image, 500) is image


def test_fit_long_side_refuses_to_shrink_the_short_side_below_the_minimum():
    thin = np.zeros((8, 4096, 3), np.uint8)  # 256 on its long side would leave it 1 pixel high
    with pytest.raises(RequestError, match="under 8") as caught:
        validation.fit_long_side(thin, 256, min_side=8)
    assert caught.value.status == 422
    assert validation.fit_long_side(thin, 2048, min_side=4).shape == (4, 2048, 3)


def test_ingress_resizes_uploads_within_the_minimum_side():
    class Upload:
        async def body(self) -> bytes:
            return encoded(4096, 8)

    # Only its settings are used: the real class starts behind Serve's ASGI wrapper.
    ingress = types.SimpleNamespace(settings=AppSettings(limits=Limits(min_side=8)))
    read_image = app.Ingress.func_or_class.read_image
    with pytest.raises(RequestError) as caught:
        asyncio.run(read_image(ingress, Upload(), long_side=256))  # as /dream does
    assert caught.value.status == 422


# --- JSON bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"n": "4"},
        {"n": 4.0},
        {"n": 0},
        {"n": 65},
        {"seed": -1},
        {"truncation": 0},
        {"truncation": 0.05},
        {"format": "gif"},
        {"n": 4, "extra": 1},
        {"seed": True},
    ],  # fmt: skip
)
def test_sample_requests_are_typed_and_bounded(body):
    with pytest.raises(ValidationError):
        validation.SampleRequest.model_validate(body)


def test_valid_requests_parse():
    assert validation.SampleRequest.model_validate({"n": 4, "truncation": 1}).truncation == 1.0
    walk = validation.InterpolateRequest.model_validate({"seeds": [1, 2, 3], "mode": "linear"})
    assert walk.steps == 8
    with pytest.raises(ValidationError):
        validation.InterpolateRequest.model_validate({"seeds": [1]})
    with pytest.raises(ValidationError):
        validation.ArithmeticRequest.model_validate({"a": [1], "b": [], "c": [2]})


def test_gatys_request_checks_blend_against_styles():
    body = {"content": "x", "styles": ["y", "z"], "settings": {"style_blend": [1.0]}}
    with pytest.raises(ValidationError, match="style_blend"):
        validation.GatysRequest.model_validate(body)
    body["settings"]["style_blend"] = [1.0, 2.0]
    assert validation.GatysRequest.model_validate(body).settings.style_blend == [1.0, 2.0]
    body["settings"]["style_blend"] = [0.0, 0.0]
    with pytest.raises(ValidationError, match="positive sum"):
        validation.GatysRequest.model_validate(body)
    with pytest.raises(ValidationError):
        validation.GatysRequest.model_validate({"content": "x", "styles": []})


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_json_numbers_must_be_finite(number):
    # Python's JSON parser reads these; refused as such, not by whichever bound fails first.
    settings = json.loads(f'{{"content_weight": {number}}}')
    with pytest.raises(ValidationError, match="finite number"):
        validation.GatysSettings.model_validate(settings)


def test_client_settings_are_fields_of_the_model_configs():
    # The worker applies them with dataclasses.replace: a renamed field must fail here first.
    gatys_fields = {f.name for f in dataclasses.fields(gatys.GatysConfig)}
    assert set(validation.GatysSettings.model_fields) - {"size"} <= gatys_fields
    dream_fields = {f.name for f in dataclasses.fields(deepdream.DreamConfig)}
    assert set(validation.DreamParams.model_fields) - {"size"} <= dream_fields


# --- app settings, helpers, and the shipped Serve config ---------------------------------------


def test_app_settings_reject_unknown_keys_and_the_per_family_keys_of_old():
    with pytest.raises(ValidationError):
        AppSettings.model_validate({"catalogue": {"uri": "x"}, "stlyes": {}})
    with pytest.raises(ValidationError, match="styles"):  # a catalogue serves them now
        AppSettings.model_validate({"styles": {"mosaic": "x"}})
    with pytest.raises(ValidationError, match="replica_memory_mb"):
        AppSettings.model_validate({"catalogue": {"uri": "x", "replica_memory_mb": 0}})


def test_build_rejects_options_for_deployments_it_does_not_make():
    catalogue = {"catalogue": {"uri": "x"}}
    application = builder.build(catalogue, {"LatentModels": {"max_queued_requests": 3}})
    assert application is not None
    with pytest.raises(ValueError, match="Dreamer"):
        builder.build(catalogue, {"Dreamer": {"max_queued_requests": 3}})


def test_serve_config_is_valid_and_safe():
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.http_options.host == "127.0.0.1"  # never beyond localhost by default
    (application,) = raw["applications"]
    assert application["import_path"] == "genart.serve.builder:build_app"
    settings = AppSettings.model_validate(application["args"])
    assert settings.catalogue and settings.catalogue.uri and settings.catalogue.dcgan
    assert settings.gatys and settings.dream and settings.adain and settings.adain.styles
    deployments = {d["name"]: d for d in application["deployments"]}
    made = ("Ingress", "LatentModels", "ImageModels", "GatysWorker", "JobStore")
    assert set(deployments) == {*made, "Dreamer", "AdaIN"}
    for name, d in deployments.items():
        batch = d.get("user_config", {}).get("max_batch_size", 1)
        assert d["max_ongoing_requests"] >= batch, name  # else batches silently cap
        assert name == "JobStore" or d["max_queued_requests"] > 0, name  # 503, not a queue
    # Every first replica fits on a 2-core machine (Ray's logical CPUs), the config's as the
    # deployments' own defaults (what genart serve without --config uses).
    assert sum(d["ray_actor_options"]["num_cpus"] for d in deployments.values()) <= 2
    names = [*made, "Dreamer", "AdaIN"]
    defaults = [getattr(builder, name) for name in names if name != "JobStore"]  # as imported
    assert sum(d.ray_actor_options["num_cpus"] for d in defaults) <= 2


def test_truncated_latents():
    plain = truncated_latents([3, 4], 32, None)
    assert torch.equal(plain, latents([3, 4], 32))
    assert torch.equal(truncated_latents([3, 4], 32, 100.0), plain)
    cut = truncated_latents([3, 4], 32, 0.5)
    assert cut.abs().max() <= 0.5
    assert torch.equal(cut, truncated_latents([3, 4], 32, 0.5))  # reproducible


def test_dcgan_sample_draws_latents_off_the_event_loop(monkeypatch):
    threads = []

    def record_thread(seeds, threshold):
        threads.append(threading.current_thread())
        return torch.zeros(len(seeds), 4)

    async def generate(item, finish):
        pipe, latents = item
        return latents.shape

    pipe = types.SimpleNamespace(sample_latents=record_thread)

    async def loaded(name, pipeline, route):
        return pipe

    generator = object.__new__(deployments.LatentModels.func_or_class)  # no model to load
    generator.pipe = loaded
    generator.batched = generate
    request = validation.SampleRequest(n=3, truncation=0.5)
    assert asyncio.run(generator.sample("digits", request)) == (3, 4)
    assert threads and threads[0] is not threading.main_thread()  # asyncio.run's loop is main's


def test_grouped_forwards_keep_order_across_keys_sizes_and_chunks(monkeypatch):
    # At most two 8x8 images per forward pass.
    monkeypatch.setattr(pipeline_base, "PIXELS_PER_FORWARD", 2 * 8 * 8)
    rng = np.random.default_rng(0)
    sizes = [(8, 8), (8, 8), (6, 10), (8, 8), (8, 8), (8, 8)]
    items = [
        (("a", "b")[i % 2], rng.integers(0, 256, (*s, 3), dtype=np.uint8))
        for i, s in enumerate(sizes)
    ]
    passes = []

    def apply(key, images):  # a pipeline call: one key, images of any sizes
        def forward(batch):
            passes.append((key, len(batch)))
            return -batch if key == "b" else batch

        return pipeline_base.run_grouped(images, forward, torch.device("cpu"))

    outputs = deployments.run_keyed(items, apply)
    assert max(n for _, n in passes) <= 2 and sum(n for _, n in passes) == len(items)
    for (key, image), got in zip(items, outputs):
        assert got.dtype == np.uint8 and got.shape == image.shape
        expected = 255 - image if key == "b" else image
        assert np.abs(got.astype(int) - expected).max() <= 1


def test_cli_resolves_model_paths_and_says_what_to_do_when_missing(tmp_path, monkeypatch):
    from genart.cli import serve as cli

    (tmp_path / "models").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    args = cli.absolute_paths({"catalogue": {"uri": "models"},
                               "adain": {"styles": {"waves": "s3://bucket/waves.png"}},
                               "gatys": {"jobs_dir": "runs/jobs"}})  # fmt: skip
    assert args["catalogue"]["uri"] == str(tmp_path / "models")
    assert args["gatys"]["jobs_dir"] == str(tmp_path / "runs" / "jobs")  # need not exist yet
    # Remote URIs are left to the replicas.
    assert args["adain"]["styles"] == {"waves": "s3://bucket/waves.png"}
    with pytest.raises(FileNotFoundError, match="genart serve --prepare"):
        cli.absolute_paths({"catalogue": {"uri": "runs/missing"}})


def test_cli_refuses_serve_configs_with_unknown_keys(tmp_path):
    from genart.cli import serve as cli

    shipped = Path(__file__).resolve().parents[2] / "serve_config.yaml"
    raw = yaml.safe_load(shipped.read_text())
    assert cli.load_config(str(shipped)).applications  # the shipped file has none
    app = raw["applications"][0]
    app["route_prefx"] = "/"  # Ray's schema would ignore these and deploy the defaults
    app["deployments"][0]["ray_actor_options"] = {"num_cpu": 1}
    bad = tmp_path / "serve.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit, match=r"applications\[0\]\.route_prefx") as refused:
        cli.load_config(str(bad))
    assert "applications[0].deployments[0].ray_actor_options.num_cpu" in str(refused.value)


def test_cli_curl_examples_cover_what_is_served(monkeypatch, tmp_path):
    from genart.cli import serve as cli
    from genart.serve import demo

    monkeypatch.delenv("GENART_API_TOKEN", raising=False)
    cat = tmp_path / "cat"
    small = {"fast_style": [], "dcgan": demo.DEMO_MODELS["dcgan"][1],
             "cyclegan": ["data.size=16", "cyclegan.ngf=4", "cyclegan.n_blocks=1"]}  # fmt: skip
    for name, model in (("mosaic", "fast_style"), ("zebra", "cyclegan"), ("digits", "dcgan")):
        demo.export_initialised(model, small[model], cat / name, checkpoints=tmp_path / "ckpt")
    args = {"catalogue": {"uri": str(cat), "dcgan": "digits", "adain": "sketch"}, "dream": {},
            "adain": {"styles": {"waves": "w"}}}  # fmt: skip
    lines = cli.curl_examples("http://127.0.0.1:8000", args)
    text = "\n".join(lines)
    paths = ("/models", "/dcgan/sample", "/style/mosaic", "/translate/zebra", "/dream",
             "/adain/stylize")  # fmt: skip
    for path in paths:
        assert f"http://127.0.0.1:8000{path}" in text
    assert '"style_name": "waves"' in text  # a named style: only the photo to upload
    assert "gatys" not in text and "Authorization" not in text
    # No default and no AdaIN export in the catalogue: no AdaIN example to give.
    undefaulted = cli.curl_examples("u", args | {"catalogue": {"uri": str(cat)}})
    assert "/dcgan/digits/sample" in "\n".join(undefaulted)
    assert "adain" not in "\n".join(undefaulted)
    monkeypatch.setenv("GENART_API_TOKEN", "t")
    assert all("Bearer $GENART_API_TOKEN" in line for line in cli.curl_examples("u", args))


class FakeBatched:
    """Stands in for a ``@serve.batch`` method: records the window each call would start with."""

    def __init__(self):
        self.window_s, self.max_batch_size, self.calls = None, None, []
        self.release = asyncio.Event()

    def set_batch_wait_timeout_s(self, window_s: float) -> None:
        self.window_s = window_s

    def set_max_batch_size(self, size: int) -> None:
        self.max_batch_size = size

    async def __call__(self, item):
        self.calls.append((item, self.window_s))
        await self.release.wait()
        if item is None:
            raise ValueError("bad item")
        return 2 * item


def test_batching_waits_for_company_only_when_there_is_some():
    def finish(result):
        return ("finished", result)

    async def scenario():
        method = FakeBatched()
        batched = deployments.Batching(method, window_s=0.005)
        batched.configure({"max_batch_size": 4, "batch_wait_timeout_s": 0.02})
        first = asyncio.create_task(batched(1, finish))  # alone: no window
        await asyncio.sleep(0)
        second = asyncio.create_task(batched(2, finish))  # another is in the replica: the window
        failing = asyncio.create_task(batched(None, finish))
        await asyncio.sleep(0)
        assert batched.pending == 3
        method.release.set()
        assert (await first, await second) == (("finished", 2), ("finished", 4))
        with pytest.raises(ValueError):
            await failing
        assert batched.pending == 0  # a failed call does not count as pending forever
        assert await batched(3, finish) == ("finished", 6)  # alone again
        return method

    method = asyncio.run(scenario())
    assert method.calls == [(1, 0.0), (2, 0.02), (None, 0.02), (3, 0.0)]
    assert method.max_batch_size == 4
    with pytest.raises(ValueError, match="unknown user_config keys"):
        deployments.Batching(method).configure({"max_batch": 4})


def test_local_haproxy_settings_respect_the_users_choice():
    from genart.serve.ray_settings import PORT_VARIABLES, SWITCH, use_local_haproxy

    environ = {}
    assert use_local_haproxy(environ)
    assert environ[SWITCH] == "1" and environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    ports = [int(environ[name]) for name in PORT_VARIABLES]
    assert len(set(ports)) == 2 and all(1024 < port < 65536 for port in ports)
    assert environ["RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"] == "10"  # not Ray's hour
    assert Path(environ["RAY_SERVE_HAPROXY_BINARY_PATH"]).stat().st_mode & 0o100  # the script
    # A proxy actor slow to start on a busy machine is waited for, not killed at 15 s.
    assert float(environ["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"]) >= 30

    kept = {"RAY_SERVE_HAPROXY_STATS_PORT": "18404", "RAY_SERVE_HAPROXY_MAXCONN": "64"}
    assert use_local_haproxy(kept) and kept["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert kept["RAY_SERVE_HAPROXY_MAXCONN"] == "64"

    off = {SWITCH: "0"}
    assert not use_local_haproxy(off)
    assert off == {SWITCH: "0"}  # nothing else turned on behind the user's back


def test_cli_waits_until_a_new_route_answers_over_http():
    import http.server
    import threading

    from genart.cli.serve import wait_until_routed

    asked = []

    class LateRoute(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # 404 (the route is not known yet) three times, then 200
            asked.append(self.path)
            self.send_response(200 if len(asked) > 3 else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LateRoute)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/cli"
        assert wait_until_routed(url, timeout_s=10)
        assert asked == ["/cli/healthz"] * 4
    finally:
        server.shutdown()
        server.server_close()
    assert not wait_until_routed(url, timeout_s=0.3)  # nothing listens there any more
