"""MLflow tracking of training runs and sweeps (``run.tracking_uri``, ``--tracking URI``).

A training run is one MLflow run in the experiment ``genart-<model>``: its config as params
(``section.key``, :func:`flatten`) and as ``config.yaml``, its metrics at every log step, its
sample grids, loss curve and final metrics as artifacts, all logged by rank 0 alone; at the
end its export is logged and registered as a version of the model ``genart-<model>``. A sweep
is a parent run with one child run per trial (the trial's Train runs).

The MLflow run's id is kept in the run folder (``tracking.json``, :class:`Record`): a resumed
run, a worker group restarted after a failure and a trial restarted by its sweep continue the
same MLflow run instead of starting a second one.

``local`` is the embedded default for tracking without a server: a SQLite store with its
artifacts under the run (or sweep) folder, ``mlflow/``. (MLflow 3 refuses its older file
store unless told otherwise, so the embedded store is SQLite.)

Why not Ray's ``ray.air.integrations.mlflow`` (Ray 2.60): ``setup_mlflow`` always starts a new
MLflow run, so a resumed or restarted Train run would be split across runs, and it logs each
param in a request of its own; ``MLflowLoggerCallback`` runs on the Tune driver and sees only
what trials report to Tune (genart's scored reports, not every log step), with no artifacts
from inside the run and no parent run for the sweep.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genart import console, storage
from genart.errors import ConfigError, InputError

if TYPE_CHECKING:
    from genart.config import Config

LOCAL = "local"  # run.tracking_uri for the embedded store under the run folder
LOCAL_DIR = "mlflow"  # that store's folder: mlflow.db and artifacts/
RECORD = "tracking.json"  # in a run or sweep folder: which MLflow run it logs to
PARAMS_PER_BATCH = 100  # MLflow's limit of params in one log_batch call
MODEL_URI = re.compile(r"^models:/([^/]+)/(\d+)$")


def require():
    """The ``mlflow`` module, quiet unless ``--verbose``; a one-line error if not installed."""
    try:
        import mlflow
    except ImportError:
        raise InputError(
            "tracking needs MLflow: pip install 'genart[tracking]' (or drop --tracking)"
        ) from None
    if not console.verbose():
        # MLflow's info lines (database set-up, waiting for a model version) and warnings are
        # its own chatter: genart says what was tracked where in its own words.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
        # Ending a run on a server prints links to it on stdout; genart's line names the run.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return mlflow


def experiment_name(model: str) -> str:
    """The MLflow experiment and registered model of a family's runs."""
    return f"genart-{model}"


def resolve_uri(uri: str, folder: str) -> str:
    """The tracking URI of ``uri`` for a run or sweep kept in ``folder``: ``local`` becomes
    the SQLite store under ``folder``; any other URI is used as given."""
    if uri != LOCAL:
        return uri
    if storage.is_remote(folder):
        raise ConfigError(
            f"run.tracking_uri=local keeps its store in the run folder, which is remote "
            f"({folder}): give a tracking server's URI (http://HOST:PORT) instead"
        )
    return f"sqlite:///{Path(storage.absolute(folder)) / LOCAL_DIR / 'mlflow.db'}"


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config values as MLflow params: ``{"train": {"steps": 8}}`` ->
    ``{"train.steps": "8"}``; lists as their YAML-like text, None as ``""``."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = "" if value is None else str(value)
    return flat


@dataclass(frozen=True)
class Record:
    """Which MLflow run a run folder logs to (its ``tracking.json``)."""

    tracking_uri: str
    run_id: str


def read_record(folder: str) -> Record | None:
    """The record kept in ``folder`` (local or remote), or None."""
    uri = storage.join(folder, RECORD)
    if not storage.exists(uri):
        return None
    return Record(**json.loads(storage.read_bytes(uri)))


def save_record(folder: str, record: Record) -> None:
    storage.write_bytes(storage.join(folder, RECORD), json.dumps(asdict(record)).encode())


def client(tracking_uri: str | None):
    """An MlflowClient of ``tracking_uri`` (its registry too; None: MLflow's own default)."""
    mlflow = require()
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def open_run(
    folder: str,
    tracking_uri: str,
    name: str,
    experiment: str,
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
    inherit: str = "",
) -> Record:
    """The MLflow run of the run or sweep kept in ``folder``, started or continued.

    Continued when ``folder`` (else ``inherit``, a folder whose run this one carries on)
    records a run of the same tracking URI that still exists; otherwise a new run named
    ``name`` in ``experiment`` with ``tags``. Params are logged once: MLflow keeps a param's
    first value, so a resumed run adds only the keys it did not log yet (its current config is
    the ``config.yaml`` artifact).
    """
    mlflow_client = client(tracking_uri)
    record = read_record(folder) or (read_record(inherit) if inherit else None)
    same_store = record is not None and record.tracking_uri == tracking_uri
    run = _existing(mlflow_client, record) if same_store else None
    if run is None:
        experiment_id = _experiment(mlflow_client, experiment, tracking_uri)
        run = mlflow_client.create_run(experiment_id, run_name=name, tags=tags or {})
    else:
        mlflow_client.update_run(run.info.run_id, status="RUNNING")
    record = Record(tracking_uri, run.info.run_id)
    save_record(folder, record)
    from mlflow.entities import Param

    new = [Param(k, v) for k, v in flatten(params).items() if k not in run.data.params]
    for start in range(0, len(new), PARAMS_PER_BATCH):
        mlflow_client.log_batch(record.run_id, params=new[start : start + PARAMS_PER_BATCH])
    mlflow_client.log_dict(record.run_id, params, "config.yaml")
    return record


def _existing(mlflow_client, record: Record):
    """The run ``record`` names, or None if the store no longer has it."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_run(record.run_id)
    except MlflowException:
        return None


def _experiment(mlflow_client, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created if missing (trials may race to create it)."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=_artifacts(tracking_uri))
    except MlflowException:
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _artifacts(tracking_uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a SQLite store (MLflow's default is
    ``./mlruns`` in whatever folder the process runs in), else the server's choice."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()


def end_run(record: Record, status: str) -> None:
    """Mark the run FINISHED, FAILED or KILLED."""
    client(record.tracking_uri).set_terminated(record.run_id, status=status)


class RunLog:
    """What rank 0 logs to its run while it trains: metrics at each log step and files.

    The calls run in order in a thread of their own, so a log step never waits for the
    tracking server (a round trip to one on the same machine takes tens of milliseconds, more
    than many steps). A failed call warns once and stops the logging: a run must not fail
    because its tracking server went away (``metrics.jsonl`` keeps every report).
    """

    def __init__(self, record: Record, warn):
        self.record = record
        self.client = client(record.tracking_uri)
        self.warn = warn
        self.working = True
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        # A daemon: a run that fails drops what is still queued rather than hang on it.
        self.thread = threading.Thread(target=self._work, name="genart-mlflow", daemon=True)
        self.thread.start()

    @classmethod
    def of(cls, folder: str, warn) -> RunLog | None:
        """The log of the run recorded in ``folder``; None if it has none."""
        record = read_record(folder)
        return cls(record, warn) if record is not None else None

    def metrics(self, step: int, values: dict[str, Any]) -> None:
        """The numeric ``values`` at ``step`` (labels such as ``eval_split`` stay out)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        numbers = [
            Metric(k, float(v), now, step)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        self.pending.put((self.client.log_batch, (self.record.run_id,), {"metrics": numbers}))

    def artifact(self, path: Path, folder: str | None = None) -> None:
        """The file at ``path`` (left in place until :meth:`close`), into the run's artifacts
        (under ``folder``)."""
        self.pending.put((self.client.log_artifact, (self.record.run_id, str(path), folder), {}))

    def close(self) -> None:
        """Wait until every call made so far has run (or failed), and stop the thread."""
        self.pending.put(None)
        self.thread.join()

    def _work(self) -> None:
        while (call := self.pending.get()) is not None:
            if not self.working:
                continue
            fn, args, kwargs = call
            try:
                fn(*args, **kwargs)
            except Exception as error:  # any failure of the tracking store: the run goes on
                self.working = False
                self.warn(f"MLflow tracking stopped ({type(error).__name__}: {error})")


def register_export(record: Record, export_dir: Path, model: str, step: int) -> str:
    """Log ``export_dir`` as the run's ``export`` artifacts and register them as a version of
    the registered model ``model``; returns ``models:/NAME/VERSION``.

    A run registers one version per final step: a finished run resumed again (nothing new
    trained) keeps the version it has.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = client(record.tracking_uri)
    try:
        mlflow_client.create_registered_model(model)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    versions = mlflow_client.search_model_versions(f"name='{model}' and run_id='{record.run_id}'")
    for version in versions:
        if version.tags.get("genart.step") == str(step):
            return f"models:/{model}/{version.version}"
    mlflow_client.log_artifacts(record.run_id, str(export_dir), "export")
    source = f"{mlflow_client.get_run(record.run_id).info.artifact_uri}/export"
    version = mlflow_client.create_model_version(
        model, source, run_id=record.run_id, tags={"genart.step": str(step)}
    )
    return f"models:/{model}/{version.version}"


def download_model(model_uri: str, tracking_uri: str | None = None, dst: str | None = None) -> Path:
    """A local export folder from ``models:/NAME/VERSION``: the registered version's artifacts,
    downloaded into ``dst`` (default: a new temporary folder). ``tracking_uri``: the store
    that holds the registry (None: ``MLFLOW_TRACKING_URI``)."""
    match = MODEL_URI.match(model_uri)
    if match is None:
        raise InputError(f"{model_uri!r} is not a registered model: use models:/NAME/VERSION")
    mlflow = require()
    source = client(tracking_uri).get_model_version_download_uri(*match.groups())
    dst = dst or tempfile.mkdtemp(prefix="genart-model-")
    path = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=dst, tracking_uri=tracking_uri
        )
    )
    from genart import export

    if not export.is_export(str(path)):
        raise InputError(f"{model_uri} holds no genart export (no manifest in {source})")
    return path


# --- training runs and sweeps -------------------------------------------------------------


def run_folder(cfg: Config) -> str:
    return storage.join(cfg.run.storage_path, cfg.run.name)


def start(
    cfg: Config, parent: Record | None = None, tags: dict[str, str] | None = None, inherit: str = ""
) -> Record | None:
    """Start or continue the MLflow run of the training run ``cfg`` (resolved:
    ``launch.resolve_run``); None without ``run.tracking_uri``. ``parent``: the sweep's run,
    for a trial; ``inherit``: see :func:`open_run`."""
    if not cfg.run.tracking_uri:
        return None
    tags = {"genart.model": cfg.model, **(tags or {})}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent.run_id
    name, experiment = cfg.run.name, experiment_name(cfg.model)
    return open_run(
        run_folder(cfg), cfg.run.tracking_uri, name, experiment, cfg.to_dict(), tags, inherit
    )


def finish(cfg: Config, record: Record, failed: bool) -> str | None:
    """End the run of ``cfg``: FAILED, or FINISHED with its export registered (returns
    ``models:/NAME/VERSION``)."""
    if failed:
        end_run(record, "FAILED")
        return None
    from genart import export

    with tempfile.TemporaryDirectory(prefix="genart-export-") as tmp:
        step = export.from_checkpoint(run_folder(cfg), tmp)["source"]["step"]
        version = register_export(record, Path(tmp), experiment_name(cfg.model), step)
    end_run(record, "FINISHED")
    return version


def finish_sweep(record: Record, files: dict[str, str], best: dict | None, metric: str) -> None:
    """End a sweep's parent run: its report files as artifacts, the best score as
    ``best_<metric>``, children still marked running (trials stopped early) KILLED."""
    mlflow_client = client(record.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="genart-sweep-") as tmp:
        for uri in files.values():
            local = Path(tmp) / Path(uri).name
            local.write_bytes(storage.read_bytes(uri))
            mlflow_client.log_artifact(record.run_id, str(local))
    if best is not None:
        mlflow_client.log_metric(record.run_id, f"best_{metric}", float(best[metric]))
        mlflow_client.set_tag(record.run_id, "genart.best_run", str(best["run"]))
    run = mlflow_client.get_run(record.run_id)
    running = mlflow_client.search_runs(
        [run.info.experiment_id],
        f"tags.mlflow.parentRunId = '{record.run_id}' and attributes.status = 'RUNNING'",
    )
    for child in running:
        mlflow_client.set_terminated(child.info.run_id, status="KILLED")
    end_run(record, "FINISHED")
