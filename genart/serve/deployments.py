"""The model deployments of the genart Serve application, one per family.

Each loads exported folders (``genart export``; local paths or ``s3://`` URIs) with
``load_exported``: weights only, the architecture rebuilt from genart's code and the config
saved beside the weights. A replica runs on the GPU Ray gives it (``ray_actor_options:
{num_gpus: 1}``), else on CPU. Images arrive as uint8 arrays the ingress has already validated.

Compute runs in a worker thread (torch releases the GIL), so a replica keeps accepting requests
meanwhile: that is what lets ``@serve.batch`` gather the next batch while one runs, and keeps
a long optimisation from blocking the progress it reports.

This module imports torch; ``genart.serve.app`` (the ingress) does not, so ingress replicas start
fast and stay small.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Callable, Hashable

import numpy as np
import torch
from PIL import Image
from ray import serve
from ray.serve.handle import DeploymentHandle

from genart import config, storage
from genart.config import ConfigError
from genart.data import transforms
from genart.images import encode_png, from_uint8, grid, png_bytes, to_uint8
from genart.serve import validation as v
from genart.serve.app import GatysServerSettings, OptimisationSettings
from genart.translate import select_generator, translate

# One forward pass holds at most this many input pixels (16 images of 256x256): bounds the
# activation memory of a batch of large images.
PIXELS_PER_FORWARD = 2**20
BATCH_WINDOW_S = 0.005  # default batch_wait_timeout_s of the batched deployments (see Batching)
PROGRESS_INTERVAL_S = 0.5  # how often a running Gatys job publishes its progress


def pick_device() -> str:
    """The GPU Ray assigned to this replica, if any (it sets CUDA_VISIBLE_DEVICES), else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path: str, family: tuple[str, ...], device: str):
    """(nets, config, description) of an export, refusing models of another family."""
    from genart.train.checkpoint import load_exported

    nets, cfg = load_exported(path, device=device)
    if cfg.model not in family:
        raise ConfigError(f"{path} holds a '{cfg.model}' model; expected one of {list(family)}")
    return nets, cfg, {"checkpoint": path, "meta": read_meta(path), "config": cfg.to_dict()}


def read_meta(path: str) -> dict:
    """The export's meta.json (model, step, source checkpoint), or {} for checkpoint folders."""
    meta = storage.join(path, "meta.json")
    if not storage.exists(meta):
        return {}
    fs, inner = storage.filesystem(meta)
    with fs.open_input_stream(inner) as f:
        return json.loads(f.read())


class Batching:
    """Calls into a ``@serve.batch`` method that wait for company only when there is some.

    serve.batch holds a batch's first request for ``batch_wait_timeout_s`` (the window) in case
    others join, even when nothing else is in the replica: at one client, every request would
    wait out the whole window. A request that finds no other request in the replica (queued,
    batched, or finishing its output) starts its batch at once (window 0); otherwise the
    configured window applies, so batches still form under load. The batch loop reads the
    window when a batch's first request arrives, on the replica's one event loop, so setting it
    just before enqueueing is race-free.
    """

    def __init__(self, method, window_s: float = BATCH_WINDOW_S):
        self.method = method
        self.window_s = window_s
        self.pending = 0  # requests in the replica: queued, batched or finishing

    def configure(self, user_config: dict | None) -> None:
        """Apply ``max_batch_size`` / ``batch_wait_timeout_s`` from a deployment's user_config.

        Keep ``max_ongoing_requests`` >= ``max_batch_size``: a replica never holds more requests
        than that, so a bigger batch size is silently never reached.
        """
        user_config = user_config or {}
        unknown = set(user_config) - {"max_batch_size", "batch_wait_timeout_s"}
        if unknown:
            raise ValueError(f"unknown user_config keys {sorted(unknown)}")
        if "max_batch_size" in user_config:
            self.method.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self.window_s = float(user_config["batch_wait_timeout_s"])

    async def __call__(self, item, finish: Callable):
        """``finish(result)`` of the method's result for ``item`` (batched with other callers'
        items), run in a worker thread outside the batch: a replica runs one batch at a time,
        so per-caller work such as PNG encoding would otherwise queue behind every other's
        (encoded inside the batch, the H100 served 39 req/s at 16 clients with batching and
        without, one request per in-process call).
        """
        self.method.set_batch_wait_timeout_s(self.window_s if self.pending else 0.0)
        self.pending += 1
        try:
            return await asyncio.to_thread(finish, await self.method(item))
        finally:
            self.pending -= 1


def forward_grouped(
    items: list[tuple[Hashable, np.ndarray]],
    forward: Callable[[Hashable, torch.Tensor], torch.Tensor],
    device: str,
) -> list[np.ndarray]:
    """``forward(key, batch)`` for (key, uint8 HWC image) items: uint8 HWC images, in order.

    Items of the same key and size share a forward pass (a batch); larger groups are split so
    that no pass holds more than ``PIXELS_PER_FORWARD`` input pixels. Images cross to and from
    ``device`` as uint8 and are converted there.
    """
    outputs: list[np.ndarray | None] = [None] * len(items)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, (key, image) in enumerate(items):
        groups[(key, image.shape)].append(index)
    for (key, shape), indices in groups.items():
        per_pass = max(1, PIXELS_PER_FORWARD // (shape[0] * shape[1]))
        for start in range(0, len(indices), per_pass):
            chunk = indices[start : start + per_pass]
            batch = torch.from_numpy(np.stack([items[i][1] for i in chunk])).to(device)
            for index, image in zip(chunk, to_uint8(forward(key, from_uint8(batch)))):
                outputs[index] = image
    return outputs


def encode(images: torch.Tensor, fmt: str, nrow: int | None = None) -> bytes | list[bytes]:
    """One PNG grid (``png``) or one PNG per image (``json``) of images in [-1, 1]."""
    if fmt == "json":
        return [png_bytes(image) for image in images]
    return png_bytes(grid(images, nrow))


def truncated_latents(seeds: list[int], dim: int, threshold: float | None) -> torch.Tensor:
    """``dcgan.latents``, with components beyond +-threshold redrawn (the truncation trick).

    Redraws come from the seed's own generator, so a seed always gives the same latent, and one
    with no component beyond the threshold is exactly ``dcgan.latents``'s.
    """
    from genart.models import dcgan

    if threshold is None:
        return dcgan.latents(seeds, dim)
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(dim, generator=generator)
        while (outside := z.abs() > threshold).any():
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
        rows.append(z)
    return torch.stack(rows)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 RGB (H, W, 3) image as the model's input: unchanged, or grey (H, W, 1)."""
    if channels == 3:
        return image
    return np.asarray(Image.fromarray(image).convert("L"))[..., None]


# --- model deployments --------------------------------------------------------------------------


@serve.deployment(
    max_ongoing_requests=32,
    max_queued_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    ray_actor_options={"num_cpus": 0.25},
)
class DCGANGenerator:
    """A DCGAN generator: samples, latent walks and latent arithmetic, batched across callers."""

    def __init__(self, path: str):
        nets, cfg, self.description = load_model(path, ("dcgan",), pick_device())
        self.G = nets["G"]
        self.latent_dim = cfg.params.latent_dim
        self.batched = Batching(self.generate)

    def reconfigure(self, user_config: dict) -> None:
        self.batched.configure(user_config)

    def describe(self) -> dict:
        return self.description

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=BATCH_WINDOW_S)
    async def generate(self, latents: list[torch.Tensor]) -> list[torch.Tensor]:
        """Images for each caller's latents, from one generator pass over all of them."""
        from genart.models import dcgan

        images = await asyncio.to_thread(dcgan.generate, self.G, torch.cat(latents))
        return list(images.cpu().split([len(z) for z in latents]))

    async def sample(self, request: v.SampleRequest) -> bytes | list[bytes]:
        seeds = list(range(request.seed, request.seed + request.n))
        # In a thread: with a small truncation the redraws take a while, and this event loop
        # also serves the replica's other requests.
        z = await asyncio.to_thread(truncated_latents, seeds, self.latent_dim, request.truncation)
        return await self.batched(z, lambda images: encode(images, request.format))

    async def interpolate(self, request: v.InterpolateRequest) -> bytes | list[bytes]:
        """One row of ``steps`` images per pair of consecutive seeds."""
        from genart.models import dcgan

        ends = dcgan.latents(request.seeds, self.latent_dim)
        rows = [
            dcgan.interpolate(a, b, request.steps, request.mode) for a, b in zip(ends, ends[1:])
        ]
        return await self.batched(
            torch.cat(rows), lambda images: encode(images, request.format, request.steps)
        )

    async def arithmetic(self, request: v.ArithmeticRequest) -> bytes | list[bytes]:
        """mean(A), mean(B), mean(C) and mean(A) - mean(B) + mean(C), left to right."""
        from genart.models import dcgan

        groups = [
            dcgan.latents(seeds, self.latent_dim) for seeds in (request.a, request.b, request.c)
        ]
        z = torch.stack([*(g.mean(0) for g in groups), dcgan.arithmetic(*groups)])
        return await self.batched(z, lambda images: encode(images, request.format, 4))


class ImageModels:
    """Base of the image-to-image deployments: named exported models in one replica, whose
    requests are batched together by (model key, image size)."""

    KINDS: tuple[str, ...] = ()  # the model families this deployment serves
    WHAT = "model"  # what a name denotes, in errors

    def __init__(self, paths: dict[str, str]):
        self.device = pick_device()
        self.models, self.descriptions = {}, {}
        for name, path in paths.items():
            nets, cfg, self.descriptions[name] = load_model(path, self.KINDS, self.device)
            self.models[name] = (nets, cfg)
        self.batched = Batching(self._run)

    def reconfigure(self, user_config: dict) -> None:
        self.batched.configure(user_config)

    def describe(self) -> dict:
        return self.descriptions

    def _model(self, name: str) -> tuple[dict, config.Config]:
        if name not in self.models:
            available = sorted(self.models)
            raise v.RequestError(404, f"unknown {self.WHAT} '{name}'; available: {available}")
        return self.models[name]

    # Each subclass defines its own ``@serve.batch`` ``_run`` calling this: serve.batch keeps
    # one queue per decorated function, so a shared one would mix two deployments' requests.
    async def _run_batch(self, items: list[tuple[Hashable, np.ndarray]]) -> list[np.ndarray]:
        """The uint8 HWC outputs for a batch of (model key, uint8 HWC image) requests."""
        return await asyncio.to_thread(forward_grouped, items, self._forward, self.device)

    def _forward(self, key: Hashable, batch: torch.Tensor) -> torch.Tensor:
        """Images out for a float batch in [-1, 1] of one model key and size."""
        raise NotImplementedError


IMAGE_MODEL_OPTIONS = {
    "max_ongoing_requests": 16,
    "max_queued_requests": 32,
    "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    "ray_actor_options": {"num_cpus": 0.5},
}


@serve.deployment(**IMAGE_MODEL_OPTIONS)
class FastStyle(ImageModels):
    """Every configured fast-style network in one replica; any image size, batched."""

    KINDS, WHAT = ("fast_style",), "style"

    async def stylize(self, name: str, image: np.ndarray) -> bytes:
        """The image (uint8 HWC RGB) in style ``name``, as PNG."""
        self._model(name)
        return await self.batched((name, image), encode_png)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=BATCH_WINDOW_S)
    async def _run(self, items: list[tuple[Hashable, np.ndarray]]) -> list[np.ndarray]:
        return await self._run_batch(items)

    def _forward(self, name: str, batch: torch.Tensor) -> torch.Tensor:
        from genart.models.fast_style import apply

        return apply(self.models[name][0]["G"], batch)


@serve.deployment(**IMAGE_MODEL_OPTIONS)
class Translator(ImageModels):
    """Pix2Pix and CycleGAN generators by name; any image size, batched per model and direction."""

    KINDS = ("pix2pix", "cyclegan")

    async def translate(self, name: str, direction: str | None, image: np.ndarray) -> bytes:
        """The image (uint8 HWC RGB) translated by model ``name``, as PNG.

        The direction is checked here, before batching, so a bad one fails only its caller.
        """
        nets, cfg = self._model(name)
        try:
            _, direction = select_generator(nets, cfg, direction)
        except ConfigError as err:
            raise v.RequestError(422, str(err)) from err
        image = to_channels(image, cfg.data.channels)
        return await self.batched(((name, direction), image), encode_png)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=BATCH_WINDOW_S)
    async def _run(self, items: list[tuple[Hashable, np.ndarray]]) -> list[np.ndarray]:
        return await self._run_batch(items)

    def _forward(self, key: tuple[str, str], batch: torch.Tensor) -> torch.Tensor:
        name, direction = key
        nets, cfg = self.models[name]
        G, _ = select_generator(nets, cfg, direction)
        return translate(G, batch, batch_size=len(batch))


class JobProgress:
    """The latest progress of a running optimisation (written by its thread, read by the loop)."""

    def __init__(self, iterations: int, scales: int):
        self.iterations = iterations
        self.latest = {"evaluations": 0, "total": iterations * scales}

    def record(self, p) -> None:
        """A ``gatys.Progress`` callback; replacing the dict is atomic, so no lock is needed."""
        done = p.scale * self.iterations + p.iteration
        self.latest = {"evaluations": done, "total": self.latest["total"], "scale": p.scale,
                       "size": list(p.size), "losses": p.losses}  # fmt: skip


@serve.deployment(
    max_ongoing_requests=2,
    max_queued_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1},
    ray_actor_options={"num_cpus": 0.25},
)
class GatysWorker:
    """Gatys style transfer (pixel optimisation against a frozen VGG), as jobs or synchronously."""

    def __init__(self, settings: dict, jobs: DeploymentHandle):
        from genart.models import gatys

        self.settings = GatysServerSettings.model_validate(settings)
        self.base = config.build(gatys.GatysConfig, self.settings.config, "gatys.config")
        self.vgg = gatys.loss_network(self.base, self.settings.vgg_weights, pick_device())
        self.jobs = jobs

    def describe(self) -> dict:
        fields = ("max_side", "sync_max_side", "sync_max_evaluations", "max_jobs")
        return {"config": dataclasses.asdict(self.base), **self.vgg.metadata,
                **self.settings.model_dump(include=set(fields))}  # fmt: skip

    async def run_job(self, job_id: str, content, styles, settings: dict) -> None:
        """Optimise, publishing progress every PROGRESS_INTERVAL_S; never raises (see status)."""
        await self.jobs.update.remote(job_id, status="running", started=time.time())
        progress = JobProgress(settings["iterations"], settings["scales"])
        work = asyncio.ensure_future(
            asyncio.to_thread(self._stylize, content, styles, settings, progress.record)
        )
        while not work.done():
            await asyncio.wait({work}, timeout=PROGRESS_INTERVAL_S)
            await self.jobs.update.remote(job_id, progress=progress.latest)
        try:
            png, info = work.result()
        except Exception as err:  # any failure of the optimisation belongs in the job's status
            await self.jobs.update.remote(
                job_id, status="failed", error=str(err), finished=time.time()
            )
            return
        await self.jobs.finish.remote(job_id, png, info)

    async def stylize(self, content, styles, settings: dict) -> tuple[bytes, dict]:
        """The synchronous mode: the result PNG and its info."""
        return await asyncio.to_thread(self._stylize, content, styles, settings, None)

    def _stylize(self, content, styles, settings: dict, progress) -> tuple[bytes, dict]:
        from genart.models import gatys

        chosen = {k: val for k, val in settings.items() if k != "size"}
        chosen["style_blend"] = tuple(chosen["style_blend"])
        cfg = dataclasses.replace(self.base, **chosen)
        to_tensor = [torch.from_numpy(transforms.to_float(image)) for image in (content, *styles)]
        image, info = gatys.stylize(to_tensor[0], to_tensor[1:], cfg, self.vgg, progress)
        return png_bytes(image), info


@serve.deployment(
    max_ongoing_requests=2,
    max_queued_requests=8,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1},
    ray_actor_options={"num_cpus": 0.25},
)
class Dreamer:
    """Deep Dream: gradient ascent on the image's VGG activations."""

    def __init__(self, settings: dict):
        from genart.models import deepdream

        self.settings = OptimisationSettings.model_validate(settings)
        self.base = config.build(deepdream.DreamConfig, self.settings.config, "dream.config")
        self.vgg = deepdream.loss_network(self.base, self.settings.vgg_weights, pick_device())

    def describe(self) -> dict:
        return {"config": dataclasses.asdict(self.base), **self.vgg.metadata,
                "max_side": self.settings.max_side}  # fmt: skip

    async def dream(self, image: np.ndarray, params: dict) -> bytes:
        return await asyncio.to_thread(self._dream, image, params)

    def _dream(self, image: np.ndarray, params: dict) -> bytes:
        from genart.models import deepdream

        cfg = dataclasses.replace(self.base, **params)
        result, _ = deepdream.dream(torch.from_numpy(transforms.to_float(image)), cfg, self.vgg)
        return png_bytes(result)
