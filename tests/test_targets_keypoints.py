"""Keypoints (COCO keypoints, YOLO-pose) follow the pixels.

Each source has a dot painted where each keypoint is, in a colour of its own;
after an op, the centre of the pixels of that colour is where the point is,
and after a flip the point called ``left_hand`` sits on the dot painted for
the right hand. pycocotools' ``COCO`` loads the COCO output. Run with ``-s`` to
see the measured distances per format and op.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from augcli.errors import RecipeError
from augcli.runner import run_recipe
from augcli.targets.boxes import Box, transform_boxes
from augcli.targets.keypoints import Keypoints

from .conftest import write_recipe
from .test_targets_polygons import HEIGHT, OPS, WIDTH

coco_api = pytest.importorskip("pycocotools.coco")

NAMES = ("nose", "left_hand", "right_hand", "tail")
FLIP = (0, 2, 1, 3)
SKELETON = [[1, 2], [1, 3], [1, 4]]
OBJECTS = 2  # per image, side by side
# a colour per (object, keypoint), far from each other and from the black fill
PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
           (255, 128, 0), (128, 0, 255)]
DOT = 3.5  # painted radius, pixels


def dotted_sources(folder, images=3) -> dict:
    """PNG sources with two objects of four keypoints each, a dot painted at each labelled
    point; name -> [(box x0 y0 x1 y1, [(x, y, v)] * 4)] in pixel edges."""
    folder.mkdir(parents=True)
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5  # pixel centres
    shapes = {}
    for index in range(images):
        rng = np.random.default_rng(20 + index)
        pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        objects = []
        for number in range(OBJECTS):
            cx, cy = WIDTH * (0.34 + 0.32 * number), HEIGHT * 0.5
            points = [(round(cx + rng.uniform(-28, 28), 2), round(cy + rng.uniform(-40, 40), 2),
                       2) for _ in NAMES]
            if number == 1:
                points[3] = (0, 0, 0)  # not labelled: no dot, stays 0 0 0
            for k, (x, y, v) in enumerate(points):
                if v:
                    dot = (columns - x) ** 2 + (rows - y) ** 2 <= DOT ** 2
                    pixels[dot] = PALETTE[number * len(NAMES) + k]
            xs, ys = [p[0] for p in points if p[2]], [p[1] for p in points if p[2]]
            objects.append(((min(xs) - 8, min(ys) - 8, max(xs) + 8, max(ys) + 8), points))
        name = f"s{index}.png"
        Image.fromarray(pixels).save(folder / name)
        shapes[name] = objects
    return shapes


def dot_centre(pixels: np.ndarray, colour: int) -> np.ndarray:
    """The centre (pixel edges) of the pixels close to ``PALETTE[colour]`` (the dot's core:
    its rim, blended with the black fill, may be nearer to another colour)."""
    distance = ((pixels[..., :3].astype(np.float64) - PALETTE[colour]) ** 2).sum(axis=-1)
    rows, columns = np.nonzero(distance < 60 ** 2)
    assert len(rows), colour
    return np.array([columns.mean() + 0.5, rows.mean() + 0.5])


def measure(pixels, op, number, points, scores) -> None:
    """Distance of each labelled output keypoint to the dot painted for it (after a flip:
    for its mirror twin)."""
    for k in range(len(NAMES)):
        x, y, v = points[3 * k:3 * k + 3]
        source = FLIP[k] if op == "flip" else k
        if number == 1 and source == 3:
            assert (x, y, v) == (0, 0, 0)
            continue
        assert v == 2, (op, number, k)
        scores[op].append(float(np.hypot(*(dot_centre(pixels, number * len(NAMES) + source)
                                           - (x, y)))))


def report(title: str, scores: dict) -> None:
    print(f"\n{title}")
    for op, values in scores.items():
        print(f"  {op:8s} distance median {np.median(values):.3f} px, max {max(values):.3f} px "
              f"({len(values)} points)")


def check(scores: dict) -> None:
    for op, values in scores.items():
        assert np.median(values) <= 0.5 and max(values) <= 1.0, (op, values)


def test_coco_keypoints_sit_on_their_painted_dots(tmp_path):
    shapes = dotted_sources(tmp_path / "in")
    images, annotations = [], []
    for image_id, (name, objects) in enumerate(shapes.items(), start=1):
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
        for (x0, y0, x1, y1), points in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": 1, "iscrowd": 0,
                                "keypoints": [v for point in points for v in point],
                                "num_keypoints": sum(1 for p in points if p[2])})
    categories = [{"id": 1, "name": "critter", "supercategory": "animal",
                   "keypoints": list(NAMES), "skeleton": SKELETON}]
    (tmp_path / "coco.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    recipe = write_recipe(tmp_path, f"input: in\noutput: out\nannotations: {{format: coco, "
                                    f"path: {tmp_path / 'coco.json'}, min_visibility: 0}}\n"
                                    "variants:\n" + "".join(f"  {name}: {{ops: [{op}]}}\n"
                                                            for name, op in OPS.items()))
    assert run_recipe(recipe, workers=1).exit_code == 0
    coco = coco_api.COCO(str(tmp_path / "out" / "coco.json"))  # the oracle loads it
    assert coco.dataset["categories"] == categories  # names and skeleton kept
    scores: dict = {op: [] for op in OPS}
    for image in coco.dataset["images"]:
        pixels = np.asarray(Image.open(tmp_path / "out" / image["file_name"]).convert("RGB"))
        op = image["file_name"].split("_")[1]
        found = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(found) == OBJECTS
        for number, annotation in enumerate(found):
            measure(pixels, op, number, annotation["keypoints"], scores)
            assert annotation["num_keypoints"] == 4 - number
    report("COCO keypoints (distance to the painted dot)", scores)
    check(scores)


def test_yolo_pose_keypoints_sit_on_their_painted_dots(tmp_path):
    for split in ("train", "valid"):
        shapes = dotted_sources(tmp_path / "ds" / split / "images", images=3)
        (tmp_path / "ds" / split / "labels").mkdir()
        for name, objects in shapes.items():
            lines = []
            for (x0, y0, x1, y1), points in objects:
                values = [(x0 + x1) / 2 / WIDTH, (y0 + y1) / 2 / HEIGHT, (x1 - x0) / WIDTH,
                          (y1 - y0) / HEIGHT]
                for x, y, v in points:
                    values += [x / WIDTH, y / HEIGHT, v]
                lines.append("0 " + " ".join(f"{value:.8g}" for value in values))
            (tmp_path / "ds" / split / "labels" / name).with_suffix(".txt").write_text(
                "\n".join(lines) + "\n")
    (tmp_path / "ds" / "data.yaml").write_text(
        f"train: train/images\nval: valid/images\nkpt_shape: [4, 3]\nflip_idx: {list(FLIP)}\n"
        "names: [critter]\n")
    variants = "".join(f"  {name}: {{ops: [{op}]}}\n" for name, op in OPS.items())
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nannotations: {format: yolo, "
                                    f"min_visibility: 0}}\nvariants:\n{variants}")
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out" / "train"
    scores: dict = {op: [] for op in OPS}
    written = sorted((out / "images").glob("*_*.png"))  # not the copied sources
    assert len(written) == 3 * len(OPS)
    for path in written:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        op = path.stem.split("_")[1]
        lines = (out / "labels" / path.name).with_suffix(".txt").read_text().splitlines()
        assert len(lines) == OBJECTS
        for number, line in enumerate(lines):
            values = [float(v) for v in line.split()]
            assert len(values) == 1 + 4 + 4 * 3 and values[0] == 0
            points = [v * (WIDTH, HEIGHT, 1)[i % 3] for i, v in enumerate(values[5:])]
            measure(pixels, op, number, points, scores)
            # the box still holds every labelled point
            cx, cy, w, h = values[1:5]
            for x, y, v in zip(*[iter(points)] * 3, strict=True):
                if v:
                    assert abs(x / WIDTH - cx) <= w / 2 + 1e-9
                    assert abs(y / HEIGHT - cy) <= h / 2 + 1e-9
    report("YOLO-pose keypoints (distance to the painted dot)", scores)
    check(scores)


def test_a_pose_dataset_without_flip_idx_refuses_mirroring_ops(tmp_path):
    shapes = dotted_sources(tmp_path / "ds" / "train" / "images", images=1)
    (tmp_path / "ds" / "train" / "labels").mkdir()
    ((tmp_path / "ds" / "train" / "labels" / next(iter(shapes))).with_suffix(".txt")
     .write_text("0 0.5 0.5 0.2 0.2 0.5 0.5 2 0.45 0.5 2 0.55 0.5 2 0 0 0\n"))
    dotted_sources(tmp_path / "ds" / "valid" / "images", images=1)
    (tmp_path / "ds" / "data.yaml").write_text(
        "train: train/images\nval: valid/images\nkpt_shape: [4, 3]\nnames: [critter]\n")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nvariants: {a: {ops: "
                                    "[{rotate: {degrees: 10}}, {keras: {horizontal_flip: true}}]},"
                                    " b: {ops: [{fliplr: {p: 1}}]}}\n")
    with pytest.raises(RecipeError) as raised:
        run_recipe(recipe, workers=1)
    message = str(raised.value)
    assert "variants.a.ops[1].keras: mirrors the image" in message
    assert "variants.b.ops[0].fliplr: mirrors the image" in message
    assert "flip_idx" in message and "rotate" not in message


def test_a_keypoint_that_leaves_the_image_becomes_zeros():
    box = Box("a", 0, 0, 10, 10)
    points = Keypoints("a", (2.0, 2.0, 2.0, 9.0, 9.0, 1.0, 0.0, 0.0, 0.0), box)
    left = np.array([[1, 0, -5], [0, 1, 0], [0, 0, 1.0]])  # pixel centres 5 to the left
    (kept,), _ = transform_boxes([points], left, (10, 10), 0)
    assert kept.points == (0, 0, 0, 4.0, 9.0, 1.0, 0, 0, 0)
    assert kept.labelled == 1 and (kept.x0, kept.x1) == (0, 5)
