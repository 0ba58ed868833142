"""What a genart Serve application serves and accepts: its ``args`` (serve_config.yaml).

Torch-free and Ray-free: the ingress, the model deployments, the builder and ``genart serve``
all validate the same settings with these models.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genart import names
from genart.serve import validation as v

TOKEN_ENV = "GENART_API_TOKEN"
# Which runs the image networks (genart.onnx_export.choose_backend): auto = onnxruntime on CPU
# where the export has checked ONNX graphs, torch on a GPU or without graphs.
Backend = Literal["auto", "torch", "onnxruntime"]
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")  # names of AdaIN's styles (URL segments)


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
    """The AdaIN deployment: the catalogue's AdaIN decoders, any uploaded style, and named
    styles."""

    model_config = ConfigDict(extra="forbid")

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


class CatalogueSettings(BaseModel):
    """The catalogue the model deployments serve (``genart.catalogue``): any export in it
    answers at its family's routes, loaded on a replica's first request for it and kept in an
    LRU cache per replica (docs/serving.md, "Sizing the model cache")."""

    model_config = ConfigDict(extra="forbid")

    uri: str  # a folder or s3:// prefix of exports, one sub-folder per model name
    # Loaded when each replica starts and never evicted (in addition to the LRU cache).
    pinned: list[str] = []
    # What each replica may spend on cached models: the cache holds this divided by the size of
    # the largest export of its kind in the catalogue when the replica starts (at least one).
    replica_memory_mb: int = Field(1024, ge=16, le=1 << 20)
    models_per_replica: int | None = Field(None, ge=1, le=10_000)  # a count instead of a budget
    # The DCGAN export that the unnamed routes /dcgan/sample|interpolate|arithmetic serve.
    dcgan: str | None = None
    adain: str | None = None  # the AdaIN export that the unnamed route /adain/stylize serves

    @field_validator("pinned")
    @classmethod
    def _model_names(cls, pinned: list[str]) -> list[str]:
        bad = [name for name in pinned if not names.NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"{bad} are not model names (they match {names.NAME.pattern})")
        return pinned


def cache_size(settings: CatalogueSettings, largest_bytes: int | None) -> int:
    """How many models a replica's LRU cache holds: ``models_per_replica`` if set, else the
    memory budget over what the largest export costs loaded (its size, :data:`DEFAULT_MODEL_MB`
    when none is known, plus :data:`MODEL_OVERHEAD_MB`), at least one. Pinned models are held
    outside the cache, in addition to it."""
    if settings.models_per_replica is not None:
        return settings.models_per_replica
    model_mb = largest_bytes / 2**20 if largest_bytes else DEFAULT_MODEL_MB
    return max(1, int(settings.replica_memory_mb // (model_mb + MODEL_OVERHEAD_MB)))


# Sizing without a known export: a 128 px Pix2Pix U-Net's export (its weights and ONNX graph,
# ~320 MB), the largest served family. A loaded model holds its export's weights (the torch
# networks and the onnxruntime session's copy, which the export's .pt and .onnx files measure)
# plus a fixed cost of a few MB: the session's arenas and the modules themselves
# (docs/serving.md, "Sizing the model cache"; in the serve_catalogue benchmark tiny models
# cost ~3.5 MB each).
DEFAULT_MODEL_MB, MODEL_OVERHEAD_MB = 320, 3


class AppSettings(BaseModel):
    """What one genart application serves: a catalogue of exports, the optimisations, AdaIN,
    and request limits.

    A part left out is not deployed; its endpoints answer 404.
    """

    model_config = ConfigDict(extra="forbid")

    catalogue: CatalogueSettings | None = None  # the exports of every trained family
    gatys: GatysServerSettings | None = None
    dream: OptimisationSettings | None = None
    adain: AdaINServerSettings | None = None  # needs the catalogue: its AdaIN exports
    backend: Backend = "auto"  # of the image models; GET /models says which runs
    limits: v.Limits = v.Limits()

    @model_validator(mode="after")
    def _adain_needs_a_catalogue(self) -> AppSettings:
        if self.adain is not None and self.catalogue is None:
            raise ValueError("adain serves the catalogue's AdaIN exports: configure a catalogue")
        return self
