"""The model deployments of the genart Serve application, one per kind of inference.

``LatentModels`` (DCGAN), ``ImageModels`` (fast style, Pix2Pix, CycleGAN) and ``AdaIN``
(arbitrary style) serve any export of their kind in the application's catalogue
(``genart.catalogue``), loading each on first request; Gatys and Deep Dream are built from the
server's settings. A replica runs on the GPU Ray gives it (``ray_actor_options: {num_gpus:
1}``), else on CPU. Images arrive as uint8 arrays the ingress has already validated.

Compute runs in a worker thread (torch releases the GIL), so a replica keeps accepting requests
meanwhile: that is what lets ``@serve.batch`` gather the next batch while one runs, and keeps
a long optimisation from blocking the progress it reports.

This module imports torch; ``genart.serve.app`` (the ingress) does not, so ingress replicas start
fast and stay small.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch
from ray import serve
from ray.serve.handle import DeploymentHandle

from genart import controls, export, registry, storage
from genart.catalogue import Catalogue, ModelNotFound
from genart.errors import ConfigError, InputError
from genart.images import encode_png, grid_png, read
from genart.pipelines.adain import AdaINPipeline
from genart.pipelines.base import pick_device
from genart.pipelines.dream import DreamPipeline
from genart.pipelines.gatys import GatysPipeline
from genart.pipelines.latent import LatentPipeline
from genart.pipelines.optimise import Update
from genart.serve import validation as v
from genart.serve.settings import (
    AdaINServerSettings,
    CatalogueSettings,
    GatysServerSettings,
    OptimisationSettings,
    cache_size,
)

BATCH_WINDOW_S = 0.005  # default batch_wait_timeout_s of the batched deployments (see Batching)
PROGRESS_INTERVAL_S = 0.5  # how often a running Gatys job publishes its progress
# How long a finished job's worker keeps offering its outcome to a job store that does not
# answer: long enough for Serve to replace a lost store replica (which reloads the jobs).
STORE_RESTART_S = 120.0


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
        (encoded inside the batch, batching gained no throughput at all).
        """
        self.method.set_batch_wait_timeout_s(self.window_s if self.pending else 0.0)
        self.pending += 1
        try:
            return await asyncio.to_thread(finish, await self.method(item))
        finally:
            self.pending -= 1


def run_keyed(
    items: Sequence[tuple[Hashable, np.ndarray]],
    apply: Callable[[Hashable, list[np.ndarray]], list[np.ndarray]],
) -> list[np.ndarray]:
    """``apply(key, images)`` once per key over (key, uint8 image) items: outputs in order.

    Callers' images for the same model (and direction) share the pipeline call, which batches
    those of one size into one forward pass.
    """
    outputs: list[np.ndarray | None] = [None] * len(items)
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for index, (key, _) in enumerate(items):
        groups[key].append(index)
    for key, indices in groups.items():
        for index, image in zip(indices, apply(key, [items[i][1] for i in indices])):
            outputs[index] = image
    return outputs


def encode(images: list[np.ndarray], fmt: str, nrow: int | None = None) -> bytes | list[bytes]:
    """One PNG grid (``png``) or one PNG per image (``json``) of uint8 images."""
    if fmt == "json":
        return [encode_png(image) for image in images]
    return grid_png(images, nrow)


# --- model deployments --------------------------------------------------------------------------


class CatalogueModels:
    """Base of the deployments over a catalogue: the exports of one Serve kind
    (``registry.SERVE_KINDS``), each loaded on a replica's first request for it.

    Requests name their model twice: as an argument and as Serve's multiplexed model id (the
    ingress sets it), so Serve routes them to replicas that already hold that model and
    ``@serve.batch`` splits batches by model. :meth:`model` is ``@serve.multiplexed``: an LRU
    cache per replica, sized from the settings (:func:`settings.cache_size`) when the replica
    starts. A name is looked up by reading that model's manifest alone, so an export published
    into the catalogue answers on its first request; nothing about a name that failed is
    remembered, so a model fixed or added after a failure answers on the next one.
    """

    KIND = registry.IMAGE

    def __init__(self, settings: dict, backend: str = "auto", **options):
        """``backend``: ``AppSettings.backend``; onnxruntime's threads follow the replica's
        CPUs (``ray_actor_options.num_cpus``, at least one). ``options``: keyword arguments
        of the kind's pipelines (``ExportedPipeline.of``), the same for every model."""
        s = CatalogueSettings.model_validate(settings)
        self.catalogue = Catalogue(s.uri)
        self.backend = backend
        self.options = options
        self.families = registry.families(serve=self.KIND)
        self.loaded: dict[str, dict] = {}  # name -> description, of the models now in the cache
        self.pinned = {name: self._build(name) for name in s.pinned if self._serves(name)}
        largest = max((e.size or 0 for e in self.catalogue.entries() if e.family in self.families),
                      default=None)  # fmt: skip
        self.capacity = cache_size(s, largest)

        # Made here rather than by decorating the method: the cache's size is known only now
        # (Ray 2.60 detects multiplexing wired up at init time). A plain function, because
        # Serve keeps the cache as an attribute of what it wraps, which a bound method refuses.
        async def load(name: str) -> Cached:
            return await self._load(name)

        self.model = serve.multiplexed(max_num_models_per_replica=self.capacity)(load)

    def _serves(self, name: str) -> bool:
        """Whether the catalogue's model ``name`` is of this deployment's kind."""
        return self.catalogue.entry(name).family in self.families

    async def _load(self, name: str) -> Cached:
        """The pipeline of the model ``name`` (what the LRU cache calls on a miss)."""
        if name in self.pinned:
            return Cached(self.pinned[name])
        pipe = await asyncio.to_thread(self._build, name)
        self.loaded[name] = pipe.describe()
        return Cached(pipe, lambda: self.loaded.pop(name, None))

    def _build(self, name: str):
        """The pipeline of the catalogue's model ``name``; a RequestError saying why not: 404
        absent or of another kind, 500 unusable (its reason, without the server's paths)."""
        try:
            entry = self.catalogue.usable(name)
            if entry.family not in self.families:
                raise v.RequestError(
                    404, f"model '{v.echo(name)}' is a {entry.family} model, which is not "
                    f"served here; this route serves {', '.join(self.families)}"
                )  # fmt: skip
            loaded = export.load(entry.uri, pick_device())
        except ModelNotFound:
            raise v.RequestError(404, f"no model named '{v.echo(name)}' in the catalogue") from None
        except export.InvalidExport as err:
            reason = str(err).replace(storage.join(self.catalogue.uri, name), name)
            raise v.RequestError(500, f"model '{name}' cannot be used: {reason}") from None
        spec = registry.trained(entry.family)
        return spec.pipeline_class().of(loaded, self.backend, **self.options)

    def reconfigure(self, user_config: dict) -> None:
        self.batched.configure(user_config)

    def describe(self) -> dict:
        """The models this replica holds (cached and pinned), with what runs them."""
        pinned = {name: pipe.describe() | {"pinned": True} for name, pipe in self.pinned.items()}
        return {"loaded": self.loaded | pinned, "cache": self.capacity}

    def listing(self) -> list[dict]:
        """Every model of the catalogue, of every family: names, families, scores or why
        it is unusable; never where it lies."""
        return [entry.summary() for entry in self.catalogue.entries()]

    async def pipe(self, name: str, verb: str, route: str):
        """The loaded pipeline of ``name``, checked by :func:`check_route`."""
        return check_route((await self.model(name)).pipe, name, verb, route)


def check_route(pipe, name: str, verb: str, route: str):
    """``pipe`` if ``route`` serves its family: the families whose spec names the CLI ``verb``
    the route stands for (``registry.families(verb=...)``), so a registered family answers at
    the routes of its verbs; else 404 naming the families the route serves."""
    served = registry.families(verb=verb)
    if pipe.cfg.model not in served:
        raise v.RequestError(
            404, f"model '{name}' is a {pipe.cfg.model} model; {route} serves {', '.join(served)}"
        )
    return pipe


class Cached:
    """A pipeline in a replica's model cache; ``forget`` runs when the cache evicts it (Serve
    calls an evicted model's ``__del__``)."""

    def __init__(self, pipe, forget: Callable[[], None] = lambda: None):
        self.pipe = pipe
        self.forget = forget

    def __del__(self):
        # Serve calls it on eviction, Python again on collection: forget only once (by then
        # the same name may be cached anew).
        forget, self.forget = self.forget, lambda: None
        forget()


@serve.deployment(
    max_ongoing_requests=32,
    max_queued_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    ray_actor_options={"num_cpus": 0.25},
)
class LatentModels(CatalogueModels):
    """DCGAN generators: samples, latent walks and latent arithmetic, batched across callers."""

    KIND = registry.LATENT

    def __init__(self, settings: dict, backend: str = "auto"):
        super().__init__(settings, backend)
        self.batched = Batching(self.generate)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=BATCH_WINDOW_S)
    async def generate(self, items: list[tuple[Hashable, torch.Tensor]]) -> list[list[np.ndarray]]:
        """Images for each caller's (pipeline, latents), one generator pass per pipeline."""
        return await asyncio.to_thread(run_keyed, items, generate_latents)

    async def _latent(self, name: str):
        return await self.pipe(name, "sample", "/dcgan")

    async def sample(self, name: str, request: v.SampleRequest) -> bytes | list[bytes]:
        pipe = await self._latent(name)
        seeds = range(request.seed, request.seed + request.n)
        # In a thread: with a small truncation the redraws take a while, and this event loop
        # also serves the replica's other requests.
        z = await asyncio.to_thread(pipe.sample_latents, seeds, request.truncation)
        return await self.batched((pipe, z), lambda images: encode(images, request.format))

    async def interpolate(self, name: str, request: v.InterpolateRequest) -> bytes | list[bytes]:
        """One row of ``steps`` images per pair of consecutive seeds."""
        pipe = await self._latent(name)
        z = pipe.walk_latents(request.seeds, request.steps, request.mode)
        return await self.batched(
            (pipe, z), lambda images: encode(images, request.format, request.steps)
        )

    async def arithmetic(self, name: str, request: v.ArithmeticRequest) -> bytes | list[bytes]:
        """mean(A), mean(B), mean(C) and mean(A) - mean(B) + mean(C), left to right."""
        pipe = await self._latent(name)
        z = pipe.arithmetic_latents(request.a, request.b, request.c)
        return await self.batched((pipe, z), lambda images: encode(images, request.format, 4))


def generate_latents(pipe: LatentPipeline, latents: list[torch.Tensor]) -> list[list[np.ndarray]]:
    """Each caller's images, from one pass of ``pipe`` over all their latents."""
    images = pipe(torch.cat(latents))
    ends = np.cumsum([0] + [len(z) for z in latents])
    return [images[a:b] for a, b in zip(ends, ends[1:])]


@serve.deployment(
    max_ongoing_requests=16,
    max_queued_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    # Ray's logical CPUs: with the other deployments' defaults, the whole app starts on 2.
    ray_actor_options={"num_cpus": 0.375},
)
class ImageModels(CatalogueModels):
    """Fast style, Pix2Pix and CycleGAN: any image size, batched per model, controls and
    direction."""

    KIND = registry.IMAGE

    def __init__(self, settings: dict, backend: str = "auto"):
        super().__init__(settings, backend)
        self.batched = Batching(self._run)

    async def stylize(
        self, name: str, image: np.ndarray, strength: float = 1.0, preserve_color: str = "none"
    ) -> bytes:
        """The image (uint8 HWC RGB) in fast style ``name`` with the style controls, as PNG.

        Batched per style and controls: requests with the defaults, the most common, still
        share batches; the controls are checked before batching, so a bad one fails only its
        caller.
        """
        pipe = await self.pipe(name, "stylize fast", "/style")
        try:
            controls.check(strength, preserve_color)
        except InputError as err:
            raise v.RequestError(422, str(err)) from err
        key = (pipe, {"strength": strength, "preserve_color": preserve_color})
        return await self.batched((freeze(key), image), encode_png)

    async def translate(self, name: str, direction: str | None, image: np.ndarray) -> bytes:
        """The image (uint8 HWC RGB) translated by model ``name``, as PNG.

        The direction is checked here, before batching, so a bad one fails only its caller.
        """
        pipe = await self.pipe(name, "translate", "/translate")
        try:
            direction = pipe.direction(direction)
        except ConfigError as err:
            raise v.RequestError(422, str(err)) from err
        return await self.batched((freeze((pipe, {"direction": direction})), image), encode_png)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=BATCH_WINDOW_S)
    async def _run(self, items: list[tuple[Hashable, np.ndarray]]) -> list[np.ndarray]:
        """The uint8 HWC outputs for a batch of (model key, uint8 HWC image) requests."""
        return await asyncio.to_thread(run_keyed, items, apply_image_model)


def freeze(key: tuple) -> tuple:
    """A (pipeline, options) key made hashable: the options as sorted pairs."""
    pipe, options = key
    return pipe, tuple(sorted(options.items()))


def apply_image_model(key: tuple, images: list[np.ndarray]) -> list[np.ndarray]:
    """An image pipeline with its options (a :func:`freeze`-d key) over images."""
    pipe, options = key
    return pipe(images, **dict(options))


@serve.deployment(
    max_ongoing_requests=16,
    max_queued_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
    ray_actor_options={"num_cpus": 0.25},
)
class AdaIN(CatalogueModels):
    """Arbitrary style transfer with any AdaIN decoder of the catalogue: any uploaded style, or
    a named one of the settings.

    Not batched across callers: each request brings its own style, and so its own target.
    """

    KIND = registry.ARBITRARY_STYLE

    def __init__(self, catalogue: dict, settings: dict):
        """``catalogue``: :class:`CatalogueSettings`; ``settings``: :class:`AdaINServerSettings`
        (the encoder's weights and the decoders' backend, for every model)."""
        self.settings = s = AdaINServerSettings.model_validate(settings)
        super().__init__(catalogue, s.backend, vgg_weights=s.vgg_weights)
        # Named styles are read once, at the size requests are fit to at most.
        self.styles = {name: read(uri, 3, s.max_side) for name, uri in s.styles.items()}

    def describe(self) -> dict:
        """The models this replica holds, the named styles and the largest side served."""
        return super().describe() | {"styles": sorted(self.styles),
                                     "max_side": self.settings.max_side}  # fmt: skip

    async def stylize(self, name: str, content: np.ndarray, style: np.ndarray | str,
                      alpha: float, preserve_color: str = "none",
                      **regions: np.ndarray) -> bytes:  # fmt: skip
        """The content (uint8 HWC RGB) in ``style`` (an image, or a named style) by the model
        ``name``, as PNG; ``regions``: a ``mask`` and ``outside_style`` (uint8 images) if the
        request sent them."""
        pipe = await self.pipe(name, "stylize adain", "/adain")
        image = self.styles[style] if isinstance(style, str) else style
        return await asyncio.to_thread(
            stylize_arbitrary, pipe, content, image, alpha, preserve_color, **regions
        )


def stylize_arbitrary(pipe: AdaINPipeline, content: np.ndarray, style: np.ndarray, alpha: float,
                      preserve_color: str, **regions: np.ndarray) -> bytes:  # fmt: skip
    """``content`` in ``style`` by an AdaIN pipeline, as PNG."""
    return encode_png(pipe(content, [style], alpha=alpha, preserve_color=preserve_color,
                           **regions))  # fmt: skip


class JobProgress:
    """The latest progress of a running optimisation (written by its thread, read by the loop)."""

    def __init__(self, iterations: int, scales: int):
        self.latest = {"evaluations": 0, "total": iterations * scales}

    def record(self, u: Update) -> None:
        """A pipeline progress callback; replacing the dict is atomic, so no lock is needed."""
        self.latest = {"evaluations": u.evaluations, "total": u.total, "scale": u.stage,
                       "size": list(u.size), "losses": u.losses}  # fmt: skip


# An optimisation holds its replica's thread for seconds: two at a time, autoscaled on one.
OPTIMISATION_OPTIONS = {
    "max_ongoing_requests": 2,
    "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1},
    "ray_actor_options": {"num_cpus": 0.25},
}


# Jobs queue here (each request is a whole job), so the queue is longer than Dreamer's.
@serve.deployment(**OPTIMISATION_OPTIONS, max_queued_requests=64)
class GatysWorker:
    """Gatys style transfer (pixel optimisation against a frozen VGG), as jobs or synchronously."""

    def __init__(self, settings: dict, jobs: DeploymentHandle):
        self.settings = GatysServerSettings.model_validate(settings)
        s = self.settings
        self.pipe = GatysPipeline.from_config(s.config, s.vgg_weights)
        self.jobs = jobs

    def describe(self) -> dict:
        fields = ("max_side", "sync_max_side", "sync_max_evaluations", "max_jobs")
        return self.pipe.describe() | self.settings.model_dump(include=set(fields))

    async def run_job(self, job_id: str, content, styles, settings: dict, **regions) -> None:
        """Optimise, reporting progress every PROGRESS_INTERVAL_S; the outcome goes to the job
        store, not to the caller. ``regions``: the request's ``mask`` and ``outside_style``.

        The store may restart meanwhile (it keeps jobs in ``jobs_dir``): a report it misses is
        replaced by the next one (each says "running", so a missed start heals too), and the
        outcome is retried until the restarted store takes it.
        """
        await self._report(job_id, status="running", started=time.time())
        progress = JobProgress(settings["iterations"], settings["scales"])
        work = asyncio.ensure_future(
            asyncio.to_thread(self._stylize, content, styles, settings, progress.record, **regions)
        )
        while not work.done():
            await asyncio.wait({work}, timeout=PROGRESS_INTERVAL_S)
            await self._report(job_id, status="running", progress=progress.latest)
        try:
            png, info = work.result()
        except Exception as err:  # any failure of the optimisation belongs in the job's status
            await self._outcome(
                "update", job_id, status="failed", error=str(err), finished=time.time()
            )
            return
        await self._outcome("finish", job_id, png, info)

    async def _report(self, job_id: str, **fields) -> None:
        """A progress report to the job store; one it cannot take now is dropped."""
        with contextlib.suppress(Exception):
            await self.jobs.update.remote(job_id, **fields)

    async def _outcome(self, method: str, *args, **fields) -> None:
        """A job's outcome to the job store, retried for STORE_RESTART_S while it restarts."""
        deadline = time.monotonic() + STORE_RESTART_S
        while True:
            try:
                await getattr(self.jobs, method).remote(*args, **fields)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(PROGRESS_INTERVAL_S)

    async def stylize(self, content, styles, settings: dict, **regions) -> tuple[bytes, dict]:
        """The synchronous mode: the result PNG and its info."""
        return await asyncio.to_thread(self._stylize, content, styles, settings, None, **regions)

    def _stylize(self, content, styles, settings: dict, progress, **regions) -> tuple[bytes, dict]:
        chosen = {k: value for k, value in settings.items() if k != "size"}
        image, info = self.pipe(content, styles, progress, **regions, **chosen)
        return encode_png(image), info


@serve.deployment(**OPTIMISATION_OPTIONS, max_queued_requests=8)
class Dreamer:
    """Deep Dream: gradient ascent on the image's VGG activations."""

    def __init__(self, settings: dict):
        self.settings = OptimisationSettings.model_validate(settings)
        self.pipe = DreamPipeline.from_config(self.settings.config, self.settings.vgg_weights)

    def describe(self) -> dict:
        return self.pipe.describe() | {"max_side": self.settings.max_side}

    async def dream(self, image: np.ndarray, params: dict) -> bytes:
        return await asyncio.to_thread(self._dream, image, params)

    def _dream(self, image: np.ndarray, params: dict) -> bytes:
        result, _, _ = self.pipe(image, **params)
        return encode_png(result)
