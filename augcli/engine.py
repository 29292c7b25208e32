"""The only module that imports imgaug (an optional extra: ``pip install 'augcli[imgaug]'``).

augcli's own ops are native (OpenCV and NumPy). imgaug has two jobs left: the
reference the test suite checks those ops against, and the ``imgaug`` dialect
op (``augcli.ops.imgaug``) for recipes written as imgaug augmenters.

imgaug 0.4.0 is unmaintained. On NumPy 2 its import fails because it reads
``np.sctypes`` (removed in NumPy 2.0). ``load()`` restores that one attribute,
with the value NumPy 1.x had, before importing imgaug; nothing else of NumPy is
touched.

Import imgaug only through ``load()``, from code that needs it: it costs about
a second, and ``augcli --help`` must stay fast.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from .errors import install_hint

INSTALL_HINT = install_hint("imgaug")

_NUMPY1_SCTYPES = {
    "int": [np.int8, np.int16, np.int32, np.int64],
    "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
    "float": [np.float16, np.float32, np.float64, np.longdouble],
    "complex": [np.complex64, np.complex128, np.clongdouble],
    "others": [bool, object, bytes, str, np.void],
}


def _restore_numpy1_names() -> None:
    try:
        # NumPy 2 removed np.sctypes, and its stubs with it; imgaug 0.4 still reads it.
        np.sctypes  # type: ignore[attr-defined]  # noqa: B018 - probing is the point
    except AttributeError:
        np.sctypes = _NUMPY1_SCTYPES  # type: ignore[attr-defined]  # see above


@functools.cache
def load():
    """Import and return ``imgaug.augmenters`` on today's NumPy (ImportError without it)."""
    _restore_numpy1_names()
    with warnings.catch_warnings():
        # imgaug imports modules that warn about their own deprecations.
        warnings.simplefilter("ignore")
        import imgaug.augmenters as iaa
    return iaa


def seed_global(seed: int) -> None:
    """Seed imgaug's global generator (augmenters derive some of theirs from it when built)."""
    load()
    import imgaug.random

    imgaug.random.seed(seed)


def available() -> bool:
    """Whether imgaug is installed and imports."""
    try:
        load()
    except ImportError:
        return False
    return True
