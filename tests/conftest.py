"""Shared test set-up: quiet, single-threaded torch, and one local Ray for the Ray tests."""

import os

from genart.serve.ray_settings import use_local_haproxy

# Before anything imports ray: Ray reads these once, when it starts.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# Worker groups start in ~4 s on an idle 2-core machine; under heavy load they have taken over
# 60 s, the default limit, and failed the run.
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
# Short connection timeouts at Serve's HAProxy, so that the tests of slow clients wait seconds.
os.environ.setdefault("GENART_HAPROXY_HEADER_TIMEOUT_S", "2")
os.environ.setdefault("RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S", "5")
# Tests never reach the internet: VGG weights that are not cached fail at once, not download
# (the download tests serve theirs on 127.0.0.1 and lift this).
os.environ.setdefault("GENART_OFFLINE", "1")
# Serve on the data path genart serve ships for a local Ray (HAProxy, direct ingress, gRPC).
use_local_haproxy()

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance shared by every Ray test (start-up costs ~7 s, so start it once).

    4 logical CPUs on a 2-core machine: Ray Data needs CPUs beside the Train workers, or a lazy
    dataset fed to a trainer whose workers take every CPU hangs.
    """
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # never join another cluster recorded in /tmp/ray
            num_cpus=4,
            include_dashboard=False,
            object_store_memory=500 * 1024**2,
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()
