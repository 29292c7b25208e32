"""Bounding boxes: read and write them in four formats, and carry them through transforms.

One internal form for every format: a ``Box(label, x0, y0, x1, y1)`` in pixels
of the image as augcli decodes it (EXIF orientation applied), in pixel-edge
coordinates: the image spans ``[0, width] x [0, height]``, pixel column ``j``
spans ``[j, j + 1)``, so ``x0`` is the left edge of the box's first column and
``x1`` the right edge of its last one. Boxes never leave the image: reading
clips a box that reaches outside (a hair outside is only float rounding), and
a box with no area inside the image is malformed.

Formats (``annotations: {format: ...}`` in a recipe):

* ``yolo``: one ``.txt`` per image, a line ``class cx cy w h`` per box,
  normalized to the image size; ``classes.txt`` (one name per line, at the
  annotation root) names the class indices; without it the label is the index.
* ``voc``: one Pascal VOC ``.xml`` per image; ``xmin ymin xmax ymax`` are read
  as pixel-edge coordinates (as CVAT, LabelImg, torchvision and albumentations
  do; the original VOC devkit's 1-based inclusive pixels differ by one pixel).
* ``regions``: one ``.json`` per image, ``{"regions": [{"tagName", "left",
  "top", "width", "height"}]}`` normalized to the image size: Custom Vision's
  ``Region`` with the tag's name in place of its id (ids exist only once
  the tags are created in a project).
* ``coco``: one COCO JSON for the whole folder; ``file_name`` is the image's
  path relative to the input folder; ``bbox`` is ``[x, y, width, height]`` in
  pixels. Boxes are carried with their other keys (``iscrowd``, ``attributes``);
  a file with segmentation polygons or keypoints is refused rather than
  have them dropped.

VOC's per-object ``pose``, ``truncated`` and ``difficult`` travel with each box.
A dataset with splits (``augcli.datasets``) passes a ``Layout``: class names
from its data.yaml, labels in a ``labels`` folder beside ``images``, or one
COCO file per split.

The parent process reads (``AnnotationSource``), so a malformed file is
reported with its path and line before any work starts; workers receive plain
``ImageBoxes`` and an ``AnnotationFormat``, transform the boxes with the
output's sampled steps (``transform_boxes``) and write the per-image file
(``encode_boxes``); the parent writes the COCO file from the manifest records.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import geometry, imagefiles
from .errors import AugcliError, UsageError, excerpt

FORMATS = ("yolo", "voc", "coco", "regions")
EXTENSIONS = {"yolo": ".txt", "voc": ".xml", "regions": ".json"}  # per-image formats
CLASSES_FILE = "classes.txt"
VOC_EXTRAS = ("pose", "truncated", "difficult")  # per-object VOC fields carried to outputs
VOC_DEFAULTS = {"pose": "Unspecified", "truncated": 0, "difficult": 0}
COCO_PATH_REQUIRED = ("required for coco: the JSON file that lists every image's boxes (or, "
                      "in a dataset with split folders, one COCO file in each)")
COCO_BOX_KEYS = ("id", "image_id", "category_id", "bbox", "area")  # remade for each output
DEFAULT_MIN_VISIBILITY = 0.3

NORMALIZED_DECIMALS = 10  # yolo, regions: 1e-10 of a side, far below a pixel
PIXEL_DECIMALS = 6  # voc, coco, manifest: a millionth of a pixel


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


# --- the internal form ----------------------------------------------------------------

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

    def to_record(self) -> dict:
        """JSON for the manifest: the label and the four edges, to a millionth of a pixel."""
        record: dict = {"label": self.label,
                              "box": [_json_number(v, PIXEL_DECIMALS)
                                for v in (self.x0, self.y0, self.x1, self.y1)]}
        if self.extra:
            record["extra"] = dict(self.extra)
        return record

    @classmethod
    def from_record(cls, record: dict) -> Box:
        x0, y0, x1, y1 = map(float, record["box"])
        return cls(record["label"], x0, y0, x1, y1, tuple(record.get("extra", {}).items()))


@dataclass(frozen=True)
class ImageBoxes:
    """The boxes of one image and the size they refer to (plain data for workers)."""

    width: int
    height: int
    boxes: tuple = ()


@dataclass(frozen=True)
class AnnotationSpec:
    """The recipe's ``annotations`` key: where and how boxes are stored.

    ``path``: the folder holding the per-image files (default: beside the
    images) or, for coco, the JSON file (required).
    """

    format: str
    path: Path | None = None
    min_visibility: float = DEFAULT_MIN_VISIBILITY


@dataclass(frozen=True)
class Layout:
    """Where a dataset keeps its annotations, when it is more than one folder of images.

    Made by ``augcli.datasets`` from a data.yaml or from split folders; the
    default is the plain layout (files beside the images, classes.txt, one
    COCO file).
    """

    classes: tuple | None = None  # yolo: class names from data.yaml (no classes.txt)
    classes_from: str = CLASSES_FILE  # where the class names come from, for messages
    labels_folder: bool = False  # yolo: train/images/a.jpg -> train/labels/a.txt
    coco_files: tuple = ()  # (split folder, COCO file name) pairs: one COCO file per split
    held_out: tuple = ()  # split folders copied unchanged: their COCO file is copied as is


@dataclass(frozen=True)
class AnnotationFormat:
    """What a worker needs to write one image's annotation file: plain, picklable data."""

    name: str
    min_visibility: float = DEFAULT_MIN_VISIBILITY
    classes: tuple = ()  # yolo: names by class index (classes.txt); empty: labels are indices
    labels_folder: bool = False  # yolo: labels in the 'labels' folder beside 'images'
    classes_from: str = CLASSES_FILE

    def file_for(self, image_relative: str) -> str | None:
        """``cats/tom_rotate_1.jpg`` -> ``cats/tom_rotate_1.txt``; None for coco (one file).

        With ``labels_folder`` (Ultralytics' rule): the last ``images`` folder of the
        path becomes ``labels``: ``train/images/a.jpg`` -> ``train/labels/a.txt``,
        ``images/train/a.jpg`` -> ``labels/train/a.txt``.
        """
        extension = EXTENSIONS.get(self.name)
        if extension is None:
            return None
        path = PurePosixPath(image_relative)
        if self.labels_folder:
            path = labels_path(path)
        return path.with_suffix(extension).as_posix()


def labels_path(image: PurePosixPath) -> PurePosixPath:
    """Ultralytics' images -> labels rule on a relative path (unchanged without an
    ``images`` folder in it)."""
    parts = image.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            return PurePosixPath(*parts[:index], "labels", *parts[index + 1:])
    return image


# --- transforms -------------------------------------------------------------------------

@dataclass(frozen=True)
class Dropped:
    """A box dropped from an output: the source box and how much of it stayed visible."""

    box: Box
    visibility: float

    def to_record(self) -> dict:
        return {**self.box.to_record(), "visibility": round(self.visibility, 4)}


def transform_boxes(boxes, matrix: np.ndarray, size, min_visibility: float) -> tuple[tuple, tuple]:
    """Carry boxes through a forward 3x3 map of pixel centres into an image of ``size`` (h, w).

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
        hull = _hull(box, edges)
        visibility = 0.0
        if hull is not None and hull.area > 0:
            visible = hull.clipped(width, height)
            visibility = visible.area / hull.area
        if visibility <= 0 or visibility < min_visibility:
            dropped.append(Dropped(box, visibility))
        else:
            kept.append(visible)
    return tuple(kept), tuple(dropped)


def _hull(box: Box, edges: np.ndarray) -> Box | None:
    """Bounding box of the mapped corners; None when a corner maps to infinity."""
    homogeneous = np.hstack([box.corners(), np.ones((4, 1))]) @ edges.T
    if not np.all(homogeneous[:, 2] > 1e-12):  # behind the view of a homography
        return None
    points = homogeneous[:, :2] / homogeneous[:, 2:3]
    if not np.all(np.isfinite(points)):
        return None
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return Box(box.label, float(x0), float(y0), float(x1), float(y1), box.extra)


# --- reading -------------------------------------------------------------------------------

class AnnotationSource:
    """The annotations of one input folder, opened in the parent process.

    Per-image formats read each file when asked; coco reads its file (or, in a
    dataset with splits, one file per split) here, so a broken COCO file stops
    the run before any work (``UsageError``).
    """

    def __init__(self, spec: AnnotationSpec, input_dir: Path, layout: Layout | None = None):
        self.spec = spec
        self.layout = layout = layout or Layout()
        self.root = Path(spec.path) if spec.path is not None else Path(input_dir)
        classes = layout.classes
        if classes is None:
            classes = read_classes(self.root / CLASSES_FILE) if spec.format == "yolo" else ()
        self.format = AnnotationFormat(spec.format, spec.min_visibility, classes,
                                       layout.labels_folder, layout.classes_from)
        self.cocos: dict = {}  # split folder ('' for the one file) -> _Coco
        if spec.format == "coco":
            if spec.path is None and not layout.coco_files:
                raise UsageError(f"annotations.path: {COCO_PATH_REQUIRED}")
            files = layout.coco_files or (("", None),)
            self.cocos = {folder: _Coco.load(self.root / folder / name if name else self.root)
                          for folder, name in files}
        self.found = 0  # images read so far that had an annotation file (or COCO entry)
        self.looked_for: str | None = None  # the first place looked, for "none found"

    @property
    def declared_labels(self) -> tuple:
        """Labels the dataset declares even if no box uses them (classes.txt, categories)."""
        if self.cocos:
            return tuple(dict.fromkeys(name for coco in self.cocos.values()
                                       for name in coco.names.values()))
        return self.format.classes

    def _coco_for(self, relative: str) -> tuple:
        """(split folder, the COCO file holding ``relative``, its name there)."""
        for folder, coco in self.cocos.items():
            if not folder:
                return folder, coco, relative
            if relative.startswith(folder + "/"):
                return folder, coco, relative[len(folder) + 1:]
        return None, None, relative

    def file_for(self, relative: str, image_path: Path | None = None) -> Path:
        """The annotation file of an image: under the root, or beside ``image_path``."""
        if self.cocos:
            _, coco, _ = self._coco_for(relative)
            return coco.path if coco is not None else self.root
        if self.spec.path is None and image_path is not None and not self.format.labels_folder:
            return image_path.with_suffix(EXTENSIONS[self.spec.format])
        per_image = self.format.file_for(relative)
        assert per_image is not None  # only coco has no file per image, handled above
        return self.root / per_image

    def read(self, relative: str, image_path: Path) -> ImageBoxes:
        """Boxes of one image (no file or an empty file: no boxes).

        Raises ``AnnotationError`` naming the file and line (or key path), or
        ``ImageReadError`` when the image header cannot be read.
        """
        width, height = imagefiles.image_size(image_path)
        if self.cocos:
            _, coco, name = self._coco_for(relative)
            if coco is None:
                return ImageBoxes(width, height, ())
            self.found += name in coco.by_file
            self.looked_for = self.looked_for or f"'{name}' in {coco.path}"
            boxes = coco.boxes(name, (width, height))
        else:
            boxes = self._read_file(self.file_for(relative, image_path), (width, height))
        return ImageBoxes(width, height, boxes)

    def require_some(self, images: int) -> None:
        """Refuse a run where not one of ``images`` images has annotations: almost surely
        a wrong ``path`` (or COCO ``file_name`` values not relative to the input folder),
        which would otherwise quietly give images without objects."""
        if images and not self.found:
            raise UsageError(f"no annotations found for any of the {images} images (looked "
                             f"for {self.looked_for}, ...); check annotations.path (COCO: "
                             "file_name is the path relative to the input folder)")

    def _read_file(self, path: Path, size) -> tuple:
        self.looked_for = self.looked_for or str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            return ()
        except UnicodeDecodeError:
            raise AnnotationError(path, None, "not UTF-8 text") from None
        except OSError as exc:
            raise AnnotationError(path, None, f"cannot read ({exc.strerror or exc})") from None
        self.found += 1
        if not text.strip():
            return ()
        parse = {"yolo": parse_yolo, "voc": parse_voc, "regions": parse_regions}
        return parse[self.spec.format](text, path, size, self.format.classes,
                                       self.format.classes_from)

    def output_files(self) -> list:
        """The files ``prepare_output`` and ``finish_output`` write, relative to the output."""
        if self.cocos:
            return [self._coco_output(folder) for folder in self.cocos]
        return [CLASSES_FILE] if self.format.classes and self.layout.classes is None else []

    def _coco_output(self, folder: str) -> str:
        return f"{folder}/{self.cocos[folder].path.name}" if folder else self.root.name

    def prepare_output(self, output_dir: Path) -> None:
        """Files the output folder needs before any image: YOLO's classes.txt."""
        if self.format.classes and self.layout.classes is None:
            text = "".join(f"{name}\n" for name in self.format.classes)
            imagefiles.write_atomic(output_dir / CLASSES_FILE, text.encode("utf-8"))

    def finish_output(self, output_dir: Path, records) -> None:
        """Files made from every output's record at the end: the COCO file(s).

        A held-out split whose images were all copied as they are gets its
        COCO file copied byte for byte.
        """
        records = list(records)
        for folder, coco in self.cocos.items():
            prefix = f"{folder}/" if folder else ""
            mine = [{**r, "output": r["output"][len(prefix):]} for r in records
                    if r["output"].startswith(prefix)]
            destination = output_dir / self._coco_output(folder)
            copied = {r["output"] for r in mine if r.get("copy") and "conformed" not in r
                      and r["output"] == r["source"][len(prefix):]}
            if folder in self.layout.held_out and set(coco.by_file) <= copied:
                imagefiles.copy_atomic(coco.path, destination)
            else:
                imagefiles.write_atomic(destination, coco.encode(mine).encode("utf-8"))


def read_classes(path: Path) -> tuple:
    """Class names by index from a classes.txt (empty when there is none)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the class names ({exc})") from None
    names = [line.strip() for line in lines]
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


def _checked(box: Box, size, path, where) -> Box:
    """A box read from a file, clipped to the image; one with no area is malformed."""
    if not (box.x1 > box.x0 and box.y1 > box.y0):
        raise AnnotationError(path, where, "box has no area (width or height <= 0)")
    inside = box.clipped(*size)
    if inside.area <= 0:
        raise AnnotationError(path, where, f"box lies outside the {size[0]} x {size[1]} image")
    return inside


def _number(text, path, where) -> float:
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


_MAX_DIGITS = 18  # a class index or VOC flag longer than this is not one


def label_problem(label) -> str | None:
    """Why ``label`` cannot be a class name (None when it can): empty, not text, or with
    control characters (a line break in a YOLO classes.txt or a VOC name, escape codes)."""
    if not isinstance(label, str) or not label.strip():
        return "missing or not a name"
    if not label.isprintable():
        return f"{excerpt(label)} has control characters"
    return None


def _from_normalized(label, left, top, width, height, size) -> Box:
    image_width, image_height = size
    return Box(label, left * image_width, top * image_height, (left + width) * image_width,
               (top + height) * image_height)


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
        cx, cy, w, h = (_number(value, path, number) for value in fields[1:])
        boxes.append(_checked(_from_normalized(label, cx - w / 2, cy - h / 2, w, h, size),
                              size, path, number))
    return tuple(boxes)


def _yolo_label(text: str, classes, path, number, classes_from=CLASSES_FILE) -> str:
    if not (text.isascii() and text.isdigit()):  # not '²': str.isdigit takes it, int() does not
        raise AnnotationError(path, number, f"class must be a whole number >= 0, got "
                                            f"{excerpt(text)}")
    if len(text) > _MAX_DIGITS:
        raise AnnotationError(path, number, f"class {excerpt(text)} is too large")
    index = int(text)
    if not classes:
        return str(index)
    if index >= len(classes):
        raise AnnotationError(path, number, f"class {index} is not in {classes_from} "
                                            f"({len(classes)} names, 0 to {len(classes) - 1})")
    return classes[index]


def parse_voc(text: str, path, size, classes=(), classes_from=None) -> tuple:
    """Pascal VOC XML: each ``object`` gives ``name`` and ``bndbox`` in pixel edges.

    ``pose``, ``truncated`` and ``difficult``, where an object sets them to other than
    VOC's defaults (Unspecified, 0, 0), are kept as the box's extras (0/1 as integers)
    and written back."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise AnnotationError(path, exc.position[0], f"not valid XML ({exc})") from None
    declared = (_xml_number(root, "size/width", "size.width", path),
                _xml_number(root, "size/height", "size.height", path))
    if None not in declared and min(declared) > 0 and declared != tuple(map(float, size)):
        raise AnnotationError(path, "size", f"says {declared[0]:g} x {declared[1]:g} but the "
                                            f"image is {size[0]} x {size[1]} (EXIF orientation "
                                            "applied)")
    boxes = []
    for index, element in enumerate(root.findall("object")):
        where = f"object[{index}]"
        label = (element.findtext("name") or "").strip()
        problem = "missing or empty" if not label else label_problem(label)
        if problem:
            raise AnnotationError(path, f"{where}.name", problem)
        edges = []
        for key in ("xmin", "ymin", "xmax", "ymax"):
            value = _xml_number(element, f"bndbox/{key}", f"{where}.bndbox.{key}", path)
            if value is None:
                raise AnnotationError(path, f"{where}.bndbox.{key}", "missing")
            edges.append(value)
        extra = tuple((key, value) for key in VOC_EXTRAS
                      if (value := _voc_flag(element.findtext(key))) not in (None,
                                                                             VOC_DEFAULTS[key]))
        x0, y0, x1, y1 = edges
        boxes.append(_checked(Box(label, x0, y0, x1, y1, extra), size, path, where))
    return tuple(boxes)


def _voc_flag(text: str | None):
    """A VOC field's value: 0/1 as integers, text as it is; None when absent."""
    text = None if text is None else text.strip()
    return int(text) if text and text.isascii() and text.isdigit() and \
        len(text) <= _MAX_DIGITS else text


def _xml_number(element, xpath: str, where: str, path):
    text = element.findtext(xpath)
    return None if text is None or not text.strip() else _number(text.strip(), path, where)


def _json(text: str, path):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise AnnotationError(path, None, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer of more digits than int() reads (4300)
        raise AnnotationError(path, None, f"not valid JSON (a number has too many digits: "
                                          f"{exc})") from None


def parse_regions(text: str, path, size, classes=(), classes_from=None) -> tuple:
    """``{"regions": [{"tagName", "left", "top", "width", "height"}]}``, normalized."""
    data = _json(text, path)
    regions = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(regions, list):
        raise AnnotationError(path, "regions", "expected {\"regions\": [...]}")
    boxes = []
    for index, region in enumerate(regions):
        where = f"regions[{index}]"
        if not isinstance(region, dict):
            raise AnnotationError(path, where, f"expected an object, got {excerpt(region)}")
        label = region.get("tagName")
        problem = label_problem(label)
        if problem:
            raise AnnotationError(path, f"{where}.tagName", problem)
        left, top, width, height = (_number(region.get(key), path, f"{where}.{key}")
                                    for key in ("left", "top", "width", "height"))
        boxes.append(_checked(_from_normalized(label, left, top, width, height, size), size,
                              path, where))
    return tuple(boxes)


@dataclass
class _Coco:
    """A COCO file, indexed by ``file_name``; only its boxes are carried."""

    path: Path
    document: dict
    names: dict  # category id -> name
    by_file: dict = field(default_factory=dict)  # file_name -> image entry
    by_image: dict = field(default_factory=dict)  # image id -> [(index, annotation)]

    @classmethod
    def load(cls, path: Path) -> _Coco:
        try:
            document = _json(path.read_text(encoding="utf-8-sig"), path)
        except AnnotationError as exc:
            raise UsageError(str(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the COCO file ({exc})") from None
        if not isinstance(document, dict) or not all(
                isinstance(document.get(key), list)
                for key in ("images", "annotations", "categories")):
            raise UsageError(f"{path}: expected a COCO object with 'images', 'annotations' and "
                             "'categories' lists")
        coco = cls(path, document, _coco_categories(document["categories"], path))
        for index, image in enumerate(document["images"]):
            if not isinstance(image, dict) or not isinstance(image.get("file_name"), str) \
                    or not isinstance(image.get("id"), (int, str)):
                raise UsageError(f"{path}: images[{index}]: expected 'id' and 'file_name'")
            name = PurePosixPath(image["file_name"]).as_posix()
            if name in coco.by_file or image["id"] in coco.by_image:
                raise UsageError(f"{path}: images[{index}]: file_name or id listed twice")
            coco.by_file[name] = image
            coco.by_image[image["id"]] = []
        for index, annotation in enumerate(document["annotations"]):
            image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
            if not isinstance(image_id, (int, str)) or image_id not in coco.by_image:
                raise UsageError(f"{path}: annotations[{index}]: image_id "
                                 f"{excerpt(image_id)} is not in 'images'")
            for key in ("segmentation", "keypoints"):
                if annotation.get(key):
                    raise UsageError(
                        f"{path}: annotations[{index}].{key}: augcli carries boxes only and "
                        f"would drop the {key}; remove '{key}' from the file (or make it "
                        "empty) to augment the boxes")
            coco.by_image[image_id].append((index, annotation))
        return coco

    def boxes(self, relative: str, size) -> tuple:
        image = self.by_file.get(relative)
        if image is None:
            return ()
        declared = (image.get("width"), image.get("height"))
        if all(isinstance(v, (int, float)) and v > 0 for v in declared) \
                and tuple(declared) != tuple(size):
            raise AnnotationError(self.path, f"images[id={image['id']}]",
                                  f"says {declared[0]} x {declared[1]} but {relative} is "
                                  f"{size[0]} x {size[1]} (EXIF orientation applied)")
        return tuple(self._box(index, annotation, size)
                     for index, annotation in self.by_image[image["id"]])

    def _box(self, index: int, annotation: dict, size) -> Box:
        where = f"annotations[{index}]"
        category = annotation.get("category_id")
        label = self.names.get(category) if isinstance(category, (int, float, str)) else None
        if label is None:
            raise AnnotationError(self.path, f"{where}.category_id",
                                  f"{excerpt(category)} is not in 'categories'")
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(self.path, f"{where}.bbox", f"expected [x, y, width, height], "
                                                              f"got {excerpt(bbox)}")
        x, y, w, h = (_number(v, self.path, f"{where}.bbox") for v in bbox)
        extra = tuple((key, value) for key, value in annotation.items()
                      if key not in COCO_BOX_KEYS)
        return _checked(Box(label, x, y, x + w, y + h, extra), size, self.path, where)

    def encode(self, records) -> str:
        """A COCO file for the outputs: new image and annotation ids in output-name order.

        Each annotation keeps its other keys (``iscrowd``, ``attributes``, an empty
        ``segmentation``, ...); ``area`` is the output box's."""
        ids = {name: category for category, name in self.names.items()}
        images: list[dict] = []
        annotations: list[dict] = []
        annotated = sorted((r for r in records if "boxes" in r), key=lambda r: r["output"])
        for image_id, record in enumerate(annotated, start=1):
            width, height = record["size"]
            images.append({"id": image_id, "file_name": record["output"], "width": width,
                           "height": height})
            for item in record["boxes"]:
                box = Box.from_record(item)
                bbox = [_json_number(v, PIXEL_DECIMALS)
                        for v in (box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0)]
                extra = dict(box.extra)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": ids[box.label], "bbox": bbox,
                                    "area": _json_number(box.area, PIXEL_DECIMALS),
                                    "iscrowd": extra.pop("iscrowd", 0), **extra})
        kept = {key: self.document[key] for key in ("info", "licenses") if key in self.document}
        document = {**kept, "images": images, "annotations": annotations,
                    "categories": self.document["categories"]}
        return json.dumps(document, ensure_ascii=False) + "\n"


def _coco_categories(categories: list, path: Path) -> dict:
    names: dict = {}
    for index, category in enumerate(categories):
        if not isinstance(category, dict) or not isinstance(category.get("id"), (int, str)) \
                or not isinstance(category.get("name"), str) or not category["name"]:
            raise UsageError(f"{path}: categories[{index}]: expected 'id' and 'name'")
        problem = label_problem(category["name"])
        if problem:
            raise UsageError(f"{path}: categories[{index}].name: {problem}")
        if category["id"] in names or category["name"] in names.values():
            raise UsageError(f"{path}: categories[{index}]: id {excerpt(category['id'])} or "
                             f"name '{category['name']}' is used twice")
        names[category["id"]] = category["name"]
    return names


# --- writing ---------------------------------------------------------------------------------

def encode_boxes(fmt: AnnotationFormat, image: ImageBoxes, filename: str, depth: int) -> bytes:
    """One image's annotation file (per-image formats) in ``fmt``."""
    writers = {"yolo": _yolo_text, "voc": _voc_text, "regions": _regions_text}
    return writers[fmt.name](fmt, image, filename, depth).encode("utf-8")


def _normalized(box: Box, image: ImageBoxes) -> tuple:
    """(left, top, width, height) as fractions of the image size."""
    return (box.x0 / image.width, box.y0 / image.height, (box.x1 - box.x0) / image.width,
            (box.y1 - box.y0) / image.height)


def _yolo_text(fmt: AnnotationFormat, image: ImageBoxes, filename: str, depth: int) -> str:
    index = {name: i for i, name in enumerate(fmt.classes)}
    lines = []
    for box in image.boxes:
        left, top, width, height = _normalized(box, image)
        values = (left + width / 2, top + height / 2, width, height)
        class_id = index[box.label] if fmt.classes else int(box.label)
        lines.append(" ".join([str(class_id)] + [_text_number(v, NORMALIZED_DECIMALS)
                                                  for v in values]))
    return "".join(line + "\n" for line in lines)


def _voc_text(fmt: AnnotationFormat, image: ImageBoxes, filename: str, depth: int) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", image.width), ("height", image.height), ("depth", depth)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box in image.boxes:
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = box.label
        extra = {**VOC_DEFAULTS, **dict(box.extra)}
        for key in VOC_EXTRAS:
            ET.SubElement(element, key).text = str(extra[key])
        bndbox = ET.SubElement(element, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"),
                              (box.x0, box.y0, box.x1, box.y1), strict=True):
            ET.SubElement(bndbox, key).text = _text_number(value, PIXEL_DECIMALS)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _regions_text(fmt: AnnotationFormat, image: ImageBoxes, filename: str, depth: int) -> str:
    regions = []
    for box in image.boxes:
        values = _normalized(box, image)
        regions.append({"tagName": box.label, **{
            key: _json_number(value, NORMALIZED_DECIMALS)
            for key, value in zip(("left", "top", "width", "height"), values, strict=True)}})
    return json.dumps({"regions": regions}, indent=2, ensure_ascii=False) + "\n"


def _text_number(value: float, decimals: int) -> str:
    """Shortest text to ``decimals`` places.

    ``12``, ``12.5``, ``0.4804687500`` -> ``0.48046875``.
    """
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _json_number(value: float, decimals: int):
    """A JSON number to ``decimals`` places; whole numbers stay integers (``12``, not ``12.0``)."""
    rounded = round(float(value), decimals) + 0.0  # + 0.0: no -0.0
    return int(rounded) if rounded.is_integer() else rounded


# --- counting -----------------------------------------------------------------------------------

def count_labels(boxes) -> dict:
    """Objects per label, sorted by label."""
    counts: dict = {}
    for box in boxes:
        counts[box.label] = counts.get(box.label, 0) + 1
    return dict(sorted(counts.items()))

