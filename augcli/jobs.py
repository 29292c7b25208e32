"""Folder checks shared by the folder commands."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError


def check_folders(input_dir: Path | None, output_dir: Path | None) -> tuple[Path, Path]:
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
