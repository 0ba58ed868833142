"""Imported by Ray into every worker process of a private local Ray that genart started
(``preload_python_modules``, set by :func:`genart.compat.loopback.start_on_loopback`): binds
what Ray's workers would open on every interface to the node's address, loopback there, as
each worker imports the Ray module concerned. Targets Ray 2.60."""

from genart.compat import loopback

loopback.patch_on_import(loopback.WORKER_PATCHES)
