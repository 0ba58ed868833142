"""Keep every Ray that genart starts, and every Train run in it, to its own cluster.

Targets Ray 2.60 (see :mod:`genart.compat`). On a machine that runs several Rays (two ``genart
train``, a ``genart serve``, someone's tests), parts of Ray that no argument reaches look for
"the" cluster by themselves, and find another one:

* Ray Train's placement group cleaner, a detached actor that every run starts
  (``ray/train/v2/api/data_parallel_trainer.py`` adds
  ``ray/train/v2/_internal/callbacks/placement_group_callback.py``, which launches
  ``ray/train/v2/_internal/execution/controller/placement_group_cleaner.py``), asks every
  second whether the run's controller is alive through ``is_actor_alive``
  (``ray/train/v2/_internal/state/util.py``): the State API's ``get_actor`` without an address.
  Its client resolves one itself (``ray/util/state/api.py`` ``StateApiClient``;
  ``ray/dashboard/utils.py`` ``get_address_for_submission_client``; ``ray/_private/services.py``
  ``canonicalize_bootstrap_address_or_die``): RAY_ADDRESS, else the cluster ``ray start``
  recorded, else the only GCS process running on the machine, and then that cluster's
  dashboard. Without a dashboard (genart's local Rays) it warns every second. Beside another
  Ray it asks *that* cluster, which has never heard of the controller, takes it for dead and
  removes the placement group of the live run, whose workers then die. Beside two it raises
  ``ConnectionError: Found multiple active Ray instances`` and watches nothing.
  :func:`use_own_cluster_cleaner` has it ask the GCS its own process is connected to.
* ``ray.init(address="auto")`` joins any GCS process it finds on the machine, the private
  in-process Ray of another genart command included. :func:`recorded_cluster` is the one
  cluster meant to be joined that way: the one ``ray start`` recorded
  (``ray/_private/utils.py`` ``read_ray_address``), if its GCS still runs
  (``ray/_private/services.py`` ``find_gcs_addresses``).
* :func:`private_temp_dir` keeps genart's private Rays out of Ray's default temp dir
  (``ray/_common/utils.py`` ``get_default_ray_temp_dir``), whose ``session_latest`` tools and
  people read as the machine's cluster.
* :func:`enable_token_auth`: a new local Ray whose authentication mode is unset turns token
  authentication on and warns that it did (``ray/_private/authentication/
  authentication_token_setup.py``: ``enable_token_auth_by_default``), in words people took for
  a request to set GENART_API_TOKEN. Choosing the mode before Ray does keeps the
  authentication and drops the notice; Ray's own ``_enable_token_auth`` does that, for this
  process read the mode when it imported Ray.
"""

from __future__ import annotations

import os

import ray._private.state
from ray._common.utils import get_default_ray_temp_dir
from ray._private.authentication.authentication_token_setup import (
    AUTH_MODE_ENV_VAR,
    _enable_token_auth,
)
from ray._private.services import find_gcs_addresses
from ray._private.utils import read_ray_address
from ray.train.v2._internal.callbacks import placement_group_callback
from ray.train.v2._internal.execution.controller import placement_group_cleaner
from ray.train.v2.api import data_parallel_trainer
from ray.util.state.exception import RayStateApiException

# Ray puts Unix sockets at <temp dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store:
# 64 characters after the temp dir, and a socket path must fit in 104 bytes on macOS (108 on
# Linux), NUL included.
SOCKET_PATH_MAX = 103
SESSION_SOCKET_SUFFIX = 64
PRIVATE_DIR_NAME = "genart-ray"


def controller_alive(actor_id: str, timeout: float) -> bool:
    """``is_actor_alive`` asked of this process's own cluster: its GCS, no dashboard needed.

    ``timeout`` is the State API's, kept for the signature; GCS calls have their own. An actor
    the GCS does not know counts as dead, as the State API's answer None does.
    """
    try:
        info = ray._private.state.state.actor_table(actor_id)
    except Exception as err:  # the cleaner retries on this error and gives up on any other
        raise RayStateApiException(f"GCS query failed: {err}") from err
    return bool(info) and info["State"] != "DEAD"


class OwnClusterCleaner(placement_group_cleaner.PlacementGroupCleaner):
    """Ray's cleaner, with :func:`controller_alive` as its liveness check."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The monitor loop calls the module's function; this process hosts this actor only.
        placement_group_cleaner.is_actor_alive = controller_alive


class OwnClusterCleanerCallback(placement_group_callback.PlacementGroupCleanerCallback):
    """Ray's callback (it runs on the Train controller), launching :class:`OwnClusterCleaner`."""

    def after_controller_start(self, train_run_context):
        # The callback creates the module's class; this process hosts the controller only.
        placement_group_callback.PlacementGroupCleaner = OwnClusterCleaner
        super().after_controller_start(train_run_context)


def use_own_cluster_cleaner() -> None:
    """Have every Ray Train run this process starts watch its controller through its own GCS
    (call it before ``trainer.fit()``; again changes nothing)."""
    data_parallel_trainer.PlacementGroupCleanerCallback = OwnClusterCleanerCallback


def recorded_cluster() -> str | None:
    """The GCS address of the cluster ``ray start`` recorded on this machine, if it still runs.

    ``ray stop`` erases the record, but a cluster that died without it leaves one behind, and
    ``ray.init`` would wait minutes on that address before it gave up.
    """
    address = read_ray_address()
    return address if address and address in find_gcs_addresses() else None


def private_temp_dir() -> str | None:
    """The temp dir of genart's private local Rays: ``genart-ray`` beside Ray's default one.

    None (Ray's default) where that path is too long for the Unix sockets Ray puts under it.
    """
    path = os.path.join(os.path.dirname(get_default_ray_temp_dir()), PRIVATE_DIR_NAME)
    return path if len(path) + SESSION_SOCKET_SUFFIX <= SOCKET_PATH_MAX else None


def enable_token_auth() -> None:
    """Before starting a local Ray: token authentication on, as Ray would turn it on, without
    Ray's notice; a mode the user chose (``RAY_AUTH_MODE``) stands."""
    if AUTH_MODE_ENV_VAR not in os.environ:
        _enable_token_auth()
