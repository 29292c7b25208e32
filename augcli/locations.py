"""Where a command reads and writes, as given: a folder or an object-store URL.

Parsing a location and the recipe's ``storage:`` options needs no storage
library and opens nothing, so the recipe parser (and with it
``augcli.load_transform``) does not import the stores: ``augcli.stores``
opens what these name.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import excerpt

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
# Option names that hold secrets: those come from the environment, never from a recipe.
_SECRET_WORDS = {"key", "secret", "password", "passwd", "token", "credential", "credentials",
                 "sas", "signature", "private", "connection", "auth", "authorization"}
_SECRET_TEXT = re.compile(r"AccountKey=|SharedAccessSignature=|[?&]sig=|PRIVATE KEY",
                          re.IGNORECASE)
# gcsfs names its ways to authenticate with ``token``: these words are not secrets.
_TOKEN_METHODS = {"anon", "google_default", "cache", "cloud", "browser"}


def is_url(value) -> bool:
    return isinstance(value, str) and _URL.match(value) is not None


def scheme(url: str) -> str:
    """``S3://bucket`` -> ``s3``; a folder has none (``""``)."""
    match = _URL.match(url)
    return match.group(1).lower() if match else ""


def location(value, base_dir: Path | None = None):
    """A folder (``Path``, relative ones against ``base_dir``) or a URL (``str``, no
    trailing slash); None stays None."""
    if value is None:
        return None
    match = _URL.match(value) if isinstance(value, str) else None
    if match:
        name, rest = match.groups()
        return f"{name.lower()}://{rest.rstrip('/')}"
    folder = Path(value).expanduser()
    return folder if folder.is_absolute() or base_dir is None else base_dir / folder


def join(where, relative: str):
    """``relative`` (a POSIX path) under a folder (a ``Path``) or a URL prefix (a ``str``)."""
    return where / relative if isinstance(where, Path) else f"{where}/{relative}"


def split(where) -> tuple:
    """(parent, name) of a file given as a path or a URL."""
    if isinstance(where, Path):
        return where.parent, where.name
    parent, _, name = where.rpartition("/")
    return parent, name


# --- recipe options --------------------------------------------------------------

def read_options(value, problems) -> dict:
    """The recipe's ``storage:`` mapping: non-secret options passed to the fsspec
    filesystem (``endpoint_url``, ``region_name``, ``account_name``, ...). A key that
    looks like a secret is a recipe error: credentials come from the environment."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add("storage", f"expected a mapping of storage options, got {excerpt(value)}")
        return {}
    _refuse_secrets(value, "storage", problems)
    return value


def _refuse_secrets(mapping: dict, path: str, problems) -> None:
    for key, item in mapping.items():
        where = f"{path}.{key}"
        words = set(re.split(r"[_\-.\s]+|(?<=[a-z])(?=[A-Z])", str(key).strip()))
        words = {word.lower() for word in words if word}
        is_method = str(key).lower() == "token" and item in _TOKEN_METHODS
        if (words & _SECRET_WORDS and not is_method) or \
                (isinstance(item, str) and _SECRET_TEXT.search(item)):
            problems.add(where, "looks like a secret; credentials never go in a recipe. "
                                "Set them in the environment (AWS_*, AZURE_STORAGE_*, "
                                "GOOGLE_APPLICATION_CREDENTIALS) or the storage library's "
                                "config; see the README, 'Beyond one machine'")
        elif isinstance(item, dict):
            _refuse_secrets(item, where, problems)
