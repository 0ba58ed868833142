"""What a genart Serve application serves and accepts: its ``args`` (serve_config.yaml).

Torch-free and Ray-free: the ingress, the model deployments, the builder and ``genart serve``
all validate the same settings with these models.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genart.serve import validation as v

TOKEN_ENV = "GENART_API_TOKEN"
# Which runs the image networks (genart.onnx_export.choose_backend): auto = onnxruntime on CPU
# where the export has checked ONNX graphs, torch on a GPU or without graphs.
Backend = Literal["auto", "torch", "onnxruntime"]
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")  # style and translator names (URL segments)


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

    max_jobs: int = Field(32, ge=1, le=10_000)  # queued + running + finished jobs kept
    # Where the job store keeps each job's state and result (local folder or s3://), so that a
    # restarted store replica still knows them; None: in its memory only, lost on a restart.
    # One folder per application: a store loads every job it finds there.
    jobs_dir: str | None = None
    sync_max_side: int = Field(128, ge=32, le=1024)  # /gatys/stylize: tiny images only
    sync_max_evaluations: int = Field(100, ge=1, le=10_000)  # iterations x scales


class AdaINServerSettings(BaseModel):
    """The AdaIN deployment: one exported decoder, any uploaded style, and named styles."""

    model_config = ConfigDict(extra="forbid")

    model: str  # adain export (folder, checkpoint or run; local or s3://)
    vgg_weights: str | None = None  # encoder weights; None: the ones the model trained with
    styles: dict[str, str] = {}  # style name -> style image (local or s3://), read at start
    max_side: int = Field(512, ge=32, le=4096)  # long side content and style are fit to
    backend: Backend = "auto"  # of the decoder; GET /models says which runs

    @field_validator("styles")
    @classmethod
    def _url_safe_names(cls, styles: dict[str, str]) -> dict[str, str]:
        bad = [name for name in styles if not NAME.match(name)]
        if bad:
            raise ValueError(f"style names {bad} must match {NAME.pattern}")
        return styles


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
    adain: AdaINServerSettings | None = None
    backend: Backend = "auto"  # of the styles and translators; GET /models says which runs
    limits: v.Limits = v.Limits()

    @field_validator("styles", "translators")
    @classmethod
    def _url_safe_names(cls, models: dict[str, str]) -> dict[str, str]:
        bad = [name for name in models if not NAME.match(name)]
        if bad:
            raise ValueError(f"names {bad} must match {NAME.pattern} (they are URL segments)")
        return models
