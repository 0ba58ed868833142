"""MLflow tracking without Ray: params, run-id records, the embedded store, and reading a
registered export back by models:/NAME/VERSION (against a real SQLite store in tmp_path)."""

import json
import sys
from pathlib import Path

import pytest

from genart import config, tracking
from genart.cli import train as cli_train
from genart.errors import ConfigError, InputError
from genart.train import launch
from genart.tune import driver, settings, space


def test_flatten_gives_dotted_keys_and_text_values():
    flat = tracking.flatten(
        {
            "model": "dcgan",
            "train": {"steps": 8, "precision": "auto"},
            "x": {"y": {"z": [1, 2]}},
            "run": {"init_from": None, "resume": False},
        }  # fmt: skip
    )
    assert flat == {
        "model": "dcgan",
        "train.steps": "8",
        "train.precision": "auto",
        "x.y.z": "[1, 2]",
        "run.init_from": "",
        "run.resume": "False",
    }


def test_a_whole_config_flattens_to_one_param_per_leaf():
    cfg = config.load("dcgan")
    flat = tracking.flatten(cfg.to_dict())
    assert flat["dcgan.latent_dim"] == str(cfg.params.latent_dim)
    assert flat["run.tracking_uri"] == ""
    assert all(not isinstance(v, dict) for v in flat.values())


def test_local_is_a_sqlite_store_in_the_run_folder(tmp_path):
    uri = tracking.resolve_uri("local", str(tmp_path / "run"))
    assert uri == f"sqlite:///{tmp_path}/run/mlflow/mlflow.db"
    assert tracking.resolve_uri("http://127.0.0.1:5000", str(tmp_path)) == "http://127.0.0.1:5000"
    assert tracking.resolve_uri("", str(tmp_path)) == ""


def test_local_store_under_a_remote_run_folder_is_refused():
    with pytest.raises(ConfigError, match="tracking server"):
        tracking.resolve_uri("local", "s3://bucket/runs/a")


def test_record_round_trip(tmp_path):
    assert tracking.read_record(str(tmp_path)) is None
    record = tracking.Record("sqlite:////x/mlflow.db", "abc123")
    tracking.save_record(str(tmp_path), record)
    assert tracking.read_record(str(tmp_path)) == record
    assert json.loads((tmp_path / tracking.RECORD).read_text())["run_id"] == "abc123"


def test_tracking_flag_and_config_key():
    parser = cli_train.argparse.ArgumentParser()
    cli_train.add_config_args(parser)
    args = parser.parse_args(["--tracking", "local"])
    assert "run.tracking_uri=local" in cli_train.overrides(args)
    cfg = config.load("dcgan", overrides=["run.tracking_uri=http://127.0.0.1:5000"])
    assert cfg.run.tracking_uri == "http://127.0.0.1:5000"
    with pytest.raises(ConfigError, match="run.tracking"):
        config.load("dcgan", overrides=["run.tracking=local"])


def test_resolve_run_makes_local_concrete(tmp_path):
    cfg = config.load("dcgan", overrides=[f"run.storage_path={tmp_path}", "run.name=a",
                                          "run.tracking_uri=local"])  # fmt: skip
    launch.resolve_run(cfg)
    assert cfg.run.tracking_uri == f"sqlite:///{tmp_path}/a/mlflow/mlflow.db"


def test_missing_mlflow_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(InputError, match=r"pip install 'genart\[tracking\]'") as error:
        tracking.require()
    assert "\n" not in str(error.value)


# MLflow takes 5-20 s to set up a SQLite store's tables (its migrations): the tests that use
# one share it and are kept out of `make check`.
store_tests = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module: MLflow sets up its tables in seconds, once."""
    return tracking.resolve_uri("local", str(tmp_path_factory.mktemp("store")))


@store_tests
def test_reopening_a_folder_continues_its_run_and_logs_only_new_params(tmp_path, store):
    folder = str(tmp_path / "run")
    first = tracking.open_run(folder, store, "a", "genart-test", {"train": {"steps": 4}})
    assert Path(store.removeprefix("sqlite:///")).is_file()
    tracking.end_run(first, "FINISHED")
    again = tracking.open_run(folder, store, "a", "genart-test", {"train": {"steps": 8, "seed": 0}})
    assert again == first == tracking.read_record(folder)
    run = tracking.client(store).get_run(first.run_id)
    assert run.info.status == "RUNNING"  # resumed
    assert run.data.params == {"train.steps": "4", "train.seed": "0"}  # MLflow keeps the first


@store_tests
def test_a_folder_of_another_store_starts_a_new_run(tmp_path, store):
    folder = str(tmp_path / "run")
    tracking.save_record(folder, tracking.Record("sqlite:////elsewhere/mlflow.db", "gone"))
    record = tracking.open_run(folder, store, "a", "genart-test", {})
    assert record.tracking_uri == store and record.run_id != "gone"


@store_tests
def test_inherit_continues_another_folders_run(tmp_path, store):
    first = tracking.open_run(str(tmp_path / "t1"), store, "t1", "genart-test", {})
    later = tracking.open_run(str(tmp_path / "t1-1"), store, "t1-1", "genart-test", {},
                              inherit=str(tmp_path / "t1"))  # fmt: skip
    assert later.run_id == first.run_id
    assert tracking.read_record(str(tmp_path / "t1-1")) == first


@store_tests
def test_run_log_warns_once_and_stops_when_the_store_fails(tmp_path, store):
    record = tracking.open_run(str(tmp_path / "run"), store, "a", "genart-test", {})
    warnings, calls = [], []
    log = tracking.RunLog(record, warnings.append)
    log.metrics(2, {"loss_g": 1.5, "eval_split": "train", "steps": 2})

    def broken(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("server gone")

    log.client.log_batch = broken  # the calls made from now on fail
    log.metrics(4, {"loss_g": 1.0})
    log.metrics(6, {"loss_g": 0.5})
    log.close()
    history = tracking.client(store).get_metric_history(record.run_id, "loss_g")
    assert [(m.step, m.value) for m in history] == [(2, 1.5)]  # labels are not metrics
    assert len(calls) == 1 and len(warnings) == 1 and "server gone" in warnings[0]


def export_folder(path, step):
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"model": "dcgan", "step": step}))
    (path / "G.pt").write_bytes(b"weights")
    return path


@store_tests
def test_registered_export_reads_back_by_models_uri(tmp_path, store):
    record = tracking.open_run(str(tmp_path / "run"), store, "a", "genart-test", {})
    uri = tracking.register_export(record, export_folder(tmp_path / "e4", 4), "genart-test", 4)
    assert uri == "models:/genart-test/1"
    # The same final step again (a finished run resumed): no second version.
    assert tracking.register_export(record, tmp_path / "e4", "genart-test", 4) == uri
    later = tracking.register_export(record, export_folder(tmp_path / "e8", 8), "genart-test", 8)
    assert later == "models:/genart-test/2"
    local = tracking.download_model(later, store, str(tmp_path / "dl"))
    assert json.loads((local / "meta.json").read_text())["step"] == 8
    assert (local / "G.pt").read_bytes() == b"weights"


@store_tests
def test_models_uri_must_name_a_version_of_a_genart_export(tmp_path, store):
    with pytest.raises(InputError, match="models:/NAME/VERSION"):
        tracking.download_model("models:/genart-test/latest", store)
    mlflow_client = tracking.client(store)
    record = tracking.open_run(str(tmp_path / "run"), store, "a", "genart-test", {})
    mlflow_client.create_registered_model("other")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an export")
    mlflow_client.log_artifacts(record.run_id, str(tmp_path / "notes"), "notes")
    source = f"{mlflow_client.get_run(record.run_id).info.artifact_uri}/notes"
    mlflow_client.create_model_version("other", source, run_id=record.run_id)
    with pytest.raises(InputError, match="no genart export"):
        tracking.download_model("models:/other/1", store, str(tmp_path / "dl"))


def test_sweep_trials_track_into_the_sweeps_local_store(tmp_path):
    overrides = ["run.name=sweep", f"run.storage_path={tmp_path}", "run.tracking_uri=local"]
    base = settings.base_config(config.load("dcgan", overrides=overrides), "asha")
    assert base.run.tracking_uri == f"sqlite:///{tmp_path}/sweep/mlflow/mlflow.db"


def test_optimisation_sweeps_refuse_tracking(tmp_path):
    raw = config.apply_overrides({"model": "dream"}, [f"data.uri={tmp_path / 'a.png'}"])
    job = settings.optimisation_job("dream", raw, [], 32, "random")
    job.run = config.RunConfig(name="sweep", storage_path=str(tmp_path), tracking_uri="local")
    with pytest.raises(ConfigError, match="dream sweeps are not tracked"):
        driver.sweep_optimisation(job, space.load("dream"), settings.Settings())


@store_tests
def test_a_registered_model_is_published_to_a_catalogue(tmp_path, store, monkeypatch):
    from exports import make_export

    from genart.catalogue import Catalogue

    made = make_export(tmp_path, "dcgan", ["dcgan.g_width=4", "dcgan.d_width=4"])
    record = tracking.open_run(str(tmp_path / "run"), store, "a", "genart-dcgan-cat", {})
    uri = tracking.register_export(record, Path(made), "genart-dcgan-cat", 0)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    entry = Catalogue(str(tmp_path / "cat")).publish(uri, "from-registry")
    assert entry.usable and entry.family == "dcgan"
    assert Catalogue(str(tmp_path / "cat")).load("from-registry").nets["G"] is not None
