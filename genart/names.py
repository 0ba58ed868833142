"""Model names: the sub-folders of a catalogue, and URL segments of the routes that serve them
(``/style/<name>``). Torch-free, so that the HTTP ingress checks a name before routing it."""

from __future__ import annotations

import re

from genart.errors import InputError

# Lower case, digits, '.', '_' and '-', starting with a letter or digit: safe in a URL path, an
# S3 key and a case-insensitive file system alike.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    """``name`` if it is a valid model name, else an InputError saying what one is."""
    if not NAME.fullmatch(name):
        raise InputError(
            f"model name {name!r} is not URL-safe: use 1-64 lower-case letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )
    return name
