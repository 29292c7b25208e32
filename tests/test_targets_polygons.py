"""Polygons (COCO segmentation, YOLO-seg) follow the pixels.

The oracles are third-party readers (pycocotools' ``COCO`` and ``annToMask``,
supervision's YOLO loader) and the pixels themselves: each source has shapes
painted exactly where its polygons say, in colours of their own, so after an
op the painted pixels are where the object is. Run with ``-s`` to see the
measured IoU per format and op.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from augcli.formats.yolo import parse_yolo, write_yolo
from augcli.runner import run_recipe
from augcli.targets.boxes import ImageBoxes, transform_boxes
from augcli.targets.polygons import Polygon

from .conftest import write_recipe

sv = pytest.importorskip("supervision")
coco_api = pytest.importorskip("pycocotools.coco")
mask_api = pytest.importorskip("pycocotools.mask")

WIDTH, HEIGHT = 240, 200
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
           "yellow": (255, 255, 0)}
NAMES = tuple(COLOURS)
OPS = {
    "flip": "{fliplr: {p: 1}}",
    "rotate": "{affine: {rotate: [27, 27]}}",
    "shear": "{affine: {shear: [16, 16]}}",
    "scale": "{affine: {scale: [1.25, 1.25], rotate: [-10, -10]}}",
    "persp": "{perspective: {scale: [0.07, 0.07]}}",
}


def star(cx: float, cy: float, radius: float, rng) -> tuple:
    """A concave star-like ring around (cx, cy), as flat x y pairs in pixel edges."""
    count = int(rng.integers(4, 7))
    angles = np.linspace(0, 2 * np.pi, count * 2, endpoint=False) + rng.uniform(0, 1)
    radii = np.where(np.arange(count * 2) % 2 == 0, radius, radius * rng.uniform(0.55, 0.8))
    points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return tuple(np.round(points, 3).ravel().tolist())


def raster(rings, shape) -> np.ndarray:
    """The pixels a set of rings covers, as pycocotools rasterizes COCO polygons."""
    height, width = shape
    return mask_api.decode(mask_api.merge(mask_api.frPyObjects(
        [list(map(float, ring)) for ring in rings], height, width))).astype(bool)


def painted(pixels: np.ndarray, label: str) -> np.ndarray:
    """The pixels nearer to ``label``'s colour than to any other (and to the black fill)."""
    palette = np.array([(0, 0, 0), *COLOURS.values()], np.float64)
    distance = ((pixels[..., None, :3].astype(np.float64) - palette) ** 2).sum(axis=-1)
    return distance.argmin(axis=-1) == 1 + NAMES.index(label)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def sv_raster(rings, shape) -> np.ndarray:
    """The pixels a ring covers as supervision's YOLO loader makes its mask (rounded
    vertices, OpenCV's fill)."""
    height, width = shape
    (ring,) = rings
    points = np.round(np.asarray(ring, np.float64).reshape(-1, 2)).astype(np.int32)
    return sv.polygon_to_mask(points, (width, height)).astype(bool)


def painted_sources(folder, images=3, paint=raster) -> dict:
    """PNG sources with four stars each, painted in their colours where ``paint`` (the
    oracle's rasterizer) says their polygons are; name -> [(label, ring)]."""
    folder.mkdir(parents=True)
    shapes = {}
    for index in range(images):
        rng = np.random.default_rng(index)
        pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        objects = []
        for label, (column, row) in zip(NAMES, [(0, 0), (1, 0), (0, 1), (1, 1)], strict=True):
            cx = WIDTH * (0.25 + 0.5 * column) + rng.uniform(-8, 8)
            cy = HEIGHT * (0.25 + 0.5 * row) + rng.uniform(-8, 8)
            ring = star(cx, cy, rng.uniform(30, 42), rng)
            colour = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            colour[:] = COLOURS[label]
            mask = paint([ring], (HEIGHT, WIDTH))
            pixels[mask] = colour[mask]
            objects.append((label, ring))
        name = f"s{index}.png"
        Image.fromarray(pixels).save(folder / name)
        shapes[name] = objects
    return shapes


def recipe_for(tmp_path, annotations: str):
    variants = "".join(f"  {name}: {{ops: [{op}]}}\n" for name, op in OPS.items())
    return write_recipe(tmp_path, f"input: in\noutput: out\nannotations: {annotations}\n"
                                  f"variants:\n{variants}")


def report(title: str, scores: dict) -> None:
    print(f"\n{title}")
    for op, values in scores.items():
        print(f"  {op:8s} IoU median {np.median(values):.4f} min {min(values):.4f} "
              f"({len(values)} shapes)")


def run_coco(tmp_path, images: list, annotations: list):
    """Write the COCO file of the painted sources, run the recipe over it, and load the
    output's COCO file with pycocotools (the oracle)."""
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(NAMES)]
    (tmp_path / "coco.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    recipe = recipe_for(tmp_path, f"{{format: coco, path: {tmp_path / 'coco.json'}, "
                                  "min_visibility: 0}")
    assert run_recipe(recipe, workers=1).exit_code == 0
    return coco_api.COCO(str(tmp_path / "out" / "coco.json"))


def test_coco_polygons_follow_the_painted_shapes(tmp_path):
    shapes = painted_sources(tmp_path / "in")
    images, annotations = [], []
    for image_id, (name, objects) in enumerate(shapes.items(), start=1):
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
        for label, ring in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": NAMES.index(label) + 1, "segmentation": [ring],
                                "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0})
    coco = run_coco(tmp_path, images, annotations)
    scores: dict = {op: [] for op in OPS}
    offsets = []
    for image in coco.dataset["images"]:
        pixels = np.asarray(Image.open(tmp_path / "out" / image["file_name"]).convert("RGB"))
        op = image["file_name"].split("_")[1]
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            label = coco.loadCats(annotation["category_id"])[0]["name"]
            truth = painted(pixels, label)
            mask = coco.annToMask(annotation).astype(bool)
            scores[op].append(iou(mask, truth))
            rows, columns = np.nonzero(truth)
            x, y, w, h = annotation["bbox"]
            offsets.append(np.abs(np.array([x, y, x + w, y + h]) - (
                columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)).max())
            assert annotation["area"] == pytest.approx(mask.sum(), rel=0.06)
    report("COCO polygons (pycocotools annToMask vs painted pixels)", scores)
    print(f"  bbox vs painted bounds: median {np.median(offsets):.3f} px, "
          f"max {max(offsets):.3f} px")
    assert len(coco.dataset["annotations"]) == 4 * 3 * len(OPS)
    for op, values in scores.items():
        assert np.median(values) >= 0.95 and min(values) >= 0.85, (op, values)
    assert np.median(offsets) <= 1.0 and max(offsets) <= 1.5


def test_yolo_seg_polygons_follow_the_painted_shapes(tmp_path):
    shapes = painted_sources(tmp_path / "in", paint=sv_raster)
    for name, objects in shapes.items():
        lines = [" ".join([str(NAMES.index(label))] + [
            f"{value / (WIDTH, HEIGHT)[i % 2]:.6f}" for i, value in enumerate(ring)])
            for label, ring in objects]
        (tmp_path / "in" / name).with_suffix(".txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "in" / "classes.txt").write_text("".join(f"{n}\n" for n in NAMES))
    recipe = recipe_for(tmp_path, "{format: yolo, min_visibility: 0}")
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out"
    (tmp_path / "data.yaml").write_text(f"names: {list(NAMES)}\n")
    dataset = sv.DetectionDataset.from_yolo(str(out), str(out), str(tmp_path / "data.yaml"))
    scores: dict = {op: [] for op in OPS}
    for path, _, detections in dataset:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        stem = path.rsplit("/", 1)[-1]
        op = stem.split("_")[1]
        assert detections.mask is not None and len(detections) == 4, path
        for mask, class_id in zip(detections.mask, detections.class_id, strict=True):
            scores[op].append(iou(mask, painted(pixels, NAMES[class_id])))
    report("YOLO-seg polygons (supervision's YOLO loader vs painted pixels)", scores)
    assert len(dataset) == 3 * len(OPS)
    for op, values in scores.items():
        assert np.median(values) >= 0.95 and min(values) >= 0.85, (op, values)


def test_a_polygon_cut_by_the_border_becomes_its_visible_parts():
    # a U (pixel edges): base 0..5 high, arms 3 wide reaching y = 20
    u = Polygon("u", ((0, 0, 10, 0, 10, 20, 7, 20, 7, 5, 3, 5, 3, 20, 0, 20),))
    up = np.array([[1, 0, 0], [0, 1, -7], [0, 0, 1.0]])  # pixel centres 7 up: the base leaves
    (kept,), dropped = transform_boxes([u], up, (10, 12), 0.3)
    assert dropped == ()
    # the two arms, 3 x 10 each, are what is left: 60 of the moved U's 140
    assert sorted(kept.rings) == [(3.0, 0.0, 3.0, 10.0, 0.0, 10.0, 0.0, 0.0),
                                  (10.0, 0.0, 10.0, 10.0, 7.0, 10.0, 7.0, 0.0)]
    assert (kept.x0, kept.y0, kept.x1, kept.y1, kept.area) == (0, 0, 10, 10, 60)
    _, (gone,) = transform_boxes([u], up, (10, 12), 0.5)
    assert gone.visibility == pytest.approx(60 / 140)


def test_yolo_seg_writes_a_split_polygon_as_one_line_enclosing_the_parts():
    two = Polygon("0", ((0, 0, 4, 0, 4, 4, 0, 4), (6, 0, 10, 0, 10, 4, 6, 4)))
    text = write_yolo(ImageBoxes(10, 4, (two,)), "a.png", 3)
    assert text == "0 0 0 0.4 0 0.4 1 0 1 0 0 0.6 0 1 0 1 1 0.6 1 0.6 0\n"
    (back,) = parse_yolo(text, "a.txt", (10, 4))
    assert back.area == pytest.approx(32) and (back.x0, back.x1) == (0, 10)
    mask = raster(back.rings, (4, 10))
    assert mask.sum() == 32 and not mask[:, 4:6].any()
