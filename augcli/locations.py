"""Where a command reads and writes, as given: a folder or an object-store URL.

Parsing a location and the recipe's ``storage:`` options needs no storage
library and opens nothing, so the recipe parser (and with it
``augcli.load_transform``) does not import the stores: ``augcli.stores``
opens what these name.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError, excerpt

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
# Aliases the storage libraries take for one store: s3fs's s3a (and Hadoop's s3n), adlfs's
# abfs and abfss, gcsfs's gcs. Two spellings of a location name the same objects.
_CANONICAL_SCHEMES = {"s3a": "s3", "s3n": "s3", "abfs": "az", "abfss": "az", "gcs": "gs"}
# Option names that hold secrets: those come from the environment, never from a recipe.
# A word of the name (camelCase and snake_case split) that is one of these or its plural, or
# ends with one ("apikey", "authtokens"), makes it a secret...
_SECRET_WORDS = ("key", "secret", "password", "passwd", "passphrase", "pwd", "pass", "token",
                 "credential", "cred", "sas", "private", "auth", "authorization", "bearer")
# ...and so does one of these anywhere in the name's words run together; "signature" only
# as its last word (botocore's ``signature_version`` is a setting).
_SECRET_RUNS = ("secret", "password", "passphrase", "credential", "bearer",
                "connectionstring", "sastoken")
# Names those catch that are settings, not secrets: S3's KMS key id names a key.
_NOT_SECRETS = {"ssekmskeyid"}
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
    trailing slash); None stays None. A URL with an empty part (``s3://b//x``) is refused:
    the keys under it begin with ``/``, and no output name can. A URL with user-info
    (``s3://user:pw@bucket``) is refused without repeating it: credentials come from the
    environment."""
    if value is None:
        return None
    match = _URL.match(value) if isinstance(value, str) else None
    if match:
        if has_user_info(value):
            raise UsageError(f"{redact(value)}: {_NO_USER_INFO}")
        name, rest = match.groups()
        rest = rest.rstrip("/")
        if "//" in _authority(rest)[1]:
            raise UsageError(f"{value}: a location must not have an empty part (//): the "
                             "keys under it would begin with /, which no output can be named; "
                             f"did you mean {name.lower()}://{_single_slashes(rest)}?")
        return f"{name.lower()}://{rest}"
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
def canonical(where):
    """One spelling per place, to compare locations (never to open one): a URL's scheme
    alias made its store's (``s3a://b/x`` -> ``s3://b/x``, ``abfss://c/x`` -> ``az://c/x``,
    ``gcs://b/x`` -> ``gs://b/x``) and an Azure account (``c@acct.dfs.core.windows.net/x``,
    ``acct.dfs.core.windows.net/c/x``) dropped: one container name is taken for the same
    container, erring towards refusing an output inside an input. A folder stays as it is."""
    match = _URL.match(where) if isinstance(where, str) else None
    if not match:
        return where
    name = _store_scheme(match.group(1))
    authority, rest = _authority(match.group(2).rstrip("/"))
    if name == "az" and _AZURE_HOST.search(authority):
        container = authority.rpartition("@")[0]
        authority, rest = (container, rest) if container else ("", rest.lstrip("/"))
    return f"{name}://{authority}{rest}"


def within(inner: str, outer: str) -> bool:
    """Whether the URL ``inner`` is ``outer`` or under it, however each is spelled."""
    return f"{canonical(inner)}/".startswith(f"{canonical(outer)}/")


def has_user_info(url: str) -> bool:
    """Whether a URL carries ``user[:password]@`` before its host. Azure's
    ``container@account...`` is an address: there, only ``user:password@`` is credentials."""
    match = _URL.match(url)
    if not match:
        return False
    info, at, _ = _authority(match.group(2))[0].rpartition("@")
    return bool(at) and (":" in info or _store_scheme(match.group(1)) != "az")


def redact(url):
    """The URL to print: its user-info, if any, as ``***``; anything else as it is."""
    match = _URL.match(url) if isinstance(url, str) else None
    if not match or not has_user_info(url):
        return url
    authority, rest = _authority(match.group(2))
    return f"{match.group(1)}://***@{authority.rpartition('@')[2]}{rest}"


def _single_slashes(rest: str) -> str:
    return re.sub("/+", "/", rest)


def _store_scheme(name: str) -> str:
    return _CANONICAL_SCHEMES.get(name.lower(), name.lower())


def _authority(rest: str) -> tuple[str, str]:
    """A URL's part after ``scheme://`` as (its authority, the rest from the first / ? #)."""
    end = min([at for at in map(rest.find, "/?#") if at >= 0], default=len(rest))
    return rest[:end], rest[end:]


_NO_USER_INFO = ("a URL must not carry credentials (user:password@); set them in the "
                 "environment (AWS_*, AZURE_STORAGE_*, GOOGLE_APPLICATION_CREDENTIALS) or the "
                 "storage library's config; see 'Beyond one machine' in the docs (docs/cluster.md)")
_AZURE_HOST = re.compile(r"\.(dfs|blob)\.core\.windows\.net$", re.IGNORECASE)


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


def _refuse_secrets(item, path: str, problems) -> None:
    """Every secret-looking option name, and every text that holds a secret or a URL with
    credentials, in mappings and lists at any depth."""
    if isinstance(item, dict):
        for key, value in item.items():
            where = f"{path}.{key}"
            is_method = str(key).lower() == "token" and isinstance(value, str) and \
                value in _TOKEN_METHODS
            if _is_secret_name(str(key)) and not is_method:
                problems.add(where, _SECRET_MESSAGE)
            else:
                _refuse_secrets(value, where, problems)
    elif isinstance(item, list):
        for index, value in enumerate(item):
            _refuse_secrets(value, f"{path}[{index}]", problems)
    elif isinstance(item, str) and _SECRET_TEXT.search(item):
        problems.add(path, _SECRET_MESSAGE)
    elif isinstance(item, str) and has_user_info(item):
        problems.add(path, _NO_USER_INFO)


def _is_secret_name(key: str) -> bool:
    """``api_keys``, ``apiKey``, ``aws_secret_access_key``, ``passphrase``, ``creds``...:
    see ``_SECRET_WORDS`` and ``_SECRET_RUNS``."""
    words = [word.lower() for word in _WORD_EDGE.split(key.strip()) if word]
    run = "".join(words)
    if run in _NOT_SECRETS:
        return False
    return (any(word.endswith(_SECRET_ENDINGS) for word in words)
            or any(part in run for part in _SECRET_RUNS) or words[-1:] == ["signature"])


_SECRET_ENDINGS = tuple(f"{word}{plural}" for word in _SECRET_WORDS for plural in ("", "s"))
_WORD_EDGE = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SECRET_MESSAGE = ("looks like a secret; credentials never go in a recipe. Set them in the "
                   "environment (AWS_*, AZURE_STORAGE_*, GOOGLE_APPLICATION_CREDENTIALS) or "
                   "the storage library's config; see 'Beyond one machine' in the docs "
                   "(docs/cluster.md)")
