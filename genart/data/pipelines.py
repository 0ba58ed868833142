"""Ray Data pipelines: images(), paired() and unpaired() from local folders, s3:// and Parquet.

Each function returns a lazy, streaming ``ray.data.Dataset`` of float32 ``(C, size, size)``
images in [-1, 1], ready for Ray Train's ``datasets=``. How it is built, and why:

* **Listing on the driver, sorted.** The file list (or the Parquet row groups) is listed once,
  sorted, and becomes a small in-memory dataset of references. Order is therefore the same
  every epoch, and the returned dataset preserves it (``preserve_order``), which bit-exact
  resume needs. Nothing here shuffles or flips at random: the training loop does that with its
  own checkpointed RNG (``transforms.random_flip``).
* **A pass may hold several copies** (``repeat``). Ray Data starts a new execution for every
  pass over a dataset (Ray Train's epochs): the first batch of each waited 130-200 ms on 2
  cores. For a small dataset read by a fast model that is a large share of each epoch;
  ``repeat`` copies (each shuffled apart by the loop's buffer) make one pass ``repeat`` times
  longer and pay the start once.
* **Read + decode a whole block per task.** One ``map_batches`` task reads a block of a few
  hundred files (or a Parquet row group) and emits one block of finished float32 images: no
  per-file rows or blocks, no second pass over the bytes. From object storage the reads of a
  block run concurrently (``READ_THREADS``) while the first images decode; decoding stays on
  the task's one CPU, since Ray already runs one task per CPU. Per image this costs about the
  CPU time of a torch DataLoader worker (see ``benchmarks/ingest.py``); Ray's per-file
  ``read_images`` costs 2-3 times more.
* **Unreadable images are skipped, not fatal.** Zero-byte, truncated, corrupt and non-image
  files with an image extension are dropped from their block and recorded, with the reason, in
  a small named actor of this Ray job (so tasks on any node can report them). The
  :func:`skip_report` one-liner counts them against the listing, which also counts the files
  without an image extension that were ignored (a ``labels.csv`` sidecar). Before returning,
  each pipeline decodes images in order until one succeeds, so a source with no readable image
  fails at once with :class:`NoImagesError` instead of training on an empty stream.

Sources: a local folder (searched recursively for ``IMAGE_EXTENSIONS``), an ``s3://bucket/prefix``
(pyarrow's S3 filesystem: standard AWS variables, ``AWS_ENDPOINT_URL`` included), or a
``.parquet`` file / a folder of them with an image-bytes column (``column``; Hugging Face's
``{bytes, path}`` image struct works too). :func:`pack_parquet` turns a folder into such shards.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from PIL import Image
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from genart import storage
from genart.config import InputError
from genart.data.transforms import (
    IMAGE_EXTENSIONS,
    DecodeError,
    decode,
    resize_crop,
    split_ab,
    to_float,
)

PARQUET_EXTENSION = ".parquet"
BLOCK_BYTES = 16 * 1024**2  # decoded float32 bytes per block: big enough to amortise a task
MAX_ROWS_PER_BLOCK = 512
READ_THREADS = 16  # concurrent reads per task from object storage (as Ray's own downloads)
ROW_GROUP_ROWS = 256  # pack_parquet's row groups: the unit one read task decodes
SKIP_LOG_NAME = "genart.data.skips"
EXAMPLES = 3  # unreadable paths named in the summary
PROBE_ROWS = 16  # Parquet rows decoded at a time while looking for a first readable image


class NoImagesError(InputError):
    """A source holds no readable image at all (empty, or every image file is unreadable)."""


# ---------------------------------------------------------------------------------- public API


def images(
    uri: str, size: int = 64, channels: int = 3, column: str = "image", repeat: int = 1
) -> ray.data.Dataset:
    """Dataset with one column ``image``: float32 ``(channels, size, size)`` in [-1, 1].

    ``uri`` is a local folder, an ``s3://`` prefix, or a Parquet file/folder whose ``column``
    holds encoded image bytes. Images are resized (shorter side) and centre-cropped.
    ``repeat``: copies of the data in one pass (see the module docstring).
    """
    return _build([_list(uri)], [_Decoder(size, channels, ("image",))], column, repeat=repeat)


def paired(
    uri: str,
    size: int,
    channels: int = 3,
    direction: str = "AtoB",
    column: str = "image",
    repeat: int = 1,
) -> ray.data.Dataset:
    """Dataset with columns ``A`` and ``B`` from aligned side-by-side A|B images (pix2pix).

    ``uri`` is e.g. ``DIR/train``. Each half is resized and cropped to ``size``;
    ``direction="BtoA"`` swaps them, so ``A`` is always the model's input.
    """
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
    names = ("A", "B") if direction == "AtoB" else ("B", "A")
    return _build([_list(uri)], [_Decoder(size, channels, names)], column, repeat=repeat)


def unpaired(
    uri_a: str, uri_b: str, size: int, channels: int = 3, seed: int = 0, repeat: int = 1
) -> ray.data.Dataset:
    """Dataset with columns ``A`` and ``B`` from two unaligned folders (CycleGAN).

    Its length is that of the larger domain (A if equal), read in sorted order; the other one
    is cycled, each cycle in a fresh permutation drawn from ``seed``, so pairings vary (never
    the listing order's, even for domains of one size) yet every epoch (and every run with
    the same seed) sees the same rows. Folders only, not Parquet: cycling
    a permutation needs random access to single images.
    """
    listings = [_list(uri_a), _list(uri_b)]
    if any(listing.parquet for listing in listings):
        raise InputError("unpaired() reads image folders (local or s3://), not Parquet")
    order = pass_order([len(listing.files) for listing in listings], repeat, seed)
    decoders = [_Decoder(size, channels, (name,)) for name in ("A", "B")]
    return _build(listings, decoders, order=order)


@dataclass(frozen=True)
class SkipReport:
    """What was skipped so far; ``str()`` gives the one-line summary to print."""

    images: int  # image files (or Parquet rows) listed
    skipped: int  # of those, found unreadable so far (each counted once, however many epochs)
    ignored: int  # files without an image extension, never read
    examples: tuple[str, ...]  # a few unreadable paths with the reason

    def __str__(self) -> str:
        line = f"data: {self.images - self.skipped} of {self.images} images readable"
        if self.skipped:
            line += f", {self.skipped} skipped (e.g. {'; '.join(self.examples)})"
        if self.ignored:
            line += f", {self.ignored} non-image file(s) ignored"
        return line


def skip_report(*uris: str) -> SkipReport:
    """Counts for the given sources (default: every source read in this Ray job).

    Complete once a full pass over the data has run (e.g. after the first epoch); works on the
    driver and inside Ray Train workers alike. Call ``print(skip_report())`` for the summary.
    """
    return ray.get(_skip_log().report.remote(list(uris)))


def pack_parquet(src: str, dst: str, rows_per_file: int = 2048) -> list[str]:
    """Pack the image files under ``src`` into Parquet shards under ``dst``; returns their URIs.

    Shards ``part-00000.parquet``, ... hold the raw encoded bytes (column ``image``) and the
    path relative to ``src`` (``path``), in sorted order, in row groups of ``ROW_GROUP_ROWS``
    (the unit one read task decodes). Bytes are copied unchanged: unreadable images are
    reported when the shards are read, like files in a folder.
    """
    if rows_per_file < 1:
        raise InputError(f"rows_per_file must be >= 1, got {rows_per_file}")
    listing = _list(src)
    if listing.parquet:
        raise InputError(f"{src} already holds Parquet files")
    root = storage.filesystem(src)[1].rstrip("/") + "/"
    fs, base = storage.filesystem(dst)
    fs.create_dir(base, recursive=True)
    schema = pa.schema([("image", pa.binary()), ("path", pa.string())])
    shards = []
    for number, start in enumerate(range(0, len(listing.files), rows_per_file)):
        name = f"part-{number:05d}{PARQUET_EXTENSION}"
        with pq.ParquetWriter(f"{base}/{name}", schema, filesystem=fs) as writer:
            shard = listing.files[start : start + rows_per_file]
            for group in range(0, len(shard), ROW_GROUP_ROWS):  # memory: one row group
                refs = shard[group : group + ROW_GROUP_ROWS]
                paths = [_path(ref).removeprefix(root) for ref in refs]
                columns = [pa.array(_fetch(refs), pa.binary()), pa.array(paths, pa.string())]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        shards.append(storage.join(dst, name))
    return shards


# -------------------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class _Listing:
    """One source, listed on the driver: sorted image (or Parquet) files and what was ignored."""

    uri: str
    files: tuple[str, ...]  # local absolute paths or full s3:// URIs, sorted
    ignored: int  # files of other types
    parquet: bool
    groups: tuple[tuple[str, int, int], ...] = ()  # Parquet: (file, row group, rows)

    @property
    def images(self) -> int:
        return sum(rows for *_, rows in self.groups) if self.parquet else len(self.files)


def _list(uri: str) -> _Listing:
    fs, path = storage.filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such file or folder: {uri}")
    if info.type == pafs.FileType.File:
        infos = [info]
    else:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    scheme = uri.partition("://")[0] + "://" if storage.is_remote(uri) else ""
    names = sorted(scheme + i.path for i in infos if i.type == pafs.FileType.File)
    parquet = [n for n in names if n.lower().endswith(PARQUET_EXTENSION)]
    files = parquet or [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise FileNotFoundError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) or Parquet files under {uri}"
        )
    groups = tuple((ref, g, rows) for ref in parquet for g, rows in enumerate(_row_groups(ref)))
    return _Listing(uri, tuple(files), len(names) - len(files), bool(parquet), groups)


def _row_groups(ref: str) -> list[int]:
    """Rows in each row group of a Parquet file (its footer only)."""
    fs, path = _open_fs(ref)
    with fs.open_input_file(path) as f:
        metadata = pq.ParquetFile(f).metadata
    return [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]


def _path(ref: str) -> str:
    """The path inside its filesystem of a listed file (a local path or scheme://bucket/key)."""
    return ref.partition("://")[2] if storage.is_remote(ref) else ref


@functools.cache
def _filesystem(bucket_uri: str) -> pafs.FileSystem:
    # One S3 client per bucket and process: creating one resolves credentials and region.
    return storage.filesystem(bucket_uri)[0]


def _open_fs(ref: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path of a listed file, reusing one filesystem per bucket."""
    if not storage.is_remote(ref):
        return pafs.LocalFileSystem(), ref
    scheme, _, path = ref.partition("://")
    return _filesystem(f"{scheme}://{path.split('/', 1)[0]}"), path


def _read_bytes(ref: str) -> bytes:
    if not storage.is_remote(ref):
        with open(ref, "rb") as f:  # plain open: the fastest way to read a small local file
            return f.read()
    fs, path = _open_fs(ref)
    with fs.open_input_stream(path) as f:
        return f.readall()


def pass_order(lengths: Sequence[int], repeat: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Which file each row of one pass reads, per source: ``repeat`` copies of the (first)
    longest source in sorted order; every other source is cycled in fresh permutations drawn
    from ``seed``, so each copy pairs it differently. Equal lengths too: two domains listed in
    the same order (a synthetic set, frames of one scene) must not be read as aligned pairs.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    count = max(lengths)
    anchor = list(lengths).index(count)
    return [
        np.tile(np.arange(n), repeat) if i == anchor else _cycle(n, count * repeat, seed)
        for i, n in enumerate(lengths)
    ]


def _cycle(length: int, count: int, seed: int) -> np.ndarray:
    """``count`` indices into ``range(length)``: consecutive seeded permutations, concatenated."""
    rng = np.random.default_rng(seed)
    cycles = math.ceil(count / length)
    return np.concatenate([rng.permutation(length) for _ in range(cycles)])[:count]


# ------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class _Decoder:
    """Encoded bytes -> named uint8 ``(size, size, C)`` images; shipped to every task.

    One name decodes a whole image; two names split an aligned A|B image into its halves.
    """

    size: int
    channels: int
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.size < 1 or self.channels not in (1, 3):
            raise ValueError(f"need size >= 1 and channels 1 or 3: {self.size}, {self.channels}")

    def __call__(self, data: bytes) -> dict[str, np.ndarray] | str:
        """The images, or the reason they cannot be read."""
        try:
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; a data loader skips.
            array = decode(
                data, self.channels, max_pixels=Image.MAX_IMAGE_PIXELS, min_size=self.size
            )
        except DecodeError as err:
            return str(err)
        parts = split_ab(array) if len(self.names) == 2 else (array,)
        return {name: resize_crop(part, self.size) for name, part in zip(self.names, parts)}

    def stack(self, rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Decoded rows -> float32 ``(N, C, size, size)`` columns in [-1, 1] (N may be 0)."""
        empty = np.empty((0, self.channels, self.size, self.size), np.float32)
        return {n: to_float(np.stack([r[n] for r in rows])) if rows else empty for n in self.names}


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # One pool per worker process, created on first use (a pool cannot be pickled into tasks).
    return ThreadPoolExecutor(READ_THREADS, thread_name_prefix="genart-read")


def _fetch(refs: Sequence[str]) -> Iterator[bytes]:
    """The files' bytes in order, lazily. Object-store reads all start at once, so decoding
    the first ones overlaps the wait for the rest; local files are read one by one (a thread
    hop costs more than reading a small file from disk)."""
    if refs and storage.is_remote(refs[0]):
        return _pool().map(_read_bytes, refs)
    return map(_read_bytes, refs)


def _decode_rows(
    decoders: Sequence[_Decoder],
    sources: Sequence[str],
    labels: Sequence[Sequence[str]],
    blobs: Sequence[Iterable[bytes]],
) -> dict[str, np.ndarray]:
    """Decode one block: ``blobs[k]`` with ``decoders[k]``. Rows whose images all decode are
    kept; unreadable images are recorded under ``sources[k]`` by their ``labels[k]``."""
    # Decoded in this thread: a task holds one CPU, and Ray runs one task per CPU.
    results = [[decoder(blob) for blob in column] for decoder, column in zip(decoders, blobs)]
    for source, names, column in zip(sources, labels, results):
        bad = {name: r for name, r in zip(names, column) if isinstance(r, str)}
        if bad:
            # Waited for, so a report taken after the pass is complete; rare, so cheap.
            ray.get(_skip_log().skipped.remote(source, bad))
    keep = [not any(isinstance(r, str) for r in row) for row in zip(*results)]
    batch = {}
    for decoder, column in zip(decoders, results):
        batch |= decoder.stack([r for r, ok in zip(column, keep) if ok])
    return batch


def _decode_files(
    block: dict[str, np.ndarray], decoders: Sequence[_Decoder], sources: Sequence[str]
) -> dict[str, np.ndarray]:
    """map_batches UDF for folders: column ``k`` holds file references for ``decoders[k]``."""
    labels = [list(block[str(k)]) for k in range(len(decoders))]
    blobs = [_fetch(column) for column in labels]
    return _decode_rows(decoders, sources, labels, blobs)


def _decode_parquet(
    block: dict[str, np.ndarray], decoder: _Decoder, source: str, column: str, rows: int
) -> Iterator[dict[str, np.ndarray]]:
    """map_batches UDF for Parquet: each row names a (file, row group); yields decoded blocks."""
    for ref, group in zip(block["file"], block["group"]):
        for labels, blobs in _parquet_rows(ref, int(group), column, rows):
            yield _decode_rows([decoder], [source], [labels], [blobs])


def _parquet_rows(
    ref: str, group: int, column: str, rows: int
) -> Iterator[tuple[list[str], list[bytes]]]:
    """(labels, encoded images) of one row group, ``rows`` at a time."""
    fs, path = _open_fs(ref)
    with fs.open_input_file(path) as f:
        parquet = pq.ParquetFile(f)
        if column not in parquet.schema_arrow.names:
            raise InputError(f"{ref} has no column {column!r}: {parquet.schema_arrow.names}")
        has_path = "path" in parquet.schema_arrow.names
        first = sum(parquet.metadata.row_group(g).num_rows for g in range(group))
        columns = [column, "path"] if has_path else [column]
        for batch in parquet.iter_batches(rows, row_groups=[group], columns=columns):
            if has_path:
                labels = [f"{ref}:{p}" for p in batch.column("path").to_pylist()]
            else:
                labels = [f"{ref}:row {first + i}" for i in range(batch.num_rows)]
            first += batch.num_rows
            yield labels, _image_bytes(batch.column(column))


def _image_bytes(values: pa.Array) -> list[bytes]:
    # Hugging Face datasets store images as a struct {bytes, path}.
    if pa.types.is_struct(values.type):
        values = values.field("bytes")
    return values.to_pylist()


# ----------------------------------------------------------------------------------- assembling


def _rows_per_block(decoders: Sequence[_Decoder]) -> int:
    row_bytes = sum(len(d.names) * d.channels * d.size**2 * 4 for d in decoders)
    return max(1, min(MAX_ROWS_PER_BLOCK, BLOCK_BYTES // row_bytes))


def _build(
    listings: list[_Listing],
    decoders: list[_Decoder],
    column: str = "image",
    order: list[Sequence[int]] | None = None,
    repeat: int = 1,
) -> ray.data.Dataset:
    """The lazy dataset: row ``i`` decodes ``listings[k].files[order[k][i]]`` with
    ``decoders[k]`` (default order: every file once per copy, ``repeat`` copies); Parquet
    decodes row group by row group."""
    for listing, decoder in zip(listings, decoders):
        _check_readable(listing, decoder, column)
    rows = _rows_per_block(decoders)
    if listings[0].parquet:
        groups = [{"file": ref, "group": g} for ref, g, _ in listings[0].groups]
        items = [groups[i] for i in pass_order([len(groups)], repeat)[0]]
        udf = functools.partial(
            _decode_parquet, decoder=decoders[0], source=listings[0].uri, column=column, rows=rows
        )
        blocks = len(items)
    else:
        order = order or pass_order([len(listings[0].files)], repeat)
        columns = [[listing.files[i] for i in idx] for listing, idx in zip(listings, order)]
        items = [{str(k): ref for k, ref in enumerate(row)} for row in zip(*columns)]
        sources = [listing.uri for listing in listings]
        udf = functools.partial(_decode_files, decoders=decoders, sources=sources)
        blocks = math.ceil(len(items) / rows)
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    dataset = dataset.map_batches(udf, batch_size=None)
    # The same rows in the same order every epoch, also outside Ray Train (which sets its own).
    dataset.context.execution_options.preserve_order = True
    return dataset


def _check_readable(listing: _Listing, decoder: _Decoder, column: str) -> None:
    """Record the listing, then decode images in order until one succeeds (usually the first):
    a source without a single readable image is an error now, not an empty training stream."""
    # Not waited for: the actor starts while we probe; calls from one caller run in order.
    _skip_log().listed.remote(listing.uri, listing.images, listing.ignored)
    if listing.parquet:
        samples = (
            sample
            for ref, group, _ in listing.groups
            for sample in _parquet_rows(ref, group, column, PROBE_ROWS)
        )
    else:
        samples = (([ref], [_read_bytes(ref)]) for ref in listing.files)
    for labels, blobs in samples:
        decoded = _decode_rows([decoder], [listing.uri], [labels], [blobs])
        if len(decoded[decoder.names[0]]):
            return
    raise NoImagesError(f"no readable image in {listing.uri}: {skip_report(listing.uri)}")


# ----------------------------------------------------------------------------------- skip report


@ray.remote(num_cpus=0)
class _SkipLog:
    """This job's record, by source URI, of listed images and of the unreadable ones."""

    def __init__(self) -> None:
        self._listed: dict[str, tuple[int, int]] = {}  # source -> (images, ignored files)
        self._bad: dict[str, dict[str, str]] = {}  # source -> {path: reason}

    def listed(self, source: str, images: int, ignored: int) -> None:
        self._listed[source] = (images, ignored)

    def skipped(self, source: str, bad: dict[str, str]) -> None:
        self._bad.setdefault(source, {}).update(bad)

    def report(self, sources: list[str]) -> SkipReport:
        sources = sources or list(self._listed)
        bad = {path: why for s in sources for path, why in self._bad.get(s, {}).items()}
        listed = [self._listed.get(s, (0, 0)) for s in sources]
        return SkipReport(
            images=sum(images for images, _ in listed),
            skipped=len(bad),
            ignored=sum(ignored for _, ignored in listed),
            examples=tuple(f"{path}: {bad[path]}" for path in sorted(bad)[:EXAMPLES]),
        )


_SKIP_LOGS: dict[str, ray.actor.ActorHandle] = {}  # namespace (one per job) -> handle


def _skip_log() -> ray.actor.ActorHandle:
    """The job's skip log, created by the first caller (the driver, building a dataset).

    Named in the job's namespace, so the driver, data tasks on any node and Train workers all
    share it. A named actor dies with its last handle, so each process keeps its handle. It is
    placed on its creator's node (the driver's, which the job cannot outlive anyway): left to
    the scheduler it may land on a worker node, and losing that node would fail the training
    run that asks it for the report.
    """
    if not ray.is_initialized():
        ray.init()  # what any Ray Data call would do first
    context = ray.get_runtime_context()
    if context.namespace not in _SKIP_LOGS:
        here = NodeAffinitySchedulingStrategy(context.get_node_id(), soft=True)
        log = _SkipLog.options(name=SKIP_LOG_NAME, get_if_exists=True, scheduling_strategy=here)
        _SKIP_LOGS[context.namespace] = log.remote()
    return _SKIP_LOGS[context.namespace]
