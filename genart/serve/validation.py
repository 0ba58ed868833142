"""What the HTTP app accepts: image bytes, their declared sizes, and typed, bounded JSON bodies.

Every check here runs in the ingress before a model replica sees the request, so a bad request
costs microseconds to milliseconds, gets a 4xx that says why, and never reaches (or breaks) a
model. Images are checked in order of cost:

1. the format, by magic bytes (never by file name or Content-Type): PNG, JPEG, WebP only, so
   Pillow's rarer decoders, with their history of CVEs, never see untrusted bytes;
2. the declared width and height, read from the header (no pixel decoded) against
   :class:`Limits`: a 20,000 x 20,000 PNG of a few kilobytes is refused here with the app's
   own caps in the reason (they take the place of Pillow's decompression-bomb check, which
   would refuse it first with a message about Pillow's own ~179 MP limit); a WebP's size is
   read from its bytes before Pillow's parser sees them, as that parser applies the bomb
   check itself;
3. for JPEG (anything starting with a JPEG start-of-image marker, MPO included), the number
   of scans, counted in the raw bytes (no pixel decoded): each scan of a progressive JPEG is
   decoded over the whole image, so a few kilobytes of repeated scans would cost seconds of
   CPU;
4. the full decode, which rejects truncated or corrupt pixel data and gives the pixels as
   viewers show them (:func:`genart.data.transforms.load_as`: EXIF orientation applied,
   16-bit grey scaled to 8 bits, transparency composited onto white).

Resizing (:func:`fit_long_side`) then refuses an image so elongated that its short side would
shrink below the minimum.

Before any of this the ingress caps the request body's bytes and the time it may take to
arrive (``max_body_bytes``, ``body_timeout_s``; ``genart.serve.http.BodyGuard``). Every reason
given to a client is a sentence of this module's making: Pillow's own messages name Python
objects and Pillow's limits, not what the client should change.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Annotated, Literal

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin
from pydantic import BaseModel, ConfigDict, Field, model_validator

from genart.data import transforms

# Magic bytes of the accepted formats. WebP is a RIFF container: "RIFF", 4 size bytes, "WEBP".
SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
FORMATS = ("PNG", "JPEG", "WEBP")
MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp")
# The one header parser per format that the magic bytes choose. Called directly rather than
# through Image.open, which adds Pillow's decompression-bomb check (its message names Pillow's
# limit, not the app's; check_size applies the app's caps next) and, for a header that
# fails to parse, replaces the parser's error with one naming a Python object.
# jpeg_factory opens a JPEG with an MPF segment as MPO, as Image.open does.
HEADER_PARSERS = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.jpeg_factory,
    "WEBP": WebPImagePlugin.WebPImageFile,
}


MAX_ECHOED_CHARS = 100  # of a client's string quoted back in a refusal (it may be megabytes)


def echo(text: str) -> str:
    """A client's string as a refusal may quote it: cut after ``MAX_ECHOED_CHARS``."""
    return text[:MAX_ECHOED_CHARS] + ("..." if len(text) > MAX_ECHOED_CHARS else "")


class RequestError(Exception):
    """A request the app refuses, with the HTTP status and a reason for the client."""

    def __init__(self, status: int, reason: str):
        # Both in args: exceptions are pickled as (class, args) when they cross Ray processes.
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}"


class Limits(BaseModel):
    """Caps on what one request may carry (``limits:`` in the application's args)."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(8 * 2**20, ge=1024, le=2**30)  # whole request body
    max_pixels: int = Field(2048 * 2048, ge=64, le=2**28)  # width x height, from the header
    max_side: int = Field(4096, ge=8, le=65535)  # longest side, from the header
    min_side: int = Field(8, ge=1, le=1024)  # shortest side: smaller is no picture to restyle
    # The whole body must arrive within this many seconds of the request reaching the app,
    # else 408: a client that declares more bytes than it sends would otherwise hold a
    # connection and a request slot for as long as it likes.
    body_timeout_s: float = Field(5.0, gt=0, le=600, allow_inf_nan=False)
    # What a 503 (overload: full queues, a job store at max_jobs) asks clients to wait before
    # retrying, in its Retry-After header.
    retry_after_s: int = Field(2, ge=1, le=3600)


def sniff_format(data: bytes) -> str:
    """The format of encoded image bytes from their magic bytes; 415 for anything else."""
    for name, signature in SIGNATURES.items():
        if data.startswith(signature):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    raise RequestError(415, f"unsupported image format: send one of {', '.join(FORMATS)}")


def check_size(width: int, height: int, limits: Limits) -> None:
    """413 for an image over the pixel or side cap, 422 for one under the minimum side."""
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise RequestError(
            413,
            f"image is {width}x{height}; the limit is {limits.max_pixels} pixels and "
            f"{limits.max_side} per side: resize it first",
        )
    if min(width, height) < limits.min_side:
        raise RequestError(
            422, f"image is {width}x{height}; each side must be >= {limits.min_side}"
        )


def open_header(data: bytes, fmt: str) -> Image.Image:
    """The image with only its header parsed, by the one parser its magic bytes named.

    400 for a header that does not parse. The declared size is not checked here: that is
    :func:`check_size`'s job, with the app's limits.
    """
    try:
        return HEADER_PARSERS[fmt](io.BytesIO(data))
    except Exception as err:  # Pillow's plugins raise many types (OSError, SyntaxError, ...)
        raise RequestError(
            400, f"the file starts like a {fmt} image but its header is damaged or truncated"
        ) from err


def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """Validated image bytes -> uint8 RGB array (H, W, 3); raises :class:`RequestError`.

    Statuses: 400 empty, truncated or corrupt; 413 too many pixels or too long a side (checked
    on the header, before decoding); 415 not PNG, JPEG or WebP; 422 too small, or a JPEG of
    too many scans. Pixels are upright, 8-bit and opaque (see the module docstring).
    """
    if not data:
        raise RequestError(400, "empty request body: send the image bytes as the body")
    fmt = sniff_format(data)
    if fmt == "WEBP" and (declared := transforms.webp_canvas_size(data)):
        check_size(*declared, limits)  # before Pillow's parser refuses it with its own error
    image = open_header(data, fmt)
    check_size(*image.size, limits)
    try:
        transforms.check_jpeg_scans(data)
    except transforms.DecodeError as err:
        # 422, not 413: the body is small and well-formed; what we refuse is its structure, and
        # 413 would tell the client to send fewer bytes. Re-encoding the image fixes it.
        raise RequestError(422, f"{err}: re-encode the image") from err
    try:
        return np.asarray(transforms.load_as(image, "RGB"))
    except Exception as err:  # as in open_header: decoding untrusted bytes fails in many ways
        raise RequestError(
            400, f"the {fmt} image data is truncated or corrupt: send the whole, undamaged file"
        ) from err


def decode_base64_image(text: str, limits: Limits) -> np.ndarray:
    """An image sent as base64 text in a JSON body (a ``data:`` URL prefix is allowed)."""
    payload = text.partition(",")[2] if text.startswith("data:") else text
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        # binascii's messages are plain sentences about the text (padding, a bad character).
        raise RequestError(400, f"image is not valid base64 ({err})") from err
    return decode_image(data, limits)


def fit_long_side(image: np.ndarray, side: int, min_side: int = 1) -> np.ndarray:
    """Downscale a uint8 (H, W, C) image so its longest side is at most ``side`` (never up).

    422 when the short side would shrink below ``min_side`` (pass ``Limits.min_side``): the
    models need some height and width (Deep Dream fails on a 256x1 image).
    """
    height, width = image.shape[:2]
    if max(height, width) <= side:
        return image
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if min(size) < min_side:
        raise RequestError(
            422,
            f"image is {width}x{height}: fit to {side} on its long side, its short side would "
            f"be {min(size)}, under {min_side}; send a less elongated image",
        )
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def check_mask(mask: np.ndarray, content: np.ndarray) -> None:
    """422 unless a mask has the content's size, both as sent (before any resizing)."""
    (h, w), (ch, cw) = mask.shape[:2], content.shape[:2]
    if (h, w) != (ch, cw):
        raise RequestError(
            422, f"mask is {w}x{h} but the content is {cw}x{ch}: send a mask of the content's size"
        )


# --- JSON bodies --------------------------------------------------------------------------------


class Strict(BaseModel):
    """JSON bodies: unknown fields, loose types (``"4"`` for 4) and NaN or infinite numbers
    (Python's JSON parser reads ``NaN`` and ``Infinity``; a field without bounds would take
    them) are 422 errors."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
# The style controls (genart.controls, not imported: it needs torch, the ingress does not).
# strength: blend with the content in pixel space, 0 = the content, 1 = the full result;
# preserve_color: keep the content's colours, stylising only the luminance.
Strength = Annotated[float, Field(ge=0.0, le=1.0)]
PreserveColor = Literal["none", "ycbcr", "yiq"]
OutputFormat = Literal["png", "json"]  # one PNG (a grid) or JSON with one base64 PNG per image


class SampleRequest(Strict):
    """``n`` generated images; image i uses latent seed ``seed + i``."""

    n: int = Field(16, ge=1, le=64)
    seed: Seed = 0
    # Truncation trick (Brock et al. 2019): latent components beyond +-t are redrawn, trading
    # variety for typicality; None = plain N(0, 1) latents. A redrawn component lands within
    # +-t with probability P(|z| <= t), 0.08 at t = 0.1, so a latent of d components needs about
    # ln(d) / -ln(1 - 0.08) rounds: ~60 for d = 100 (64 latents in 0.07 s). The rounds grow as
    # 1/t, without bound as t -> 0: hence the lower bound.
    truncation: float | None = Field(None, ge=0.1, le=4.0)
    format: OutputFormat = "png"


class InterpolateRequest(Strict):
    """A walk through latent space: ``steps`` images from each seed to the next."""

    seeds: list[Seed] = Field(min_length=2, max_length=8)
    steps: int = Field(8, ge=2, le=32)
    mode: Literal["slerp", "linear"] = "slerp"
    format: OutputFormat = "png"


class ArithmeticRequest(Strict):
    """mean(z of seeds a) - mean(z of seeds b) + mean(z of seeds c) (Radford et al. 6.3)."""

    a: list[Seed] = Field(min_length=1, max_length=16)
    b: list[Seed] = Field(min_length=1, max_length=16)
    c: list[Seed] = Field(min_length=1, max_length=16)
    format: OutputFormat = "png"


class GatysSettings(Strict):
    """The Gatys hyper-parameters a client may choose; the server fixes VGG and its layers."""

    size: int = Field(256, ge=32, le=2048)  # long side the content is resized to
    iterations: int = Field(100, ge=1, le=2000)  # loss evaluations per scale
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    content_weight: float = Field(1.0, ge=0.0, le=1e12)
    style_weight: float = Field(1e6, ge=0.0, le=1e12)
    tv_weight: float = Field(0.0, ge=0.0, le=1e9)
    init: Literal["content", "style", "noise"] = "content"
    preserve_color: PreserveColor = "none"
    strength: Strength = 1.0
    scales: int = Field(1, ge=1, le=4)
    style_blend: list[Annotated[float, Field(ge=0.0, le=1e6)]] = Field([], max_length=4)
    seed: Seed = 0


class Regions(Strict):
    """Spatial control (genart.controls): ``mask``, an image of the content's size whose white
    region is stylised and whose black region keeps the content, or takes ``outside_style``."""

    mask: str | None = Field(None, min_length=1)
    outside_style: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _outside_needs_a_mask(self):
        if self.outside_style is not None and self.mask is None:
            raise ValueError("outside_style needs a mask: it styles the mask's black region")
        return self


class GatysRequest(Regions):
    """Content and style images as base64 (PNG, JPEG or WebP) plus settings; a ``mask`` and
    ``outside_style`` too (see :class:`Regions`)."""

    content: str = Field(min_length=1)
    styles: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=4)
    settings: GatysSettings = GatysSettings()

    @model_validator(mode="after")
    def _blend_matches_styles(self) -> GatysRequest:
        blend = self.settings.style_blend
        if blend and len(blend) != len(self.styles):
            raise ValueError(
                f"settings.style_blend has {len(blend)} weights for {len(self.styles)} styles"
            )
        if blend and sum(blend) <= 0:  # the worker normalises the weights by their sum
            raise ValueError("settings.style_blend must have a positive sum")
        return self


class AdaINRequest(Regions):
    """A content image in a style: another image (``style``) or one of the server's named
    styles (``style_name``, see ``GET /models``); images as base64 (PNG, JPEG or WebP); a
    ``mask`` and ``outside_style`` too (see :class:`Regions`)."""

    content: str = Field(min_length=1)
    style: str | None = Field(None, min_length=1)
    style_name: str | None = Field(None, min_length=1, max_length=40)
    # Content-style trade-off in feature space: AdaIN's strength (0 = content only). No
    # separate ``strength``: two fields for one knob would leave clients asking which wins.
    alpha: float = Field(1.0, ge=0.0, le=1.0)
    preserve_color: PreserveColor = "none"
    size: int = Field(512, ge=32, le=4096)  # long side both images are fit to (never up)

    @model_validator(mode="after")
    def _one_style(self) -> AdaINRequest:
        if (self.style is None) == (self.style_name is None):
            raise ValueError("give exactly one of style (an image) and style_name")
        return self


class StyleParams(BaseModel):
    """Fast-style controls, as query parameters (the body is the image); ``nan`` or ``inf``
    are refused as such, as in JSON bodies."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    strength: Strength = 1.0
    preserve_color: PreserveColor = "none"


class DreamParams(BaseModel):
    """Deep Dream settings, as query parameters (the body is the image); ``nan`` or ``inf``
    are refused as such, as in JSON bodies."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: int = Field(256, ge=32, le=2048)  # long side the image is resized to (never up)
    octaves: int = Field(3, ge=1, le=8)
    iterations: int = Field(10, ge=1, le=100)  # gradient steps per octave
    step_size: float = Field(0.012, gt=0.0, le=0.5)
    jitter: int = Field(32, ge=0, le=128)
    smooth: float = Field(0.0, ge=0.0, le=16.0)
    seed: Seed = 0
