"""What a finished sweep writes: the results table, the best recipe, and the plots.

In ``<storage>/<name>/``: ``results.csv`` and ``results.parquet`` (one row per trial),
``best.yaml`` (a recipe ``genart train --config`` accepts; for an optimisation family, its
settings and the ``genart`` command that runs them), ``metric.png`` and ``best_samples.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

import yaml

from genart import storage
from genart.config import Config
from genart.tune.settings import RUNS, OptimisationJob, Plan, Report
from genart.tune.space import with_values

# The command that runs one optimisation of each family, and its flag for each named input
# (spec.inputs); every config field has a --field-name flag there (tests/unit/test_cli_style.py).
COMMANDS = {"gatys": "genart stylize gatys", "dream": "genart dream"}
INPUT_FLAGS = {"content": "--content", "styles": "--style", "image": "--input"}


def summarise(results, plan: Plan, exp_uri: str, seconds: float) -> Report:
    """Write the table, best recipe, metric plot and best samples; print the table."""
    import pandas as pd

    metric = plan.metric
    table = pd.DataFrame([_row(r, metric, plan.budget) for r in results])
    best = _best(table, metric, plan.mode)
    out = Path(tempfile.mkdtemp(prefix="genart-sweep-"))
    written = {
        "results_csv": "results.csv",
        "results_parquet": "results.parquet",
        "metric_plot": "metric.png",
    }
    flat = table.map(lambda v: str(list(v)) if isinstance(v, list | tuple) else v)
    flat.to_csv(out / written["results_csv"], index=False)
    flat.to_parquet(out / written["results_parquet"], index=False)
    plot_metric(results, metric, out / written["metric_plot"])
    if best is not None:
        plan.write_recipe(trial_params(results[best]), out / "best.yaml")
        written["best_recipe"] = "best.yaml"
        run_uri = storage.join(exp_uri, RUNS, table.loc[best, "run"])
        if copy_latest_samples(run_uri, out / "best_samples.png"):
            written["best_samples"] = "best_samples.png"
    storage.upload_dir(out, exp_uri)
    files = {key: storage.join(exp_uri, name) for key, name in written.items()}
    unfinished = int((table["status"] == "unfinished").sum())
    best_row = table.loc[best].to_dict() if best is not None else None
    best_run = run_uri if best is not None else None
    report = Report(table, best_row, files, seconds, unfinished, plan.run.name, best_run)
    print(describe(report, metric, plan.mode))
    return report


def _row(result, metric: str, budget: int) -> dict[str, Any]:
    """One trial: status, last score, last step, time, its run, error and parameters."""
    history = result.metrics_dataframe
    scores = history[metric].dropna() if history is not None and metric in history else ()
    last = result.metrics or {}
    step = int(last.get("step", 0))
    return {
        "trial": Path(result.path).name,  # trial folders are named by trial id
        "status": _status(result, step, budget),
        metric: float(scores.iloc[-1]) if len(scores) else math.nan,
        "step": step,
        "time_s": round(float(last.get("time_total_s", math.nan)), 1),
        "run": last.get("run", ""),
        "error": error_summary(result.error) if result.error else "",
        **trial_params(result),
    }


def trial_params(result) -> dict[str, Any]:
    """A trial's sampled values; from its params.json if it failed before reporting."""
    if result.config:
        return result.config
    with result.filesystem.open_input_stream(f"{result.path}/params.json") as f:
        return json.loads(f.read())


def error_summary(error: BaseException) -> str:
    """The innermost ``SomethingError: message`` line of a (possibly wrapped) trial error."""
    lines = str(error).strip().splitlines()
    # Ray wraps worker errors with their tracebacks as text: the last such line is the cause.
    causes = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return causes[-1] if causes else f"{type(error).__name__}: {lines[0] if lines else ''}"


def _status(result, step: int, budget: int) -> str:
    """error; done (ran its budget); stopped (by ASHA); unfinished (sweep interrupted)."""
    if result.error:
        return "error"
    if not (result.metrics or {}).get("done"):  # Tune marks finished and stopped trials done
        return "unfinished"
    return "done" if step >= budget else "stopped"


def _best(table, metric: str, mode: str) -> int | None:
    """Row index of the best scored trial that did not fail, or None."""
    scored = table[(table["status"] != "error") & table[metric].notna()]
    if not len(scored):
        return None
    return int(scored[metric].idxmin() if mode == "min" else scored[metric].idxmax())


def best_recipe(base: Config, params: dict[str, Any]) -> Config:
    """The base config with the best trial's values: a recipe for ``genart train --config``."""
    raw = with_values(base.to_dict(), params)
    # A fresh run next to the sweep: a timestamped name, no resume, nothing to start from.
    raw["run"] |= {"name": "", "resume": False, "init_from": ""}
    return Config.from_dict(raw)


def optimisation_recipe(job: OptimisationJob, params: dict[str, Any]) -> str:
    """best.yaml of an optimisation sweep: the best settings as YAML, after a comment holding
    the ``genart`` command that runs them on the sweep's inputs."""
    best = dataclasses.asdict(job.settings(params))
    command = " ".join([COMMANDS[job.family], *_flags(job, best)])
    return f"# {command}\n" + yaml.safe_dump(
        {"model": job.family, job.family: best}, sort_keys=False
    )


def _flags(job: OptimisationJob, settings: dict[str, Any]) -> list[str]:
    """The command line's flags: the inputs, the output, and one flag per set config field."""
    flags = []
    for name, value in job.inputs.items():
        values = value if isinstance(value, list) else [value]
        flags.append(" ".join([INPUT_FLAGS[name], *map(shlex.quote, values)]))
    flags += ["--output best.png", f"--size {job.size}", f"--vgg-weights {job.vgg_weights}"]
    for name, value in settings.items():
        if value in (None, ()):  # unset, or an empty list: the field's default
            continue
        shown = value if isinstance(value, list | tuple) else [value]
        flags.append(
            " ".join([f"--{name.replace('_', '-')}", *(shlex.quote(str(v)) for v in shown)])
        )
    return flags


def plot_metric(results, metric: str, path: Path) -> Path:
    """Every trial's ``metric`` against step, one line per trial (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for result in results:
        history = result.metrics_dataframe
        if history is None or metric not in history:
            continue
        scored = history.dropna(subset=[metric])
        ax.plot(scored["step"], scored[metric], marker="o", label=Path(result.path).name)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def copy_latest_samples(run_uri: str, target: Path) -> bool:
    """Copy the newest ``samples/step_*.png`` of a trial's run to ``target``; False if none."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(storage.join(run_uri, "samples"))
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    grids = sorted(i.path for i in infos if i.base_name.startswith("step_"))
    if not grids:
        return False
    with fs.open_input_stream(grids[-1]) as f:
        target.write_bytes(f.read())
    return True


def describe(report: Report, metric: str, mode: str) -> str:
    """The results table, best first, and where the files are."""
    import pandas as pd

    table = report.table.sort_values(metric, ascending=mode == "min", na_position="last")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        lines = [table.drop(columns=["run"]).to_string(index=False)]
    if report.best is None:
        lines.append("no trial finished with a score")
    else:
        lines.append(f"best: {report.best['trial']} {metric}={report.best[metric]:.5g} ({mode})")
    lines.append(f"sweep took {report.seconds:.0f}s")
    if report.unfinished:
        lines.append(f"{report.unfinished} trials unfinished: continue with --resume")
    lines += [f"{key}: {uri}" for key, uri in report.files.items()]
    return "\n".join(lines)
