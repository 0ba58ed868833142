"""Exports: the networks a run serves, the config that rebuilds them and a manifest, in one folder.

diffusers' ``save_pretrained`` / ``from_pretrained`` pairing: :func:`from_checkpoint` (what
``genart export`` calls) and :func:`write` write an export; :func:`load` reads one back as built
networks; :func:`describe` reads its manifest alone (no weights); :func:`verify` checks every
file against the manifest. Pipelines, Serve, catalogues and the CLI read exports through here.

An export folder (local or ``s3://``):

``<net>.pt``     the state_dict of each exported network (``spec.export``), nothing else
``config.yaml``  the resolved training config: the networks are rebuilt from genart's own model
                 code and this config, the single source of truth
``export.json``  the manifest, written last (its presence means the folder is complete): family,
                 networks, source run, checkpoint and step, which weights (moving average or
                 live), held-out scores, data URI, genart version, creation time, and the size and
                 SHA-256 of every other file

A state_dict with its config is the safe, portable choice: loading executes no pickled code
(``torch.load(weights_only=True)``; TorchScript archives carry code). Older exports (a
``meta.json`` in place of ``export.json``), checkpoint folders and run folders are read too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import genart
from genart import onnx_export, registry, storage
from genart.config import Config, save
from genart.errors import InputError

MANIFEST = "export.json"
LEGACY_META = "meta.json"  # what exports held before the manifest (read, never written)
CONFIG = "config.yaml"
FORMAT = 1  # of the manifest; a reader refuses a newer one rather than misread it
# A manifest is a few kB; reading more than this is a foreign or damaged file, not an export.
MAX_MANIFEST_BYTES = 1 << 20

StateDicts = dict[str, dict[str, torch.Tensor]]


class InvalidExport(InputError):
    """A folder that is not a complete, readable export; the message says why."""


@dataclass(frozen=True)
class Export:
    """A loaded export: its networks (eval mode, on one device), their config, its manifest."""

    nets: dict[str, nn.Module]
    cfg: Config
    manifest: dict[str, Any]
    graphs: dict[str, str] = field(default_factory=dict)  # {net: URI} of its checked ONNX graphs


# --- writing -------------------------------------------------------------------------------


def from_checkpoint(source: str, out: str) -> dict[str, Any]:
    """Export the serving networks of a run or checkpoint folder (local or URI) to ``out``
    (local or URI); returns the manifest written."""
    state, cfg, origin = _from_training(str(source))
    names = registry.trained(cfg.model).export
    return write(out, cfg, serving_weights(state, names), **origin)


def write(
    out: str,
    cfg: Config,
    state_dicts: StateDicts,
    *,
    source: dict[str, Any],
    weights: str = "live",
    scores: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write an export of ``cfg.model`` to ``out`` (local path or URI); returns its manifest.

    ``state_dicts`` holds one per network of the family's ``export``; ``source`` says where they
    came from (``run``, ``checkpoint``, ``step``), ``weights`` which of a run's weights they are
    ("average", "live"), ``scores`` the run's held-out scores (:func:`held_out_scores`). The
    folder is staged locally and the manifest written last, so a reader never takes a partial
    export for a complete one.
    """
    spec = registry.trained(cfg.model)
    missing = set(spec.export) - set(state_dicts)
    if missing:
        raise ValueError(f"an export of {cfg.model} needs the networks {sorted(missing)} too")
    remote = storage.is_remote(out)
    staging = Path(tempfile.mkdtemp(prefix="genart-export-")) if remote else Path(out)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / MANIFEST).unlink(missing_ok=True)  # rewriting: incomplete until the end
    for name in spec.export:
        torch.save(state_dicts[name], staging / f"{name}.pt")
    save(cfg, staging / CONFIG)
    graphs = _write_graphs(staging, cfg, state_dicts)
    # Every file staged by now is recorded in the manifest (and checked on loading).
    origin = {"source": source, "weights": weights, "scores": scores or {}, **graphs}
    manifest = _manifest(cfg, origin) | {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {p.name: _file_entry(p) for p in sorted(staging.iterdir()) if p.is_file()},
    }
    if remote:
        storage.remove(storage.join(out, MANIFEST))  # rewriting: incomplete until the end
        storage.upload_dir(staging, out)  # the manifest after every file it names
        storage.write_bytes(storage.join(out, MANIFEST), _encode(manifest))
        shutil.rmtree(staging, ignore_errors=True)
    else:
        tmp = staging / (MANIFEST + ".tmp")
        tmp.write_bytes(_encode(manifest))
        tmp.rename(staging / MANIFEST)
    return manifest


def _write_graphs(folder: Path, cfg: Config, state_dicts: StateDicts) -> dict[str, Any]:
    """The checked ONNX graphs of a family that has them, written into ``folder``; what the
    manifest records of them (:func:`genart.onnx_export.write_graphs`), {} for the others."""
    if cfg.model not in onnx_export.GRAPH_FAMILIES:
        return {}
    return onnx_export.write_graphs(folder, build(cfg, state_dicts), cfg)


def add_graphs(uri: str) -> dict[str, Any]:
    """Rewrite the export at ``uri`` with checked ONNX graphs (what ``genart onnx EXPORT`` does
    to an export made before exports carried them, an older format included); returns the new
    manifest. Its networks, source, weights and scores stay as they were."""
    if not is_export(uri):
        raise InvalidExport(f"{uri}: not an export; give --out for the graphs of a run")
    loaded = load(uri)  # its files checked against its manifest
    old = loaded.manifest
    state_dicts = {name: net.state_dict() for name, net in loaded.nets.items()}
    weights = old.get("weights") or "live"
    return write(uri, loaded.cfg, state_dicts, source=old["source"], weights=weights,
                 scores=old.get("scores"))  # fmt: skip


def copy(source: str, out: str) -> dict[str, Any]:
    """Copy the export at ``source`` (verified first) to ``out``, its manifest last, so a reader
    never takes a partial copy for a complete export; returns the manifest. A remote source is
    downloaded once: the files checked are the files copied."""
    with _verified_local(source) as (manifest, local):
        if not (local / MANIFEST).is_file():
            raise InvalidExport(f"{source}: an export of an older format; export its run again")
        for path in sorted(local.iterdir()):
            if path.is_file() and path.name != MANIFEST:
                storage.upload_file(path, storage.join(out, path.name))
        storage.upload_file(local / MANIFEST, storage.join(out, MANIFEST))
    return manifest


def _manifest(cfg: Config, origin: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an export of ``cfg``'s family whose weights came from ``origin``
    (``source``, ``weights``, ``scores``), less its creation time and files."""
    return {
        "format": FORMAT,
        "family": cfg.model,
        "nets": list(registry.trained(cfg.model).export),
        **origin,
        "data": cfg.data.uri,
        "genart_version": genart.__version__,
    }


def _encode(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=1).encode()


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": storage.sha256(path)}


def held_out_scores(history: list[dict]) -> dict[str, Any]:
    """The newest evaluation in a run's metrics ``history``: its scores without the ``eval_``
    prefix, the ``split`` they were computed on and their ``step``; {} if none was made."""
    for entry in reversed(history):
        if "eval_split" in entry:
            scores = {k.removeprefix("eval_"): v for k, v in entry.items() if k.startswith("eval_")}
            return {"step": entry["step"], **scores}
    return {}


def served_weights(state: dict) -> str:
    """Which weights a checkpoint's ``state`` serves: "average", "live", or "live (no
    average)" for a run that kept none."""
    average = state.get("average")
    return average.get("serves", "average") if average else "live (no average)"


def serving_weights(state: dict, names: list[str] | tuple[str, ...]) -> StateDicts:
    """The state dicts a checkpoint's ``state`` serves for ``names``: the moving averages
    where the run kept them (``genart.train.ema``) and its last evaluation did not score the
    live weights better, else the live weights."""
    average = state.get("average") or {}
    averages = average.get("nets", {}) if served_weights(state) == "average" else {}
    return {name: averages.get(name, state["nets"][name]) for name in names}


def public(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a server may show of an export: its family, step, weights, scores, creation and
    genart version; never where it lies, where it came from or its training config."""
    return {
        "family": manifest["family"],
        "step": manifest["source"].get("step"),
        "weights": manifest.get("weights"),
        "scores": manifest.get("scores", {}),
        "created": manifest.get("created"),
        "genart_version": manifest.get("genart_version"),
    }


# --- reading -------------------------------------------------------------------------------


def describe(uri: str) -> dict[str, Any]:
    """The manifest of the export at ``uri`` (a few kB read, no weights); an older export's
    ``meta.json`` in the manifest's shape. Raises InvalidExport naming what is wrong."""
    text = _small_file(uri, MANIFEST)
    if text is not None:
        return _checked_manifest(uri, text)
    text = _small_file(uri, LEGACY_META)
    if text is not None:
        return _from_legacy(uri, text)
    raise InvalidExport(f"{uri}: not an export (it has no {MANIFEST})")


def verify(uri: str) -> dict[str, Any]:
    """The manifest of the export at ``uri`` once every file it names has the size and SHA-256
    it records (an older export: once its networks and config are there); else InvalidExport."""
    with _verified_local(uri) as (manifest, _):
        return manifest


@contextmanager
def _verified_local(uri: str) -> Iterator[tuple[dict[str, Any], Path]]:
    """The manifest of the export at ``uri`` and a local folder of its files, each checked
    against the manifest; a remote export is downloaded once, and deleted on leaving."""
    manifest = describe(uri)
    local = storage.local_copy(uri)
    try:
        _check_files(uri, local, manifest)
        yield manifest, local
    finally:
        _forget(uri, local)


def load(uri: str, device: str | torch.device = "cpu") -> Export:
    """The networks (eval mode, on ``device``), config and manifest of an export, checkpoint or
    run folder (local or URI). Builds only the exported networks; an export's files are
    checked against its manifest first."""
    if is_export(uri):
        with _verified_local(uri) as (manifest, local):
            cfg = _config(local / CONFIG)
            state_dicts = {n: _weights(local / f"{n}.pt") for n in manifest["nets"]}
        graphs = onnx_export.checked_graphs(uri, manifest)
    else:
        state, cfg, origin = _from_training(uri)
        manifest = _manifest(cfg, origin)
        state_dicts = serving_weights(state, manifest["nets"])
        graphs = {}
    return Export(build(cfg, state_dicts, device), cfg, manifest, graphs)


def build(cfg: Config, state_dicts: StateDicts, device: str | torch.device = "cpu") -> dict:
    """The family's exported networks for ``cfg``, holding ``state_dicts``, in eval mode.

    Built on the meta device, then given the loaded tensors themselves: initialising weights
    that are overwritten at once would cost as much as reading them (and draw from the global
    RNG). A tensor no state_dict holds would stay without data, so it is refused.
    """
    with torch.device("meta"):
        nets = registry.trained(cfg.model).exported_nets(cfg.params, cfg.data)
    for name, net in nets.items():
        net.load_state_dict(state_dicts[name], assign=True)
        empty = [key for key, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
        if empty:
            raise InvalidExport(f"{cfg.model} network {name} has no saved values for {empty}")
    return {name: net.to(device).eval() for name, net in nets.items()}


def is_export(uri: str) -> bool:
    """Whether ``uri`` holds an export (of this format or an older one) rather than a
    checkpoint or run folder."""
    return any(storage.exists(storage.join(uri, name)) for name in (MANIFEST, LEGACY_META))


def _from_training(uri: str) -> tuple[dict, Config, dict[str, Any]]:
    """(state, config, origin) of the checkpoint or run folder at ``uri``: the origin is what an
    export of it records of where its weights came from (``source``, ``weights``, ``scores``)."""
    from genart.train import checkpoint  # only checkpoints and runs need the training package

    found, local = checkpoint.locate(uri)
    found = storage.absolute(found)  # the manifest says where, wherever it is read from
    state, cfg, history = checkpoint.load(local)
    origin = {
        "source": {
            "run": checkpoint.run_of(found),
            "checkpoint": found,
            "step": int(state["step"]),
        },
        "weights": served_weights(state),
        "scores": held_out_scores(history),
    }
    return state, cfg, origin


def _small_file(uri: str, name: str) -> str | None:
    """The text of the small file ``name`` in ``uri``, or None if it has none."""
    path = storage.join(uri, name)
    try:
        data = storage.read_bytes(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as err:
        raise InvalidExport(f"{uri}: {name} cannot be read ({err})") from err
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidExport(f"{uri}: {name} is {len(data)} bytes, not an export's manifest")
    return data.decode(errors="replace")


def _checked_manifest(uri: str, text: str) -> dict[str, Any]:
    """The parsed manifest, once it has what a reader relies on; else InvalidExport."""
    try:
        manifest = json.loads(text)
        newer = manifest["format"] > FORMAT
        plain = all(_plain(name) for name in [*manifest["files"], *manifest["nets"]])
        manifest["family"]  # noqa: B018  (must be there)
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidExport(f"{uri}: {MANIFEST} is not a valid export manifest ({err!r})") from err
    if newer:
        raise InvalidExport(
            f"{uri}: export format {manifest['format']} is newer than this genart reads "
            f"({FORMAT}); upgrade genart"
        )
    if not plain:  # a file name must not lead out of the export's folder
        raise InvalidExport(f"{uri}: {MANIFEST} names files outside the export")
    return manifest


def _plain(name: str) -> bool:
    """Whether ``name`` is a file name alone (no folder, no parent, not hidden)."""
    return isinstance(name, str) and Path(name).name == name and not name.startswith(".")


def _from_legacy(uri: str, text: str) -> dict[str, Any]:
    """An older export's meta.json (model, nets, step, weights, checkpoint) as a manifest."""
    try:
        meta = json.loads(text)
        return {
            "format": 0,
            "family": meta["model"],
            "nets": list(meta["nets"]),
            "source": {"run": None, "checkpoint": meta.get("checkpoint"), "step": meta["step"]},
            "weights": meta.get("weights", "live"),
            "scores": {},
            "files": {},  # no digests were recorded: only presence can be checked
        }
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidExport(f"{uri}: {LEGACY_META} is not an export's ({err!r})") from err


def _check_files(uri: str, local: Path, manifest: dict[str, Any]) -> None:
    """Raise InvalidExport unless ``manifest`` names its family's exported networks and the
    files it names are in ``local`` as recorded."""
    expected = list(registry.trained(manifest["family"]).export)
    if manifest["nets"] != expected:
        raise InvalidExport(
            f"{uri}: holds the networks {manifest['nets']}; a {manifest['family']} export "
            f"holds {expected}"
        )
    needed = [CONFIG, *(f"{n}.pt" for n in manifest["nets"])]
    for name in needed:
        if not (local / name).is_file():
            raise InvalidExport(f"{uri}: {name} is missing")
    for name, entry in manifest["files"].items():
        path = local / name
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            raise InvalidExport(f"{uri}: {name} is missing or not the size its manifest records")
        if storage.sha256(path) != entry["sha256"]:
            raise InvalidExport(f"{uri}: {name} does not match its manifest's SHA-256")


def _forget(uri: str, local: Path) -> None:
    """Delete the download of a remote export once read."""
    if storage.is_remote(uri):
        shutil.rmtree(local, ignore_errors=True)


def _config(path: Path) -> Config:
    return Config.from_dict(yaml.safe_load(path.read_text()))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)
