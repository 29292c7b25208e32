"""Where a command reads and writes: folders and URLs checked before anything is read,
and the recipe's non-secret storage options."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..locations import is_url, location, within
from .base import Store, StoreSpec, require_extra

__all__ = ["check_folders", "check_input_folder", "open_pair", "open_store"]

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
    check_input_folder(input_dir)
    resolved_in, resolved_out = input_dir.resolve(), output_dir.resolve()
    if resolved_out == resolved_in or resolved_in in resolved_out.parents:
        raise UsageError(f"output folder {output_dir} is inside the input folder {input_dir}; "
                         "choose a folder outside it so outputs never mix with sources")
    if resolved_out in resolved_in.parents:
        raise UsageError(f"input folder {input_dir} is inside the output folder {output_dir}; "
                         "choose an output folder apart from it so outputs never mix with "
                         "sources")
    _check_output_folder(output_dir)
    return input_dir, output_dir


def check_input_folder(input_dir: Path) -> None:
    """Refuse an input folder that is not there (or is a file)."""
    if not input_dir.is_dir():
        raise UsageError(f"input folder {input_dir} does not exist or is not a folder")


def _check_output_folder(output_dir: Path) -> None:
    """Refuse an output path that is a file (a missing folder is made)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"output path {output_dir} exists and is not a folder")


def open_pair(input, output, options: dict | None = None) -> tuple[StoreSpec, StoreSpec]:
    """Check an input and an output location (folders or URLs) and return their specs.

    Refuses what cannot work: a missing location, an input folder that is not
    there, an output inside the input, a URL without its extra.
    """
    if not is_url(input) and not is_url(output):
        input, output = check_folders(input, output)
        return StoreSpec.of(input), StoreSpec.of(output)
    if input is None or output is None:
        check_folders(input, output)  # says which one is missing
    for where in (input, output):
        if is_url(where):
            require_extra(where)
    if not is_url(input):
        check_input_folder(input)
    if not is_url(output):
        _check_output_folder(output)
    if is_url(input) and is_url(output) and within(output, input):
        raise UsageError(f"output {output} is inside the input {input}; choose a prefix outside "
                         "it so outputs never mix with sources")
    return StoreSpec.of(input, options), StoreSpec.of(output, options)
