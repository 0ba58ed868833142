"""Run any pipeline over many images as one Ray Data job: the CLI's folder verbs and the jobs.

A job is a list of rows, each naming its output and its input images (``{"name": "cat",
"image": "photos/cat.jpg"}``, or ``{"content": ..., "styles": [...]}`` for Gatys; an optional
``meta`` JSON string leads the result's info), and a
:class:`Source` saying which pipeline to build. Ray Data's actors (a pool of ``actors``, a
GPU each when asked) build the pipeline once and stream the rows through it; PNGs (and a JSON
of each result's info, for the optimisation families) come back to the driver and are written
under the output folder (local or ``s3://``), in the order they finish, with a progress line
each. Local input files are read on the driver and travel with their rows, so actors on any
node can decode them; ``s3://`` inputs are read by the actors themselves.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genart import storage
from genart.data.transforms import IMAGE_EXTENSIONS, decode, fit_long_side
from genart.images import encode_png

# The columns of a row that hold images (a path, bytes, or a list of them), by family input.
IMAGE_COLUMNS = ("image", "content", "styles")


@dataclass(frozen=True)
class Source:
    """Which pipeline every actor builds: the ``export`` of a trained family (any: its saved
    config names it), or an optimisation ``family`` with its settings and VGG weights."""

    export: str = ""
    family: str = ""
    params: dict[str, Any] | None = None
    vgg_weights: str = "auto"
    # Pipeline options, e.g. {"precision": "bf16"} or {"backend": "onnxruntime"}; onnxruntime's
    # threads follow each actor's CPUs (genart.onnx_export.intra_op_threads).
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return bool(self.export)

    def build(self, device: str = "auto"):
        from genart import pipelines

        if self.trained:
            return pipelines.load(self.export, device, **self.options)
        return pipelines.optimisation(self.family, self.params, self.vgg_weights, device)


def image_files(
    uri: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS, what: str = "images"
) -> list[str]:
    """The files with ``extensions`` directly in a folder or ``s3://`` prefix, sorted (paths
    or URIs); FileNotFoundError naming ``what`` was looked for if there is none."""
    names = [n for n in storage.list_files(uri) if "/" not in n]
    found = [storage.join(uri, n) for n in names if n.lower().endswith(extensions)]
    if not found:
        raise FileNotFoundError(f"no {what} ({', '.join(extensions)}) in {uri}")
    return found


def actor_resources(gpus_per_actor: float) -> dict[str, float]:
    """What each pipeline actor holds: its GPU share where asked for, else one CPU."""
    return {"num_gpus": gpus_per_actor} if gpus_per_actor else {"num_cpus": 1}


def stem(uri: str) -> str:
    """A file's name without its extension (the output's name)."""
    return Path(uri.rsplit("/", 1)[-1]).stem


class _Actor:
    """Ray Data callable class: builds the pipeline once, then maps batches of rows."""

    def __init__(self, source: Source, call: dict[str, Any], long_side: int):
        self.pipe = source.build()
        self.trained = source.trained
        self.call, self.long_side = call, long_side

    def __call__(self, batch):
        import pandas as pd

        rows = batch.to_dict("records")  # pandas: bytes stay bytes, lists stay sequences
        decoded = [{k: self._decode(v) for k, v in row.items() if k in IMAGE_COLUMNS}
                   for row in rows]  # fmt: skip
        if self.trained:
            results = [(out, {}) for out in self.pipe([d["image"] for d in decoded], **self.call)]
        else:
            results = [self.pipe.run(inputs, **self.call) for inputs in decoded]
        # A row's own "meta" (e.g. the input paths) leads its result's info.
        infos = [{**json.loads(row.get("meta") or "{}"), **info} for row, (_, info) in
                 zip(rows, results)]  # fmt: skip
        return pd.DataFrame({"name": [row["name"] for row in rows],
                             "png": [encode_png(image) for image, _ in results],
                             "info": [json.dumps(info) for info in infos]})  # fmt: skip

    def _decode(self, value):
        if isinstance(value, list | tuple | np.ndarray) and not isinstance(value, bytes):
            return [self._decode(v) for v in value]
        data = value if isinstance(value, bytes) else storage.read_bytes(value)
        return fit_long_side(decode(data), self.long_side, upscale=True)


def _with_local_bytes(row: dict[str, Any]) -> dict[str, Any]:
    """The row with each local input file replaced by its bytes (actors may be elsewhere)."""

    def load(value):
        if isinstance(value, list | tuple):
            return [load(v) for v in value]
        return value if storage.is_remote(value) else Path(value).read_bytes()

    return {k: load(v) if k in IMAGE_COLUMNS else v for k, v in row.items()}


def run(
    rows: list[dict[str, Any]],
    source: Source,
    out: str,
    *,
    call: dict[str, Any] | None = None,
    long_side: int = 0,
    batch_size: int = 4,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
) -> list[str]:
    """Stream ``rows`` through ``source``'s pipeline; returns the PNGs written, sorted.

    ``call``: keyword options of every pipeline call (a translation's ``direction``, Gatys
    settings); ``long_side``: inputs are resized so their long side is this (0 = as they are).
    Needs a running Ray (``genart.train.launch.init_ray``).
    """
    import ray

    dataset = ray.data.from_items([_with_local_bytes(row) for row in rows])
    results = dataset.map_batches(
        _Actor,
        fn_constructor_kwargs={"source": source, "call": call or {}, "long_side": long_side},
        batch_size=batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **actor_resources(gpus_per_actor),
    )
    return sorted(_write(results.iter_rows(), out, len(rows)))


def _write(results: Iterator[dict], out: str, total: int) -> Iterator[str]:
    """Write each result as it arrives, with a progress line; yields the PNG paths."""
    start = time.perf_counter()
    for done, row in enumerate(results, 1):
        target = storage.join(out, f"{row['name']}.png")
        storage.write_bytes(target, row["png"])
        if row["info"] != "{}":
            storage.write_bytes(storage.join(out, f"{row['name']}.json"), row["info"].encode())
        elapsed = time.perf_counter() - start
        print(f"[{done}/{total}] {target} ({elapsed:.0f}s)", file=sys.stderr, flush=True)
        yield target
