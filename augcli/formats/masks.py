"""Mask images: a label map beside each image, ``<stem>_mask.png`` (Roboflow's
semantic-segmentation export; ``annotations.suffix`` names another ending), one class id
per pixel (8- or 16-bit, one channel).

Nothing is parsed in the parent: it notes which images have a map, the worker
reads each map once and moves it with the pixels (``augcli.targets.masks``), and
the output gets ``<output stem>_mask.png`` beside it. The maps are never read as
sources.
"""

from __future__ import annotations

from ..targets.masks import DEFAULT_SUFFIX
from .base import Format, register

NAME = "masks"


def _not_text(*args, **kwargs):
    """A label map is pixels: no text of it is read or written (``Format.label_image``)."""
    raise TypeError("a mask image is read and written by the worker, not as text")


register(Format(NAME, "mask image", DEFAULT_SUFFIX, _not_text, _not_text, label_image=True))
