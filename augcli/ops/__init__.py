"""The op catalog: recipe name -> parameters, docs, sampling and application.

``base`` holds the registry (``Op``, ``CATALOG``, ``register``) and the
helpers the families share; each family module registers its ops there:

* ``geometric``: flips, affine warps, zoom, crops, resizes, padding, warps;
* ``colour``: brightness, contrast, hue, colour jitter, gamma, equalization;
* ``pixel``: dropout, erasing, noise, blur, JPEG;
* ``keras``: Keras' ImageDataGenerator kwargs, verbatim;
* ``imgaug``: imgaug augmenters by name (the optional imgaug extra runs them);
* ``multi``: ops that take donor images of the split (mosaic, cutmix, mixup).

``combinators`` defines the nodes that hold other ops (``sometimes``,
``one_of``, ``some_of``, ``sequence``) and their help; ``help`` renders
``augcli ops`` and ``augcli ops NAME``. The families are
imported here, once, in the order of ``FAMILIES`` (as Pillow lists its
plugins); ``base`` never imports a family, so there is no import cycle and
the registry's order does not depend on who imports what first.
"""

from __future__ import annotations

import importlib

from .base import ALIASES, CATALOG, Op, all_names, closest_names, lookup, register
from .help import catalog_json, catalog_listing, op_help

__all__ = ["ALIASES", "CATALOG", "FAMILIES", "OPS_BY_FAMILY", "Op", "all_names", "catalog_json",
           "catalog_listing", "closest_names", "lookup", "op_help", "register"]

# Each family module registers its ops when imported; this order is the registry's.
FAMILIES = ("geometric", "colour", "pixel", "keras", "imgaug", "multi")
# Family -> the names it registered, in registry order: the reference site's pages.
OPS_BY_FAMILY: dict[str, tuple] = {}


def _load_families() -> None:
    for family in FAMILIES:
        before = set(CATALOG)
        importlib.import_module(f"{__name__}.{family}")
        OPS_BY_FAMILY[family] = tuple(name for name in CATALOG if name not in before)


_load_families()
