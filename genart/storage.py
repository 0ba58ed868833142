"""Local paths and remote URIs (s3://, gs://, ...) behind one small interface (pyarrow.fs).

Run outputs, checkpoints and exported generators may live on a local disk or in object storage;
everything that reads or writes them goes through these helpers, so S3 support (including a
custom ``AWS_ENDPOINT_URL`` for S3-compatible stores) is not scattered across the code.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pyarrow.fs as pafs


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than file:// (s3://bucket/key, gs://...)."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def absolute(uri: str) -> str:
    """Remote URIs unchanged; local paths (``file://`` ones too) made absolute plain paths
    (Ray Train requires it)."""
    return str(uri) if is_remote(uri) else str(Path(_local(uri)).expanduser().resolve())


def _local(path: str) -> str:
    """A local path without its ``file://`` scheme, if it has one."""
    return str(path).removeprefix("file://")


# S3 answers bursts of writes with 503 SlowDown and drops the odd connection; pyarrow's default
# of 3 attempts lets a checkpoint upload fail on a busy bucket, so S3 requests get more tries
# (AWS "standard" mode: exponential backoff with jitter).
S3_ATTEMPTS = 10


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or remote URI.

    S3 reads the standard AWS variables, ``AWS_ENDPOINT_URL`` included (S3-compatible stores),
    and retries failed requests up to ``S3_ATTEMPTS`` times, in this process and in every Ray
    worker the filesystem is sent to.
    """
    if not is_remote(uri):
        return pafs.LocalFileSystem(), absolute(uri)
    fs, path = pafs.FileSystem.from_uri(uri)
    if isinstance(fs, pafs.S3FileSystem):
        # The options from_uri resolved (region, endpoint, ...), as pyarrow pickles them.
        options = fs.__reduce__()[1][0]
        fs = pafs.PyFileSystem(RetryingS3(options))
    return fs, path


def ray_storage(uri: str) -> dict:
    """``storage_path`` (and for remote URIs ``storage_filesystem``) for a Ray RunConfig, so
    Ray's own checkpoint uploads go through :func:`filesystem` and its retries."""
    if not is_remote(uri):
        return {"storage_path": absolute(uri)}
    fs, path = filesystem(uri)
    return {"storage_path": path, "storage_filesystem": fs}


def uri(fs: pafs.FileSystem, path: str) -> str:
    """The local path or ``scheme://`` URI of ``path`` inside ``fs`` (e.g. a Ray checkpoint's)."""
    scheme = fs.type_name.removeprefix("py::")
    return path if scheme == "local" else f"{scheme}://{path}"


class RetryingS3(pafs.FileSystemHandler):
    """An S3 filesystem with ``S3_ATTEMPTS`` attempts per request, for ``pafs.PyFileSystem``.

    pyarrow drops an ``S3FileSystem``'s retry strategy when it is pickled, and Ray pickles the
    storage filesystem to every Train worker, which uploads the checkpoints. This handler pickles
    only the S3 options (region, endpoint, credentials source, ...) and builds the S3 client,
    retries included, in each process on first use.
    """

    def __init__(self, options: dict) -> None:
        self.options = options
        self._fs: pafs.S3FileSystem | None = None

    def __reduce__(self):
        return RetryingS3, (self.options,)

    @property
    def fs(self) -> pafs.S3FileSystem:
        if self._fs is None:
            retry = pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS)
            self._fs = pafs.S3FileSystem(**self.options, retry_strategy=retry)
        return self._fs

    def __eq__(self, other) -> bool:
        return isinstance(other, RetryingS3) and other.options == self.options

    def get_type_name(self):
        return "s3"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.fs.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path, metadata=metadata)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    if is_remote(uri):
        return "/".join([str(uri).rstrip("/"), *parts])
    return str(Path(_local(uri), *parts))


def exists(uri: str) -> bool:
    """Whether a file or folder exists at ``uri``."""
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_dirs(uri: str) -> list[str]:
    """Names of the sub-folders directly under ``uri`` (empty if it does not exist)."""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def list_files(uri: str) -> list[str]:
    """Paths of every file under ``uri``, relative to it and sorted (empty if it does not exist).

    On object storage a "folder" may be a prefix with no marker object, so this lists
    whatever is there rather than asking whether the folder exists.
    """
    fs, path = filesystem(uri)
    root = path.rstrip("/") + "/"
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except NotADirectoryError:  # a file: nothing lies under it
        return []
    return sorted(i.path.removeprefix(root) for i in infos if i.type == pafs.FileType.File)


def read_bytes(uri: str) -> bytes:
    """The whole content of one file, local or remote (FileNotFoundError names it if absent)."""
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise
    except OSError as err:
        # pyarrow reports a missing object as a generic OSError; say which file it was.
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{uri} does not exist") from err
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Write one file, local or remote, creating its folder."""
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def remove(uri: str) -> None:
    """Delete the file or folder (everything under it) at ``uri``; nothing if there is none."""
    fs, path = filesystem(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.File:
        fs.delete_file(path)
    elif kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif is_remote(uri):  # on object storage a folder may be a prefix without a marker
        for name in list_files(uri):
            fs.delete_file(f"{path.rstrip('/')}/{name}")


def sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a local file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def upload_dir(local: str | Path, uri: str) -> None:
    """Copy a local folder's contents to ``uri`` (no-op when ``uri`` is that same folder)."""
    if not is_remote(uri) and Path(absolute(uri)) == Path(local).resolve():
        return
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(
        str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
    )


def upload_file(local: str | Path, uri: str) -> None:
    """Copy one local file to ``uri`` (a path or remote URI), creating its folder."""
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pafs.copy_files(
        str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
    )


def local_copy(uri: str) -> Path:
    """A local folder with the contents of ``uri``: the folder itself if local, else a download."""
    if not is_remote(uri):
        return Path(absolute(uri))
    fs, path = filesystem(uri)
    target = Path(tempfile.mkdtemp(prefix="genart-"))
    pafs.copy_files(
        path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )
    return target
