"""The only module that imports imgaug.

imgaug 0.4.0 is unmaintained. On NumPy 2 its import fails because it reads
``np.sctypes`` (removed in NumPy 2.0). ``load()`` restores that one attribute,
with the value NumPy 1.x had, before importing imgaug; nothing else of NumPy is
touched. Ops built on imgaug call its functional API with parameters that
augcli sampled itself, so every output is reproducible from the manifest
without imgaug's global random state.

Import this module only from code that needs the engine: importing imgaug
costs about a second, and ``augcli --help`` must stay fast.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

_NUMPY1_SCTYPES = {
    "int": [np.int8, np.int16, np.int32, np.int64],
    "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
    "float": [np.float16, np.float32, np.float64, np.longdouble],
    "complex": [np.complex64, np.complex128, np.clongdouble],
    "others": [bool, object, bytes, str, np.void],
}


def _restore_numpy1_names() -> None:
    try:
        np.sctypes  # noqa: B018 - probing for the attribute is the point
    except AttributeError:
        np.sctypes = _NUMPY1_SCTYPES


@functools.cache
def load():
    """Import and return ``imgaug.augmenters`` on today's NumPy."""
    _restore_numpy1_names()
    with warnings.catch_warnings():
        # imgaug imports modules that warn about their own deprecations.
        warnings.simplefilter("ignore")
        import imgaug.augmenters as iaa
    return iaa


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """imgaug's Gaussian blur with a fixed sigma (it picks the kernel size and backend)."""
    if sigma <= 0:
        return image
    load()
    from imgaug.augmenters.blur import blur_gaussian_

    return blur_gaussian_(np.copy(image), sigma=sigma)


def gamma_contrast(image: np.ndarray, gamma: float) -> np.ndarray:
    """imgaug's GammaContrast with a fixed gamma: a lookup table for uint8, skimage otherwise."""
    load()
    from imgaug.augmenters.contrast import adjust_contrast_gamma

    if image.size == 0:
        return image
    return adjust_contrast_gamma(np.ascontiguousarray(image), gamma)
