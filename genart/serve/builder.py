"""Building the genart Serve application: the ingress and the deployments of what is
configured (``import_path: genart.serve.builder:build_app`` in serve_config.yaml)."""

from __future__ import annotations

import os

from ray import serve

from genart.serve.app import Ingress
from genart.serve.deployments import AdaIN, Dreamer, GatysWorker, ImageModels, LatentModels
from genart.serve.jobs import JobStore
from genart.serve.settings import TOKEN_ENV, AppSettings


def build(
    settings: AppSettings | dict,
    options: dict[str, dict] | None = None,
    api_token: str | None = None,
) -> serve.Application:
    """The application for ``settings``: an ingress and the deployments of what they configure.

    ``options`` maps deployment names to ``Deployment.options`` overrides (what the
    ``deployments:`` list of a Serve config file does for ``serve run``/``serve deploy``).
    ``api_token`` turns on bearer-token auth for every endpoint but the playground, /healthz
    and the API's description and docs pages (``genart.serve.app._service_routes``).
    """
    s = AppSettings.model_validate(settings) if isinstance(settings, dict) else settings
    options = dict(options or {})

    def bind(deployment, *args, **kwargs):
        return deployment.options(**options.pop(deployment.name, {})).bind(*args, **kwargs)

    jobs = bind(JobStore, s.gatys.max_jobs, s.gatys.jobs_dir) if s.gatys else None
    catalogue = s.catalogue.model_dump() if s.catalogue else None
    backends = {
        "latent": bind(LatentModels, catalogue, s.backend) if catalogue else None,
        "image": bind(ImageModels, catalogue, s.backend) if catalogue else None,
        "gatys": bind(GatysWorker, s.gatys.model_dump(), jobs) if s.gatys else None,
        "jobs": jobs,
        "dream": bind(Dreamer, s.dream.model_dump()) if s.dream else None,
        "adain": bind(AdaIN, catalogue, s.adain.model_dump()) if s.adain else None,
    }
    app = bind(Ingress, s.model_dump(), api_token, **backends)
    if options:
        raise ValueError(f"options for unknown or unconfigured deployments: {sorted(options)}")
    return app


def build_app(args: dict) -> serve.Application:
    """The Serve config entry point (``import_path: genart.serve.builder:build_app``).

    ``args`` are :class:`AppSettings`. Auth is on when ``GENART_API_TOKEN`` is set where the
    application is built: the environment that started Ray (``ray start``, ``serve run``,
    ``genart serve``). The token stays out of config files.
    """
    return build(args, api_token=os.environ.get(TOKEN_ENV) or None)
