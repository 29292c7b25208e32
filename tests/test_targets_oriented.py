"""Oriented boxes (YOLO-OBB, ``task: obb``) follow the pixels.

Sources have rotated rectangles painted exactly where their corners say (as
pycocotools rasterizes the four-corner polygon); supervision's YOLO loader
(``is_obb=True``) reads the output. Run with ``-s`` to see the measured IoU.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from augcli.runner import run_recipe

from .conftest import write_recipe
from .test_targets_polygons import COLOURS, HEIGHT, NAMES, OPS, WIDTH, iou, painted, raster

sv = pytest.importorskip("supervision")

EXACT = ("flip", "rotate", "scale")  # right angles kept: the four corners move exactly


def rotated_rectangle(cx, cy, width, height, angle) -> tuple:
    c, s = np.cos(angle), np.sin(angle)
    corners = [(-width / 2, -height / 2), (width / 2, -height / 2), (width / 2, height / 2),
               (-width / 2, height / 2)]
    return tuple(np.round([v for x, y in corners for v in (cx + c * x - s * y,
                                                          cy + s * x + c * y)], 4).tolist())


def obb_sources(folder, images=3) -> None:
    folder.mkdir(parents=True)
    for index in range(images):
        rng = np.random.default_rng(10 + index)
        pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        lines = []
        for label, (column, row) in zip(NAMES, [(0, 0), (1, 0), (0, 1), (1, 1)], strict=True):
            corners = rotated_rectangle(WIDTH * (0.25 + 0.5 * column) + rng.uniform(-6, 6),
                                        HEIGHT * (0.25 + 0.5 * row) + rng.uniform(-6, 6),
                                        rng.uniform(40, 70), rng.uniform(20, 35),
                                        rng.uniform(0, np.pi))
            pixels[raster([corners], (HEIGHT, WIDTH))] = COLOURS[label]
            lines.append(" ".join([str(NAMES.index(label))] + [
                f"{v / (WIDTH, HEIGHT)[i % 2]:.8f}" for i, v in enumerate(corners)]))
        Image.fromarray(pixels).save(folder / f"s{index}.png")
        (folder / f"s{index}.txt").write_text("\n".join(lines) + "\n")
    (folder / "classes.txt").write_text("".join(f"{n}\n" for n in NAMES))


def test_oriented_boxes_follow_the_painted_rectangles(tmp_path):
    obb_sources(tmp_path / "in")
    variants = "".join(f"  {name}: {{ops: [{op}]}}\n" for name, op in OPS.items())
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nannotations: {format: yolo, "
                                    f"task: obb, min_visibility: 0}}\nvariants:\n{variants}")
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out"
    (tmp_path / "data.yaml").write_text(f"names: {list(NAMES)}\n")
    dataset = sv.DetectionDataset.from_yolo(str(out), str(out), str(tmp_path / "data.yaml"),
                                            is_obb=True)
    assert len(dataset) == 3 * len(OPS)
    scores: dict = {op: [] for op in OPS}
    covered: dict = {op: [] for op in OPS}
    for path, _, detections in dataset:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        op = path.rsplit("/", 1)[-1].split("_")[1]
        corners = detections.data[sv.config.ORIENTED_BOX_COORDINATES]
        assert len(detections) == 4, path
        for quad, class_id in zip(corners, detections.class_id, strict=True):
            mask = raster([np.asarray(quad, np.float64).ravel()], (HEIGHT, WIDTH))
            truth = painted(pixels, NAMES[class_id])
            quad = np.asarray(quad, np.float64)
            if np.all((quad > 0) & (quad < (WIDTH, HEIGHT))):  # clipped ones are not the shape
                scores[op].append(iou(mask, truth))
            covered[op].append(float(np.logical_and(mask, truth).sum() / truth.sum()))
    print("\nYOLO-OBB (supervision's OBB loader vs painted pixels; IoU of boxes inside)")
    for op in OPS:
        print(f"  {op:8s} IoU median {np.median(scores[op]):.4f} min {min(scores[op]):.4f}, "
              f"painted pixels covered median {np.median(covered[op]):.4f} "
              f"min {min(covered[op]):.4f}")
    for op in EXACT:
        assert np.median(scores[op]) >= 0.95 and min(scores[op]) >= 0.9, (op, scores[op])
        assert np.median(covered[op]) >= 0.95, (op, covered[op])
    for op in set(OPS) - set(EXACT):  # the minimum-area rectangle around the moved corners
        assert min(covered[op]) >= 0.95, (op, covered[op])
        assert np.median(scores[op]) >= 0.8, (op, scores[op])


def test_a_data_yaml_with_task_obb_reads_oriented_boxes(tmp_path):
    for split in ("train", "valid"):
        obb_sources(tmp_path / "ds" / split / "images", images=1)
        labels = tmp_path / "ds" / split / "labels"
        labels.mkdir()
        (tmp_path / "ds" / split / "images" / "s0.txt").rename(labels / "s0.txt")
        (tmp_path / "ds" / split / "images" / "classes.txt").unlink()
    labels = tmp_path / "ds" / "train" / "labels"
    (tmp_path / "ds" / "data.yaml").write_text(f"train: train/images\nval: valid/images\n"
                                               f"task: obb\nnames: {list(NAMES)}\n")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n"
                                    "variants: {flip: {ops: [{fliplr: {p: 1}}]}}\n")
    assert run_recipe(recipe, workers=1).exit_code == 0
    source = (labels / "s0.txt").read_text().split()
    (written,) = (tmp_path / "out" / "train" / "labels").glob("s0_flip*.txt")
    flipped = written.read_text().split()
    assert len(flipped) == len(source) == 4 * 9
    # a flip maps x to 1 - x (normalized) and keeps y: the same corners, in the same order
    for i in range(0, len(source), 9):
        assert flipped[i] == source[i]
        assert [float(v) for v in flipped[i + 1:i + 9]] == pytest.approx(
            [1 - float(v) if k % 2 == 0 else float(v)
             for k, v in enumerate(source[i + 1:i + 9])], abs=1e-9)
