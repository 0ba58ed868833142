"""Workarounds for the Ray version genart targets (Ray 2.60), one module each.

Each module names the Ray source it depends on and why the public API does not do: re-read
those sources (and drop what a newer Ray fixes) whenever Ray is upgraded. A unit test fails
while the installed Ray's major.minor differs from :data:`RAY_TARGET`.

* :mod:`genart.compat.relay`: relays a Ray Train run's reports and checkpoints to the Tune
  trial that started it (a Train ``UserCallback``).
* :mod:`genart.compat.janitor`: frees the placement groups of Train runs whose Tune trial was
  killed (a Train ``WorkerGroupCallback`` from ``ray.train.v2._internal``).
* :mod:`genart.compat.isolation`: keeps local Rays on one machine apart: Train's placement-group
  cleaner asks its own cluster's GCS (not whichever cluster the State API finds), genart
  joins only ``RAY_ADDRESS`` or a live ``ray start`` cluster, private Rays use their own temp
  dir, and token auth is set up without Ray's notice.
* :mod:`genart.compat.haproxy`: adds what Serve's HAProxy config has no setting for (a request
  header timeout, ``Connection: close`` on 408 and 413, no ``100 Continue`` before the app
  reads a body) through the HAProxy binary Serve starts.
* :mod:`genart.compat.notices`: Ray's notice that a worker died becomes genart's one line naming
  the actor (a Serve replica: its deployment), Ray's coloured text only with ``--verbose``.
* :mod:`genart.compat.loopback` (with :mod:`genart.compat.loopback_worker`, which Ray imports into
  each worker): a private local Ray listens on loopback only, what its workers open included
  (Serve's replica gRPC, HAProxy's stats and exporter, Ray Train's torch store).
"""

RAY_TARGET = "2.60"  # major.minor of the Ray whose sources these modules were checked against
