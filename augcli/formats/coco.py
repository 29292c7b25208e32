"""COCO: one JSON file for the whole folder (or one per split folder of a dataset).

``file_name`` is the image's path relative to the input folder (or its
split folder); ``bbox`` is ``[x, y, width, height]`` in pixels. Boxes are
carried with their other keys (``iscrowd``, ``attributes``); an annotation with
``segmentation`` polygons is a polygon (``augcli.targets.polygons``), whose
``bbox`` and ``area`` are remade from the moved polygon; one with ``keypoints``
(``[x, y, v] * K``) is a ``Keypoints`` target around its box or polygon, whose
``num_keypoints`` is recounted. A mirroring op swaps left and right keypoints:
the pairs come from the category's ``keypoints`` names (``left_eye`` and
``right_eye``) or from ``annotations.flip_idx``. An RLE ``segmentation``
(``{"size", "counts"}``, compressed or not) is an ``RleMask``: it stays RLE of
the same encoding, its ``bbox`` and ``area`` those of the moved mask.
The output's file is made at the end from every output's manifest record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from ..errors import UsageError, excerpt
from ..targets import from_record
from ..targets.boxes import PIXEL_DECIMALS, Box, json_number
from ..targets.keypoints import Keypoints, flip_pairs
from ..targets.polygons import Polygon
from ..targets.rle import RleMask, from_string
from .base import (
    AnnotationError,
    Format,
    checked,
    checked_polygon,
    label_problem,
    parse_json,
    read_number,
    read_ring,
    register,
)

COCO_BOX_KEYS = ("id", "image_id", "category_id", "bbox", "area")  # remade for each output
KEYPOINT_KEYS = ("keypoints", "num_keypoints")  # remade too, for an object with keypoints
SPLIT_FILE = "_annotations.coco.json"  # Roboflow's name for a split's COCO file


@dataclass
class Coco:
    """A COCO file, indexed by ``file_name``; only its boxes are carried."""

    path: Path
    document: dict
    names: dict  # category id -> name
    by_file: dict = field(default_factory=dict)  # file_name -> image entry
    by_image: dict = field(default_factory=dict)  # image id -> [(index, annotation)]
    flips: dict = field(default_factory=dict)  # category id -> (keypoint count, flip_idx)

    @classmethod
    def load(cls, text: str, path: Path, flip_idx: tuple | None = None) -> Coco:
        """The file's ``text``, read from ``path``; a malformed file is a ``UsageError``.
        ``flip_idx``: the recipe's, for every category's keypoints (else their names')."""
        try:
            document = parse_json(text, path)
        except AnnotationError as exc:
            raise UsageError(str(exc)) from None
        if not isinstance(document, dict) or not all(
                isinstance(document.get(key), list)
                for key in ("images", "annotations", "categories")):
            raise UsageError(f"{path}: expected a COCO object with 'images', 'annotations' and "
                             "'categories' lists")
        coco = cls(path, document, _coco_categories(document["categories"], path))
        for category in document["categories"]:
            names = category.get("keypoints")
            if isinstance(names, list) and names:
                if flip_idx is not None and len(flip_idx) != len(names):
                    raise UsageError(f"annotations.flip_idx: {len(flip_idx)} indices, but "
                                     f"category {excerpt(category['name'])} of {path} names "
                                     f"{len(names)} keypoints")
                coco.flips[category["id"]] = (len(names), flip_pairs(names) if flip_idx is None
                                              else tuple(flip_idx))
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

    def _box(self, index: int, annotation: dict, size) -> Box | Polygon | RleMask | Keypoints:
        where = f"annotations[{index}]"
        category = annotation.get("category_id")
        label = self.names.get(category) if isinstance(category, (int, float, str)) else None
        if label is None:
            raise AnnotationError(self.path, f"{where}.category_id",
                                  f"{excerpt(category)} is not in 'categories'")
        if annotation.get("keypoints"):
            rest = {key: value for key, value in annotation.items() if key not in KEYPOINT_KEYS}
            shape = self._box(index, rest, size)
            assert not isinstance(shape, Keypoints)  # rest has none
            bare = Box(label, shape.x0, shape.y0, shape.x1, shape.y1) \
                if isinstance(shape, Box) else replace(shape, extra=())
            return Keypoints(label, self._keypoints(where, annotation, category), bare,
                             self.flips.get(category, (0, ()))[1], extra=shape.extra)
        segmentation = annotation.get("segmentation")
        if isinstance(segmentation, dict):  # RLE: the bbox follows the mask
            extra = tuple((key, value) for key, value in annotation.items()
                          if key not in COCO_BOX_KEYS and key != "segmentation")
            return self._rle(f"{where}.segmentation", label, segmentation, size, extra)
        if segmentation:  # polygons: the bbox follows them
            extra = tuple((key, value) for key, value in annotation.items()
                          if key not in COCO_BOX_KEYS and key != "segmentation")
            rings = []
            for number, ring in enumerate(segmentation):
                place = f"{where}.segmentation[{number}]"
                if not isinstance(ring, list):
                    raise AnnotationError(self.path, place, f"expected a polygon [x1, y1, "
                                                            f"...], got {excerpt(ring)}")
                rings.append(read_ring(ring, self.path, place))
            return checked_polygon(Polygon(label, tuple(rings), extra), size, self.path,
                                   f"{where}.segmentation")
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(self.path, f"{where}.bbox", f"expected [x, y, width, height], "
                                                              f"got {excerpt(bbox)}")
        x, y, w, h = (read_number(v, self.path, f"{where}.bbox") for v in bbox)
        extra = tuple((key, value) for key, value in annotation.items()
                      if key not in COCO_BOX_KEYS)
        return checked(Box(label, x, y, x + w, y + h, extra), size, self.path, where)

    def _rle(self, where: str, label: str, rle: dict, size, extra: tuple) -> RleMask:
        """An RLE segmentation, checked: its size is the image's, its runs cover it."""
        counts = rle.get("counts")
        if list(rle.get("size", ())) != [size[1], size[0]]:
            raise AnnotationError(self.path, f"{where}.size", f"expected [{size[1]}, {size[0]}] "
                                  f"(height, width of the image), got {excerpt(rle.get('size'))}")
        try:
            if isinstance(counts, str):
                runs = from_string(counts)
            elif isinstance(counts, list) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in counts):
                runs = tuple(counts)
            else:
                raise ValueError("expected a compressed string or a list of run lengths")
            if any(v < 0 for v in runs):
                raise ValueError("a run length is negative")
            mask = RleMask(label, size[1], size[0], runs, isinstance(counts, str), extra)
            mask.mask()
        except ValueError as exc:
            raise AnnotationError(self.path, f"{where}.counts", str(exc)) from None
        if mask.area <= 0:
            raise AnnotationError(self.path, where, "mask has no pixels")
        return mask

    def _keypoints(self, where: str, annotation: dict, category) -> tuple:
        """An annotation's ``[x, y, v] * K`` (K as its category names them, if it does)."""
        values = annotation["keypoints"]
        count = self.flips.get(category, (None,))[0]
        if not isinstance(values, list) or len(values) % 3 or (
                count is not None and len(values) != 3 * count):
            expected = f"{count} x [x, y, v]" if count is not None else "[x, y, v] triples"
            raise AnnotationError(self.path, f"{where}.keypoints",
                                  f"expected {expected}, got {excerpt(values)}")
        return tuple(read_number(v, self.path, f"{where}.keypoints") for v in values)

    def encode(self, records) -> str:
        """A COCO file for the outputs: new image and annotation ids in output-name order.

        Each annotation keeps its other keys (``iscrowd``, ``attributes``, an empty
        ``segmentation``, ...); ``area`` is the output box's, or its polygon's, whose
        ``bbox`` is the polygon's tight bounds."""
        ids = {name: category for category, name in self.names.items()}
        images: list[dict] = []
        annotations: list[dict] = []
        annotated = sorted((r for r in records if "boxes" in r), key=lambda r: r["output"])
        for image_id, record in enumerate(annotated, start=1):
            width, height = record["size"]
            images.append({"id": image_id, "file_name": record["output"], "width": width,
                           "height": height})
            for item in record["boxes"]:
                box = from_record(item)
                bbox = [json_number(v, PIXEL_DECIMALS)
                        for v in (box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0)]
                extra = dict(box.extra)
                shape = {"segmentation": item["polygon"]} if "polygon" in item else \
                    {"segmentation": item["rle"]} if "rle" in item else {}
                if isinstance(box, Keypoints):
                    shape.update(keypoints=item["keypoints"], num_keypoints=box.labelled)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": ids[box.label], **shape, "bbox": bbox,
                                    "area": json_number(box.area, PIXEL_DECIMALS),
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


register(Format("coco", "COCO", ".json", Coco.load, Coco.encode, per_image=False,
                split_file=SPLIT_FILE, path_help="the JSON file that lists every image's boxes"))
