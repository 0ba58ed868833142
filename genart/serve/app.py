"""The genart Serve application: every trained generator and the Gatys optimisation over HTTP.

One application, one FastAPI ingress, one deployment per kind of inference:

================  ==============================================  ===========================
deployment        endpoints                                        work
================  ==============================================  ===========================
Ingress           /, /docs, /healthz, /models, everything below    validation, auth, routing
LatentModels      POST /dcgan/{name}/sample|interpolate|arithmetic  any DCGAN of the catalogue,
                  (and /dcgan/sample|...: the configured default)  batched latents -> images
ImageModels       POST /style/{name}, POST /translate/{name}       any fast style, Pix2Pix or
                                                                   CycleGAN of the catalogue,
                                                                   batched per model
GatysWorker       POST /gatys/jobs, POST /gatys/stylize            per-image optimisation
JobStore          GET /gatys/jobs/{id}[/result]                    job state (one replica)
Dreamer           POST /dream                                      Deep Dream
AdaIN             POST /adain/{name}/stylize                       any AdaIN of the catalogue,
                  (and /adain/stylize: the configured default)     any style, one pass
================  ==============================================  ===========================

The catalogue's deployments load a model on its first request (an LRU cache per replica):
the ingress names the model as Serve's multiplexed model id, so Serve routes a request to a
replica that holds its model, and tells a name of the wrong family from an absent one.

This module is the ingress and its routes; the settings are ``genart.serve.settings``, the job
store ``genart.serve.jobs``, the model deployments ``genart.serve.deployments`` and the
application builder ``genart.serve.builder`` (``import_path: genart.serve.builder:build_app``).
It imports no torch: ingress replicas only validate, decode and route, so they start in seconds
and scale out cheaply. Every upload is checked and decoded here (``genart.serve.validation``):
a bad request costs a 4xx in the ingress and never reaches a model.

Every refusal is JSON with a reason (``genart.serve.http``). ``/docs`` serves Swagger UI from
files installed with the app (``fastapi-offline``): it works without internet access.
"""

from __future__ import annotations

import asyncio
import base64
from importlib import resources
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle

from genart import names
from genart.serve import validation as v
from genart.serve.http import (
    BodyGuard,
    ServeErrorsRefused,
    bearer_check,
    dispatch_failure,
    error_answers,
)
from genart.serve.settings import AppSettings

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image file itself as the body (PNG, JPEG or WebP)",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in v.MEDIA_TYPES},
    }
}
IMAGE_REPLY = {200: {"content": {"image/png": {}}, "description": "the result as PNG"}}
# How long a poll waits for the job store's answer, a dictionary lookup. When its replica has
# died, a call waits until Serve has started another (seconds): a client polling a job is
# better served by a quick 503 with Retry-After.
STORE_TIMEOUT_S = 0.5


class Gateway:
    """What the ingress does with a request, without Serve: the state and calls the routes use.

    :class:`Ingress` is this as a Serve deployment; tests build :func:`create_api` on a plain
    instance with stand-in handles.
    """

    def __init__(self, settings: dict, api_token: str | None = None, **backends):
        self.settings = AppSettings.model_validate(settings)
        self.api_token = api_token
        self.backends: dict[str, DeploymentHandle | None] = backends
        self.dispatches: set[asyncio.Task] = set()  # keeps job dispatch tasks alive

    def backend(self, family: str) -> DeploymentHandle:
        """The handle of a configured family; 404 when this server does not serve it."""
        handle = self.backends.get(family)
        if handle is None:
            raise v.RequestError(404, f"'{family}' is not configured on this server")
        return handle

    def model(self, kind: str, name: str) -> DeploymentHandle:
        """The handle of the catalogue deployment ``kind`` ("image", "latent", "adain") for
        requests to the model ``name``: Serve routes them to a replica that already holds it. A
        name that no catalogue can hold is a 404 here, before the request's body is read."""
        handle = self.backend(kind)
        if not names.NAME.fullmatch(name):
            raise v.RequestError(404, f"no model named '{v.echo(name)}': not a model name")
        return handle.options(multiplexed_model_id=name)

    async def read_image(self, request: Request, long_side: int | None = None) -> np.ndarray:
        """The request body as a validated RGB image, fit to ``long_side`` if given.

        Decoding runs in a thread: a large image must not stall the event loop, which keeps
        answering (and refusing) other requests meanwhile.
        """
        body = await request.body()

        def decode() -> np.ndarray:
            image = v.decode_image(body, self.settings.limits)
            return (
                v.fit_long_side(image, long_side, self.settings.limits.min_side)
                if long_side
                else image
            )

        return await asyncio.to_thread(decode)

    async def job(self, job_id: str) -> dict:
        """A Gatys job's state from the job store: 404 for an unknown job, 503 when the store
        does not answer within ``STORE_TIMEOUT_S`` (it is being restarted)."""
        jobs = self.backend("jobs")
        try:
            job = await asyncio.wait_for(jobs.get.remote(job_id), STORE_TIMEOUT_S)
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise v.RequestError(
                503,
                "the Gatys job store did not answer (after a failure Serve restarts it, which "
                "takes seconds; jobs kept in jobs_dir survive); retry later (see Retry-After)",
            ) from None
        if job is None:
            raise v.RequestError(
                404, f"no job '{v.echo(job_id)}' (unknown, or evicted when finished)"
            )
        return job

    async def decode_images(self, named: dict[str, str], side: int) -> dict[str, np.ndarray]:
        """Base64 images by field name, decoded and fit to ``side`` (long side, never up); a
        refusal names the field. A ``mask`` must have the ``content``'s size as sent (checked
        before fitting; fit alike, the two stay aligned)."""
        limits = self.settings.limits

        def named_error(name: str, err: v.RequestError, status: int = 0) -> v.RequestError:
            return v.RequestError(status or err.status, f"{name}: {err.reason}")

        def decode() -> dict[str, np.ndarray]:
            images = {}
            for name, text in named.items():
                try:
                    images[name] = v.decode_base64_image(text, limits)
                except v.RequestError as err:
                    # The body is well-formed JSON of a supported type: a field whose text is
                    # not an image (bad base64, another format, corrupt data) is an unusable
                    # value, 422 like any other; 413 still says the image is too large.
                    status = 422 if err.status in (400, 415) else err.status
                    raise named_error(name, err, status) from err
            if "mask" in images:
                v.check_mask(images["mask"], images["content"])
            fitted = {}
            for name, image in images.items():
                try:
                    fitted[name] = v.fit_long_side(image, side, limits.min_side)
                except v.RequestError as err:
                    raise named_error(name, err) from err
            return fitted

        return await asyncio.to_thread(decode)

    @staticmethod
    def regions(body: v.Regions) -> dict[str, str]:
        """The spatial-control images a request sent, by field name (none: {})."""
        return {k: text for k, text in (("mask", body.mask), ("outside_style", body.outside_style))
                if text is not None}  # fmt: skip

    async def gatys_inputs(
        self, body: v.GatysRequest
    ) -> tuple[np.ndarray, list[np.ndarray], dict[str, np.ndarray]]:
        """Decoded content, styles and spatial control (:meth:`regions`), resized to the
        requested long side."""
        server = self.settings.gatys
        if body.settings.size > server.max_side:
            raise v.RequestError(422, f"settings.size must be <= {server.max_side} here")
        named = {"content": body.content} | {
            f"styles[{i}]": text for i, text in enumerate(body.styles)
        }
        images = await self.decode_images(named | self.regions(body), body.settings.size)
        styles = [images[f"styles[{i}]"] for i in range(len(body.styles))]
        return images["content"], styles, {k: images[k] for k in self.regions(body)}

    async def adain_inputs(
        self, body: v.AdaINRequest
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
        """The decoded content, uploaded style (None for a named one) and spatial control
        (:meth:`regions`), fit to the requested long side, at most the server's."""
        side = min(body.size, self.settings.adain.max_side)
        named = {"content": body.content} | ({"style": body.style} if body.style else {})
        images = await self.decode_images(named | self.regions(body), side)
        return images["content"], images.get("style"), {k: images[k] for k in self.regions(body)}

    async def submit_gatys(self, body: v.GatysRequest) -> str:
        """Create a job and hand it to the Gatys deployment; returns the job id."""
        worker, jobs = self.backend("gatys"), self.backend("jobs")
        content, styles, regions = await self.gatys_inputs(body)
        settings = body.settings.model_dump()
        job_id = await jobs.create.remote(settings)
        task = asyncio.create_task(
            self.dispatch(worker, jobs, job_id, content, styles, settings, regions)
        )
        self.dispatches.add(task)
        task.add_done_callback(self.dispatches.discard)
        return job_id

    @staticmethod
    async def dispatch(
        worker, jobs, job_id: str, content, styles, settings: dict, regions: dict
    ) -> None:
        """Run a job (``regions``: its mask and outside style, if any). The worker records the
        job's own outcome; recorded here are only the failures of the call itself: the job was
        never run (overload), or its worker replica stopped before answering (the job is then
        lost with it)."""
        try:
            await worker.run_job.remote(job_id, content, styles, settings, **regions)
        except Exception as err:  # the job must not stay "queued" or "running" forever
            await jobs.abandon.remote(job_id, dispatch_failure(err))

    async def describe(self) -> dict:
        """What the application serves (``GET /models``): the catalogue's models (name, family,
        scores; for those the answering replicas hold, the backend that runs them) and the
        other deployments' settings."""
        others = {key: self.backends.get(key) for key in ("gatys", "dream", "adain")}
        found = await asyncio.gather(*(h.describe.remote() for h in others.values() if h))
        answers = iter(found)
        listing = {key: (next(answers) if h is not None else None) for key, h in others.items()}
        return {"catalogue": await self.catalogue()} | listing

    async def catalogue(self) -> list[dict] | None:
        """The catalogue's models, with the backend of those loaded where the call landed."""
        image, latent = self.backends.get("image"), self.backends.get("latent")
        if image is None or latent is None:
            return None
        holders = [h for h in (image, latent, self.backends.get("adain")) if h is not None]
        entries, *replicas = await asyncio.gather(
            image.listing.remote(), *(holder.describe.remote() for holder in holders)
        )
        loaded = {name: d for replica in replicas for name, d in replica["loaded"].items()}
        return [entry | served(loaded.get(entry["name"])) for entry in entries]


def served(description: dict | None) -> dict:
    """What ``GET /models`` adds to a loaded model's entry: the backend that runs it."""
    keys = ("backend", "threads", "pinned")
    return {"loaded": True} | {k: description[k] for k in keys if k in description} if (
        description) else {"loaded": False}  # fmt: skip


@serve.deployment(
    # Sized to the model deployments behind it (serve_config.yaml says more). A request the
    # ingress runs is read and decoded before a model's queue can refuse it, which then costs
    # about as much CPU as serving it; so it runs no more than a style or translation replica
    # and its caller queue hold (16 + 32). The rest wait here, undecoded, and beyond
    # max_queued_requests Serve refuses them before reading them.
    max_ongoing_requests=32,
    max_queued_requests=64,
    # Serve's own 503 for a full ingress queue then says when to retry (Limits.retry_after_s
    # does it for the 503s the app makes).
    backpressure_config={"retry_after_s": 2},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    ray_actor_options={"num_cpus": 0.25},
)
@serve.ingress()
class Ingress(Gateway):
    """Validates, authenticates and routes HTTP requests to the model deployments."""

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self)


def image_response(result: bytes | list[bytes]) -> Response:
    """PNG bytes as image/png; a list of PNGs as JSON with base64 strings."""
    if isinstance(result, bytes):
        return Response(result, media_type="image/png")
    images = [base64.b64encode(png).decode() for png in result]
    return JSONResponse({"count": len(images), "images": images})


def create_api(app: Gateway) -> FastAPI:
    """The FastAPI application of one ingress replica (routes close over its state)."""
    limits = app.settings.limits
    # FastAPIOffline: FastAPI whose /docs and /redoc load their scripts and styles from the
    # files the package installs, not from a CDN, so they work on a network without one.
    api = FastAPIOffline(
        title="genart",
        version="0.1.0",
        description="Generative-art models served by Ray Serve. Image endpoints take the image "
        "file itself as the request body and answer with a PNG.",
    )
    api.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    error_answers(api, limits)
    _service_routes(api)
    models = APIRouter(
        dependencies=[Depends(bearer_check(app.api_token))], route_class=ServeErrorsRefused
    )
    for add_routes in (_model_list_route, _dcgan_routes, _image_routes, _gatys_routes,
                       _dream_route, _adain_route):  # fmt: skip
        add_routes(models, app)
    api.include_router(models)
    return api


def _service_routes(api: FastAPI) -> None:
    """The playground page and the health check (no auth).

    Public too, outside the token's router: the API's description (``/openapi.json``) and its
    pages (``/docs``, ``/redoc``, their scripts). The browser loads ``/docs`` and then fetches
    the description before a token can be given (Swagger's Authorize button adds it to the
    requests tried from the page), and the description holds routes and bounds, never
    configured model names or data.
    """
    playground = resources.files("genart.serve").joinpath("playground.html").read_text()

    @api.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(playground)

    @api.get("/healthz", tags=["service"])
    async def healthz() -> dict:
        """Liveness of the ingress (no auth, for load balancers)."""
        return {"status": "ok"}


def _model_list_route(models: APIRouter, app: Gateway) -> None:
    @models.get("/models", tags=["service"])
    async def list_models() -> dict:
        """The catalogue's models (name, family, scores, whether usable; the backend of loaded
        ones) and the other deployments' settings; never a server path."""
        return await app.describe()


def default_model(app: Gateway, family: str, named_route: str) -> str:
    """The catalogue's model that the unnamed routes of ``family`` serve (``catalogue.dcgan``,
    ``catalogue.adain``); 404 saying where to go when none is configured."""
    name = getattr(app.settings.catalogue, family) if app.settings.catalogue else None
    if name is None:
        raise v.RequestError(
            404, f"no default {family} model is configured here: use {named_route} (GET /models)"
        )
    return name


def _dcgan_routes(models: APIRouter, app: Gateway) -> None:
    """DCGAN by catalogue name (``/dcgan/{name}/...``) and by the configured default."""

    def default() -> str:
        return default_model(app, "dcgan", "/dcgan/{name}/...")

    def latent(name: str) -> DeploymentHandle:
        return app.model("latent", name)

    @models.post("/dcgan/{name}/sample", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_sample(name: str, body: v.SampleRequest) -> Response:
        """``n`` images of the catalogue's DCGAN ``name``, seeds ``seed`` .. ``seed + n - 1``:
        a PNG grid, or JSON of PNGs."""
        return image_response(await latent(name).sample.remote(name, body))

    @models.post("/dcgan/{name}/interpolate", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_interpolate(name: str, body: v.InterpolateRequest) -> Response:
        """A latent walk between consecutive seeds: one row of ``steps`` images per pair."""
        return image_response(await latent(name).interpolate.remote(name, body))

    @models.post("/dcgan/{name}/arithmetic", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_arithmetic(name: str, body: v.ArithmeticRequest) -> Response:
        """mean(A), mean(B), mean(C) and mean(A) - mean(B) + mean(C), left to right."""
        return image_response(await latent(name).arithmetic.remote(name, body))

    @models.post("/dcgan/sample", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_default_sample(body: v.SampleRequest) -> Response:
        """/dcgan/{name}/sample of the configured default DCGAN."""
        return await dcgan_sample(default(), body)

    @models.post("/dcgan/interpolate", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_default_interpolate(body: v.InterpolateRequest) -> Response:
        """/dcgan/{name}/interpolate of the configured default DCGAN."""
        return await dcgan_interpolate(default(), body)

    @models.post("/dcgan/arithmetic", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_default_arithmetic(body: v.ArithmeticRequest) -> Response:
        """/dcgan/{name}/arithmetic of the configured default DCGAN."""
        return await dcgan_arithmetic(default(), body)


def _image_routes(models: APIRouter, app: Gateway) -> None:
    """Fast style and translation: the body is the image, the answer a PNG."""

    @models.post("/style/{name}", tags=["style"], openapi_extra=IMAGE_BODY, responses=IMAGE_REPLY)
    async def style(
        name: str, request: Request, params: Annotated[v.StyleParams, Query()]
    ) -> Response:
        """The body image in the catalogue's fast style ``name`` (see ``GET /models``), at its
        own size; ``strength`` blends it with the input, ``preserve_color`` keeps the input's
        colours."""
        handle = app.model("image", name)
        image = await app.read_image(request)
        controls = params.model_dump()
        return image_response(await handle.stylize.remote(name, image, **controls))

    @models.post("/translate/{model}", tags=["translate"], openapi_extra=IMAGE_BODY,
                 responses=IMAGE_REPLY)  # fmt: skip
    async def translate_image(
        model: str,
        request: Request,
        direction: Annotated[str | None, Query(pattern="^(AtoB|BtoA)$")] = None,
    ) -> Response:
        """The body image translated by the catalogue's Pix2Pix/CycleGAN ``model`` (CycleGAN:
        either way)."""
        handle = app.model("image", model)
        image = await app.read_image(request)
        return image_response(await handle.translate.remote(model, direction, image))


def _gatys_routes(models: APIRouter, app: Gateway) -> None:
    """Gatys jobs (submit, poll, fetch the result) and the small synchronous mode."""

    @models.post("/gatys/jobs", tags=["gatys"], status_code=202)
    async def gatys_submit(body: v.GatysRequest, request: Request) -> JSONResponse:
        """Start a Gatys optimisation; poll the returned ``status_url``."""
        job_id = await app.submit_gatys(body)
        url = request.url_for("gatys_job", job_id=job_id).path
        return JSONResponse({"id": job_id, "status": "queued", "status_url": url},
                            status_code=202, headers={"Location": url})  # fmt: skip

    @models.get("/gatys/jobs/{job_id}", tags=["gatys"], name="gatys_job")
    async def gatys_job(job_id: str, request: Request) -> dict:
        """Status, progress (evaluations of total) and, once done, the result as base64 PNG."""
        job = await app.job(job_id)
        if job["status"] == "done":
            # The store just answered: no short timeout for the result, which may be large.
            png = await app.backend("jobs").result.remote(job_id)
            job["result_url"] = request.url_for("gatys_result", job_id=job_id).path
            job["result_png"] = base64.b64encode(png).decode()
        return job

    @models.get("/gatys/jobs/{job_id}/result", tags=["gatys"], name="gatys_result",
                responses=IMAGE_REPLY)  # fmt: skip
    async def gatys_result(job_id: str) -> Response:
        """The finished job's image as PNG (404 until it is done)."""
        job = await app.job(job_id)
        if job["status"] != "done":
            raise v.RequestError(404, f"job '{v.echo(job_id)}' is {job['status']}: no result")
        png = await app.backend("jobs").result.remote(job_id)
        if png is None:  # evicted since
            raise v.RequestError(404, f"no result for job '{v.echo(job_id)}' any more")
        return Response(png, media_type="image/png")

    @models.post("/gatys/stylize", tags=["gatys"], responses=IMAGE_REPLY)
    async def gatys_now(body: v.GatysRequest) -> Response:
        """Small images only: the optimisation in the request itself; else use /gatys/jobs."""
        worker = app.backend("gatys")
        server, s = app.settings.gatys, body.settings
        if s.size > server.sync_max_side or s.iterations * s.scales > server.sync_max_evaluations:
            raise v.RequestError(
                422,
                f"synchronous mode allows size <= {server.sync_max_side} and iterations x scales"
                f" <= {server.sync_max_evaluations}; POST /gatys/jobs for bigger work",
            )
        content, styles, regions = await app.gatys_inputs(body)
        png, _ = await worker.stylize.remote(content, styles, s.model_dump(), **regions)
        return Response(png, media_type="image/png")


def _dream_route(models: APIRouter, app: Gateway) -> None:
    @models.post("/dream", tags=["dream"], openapi_extra=IMAGE_BODY, responses=IMAGE_REPLY)
    async def dream(request: Request, params: Annotated[v.DreamParams, Query()]) -> Response:
        """Deep Dream on the body image, resized to ``size`` (long side) at most."""
        dreamer = app.backend("dream")
        image = await app.read_image(request, min(params.size, app.settings.dream.max_side))
        return image_response(
            await dreamer.dream.remote(image, params.model_dump(exclude={"size"}))
        )


def _adain_route(models: APIRouter, app: Gateway) -> None:
    """AdaIN by catalogue name (``/adain/{name}/stylize``) and by the configured default."""

    @models.post("/adain/{name}/stylize", tags=["adain"], responses=IMAGE_REPLY)
    async def adain_stylize(name: str, body: v.AdaINRequest) -> Response:
        """The content image, by the catalogue's AdaIN model ``name``, in the uploaded ``style``
        or the server's ``style_name``, at content-style trade-off ``alpha``, with its own
        colours if ``preserve_color``, where the ``mask`` is white if one is sent (its black
        region keeps the content or takes ``outside_style``); every image fit to ``size``
        (long side) at most."""
        worker = app.model("adain", name)
        named = app.settings.adain.styles
        if body.style_name is not None and body.style_name not in named:
            raise v.RequestError(
                404, f"unknown style '{body.style_name}'; available: {sorted(named)}"
            )
        content, style, regions = await app.adain_inputs(body)
        chosen = body.style_name if style is None else style
        return image_response(await worker.stylize.remote(
            name, content, chosen, body.alpha, body.preserve_color, **regions
        ))  # fmt: skip

    @models.post("/adain/stylize", tags=["adain"], responses=IMAGE_REPLY)
    async def adain_default_stylize(body: v.AdaINRequest) -> Response:
        """/adain/{name}/stylize of the configured default AdaIN model."""
        return await adain_stylize(default_model(app, "adain", "/adain/{name}/stylize"), body)
