"""Keep a private local Ray, and everything it starts, listening on loopback only.

Targets Ray 2.60 and the torch it runs (see :mod:`genart.compat`). genart's HTTP app binds
127.0.0.1, but a local Ray on Linux listens on every interface, or on the machine's routable
address, and so would be reachable from the network it is on:

* Ray's own servers (GCS, raylet, object manager, each worker's gRPC server, the dashboard and
  runtime-env agents, the metrics exporters) bind loopback only when the node's address is
  loopback. Ray chooses that address on macOS and Windows only (``ray/_private/services.py``
  ``get_node_ip_address``: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``), and
  ``ray.init(_node_ip_address="127.0.0.1")`` cannot ask for it: ``resolve_ip_for_localhost``
  turns it back into the routable address. :func:`start_on_loopback` has Ray choose as it does
  on macOS.
* Three more servers open inside Ray's worker processes, on wildcard addresses written into
  Ray's code. Ray imports :mod:`genart.compat.loopback_worker` into each worker (its
  ``preload_python_modules`` system config), which patches each module as a worker imports it
  (:func:`patch_on_import`; importing them all up front would cost every worker seconds):

  - Serve's replicas serve the calls deployments make to each other on a gRPC server bound to
    ``[::]:0`` (``ray/serve/_private/replica.py`` ``_on_initialized``):
    :func:`replica_grpc_on_node_address`.
  - Serve's HAProxy: its stats page and Prometheus exporter, plain HTTP without a token, bind
    every interface (``ray/serve/_private/haproxy_templates.py``: ``bind *:`` and ``bind :``):
    :func:`haproxy_admin_on_node_address`.
  - Ray Train's torch process group: rank 0 hosts torch's TCPStore, which has no
    authentication and listens on every interface whatever MASTER_ADDR says (c10d's server
    binds ``::``). Ray Train picks its address and port on rank 0 first
    (``ray/train/torch/config.py`` calls ``get_address_and_port``):
    :func:`address_and_port_with_store` starts the store there on a socket bound to the node's
    address, and the store torch's rendezvous then makes reuses it (``multi_tenant``:
    ``torch/distributed/rendezvous.py`` ``_create_c10d_store``). Gloo listens on the address
    the host name resolves to unless ``GLOO_SOCKET_IFNAME`` names an interface, and NCCL's
    bootstrap (GPU runs) on a network interface unless ``NCCL_SOCKET_IFNAME`` does:
    :func:`start_on_loopback` names the loopback one to both.

Clusters (``ray start``, ``cluster.yaml``, ``RAY_ADDRESS``) are left as Ray's docs set them up.
"""

from __future__ import annotations

import importlib.abc
import os
import socket
import sys
from collections.abc import Callable, MutableMapping

WORKER_MODULE = "genart.compat.loopback_worker"
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's; "0": the node address is loopback
INTERFACE_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")  # torch's and NCCL's
LOOPBACK_INTERFACES = ("lo", "lo0")  # Linux, macOS and the BSDs
# Ray's HAProxy template: the binds of its stats page and Prometheus exporter, every interface.
HAPROXY_ADMIN_BINDS = {
    "bind *:{{ config.stats_port }}": "bind {address}:{{{{ config.stats_port }}}}",
    "bind :{{ config.metrics_port }}": "bind {address}:{{{{ config.metrics_port }}}}",
}
REPLICA_WILDCARD = "[::]:"  # the host Serve's replicas give their gRPC server
STORE_BACKLOG = 128
_held_store: list = []  # the store address_and_port_with_store started last, kept open


def start_on_loopback(
    system_config: dict | None = None, environ: MutableMapping[str, str] = os.environ
) -> dict:
    """Before starting a private local Ray: have it, and all it starts, listen on loopback only.

    Returns ``system_config`` (``ray.init``'s ``_system_config``) with the preload of
    :data:`WORKER_MODULE` added. An interface the user named (:data:`INTERFACE_VARIABLES`)
    stands.
    """
    from ray._private import ray_constants

    environ[CLUSTER_SWITCH] = "0"  # for Ray's processes: they read it when they start
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process read it when it imported Ray
    interface = loopback_interface()
    for variable in INTERFACE_VARIABLES if interface else ():
        environ.setdefault(variable, interface)
    return {**(system_config or {}), "preload_python_modules": [WORKER_MODULE]}


def loopback_interface() -> str | None:
    """The name of this machine's loopback network interface, if it has one of the usual names."""
    names = {name for _, name in socket.if_nameindex()}
    return next((name for name in LOOPBACK_INTERFACES if name in names), None)


def node_address() -> str:
    """The address of the Ray node this process runs on (loopback in a private local Ray)."""
    import ray

    return ray.util.get_node_ip_address()


def haproxy_admin_on_node_address(module) -> None:
    """Bind the stats page and Prometheus exporter of the HAProxy config template that Serve's
    HAProxy manager renders (``module``: ``ray.serve._private.haproxy``) to the node's address."""
    template = module.HAPROXY_CONFIG_TEMPLATE
    for wildcard, bound in HAPROXY_ADMIN_BINDS.items():
        if wildcard not in template:
            raise RuntimeError(f"Ray's HAProxy template has no '{wildcard}': re-check {__name__}")
        template = template.replace(wildcard, bound.format(address=node_address()))
    module.HAPROXY_CONFIG_TEMPLATE = template


def replica_grpc_on_node_address(module) -> None:
    """Have Serve's replicas (``module``: ``ray.serve._private.replica``) bind their gRPC server
    to the node's address, where the deployments that call them connect, not every interface."""
    add_port = module.add_port_to_grpc_server

    def add_port_on_node_address(server, address: str) -> int:
        if address.startswith(REPLICA_WILDCARD):
            address = f"{node_address()}:{address.removeprefix(REPLICA_WILDCARD)}"
        return add_port(server, address)

    module.add_port_to_grpc_server = add_port_on_node_address


def torch_store_on_node_address(module) -> None:
    """Have Ray Train's torch backend (``module``: ``ray.train.torch.config``) take rank 0's
    address and port from :func:`address_and_port_with_store`."""
    module.get_address_and_port = address_and_port_with_store


def address_and_port_with_store() -> tuple[str, int]:
    """Ray Train's ``get_address_and_port`` for a torch process group, run on rank 0: the node's
    address and a port where a torch TCPStore server already listens, bound to that address.

    The store rank 0 makes next for that port (``multi_tenant``) shares this server, which
    stays open until this process starts another.
    """
    import torch.distributed as dist

    address = node_address()
    listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    listener.bind((address, 0))
    listener.listen(STORE_BACKLOG)
    port = listener.getsockname()[1]
    _held_store[:] = [
        dist.TCPStore(
            address,
            port,
            is_master=True,
            wait_for_workers=False,
            multi_tenant=True,
            master_listen_fd=listener.detach(),
        )
    ]
    return address, port


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs ``patches[name](module)`` right after this process imports module ``name``."""

    def __init__(self, patches: dict[str, Callable]):
        self.patches = patches

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.patches:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    return patched(spec, self.patches[fullname])
        return None


def patched(spec, patch: Callable):
    """``spec`` with its loader running ``patch(module)`` after the module's own code."""
    run = spec.loader.exec_module

    def exec_module(module):
        run(module)
        patch(module)

    # The patched modules are source files, with a loader of their own for each import.
    spec.loader.exec_module = exec_module
    return spec


def patch_on_import(patches: dict[str, Callable]) -> None:
    """Patch each module named in ``patches`` now if this process has imported it, else as soon
    as it does."""
    for name, patch in patches.items():
        if name in sys.modules:
            patch(sys.modules[name])
    pending = {name: patch for name, patch in patches.items() if name not in sys.modules}
    if pending:
        sys.meta_path.insert(0, PatchOnImport(pending))


WORKER_PATCHES = {
    "ray.serve._private.haproxy": haproxy_admin_on_node_address,
    "ray.serve._private.replica": replica_grpc_on_node_address,
    "ray.train.torch.config": torch_store_on_node_address,
}
