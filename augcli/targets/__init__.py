"""Target kinds: what follows an image's pixels through the geometric ops.

A target kind knows how a forward 3x3 map of pixel centres moves it (its
``moved``); the annotation formats (``augcli.formats``) read and write it.
``boxes``: axis-aligned boxes, the kind every format carries; ``polygons``:
instance outlines (COCO segmentation polygons, YOLO-seg); ``oriented``: rotated
rectangles (YOLO-OBB); ``rle``: COCO's run-length masks; ``keypoints``: an
object's named points with its box or segmentation (COCO keypoints, YOLO-pose).
Every kind has a label and a tight box (``x0, y0, x1, y1``), so counting and drawing work on all.
"""

from __future__ import annotations

from .boxes import Box
from .keypoints import Keypoints
from .oriented import OrientedBox
from .polygons import Polygon
from .rle import RleMask

# The kinds as the docs and refusals name them (``augcli ops``' table has a column each;
# "masks" also covers mask images, which are no target objects).
KIND_NAMES = {Box: "boxes", Polygon: "polygons", Keypoints: "keypoints",
              OrientedBox: "oriented boxes", RleMask: "masks"}


def from_record(record: dict):
    """The target a manifest record describes (``to_record``'s inverse): its kind is the key
    beside ``box`` (``keypoints``, ``rle``, ``polygon``, ``corners``), a box without one."""
    if "keypoints" in record:
        return Keypoints.from_record(record)
    if "rle" in record:
        return RleMask.from_record(record)
    if "polygon" in record:
        return Polygon.from_record(record)
    if "corners" in record:
        return OrientedBox.from_record(record)
    return Box.from_record(record)
