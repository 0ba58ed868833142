"""Test helpers for the cluster-operations tests: a local S3, private Ray instances, processes.

Everything listens on 127.0.0.1 on free ports. A module that needs Ray processes started with
particular environment variables (workers inherit the environment of the Ray that spawns them,
not of the driver calling ``fit``) swaps the shared in-process Ray for its own with
:func:`private_ray`, which restarts the shared one, same size, afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Iterator


def _psutil():
    """psutil as Ray vendors it: importing ray puts ray/thirdparty_files on sys.path first."""
    import ray  # noqa: F401

    return importlib.import_module("psutil")


def descendants(pid: int) -> list:
    """psutil Processes below ``pid``."""
    return _psutil().Process(pid).children(recursive=True)


def listening(pid: int) -> set[tuple[str, int, str]]:
    """(address, port, process title) of the TCP sockets listening in ``pid``'s process tree
    now; empty once ``pid`` has ended."""
    psutil = _psutil()
    found = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        for proc in [psutil.Process(pid), *descendants(pid)]:
            with contextlib.suppress(psutil.Error, IndexError):
                title = os.path.basename(proc.cmdline()[0])  # Ray's workers: ray::Class.method
                sockets = proc.net_connections("inet")
                found |= {(c.laddr.ip, c.laddr.port, title)
                          for c in sockets if c.status == psutil.CONN_LISTEN}  # fmt: skip
    return found


def terminate_tree(pid: int, grace_s: float = 5) -> None:
    """SIGTERM ``pid`` and everything below it; SIGKILL what is left after ``grace_s``.

    How the tests stop a `ray start` they launched: `ray stop` would kill every Ray process of
    the machine, other people's included.
    """
    psutil = _psutil()
    tree = [*descendants(pid), psutil.Process(pid)]
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


class Faults:
    """WSGI middleware for the S3 server: fails chosen writes the way a busy bucket does.

    Once armed, every PUT or POST whose path contains ``pattern`` is answered ``503 SlowDown``
    the first ``times`` times that exact request (path and query) arrives; clients that retry
    get through afterwards. ``injected`` counts the failures served.
    """

    SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message></Error>")  # fmt: skip

    def __init__(self) -> None:
        self.app = None  # the S3 application, set by moto_s3
        self.pattern, self.times, self.injected = "", 0, 0
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def arm(self, pattern: str, times: int) -> None:
        with self._lock:
            self.pattern, self.times, self.injected, self._seen = pattern, times, 0, {}

    def _should_fail(self, environ) -> bool:
        if not self.pattern or environ["REQUEST_METHOD"] not in ("PUT", "POST"):
            return False
        if self.pattern not in environ.get("PATH_INFO", ""):
            return False
        request = f"{environ['PATH_INFO']}?{environ.get('QUERY_STRING', '')}"
        with self._lock:
            self._seen[request] = self._seen.get(request, 0) + 1
            fail = self._seen[request] <= self.times
            self.injected += fail
        return fail

    def __call__(self, environ, start_response):
        if not self._should_fail(environ):
            return self.app(environ, start_response)
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # drain the body
        start_response("503 Slow Down", [("Content-Type", "application/xml")])
        return [self.SLOW_DOWN]


@contextlib.contextmanager
def moto_s3(bucket: str, faults: Faults | None = None) -> Iterator[dict[str, str]]:
    """An S3 server (moto, server mode) with ``bucket``; yields the AWS variables that reach it.

    ``faults``, if given, sits in front of the server (see :class:`Faults`).
    """
    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    app = DomainDispatcherApplication(create_backend_app)
    if faults is not None:
        faults.app, app = app, faults
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}",
        "AWS_EC2_METADATA_DISABLED": "true",  # no 1 s metadata probe per client
    }
    try:
        boto3.client("s3", **_boto_args(env)).create_bucket(Bucket=bucket)
        yield env
    finally:
        server.shutdown()


def _boto_args(env: dict[str, str]) -> dict[str, str]:
    return {"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": env["AWS_REGION"],
            "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}  # fmt: skip


def s3_client(env: dict[str, str]):
    """A boto3 S3 client for the server of :func:`moto_s3`."""
    import boto3

    return boto3.client("s3", **_boto_args(env))


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore the previous values."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def private_ray(**init_args) -> Iterator[None]:
    """This process's Ray replaced by ``ray.init(**init_args)`` (or by nothing, if none given:
    the block connects its own, e.g. to a ``ray.cluster_utils.Cluster``); then the previous
    local Ray, if there was one, is started again with the same CPUs and object store."""
    import ray

    shared = None
    if ray.is_initialized():
        resources = ray.cluster_resources()
        shared = {"num_cpus": int(resources["CPU"]),
                  "object_store_memory": int(resources["object_store_memory"])}  # fmt: skip
        ray.shutdown()
    try:
        if init_args:
            ray.init(**init_args)
        yield
    finally:
        ray.shutdown()
        if shared:
            ray.init(**shared, include_dashboard=False, log_to_driver=False)
