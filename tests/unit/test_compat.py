"""genart/compat targets one Ray version: a different one means re-checking its workarounds."""

import dataclasses
from importlib.metadata import version

from genart.compat import RAY_TARGET


def test_installed_ray_is_the_version_genart_compat_targets():
    installed = ".".join(version("ray").split(".")[:2])
    assert installed == RAY_TARGET, (
        f"Ray {version('ray')} is installed but genart/compat targets Ray {RAY_TARGET}: re-check "
        "each module of genart/compat against the Ray sources its docstring names, then update "
        "genart.compat.RAY_TARGET"
    )


def test_the_ray_internals_genart_compat_uses_are_there():
    from ray.train.v2._internal.execution.worker_group.state import WorkerGroupState

    from genart.compat.janitor import Janitor, WatchPlacement
    from genart.compat.relay import ReportRelay

    assert "placement_group_handle" in {f.name for f in dataclasses.fields(WorkerGroupState)}
    assert callable(WatchPlacement.after_worker_group_start)
    assert callable(ReportRelay.after_report)
    assert {"watch", "collect", "drain"} <= set(vars(Janitor))


def test_genart_lines_reach_the_haproxy_config_serve_writes(tmp_path, monkeypatch):
    """Serve's own config generation, then genart's script as its HAProxy binary: the lines land
    in the HTTP frontend once, and HAProxy accepts the config (``-c`` checks it)."""
    import os
    import subprocess
    import tempfile

    from ray.serve._private.haproxy import HAProxyApi, HAProxyConfig

    from genart.compat import haproxy

    config = tmp_path / "serve" / "haproxy.cfg"
    paths = {"socket_path": str(tmp_path / "admin.sock"), "server_state_base": str(tmp_path),
             "server_state_file": str(tmp_path / "state"),
             "metrics_socket_path": str(tmp_path / "metrics.sock")}  # fmt: skip
    HAProxyApi(
        HAProxyConfig(**paths), config_file_path=str(config)
    )._generate_config_file_internal()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    environ = {"PATH": os.environ["PATH"], haproxy.HEADER_TIMEOUT_ENV: "7"}
    haproxy.install(environ)
    for _ in range(2):  # Serve rewrites the file before each start, but an edit must not repeat
        check = subprocess.run([environ[haproxy.BINARY_ENV], "-c", "-f", str(config)], env=environ,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    text = config.read_text()
    assert text.count(haproxy.MARK) == 1
    frontend = text.split(haproxy.FRONTEND)[1].split("\nbackend ")[0]
    assert "timeout http-request 7s" in frontend
    assert "http-after-response set-header Connection close if { status 408 413 }" in frontend

    kept = {haproxy.BINARY_ENV: "/usr/sbin/haproxy"}  # a binary the user chose is left alone
    haproxy.install(kept)
    assert kept == {haproxy.BINARY_ENV: "/usr/sbin/haproxy"}
