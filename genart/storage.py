"""Local paths and remote URIs (s3://, gs://, ...) behind one small interface (pyarrow.fs).

Run outputs, checkpoints and exported generators may live on a local disk or in object storage;
everything that reads or writes them goes through these helpers, so S3 support (including a
custom ``AWS_ENDPOINT_URL`` for S3-compatible stores) is not scattered across the code.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow.fs as pafs


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than file:// (s3://bucket/key, gs://...)."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def absolute(uri: str) -> str:
    """Remote URIs unchanged; local paths made absolute (Ray Train requires it)."""
    return str(uri) if is_remote(uri) else str(Path(uri).expanduser().resolve())


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or remote URI."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), absolute(uri)
    # pyarrow reads the standard AWS variables, AWS_ENDPOINT_URL included (S3-compatible stores).
    return pafs.FileSystem.from_uri(uri)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    return "/".join([str(uri).rstrip("/"), *parts]) if is_remote(uri) else str(Path(uri, *parts))


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


def upload_dir(local: str | Path, uri: str) -> None:
    """Copy a local folder's contents to ``uri`` (no-op when ``uri`` is that same folder)."""
    if not is_remote(uri) and Path(uri).resolve() == Path(local).resolve():
        return
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)
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
