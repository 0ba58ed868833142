"""The genart Serve application: every trained generator and the Gatys optimisation over HTTP.

One application, one FastAPI ingress, one deployment per model family:

================  ==============================================  ===========================
deployment        endpoints                                        work
================  ==============================================  ===========================
Ingress           /, /docs, /healthz, /models, everything below    validation, auth, routing
DCGANGenerator    POST /dcgan/sample|interpolate|arithmetic        batched latents -> images
FastStyle         POST /style/{name}                               every style side by side,
                                                                   batched
Translator        POST /translate/{model}                          Pix2Pix / CycleGAN, batched
GatysWorker       POST /gatys/jobs, POST /gatys/stylize            per-image optimisation
JobStore          GET /gatys/jobs/{id}[/result]                    job state (one replica)
Dreamer           POST /dream                                      Deep Dream
================  ==============================================  ===========================

This module holds the settings, the ingress, the job store and the builder; the model
deployments live in ``genart.serve.deployments``. It imports no torch: ingress replicas only
validate, decode and route, so they start in seconds and scale out cheaply. Every upload is
checked and decoded here (``genart.serve.validation``): a bad request costs a 4xx in the
ingress and never reaches a model.

Build it with :func:`build_app` (``import_path: genart.serve.app:build_app`` in
serve_config.yaml, whose ``args`` are :class:`AppSettings`) or :func:`build` from Python.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve.handle import DeploymentHandle

from genart.serve import validation as v

TOKEN_ENV = "GENART_API_TOKEN"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")  # style and translator names (URL segments)


# --- settings: the application's ``args`` -------------------------------------------------------


class OptimisationSettings(BaseModel):
    """A VGG-based optimisation served by the app (Gatys or Deep Dream)."""

    model_config = ConfigDict(extra="forbid")

    vgg_weights: str = "auto"  # auto (torch hub cache) | PATH | s3://... | random (tests only)
    # Fixed by the server: fields of GatysConfig / DreamConfig (layers, arch, pooling ...).
    # Clients choose the rest per request within validation's bounds.
    config: dict[str, Any] = {}
    max_side: int = Field(512, ge=32, le=4096)  # long side images are optimised at, at most


class GatysServerSettings(OptimisationSettings):
    """The Gatys deployment: its jobs and its small synchronous mode."""

    max_jobs: int = Field(32, ge=1, le=10_000)  # queued + running + finished, kept in memory
    sync_max_side: int = Field(128, ge=32, le=1024)  # /gatys/stylize: tiny images only
    sync_max_evaluations: int = Field(100, ge=1, le=10_000)  # iterations x scales


class AppSettings(BaseModel):
    """What one genart application serves: exported models by family, and request limits.

    Every path is an exported folder (``genart export``), a checkpoint or a run folder, local or
    ``s3://``. A family left out is not deployed; its endpoints answer 404.
    """

    model_config = ConfigDict(extra="forbid")

    dcgan: str | None = None
    styles: dict[str, str] = {}  # style name -> fast_style export
    translators: dict[str, str] = {}  # model name -> pix2pix or cyclegan export
    gatys: GatysServerSettings | None = None
    dream: OptimisationSettings | None = None
    limits: v.Limits = v.Limits()

    @field_validator("styles", "translators")
    @classmethod
    def _url_safe_names(cls, models: dict[str, str]) -> dict[str, str]:
        bad = [name for name in models if not NAME.match(name)]
        if bad:
            raise ValueError(f"names {bad} must match {NAME.pattern} (they are URL segments)")
        return models


# --- Gatys job state ----------------------------------------------------------------------------


@serve.deployment(num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class JobStore:
    """Status, progress and results of Gatys jobs: one replica, so every ingress sees one state.

    Holds at most ``max_jobs`` jobs; the oldest finished ones make room for new ones, and a new
    job is refused (503) while that many are queued or running. State lives in memory: a restart
    of this replica forgets the jobs (clients see 404 and resubmit).
    """

    def __init__(self, max_jobs: int):
        self.max_jobs = max_jobs
        self.jobs: OrderedDict[str, dict] = OrderedDict()
        self.results: dict[str, bytes] = {}

    async def create(self, settings: dict) -> str:
        """A new queued job's id (unguessable: results are only visible to whoever has it)."""
        finished = [k for k, job in self.jobs.items() if job["status"] in ("done", "failed")]
        while len(self.jobs) >= self.max_jobs and finished:
            oldest = finished.pop(0)
            del self.jobs[oldest]
            self.results.pop(oldest, None)
        if len(self.jobs) >= self.max_jobs:
            raise v.RequestError(503, f"{self.max_jobs} Gatys jobs are in progress; retry later")
        job_id = secrets.token_urlsafe(12)
        self.jobs[job_id] = {"id": job_id, "status": "queued", "created": time.time(),
                             "settings": settings, "progress": None}  # fmt: skip
        return job_id

    async def update(self, job_id: str, **fields: Any) -> None:
        if job_id in self.jobs:  # an evicted job's late progress is dropped
            self.jobs[job_id].update(fields)

    async def finish(self, job_id: str, png: bytes, info: dict) -> None:
        if job_id in self.jobs:
            self.results[job_id] = png
            self.jobs[job_id].update(status="done", finished=time.time(), info=info)

    async def get(self, job_id: str) -> dict | None:
        return dict(self.jobs[job_id]) if job_id in self.jobs else None

    async def result(self, job_id: str) -> bytes | None:
        return self.results.get(job_id)


# --- the HTTP ingress ----------------------------------------------------------------------------

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image file itself as the body (PNG, JPEG or WebP)",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in v.MEDIA_TYPES},
    }
}
IMAGE_REPLY = {200: {"content": {"image/png": {}}, "description": "the result as PNG"}}


@serve.deployment(
    max_ongoing_requests=100,
    max_queued_requests=200,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 32},
    ray_actor_options={"num_cpus": 0.25},
)
@serve.ingress()
class Ingress:
    """Validates, authenticates and routes HTTP requests to the model deployments."""

    def __init__(self, settings: dict, api_token: str | None = None, **backends):
        self.settings = AppSettings.model_validate(settings)
        self.api_token = api_token
        self.backends: dict[str, DeploymentHandle | None] = backends
        self.dispatches: set[asyncio.Task] = set()  # keeps job dispatch tasks alive

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self)

    def backend(self, family: str) -> DeploymentHandle:
        """The handle of a configured family; 404 when this server does not serve it."""
        handle = self.backends.get(family)
        if handle is None:
            raise v.RequestError(404, f"'{family}' is not configured on this server")
        return handle

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

    async def gatys_inputs(self, body: v.GatysRequest) -> tuple[np.ndarray, list[np.ndarray]]:
        """Decoded content and styles, resized to the requested long side."""
        server = self.settings.gatys
        if body.settings.size > server.max_side:
            raise v.RequestError(422, f"settings.size must be <= {server.max_side} here")

        def decode() -> list[np.ndarray]:
            images = [
                v.decode_base64_image(t, self.settings.limits) for t in (body.content, *body.styles)
            ]
            min_side = self.settings.limits.min_side
            return [v.fit_long_side(image, body.settings.size, min_side) for image in images]

        content, *styles = await asyncio.to_thread(decode)
        return content, styles

    async def submit_gatys(self, body: v.GatysRequest) -> str:
        """Create a job and hand it to the Gatys deployment; returns the job id."""
        worker, jobs = self.backend("gatys"), self.backend("jobs")
        content, styles = await self.gatys_inputs(body)
        settings = body.settings.model_dump()
        job_id = await jobs.create.remote(settings)
        task = asyncio.create_task(self.dispatch(worker, jobs, job_id, content, styles, settings))
        self.dispatches.add(task)
        task.add_done_callback(self.dispatches.discard)
        return job_id

    @staticmethod
    async def dispatch(worker, jobs, job_id: str, content, styles, settings: dict) -> None:
        """Run a job; only failures to run it at all (overload, lost replica) are recorded here."""
        try:
            await worker.run_job.remote(job_id, content, styles, settings)
        except Exception as err:  # the job must not stay "queued" forever
            await jobs.update.remote(job_id, status="failed", error=f"not run: {err}")

    async def describe(self) -> dict:
        """What every configured deployment serves (``GET /models``)."""
        names = {"dcgan": "dcgan", "styles": "style", "translators": "translate",
                 "gatys": "gatys", "dream": "dream"}  # fmt: skip
        live = {key: self.backends.get(family) for key, family in names.items()}
        found = await asyncio.gather(*(h.describe.remote() for h in live.values() if h is not None))
        answers = iter(found)
        return {key: (next(answers) if h is not None else None) for key, h in live.items()}


def image_response(result: bytes | list[bytes]) -> Response:
    """PNG bytes as image/png; a list of PNGs as JSON with base64 strings."""
    if isinstance(result, bytes):
        return Response(result, media_type="image/png")
    images = [base64.b64encode(png).decode() for png in result]
    return JSONResponse({"count": len(images), "images": images})


def bearer_check(token: str | None) -> Callable:
    """A FastAPI dependency: with a token set, a request needs ``Authorization: Bearer TOKEN``."""
    scheme = HTTPBearer(auto_error=False, description=f"the server's {TOKEN_ENV}, if it sets one")

    # A default, not an Annotated hint: hints are strings here (postponed evaluation), and
    # FastAPI resolves them in the module's globals, where the local ``scheme`` is not.
    # async: FastAPI would run a plain def in its thread pool, a thread hop per request.
    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), token.encode()):  # constant time
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    return check


def create_api(app: Ingress) -> FastAPI:
    """The FastAPI application of one ingress replica (routes close over its state)."""
    api = FastAPI(
        title="genart",
        version="0.1.0",
        description="Generative-art models served by Ray Serve. Image endpoints take the image "
        "file itself as the request body and answer with a PNG.",
        max_body_size=app.settings.limits.max_body_bytes,
    )
    playground = resources.files("genart.serve").joinpath("playground.html").read_text()

    @api.exception_handler(v.RequestError)
    async def refused(request: Request, err: v.RequestError) -> JSONResponse:
        # A RequestError raised in a model replica arrives wrapped by Ray; .status and .reason
        # are delegated to the original, so both kinds take this path.
        headers = {"Retry-After": "5"} if err.status == 503 else None
        return JSONResponse({"detail": err.reason}, status_code=err.status, headers=headers)

    @api.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(playground)

    @api.get("/healthz", tags=["service"])
    async def healthz() -> dict:
        """Liveness of the ingress (no auth, for load balancers)."""
        return {"status": "ok"}

    models = APIRouter(dependencies=[Depends(bearer_check(app.api_token))])

    @models.get("/models", tags=["service"])
    async def list_models() -> dict:
        """Each family's loaded models: checkpoint, export metadata and saved config."""
        return await app.describe()

    @models.post("/dcgan/sample", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_sample(body: v.SampleRequest) -> Response:
        """``n`` images, seeds ``seed`` .. ``seed + n - 1``: a PNG grid, or JSON of PNGs."""
        return image_response(await app.backend("dcgan").sample.remote(body))

    @models.post("/dcgan/interpolate", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_interpolate(body: v.InterpolateRequest) -> Response:
        """A latent walk between consecutive seeds: one row of ``steps`` images per pair."""
        return image_response(await app.backend("dcgan").interpolate.remote(body))

    @models.post("/dcgan/arithmetic", tags=["dcgan"], responses=IMAGE_REPLY)
    async def dcgan_arithmetic(body: v.ArithmeticRequest) -> Response:
        """mean(A), mean(B), mean(C) and mean(A) - mean(B) + mean(C), left to right."""
        return image_response(await app.backend("dcgan").arithmetic.remote(body))

    @models.post("/style/{name}", tags=["style"], openapi_extra=IMAGE_BODY, responses=IMAGE_REPLY)
    async def style(name: str, request: Request) -> Response:
        """The body image in fast style ``name`` (see ``GET /models``), at its own size."""
        if name not in app.settings.styles:
            raise v.RequestError(
                404, f"unknown style '{name}'; available: {sorted(app.settings.styles)}"
            )
        image = await app.read_image(request)
        return image_response(await app.backend("style").stylize.remote(name, image))

    @models.post("/translate/{model}", tags=["translate"], openapi_extra=IMAGE_BODY,
                 responses=IMAGE_REPLY)  # fmt: skip
    async def translate_image(
        model: str,
        request: Request,
        direction: Annotated[str | None, Query(pattern="^(AtoB|BtoA)$")] = None,
    ) -> Response:
        """The body image translated by Pix2Pix/CycleGAN ``model`` (CycleGAN: either way)."""
        if model not in app.settings.translators:
            names = sorted(app.settings.translators)
            raise v.RequestError(404, f"unknown model '{model}'; available: {names}")
        image = await app.read_image(request)
        return image_response(
            await app.backend("translate").translate.remote(model, direction, image)
        )

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
        jobs = app.backend("jobs")
        job = await jobs.get.remote(job_id)
        if job is None:
            raise v.RequestError(404, f"no job '{job_id}' (unknown, or evicted when finished)")
        if job["status"] == "done":
            job["result_url"] = request.url_for("gatys_result", job_id=job_id).path
            job["result_png"] = base64.b64encode(await jobs.result.remote(job_id)).decode()
        return job

    @models.get("/gatys/jobs/{job_id}/result", tags=["gatys"], name="gatys_result",
                responses=IMAGE_REPLY)  # fmt: skip
    async def gatys_result(job_id: str) -> Response:
        """The finished job's image as PNG (404 until it is done)."""
        png = await app.backend("jobs").result.remote(job_id)
        if png is None:
            raise v.RequestError(404, f"no result for job '{job_id}' (yet)")
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
        content, styles = await app.gatys_inputs(body)
        png, _ = await worker.stylize.remote(content, styles, s.model_dump())
        return Response(png, media_type="image/png")

    @models.post("/dream", tags=["dream"], openapi_extra=IMAGE_BODY, responses=IMAGE_REPLY)
    async def dream(request: Request, params: Annotated[v.DreamParams, Query()]) -> Response:
        """Deep Dream on the body image, resized to ``size`` (long side) at most."""
        dreamer = app.backend("dream")
        image = await app.read_image(request, min(params.size, app.settings.dream.max_side))
        return image_response(
            await dreamer.dream.remote(image, params.model_dump(exclude={"size"}))
        )

    api.include_router(models)
    return api


# --- building the application --------------------------------------------------------------------


def build(
    settings: AppSettings | dict,
    options: dict[str, dict] | None = None,
    api_token: str | None = None,
) -> serve.Application:
    """The application for ``settings``: an ingress and the deployments of configured families.

    ``options`` maps deployment names to ``Deployment.options`` overrides (what the
    ``deployments:`` list of a Serve config file does for ``serve run``/``serve deploy``).
    ``api_token`` turns on bearer-token auth for every endpoint but /, /docs and /healthz.
    """
    # Imported here: replicas of this module (the ingress) must not pay for torch.
    from genart.serve.deployments import DCGANGenerator, Dreamer, FastStyle, GatysWorker, Translator

    s = AppSettings.model_validate(settings) if isinstance(settings, dict) else settings
    options = dict(options or {})

    def bind(deployment, *args, **kwargs):
        return deployment.options(**options.pop(deployment.name, {})).bind(*args, **kwargs)

    jobs = bind(JobStore, s.gatys.max_jobs) if s.gatys else None
    backends = {
        "dcgan": bind(DCGANGenerator, s.dcgan) if s.dcgan else None,
        "style": bind(FastStyle, s.styles) if s.styles else None,
        "translate": bind(Translator, s.translators) if s.translators else None,
        "gatys": bind(GatysWorker, s.gatys.model_dump(), jobs) if s.gatys else None,
        "jobs": jobs,
        "dream": bind(Dreamer, s.dream.model_dump()) if s.dream else None,
    }
    app = bind(Ingress, s.model_dump(), api_token, **backends)
    if options:
        raise ValueError(f"options for unknown or unconfigured deployments: {sorted(options)}")
    return app


def build_app(args: dict) -> serve.Application:
    """The Serve config entry point (``import_path: genart.serve.app:build_app``).

    ``args`` are :class:`AppSettings`. Auth is on when ``GENART_API_TOKEN`` is set where the
    application is built: the environment that started Ray (``ray start``, ``serve run``,
    ``genart serve``). The token stays out of config files.
    """
    return build(args, api_token=os.environ.get(TOKEN_ENV) or None)
