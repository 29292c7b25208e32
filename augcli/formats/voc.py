"""Pascal VOC: one ``.xml`` per image.

``xmin ymin xmax ymax`` are read as pixel-edge coordinates (as CVAT,
LabelImg, torchvision and albumentations do; the original VOC devkit's
1-based inclusive pixels differ by one pixel). Each object's ``pose``,
``truncated`` and ``difficult`` travel with its box.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..targets.boxes import PIXEL_DECIMALS, Box, ImageBoxes
from .base import (
    MAX_DIGITS,
    AnnotationError,
    Format,
    checked,
    label_problem,
    read_number,
    register,
    text_number,
)

VOC_EXTRAS = ("pose", "truncated", "difficult")  # per-object VOC fields carried to outputs
VOC_DEFAULTS = {"pose": "Unspecified", "truncated": 0, "difficult": 0}


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
        boxes.append(checked(Box(label, x0, y0, x1, y1, extra), size, path, where))
    return tuple(boxes)


def _voc_flag(text: str | None):
    """A VOC field's value: 0/1 as integers, text as it is; None when absent."""
    text = None if text is None else text.strip()
    return int(text) if text and text.isascii() and text.isdigit() and \
        len(text) <= MAX_DIGITS else text


def _xml_number(element, xpath: str, where: str, path):
    text = element.findtext(xpath)
    return None if text is None or not text.strip() else read_number(text.strip(), path, where)


def write_voc(image: ImageBoxes, filename: str, depth: int, classes: tuple = ()) -> str:
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
            ET.SubElement(bndbox, key).text = text_number(value, PIXEL_DECIMALS)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


register(Format("voc", "VOC", ".xml", parse_voc, write_voc))
