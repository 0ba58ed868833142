"""Downloading published weight files: verified, atomic, with progress on genart's console.

Files follow torchvision's naming convention: the name ends in ``-<first hex digits of the
file's sha256>.pth`` (``vgg16-397923af.pth``), and the download is checked against that prefix.

Why not ``torch.hub.download_url_to_file``, which also writes beside the target, checks that
prefix and renames: its progress goes to tqdm, or without tqdm (not a genart dependency) to a
bare ``\\r52.1%`` counter on stderr, which neither reaches genart's console from a Ray worker
nor reads well in a log; a transfer cut short is reported only as a hash mismatch; and its
errors are urllib's and RuntimeError, not one line a user can act on. The loop below is short.

``GENART_OFFLINE=1`` forbids downloading: callers then fail with their "not found" message.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, MutableMapping
from pathlib import Path

from genart import console

OFFLINE_ENV = "GENART_OFFLINE"
CHUNK = 1 << 20
TIMEOUT_S = 60.0  # per connection attempt and per read: a stalled server fails, not hangs
MAX_BYTES = 2 << 30  # far above any file genart fetches (VGG19: 548 MB); a full disk is worse
PROGRESS_STEPS = 10  # progress lines per file: one each tenth
# torchvision's convention (torch.hub's HASH_REGEX, made strict): at least 8 hex digits.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[^/]+$")


class DownloadError(OSError):
    """A download failed; nothing was written. The message is one line for the console."""


def offline(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether downloading is off: ``GENART_OFFLINE`` set to anything but 0 or empty."""
    return environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def hash_prefix(url: str) -> str:
    """The sha256 prefix a published file's name carries (``vgg16-397923af.pth`` -> 397923af)."""
    found = _HASH_IN_NAME.search(url)
    if found is None:
        raise ValueError(f"{url}: the file name carries no sha256 prefix (name-<hex>.pth)")
    return found.group(1)


def download(url: str, target: Path, emit: Callable[..., None] = console.emit) -> Path:
    """Fetch ``url`` to ``target``, checking its size and the sha256 prefix in its name.

    The bytes go to a temporary file beside ``target``, which is renamed over it only once
    verified: an interrupted, short or wrong download leaves nothing behind, and concurrent
    fetches of one file (Ray workers on a node) never read a partial file. ``emit`` prints
    the progress lines (genart's console by default). Raises :class:`DownloadError`.
    """
    expected = hash_prefix(url)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _transfer(url, out, emit)
        if not digest.startswith(expected):
            raise DownloadError(
                f"{url}: wrong content (sha256 {digest[:16]}..., the name says {expected}...)"
            )
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def _transfer(url: str, out, emit: Callable[..., None]) -> str:
    """Copy ``url``'s body into ``out``; returns its sha256 hex digest."""
    sha256, done = hashlib.sha256(), 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "genart"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            if total > MAX_BYTES:
                raise DownloadError(f"{url}: {_mb(total)} is over the {_mb(MAX_BYTES)} limit")
            progress = _Progress(url, total, emit)
            while chunk := response.read(CHUNK):
                done += len(chunk)
                if done > MAX_BYTES:
                    raise DownloadError(f"{url}: more than {_mb(MAX_BYTES)}; stopped")
                out.write(chunk)
                sha256.update(chunk)
                progress.update(done)
    except (OSError, http.client.HTTPException) as err:  # urllib's HTTPError/URLError included
        if isinstance(err, DownloadError):
            raise
        raise DownloadError(f"{url}: {_reason(err)}") from err
    if total and done != total:
        raise DownloadError(f"{url}: transfer cut short ({done} of {total} bytes)")
    return sha256.hexdigest()


class _Progress:
    """Progress lines for one download: the first, one each tenth, and the last."""

    def __init__(self, url: str, total: int, emit: Callable[..., None]):
        self.name, self.total, self.emit = url.rsplit("/", 1)[-1], total, emit
        self.shown = -1
        self.started = time.monotonic()
        size = _mb(total) if total else "size unknown"
        emit(f"genart: downloading {url} ({size})")

    def update(self, done: int) -> None:
        if not self.total:
            return
        step = PROGRESS_STEPS * done // self.total
        if step > self.shown:
            self.shown = step
            rate = done / max(time.monotonic() - self.started, 1e-6)
            percent = 100 * done // self.total
            line = f"{self.name}: {percent}% of {_mb(self.total)} ({_mb(rate)}/s)"
            self.emit(line, (done, self.total))


def _mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def _reason(err: Exception) -> str:
    """What went wrong, in words: ``HTTP 404 Not Found``, ``connection refused``..."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, http.client.IncompleteRead):
        return "transfer cut short"
    reason = getattr(err, "reason", None) or err  # URLError wraps the socket's error
    return " ".join(str(reason).split()) or type(err).__name__
