"""The HTTP plumbing of the ingress: refusals as JSON reasons, the body guard, bearer auth.

Every refusal is JSON ``{"detail": reason}`` (422 validation errors: a list of them), whatever
refused it: validation, the body guard (413 too many bytes, 408 too slow), overload (503 with
``Retry-After``) or a model replica that stopped mid-request (503). Torch-free, like the
ingress.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genart.serve import validation as v
from genart.serve.settings import TOKEN_ENV


def serve_refusal(path: str, err: Exception) -> v.RequestError:
    """The 503 for a Serve error met while calling a deployment, with a reason."""
    if isinstance(err, BackPressureError):
        reason = f"the server is at capacity for {path} (its queue is full)"
    elif isinstance(err, DeploymentUnavailableError):
        reason = f"the deployment behind {path} failed to start on this server"
    else:  # RayActorError: the replica died or was restarted; Serve starts another
        reason = f"the replica working on {path} stopped before it answered"
    return v.RequestError(503, f"{reason}; retry later (see Retry-After)")


class ServeErrorsRefused(APIRoute):
    """A route whose Serve errors (a full model queue, a lost replica) become 503s with a reason.

    Caught here, inside the route: Serve registers its own handlers for BackPressureError and
    DeploymentUnavailableError on the ingress's app when the replica starts, replacing any of
    the app's, and answers them in plain text without Retry-After.
    """

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def refusing(request: Request) -> Response:
            try:
                return await handler(request)
            except (BackPressureError, DeploymentUnavailableError, RayActorError) as err:
                raise serve_refusal(request.url.path, err) from err

        return refusing


def dispatch_failure(err: Exception) -> str:
    """Why a Gatys job's dispatch failed, for its status (a sentence, not the Ray error)."""
    if isinstance(err, BackPressureError):
        return "not run: every Gatys worker's queue was full; submit it again later"
    if isinstance(err, RayActorError):
        return (
            "its Gatys worker replica stopped before the job finished (it is restarted, but "
            "work in progress is lost); submit it again"
        )
    return f"the Gatys worker could not run it ({type(err).__name__}); submit it again"


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


class BodyGuard:
    """ASGI middleware: a request body may have at most ``max_bytes`` bytes (413) and must have
    arrived ``timeout_s`` after the request reached the app (408).

    Declared lengths are checked before anything is read; a body without one (chunked) is
    counted as it arrives. The deadline covers the whole body, not each wait for a chunk: a
    client trickling a byte at a time would pass a per-chunk timeout forever. Both answers
    ask to close the connection, whose unread rest is of no use (uvicorn closes it; Serve's
    HAProxy answers the client and keeps its side open until HAProxy's own client timeout).
    Once the body is complete, receive calls (waits for a disconnect) are not timed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def too_large(self, size: str, scope: Scope) -> HTTPException:
        # A JSON body's size is that of its images, as base64: a third larger than the files.
        is_json = "json" in Headers(scope=scope).get("content-type", "")
        advice = "send smaller images (base64 adds a third)" if is_json else "send a smaller image"
        return HTTPException(
            413,
            f"request body is {size} bytes; the limit is {self.max_bytes} bytes "
            f"({self.max_bytes / 2**20:g} MiB): {advice}",
            {"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            err = self.too_large(declared, scope)
            response = JSONResponse({"detail": err.detail}, err.status_code, err.headers)
            await response(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received, complete = 0, False

        async def guarded() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                # A wait past the deadline is cancelled; Serve's and uvicorn's receive are
                # queue reads, which a cancellation leaves intact.
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
                raise HTTPException(
                    408,
                    f"the request body did not arrive within {self.timeout_s:g} s (the "
                    f"server's body_timeout_s): send the whole body at once, as many bytes as "
                    f"its Content-Length says",
                    {"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large(f"over {self.max_bytes}", scope)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, guarded, send)


def json_safe(value: Any) -> Any:
    """A refused input as a 422 may quote it: JSON-encodable and short, or None to leave it out.

    Non-finite floats (Python's JSON parser reads ``NaN``, ``Infinity`` and ``1e999``) become
    the strings a client sent, which strict JSON cannot carry as numbers; long strings are cut
    (the refused value may be a whole base64 image); containers are left out (``loc`` says
    where the error is, and they can be as large as the body).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return v.echo(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return None


def validation_errors(errors: list[dict]) -> list[dict]:
    """FastAPI's validation errors as valid, bounded JSON: type, loc, msg, the refused input
    (see :func:`json_safe`) and the bounds it broke (``ctx``)."""
    clean = []
    for error in errors:
        item = {key: error[key] for key in ("type", "loc", "msg") if key in error}
        if (quoted := json_safe(error.get("input"))) is not None:
            item["input"] = quoted
        if error.get("ctx"):
            # A model validator's ctx holds the ValueError it raised: its text is the reason.
            bounds = {key: json_safe(val) for key, val in error["ctx"].items()}
            item["ctx"] = {key: str(error["ctx"][key]) if val is None else val
                           for key, val in bounds.items()}  # fmt: skip
        clean.append(item)
    return clean


def error_answers(api: FastAPI, limits: v.Limits) -> None:
    """JSON reasons for the refusals of validation and of the app's own code (Serve's errors
    become RequestErrors in :class:`ServeErrorsRefused`); 503s say when to retry."""
    retry = {"Retry-After": str(limits.retry_after_s)}

    @api.exception_handler(v.RequestError)
    async def refused(request: Request, err: v.RequestError) -> JSONResponse:
        # A RequestError raised in a model replica arrives wrapped by Ray; .status and .reason
        # are delegated to the original, so both kinds take this path.
        headers = retry if err.status == 503 else None
        return JSONResponse({"detail": err.reason}, status_code=err.status, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler fails on a refused NaN or infinity (strict JSON has no such
        # numbers) and would answer 500; it also quotes refused values whole.
        if isinstance(err.body, bytes):  # a JSON route's body, left unparsed: see not_json
            return JSONResponse({"detail": [not_json(request)]}, status_code=422)
        return JSONResponse({"detail": validation_errors(err.errors())}, status_code=422)


def not_json(request: Request) -> dict:
    """The validation error for a JSON route's body sent without a JSON Content-Type.

    FastAPI then hands the body to validation as bytes, and the error would say only that it
    is not "a valid dictionary": ``curl -d`` sends JSON as a form unless told otherwise.
    """
    sent = request.headers.get("content-type")
    said = f"the request's is '{v.echo(sent)}'" if sent else "the request has none"
    return {
        "type": "json_content_type",
        "loc": ["header", "content-type"],
        "msg": f"send the body as JSON with Content-Type: application/json ({said}); with curl, "
        f"add -H 'Content-Type: application/json' to -d",
    }
