"""Regions: one ``.json`` per image, ``{"regions": [{"tagName", "left", "top", "width",
"height"}]}`` normalized to the image size.

Custom Vision's ``Region`` with the tag's name in place of its id (ids exist
only once the tags are created in a project).
"""

from __future__ import annotations

import json

from ..errors import excerpt
from ..targets.boxes import ImageBoxes, json_number
from .base import (
    NORMALIZED_DECIMALS,
    AnnotationError,
    Format,
    checked,
    from_normalized,
    label_problem,
    normalized,
    parse_json,
    read_number,
    register,
)


def parse_regions(text: str, path, size, classes=(), classes_from=None) -> tuple:
    """``{"regions": [{"tagName", "left", "top", "width", "height"}]}``, normalized."""
    data = parse_json(text, path)
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
        left, top, width, height = (read_number(region.get(key), path, f"{where}.{key}")
                                    for key in ("left", "top", "width", "height"))
        boxes.append(checked(from_normalized(label, left, top, width, height, size), size,
                              path, where))
    return tuple(boxes)


def write_regions(image: ImageBoxes, filename: str, depth: int, classes: tuple = ()) -> str:
    regions = []
    for box in image.boxes:
        values = normalized(box, image)
        regions.append({"tagName": box.label, **{
            key: json_number(value, NORMALIZED_DECIMALS)
            for key, value in zip(("left", "top", "width", "height"), values, strict=True)}})
    return json.dumps({"regions": regions}, indent=2, ensure_ascii=False) + "\n"


register(Format("regions", "regions", ".json", parse_regions, write_regions))
