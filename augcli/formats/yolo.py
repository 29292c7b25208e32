"""YOLO: one ``.txt`` per image, a line ``class cx cy w h`` per box, normalized to the
image size; a segment line ``class x1 y1 x2 y2 ...`` (YOLO-seg) is a polygon, and
with ``task: obb`` (in the recipe's annotations or the data.yaml) a line
``class x1 y1 ... x4 y4`` is an oriented box (YOLO-OBB); with ``task: pose`` and a
``kpt_shape`` of (K, 2 or 3) a line ``class cx cy w h`` + K x ``x y [v]`` is a box
with keypoints (YOLO-pose), whose ``flip_idx`` reorders them when the image is
mirrored.

``classes.txt`` (one name per line, at the annotation root) names the class
indices; without it the label is the index. In a data.yaml dataset
(``augcli.datasets``) the names come from the data.yaml and each image's
labels are in the ``labels`` folder beside ``images``.
"""

from __future__ import annotations

from ..errors import excerpt
from ..targets.boxes import Box, ImageBoxes
from ..targets.keypoints import Keypoints
from ..targets.oriented import OrientedBox
from ..targets.polygons import Polygon
from .base import (
    MAX_DIGITS,
    NORMALIZED_DECIMALS,
    AnnotationError,
    Format,
    checked,
    checked_polygon,
    from_normalized,
    normalized,
    read_number,
    read_ring,
    register,
    text_number,
)

NAME = "yolo"
OBB = "obb"  # annotations.task (or data.yaml's task) for oriented boxes
POSE = "pose"  # annotations.task (or a data.yaml with kpt_shape) for keypoints
CLASSES_FILE = "classes.txt"


def parse_yolo(text: str, path, size, classes=(), classes_from=CLASSES_FILE,
               task: str = "", kpt_shape: tuple = (), flip_idx: tuple | None = None) -> tuple:
    """``class cx cy w h`` per line, normalized, or a segment line ``class x1 y1 x2 y2 ...``
    (a polygon of 3 or more points, as Ultralytics reads YOLO-seg); blank lines are
    skipped. With ``task='obb'`` each line is ``class x1 y1 x2 y2 x3 y3 x4 y4``, an
    oriented box's corners (YOLO-OBB); with ``task='pose'``, ``class cx cy w h`` and
    ``kpt_shape`` = (K, dims) values ``x y [v]`` per keypoint (YOLO-pose: a point at
    ``0 0`` without visibility is not labelled)."""
    boxes: list = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if task == OBB:
            boxes.append(_oriented(fields, path, number, size, classes, classes_from))
            continue
        if task == POSE:
            boxes.append(_pose(fields, path, number, size, classes, classes_from, kpt_shape,
                               flip_idx or ()))
            continue
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            raise AnnotationError(path, number, f"expected 5 values (class cx cy w h) or an "
                                                f"odd number >= 7 (a polygon: class x1 y1 x2 "
                                                f"y2 x3 y3 ...), got {len(fields)}")
        label = _yolo_label(fields[0], classes, path, number, classes_from)
        if len(fields) > 5:  # a segment line: the polygon, its box the polygon's bounds
            ring = read_ring(fields[1:], path, number, size)
            boxes.append(checked_polygon(Polygon(label, (ring,)), size, path, number))
            continue
        cx, cy, w, h = (read_number(value, path, number) for value in fields[1:])
        boxes.append(checked(from_normalized(label, cx - w / 2, cy - h / 2, w, h, size),
                              size, path, number))
    return tuple(boxes)


def _oriented(fields, path, number, size, classes, classes_from) -> OrientedBox:
    if len(fields) != 9:
        raise AnnotationError(path, number, f"expected 9 values (class x1 y1 x2 y2 x3 y3 x4 "
                                            f"y4, the task is obb), got {len(fields)}")
    label = _yolo_label(fields[0], classes, path, number, classes_from)
    box = OrientedBox(label, read_ring(fields[1:], path, number, size))
    if box.area <= 0:
        raise AnnotationError(path, number, "oriented box has no area")
    if box.x1 <= 0 or box.y1 <= 0 or box.x0 >= size[0] or box.y0 >= size[1]:
        raise AnnotationError(path, number, f"box lies outside the {size[0]} x {size[1]} "
                                            "image")
    return box.clipped(*size)


def _pose(fields, path, number, size, classes, classes_from, kpt_shape, flip) -> Keypoints:
    count, dims = kpt_shape
    if len(fields) != 5 + count * dims:
        raise AnnotationError(path, number, f"expected {5 + count * dims} values (class cx cy "
                                            f"w h and {count} keypoints of {dims}, as "
                                            f"kpt_shape says), got {len(fields)}")
    label = _yolo_label(fields[0], classes, path, number, classes_from)
    cx, cy, w, h = (read_number(value, path, number) for value in fields[1:5])
    box = checked(from_normalized(label, cx - w / 2, cy - h / 2, w, h, size), size, path, number)
    values = [read_number(value, path, number) for value in fields[5:]]
    points: list = []
    for index in range(0, len(values), dims):
        x, y = values[index] * size[0], values[index + 1] * size[1]
        v = values[index + 2] if dims == 3 else (0.0 if x == y == 0 else 2.0)
        points.extend((x, y, v) if v > 0 else (0.0, 0.0, 0.0))
    return Keypoints(label, tuple(points), Box(label, box.x0, box.y0, box.x1, box.y1), flip,
                     dims)


def _yolo_label(text: str, classes, path, number, classes_from=CLASSES_FILE) -> str:
    if not (text.isascii() and text.isdigit()):  # not '²': str.isdigit takes it, int() does not
        raise AnnotationError(path, number, f"class must be a whole number >= 0, got "
                                            f"{excerpt(text)}")
    if len(text) > MAX_DIGITS:
        raise AnnotationError(path, number, f"class {excerpt(text)} is too large")
    index = int(text)
    if not classes:
        return str(index)
    if index >= len(classes):
        raise AnnotationError(path, number, f"class {index} is not in {classes_from} "
                                            f"({len(classes)} names, 0 to {len(classes) - 1})")
    return classes[index]


def write_yolo(image: ImageBoxes, filename: str, depth: int, classes: tuple = ()) -> str:
    """A line ``class cx cy w h`` per box (followed by its keypoints' ``x y [v]``),
    ``class x1 y1 x2 y2 ...`` per polygon or oriented box; the class
    is the label's index in ``classes`` (the label itself, an index, without them)."""
    index = {name: i for i, name in enumerate(classes)}
    lines = []
    for box in image.boxes:
        class_id = index[box.label] if classes else int(box.label)
        if isinstance(box, (Polygon, OrientedBox)):
            points = segment(box) if isinstance(box, Polygon) else box.corners
            lines.append(" ".join([str(class_id)] + [
                text_number(v / (image.width, image.height)[i % 2], NORMALIZED_DECIMALS)
                for i, v in enumerate(points)]))
            continue
        left, top, width, height = normalized(box, image)
        values = [left + width / 2, top + height / 2, width, height]
        if isinstance(box, Keypoints):
            for x, y, v in zip(*[iter(box.points)] * 3, strict=True):
                values.extend((x / image.width, y / image.height, v)[:box.dims])
        lines.append(" ".join([str(class_id)] + [text_number(v, NORMALIZED_DECIMALS)
                                                  for v in values]))
    return "".join(line + "\n" for line in lines)


def segment(polygon: Polygon) -> tuple:
    """A polygon's rings as one YOLO-seg line's points: a ring the border cut in parts is
    one object, so each further part is joined there and back from the first part's first
    point (as Ultralytics joins COCO's multi-part segmentations), enclosing no more area."""
    first = polygon.rings[0]
    points = list(first)
    for ring in polygon.rings[1:]:
        points.extend(first[:2] + ring + ring[:2])
    return tuple(points)


register(Format(NAME, "YOLO", ".txt", parse_yolo, write_yolo, classes_file=CLASSES_FILE))
