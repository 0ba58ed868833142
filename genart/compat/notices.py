"""Ray's notice that a worker process died, told on genart's console in genart's words; the
raylet's notices the console calls chatter shown only with ``--verbose``.

Targets Ray 2.60 (see :mod:`genart.compat`). Depends on these Ray sources:

* ``ray/_private/worker.py``: ``listen_error_messages``, a thread of every driver, prints each
  notice the raylets publish for the job with ``print_to_stdstream(data, ignore_prefix)``,
  ``data = {"lines": [text], "pid": "raylet", ...}``, in colour, whatever ``log_to_driver``
  says. It looks ``print_to_stdstream`` up in its module at every call, so replacing that
  module attribute reroutes the notices; the printer of workers' output bound its own copy in
  ``ray.init`` and is not affected.
* the raylet's worker-death notice: "A worker died or was killed while executing a task by an
  unexpected system error. ... Node ID: <hex> ... Worker PID: <n> ... Worker exit detail:
  <why>. Some common causes include: ..." (one line, no word of the actor the worker ran);
* ``ray/_private/state.py``: ``actors()``, the GCS actor table (``Name``, ``ActorClassName``,
  ``Pid``, ``Address.NodeID``), which still holds an actor after it died. Serve names each
  replica actor ``SERVE_REPLICA::<application>#<deployment>#<replica id>`` and starts a new
  replica when one dies.

No public API turns the notices off or names the dead actor.
"""

from __future__ import annotations

import re
from collections.abc import Callable

WORKER_DIED = "A worker died or was killed"
_NODE = re.compile(r"Node ID: (\w+)")
_PID = re.compile(r"Worker PID: (\d+)")
_DETAIL = re.compile(r"Worker exit detail: (.*?)(?: Some common causes|$)")
SERVE_REPLICA = re.compile(r"^SERVE_REPLICA::(?P<app>.*)#(?P<deployment>[^#]+)#(?P<replica>[^#]+)$")

Actors = Callable[[], dict]  # the GCS actor table: actor id -> info


def gcs_actors() -> dict:
    """Every actor the GCS knows, dead ones included."""
    from ray._private import state

    return state.actors()


def describe(text: str, actors: Actors = gcs_actors) -> str | None:
    """genart's line for a worker-death notice of Ray's, naming the actor (a Serve replica: its
    deployment and application) that the worker ran; None for any other notice."""
    if not text.startswith(WORKER_DIED):
        return None
    node, pid = _NODE.search(text), _PID.search(text)
    detail = _DETAIL.search(text)
    why = f": {detail.group(1).rstrip('.')}" if detail else ""
    actor = _actor(actors, node.group(1), int(pid.group(1))) if node and pid else None
    where = f"pid {pid.group(1)}{why}" if pid else why.lstrip(": ")
    if actor is None:
        return f"a Ray worker process died ({where})"
    replica = SERVE_REPLICA.match(actor.get("Name") or "")
    if replica:
        return (
            f"replica {replica['replica']} of deployment {replica['deployment']} (application "
            f"{replica['app']}) died ({where}); Serve starts a new replica in its place"
        )
    return f"Ray actor {actor.get('Name') or actor.get('ActorClassName')} died ({where})"


def _actor(actors: Actors, node: str, pid: int) -> dict | None:
    """The actor whose process ``pid`` ran on ``node``, or None (not an actor, or unknown)."""
    try:
        table = actors()
    except Exception:  # the GCS unreachable (Ray shutting down): say less, but say it
        return None
    found = [
        a for a in table.values() if a.get("Pid") == pid and a["Address"].get("NodeID") == node
    ]
    return found[-1] if found else None


def install(
    say: Callable[[str], None],
    verbose: bool,
    actors: Actors = gcs_actors,
    chatter: Callable[[str], bool] = lambda text: False,
) -> None:
    """From now on, tell each worker-death notice of Ray's with ``say(genart's line)``; Ray's own
    text as well only if ``verbose``. Other notices print as Ray prints them, but for those
    that ``chatter`` picks out: only if ``verbose``."""
    import ray._private.worker as ray_worker

    # Installed already (one Ray after another in a process): replace that one, so the newest
    # settings hold and notices are never told twice.
    ray_print = getattr(
        ray_worker.print_to_stdstream, "ray_original", ray_worker.print_to_stdstream
    )

    def print_to_stdstream(data, ignore_prefix):
        if data.get("pid") != "raylet":
            return ray_print(data, ignore_prefix)
        untold = []
        for line in data.get("lines", []):
            ours = describe(line, actors)
            if ours is not None:
                say(ours)
            elif not chatter(line):
                untold.append(line)
        shown = data.get("lines", []) if verbose else untold
        if shown:
            ray_print(data | {"lines": shown}, ignore_prefix)

    print_to_stdstream.ray_original = ray_print
    ray_worker.print_to_stdstream = print_to_stdstream
