"""Ray Data pipelines: images(), paired() and unpaired() from local folders, s3:// and Parquet.

Each function returns a lazy, streaming ``ray.data.Dataset`` of float32 ``(C, size, size)``
images in [-1, 1], ready for Ray Train's ``datasets=``. How it is built, and why:

* **Listing on the driver, sorted.** The file list (or the Parquet row groups) is listed once,
  sorted, and becomes a small in-memory dataset of references. Order is therefore the same
  every epoch, and the returned dataset preserves it (``preserve_order``), which bit-exact
  resume needs. Nothing here shuffles or flips at random: the training loop does that with its
  own checkpointed RNG (``transforms.random_flip``).
* **A pass may hold several copies** (``repeat``). Ray Data starts a new execution for every
  pass over a dataset (Ray Train's epochs), and the first batch of each waits for it to start.
  For a small dataset read by a fast model that is a large share of each epoch;
  ``repeat`` copies (each shuffled apart by the loop's buffer) make one pass ``repeat`` times
  longer and pay the start once.
* **Read + decode a whole block per task.** One ``map_batches`` task reads a block of a few
  hundred files (or a Parquet row group) and emits one block of finished float32 images: no
  per-file rows or blocks, no second pass over the bytes. From object storage the reads of a
  block run concurrently (``READ_THREADS``) while the first images decode; decoding stays on
  the task's one CPU, since Ray already runs one task per CPU. Per image this costs about the
  CPU time of a torch DataLoader worker; Ray's per-file ``read_images`` costs several times
  more (``benchmarks/ingest.py``).
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
from dataclasses import dataclass

import numpy as np
import ray
from PIL import Image

from genart.data import DIRECTIONS
from genart.data.skips import SkipReport, skip_log, skip_report
from genart.data.sources import (
    Listing,
    fetch,
    list_source,
    pack_parquet,
    parquet_rows,
    read_file,
)
from genart.data.transforms import (
    DecodeError,
    decode,
    resize_crop,
    split_ab,
    to_float,
)
from genart.errors import InputError

BLOCK_BYTES = 16 * 1024**2  # decoded float32 bytes per block: big enough to amortise a task
MAX_ROWS_PER_BLOCK = 512
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
    return _build([list_source(uri)], [_Decoder(size, channels, ("image",))], column, repeat=repeat)


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
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    names = ("A", "B") if direction == "AtoB" else ("B", "A")
    return _build([list_source(uri)], [_Decoder(size, channels, names)], column, repeat=repeat)


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
    listings = [list_source(uri_a), list_source(uri_b)]
    if any(listing.parquet for listing in listings):
        raise InputError("unpaired() reads image folders (local or s3://), not Parquet")
    order = pass_order([len(listing.files) for listing in listings], repeat, seed)
    decoders = [_Decoder(size, channels, (name,)) for name in ("A", "B")]
    return _build(listings, decoders, order=order)


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
            ray.get(skip_log().skipped.remote(source, bad))
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
    blobs = [fetch(column) for column in labels]
    return _decode_rows(decoders, sources, labels, blobs)


def _decode_parquet(
    block: dict[str, np.ndarray], decoder: _Decoder, source: str, column: str, rows: int
) -> Iterator[dict[str, np.ndarray]]:
    """map_batches UDF for Parquet: each row names a (file, row group); yields decoded blocks."""
    for ref, group in zip(block["file"], block["group"]):
        for labels, blobs in parquet_rows(ref, int(group), column, rows):
            yield _decode_rows([decoder], [source], [labels], [blobs])


# ----------------------------------------------------------------------------------- assembling


def _rows_per_block(decoders: Sequence[_Decoder]) -> int:
    row_bytes = sum(len(d.names) * d.channels * d.size**2 * 4 for d in decoders)
    return max(1, min(MAX_ROWS_PER_BLOCK, BLOCK_BYTES // row_bytes))


def _build(
    listings: list[Listing],
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


def _check_readable(listing: Listing, decoder: _Decoder, column: str) -> None:
    """Record the listing, then decode images in order until one succeeds (usually the first):
    a source without a single readable image is an error now, not an empty training stream."""
    # Not waited for: the actor starts while we probe; calls from one caller run in order.
    skip_log().listed.remote(listing.uri, listing.images, listing.ignored)
    if listing.parquet:
        samples = (
            sample
            for ref, group, _ in listing.groups
            for sample in parquet_rows(ref, group, column, PROBE_ROWS)
        )
    else:
        samples = (([ref], [read_file(ref)]) for ref in listing.files)
    for labels, blobs in samples:
        decoded = _decode_rows([decoder], [listing.uri], [labels], [blobs])
        if len(decoded[decoder.names[0]]):
            return
    raise NoImagesError(f"no readable image in {listing.uri}: {skip_report(listing.uri)}")


__all__ = [
    "NoImagesError",
    "SkipReport",
    "images",
    "pack_parquet",
    "paired",
    "pass_order",
    "skip_report",
    "unpaired",
]
