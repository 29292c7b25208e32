"""Where a command reads and writes: folders and URLs checked before anything is read,
and the recipe's non-secret storage options."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UsageError, excerpt
from .base import URL, Store, StoreSpec, is_url, require_extra, scheme

__all__ = ["check_folders", "is_url", "location", "open_pair", "open_store", "read_options",
           "require_extra", "scheme"]

# Option names that hold secrets: those come from the environment, never from a recipe.
_SECRET_WORDS = {"key", "secret", "password", "passwd", "token", "credential", "credentials",
                 "sas", "signature", "private", "connection", "auth", "authorization"}
_SECRET_TEXT = re.compile(r"AccountKey=|SharedAccessSignature=|[?&]sig=|PRIVATE KEY",
                          re.IGNORECASE)
# gcsfs names its ways to authenticate with ``token``: these words are not secrets.
_TOKEN_METHODS = {"anon", "google_default", "cache", "cloud", "browser"}


def location(value, base_dir: Path | None = None):
    """A folder (``Path``, relative ones against ``base_dir``) or a URL (``str``, no
    trailing slash); None stays None."""
    if value is None:
        return None
    match = URL.match(value) if isinstance(value, str) else None
    if match:
        found, rest = match.groups()
        return f"{found.lower()}://{rest.rstrip('/')}"
    folder = Path(value).expanduser()
    return folder if folder.is_absolute() or base_dir is None else base_dir / folder


def open_store(where, options: dict | None = None) -> Store:
    """A caller's location as this process's store: a ``Store`` stays itself; a
    ``StoreSpec``, a folder or a URL is opened."""
    if isinstance(where, Store):
        return where
    if isinstance(where, StoreSpec):
        return where.open()
    return StoreSpec.of(location(where), options).open()


def check_folders(input_dir: Path | None, output_dir: Path | None) -> tuple[Path, Path]:
    """Refuse a missing input or output, an input that is no folder, and an output inside
    the input (or the other way round)."""
    if input_dir is None:
        raise UsageError("no input folder: set 'input:' in the recipe or pass --input")
    if output_dir is None:
        raise UsageError("no output folder: set 'output:' in the recipe or pass --output")
    if not input_dir.is_dir():
        raise UsageError(f"input folder {input_dir} does not exist or is not a folder")
    resolved_in, resolved_out = input_dir.resolve(), output_dir.resolve()
    if resolved_out == resolved_in or resolved_in in resolved_out.parents:
        raise UsageError(f"output folder {output_dir} is inside the input folder {input_dir}; "
                         "choose a folder outside it so outputs never mix with sources")
    if resolved_out in resolved_in.parents:
        raise UsageError(f"input folder {input_dir} is inside the output folder {output_dir}; "
                         "choose an output folder apart from it so outputs never mix with "
                         "sources")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"output path {output_dir} exists and is not a folder")
    return input_dir, output_dir


def open_pair(input, output, options: dict | None = None,
              local_only: str | None = None) -> tuple[StoreSpec, StoreSpec]:
    """Check an input and an output location (folders or URLs) and return their specs.

    Refuses what cannot work: a missing location, an input folder that is not
    there, an output inside the input, a URL without its extra; with
    ``local_only`` (what needs folders, e.g. "annotations"), any URL.
    """
    if not is_url(input) and not is_url(output):
        input, output = check_folders(input, output)
        return StoreSpec.of(input), StoreSpec.of(output)
    if input is None or output is None:
        check_folders(input, output)  # says which one is missing
    if local_only:
        raise UsageError(f"{local_only} need local folders for the input and output, not "
                         f"{input if is_url(input) else output}")
    for where in (input, output):
        if is_url(where):
            require_extra(where)
    if not is_url(input) and not input.is_dir():
        raise UsageError(f"input folder {input} does not exist or is not a folder")
    if not is_url(output) and output.exists() and not output.is_dir():
        raise UsageError(f"output path {output} exists and is not a folder")
    if is_url(input) and is_url(output) and (output == input or output.startswith(input + "/")):
        raise UsageError(f"output {output} is inside the input {input}; choose a prefix outside "
                         "it so outputs never mix with sources")
    return StoreSpec.of(input, options), StoreSpec.of(output, options)


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
