"""Annotation formats: how each reads and writes the boxes of an image's labels.

``base`` holds the registry (``Format``, ``register``, ``lookup``, ``names``)
and the reading helpers the formats share; each format module registers its
format there:

* ``yolo``: a ``.txt`` per image, ``class cx cy w h`` normalized; ``classes.txt``;
* ``voc``: a Pascal VOC ``.xml`` per image, in pixel edges;
* ``coco``: one COCO JSON per folder (or per split folder);
* ``regions``: a ``.json`` per image, Custom Vision's regions, normalized;
* ``masks``: a label map ``<stem>_mask.png`` per image, moved by the worker.

The modules are imported here, once, in the order of ``MODULES`` (as Pillow
lists its plugins); ``base`` never imports a format, so there is no import
cycle and ``names()`` keeps this order.
"""

from __future__ import annotations

import importlib

from .base import FORMATS, AnnotationError, AnnotationSpec, Format, lookup, names, register

__all__ = ["FORMATS", "MODULES", "AnnotationError", "AnnotationSpec", "Format", "lookup", "names",
           "register"]

# Each module registers its format when imported; this order is the registry's.
MODULES = ("yolo", "voc", "coco", "regions", "masks")


def _load_modules() -> None:
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")


_load_modules()
