"""Checkpoints that restore exactly, or not at all; and exported generators for serving.

A checkpoint folder holds ``state.pt`` (nets, optimizers, schedulers, grad scaler, step and
data position, every RNG state of every worker, model state such as image pools), the resolved
``config.yaml``, the metrics ``history.json``, and ``manifest.json`` written last with the size
and SHA-256 of every other file. Ray does not commit checkpoint folders atomically
(ray-project/ray#41700), so a folder whose manifest is missing or does not match its files is
incomplete and is never restored: the previous complete one is used instead.

Everything is loaded with ``torch.load(weights_only=True)``: a checkpoint cannot run code.

Export format: ``<net>.pt`` state_dicts + ``config.yaml`` + ``meta.json``, and ``<net>.onnx``
graphs for onnxruntime where they pass their check (``genart.onnx_export``). A state_dict with the
config is the safe, portable choice: loading executes no pickled code (TorchScript archives
carry code), and the architecture is rebuilt from genart's own model code, the single source of
truth that Serve and the CLI already import.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from genart import registry, storage
from genart.config import Config, save

MANIFEST = "manifest.json"
STATE = "state.pt"
CHECKPOINT_PREFIX = "checkpoint_"


class IncompleteCheckpoint(RuntimeError):
    """A checkpoint folder whose manifest is missing or does not match its files."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(directory: str | Path, state: dict[str, Any], cfg: Config, history: list[dict]) -> Path:
    """Write a complete checkpoint folder; the manifest goes last, so its presence means done."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE)
    save(cfg, directory / "config.yaml")
    (directory / "history.json").write_text(json.dumps(history))
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": _digest(p)}
        for p in sorted(directory.iterdir())
        if p.name != MANIFEST
    }
    manifest = {"step": int(state["step"]), "model": cfg.model, "files": files}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.rename(directory / MANIFEST)
    return directory


def verify(directory: str | Path) -> dict:
    """The manifest of a complete checkpoint folder; raises IncompleteCheckpoint otherwise.

    A folder that vanishes while it is read (pruned by the run that wrote it, which keeps only
    its last K) is incomplete too.
    """
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise IncompleteCheckpoint(f"{directory}: no valid {MANIFEST} ({err})") from err
    for name, meta in manifest["files"].items():
        if not _matches(directory / name, meta):
            raise IncompleteCheckpoint(f"{directory}: {name} is missing or does not match")
    return manifest


def _matches(path: Path, meta: dict) -> bool:
    """Whether a file has the manifest's size and digest (False if it is missing or vanishes)."""
    try:
        return path.stat().st_size == meta["bytes"] and _digest(path) == meta["sha256"]
    except OSError:
        return False


def load(directory: str | Path, map_location="cpu") -> tuple[dict, Config, list[dict]]:
    """(state, config, history) of a verified checkpoint folder."""
    directory = Path(directory)
    verify(directory)
    state = torch.load(directory / STATE, map_location=map_location, weights_only=True)
    cfg = saved_config(directory)
    history = json.loads((directory / "history.json").read_text())
    return state, cfg, history


def saved_config(directory: str | Path) -> Config:
    """The resolved config saved in a checkpoint or export folder."""
    return Config.from_dict(yaml.safe_load((Path(directory) / "config.yaml").read_text()))


def latest_complete(run_uri: str) -> Path | None:
    """A local copy of the newest complete checkpoint under a run folder, or None.

    Candidates are tried newest first by the step their manifest claims, and only until one
    verifies: from object storage that downloads one checkpoint, not all of those kept.
    """
    for uri in _newest_first(run_uri):
        local = None
        try:
            local = storage.local_copy(uri)
            verify(local)
            return local
        except (IncompleteCheckpoint, OSError):  # incomplete, or pruned while being read
            if local is not None and storage.is_remote(uri):
                shutil.rmtree(local, ignore_errors=True)
    return None


def newest_config(run_uri: str) -> Config | None:
    """The config saved with a run's newest checkpoint whose ``config.yaml`` matches its
    manifest, or None. Reads those two small files only, never the weights: a resume checks
    its config against this before training, and the worker then loads the checkpoint once.
    """
    for uri in _newest_first(run_uri):
        try:
            meta = json.loads(_read(storage.join(uri, MANIFEST)))["files"]["config.yaml"]
            text = _read(storage.join(uri, "config.yaml"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if hashlib.sha256(text).hexdigest() == meta["sha256"]:
            return Config.from_dict(yaml.safe_load(text))
    return None


def _newest_first(run_uri: str) -> list[str]:
    """The checkpoint folders of a run, by the step their manifests claim, newest first."""
    names = [d for d in storage.list_dirs(run_uri) if d.startswith(CHECKPOINT_PREFIX)]
    uris = [storage.join(run_uri, name) for name in names]
    return sorted(uris, key=_claimed_step, reverse=True)


def _claimed_step(uri: str) -> int:
    """The step a checkpoint's manifest claims (read alone, unverified); -1 without one."""
    try:
        return int(json.loads(_read(storage.join(uri, MANIFEST)))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _read(uri: str) -> bytes:
    """The bytes of one small file, local or remote."""
    fs, path = storage.filesystem(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def resolve(path: str) -> Path:
    """A checkpoint folder from a checkpoint path, or a run folder (its newest complete one)."""
    if storage.exists(storage.join(path, MANIFEST)):
        local = storage.local_copy(path)
        verify(local)
        return local
    found = latest_complete(path)
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint in {path}")
    return found


# --- export for serving --------------------------------------------------------------------


def export(source: str, out: str) -> Path:
    """Export the serving networks of a run/checkpoint to ``out`` (local path or URI), with
    their checked ONNX graphs (:mod:`genart.onnx_export`)."""
    from genart import onnx_export  # it builds networks from the registry too

    ckpt = resolve(source)
    state, cfg, _ = load(ckpt)
    spec = registry.trained(cfg.model)
    staging = (
        Path(tempfile.mkdtemp(prefix="genart-export-")) if storage.is_remote(out) else Path(out)
    )
    staging.mkdir(parents=True, exist_ok=True)
    weights = serving_weights(state, spec.export)
    for name in spec.export:
        torch.save(weights[name], staging / f"{name}.pt")
    save(cfg, staging / "config.yaml")
    meta = {
        "model": cfg.model,
        "nets": list(spec.export),
        "step": state["step"],
        "weights": served_weights(state),
        "checkpoint": str(source),
        "format": "state_dict+config",
    }
    meta |= onnx_export.graphs_for_weights(staging, cfg, weights)  # checked graphs, or why not
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    storage.upload_dir(staging, out)
    return staging


def served_weights(state: dict) -> str:
    """Which weights a checkpoint's ``state`` serves: "average", "live", or "live (no
    average)" for a run that kept none."""
    average = state.get("average")
    return average.get("serves", "average") if average else "live (no average)"


def serving_weights(state: dict, names: tuple[str, ...]) -> dict[str, dict]:
    """The state dicts a checkpoint's ``state`` serves for ``names``: the moving averages
    where the run kept them (``genart.train.ema``) and its last evaluation did not score the
    live weights better, else the live weights."""
    average = state.get("average") or {}
    averages = average.get("nets", {}) if served_weights(state) == "average" else {}
    return {name: averages.get(name, state["nets"][name]) for name in names}


def load_exported(path: str, device: str | torch.device = "cpu"):
    """(nets in eval mode, config) from an exported folder, a checkpoint, or a run folder."""
    if storage.exists(storage.join(path, "meta.json")):  # an export: download just that
        local = storage.local_copy(path)
        cfg = saved_config(local)
        names = json.loads((local / "meta.json").read_text())["nets"]
        weights = {
            n: torch.load(local / f"{n}.pt", map_location="cpu", weights_only=True) for n in names
        }
    else:
        state, cfg, _ = load(resolve(path))
        names = registry.trained(cfg.model).export
        weights = serving_weights(state, names)
    built = registry.trained(cfg.model).build(cfg.params, cfg.data)
    nets = {}
    for name in names:
        built[name].load_state_dict(weights[name])
        nets[name] = built[name].to(device).eval()
    return nets, cfg
