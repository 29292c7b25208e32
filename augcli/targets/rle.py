"""RLE masks (COCO ``segmentation: {"size", "counts"}``, as crowds are): a pixel mask, and how
a map moves it.

A ``RleMask(label, height, width, counts, compressed, extra)`` keeps COCO's
run lengths: column-major runs, the first of zeros. ``compressed`` says which
encoding the file used (a string, COCO's 6-bit text; or a list of integers),
so the output keeps it. A map moves the mask as the pixels move: decoded,
resampled with nearest neighbour (no blended ids) into the output's size,
encoded again. Its box is the tight bounds of its pixels and its area their
count; ``min_visibility`` compares the pixels kept with the moved mask's
whole area (the source's area times the map's scale at the mask's centre).

The encoding is COCO's ``maskApi.c`` (``rleToString``/``rleFrString``), a
few lines of integer arithmetic, rather than a dependency on pycocotools,
whose wheels lag new Pythons and which the tests use as the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import geometry
from .boxes import TightBox, target_record


@dataclass(frozen=True)
class RleMask(TightBox):
    """A labelled mask of ``height`` x ``width`` pixels as COCO run lengths."""

    label: str
    height: int
    width: int
    counts: tuple  # run lengths (decoded from COCO's text when ``compressed``)
    compressed: bool = True
    extra: tuple = ()

    @classmethod
    def of(cls, label: str, mask: np.ndarray, compressed: bool, extra: tuple = ()) -> RleMask:
        return cls(label, mask.shape[0], mask.shape[1], encode(mask), compressed, extra)

    def mask(self) -> np.ndarray:
        return decode(self.counts, self.height, self.width)

    @cached_property
    def _bounds(self) -> tuple:
        mask = self.mask()
        columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        if not len(columns):
            return 0.0, 0.0, 0.0, 0.0
        return (float(columns[0]), float(rows[0]), float(columns[-1] + 1),
                float(rows[-1] + 1))

    @property
    def area(self) -> float:
        return float(sum(self.counts[1::2]))

    def segmentation(self) -> dict:
        """COCO's ``{"size": [h, w], "counts": ...}`` in the encoding it was read in."""
        counts = to_string(self.counts) if self.compressed else list(self.counts)
        return {"size": [self.height, self.width], "counts": counts}

    def to_record(self) -> dict:
        """JSON for the manifest: the label, the tight box and the RLE."""
        return target_record(self, rle=self.segmentation())

    @classmethod
    def from_record(cls, record: dict) -> RleMask:
        rle = record["rle"]
        compressed = isinstance(rle["counts"], str)
        counts = from_string(rle["counts"]) if compressed else tuple(rle["counts"])
        height, width = rle["size"]
        return cls(record["label"], height, width, counts, compressed,
                   tuple(record.get("extra", {}).items()))

    def moved(self, edges: np.ndarray, width: int, height: int) -> tuple:
        """(the mask resampled through the pixel-edge map ``edges`` into ``height`` x
        ``width``, or None when no pixel is left; the share of its moved area kept)."""
        before = self.area
        centre = geometry.translation(-0.5, -0.5) @ edges @ geometry.translation(0.5, 0.5)
        moved = geometry.warp_nearest(self.mask().astype(np.uint8), centre, (height, width))
        result = RleMask.of(self.label, moved, self.compressed, self.extra)
        if result.area <= 0 or before <= 0:
            return None, 0.0
        return result, min(1.0, result.area / (before * _scale(edges, self._centre())))

    def _centre(self) -> tuple:
        rows, columns = np.nonzero(self.mask())
        return float(columns.mean() + 0.5), float(rows.mean() + 0.5)


def _scale(edges: np.ndarray, point: tuple) -> float:
    """How much a (projective) map scales areas at ``point``: its Jacobian's determinant."""
    x, y = point
    w = edges[2, 0] * x + edges[2, 1] * y + edges[2, 2]
    return abs(float(np.linalg.det(edges))) / abs(w) ** 3


def decode(counts, height: int, width: int) -> np.ndarray:
    """A bool mask from column-major run lengths (the first run is of zeros)."""
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(counts, dtype=np.int64))
    if flat.size != height * width:
        raise ValueError(f"run lengths add up to {flat.size}, not {height} x {width}")
    return flat.reshape((height, width), order="F")


def encode(mask: np.ndarray) -> tuple:
    """Column-major run lengths of a mask, the first of zeros (0 when it starts with a one)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)
    return tuple(int(v) for v in runs)


def to_string(counts) -> str:
    """COCO's compressed counts (``rleToString``): each run less the one two before,
    in 5-bit groups with a continuation bit, offset by 48."""
    out = []
    for index, value in enumerate(counts):
        x = int(value) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def from_string(text: str) -> tuple:
    """Run lengths from COCO's compressed counts (``rleFrString``); ``ValueError`` when the
    text is not that encoding."""
    counts: list = []
    position = 0
    while position < len(text):
        x = shift = 0
        more = True
        while more:
            if position >= len(text):
                raise ValueError("compressed counts end in the middle of a number")
            c = ord(text[position]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"{text[position]!r} is not a compressed-counts character")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            position += 1
            shift += 5
            if not more and c & 0x10:
                x |= -1 << shift
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return tuple(counts)
