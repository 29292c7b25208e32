"""Tiles cut from several images into one, and the area weights of their labels.

Pure NumPy and no I/O: ``augcli ricap``, ``ricap_batch`` and the recipe ops that take
donors (``mosaic``, ``cutmix``, ``mixup``) paste with the same ``compose``, weigh with the
same ``area_weights`` and write their soft labels with the same ``labels_csv``, so a
training loop imports them without any pool or store.
"""

from __future__ import annotations

import csv
import io

import numpy as np

LABELS_NAME = "labels.csv"  # the soft labels beside the outputs (see labels_csv)
WEIGHT_GRID = 2**52  # label weights are multiples of 1 / 2**52 (see area_weights)


def area_weights(areas, total: int) -> tuple:
    """Float weights of ``areas`` (summing to ``total``) that add up to exactly 1.0.

    Each weight is area / total rounded to a multiple of 2**-52, and the
    rounding remainder (a few units) goes to the largest area. Any sum of
    such multiples that stays at or below 1 is exact in float64, so a label
    row sums to exactly 1.0 in any order (Python's ``sum``, NumPy, pandas), and
    each weight is within 3 * 2**-52 (7e-16) of the exact share.
    """
    units = [(2 * area * WEIGHT_GRID + total) // (2 * total) for area in areas]
    largest = max(range(len(units)), key=lambda i: (areas[i], -i))
    units[largest] += WEIGHT_GRID - sum(units)
    return tuple(unit / WEIGHT_GRID for unit in units)


def labels_csv(rows, classes) -> str:
    """Soft labels as ``augcli ricap`` and ``augcli run`` write them: a header
    ``filename,<class>...`` then one row per (filename, {class: weight}) of ``rows``, a
    class it lacks weighing 0.0; the weights of ``area_weights`` make each row sum to 1."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", *classes])
    for filename, weights in rows:
        writer.writerow([filename, *(repr(float(weights.get(name, 0.0))) for name in classes)])
    return buffer.getvalue()


def compose(size: tuple, pieces, channels: int = 3, out: np.ndarray | None = None) -> np.ndarray:
    """Paste each (source image, (crop x, crop y), output box) into a W x H canvas.

    The crop is the output box's size, taken at (crop x, crop y) of the source.
    Empty boxes are skipped (their source may be None). The canvas is ``out``
    when given (any dtype), else a new uint8 array.
    """
    width, height = size
    canvas = np.zeros((height, width, channels), np.uint8) if out is None else out
    for image, crop, (x, y, w, h) in pieces:
        if w == 0 or h == 0:
            continue
        cx, cy = crop
        canvas[y:y + h, x:x + w] = image[cy:cy + h, cx:cx + w]
    return canvas


def majority_class(weights: dict) -> str:
    """The class with the largest weight; ties go to the first in sorted order (the hard
    label of a soft one: ``ricap --hard-label majority``, ``hard_label: majority``)."""
    best = max(weights.values())
    return min(name for name, weight in weights.items() if weight == best)
