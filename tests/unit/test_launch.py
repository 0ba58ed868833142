"""What genart.train.launch hands Ray: the dataset each trained family's spec asks for, built
from the config (the Ray Data pipelines themselves run under Ray and are tested in tests/ray);
and how genart starts or joins Ray, and keeps its Train runs to their own cluster."""

import os

import pytest

from genart import config, registry
from genart.data import pipelines
from genart.train import launch


@pytest.mark.parametrize(("model", "builder"), [("dcgan", "images"), ("pix2pix", "paired")])
def test_dataset_reads_the_configured_parquet_column(model, builder, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(pipelines, builder, lambda *args, **kwargs: calls.append(kwargs))
    overrides = [f"data.uri={tmp_path}", "data.parquet_column=picture", "data.repeat=2"]
    cfg = config.load(model, overrides=overrides)
    registry.trained(model).dataset(cfg)
    assert calls[0]["column"] == "picture" and calls[0]["repeat"] == 2


class FakeRay:
    """Records the ``ray.init`` calls of genart's start-up code (no Ray starts)."""

    def __init__(self, monkeypatch):
        import ray
        from ray._private import ray_constants

        from genart import console
        from genart.compat import isolation, loopback

        self.inits, self.consoles = [], []
        # As Ray's: sets the variable (and would refresh this process's cached Ray config).
        monkeypatch.setattr(isolation, "_enable_token_auth",
                            lambda: os.environ.__setitem__("RAY_AUTH_MODE", "token"))  # fmt: skip
        monkeypatch.setattr(ray, "is_initialized", lambda: False)
        monkeypatch.setattr(ray, "init", lambda **kwargs: self.inits.append(kwargs) or "context")
        monkeypatch.setattr(console, "start", self.start)
        for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "GENART_VERBOSE", loopback.CLUSTER_SWITCH,
                     *loopback.INTERFACE_VARIABLES):  # fmt: skip
            monkeypatch.setenv(name, "")  # a set-then-delete puts back what was there
            monkeypatch.delenv(name)
        # A local start has this process's Ray take loopback for the node address: put back.
        monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)

    def start(self, context, relay=True):
        self.consoles.append((context, relay))


def test_a_run_starts_a_private_quiet_local_ray(monkeypatch):
    from genart.compat import isolation, loopback
    from genart.train import launch

    fake = FakeRay(monkeypatch)
    launch.init_ray(workers=2)
    (kwargs,) = fake.inits
    assert kwargs["address"] == "local" and kwargs["include_dashboard"] is False
    # Its own temp dir: never Ray's default, where `ray start` and its tools look.
    default = isolation.get_default_ray_temp_dir()
    assert kwargs["_temp_dir"] == os.path.join(os.path.dirname(default), "genart-ray")
    assert kwargs["log_to_driver"] is False
    assert os.environ["RAY_AUTH_MODE"] == "token"  # Ray's default for a new local Ray, unsaid
    # Loopback only: its workers import the module that binds what they open there.
    assert kwargs["_system_config"] == {"preload_python_modules": [loopback.WORKER_MODULE]}
    assert os.environ[loopback.CLUSTER_SWITCH] == "0"
    assert fake.consoles == [("context", True)]  # its workers' progress lines print here


def test_a_run_joins_the_cluster_ray_address_names(monkeypatch):
    from genart.compat import loopback
    from genart.train import launch

    fake = FakeRay(monkeypatch)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("GENART_VERBOSE", "1")
    launch.init_ray()
    assert [sorted(kwargs) for kwargs in fake.inits] == [["log_to_driver", "logging_level"]]
    assert fake.inits[0]["log_to_driver"] is True
    assert "RAY_AUTH_MODE" not in os.environ  # the cluster chose its own
    assert loopback.CLUSTER_SWITCH not in os.environ  # and its nodes' addresses


@pytest.mark.parametrize(("recorded", "running", "joined"), [
    ("10.0.0.1:6379", ["10.0.0.1:6379", "10.0.0.1:41234"], "10.0.0.1:6379"),
    ("10.0.0.1:6379", ["10.0.0.1:41234"], None),  # died without `ray stop`: a stale record
    (None, ["10.0.0.1:41234"], None),  # only private Rays run: never join one
])  # fmt: skip
def test_serve_joins_only_a_cluster_ray_start_runs(monkeypatch, recorded, running, joined):
    from genart.cli import serve as cli
    from genart.compat import isolation, loopback
    from genart.serve import ray_settings

    fake = FakeRay(monkeypatch)
    monkeypatch.setattr(isolation, "read_ray_address", lambda: recorded)
    monkeypatch.setattr(isolation, "find_gcs_addresses", lambda: set(running))
    # Variables a local start sets are put back after the test (a set-then-delete is recorded).
    for name in [*ray_settings.HAPROXY_ENV, *ray_settings.PORT_VARIABLES,
                 "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]:  # fmt: skip
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    cli.connect()
    (kwargs,) = fake.inits
    if joined:
        assert kwargs["address"] == joined and "_system_config" not in kwargs
        assert loopback.CLUSTER_SWITCH not in os.environ
    else:  # a private local Ray with genart's serving settings, on loopback
        assert kwargs["address"] == "local" and kwargs["_temp_dir"].endswith("genart-ray")
        preload = {"preload_python_modules": [loopback.WORKER_MODULE]}
        assert kwargs["_system_config"] == {**ray_settings.RAY_SYSTEM_CONFIG, **preload}
        assert os.environ[ray_settings.SWITCH] == "1"
        assert os.environ[loopback.CLUSTER_SWITCH] == "0"
    assert fake.consoles == [("context", False)]  # no worker of serve emits lines


def test_train_runs_watch_their_controller_through_their_own_cluster(monkeypatch, tmp_path):
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.execution.controller import placement_group_cleaner
    from ray.train.v2.api import data_parallel_trainer

    from genart.compat import isolation

    monkeypatch.setattr(data_parallel_trainer, "PlacementGroupCleanerCallback",
                        data_parallel_trainer.PlacementGroupCleanerCallback)  # fmt: skip
    monkeypatch.setattr(placement_group_cleaner, "is_actor_alive",
                        placement_group_cleaner.is_actor_alive)  # fmt: skip
    isolation.use_own_cluster_cleaner()
    trainer = TorchTrainer(lambda: None, run_config=ray.train.RunConfig(storage_path=str(tmp_path)))
    callbacks = [type(c) for c in trainer._create_default_callbacks()]
    assert isolation.OwnClusterCleanerCallback in callbacks
    isolation.OwnClusterCleaner("0" * 32, 1.0, 1.0, None)  # what the cleaner actor runs
    assert placement_group_cleaner.is_actor_alive is isolation.controller_alive


@pytest.mark.parametrize(("answer", "alive"), [
    ({"State": "ALIVE"}, True), ({"State": "RESTARTING"}, True), ({"State": "DEAD"}, False),
    ({}, False),  # unknown to its own cluster's GCS
])  # fmt: skip
def test_controller_liveness_comes_from_the_gcs(monkeypatch, answer, alive):
    from genart.compat import isolation

    monkeypatch.setattr(isolation.ray._private.state.state, "actor_table", lambda _: answer)
    assert isolation.controller_alive("ab" * 16, timeout=1) is alive


def test_a_gcs_hiccup_is_the_error_the_cleaner_retries_on(monkeypatch):
    from ray.util.state.exception import RayStateApiException

    from genart.compat import isolation

    def unavailable(actor_id):
        raise ConnectionError("GCS unavailable")

    monkeypatch.setattr(isolation.ray._private.state.state, "actor_table", unavailable)
    with pytest.raises(RayStateApiException):
        isolation.controller_alive("ab" * 16, timeout=1)


def test_a_chosen_authentication_mode_stands(monkeypatch):
    from genart.train import launch

    fake = FakeRay(monkeypatch)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    launch.init_ray()
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and len(fake.inits) == 1


def test_private_temp_dir_leaves_room_for_rays_socket_paths(monkeypatch):
    from genart.compat import isolation

    monkeypatch.setattr(isolation, "get_default_ray_temp_dir", lambda: "/tmp/ray")
    assert isolation.private_temp_dir() == "/tmp/genart-ray"
    monkeypatch.setattr(isolation, "get_default_ray_temp_dir", lambda: "/" + "x" * 60 + "/ray")
    assert isolation.private_temp_dir() is None  # Ray's default, whatever it makes of it


@pytest.mark.parametrize(
    ("workers", "gpus", "backend"),
    [(2, 0.5, "gloo"), (4, 0.25, "gloo"), (2, 1.0, None), (1, 0.5, None), (2, 0.0, None)],
)
def test_workers_sharing_a_gpu_use_gloo_which_allows_it(workers, gpus, backend):
    scaling = config.ScalingConfig(workers=workers, gpus_per_worker=gpus)
    assert launch.process_group_backend(scaling) == backend
