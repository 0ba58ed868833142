"""Where training images come from: listing a local folder, an ``s3://`` prefix or Parquet
shards once, on the driver, and reading their bytes in the data tasks.

Listings are sorted, so every epoch (and every resumed run) sees the same order. Object-store
reads of a block all start at once (``READ_THREADS``), so decoding the first images overlaps
the wait for the rest; local files are read one by one. :func:`pack_parquet` turns a folder
into shards of raw encoded images.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genart import storage
from genart.data.transforms import IMAGE_EXTENSIONS
from genart.errors import InputError

PARQUET_EXTENSION = ".parquet"
READ_THREADS = 16  # concurrent reads per task from object storage (as Ray's own downloads)
ROW_GROUP_ROWS = 256  # pack_parquet's row groups: the unit one read task decodes


def pack_parquet(src: str, dst: str, rows_per_file: int = 2048) -> list[str]:
    """Pack the image files under ``src`` into Parquet shards under ``dst``; returns their URIs.

    Shards ``part-00000.parquet``, ... hold the raw encoded bytes (column ``image``) and the
    path relative to ``src`` (``path``), in sorted order, in row groups of ``ROW_GROUP_ROWS``
    (the unit one read task decodes). Bytes are copied unchanged: unreadable images are
    reported when the shards are read, like files in a folder.
    """
    if rows_per_file < 1:
        raise InputError(f"rows_per_file must be >= 1, got {rows_per_file}")
    listing = list_source(src)
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
                columns = [pa.array(fetch(refs), pa.binary()), pa.array(paths, pa.string())]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        shards.append(storage.join(dst, name))
    return shards


@dataclass(frozen=True)
class Listing:
    """One source, listed on the driver: sorted image (or Parquet) files and what was ignored."""

    uri: str
    files: tuple[str, ...]  # local absolute paths or full s3:// URIs, sorted
    ignored: int  # files of other types
    parquet: bool
    groups: tuple[tuple[str, int, int], ...] = ()  # Parquet: (file, row group, rows)

    @property
    def images(self) -> int:
        return sum(rows for *_, rows in self.groups) if self.parquet else len(self.files)


def list_source(uri: str) -> Listing:
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
    return Listing(uri, tuple(files), len(names) - len(files), bool(parquet), groups)


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


def read_file(ref: str) -> bytes:
    if not storage.is_remote(ref):
        with open(ref, "rb") as f:  # plain open: the fastest way to read a small local file
            return f.read()
    fs, path = _open_fs(ref)
    with fs.open_input_stream(path) as f:
        return f.readall()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # One pool per worker process, created on first use (a pool cannot be pickled into tasks).
    return ThreadPoolExecutor(READ_THREADS, thread_name_prefix="genart-read")


def fetch(refs: Sequence[str]) -> Iterator[bytes]:
    """The files' bytes in order, lazily. Object-store reads all start at once, so decoding
    the first ones overlaps the wait for the rest; local files are read one by one (a thread
    hop costs more than reading a small file from disk)."""
    if refs and storage.is_remote(refs[0]):
        return _pool().map(read_file, refs)
    return map(read_file, refs)


def parquet_rows(
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
