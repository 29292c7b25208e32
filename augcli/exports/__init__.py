"""Exports: a folder augcli can read, written as another trainer's dataset.

An export is one module here and one line in ``EXPORTS`` (as Pillow registers its
plugins from an explicit list): the module defines ``TASKS`` and
``export(source, output, *, task, image_url, annotations)``. This file imports
nothing heavy, so ``augcli --help`` can list the names without loading a module.
"""

from __future__ import annotations

import difflib
import importlib

from ..errors import UsageError

# name -> what it writes (for --help); the module is augcli.exports.<name>
EXPORTS = {
    "azureml": "Azure Machine Learning AutoML for images: annotations.jsonl + MLTable per split",
}


def load_export(name: str):
    """The module of the export called ``name``; a ``UsageError`` naming the closest."""
    if name not in EXPORTS:
        close = difflib.get_close_matches(str(name), list(EXPORTS), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown export '{name}'{hint}; choose one of "
                         f"{', '.join(sorted(EXPORTS))}")
    return importlib.import_module(f"{__name__}.{name}")
