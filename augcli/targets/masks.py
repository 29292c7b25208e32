"""Mask images: a label map beside each image (``<stem>_mask.png``, as Roboflow's
semantic-segmentation export writes it), one class id per pixel, and how the steps move it.

A label map is an 8- or 16-bit single-channel image of the source's size. The
worker reads it once per source, moves it through the output's geometric steps
with nearest neighbour (``augcli.pipeline.apply_steps_to_labels``: no blended
ids) and writes it as a PNG beside the output. Where the image is filled (the
corners of a rotation, a pad, a letterbox's bars) the map gets ``mask_fill``
(default 0) whatever the image's fill mode: reflected or repeated pixels are
not objects the map can name, so a dataset with an ignore id (255) can say so.
Pixel ops leave the map as it is, ``cutout`` and ``random_erasing`` too: the
object is still there under the erased patch, as torchvision's and
albumentations' erasing leave masks.
"""

from __future__ import annotations

import cv2
import numpy as np

from .. import imagefiles

DEFAULT_SUFFIX = "_mask.png"
MAX_FILL = 65535  # the largest id a 16-bit map holds


class LabelMapError(ValueError):
    """A mask image that is not a label map for its image (channels, depth, size)."""


def decode_labels(data: bytes, size) -> np.ndarray:
    """A label map from a PNG's bytes, checked against the image's ``size`` (w, h).

    Raises ``LabelMapError`` saying what is wrong with it."""
    labels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise LabelMapError("cannot decode the mask image")
    if labels.ndim != 2:
        raise LabelMapError(f"a mask must have one channel of class ids, this one has "
                            f"{labels.shape[2]}")
    if labels.dtype not in (np.uint8, np.uint16):
        raise LabelMapError(f"a mask must be 8- or 16-bit, this one is {labels.dtype}")
    width, height = size
    if labels.shape != (height, width):
        raise LabelMapError(f"the mask is {labels.shape[1]} x {labels.shape[0]}, its image "
                            f"{width} x {height}")
    return labels


def donor_labels(mask: tuple | None, shape: tuple, fill: int) -> np.ndarray:
    """A donor's label map, read through its store (``ImageBoxes.mask``: (store spec, key))
    and checked against its decoded image's ``shape`` (h, w). A donor without a map has no
    labels: ``fill`` everywhere, so its tiles and patches name no object.

    Raises ``OSError`` or ``LabelMapError``."""
    if mask is None:
        return np.full(shape[:2], fill, np.uint8 if fill <= 255 else np.uint16)
    spec, key = mask
    return decode_labels(spec.open().read(key), (shape[1], shape[0]))


def encode_labels(labels: np.ndarray) -> bytes:
    """A label map as a PNG of its own depth (lossless: the ids stay ids)."""
    return imagefiles.encode(labels, "png", 0)


def fill_for(labels: np.ndarray, mask_fill: int) -> int:
    """``mask_fill`` for a map of this depth; a fill an 8-bit map cannot hold is refused."""
    if labels.dtype == np.uint8 and mask_fill > 255:
        raise LabelMapError(f"annotations.mask_fill {mask_fill} does not fit this 8-bit mask")
    return mask_fill


def regions(labels: np.ndarray, background: int = 0) -> dict:
    """Class id -> how many separate regions (8-connected) of it a label map holds, the
    ``background`` id left out: what ``augcli check`` counts as a mask's objects."""
    found = {}
    for class_id in np.unique(labels):
        if int(class_id) == background:
            continue
        count, _ = cv2.connectedComponents((labels == class_id).astype(np.uint8), connectivity=8)
        found[int(class_id)] = count - 1
    return found
