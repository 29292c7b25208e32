"""The annotation format registry: ``Format``, ``register``, ``lookup``, ``names``, and the
reading helpers every format shares.

Adding a format is one module that calls ``register(Format(...))``, named in
``augcli.formats.MODULES`` (as ops are registered by family, and Pillow lists
its plugins). This module never imports a format, so there is no import cycle.

A format is either *per image* (one file beside each image, or under
``annotations.path``, named as the image with the format's extension) or
*per folder* (one file for every image of a folder, or of each split folder
of a dataset). Formats read into and write from the box target
(``augcli.targets.boxes``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import AugcliError, UsageError, excerpt
from ..targets.boxes import DEFAULT_MIN_VISIBILITY, Box, ImageBoxes
from ..targets.keypoints import Keypoints
from ..targets.polygons import Polygon

NORMALIZED_DECIMALS = 10  # yolo, regions: 1e-10 of a side, far below a pixel
MAX_DIGITS = 18  # a class index or VOC flag longer than this is not one


@dataclass(frozen=True)
class AnnotationSpec:
    """The recipe's ``annotations`` key: where and how boxes are stored.

    ``path``: the folder holding the per-image files (default: beside the
    images) or, for a per-folder format (coco), its file (required). ``task``:
    what a format's lines mean where they alone cannot say (YOLO's ``obb``, ``pose``).
    ``kpt_shape``: YOLO-pose's (K, 2 or 3), from the data.yaml or the recipe;
    ``flip_idx``: which keypoint takes each one's place when the image is mirrored
    (None: the format's own, COCO's from ``left_``/``right_`` names). ``suffix``,
    ``mask_fill``: a mask image's name ending and the id where the image is filled.
    """

    format: str
    path: Path | str | None = None  # a path, or a URL
    min_visibility: float = DEFAULT_MIN_VISIBILITY
    task: str = ""  # yolo: 'obb' reads 9-value lines as oriented boxes (Ultralytics' task)
    kpt_shape: tuple = ()  # yolo 'pose': (keypoints per line, 2 or 3 values each)
    flip_idx: tuple | None = None
    suffix: str = ""  # masks: how a label map's name ends, for '_mask.png'
    mask_fill: int = 0  # masks: the id where the image is filled


@dataclass(frozen=True)
class Format:
    """An annotation format: how its files are named, read and written.

    Per image: ``read(text, path, size, classes, classes_from)`` gives the
    boxes of one file (``size`` is the image's (width, height)) and
    ``write(image, filename, depth, classes)`` the text of one output's file
    (``image``: ``ImageBoxes``). Per folder: ``read(text, path)`` loads the one file
    (an object with ``path``, ``names`` (category -> label), ``by_file``
    (file name -> entry) and ``boxes(relative, size)``), and
    ``write(loaded, records)`` makes the output's file from every output's
    manifest record.
    """

    name: str  # as a recipe's annotations.format and --annotations say it
    title: str  # how messages name its files: 'one COCO file in each split'
    extension: str  # the suffix of its files: per image, the image's name with this suffix
    read: Callable
    write: Callable
    per_image: bool = True
    classes_file: str | None = None  # at the annotation root: names by class index
    split_file: str | None = None  # per folder: the file's name in a split folder, if present
    path_help: str = ""  # per folder: what annotations.path names (it is required there)
    # a label image (masks): its name is the image's stem + ``extension``; the worker reads
    # and moves its pixels, nothing is parsed as text
    label_image: bool = False


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> None:
    """Add ``fmt`` to the registry (``augcli.formats`` loads every format module once)."""
    FORMATS[fmt.name] = fmt


def lookup(name: str) -> Format:
    """The format called ``name``; recipes and the CLI accept only ``names()``."""
    return FORMATS[name]


def names() -> tuple:
    """Every format's name, in registration order."""
    return tuple(FORMATS)


class AnnotationError(AugcliError):
    """One annotation file is malformed: ``where`` is a line number or a key path."""

    def __init__(self, path, where, reason):
        self.path, self.where, self.reason = str(path), where, reason
        super().__init__(str(self))

    @property
    def location(self) -> str:
        """``labels/tom.txt:3`` for a line, ``tom.json: regions[2].left`` for a key path."""
        if self.where is None:
            return self.path
        if isinstance(self.where, int):
            return f"{self.path}:{self.where}"
        return f"{self.path}: {self.where}"

    def __str__(self):
        return f"{self.location}: {self.reason}"


def parse_classes(text: str, path) -> tuple:
    """Class names by index from a classes file's text (classes.txt: one per line)."""
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    check_class_names(names, lambda index: f"{path}:{index + 1}")
    return tuple(names)


def check_class_names(names, where) -> None:
    """Refuse class names (by id) that cannot label a box: empty, with control characters,
    or the name of an earlier class. ``where(index)`` places a name in the message:
    ``classes.txt:3``, ``data.yaml: names[2]``."""
    first: dict = {}
    for index, name in enumerate(names):
        if not name.strip():
            raise UsageError(f"{where(index)}: empty class name")
        problem = label_problem(name)
        if problem:
            raise UsageError(f"{where(index)}: class name {problem}")
        if name in first:
            raise UsageError(f"{where(index)}: '{name}' is also the name of class "
                             f"{first[name]}")
        first[name] = index


def label_problem(label) -> str | None:
    """Why ``label`` cannot be a class name (None when it can): empty, not text, or with
    control characters (a line break in a YOLO classes.txt or a VOC name, escape codes)."""
    if not isinstance(label, str) or not label.strip():
        return "missing or not a name"
    if not label.isprintable():
        return f"{excerpt(label)} has control characters"
    return None


def checked(box: Box, size, path, where) -> Box:
    """A box read from a file, clipped to the image; one with no area is malformed."""
    if not (box.x1 > box.x0 and box.y1 > box.y0):
        raise AnnotationError(path, where, "box has no area (width or height <= 0)")
    inside = box.clipped(*size)
    if inside.area <= 0:
        raise AnnotationError(path, where, f"box lies outside the {size[0]} x {size[1]} image")
    return inside


def checked_polygon(polygon: Polygon, size, path, where) -> Polygon:
    """A polygon read from a file, clipped to the image; one with no area inside is
    malformed."""
    if polygon.area <= 0:
        raise AnnotationError(path, where, "polygon has no area")
    inside = polygon.clipped(*size)
    if not inside.rings:
        raise AnnotationError(path, where, f"polygon lies outside the {size[0]} x {size[1]} "
                                           "image")
    return inside


def read_ring(values, path, where, scale=(1.0, 1.0)) -> tuple:
    """A polygon ring ``x1 y1 x2 y2 ...`` (at least 3 points) as a flat tuple in pixels;
    ``scale``: the image size for normalized coordinates."""
    if len(values) < 6 or len(values) % 2:
        raise AnnotationError(path, where, f"a polygon needs x y pairs of at least 3 points, "
                                           f"got {len(values)} values")
    numbers = [read_number(value, path, where) for value in values]
    return tuple(value * scale[index % 2] for index, value in enumerate(numbers))


def read_number(text, path, where) -> float:
    """A finite number from a file; a string, bool or NaN is malformed."""
    if isinstance(text, bool):
        raise AnnotationError(path, where, f"expected a number, got {excerpt(text)}")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise AnnotationError(path, where, f"expected a number, got {excerpt(text)}") \
            from None
    except OverflowError:  # a JSON integer of hundreds of digits
        value = math.inf
    if not math.isfinite(value):
        raise AnnotationError(path, where, f"expected a finite number, got {excerpt(text)}")
    return value


def from_normalized(label, left, top, width, height, size) -> Box:
    image_width, image_height = size
    return Box(label, left * image_width, top * image_height, (left + width) * image_width,
               (top + height) * image_height)


def normalized(box: Box | Keypoints, image: ImageBoxes) -> tuple:
    """(left, top, width, height) as fractions of the image size."""
    return (box.x0 / image.width, box.y0 / image.height, (box.x1 - box.x0) / image.width,
            (box.y1 - box.y0) / image.height)


def parse_json(text: str, path):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise AnnotationError(path, None, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer of more digits than int() reads (4300)
        raise AnnotationError(path, None, f"not valid JSON (a number has too many digits: "
                                          f"{exc})") from None


def text_number(value: float, decimals: int) -> str:
    """Shortest text to ``decimals`` places.

    ``12``, ``12.5``, ``0.4804687500`` -> ``0.48046875``.
    """
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
