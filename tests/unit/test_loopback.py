"""genart.compat.loopback: a private local Ray, and what its workers open, listen on loopback.

The whole of it, in running processes, is checked by tests/ray/test_isolation.py; these check
each piece on its own, against the installed Ray and torch.
"""

import re
import sys
from types import SimpleNamespace

import pytest

from genart.compat import loopback

LOOPBACK = "127.0.0.1"


@pytest.fixture
def on_loopback(monkeypatch):
    """``node_address`` as in a private local Ray's workers; Ray's node-address switch put back
    afterwards."""
    from ray._private import ray_constants

    monkeypatch.setattr(loopback, "node_address", lambda: LOOPBACK)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)


def listening(port: int | None = None) -> set[tuple[str, int]]:
    """(address, port) of this process's listening TCP sockets (on ``port`` only, if given)."""
    import psutil

    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("inet")
            if c.status == psutil.CONN_LISTEN and port in (None, c.laddr.port)}  # fmt: skip


def test_a_private_ray_takes_loopback_for_its_node_address(on_loopback, monkeypatch):
    from ray._private import services, worker

    monkeypatch.setattr(worker, "_global_node", None)  # as before ray.init starts a node

    environ = {}
    system_config = loopback.start_on_loopback({"max_direct_call_object_size": 1}, environ)
    assert system_config == {"max_direct_call_object_size": 1,
                             "preload_python_modules": [loopback.WORKER_MODULE]}  # fmt: skip
    assert environ[loopback.CLUSTER_SWITCH] == "0"  # Ray's processes read it when they start
    # What ray.init asks when it starts a node: the address its servers then bind.
    assert services.get_node_ip_address() == LOOPBACK
    interface = loopback.loopback_interface()
    assert interface and all(environ[name] == interface for name in loopback.INTERFACE_VARIABLES)


def test_a_chosen_interface_stands(on_loopback):
    environ = {"GLOO_SOCKET_IFNAME": "eth1"}
    loopback.start_on_loopback(environ=environ)
    assert environ["GLOO_SOCKET_IFNAME"] == "eth1"
    assert environ["NCCL_SOCKET_IFNAME"] == loopback.loopback_interface()


def test_haproxy_stats_and_exporter_bind_the_node_address(on_loopback):
    from ray.serve._private import haproxy_templates

    original = haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    module = SimpleNamespace(HAPROXY_CONFIG_TEMPLATE=original)
    loopback.haproxy_admin_on_node_address(module)

    def binds(template: str) -> set[str]:
        return set(re.findall(r"^\s*bind (.*?)(?: proto h2)?$", template, flags=re.MULTILINE))

    assert binds(original) - binds(module.HAPROXY_CONFIG_TEMPLATE) == {
        "*:{{ config.stats_port }}", ":{{ config.metrics_port }}"}  # fmt: skip
    # What is left follows Serve's HTTP host (127.0.0.1 unless the user chose otherwise).
    assert binds(module.HAPROXY_CONFIG_TEMPLATE) == {
        "{{ config.frontend_host }}:{{ config.frontend_port }}",
        "{{ config.grpc_frontend_host }}:{{ config.grpc_frontend_port }}",
        "127.0.0.1:{{ config.stats_port }}", "127.0.0.1:{{ config.metrics_port }}"}  # fmt: skip


def test_a_changed_haproxy_template_is_an_error_not_an_open_port(on_loopback):
    module = SimpleNamespace(HAPROXY_CONFIG_TEMPLATE="listen stats\n  bind 0.0.0.0:8404\n")
    with pytest.raises(RuntimeError, match="HAProxy template"):
        loopback.haproxy_admin_on_node_address(module)


def test_serve_replicas_bind_their_grpc_server_to_the_node_address(on_loopback):
    added = []
    module = SimpleNamespace(add_port_to_grpc_server=lambda server, address: added.append(address))
    loopback.replica_grpc_on_node_address(module)
    module.add_port_to_grpc_server("server", "[::]:0")  # as replica.py calls it
    module.add_port_to_grpc_server("server", "10.0.0.1:9000")  # an address chosen: it stands
    assert added == ["127.0.0.1:0", "10.0.0.1:9000"]


def test_the_torch_process_group_listens_on_the_node_address_only(on_loopback, monkeypatch):
    """Ray Train's steps on rank 0: address and port, then ``init_process_group`` with env://
    (``ray/train/torch/config.py``); torch's own store would listen on every interface."""
    import torch.distributed as dist

    monkeypatch.setattr(loopback, "_held_store", [])
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", loopback.loopback_interface())
    before = listening()
    address, port = loopback.address_and_port_with_store()
    assert (address, listening(port)) == (LOOPBACK, {(LOOPBACK, port)})
    monkeypatch.setenv("MASTER_ADDR", address)
    monkeypatch.setenv("MASTER_PORT", str(port))
    dist.init_process_group("gloo", init_method="env://", rank=0, world_size=1)
    try:
        opened = listening() - before
        assert opened and all(ip == LOOPBACK for ip, _ in opened), opened
        assert len(listening(port)) == 1  # the group's store is the one started first
    finally:
        dist.destroy_process_group()


def test_the_worker_patches_fit_the_installed_ray(on_loopback, monkeypatch):
    """Each module the worker patches has what the patch replaces; patched now if imported."""
    import importlib

    replaced = {"ray.serve._private.haproxy": "HAPROXY_CONFIG_TEMPLATE",
                "ray.serve._private.replica": "add_port_to_grpc_server",
                "ray.train.torch.config": "get_address_and_port"}  # fmt: skip
    assert set(replaced) == set(loopback.WORKER_PATCHES)
    haproxy, replica, config = (importlib.import_module(name) for name in replaced)
    for module, attribute in zip((haproxy, replica, config), replaced.values()):
        monkeypatch.setattr(module, attribute, getattr(module, attribute))  # put back afterwards
    loopback.patch_on_import(loopback.WORKER_PATCHES)
    assert "bind 127.0.0.1:{{ config.stats_port }}" in haproxy.HAPROXY_CONFIG_TEMPLATE
    assert replica.add_port_to_grpc_server.__name__ == "add_port_on_node_address"
    assert config.get_address_and_port is loopback.address_and_port_with_store


def test_a_module_is_patched_when_it_is_first_imported(monkeypatch, tmp_path):
    (tmp_path / "late_module.py").write_text("value = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the finder goes afterwards
    monkeypatch.delitem(sys.modules, "late_module", raising=False)
    loopback.patch_on_import({"late_module": lambda module: setattr(module, "value", 2)})
    import late_module

    assert late_module.value == 2
    monkeypatch.delitem(sys.modules, "late_module")
