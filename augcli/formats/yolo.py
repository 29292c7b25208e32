"""YOLO: one ``.txt`` per image, a line ``class cx cy w h`` per box, normalized to the
image size.

``classes.txt`` (one name per line, at the annotation root) names the class
indices; without it the label is the index. In a data.yaml dataset
(``augcli.datasets``) the names come from the data.yaml and each image's
labels are in the ``labels`` folder beside ``images``.
"""

from __future__ import annotations

from ..errors import excerpt
from ..targets.boxes import ImageBoxes
from .base import (
    MAX_DIGITS,
    NORMALIZED_DECIMALS,
    AnnotationError,
    Format,
    checked,
    from_normalized,
    normalized,
    read_number,
    register,
    text_number,
)

NAME = "yolo"
CLASSES_FILE = "classes.txt"


def parse_yolo(text: str, path, size, classes=(), classes_from=CLASSES_FILE) -> tuple:
    """``class cx cy w h`` per line, normalized; blank lines are skipped."""
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            more = "; polygons are not supported" if len(fields) > 5 else ""
            raise AnnotationError(path, number, f"expected 5 values (class cx cy w h), got "
                                                f"{len(fields)}{more}")
        label = _yolo_label(fields[0], classes, path, number, classes_from)
        cx, cy, w, h = (read_number(value, path, number) for value in fields[1:])
        boxes.append(checked(from_normalized(label, cx - w / 2, cy - h / 2, w, h, size),
                              size, path, number))
    return tuple(boxes)


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
    """A line ``class cx cy w h`` per box; the class is the label's index in ``classes``
    (the label itself, an index, without them)."""
    index = {name: i for i, name in enumerate(classes)}
    lines = []
    for box in image.boxes:
        left, top, width, height = normalized(box, image)
        values = (left + width / 2, top + height / 2, width, height)
        class_id = index[box.label] if classes else int(box.label)
        lines.append(" ".join([str(class_id)] + [text_number(v, NORMALIZED_DECIMALS)
                                                  for v in values]))
    return "".join(line + "\n" for line in lines)


register(Format(NAME, "YOLO", ".txt", parse_yolo, write_yolo, classes_file=CLASSES_FILE))
