"""Inference, one pipeline per family: what the CLI, Serve, Tune and the jobs call.

========================  =========================  ==========================================
pipeline                  built with                 call
========================  =========================  ==========================================
``LatentPipeline``        ``from_export(uri)``       ``pipe(latents)``; seeds, walks, sums
``FastStylePipeline``     ``from_export(uri)``       ``pipe(images)``
``AdaINPipeline``         ``from_export(uri)``       ``pipe(content, styles, alpha, weights)``
``TranslationPipeline``   ``from_export(uri)``       ``pipe(images, direction=None)``
``GatysPipeline``         ``from_config(params)``    ``pipe(content, styles, progress)``
``DreamPipeline``         ``from_config(params)``    ``pipe(image, progress)``
========================  =========================  ==========================================

Images go in and come out in one form: uint8 numpy arrays ``(H, W, C)``, one per image, each at
its own size (read them with :func:`genart.images.read`; write them with
:func:`genart.images.encode_png`). :mod:`genart.pipelines.runner` runs any pipeline over a
folder or ``s3://`` prefix as a Ray Data job. Each family's spec names its pipeline
(``genart.registry``), so :func:`load` builds the right one for any export.
"""

from __future__ import annotations

import torch

from genart import registry
from genart.errors import ConfigError, InputError
from genart.pipelines.base import ExportedPipeline, load_nets


def load(
    uri: str, device: str | torch.device = "auto", families: tuple[str, ...] = (), **options
) -> ExportedPipeline:
    """The pipeline of whichever trained family the export at ``uri`` holds.

    ``families``: the ones the caller takes; an export of another is an InputError naming it
    (before ``options`` meant for one pipeline reach another).
    """
    loaded = load_nets(uri, device)
    family = loaded.cfg.model
    if families and family not in families:
        raise InputError(f"{uri} holds a '{family}' model; this takes {', '.join(families)}")
    return registry.trained(family).pipeline_class().of(loaded, **options)


def optimisation(family: str, params=None, vgg_weights: str = "auto", device="auto"):
    """The pipeline of an optimisation family (``gatys``, ``dream``) with ``params``."""
    spec = registry.get(family)
    if spec.trained:
        raise ConfigError(f"'{family}' is a trained family: load an export of it")
    return spec.pipeline_class().from_config(params, vgg_weights, device)
