"""Ops that take donors (mosaic, cutmix, mixup): real files with objects painted in pure
class colours exactly where their YOLO labels say, run through ``run_recipe``."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from augcli.errors import UsageError
from augcli.pipeline import Step, apply_steps, carry_boxes
from augcli.runner import read_manifest, run_recipe
from augcli.targets.boxes import ImageBoxes
from augcli.targets.polygons import Polygon

from .conftest import save, write_recipe

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
BACKGROUND = (128, 128, 128)
SIZES = [(80, 64), (96, 72), (64, 80), (120, 90), (72, 72), (100, 60), (88, 66), (64, 64),
         (110, 84), (76, 92)]


def paint_sources(folder: Path, count: int = len(SIZES), seed: int = 3) -> dict:
    """``count`` PNGs of a grey background with 1-3 non-touching rectangles each, in pure
    class colours, and their YOLO labels. Returns name -> [(label, x0, y0, x1, y1)]."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    (folder / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("\n".join(names) + "\n")
    painted = {}
    for number, (width, height) in enumerate(SIZES[:count]):
        image = np.empty((height, width, 3), np.uint8)
        image[:] = BACKGROUND
        objects: list = []
        while len(objects) < 1 + number % 3:
            w, h = int(rng.integers(8, width // 2)), int(rng.integers(8, height // 2))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            if any(x < b[3] + 2 and b[1] < x + w + 2 and y < b[4] + 2 and b[2] < y + h + 2
                   for b in objects):
                continue  # keep a gap: two objects never touch
            label = names[int(rng.integers(len(names)))]
            image[y:y + h, x:x + w] = COLOURS[label]
            objects.append((label, x, y, x + w, y + h))
        name = f"img{number:02d}"
        save(folder / f"{name}.png", image)
        (folder / f"{name}.txt").write_text("".join(
            f"{names.index(label)} {(x0 + x1) / 2 / width!r} {(y0 + y1) / 2 / height!r} "
            f"{(x1 - x0) / width!r} {(y1 - y0) / height!r}\n"
            for label, x0, y0, x1, y1 in objects))
        painted[f"{name}.png"] = objects
    return painted


RECIPE = """\
    input: in
    output: out
    seed: 11
    format: png
    annotations: {format: yolo, min_visibility: 0}
    variants:
      mosaic:
        copies: 2
        ops:
          - mosaic: {grid: [2, 2], size: [128, 112]}
      mosaic9:
        ops:
          - mosaic: {grid: [3, 3], size: [150, 150]}
          - fliplr: {p: 1}
      cutmix:
        copies: 2
        ops:
          - cutmix: {area: [0.2, 0.5]}
      mixup:
        ops:
          - mixup: {ratio: [0.3, 0.7]}
"""


@pytest.fixture
def painted(tmp_path):
    return paint_sources(tmp_path / "in")


def files_under(folder: Path) -> dict:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()
            and path.name != "manifest.jsonl"}


def paint_masks(pixels: np.ndarray) -> dict:
    return {label: np.all(pixels == colour, axis=2) for label, colour in COLOURS.items()}


def box_mask(boxes, label: str, shape) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for item in boxes:
        if item["label"] == label:
            x0, y0, x1, y1 = (round(v) for v in item["box"])
            mask[y0:y1, x0:x1] = True
    return mask


def outputs_of(folder: Path, variant: str) -> list:
    return [record for record in read_manifest(folder)
            if record.get("variant") == variant]


def test_mosaic_boxes_sit_on_their_paint_and_every_painted_object_has_a_box(tmp_path,
                                                                           painted):
    report = run_recipe(write_recipe(tmp_path, RECIPE), workers=1)
    assert report.exit_code == 0, report.failures
    out = tmp_path / "out"
    records = outputs_of(out, "mosaic") + outputs_of(out, "mosaic9")
    assert len(records) == 3 * len(painted)
    for record in records:
        pixels = np.asarray(Image.open(out / record["output"]).convert("RGB"))
        assert pixels.shape[:2] == ((112, 128) if record["variant"] == "mosaic" else (150, 150))
        for item in record["boxes"]:
            x0, y0, x1, y1 = item["box"]
            assert all(float(v).is_integer() for v in item["box"])  # tiles move by whole pixels
            region = pixels[int(y0):int(y1), int(x0):int(x1)]
            assert region.size and np.all(region == COLOURS[item["label"]]), (record, item)
        for label, paint in paint_masks(pixels).items():
            assert not np.any(paint & ~box_mask(record["boxes"], label, pixels.shape)), \
                (record["output"], label)  # no painted pixel without its box


def test_mosaic_scale_resizes_each_tile_and_its_boxes_follow(tmp_path, painted):
    recipe = write_recipe(tmp_path, RECIPE.replace("size: [128, 112]}",
                                                   "size: [128, 112], scale: [0.5, 1.5]}"))
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out"
    scaled = 0
    for record in outputs_of(out, "mosaic"):
        scales = record["ops"][0]["mosaic"]["scales"]
        assert len(scales) == 4 and all(0.5 <= scale <= 1.5 for scale in scales)
        scaled += sum("scale" in donor for donor in record["donors"])
        pixels = np.asarray(Image.open(out / record["output"]).convert("RGB"))
        near = np.zeros(pixels.shape[:2] + (len(COLOURS),), bool)
        for item in record["boxes"]:  # inside each box (a pixel in from its edges): its paint
            x0, y0, x1, y1 = item["box"]
            left, top = int(np.ceil(x0)) + 1, int(np.ceil(y0)) + 1
            inner = pixels[top:max(top, int(y1) - 1), left:max(left, int(x1) - 1)]
            assert np.all(inner == COLOURS[item["label"]]), (record["output"], item)
            near[max(0, int(y0) - 1):int(np.ceil(y1)) + 1, max(0, int(x0) - 1):
                 int(np.ceil(x1)) + 1, list(COLOURS).index(item["label"])] = True
        for number, paint in enumerate(paint_masks(pixels).values()):
            assert not np.any(paint & ~near[..., number]), record["output"]
    assert scaled


def test_cutmix_keeps_a_box_for_every_visible_painted_object(tmp_path, painted):
    report = run_recipe(write_recipe(tmp_path, RECIPE), workers=1)
    assert report.exit_code == 0
    out = tmp_path / "out"
    records = outputs_of(out, "cutmix")
    assert len(records) == 2 * len(painted)
    pasted = 0
    for record in records:
        pixels = np.asarray(Image.open(out / record["output"]).convert("RGB"))
        (donor,) = record["donors"]
        x, y, w, h = donor["output"]
        assert w * h > 0 and x + w <= pixels.shape[1] and y + h <= pixels.shape[0]
        for label, paint in paint_masks(pixels).items():
            assert not np.any(paint & ~box_mask(record["boxes"], label, pixels.shape)), \
                (record["output"], label)
        pasted += sum(item["box"][0] >= x and item["box"][2] <= x + w
                      and item["box"][1] >= y and item["box"][3] <= y + h
                      for item in record["boxes"])
    assert pasted  # some donor objects came along with their patches


def test_mixup_blends_one_donor_and_carries_the_boxes_of_both(tmp_path, painted):
    assert run_recipe(write_recipe(tmp_path, RECIPE), workers=1).exit_code == 0
    for record in outputs_of(tmp_path / "out", "mixup"):
        (donor,) = record["donors"]
        ratio = record["ops"][0]["mixup"]["ratio"]
        assert 0.3 <= ratio <= 0.7 and donor["weight"] == pytest.approx(1 - ratio)
        assert len(record["boxes"]) == len(painted[record["source"]]) + \
            len(painted[donor["source"]])


def test_donors_are_other_sources_of_the_split_and_a_3x3_mosaic_names_eight(tmp_path,
                                                                              painted):
    assert run_recipe(write_recipe(tmp_path, RECIPE), workers=1).exit_code == 0
    records = [r for r in read_manifest(tmp_path / "out") if r.get("variant")]
    for record in records:
        assert record["donors"], record
        for donor in record["donors"]:
            assert donor["source"] in painted and donor["source"] != record["source"]
    for record in outputs_of(tmp_path / "out", "mosaic9"):
        assert len(record["donors"]) == 8
        assert record["ops"][0]["mosaic"]["donors"] == [d["source"] for d in record["donors"]]
    assert len({d["source"] for r in records for d in r["donors"]}) == len(painted)


def test_donors_come_from_the_same_split_of_a_dataset(tmp_path):
    train = paint_sources(tmp_path / "data" / "train" / "images", 6, seed=1)
    valid = paint_sources(tmp_path / "data" / "valid" / "images", 4, seed=2)
    for split in ("train", "valid"):
        labels = tmp_path / "data" / split / "labels"
        labels.mkdir()
        for text in (tmp_path / "data" / split / "images").glob("*.txt"):
            text.rename(labels / text.name)
    (tmp_path / "data" / "data.yaml").write_text(
        "train: train/images\nval: valid/images\nnames: [red, green, blue]\n")
    recipe = write_recipe(tmp_path, """\
        input: data/data.yaml
        output: out
        splits: [train, val]
        variants:
          mosaic:
            ops: [{mosaic: {grid: [3, 3]}}]
    """)
    report = run_recipe(recipe, workers=1)
    assert report.exit_code == 0, report.failures
    records = [r for r in read_manifest(tmp_path / "out") if r.get("variant")]
    assert len(records) == len(train) + len(valid)
    for record in records:
        split = record["source"].split("/")[0]
        names = {f"{split}/images/{name}" for name in (train if split == "train" else valid)}
        assert {d["source"] for d in record["donors"]} <= names - {record["source"]}


def test_same_bytes_at_one_and_two_workers_and_a_rerun_writes_nothing(tmp_path, painted):
    recipe = write_recipe(tmp_path, RECIPE)
    assert run_recipe(recipe, workers=1).exit_code == 0
    assert run_recipe(recipe, output=tmp_path / "two", workers=2).exit_code == 0
    one = files_under(tmp_path / "out")
    assert one == files_under(tmp_path / "two")
    assert read_manifest(tmp_path / "out") == read_manifest(tmp_path / "two")
    made = [path for path in one if path != "classes.txt"]  # the run's own, rewritten
    stamps = {path: os.stat(tmp_path / "out" / path).st_mtime_ns for path in made}
    again = run_recipe(recipe, workers=2)
    assert again.exit_code == 0 and again.written == 0 and again.skipped == 6 * len(painted)
    assert {path: os.stat(tmp_path / "out" / path).st_mtime_ns for path in made} == stamps


@pytest.mark.slow
def test_a_dask_cluster_writes_the_same_bytes(tmp_path, painted):
    pytest.importorskip("distributed")
    recipe = write_recipe(tmp_path, RECIPE)
    assert run_recipe(recipe, workers=1).exit_code == 0
    assert run_recipe(recipe, output=tmp_path / "dask", workers=2,
                      cluster="local").exit_code == 0
    assert files_under(tmp_path / "out") == files_under(tmp_path / "dask")


def test_an_unreadable_donor_fails_only_the_outputs_that_take_it(tmp_path):
    for number in range(4):
        save(tmp_path / "in" / f"p{number}.png", np.full((24, 32, 3), 40 * number, np.uint8))
    (tmp_path / "in" / "p4.png").write_bytes(b"not a png")
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          m: {copies: 3, ops: [{mixup: {ratio: [0.3, 0.7]}}]}
    """)
    report = run_recipe(recipe, workers=1)
    assert report.exit_code == 1
    reasons = dict(report.failures)
    assert "p4.png" in reasons  # the source itself
    takers = [path for path, reason in reasons.items()
              if "its donor p4.png cannot be read" in reason]
    written = [r for r in read_manifest(tmp_path / "out") if r.get("variant")]
    assert takers and written and len(takers) + len(written) == 4 * 3
    assert all(r["donors"][0]["source"] != "p4.png" for r in written)


def test_without_a_run_to_draw_them_there_are_no_donors(image):
    from augcli.render import OutputPlan, render

    from .conftest import ops_of

    with pytest.raises(UsageError, match="mosaic takes 3 donor.*only augcli run"):
        render(image, OutputPlan("x.png", "v", 1, 5, ops_of("[{mosaic: {}}]")))


def test_kinds_an_op_does_not_carry_and_mask_images_are_refused_not_left_behind(tmp_path):
    for index in range(3):
        save(tmp_path / "in" / f"s{index}.png", np.full((40, 60, 3), 90 + index, np.uint8))
        (tmp_path / "in" / f"s{index}.txt").write_text(  # an oriented box (YOLO-OBB)
            "0 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n")
    oriented = write_recipe(tmp_path, "input: in\noutput: out\n"
                                      "annotations: {format: yolo, task: obb}\n"
                                      "variants: {m: {ops: [{cutmix: {}}]}}\n")
    with pytest.raises(UsageError, match=r"cutmix carries boxes, polygons, masks only: s0.png "
                                         r"has oriented boxes"):
        run_recipe(oriented, workers=1)
    for index in range(3):
        (tmp_path / "in" / f"s{index}.txt").unlink()
        save(tmp_path / "in" / f"s{index}_mask.png", np.zeros((40, 60), np.uint8))
    masks = write_recipe(tmp_path, "input: in\noutput: out\nannotations: {format: masks}\n"
                                   "variants: {m: {ops: [{cutmix: {}}, {mixup: {}}]}}\n",
                           name="masks.yaml")
    with pytest.raises(UsageError, match=r"^mixup carries no mask images"):
        run_recipe(masks, workers=1)
    assert not (tmp_path / "out").exists()


# --- copy_paste: instances painted in colours of their own, outlined by YOLO-seg polygons --

def _octagon(rng, width: int, height: int) -> np.ndarray:
    """A convex octagon (pixel edges) of random size, stretch and turn, inside the image."""
    rx, ry = rng.uniform(5, width / 5), rng.uniform(5, height / 5)
    cx, cy = rng.uniform(rx + 1, width - rx - 1), rng.uniform(ry + 1, height - ry - 1)
    turn = rng.uniform(0, np.pi / 4)
    angles = turn + np.arange(8) * np.pi / 4
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _inside_convex(points: np.ndarray, shape) -> np.ndarray:
    """Pixels whose centres are inside a convex ring: on the inner side of every edge."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    inside = np.ones(shape[:2], bool)
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0), strict=True):
        inside &= (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0) >= 0
    return inside


def paint_instances(folder: Path, count: int = 8, seed: int = 5) -> dict:
    """PNGs of 1-3 non-touching convex objects, each in a colour no other object has, and
    their YOLO-seg lines. Returns name -> [(label, colour)]."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    painted: dict = {}
    colour_index = 0
    for number, (width, height) in enumerate(SIZES[:count]):
        image = np.full((height, width, 3), BACKGROUND, np.uint8)
        taken = np.zeros((height + 4, width + 4), bool)
        objects, lines = [], []
        while len(objects) < 1 + number % 3:
            ring = _octagon(rng, width, height)
            inside = _inside_convex(ring, image.shape)
            grown = np.zeros_like(taken)
            grown[2:-2, 2:-2] = inside
            if (taken & grown).any() or inside.sum() < 30:
                continue
            taken |= np.roll(grown, (-2, -2), (0, 1)) | np.roll(grown, (2, 2), (0, 1)) | grown
            colour_index += 1
            colour = (40 + 23 * colour_index % 200, 200 - 17 * colour_index % 180,
                      30 + 41 * colour_index % 220)
            image[inside] = colour
            label = names[number % len(names)]
            objects.append((label, colour))
            lines.append(f"{names.index(label)} " + " ".join(
                f"{x / width!r} {y / height!r}" for x, y in ring.tolist()) + "\n")
        save(folder / f"obj{number:02d}.png", image)
        (folder / f"obj{number:02d}.txt").write_text("".join(lines))
        painted[f"obj{number:02d}.png"] = objects
    (folder / "classes.txt").write_text("\n".join(names) + "\n")
    return painted


def polygon_mask(polygon: list, shape) -> np.ndarray:
    """The pixels whose centres a manifest polygon (pixel edges, one or more rings) covers,
    asked of OpenCV point by point."""
    mask = np.zeros(shape[:2], bool)
    for ring in polygon:
        points = np.array(ring, np.float32).reshape(-1, 1, 2)
        x0, y0 = np.floor(points.min(axis=(0, 1))).astype(int)
        x1, y1 = np.ceil(points.max(axis=(0, 1))).astype(int)
        for y in range(max(y0, 0), min(y1, shape[0])):
            for x in range(max(x0, 0), min(x1, shape[1])):
                if cv2.pointPolygonTest(points, (x + 0.5, y + 0.5), False) > 0:
                    mask[y, x] = True
    return mask


def assert_polygons_outline_paint(record: dict, pixels: np.ndarray, colours: set) -> dict:
    """Each polygon of an output's record covers paint of one object's colour, and the
    polygons of a colour outline all of that colour's paint (IoU >= 0.95). Slivers (under
    30 pixels: a tile's edge, what a paste left) count towards an outline, not for purity.
    Returns colour -> its outline, for the colours outlined."""
    by_colour: dict = {}
    for target in record["boxes"]:
        mask = polygon_mask(target["polygon"], pixels.shape)
        if not mask.any():
            continue  # min_visibility 0 keeps a sliver that covers no pixel centre
        found, counts = np.unique(pixels[mask], axis=0, return_counts=True)
        colour = tuple(int(v) for v in found[counts.argmax()])
        if mask.sum() >= 30:
            assert colour in colours, (record["output"], target)
            assert counts.max() / mask.sum() >= 0.95, (record["output"], target)
        by_colour[colour] = by_colour.get(colour, np.zeros(mask.shape, bool)) | mask
    outlined = {}
    for colour in colours:
        paint = np.all(pixels == colour, axis=2)
        if paint.sum() < 30:
            continue
        outline = by_colour.get(colour)
        assert outline is not None, (record["output"], colour)
        iou = (outline & paint).sum() / (outline | paint).sum()
        assert iou >= 0.95, (record["output"], colour, iou)
        outlined[colour] = outline
    return outlined


def test_copy_paste_polygons_outline_exactly_the_pixels_they_say(tmp_path):
    painted = paint_instances(tmp_path / "in")
    colours = {colour for objects in painted.values() for _, colour in objects}
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        seed: 4
        format: png
        annotations: {format: yolo, min_visibility: 0}
        variants:
          paste:
            copies: 3
            ops:
              - copy_paste: {objects: [1, 3]}
        """)
    run_recipe(recipe, workers=1)
    records = outputs_of(tmp_path / "out", "paste")
    assert len(records) == 3 * len(painted)
    pasted_total = 0
    for record in records:
        pixels = np.asarray(Image.open(tmp_path / "out" / record["output"]).convert("RGB"))
        donors = record["donors"]
        assert 1 <= len(donors) <= 3 and all(d["source"] in painted for d in donors)
        assert all(d["source"] != record["source"] for d in donors)
        pasted_total += len(donors)
        # a source object cut by what was pasted over it too
        by_colour = assert_polygons_outline_paint(record, pixels, colours)
        # an outlined object of another image came from a donor the manifest names; the
        # last one pasted is never covered
        owner = {colour: name for name, objects in painted.items() for _, colour in objects}
        foreign = {owner[colour] for colour in by_colour} - {record["source"]}
        assert foreign and foreign <= {d["source"] for d in donors}, record["output"]
        assert donors[-1]["source"] in foreign
    assert pasted_total > len(records)


@pytest.mark.parametrize("op", ["mosaic: {grid: [2, 2]}", "mosaic: {grid: [3, 3]}",
                                "cutmix: {area: [0.2, 0.5]}"])
def test_mosaic_and_cutmix_polygons_outline_exactly_the_paint_that_shows(tmp_path, op):
    # every polygon covers paint of one object, and each object's paint left in the output
    # is outlined by its polygon: clipped to its tile, or cut where a patch hides it
    painted = paint_instances(tmp_path / "in")
    colours = {colour for objects in painted.values() for _, colour in objects}
    recipe = write_recipe(tmp_path, f"input: in\noutput: out\nseed: 6\nformat: png\n"
                                    "annotations: {format: yolo, min_visibility: 0}\n"
                                    f"variants: {{v: {{copies: 2, ops: [{{{op}}}]}}}}\n")
    run_recipe(recipe, workers=1)
    records = outputs_of(tmp_path / "out", "v")
    assert len(records) == 2 * len(painted)
    outlined = 0
    for record in records:
        pixels = np.asarray(Image.open(tmp_path / "out" / record["output"]).convert("RGB"))
        outlined += len(assert_polygons_outline_paint(record, pixels, colours))
    assert outlined > len(records)


DOTS = [(250, 40, 40), (40, 250, 40), (40, 40, 250)]  # keypoint i painted in DOTS[i]


def test_mosaic_keypoints_sit_on_their_painted_dots(tmp_path):
    # YOLO-pose sources: each keypoint a 3 x 3 dot of its own colour; in every mosaic each
    # visible keypoint sits on its colour, and every dot that shows has its keypoint
    rng = np.random.default_rng(8)
    for index, (width, height) in enumerate(SIZES):
        image = np.full((height, width, 3), BACKGROUND, np.uint8)
        points = []
        for colour in DOTS:
            x, y = int(rng.integers(3, width - 3)), int(rng.integers(3, height - 3))
            image[y - 1:y + 2, x - 1:x + 2] = colour
            points += [(x + 0.5) / width, (y + 0.5) / height, 2]
        save(tmp_path / "in" / f"p{index}.png", image)
        (tmp_path / "in" / f"p{index}.txt").write_text(
            "0 0.5 0.5 1 1 " + " ".join(map(str, points)) + "\n")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nseed: 2\nformat: png\n"
                                    "annotations: {format: yolo, task: pose, kpt_shape: [3, 3], "
                                    "min_visibility: 0}\n"
                                    "variants: {m: {copies: 2, ops: [{mosaic: {grid: [2, 2]}}]}}\n")
    run_recipe(recipe, workers=1)
    checked = 0
    for record in outputs_of(tmp_path / "out", "m"):
        pixels = np.asarray(Image.open(tmp_path / "out" / record["output"]).convert("RGB"))
        height, width = pixels.shape[:2]
        lines = (tmp_path / "out" / record["output"]).with_suffix(".txt").read_text()
        seen = {i: [] for i in range(len(DOTS))}
        for line in lines.splitlines():
            values = [float(v) for v in line.split()[5:]]
            for i in range(len(DOTS)):
                x, y, v = values[3 * i:3 * i + 3]
                if v > 0:
                    column, row = int(x * width), int(y * height)
                    assert tuple(pixels[row, column]) == DOTS[i], (record["output"], i)
                    seen[i].append((column, row))
                    checked += 1
        for i, colour in enumerate(DOTS):  # a whole dot that shows has its keypoint on it
            mask = np.all(pixels == colour, axis=2)
            ys, xs = np.nonzero(mask)
            for y, x in zip(ys, xs, strict=True):
                if mask[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].all():  # a dot's centre
                    assert any(abs(x - kx) <= 1 and abs(y - ky) <= 1  # dots may meet
                               for kx, ky in seen[i]), (record["output"], i, x, y)
    assert checked > 2 * len(SIZES)


def test_mixup_carries_the_polygons_of_both_images(tmp_path):
    painted = paint_instances(tmp_path / "in")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nformat: png\n"
                                    "annotations: {format: yolo}\n"
                                    "variants: {x: {ops: [{mixup: {}}]}}\n")
    run_recipe(recipe, workers=1)
    for record in outputs_of(tmp_path / "out", "x"):
        (donor,) = record["donors"]
        lines = (tmp_path / "out" / record["output"]).with_suffix(".txt").read_text()
        assert len(lines.splitlines()) == len(painted[record["source"]]) + \
            len(painted[donor["source"]])


def test_copy_paste_without_polygons_is_refused(tmp_path, painted):
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nannotations: {format: yolo}\n"
                                    "variants: {p: {ops: [{copy_paste: {}}]}}\n")
    with pytest.raises(UsageError, match=r"copy_paste carries polygons only: img00.png has a Box"):
        run_recipe(recipe, workers=1)
    bare = write_recipe(tmp_path, "input: in\noutput: out\nannotations: none\n"
                                  "variants: {p: {ops: [copy_paste]}}\n", name="bare.yaml")
    with pytest.raises(UsageError, match=r"copy_paste cuts objects .* give the recipe 'annotat"):
        run_recipe(bare, workers=1)
    assert not (tmp_path / "out").exists()


def test_an_object_pasted_inside_a_polygon_cuts_it_open_not_a_ring_around_it():
    """COCO and YOLO-seg rings hold no holes: the source square keeps its own paint only."""
    own, other = (200, 40, 40), (40, 40, 200)
    image = np.full((40, 40, 3), 128, np.uint8)
    image[5:35, 5:35] = own
    donor = np.full((20, 20, 3), 128, np.uint8)
    donor[5:15, 5:15] = other
    square = Polygon("big", ((5, 5, 35, 5, 35, 35, 5, 35),))
    small = Polygon("small", ((5, 5, 15, 5, 15, 15, 5, 15),))
    targets = {"d.png": ImageBoxes(20, 20, (small,))}
    # the step as the manifest records it: the donor's only polygon, its box placed at the
    # middle of the room, (40 - 10) / 2 = 15 from the left and the top
    steps = [Step("copy_paste", {"objects": 1, "picks": [[0.0, 0.5, 0.5]],
                                 "donors": ["d.png"]})]
    pixels = apply_steps(image, steps, donor={"d.png": donor}.get, donor_targets=targets.get)
    painted = np.zeros((40, 40), bool)
    painted[15:25, 15:25] = True
    assert np.all(pixels[painted] == other) and np.all(pixels[5:35, 5:35][~painted[5:35, 5:35]]
                                                       == own)
    kept, dropped, _, _ = carry_boxes((square,), steps, image.shape, targets.get, 0.0)
    assert not dropped and [t.label for t in kept] == ["big", "small"]
    big = polygon_mask(kept[0].rings, image.shape)
    assert np.all(pixels[big] == own)
    assert big.sum() >= 0.95 * np.all(pixels == own, axis=2).sum()
    assert np.array_equal(polygon_mask(kept[1].rings, image.shape), painted)


def test_a_worker_keeps_a_bounded_number_of_donors_decoded_and_read_only():
    from augcli.worker import _DecodedDonors

    kept = _DecodedDonors(limit=3 * 100)
    images = {name: np.full((10, 10), index, np.uint8) for index, name in enumerate("abcd")}
    for name in "abc":
        kept.put((name, ()), images[name])
    assert kept.get(("a", ())) is images["a"]  # taken again: the last to go
    kept.put(("d", ()), images["d"])
    assert kept.get(("b", ())) is None and kept.held == 300
    assert [kept.get((name, ())) is not None for name in "acd"] == [True, True, True]
    with pytest.raises(ValueError, match="read-only"):
        images["a"][0, 0] = 9
    assert kept.put(("big", ()), np.zeros((20, 20), np.uint8)) is not None
    assert kept.get(("big", ())) is None  # larger than the whole limit: not kept
