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
