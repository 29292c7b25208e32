"""Axis-aligned boxes: the internal form every format reads into, and how a map moves them.

A ``Box(label, x0, y0, x1, y1)`` is in pixels of the image as augcli decodes
it (EXIF orientation applied), in pixel-edge coordinates: the image spans
``[0, width] x [0, height]``, pixel column ``j`` spans ``[j, j + 1)``, so
``x0`` is the left edge of the box's first column and ``x1`` the right edge
of its last one. Boxes never leave the image: reading clips a box that
reaches outside (a hair outside is only float rounding), and a box with no
area inside the image is malformed.

Workers receive plain ``ImageBoxes`` and transform them with the output's
sampled steps (``transform_boxes``); what falls out of the image is
``Dropped``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry

DEFAULT_MIN_VISIBILITY = 0.3
PIXEL_DECIMALS = 6  # voc, coco, manifest: a millionth of a pixel


@dataclass(frozen=True)
class Box:
    """A labelled box in pixel-edge coordinates (x0, y0 inclusive edges; x1, y1 exclusive)."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    extra: tuple = ()  # (key, value) pairs a format carries beyond the box, in file order

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def corners(self) -> np.ndarray:
        return np.array([[self.x0, self.y0], [self.x1, self.y0], [self.x1, self.y1],
                         [self.x0, self.y1]], dtype=np.float64)

    def clipped(self, width: float, height: float) -> Box:
        """The part inside ``[0, width] x [0, height]`` (may have no area)."""
        x0, x1 = (min(max(v, 0.0), width) for v in (self.x0, self.x1))
        y0, y1 = (min(max(v, 0.0), height) for v in (self.y0, self.y1))
        return Box(self.label, x0, y0, x1, y1, self.extra)

    def moved(self, edges: np.ndarray, width: int, height: int) -> tuple:
        """(the part inside the image of the hull of the corners mapped by the pixel-edge
        map ``edges``, or None; the share of the hull's area inside)."""
        hull = _hull(self, edges)
        if hull is None or hull.area <= 0:
            return None, 0.0
        visible = hull.clipped(width, height)
        return visible, visible.area / hull.area

    def to_record(self) -> dict:
        """JSON for the manifest: the label and the four edges, to a millionth of a pixel."""
        return target_record(self)

    @classmethod
    def from_record(cls, record: dict) -> Box:
        x0, y0, x1, y1 = map(float, record["box"])
        return cls(record["label"], x0, y0, x1, y1, tuple(record.get("extra", {}).items()))


class TightBox:
    """``x0, y0, x1, y1`` of a kind whose box is worked out from its shape: the kind's
    ``_bounds``, (x0, y0, x1, y1), computed once."""

    @property
    def _bounds(self) -> tuple:
        raise NotImplementedError

    @property
    def x0(self) -> float:
        return self._bounds[0]

    @property
    def y0(self) -> float:
        return self._bounds[1]

    @property
    def x1(self) -> float:
        return self._bounds[2]

    @property
    def y1(self) -> float:
        return self._bounds[3]


def target_record(target, **fields) -> dict:
    """A target's manifest record: its label, its box to a millionth of a pixel, the kind's
    own ``fields``, then its ``extra`` when it has one."""
    record: dict = {"label": target.label,
                    "box": [json_number(v, PIXEL_DECIMALS)
                            for v in (target.x0, target.y0, target.x1, target.y1)],
                    **fields}
    if target.extra:
        record["extra"] = dict(target.extra)
    return record


@dataclass(frozen=True)
class ImageBoxes:
    """The boxes of one image and the size they refer to (plain data for workers)."""

    width: int
    height: int
    boxes: tuple = ()
    mask: tuple | None = None  # its label map (masks): (store spec, key), read by the worker


@dataclass(frozen=True)
class Dropped:
    """A box dropped from an output: the source box and how much of it stayed visible."""

    box: Box
    visibility: float

    def to_record(self) -> dict:
        return {**self.box.to_record(), "visibility": round(self.visibility, 4)}


def transform_boxes(boxes, matrix: np.ndarray, size, min_visibility: float) -> tuple[tuple, tuple]:
    """Carry boxes (and the other target kinds: each says how it ``moved``) through a forward
    3x3 map of pixel centres into an image of ``size`` (h, w).

    A box becomes the axis-aligned hull of its four mapped corners (with the
    projective divide, so homographies work too), clipped to the image. It is
    dropped when the clipped hull keeps less than ``min_visibility`` of the
    hull's area, or nothing at all. A kept box keeps its extras (VOC's
    ``difficult``, COCO's ``iscrowd``, ...) as they are. Returns (kept boxes,
    ``Dropped`` boxes).
    """
    height, width = size[:2]
    edges = geometry.edge_matrix(matrix)
    kept, dropped = [], []
    for box in boxes:
        visible, visibility = box.moved(edges, width, height)
        if visible is None or visibility <= 0 or visibility < min_visibility:
            dropped.append(Dropped(box, visibility))
        else:
            kept.append(visible)
    return tuple(kept), tuple(dropped)


def _hull(box: Box, edges: np.ndarray) -> Box | None:
    """Bounding box of the mapped corners; None when a corner maps to infinity."""
    points = geometry.project_in_view(edges, box.corners())
    if points is None:
        return None
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return Box(box.label, float(x0), float(y0), float(x1), float(y1), box.extra)


def count_labels(boxes) -> dict:
    """Objects per label, sorted by label."""
    counts: dict = {}
    for box in boxes:
        counts[box.label] = counts.get(box.label, 0) + 1
    return dict(sorted(counts.items()))


def json_number(value: float, decimals: int):
    """A JSON number to ``decimals`` places; whole numbers stay integers (``12``, not ``12.0``)."""
    rounded = round(float(value), decimals) + 0.0  # + 0.0: no -0.0
    return int(rounded) if rounded.is_integer() else rounded
