"""Keypoints (COCO ``keypoints``, YOLO-pose): an object's named points, and how a map moves
them.

A ``Keypoints(label, points, shape, flip, dims, extra)`` is one object: its
``shape`` (a ``Box``, or a ``Polygon`` or ``RleMask`` when a COCO annotation
has a segmentation too) and K points ``(x1, y1, v1, ..., xK, yK, vK)`` in the
pixel-edge coordinates boxes use (``augcli.targets.boxes``); ``v`` is COCO's
visibility (0: not labelled, 1: labelled but hidden, 2: visible). The shape
moves as its kind does and decides the box, the area and ``min_visibility``;
each labelled point moves with the map, and one that leaves the image becomes
``(0, 0, 0)``, as COCO writes a point it does not know. A map that mirrors the
image (a flip: its determinant is negative) turns a left wrist into a right
one, so the points are reordered by ``flip`` (``flip[i]``: the point that
takes place ``i``, Ultralytics' ``flip_idx``). ``dims``: 2 for YOLO-pose
lines without visibility (``x y`` per point), else 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import excerpt
from .boxes import PIXEL_DECIMALS, Box, json_number
from .polygons import Polygon
from .rle import RleMask


@dataclass(frozen=True)
class Keypoints:
    """A labelled object's box (or polygon) and its K keypoints, flat ``(x, y, v) * K``."""

    label: str
    points: tuple
    shape: Box | Polygon | RleMask
    flip: tuple = ()  # the permutation a mirroring map applies; empty: nothing to swap
    dims: int = 3
    extra: tuple = ()

    @property
    def x0(self) -> float:
        return self.shape.x0

    @property
    def y0(self) -> float:
        return self.shape.y0

    @property
    def x1(self) -> float:
        return self.shape.x1

    @property
    def y1(self) -> float:
        return self.shape.y1

    @property
    def area(self) -> float:
        return self.shape.area

    @property
    def labelled(self) -> int:
        """How many points are labelled (COCO's ``num_keypoints``)."""
        return sum(1 for v in self.points[2::3] if v > 0)

    def to_record(self) -> dict:
        """JSON for the manifest: the shape's record and the points, to a millionth of a
        pixel (visibility flags as integers)."""
        record = {**self.shape.to_record(), "label": self.label,
                  "keypoints": [json_number(v, PIXEL_DECIMALS) for v in self.points]}
        record.pop("extra", None)
        if self.extra:
            record["extra"] = dict(self.extra)
        return record

    @classmethod
    def from_record(cls, record: dict) -> Keypoints:
        bare = {key: value for key, value in record.items() if key not in ("keypoints", "extra")}
        shape = Polygon.from_record(bare) if "polygon" in bare else \
            RleMask.from_record(bare) if "rle" in bare else Box.from_record(bare)
        return cls(record["label"], tuple(map(float, record["keypoints"])), shape,
                   extra=tuple(record.get("extra", {}).items()))

    def moved(self, edges: np.ndarray, width: int, height: int) -> tuple:
        """(the object after the pixel-edge map ``edges``: its shape's visible part and its
        points, or None; the share of the shape that stays visible)."""
        shape, visibility = self.shape.moved(edges, width, height)
        if shape is None:
            return None, visibility
        points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        homogeneous = np.hstack([points[:, :2], np.ones((len(points), 1))]) @ edges.T
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = homogeneous[:, :2] / homogeneous[:, 2:3]
        inside = (points[:, 2] > 0) & (homogeneous[:, 2] > 1e-12) & np.all(np.isfinite(xy), 1) \
            & (xy[:, 0] >= 0) & (xy[:, 0] <= width) & (xy[:, 1] >= 0) & (xy[:, 1] <= height)
        moved = np.where(inside[:, None], np.hstack([xy, points[:, 2:3]]), 0.0)
        if self.flip and mirrors(edges):
            moved = moved[list(self.flip)]
        return Keypoints(self.label, tuple(moved.ravel().tolist()), shape, self.flip,
                         self.dims, self.extra), visibility


def mirrors(matrix: np.ndarray) -> bool:
    """Whether a (projective) map turns the image over, as a flip does: left becomes right."""
    return bool(np.linalg.det(matrix) < 0)


def flip_pairs(names) -> tuple:
    """``flip_idx`` from keypoint names, as COCO names a person's: ``left_eye`` and
    ``right_eye`` trade places, a name without a side stays; empty when no name has a
    side (nothing to swap)."""
    index = {name: i for i, name in enumerate(names)}
    order = []
    for name in names:
        side = next((s for s in ("left_", "right_") if str(name).startswith(s)), None)
        other = None
        if side is not None:
            other = index.get(("right_" if side == "left_" else "left_") + name[len(side):])
        order.append(index[name] if other is None else other)
    return tuple(order) if order != list(range(len(names))) else ()


def flip_problem(flip, count: int) -> str | None:
    """Why ``flip`` is not a ``flip_idx`` for ``count`` keypoints (None when it is): it must
    be a list of the indices 0..count-1, each once, pairs swapping each other."""
    if not isinstance(flip, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in flip):
        return "expected a list of keypoint indices"
    if sorted(flip) != list(range(count)):
        return f"expected each of the indices 0 to {count - 1} once, got {list(flip)}"
    if any(flip[flip[i]] != i for i in range(count)):
        return "expected pairs that swap each other (flip_idx[flip_idx[i]] == i)"
    return None


def kpt_shape_problem(value) -> str | None:
    """Why ``value`` is not YOLO-pose's ``kpt_shape`` [K, 2 or 3] (None when it is)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value) \
            or value[0] < 1 or value[1] not in (2, 3):
        return f"expected [keypoints, 2 or 3] (x y, or x y visibility), got {excerpt(value)}"
    return None
