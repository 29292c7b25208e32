"""Polygons: instance outlines (COCO ``segmentation`` polygons, YOLO-seg lines), and how a map
moves them.

A ``Polygon(label, rings, extra)`` is one object: one or more rings (COCO's
list of ``[x1, y1, x2, y2, ...]``), in the pixel-edge coordinates boxes use
(``augcli.targets.boxes``). A map moves every vertex (straight edges stay
straight under an affine map or a homography); the moved rings are then clipped
to the image, and a ring cut by the border may become several (a U whose base
leaves the image is two bars). Its box (``x0 .. y1``) is always the tight
bounds of its rings, so a rotated object's box stays tight, and its area is the
rings' area: ``min_visibility`` compares the area inside the image with the
moved polygon's whole area.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import geometry
from .boxes import PIXEL_DECIMALS, TightBox, json_number, target_record

_SIDES = ((0, False), (0, True), (1, False), (1, True))  # (axis, upper limit): x>=0, x<=w, ...


@dataclass(frozen=True)
class Polygon(TightBox):
    """A labelled object outlined by rings of (x, y) vertices: ``rings`` is a tuple of flat
    ``(x1, y1, x2, y2, ...)`` tuples, as COCO writes them."""

    label: str
    rings: tuple
    extra: tuple = ()

    @cached_property
    def _bounds(self) -> tuple:
        points = np.concatenate([_points(ring) for ring in self.rings])
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def area(self) -> float:
        """The rings' area (COCO: their union; rings of one object do not overlap)."""
        return sum(ring_area(_points(ring)) for ring in self.rings)

    def to_record(self) -> dict:
        """JSON for the manifest: the label, the tight box and the rings, to a millionth of
        a pixel."""
        return target_record(self, polygon=[[json_number(v, PIXEL_DECIMALS) for v in ring]
                                            for ring in self.rings])

    @classmethod
    def from_record(cls, record: dict) -> Polygon:
        return cls(record["label"], tuple(tuple(map(float, ring)) for ring in record["polygon"]),
                   tuple(record.get("extra", {}).items()))

    def clipped(self, width: float, height: float) -> Polygon:
        """The part inside ``[0, width] x [0, height]`` (no rings when nothing is)."""
        rings = tuple(tuple(piece.ravel().tolist()) for ring in self.rings
                      for piece in clip_ring(_points(ring), width, height))
        return Polygon(self.label, rings, self.extra)

    def moved(self, edges: np.ndarray, width: int, height: int) -> tuple:
        """(the part inside the image after the pixel-edge map ``edges``, or None; the share
        of the moved polygon's area inside). None when a vertex maps to infinity (behind
        a homography's view)."""
        rings = []
        for ring in self.rings:
            points = geometry.project_in_view(edges, _points(ring))
            if points is None:
                return None, 0.0
            rings.append(tuple(points.ravel().tolist()))
        whole = Polygon(self.label, tuple(rings), self.extra)
        if whole.area <= 0:
            return None, 0.0
        visible = whole.clipped(width, height)
        if not visible.rings:
            return None, 0.0
        return visible, visible.area / whole.area


def _points(ring) -> np.ndarray:
    return np.asarray(ring, dtype=np.float64).reshape(-1, 2)


def ring_area(points: np.ndarray) -> float:
    """The area a ring encloses (shoelace; either orientation)."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def clip_ring(points: np.ndarray, width: float, height: float) -> list:
    """The parts of a ring inside ``[0, width] x [0, height]``, each an (N, 2) array.

    Sutherland-Hodgman clips against each side; where the ring leaves and comes
    back, that joins the parts with edges running along the border there and back.
    Those cancel out (``_split``), leaving the visible parts as separate rings.
    A ring wholly inside comes back as it is.
    """
    limits = (width, height)
    clipped = [tuple(p) for p in points.tolist()]
    touched = False
    for axis, upper in _SIDES:
        limit = limits[axis] if upper else 0.0
        inside = (lambda p, a=axis, v=limit: p[a] <= v) if upper else \
            (lambda p, a=axis, v=limit: p[a] >= v)
        if all(inside(p) for p in clipped):
            continue
        touched = True
        result: list = []
        for index, current in enumerate(clipped):
            previous = clipped[index - 1]
            if inside(current):
                if not inside(previous):
                    result.append(_crossing(previous, current, axis, limit))
                result.append(current)
            elif inside(previous):
                result.append(_crossing(previous, current, axis, limit))
        clipped = result
        if len(clipped) < 3:
            return []
    if not touched:
        return [points]
    return [ring for ring in _split(clipped, limits) if len(ring) >= 3 and ring_area(ring) > 0]


def _crossing(a: tuple, b: tuple, axis: int, limit: float) -> tuple:
    """Where segment a-b crosses the line ``coordinate[axis] == limit`` (exactly on it)."""
    t = (limit - a[axis]) / (b[axis] - a[axis])
    other = a[1 - axis] + t * (b[1 - axis] - a[1 - axis])
    return (limit, other) if axis == 0 else (other, limit)


def _split(ring: list, limits: tuple) -> list:
    """A clipped ring's visible parts: edges along the border that run there and back cancel
    (their net direction per stretch of border is kept), and the edges left are linked into
    rings."""
    edges: list = []
    along: dict = {}  # (axis, value) of a border line -> [(from t, to t)] along it
    for index, start in enumerate(ring):
        end = ring[(index + 1) % len(ring)]
        if start == end:
            continue
        line = next(((axis, start[axis]) for axis in (0, 1) if start[axis] == end[axis]
                     and start[axis] in (0.0, limits[axis])), None)
        if line is None:
            edges.append((start, end))
        else:
            along.setdefault(line, []).append((start[1 - line[0]], end[1 - line[0]]))
    for (axis, value), runs in along.items():
        stops = sorted({t for run in runs for t in run})
        for low, high in zip(stops, stops[1:], strict=False):
            net = sum((1 if a < b else -1) for a, b in runs if min(a, b) <= low and
                      max(a, b) >= high)
            if net:
                a, b = (low, high) if net > 0 else (high, low)
                edges.append(((value, a), (value, b)) if axis == 0 else ((a, value), (b, value)))
    starting: dict = {}
    for edge in edges:
        starting.setdefault(edge[0], []).append(edge)
    rings = []
    for edge in edges:
        if edge not in starting.get(edge[0], ()):
            continue  # already used
        chain = [edge[0]]
        current = edge
        while True:
            starting[current[0]].remove(current)
            if current[1] == chain[0]:
                break
            following = starting.get(current[1])
            if not following:
                chain = []
                break
            chain.append(current[1])
            current = following[0]
        if len(chain) >= 3:
            rings.append(np.array(_without_straight(chain), dtype=np.float64))
    return rings


def _without_straight(chain: list) -> list:
    """A ring without the vertices in the middle of a straight run along one border line
    (where cancelled stretches met)."""
    kept = []
    for index, point in enumerate(chain):
        before, after = chain[index - 1], chain[(index + 1) % len(chain)]
        if any(before[axis] == point[axis] == after[axis] for axis in (0, 1)):
            continue
        kept.append(point)
    return kept
