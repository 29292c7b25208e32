"""Mask images (``<stem>_mask.png`` label maps, 8- or 16-bit class ids) follow the pixels.

The sources are the polygon tests' painted stars; each has a label map with the
class id of every painted pixel. After each geometric op the painted pixels are
the truth: the output's map, read back with Pillow, must name them (IoU per
class). Run with ``-s`` to see the measured IoU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from augcli.errors import RecipeError
from augcli.recipe import load_recipe
from augcli.runner import MANIFEST_NAME, run_recipe

from .conftest import write_recipe
from .test_targets_polygons import (
    HEIGHT,
    NAMES,
    OPS,
    WIDTH,
    iou,
    painted,
    painted_sources,
    raster,
    recipe_for,
    report,
)

FILL = 9  # annotations.mask_fill in these tests: an id no object has


def write_label_maps(folder, shapes: dict, wide: str = "") -> dict:
    """Each source's label map beside it (``<stem>_mask.png``); ``wide``: the source whose
    map is 16-bit, with ids past 255. Returns name -> {label: id}."""
    ids = {}
    for name, objects in shapes.items():
        step = 1000 if name == wide else 1
        labels = np.zeros((HEIGHT, WIDTH), np.uint16 if name == wide else np.uint8)
        for label, ring in objects:
            labels[raster([ring], (HEIGHT, WIDTH))] = (NAMES.index(label) + 1) * step
        Image.fromarray(labels).save(folder / name.replace(".png", "_mask.png"))
        ids[name] = {label: (NAMES.index(label) + 1) * step for label in NAMES}
    return ids


def read_labels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_mask_images_follow_the_painted_shapes(tmp_path):
    shapes = painted_sources(tmp_path / "in")
    ids = write_label_maps(tmp_path / "in", shapes, wide="s1.png")
    recipe = recipe_for(tmp_path, f"{{format: masks, mask_fill: {FILL}}}")
    report_ = run_recipe(recipe, workers=1)
    assert report_.exit_code == 0 and report_.written == 3 * len(OPS)  # no map is a source
    out = tmp_path / "out"
    scores: dict = {op: [] for op in OPS}
    filled = dict.fromkeys(OPS, 0)
    for image_path in sorted(out.glob("s?_*_?.png")):
        source, op = image_path.name.split("_")[:2]
        pixels = np.asarray(Image.open(image_path).convert("RGB"))
        labels = read_labels(image_path.with_name(image_path.stem + "_mask.png"))
        assert labels.shape == pixels.shape[:2]
        assert labels.dtype == (np.uint16 if source == "s1" else np.uint8)
        known = {0, FILL, *ids[f"{source}.png"].values()}
        assert set(np.unique(labels).tolist()) <= known  # nearest: no blended ids
        for label, class_id in ids[f"{source}.png"].items():
            scores[op].append(iou(labels == class_id, painted(pixels, label)))
        outside = labels == FILL  # where the image was filled: black there
        assert not pixels[outside].any()
        filled[op] += int(outside.sum())
    report("Mask images (label map ids vs painted pixels)", scores)
    for op, values in scores.items():
        assert len(values) == 3 * 4
        assert np.median(values) >= 0.95 and min(values) >= 0.9, (op, values)
    assert filled["flip"] == 0 and filled["rotate"] > 1000  # the corners a rotation fills

    # the manifest names each map as it names an annotation file, and a rerun resumes
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    outputs = [r for r in records if "output" in r]
    assert {r["annotation"] for r in outputs} == {
        r["output"].replace(".png", "_mask.png") for r in outputs}
    again = run_recipe(recipe, workers=1)
    assert again.exit_code == 0 and again.written == 0 and again.skipped == 3 * len(OPS)


def test_pixel_ops_and_erasing_leave_masks_as_they_are(tmp_path):
    shapes = painted_sources(tmp_path / "in", images=1)
    write_label_maps(tmp_path / "in", shapes)
    (tmp_path / "in" / "bare.png").write_bytes((tmp_path / "in" / "s0.png").read_bytes())
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(tmp_path / "in" / "rgb.png")
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(tmp_path / "in" /
                                                                  "rgb_mask.png")
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        include_original: true
        annotations: {format: masks}
        variants:
          erase: {ops: [{cutout: {nb_iterations: 2}}, {random_erasing: {p: 1}},
                        {brightness: {factor: 1.4}},
                        {gaussian_blur: {sigma: 2}}]}
        """)
    result = run_recipe(recipe, workers=1)
    source = read_labels(tmp_path / "in" / "s0_mask.png")
    out = tmp_path / "out"
    assert (read_labels(out / "s0_erase_1_mask.png") == source).all()
    assert (out / "s0_mask.png").read_bytes() == (tmp_path / "in" / "s0_mask.png").read_bytes()
    # an image without a map gets outputs without one; a map that is not one fails its image
    assert (out / "bare_erase_1.png").exists() and not list(out.glob("bare*_mask.png"))
    assert [(path, reason) for path, reason in result.failures] == [
        ("rgb.png", "its mask: a mask must have one channel of class ids, this one has 3")]
    lines = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert [line["started"] for line in lines if "started" in line] == ["rgb.png"]


def test_mask_keys_are_checked_with_the_recipe(tmp_path):
    path = write_recipe(tmp_path, """\
        input: in
        output: out
        annotations: {format: yolo, suffix: _m.png, mask_fill: 70000}
        variants:
          a: {ops: [{fliplr: {p: 1}}]}
        """)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    text = str(caught.value)
    assert "annotations.suffix: only mask images (format: masks)" in text
    assert "annotations.mask_fill: expected a class id in [0, 65535], got 70000" in text
