"""Ray's notice of a dead worker reaches the console as genart's one line (compat.notices)."""

import inspect

import pytest

from genart.compat import notices

NODE = "6e0e7bea218291e686fe71c9ae61724b22114be583b22d94ae55d30c"
# As Ray 2.60's raylet published it when a Serve replica's process was killed (SIGKILL).
DIED = (
    "A worker died or was killed while executing a task by an unexpected system error. To "
    "troubleshoot the problem, check the logs for the dead worker. Lease ID: 0200000019adc7bc2f48"
    " Worker ID: 0ed54ab974ba8b3af6b233dd10fe8ec4bba86658fc89bcae343e92f9 "
    f"Node ID: {NODE} Worker IP address: 192.0.2.2 Worker port: 41405 Worker PID: 4270 Worker "
    "exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection "
    "error code 2. End of file. Some common causes include: (1) the process was killed by the "
    "OOM killer due to high memory usage, (2) ray stop --force was called, or (3) ..."
)


def table(name: str, pid: int = 4270, node: str = NODE) -> dict:
    """A GCS actor table with one (dead) actor."""
    return {"8557a5a7": {"Name": name, "ActorClassName": "ServeReplica:genart:JobStore",
                         "Pid": pid, "State": "DEAD", "Address": {"NodeID": node}}}  # fmt: skip


def test_a_dead_serve_replica_is_named_with_its_deployment_and_replacement():
    actors = lambda: table("SERVE_REPLICA::genart#JobStore#en3nb2jo")  # noqa: E731
    assert notices.describe(DIED, actors) == (
        "replica en3nb2jo of deployment JobStore (application genart) died (pid 4270: Worker "
        "unexpectedly exits with a connection error code 2. End of file); Serve starts a new "
        "replica in its place"
    )


def test_other_workers_and_unknown_ones_are_told_too():
    assert notices.describe(DIED, lambda: table("genart-console")).startswith(
        "Ray actor genart-console died (pid 4270: Worker unexpectedly exits"
    )
    # Same pid on another node: not this worker.
    assert notices.describe(DIED, lambda: table("x", node="other")).startswith(
        "a Ray worker process died (pid 4270: "
    )
    assert notices.describe("8 PYTHON worker processes have been started", dict) is None


@pytest.mark.parametrize("verbose", [False, True])
def test_the_driver_prints_genarts_line_and_rays_text_only_when_verbose(
    verbose, monkeypatch, capsys
):
    import ray._private.worker as ray_worker

    monkeypatch.setattr(ray_worker, "print_to_stdstream", ray_worker.print_to_stdstream)
    said = []
    actors = lambda: table("SERVE_REPLICA::genart#JobStore#en3nb2jo")  # noqa: E731
    notices.install(said.append, verbose, actors)
    # Another notice, worded apart from the other run's: Ray drops lines like recent ones.
    other = f"PYTHON worker processes have been started ({'verbose' if verbose else 'quiet'})"
    # How Ray's error-listener thread prints each notice.
    ray_worker.print_to_stdstream({"lines": [DIED], "pid": "raylet", "is_err": False}, False)
    ray_worker.print_to_stdstream({"lines": [other], "pid": "raylet", "is_err": False}, False)

    assert len(said) == 1 and "deployment JobStore" in said[0] and "\x1b[" not in said[0]
    printed = capsys.readouterr().out
    assert (DIED in printed) is verbose
    assert other in printed  # notices genart does not tell print as Ray prints them


def test_rays_error_listener_prints_through_the_function_genart_replaces():
    import ray._private.worker as ray_worker

    source = inspect.getsource(ray_worker.listen_error_messages)
    assert "print_to_stdstream(" in source and '"pid": "raylet"' in source


def test_installing_again_replaces_the_earlier_install(monkeypatch):
    """A second console in one process (one Ray after another, or the test suite): its settings
    hold, and a notice is told once, not once per install."""
    import ray._private.worker as ray_worker

    monkeypatch.setattr(ray_worker, "print_to_stdstream", lambda data, ignore_prefix: None)
    first, second = [], []
    actors = lambda: table("SERVE_REPLICA::genart#JobStore#en3nb2jo")  # noqa: E731
    notices.install(first.append, False, actors)
    notices.install(second.append, False, actors)
    ray_worker.print_to_stdstream({"lines": [DIED], "pid": "raylet", "is_err": False}, False)
    assert first == [] and len(second) == 1 and "deployment JobStore" in second[0]
