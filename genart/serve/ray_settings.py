"""Ray settings for serving genart, applied where genart starts Ray for serving.

``genart serve`` (when it starts its own local Ray), the serve benchmark and the tests use
them; ``cluster.yaml`` writes the system config into its ``ray start``. This module imports
nothing of Ray: the environment has to be in place before Ray starts, because Ray's processes
read Serve's settings from their environment once, when they start.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

from genart.compat import haproxy

# Values up to 1 MiB travel inside the actor call instead of through the object store (Ray's
# default threshold is 100 KiB). A request's image crosses several calls between processes; a
# 256x256 one is ~200 KB, and each trip through the object store instead costs milliseconds
# (docs/serving.md).
RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": 1 << 20}

# Serve's HAProxy data path (Ray >= 2.56; HAProxy comes with ray[serve] on Linux): HTTP enters
# through HAProxy straight to the ingress replicas, and deployments call each other over gRPC on
# the replicas' own event loops. The default path goes through a Python proxy actor and Ray
# actor calls, which cost several milliseconds of proxy CPU per request (docs/benchmarks.md).
# Single-node only here: on several nodes the ingress replicas must bind an address the HAProxy
# of another node can reach (docs/serving.md).
HAPROXY_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
SWITCH = "RAY_SERVE_ENABLE_HA_PROXY"  # set it (to 0) to keep Ray's Python proxy
# A stopping ingress replica keeps its port open this long so that load balancers can take it
# out (Ray's default: 30 s, which every redeploy and shutdown then waits). The only balancer
# here is the HAProxy on the same node, which Serve updates itself.
LOCAL_DRAIN_S = "2"
# Serve gives a new proxy actor three readiness checks of 5 s each, then kills it and starts
# another. On a busy 2-core machine the HAProxy proxy actor alone took 15 s to import Serve and
# spawn HAProxy, so it was killed while starting and `serve.start` failed with ActorDiedError.
# A longer check only delays noticing a proxy that never starts.
READY_CHECK_ENV, READY_CHECK_S = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30"
# HAProxy's stats page and Prometheus exporter listen at fixed ports (8404, 9101; on loopback in
# genart's local Ray, genart.compat.loopback); a second local Ray would fail to start its HAProxy.
PORT_VARIABLES = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")


def use_local_haproxy(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set up the HAProxy data path for a single-node Ray that this process is about to start.

    Does nothing when the user has chosen (``RAY_SERVE_ENABLE_HA_PROXY`` set, to anything);
    otherwise sets every variable it needs that is not already set. Returns whether it is on.
    """
    if SWITCH in environ:
        return environ[SWITCH] == "1"
    for key, value in HAPROXY_ENV.items():
        environ.setdefault(key, value)
    environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", LOCAL_DRAIN_S)
    environ.setdefault(READY_CHECK_ENV, READY_CHECK_S)
    unset = [key for key in PORT_VARIABLES if key not in environ]
    environ.update({key: str(port) for key, port in zip(unset, free_ports(len(unset)))})
    bound_connections(environ)
    return True


# HTTP connections through HAProxy (docs/serving.md, "Connections"). Ray's defaults suit a
# cluster's front door: an hour of client inactivity and 4,096 connections, with no bound on
# how long request headers may take. A local server needs neither: 10 s without a byte from a
# client that owes one (a request head, the rest of a body, reading the answer) ends its
# connection; waiting for a slow answer is not inactivity. 512 connections hold over a hundred
# clients with a few connections each, and take ~32 MiB of buffers at most.
CONNECTION_ENV = {"RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": "10", "RAY_SERVE_HAPROXY_MAXCONN": "512"}


def bound_connections(environ: MutableMapping[str, str]) -> None:
    """Bound slow clients at HAProxy: :data:`CONNECTION_ENV` (values already set are kept) and
    :mod:`genart.compat.haproxy` (a header timeout, ``Connection: close`` on 408 and 413, no
    ``100 Continue`` before the app reads a body)."""
    for key, value in CONNECTION_ENV.items():
        environ.setdefault(key, value)
    haproxy.install(environ)


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on loopback now (all held open while chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
