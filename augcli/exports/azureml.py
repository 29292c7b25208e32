"""Azure Machine Learning AutoML for images: one ``annotations.jsonl`` + ``MLTable`` per split.

The lines are the schema AutoML reads (Azure's ``reference-automl-images-schema``):
``image_url`` (the prefix + the image's path relative to the exported folder),
``image_details`` (format, and the integer width and height as decoded, EXIF
applied) and ``label``: a string (multiclass), a list of strings (multilabel),
a list of ``{label, topX, topY, bottomX, bottomY, isCrowd}`` with corners
normalised to [0, 1] (detection), or a list of ``{label, isCrowd, polygon}``
whose ``polygon`` is the object's rings ``[[x1, y1, x2, y2, ...], ...]``,
normalised likewise (segmentation). Every field has one JSON type on every line
(coordinates always floats, ``isCrowd`` always 0/1, labels always strings):
``mltable`` turns a field into None when its type differs between lines.

Labels come from the readers augcli already has: class folders (an image in
several class folders, byte for byte, is one multilabel line), or the boxes of
a YOLO/VOC/COCO/regions folder or dataset (``AnnotationSource``); segmentation takes
the polygons they read (COCO ``segmentation`` polygons, YOLO-seg lines). A dataset with
splits (``open_dataset``) gives one folder per split, named as AutoML names
them (``train``, ``validation``, ``test``); a plain folder gives ``train``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import datasets, imagefiles
from ..annotations import AnnotationSource
from ..errors import EXIT_OK, EXIT_SOME_FAILED, ImageReadError, UsageError
from ..formats import AnnotationError, AnnotationSpec
from ..locations import is_url, location
from ..stores import StoreSpec, require_extra
from ..targets.keypoints import Keypoints
from ..targets.polygons import Polygon
from ..targets.rle import RleMask

TASKS = ("multiclass", "multilabel", "detection", "segmentation")
OBJECT_TASKS = ("detection", "segmentation")  # labelled by objects, which a split must have
DEFAULT_OUTPUT = "azureml"  # under the exported folder, so one upload carries both
SPLIT_FOLDERS = {"train": "train", "val": "validation", "test": "test"}  # AutoML's names
ANNOTATIONS_FILE = "annotations.jsonl"
COORDINATE_DECIMALS = 10  # 1e-10 of a side, far below a pixel

MLTABLE = """\
paths:
  - file: ./annotations.jsonl
transformations:
  - read_json_lines:
      encoding: utf8
      invalid_lines: error
      include_path_column: false
  - convert_column_types:
      - columns: image_url
        column_type: stream_info
"""

_LONG_DATASTORE = re.compile(r"^azureml://subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/"
                             r"[^/]+/datastores/[^/]+/paths/", re.IGNORECASE)
_URL_SCHEMES = ("https://", "abfss://", "wasbs://")
LONG_FORM = ("azureml://subscriptions/<subscription>/resourcegroups/<group>/workspaces/"
             "<workspace>/datastores/<datastore>/paths/<folder>")


@dataclass
class ExportReport:
    """What an export wrote (lines per split folder) and the images it left out, and why."""

    output: str
    lines: dict = field(default_factory=dict)  # split folder -> lines written
    failures: list = field(default_factory=list)  # 'path: reason'

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failures else EXIT_OK

    def summary(self) -> str:
        written = ", ".join(f"{split} {count}" for split, count in self.lines.items())
        failed = f"; {len(self.failures)} image(s) left out" if self.failures else ""
        return f"wrote {self.output}: {written} image(s){failed}"


def check_image_url(prefix: str | None, source) -> str:
    """The prefix without a trailing slash, or a ``UsageError`` saying what AutoML needs:
    only the long datastore form and https/abfss/wasbs URLs convert to a stream."""
    if not prefix:
        where = "the datastore folder the images are uploaded to"
        if is_url(source) and str(source).lower().startswith("az://"):
            container = str(source)[len("az://"):]
            where = (f"where {source} is: https://<account>.blob.core.windows.net/{container}, "
                     f"or the datastore folder {LONG_FORM}")
        raise UsageError(f"--image-url is required: {where}")
    if _LONG_DATASTORE.match(prefix) or prefix.lower().startswith(_URL_SCHEMES):
        return prefix.rstrip("/")
    if prefix.lower().startswith("azureml://"):
        reason = ("the short azureml://datastores/... form does not convert to a stream in "
                  "mltable")
    elif "://" not in prefix:
        reason = "a relative path does not convert to a stream in mltable"
    else:
        reason = "AutoML reads azureml://, https://, abfss:// and wasbs:// URLs"
    raise UsageError(f"--image-url {prefix}: {reason}; give the long form {LONG_FORM}, "
                     "or an https:// URL")


def export(source, output=None, *, task: str, image_url: str | None,
           annotations: AnnotationSpec | None = None) -> ExportReport:
    """Write ``<split>/annotations.jsonl`` and ``<split>/MLTable`` for every split of
    ``source`` (a folder, a data.yaml, or an object-store URL of class folders) under
    ``output`` (default: ``source/azureml``). An image whose file or annotations
    cannot be read is left out and listed in the report's failures."""
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'; choose {', '.join(TASKS)}")
    prefix = check_image_url(image_url, source)
    source = location(source)
    if output is None:
        output = f"{source}/{DEFAULT_OUTPUT}" if is_url(source) else Path(source) / DEFAULT_OUTPUT
    output = location(output)
    splits, labels = _open(source, task, annotations)
    report = ExportReport(str(output))
    target = StoreSpec.of(output).open()
    for split, images in splits.items():
        lines = [line for line in labels.lines(images, prefix, report.failures)
                 if line is not None]
        if task in OBJECT_TASKS and lines and not any(line["label"] for line in lines):
            raise UsageError(f"{split}: not one object in the {len(lines)} images' "
                             f"{labels.format} annotations; AutoML cannot train {task} "
                             "on background alone")
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        target.publish(f"{split}/{ANNOTATIONS_FILE}", text.encode("utf-8"))
        target.publish(f"{split}/MLTable", MLTABLE.encode("utf-8"))
        report.lines[split] = len(lines)
    return report


def _open(source, task: str, spec: AnnotationSpec | None) -> tuple[dict, _Labels]:
    """(split folder -> [(image relative to the root, its class folder)], the labeller)."""
    where = location(source)
    if is_url(where):
        require_extra(where)
    elif not where.exists():
        raise UsageError(f"no folder {where}")
    dataset = datasets.open_dataset(where)
    if dataset is None:
        if not is_url(where) and not where.is_dir():
            raise UsageError(f"{where} is a file; give the folder of images (or a data.yaml)")
        images, _ = StoreSpec.of(where).open().scan()
        imagefiles.require_images(images, where)
        found = {"train": [(p.as_posix(), p.parent.as_posix()) for p in images]}
        annotations = AnnotationSource(spec, where) if spec is not None else None
        return found, _Labels(task, StoreSpec.of(where), annotations)
    spec, layout = dataset.annotations(spec)
    annotations = AnnotationSource(spec, dataset.root, layout) if spec is not None else None
    images, _ = dataset.select(*dataset.store.scan())
    found = {}
    for relative in images:
        split = dataset.split_of(relative.as_posix())
        assert split is not None  # scan lists the splits' folders only
        folder = next(f for f in split.folders if relative.as_posix().startswith(f + "/"))
        tag = PurePosixPath(relative.as_posix()).parent.relative_to(folder).as_posix()
        found.setdefault(SPLIT_FOLDERS.get(split.kind, split.name), []).append(
            (relative.as_posix(), tag))
    return found, _Labels(task, StoreSpec.of(dataset.root), annotations)


class _Labels:
    """Turns images into AutoML lines, labelled by their boxes or their class folders."""

    def __init__(self, task: str, root: StoreSpec, annotations: AnnotationSource | None):
        if task == "detection" and annotations is None:
            raise UsageError(f"--task detection needs boxes, and {root} shows none: add "
                             "--annotations FORMAT (yolo, voc, coco or regions)")
        if task == "segmentation" and annotations is None:
            raise UsageError(f"--task segmentation needs polygons, and {root} shows none: add "
                             "--annotations FORMAT (coco segmentation polygons or yolo "
                             "segment lines)")
        self.task, self.root, self.annotations = task, root, annotations
        self.format = annotations.spec.format if annotations is not None else "folder"

    def lines(self, images: list, prefix: str, failures: list):
        """One line per image (multilabel from folders: per distinct picture)."""
        store = self.root.open()
        by_digest: dict = {}  # multilabel from folders: bytes -> the line that has them
        for relative, tag in images:
            try:
                size, boxes = self._read(store, relative)
            except (ImageReadError, AnnotationError) as exc:
                failures.append(str(exc))
                continue
            label = self._label(relative, tag, size, boxes, failures)
            if label is None:
                continue
            if self.task == "multilabel" and self.annotations is None:
                digest = hashlib.sha256(store.read(relative)).hexdigest()
                if digest in by_digest:
                    labels = by_digest[digest]["label"]
                    labels[:] = sorted({*labels, *label})
                    continue
            line = {"image_url": f"{prefix}/{relative}",
                    "image_details": {"format": imagefiles.format_of(Path(relative)),
                                      "width": int(size[0]), "height": int(size[1])},
                    "label": label}
            if self.task == "multilabel" and self.annotations is None:
                by_digest[digest] = line
            yield line
        if self.annotations is not None:
            self.annotations.require_some(len(images))

    def _read(self, store, relative: str) -> tuple:
        """((width, height) as decoded, boxes or None without annotations)."""
        if self.annotations is None:
            return store.header(relative, imagefiles.image_size), None
        found = self.annotations.read(relative)
        return (found.width, found.height), found.boxes

    def _label(self, relative: str, tag: str, size, boxes, failures: list):
        """The line's label, or None (with a failure) when the image has none that fits."""
        if boxes is None:
            if tag in (".", ""):
                failures.append(f"{relative}: not in a class folder; {self.task} labels are "
                                "the class folders")
                return None
            return tag if self.task == "multiclass" else [tag]
        names = sorted({box.label for box in boxes})
        if self.task == "multilabel":
            return names
        if self.task == "multiclass":
            if len(names) != 1:
                held = f"labels {', '.join(names)}" if names else "no label"
                failures.append(f"{relative}: holds {held}; multiclass needs exactly one "
                                "(--task multilabel takes several)")
                return None
            return names[0]
        width, height = size
        if self.task == "segmentation":
            return _polygons(relative, size, boxes, failures)
        return [{"label": box.label,
                 "topX": _fraction(box.x0, width), "topY": _fraction(box.y0, height),
                 "bottomX": _fraction(box.x1, width), "bottomY": _fraction(box.y1, height),
                 "isCrowd": _crowd(box)}
                for box in boxes]


def _polygons(relative: str, size, objects, failures: list):
    """The segmentation label: each object's rings, normalised; or None (with a failure)
    when an object has no polygon, as AutoML's instance segmentation needs one for each."""
    width, height = size
    label = []
    for item in objects:
        shape = item.shape if isinstance(item, Keypoints) else item
        if not isinstance(shape, Polygon):
            kind = "an RLE mask" if isinstance(shape, RleMask) else "a box"
            failures.append(f"{relative}: its '{item.label}' object is {kind}, not a polygon; "
                            "segmentation needs polygons (COCO segmentation polygons or "
                            "YOLO-seg lines)")
            return None
        label.append({"label": item.label, "isCrowd": _crowd(item),
                      "polygon": [[_fraction(value, height if index % 2 else width)
                                   for index, value in enumerate(ring)]
                                  for ring in shape.rings]})
    return label


def _crowd(item) -> int:
    """COCO's ``iscrowd`` as AutoML's ``isCrowd``: always the integer 0 or 1."""
    return 1 if dict(item.extra).get("iscrowd") else 0


def _fraction(value: float, side: int) -> float:
    """A coordinate as a fraction of the side, always a JSON float (``0.0``, never ``0``)."""
    return float(round(value / side, COORDINATE_DECIMALS)) + 0.0
