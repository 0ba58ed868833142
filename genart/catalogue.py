"""A catalogue of models: a folder or ``s3://`` prefix of exports, each in a sub-folder named by
the model's name (``CAT/<name>/export.json``, ...; see :mod:`genart.export`).

Names are URL-safe (they become routes: ``/style/<name>``), so that a name read from a request
can be joined to the catalogue's location as it is. Reading a catalogue never fails on one
bad entry: a broken export, a foreign folder or a badly named one is listed as unusable with its
reason, beside the usable ones. A server finds a model by name with :meth:`Catalogue.entry`
(its manifest, no weights) and builds it with :meth:`Catalogue.load`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genart import export, registry, storage
from genart.errors import InputError
from genart.names import NAME, check_name


class ModelNotFound(InputError):
    """No model of that name in the catalogue (a server answers 404)."""


@dataclass(frozen=True)
class Entry:
    """One sub-folder of a catalogue: its export's manifest, or why it cannot be used."""

    name: str
    uri: str
    manifest: dict[str, Any] | None = None
    problem: str | None = None  # why the entry is unusable; None when usable

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def family(self) -> str | None:
        return self.manifest["family"] if self.manifest else None

    @property
    def size(self) -> int | None:
        """Bytes of the export's files, where its manifest records them."""
        files = (self.manifest or {}).get("files")
        return sum(entry["bytes"] for entry in files.values()) if files else None

    def summary(self) -> dict[str, Any]:
        """What a listing shows of the entry: never its location or its training config."""
        if not self.usable:
            return {"name": self.name, "usable": False, "problem": self.problem}
        return {
            "name": self.name,
            "usable": True,
            **export.public(self.manifest),
            "size": self.size,
        }


class Catalogue:
    """The exports under one folder or ``s3://`` prefix, by name."""

    def __init__(self, uri: str):
        self.uri = storage.absolute(uri)

    def names(self) -> list[str]:
        """The names of every sub-folder, usable or not, sorted."""
        return storage.list_dirs(self.uri)

    def entries(self) -> list[Entry]:
        """Every sub-folder, described (manifests only, no weights), sorted by name."""
        return [self._describe(name) for name in self.names()]

    def entry(self, name: str) -> Entry:
        """The entry ``name`` (possibly unusable); ModelNotFound if there is none.

        Reads that model's manifest alone, never the catalogue's listing: a server looks a
        name up on every model it loads, and sees a model added since at once.
        """
        if NAME.fullmatch(name):
            found = self._describe(name)
            if found.usable or storage.exists(found.uri):
                return found
        raise ModelNotFound(f"no model named {name!r} in {self.uri}")

    def usable(self, name: str) -> Entry:
        """The entry ``name``; ModelNotFound if absent, InvalidExport if it cannot be used."""
        found = self.entry(name)
        if not found.usable:
            raise export.InvalidExport(f"model {name!r} cannot be used: {found.problem}")
        return found

    def load(self, name: str, device: str | torch.device = "cpu") -> export.Export:
        """The networks, config and manifest of the model ``name`` (files verified)."""
        return export.load(self.usable(name).uri, device)

    def publish(self, source: str, name: str, replace: bool = False) -> Entry:
        """Export ``source`` as the model ``name``: a run or checkpoint folder, or a model
        registered in MLflow (``models:/NAME/VERSION``, from ``MLFLOW_TRACKING_URI``'s registry;
        its export is verified, then copied).

        An existing name is refused unless ``replace``; replacing removes the old export
        first, so the name is absent (never a mix of two exports) while the new one is written.
        """
        uri = self.claim(name, replace)
        if storage.exists(uri):
            storage.remove(uri)
        if source.startswith("models:/"):
            from genart import tracking

            export.copy(str(tracking.download_model(source)), uri)
        else:
            export.from_checkpoint(source, uri)
        return self._describe(name)

    def claim(self, name: str, replace: bool = False) -> str:
        """Where the model ``name`` would be written; an InputError if the name is not
        URL-safe, or is taken and ``replace`` is not given (checked before a long run)."""
        uri = storage.join(self.uri, check_name(name))
        if not replace and storage.exists(uri):
            raise InputError(f"a model named {name!r} exists in {self.uri}: pass --replace")
        return uri

    def remove(self, name: str) -> None:
        """Delete the model ``name`` (usable or not); ModelNotFound if there is none."""
        storage.remove(self.entry(name).uri)

    def _describe(self, name: str) -> Entry:
        uri = storage.join(self.uri, name)
        if not NAME.fullmatch(name):
            return Entry(name, uri, problem="its name is not URL-safe")
        try:
            manifest = export.describe(uri)
        except export.InvalidExport as err:
            return Entry(name, uri, problem=str(err).removeprefix(f"{uri}: "))
        if manifest["family"] not in registry.names(registry.TrainedSpec):
            return Entry(name, uri, manifest, f"unknown family {manifest['family']!r}")
        return Entry(name, uri, manifest)
