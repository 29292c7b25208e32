"""Oriented boxes (YOLO-OBB): four corners of a rotated rectangle, and how a map moves them.

An ``OrientedBox(label, corners, extra)`` holds its corners as a flat
``(x1, y1, ..., x4, y4)`` tuple in the pixel-edge coordinates boxes use
(``augcli.targets.boxes``). A map that keeps right angles (flips, quarter
turns, rotation, uniform scale, shifts) moves the four corners exactly; after
a shear or a perspective the moved corners are a parallelogram or a general
quadrilateral, and the box becomes their minimum-area rectangle (OpenCV's
``minAreaRect``). ``min_visibility`` compares the area of the rectangle inside
the image with its whole area; a kept box that crosses the border has its
corners clipped into the image, as Ultralytics clips them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .. import geometry
from .boxes import PIXEL_DECIMALS, json_number, target_record
from .polygons import clip_ring, ring_area

RIGHT_ANGLE_TOLERANCE = 1e-3  # |cos| between sides: a rectangle to the rounding of files (0.06 deg)


@dataclass(frozen=True)
class OrientedBox:
    """A labelled rotated rectangle: ``corners`` is ``(x1, y1, x2, y2, x3, y3, x4, y4)``."""

    label: str
    corners: tuple
    extra: tuple = ()

    def _points(self) -> np.ndarray:
        return np.asarray(self.corners, dtype=np.float64).reshape(4, 2)

    @property
    def x0(self) -> float:
        return float(min(self.corners[0::2]))

    @property
    def y0(self) -> float:
        return float(min(self.corners[1::2]))

    @property
    def x1(self) -> float:
        return float(max(self.corners[0::2]))

    @property
    def y1(self) -> float:
        return float(max(self.corners[1::2]))

    @property
    def area(self) -> float:
        return ring_area(self._points())

    def to_record(self) -> dict:
        """JSON for the manifest: the label, the box around it and the four corners."""
        return target_record(self, corners=[json_number(v, PIXEL_DECIMALS)
                                            for v in self.corners])

    @classmethod
    def from_record(cls, record: dict) -> OrientedBox:
        return cls(record["label"], tuple(map(float, record["corners"])),
                   tuple(record.get("extra", {}).items()))

    def clipped(self, width: float, height: float) -> OrientedBox:
        """The corners clipped into ``[0, width] x [0, height]`` (Ultralytics' clip)."""
        points = self._points()
        points[:, 0] = points[:, 0].clip(0, width)
        points[:, 1] = points[:, 1].clip(0, height)
        return OrientedBox(self.label, tuple(points.ravel().tolist()), self.extra)

    def moved(self, edges: np.ndarray, width: int, height: int) -> tuple:
        """(the box after the pixel-edge map ``edges``, clipped into the image, or None; the
        share of the moved rectangle's area inside)."""
        points = geometry.project_in_view(edges, self._points())
        if points is None:
            return None, 0.0
        if not is_rectangle(points):
            points = cv2.boxPoints(cv2.minAreaRect(points.astype(np.float32))).astype(np.float64)
        whole = ring_area(points)
        if whole <= 0:
            return None, 0.0
        inside = sum(ring_area(part) for part in clip_ring(points, width, height))
        if inside <= 0:
            return None, 0.0
        moved = OrientedBox(self.label, tuple(points.ravel().tolist()), self.extra)
        return moved.clipped(width, height), inside / whole


def is_rectangle(points: np.ndarray) -> bool:
    """Whether four corners in order make a rectangle (to rounding)."""
    sides = np.roll(points, -1, axis=0) - points
    lengths = np.linalg.norm(sides, axis=1)
    if not np.all(lengths > 0):
        return False
    cosines = np.abs(np.sum(sides * np.roll(sides, -1, axis=0), axis=1)) / (
        lengths * np.roll(lengths, -1))
    return bool(np.all(cosines <= RIGHT_ANGLE_TOLERANCE))
