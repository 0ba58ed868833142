"""Serving genart's models over HTTP with Ray Serve.

- ``app``: the settings, the FastAPI ingress, the Gatys job store and the app builder
  (``genart.serve.app:build_app``, the ``import_path`` of serve_config.yaml). No torch.
- ``deployments``: one deployment per model family (DCGAN, fast style, Pix2Pix/CycleGAN,
  Gatys, Deep Dream), loading exported generators with their saved configs.
- ``validation``: what a request may carry: image formats, byte and pixel caps, JSON bodies.
- ``demo``: tiny untrained exports of every family, so a fresh checkout can serve something.
- ``playground.html``: the self-contained page served at ``/``.

Importing this package imports neither torch nor Ray; the modules do.
"""
