"""Serving genart's models over HTTP with Ray Serve.

- ``settings``: what an application serves and accepts (its ``args``). No torch, no Ray.
- ``app``: the FastAPI ingress: validation, auth, routing. No torch.
- ``http``: refusals as JSON reasons, the request-body guard, bearer auth. No torch.
- ``jobs``: the Gatys job store (one replica).
- ``deployments``: one deployment per kind of inference; the trained families' load any
  export of the application's catalogue on first request (an LRU cache per replica).
- ``builder``: the application for a set of settings (``genart.serve.builder:build_app``, the
  ``import_path`` of serve_config.yaml).
- ``validation``: what a request may carry: image formats, byte and pixel caps, JSON bodies.
- ``demo``: tiny untrained exports of every family, so a fresh checkout can serve something.
- ``playground.html``: the self-contained page served at ``/``.

Importing this package imports neither torch nor Ray; the modules do.
"""
