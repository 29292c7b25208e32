"""Mosaic and cutmix with masks: label maps (``format: masks``) and COCO RLE masks, checked
against the paint. Each object is painted in a colour of its own class (or of its own) and
its mask holds exactly its pixels; after the op, the output's mask must name the paint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augcli.errors import UsageError
from augcli.ops.multi import MOSAIC_FILL
from augcli.preview import make_preview
from augcli.recipe import load_recipe
from augcli.runner import run_recipe

from .conftest import save, write_recipe
from .test_multi_image import (
    BACKGROUND,
    COLOURS,
    files_under,
    outputs_of,
    paint_instances,
    paint_sources,
)

CLASS_IDS = {"red": 1, "green": 2, "blue": 3}
FILL = 7  # annotations.mask_fill: an id no object has
BARE = (60, 60, 60)  # the paint of a source without a map: its area has no labels

MASKS_RECIPE = f"""\
    input: in
    output: out
    seed: 11
    format: png
    annotations: {{format: masks, mask_fill: {FILL}}}
    variants:
      mosaic:
        copies: 3
        ops:
          - mosaic: {{grid: [2, 2], size: [128, 112]}}
      mosaic9:
        copies: 2
        ops:
          - mosaic: {{grid: [3, 3], size: [150, 150]}}
          - fliplr: {{p: 1}}
          - rot90: {{k: 1}}
      cutmix:
        copies: 3
        ops:
          - cutmix: {{area: [0.2, 0.5]}}
          - flipud: {{p: 1}}
"""


def paint_label_maps(folder: Path) -> dict:
    """``paint_sources``' images with a label map each (the class id of every painted pixel,
    0 on the grey) instead of YOLO files, and one more source, ``bare.png``, without a map."""
    painted = paint_sources(folder)
    for name, objects in painted.items():
        image = np.asarray(Image.open(folder / name))
        labels = np.zeros(image.shape[:2], np.uint8)
        for label, x0, y0, x1, y1 in objects:
            labels[y0:y1, x0:x1] = CLASS_IDS[label]
        save(folder / name.replace(".png", "_mask.png"), labels)
        (folder / name.replace(".png", ".txt")).unlink()
    (folder / "classes.txt").unlink()
    save(folder / "bare.png", np.full((70, 90, 3), BARE, np.uint8))
    return painted


def ids_of_paint(pixels: np.ndarray) -> np.ndarray:
    """The id each pixel's paint says, -1 where it is no pure paint: a class colour its
    class, the grey background 0, the mosaic's grey and a map-less source's paint the fill."""
    ids = np.full(pixels.shape[:2], -1)
    for label, colour in COLOURS.items():
        ids[np.all(pixels == colour, axis=2)] = CLASS_IDS[label]
    ids[np.all(pixels == BACKGROUND, axis=2)] = 0
    ids[np.all(pixels == (MOSAIC_FILL,) * 3, axis=2)] = FILL
    ids[np.all(pixels == BARE, axis=2)] = FILL
    return ids


def read_map(out: Path, record: dict) -> np.ndarray:
    return np.asarray(Image.open(out / record["annotation"]))


def test_mosaic_and_cutmix_label_maps_name_the_paint_of_every_pixel(tmp_path):
    paint_label_maps(tmp_path / "in")
    report = run_recipe(write_recipe(tmp_path, MASKS_RECIPE), workers=1)
    assert report.exit_code == 0, report.failures
    out = tmp_path / "out"
    seen = {"fill": 0, "bare": 0, "pasted": 0}
    for variant in ("mosaic", "mosaic9", "cutmix"):
        records = outputs_of(out, variant)
        assert len(records) == (3 if variant != "mosaic9" else 2) * 11
        for record in records:
            if record["source"] == "bare.png":  # no map: its outputs have none
                assert "annotation" not in record
                continue
            pixels = np.asarray(Image.open(out / record["output"]).convert("RGB"))
            labels = read_map(out, record)
            expected = ids_of_paint(pixels)
            assert (expected >= 0).all()  # every tile and patch moved by whole pixels
            assert labels.shape == pixels.shape[:2] and labels.dtype == np.uint8
            assert (labels == expected).all(), (record["output"],
                                                int((labels != expected).sum()))
            seen["fill"] += int(np.all(pixels == (MOSAIC_FILL,) * 3, axis=2).sum())
            seen["bare"] += int(np.all(pixels == BARE, axis=2).sum())
            seen["pasted"] += variant == "cutmix" and any(
                d["source"] != "bare.png" for d in record["donors"])
    assert all(seen.values()), seen  # the mosaic's fill, a map-less donor, a pasted map


def test_a_scaled_mosaic_resizes_each_map_with_its_tile(tmp_path):
    # tiles resized by 0.5 to 1.5: the pixels blend where two colours meet, the map never;
    # every pure pixel is named by the map
    paint_label_maps(tmp_path / "in")
    recipe = write_recipe(tmp_path, MASKS_RECIPE.replace(
        "size: [128, 112]}", "size: [128, 112], scale: [0.5, 1.5]}"))
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out"
    for record in outputs_of(out, "mosaic"):
        if record["source"] == "bare.png":
            continue
        pixels = np.asarray(Image.open(out / record["output"]).convert("RGB"))
        labels, expected = read_map(out, record), ids_of_paint(pixels)
        pure = expected >= 0
        assert pure.mean() > 0.9, record["output"]
        assert (labels[pure] == expected[pure]).all(), record["output"]
        assert set(np.unique(labels).tolist()) <= {0, FILL, *CLASS_IDS.values()}


def test_a_mask_mosaic_writes_the_same_bytes_at_one_and_two_workers(tmp_path):
    paint_label_maps(tmp_path / "in")
    recipe = write_recipe(tmp_path, MASKS_RECIPE)
    assert run_recipe(recipe, workers=1).exit_code == 0
    assert run_recipe(recipe, output=tmp_path / "two", workers=2).exit_code == 0
    one, two = files_under(tmp_path / "out"), files_under(tmp_path / "two")
    assert one == two and sum(name.endswith("_mask.png") for name in one) > 50


def test_preview_draws_a_mask_mosaic_with_its_donors_maps(tmp_path):
    paint_label_maps(tmp_path / "in")
    recipe = load_recipe(write_recipe(tmp_path, MASKS_RECIPE))
    sheet = make_preview(recipe, tmp_path / "in" / "img01.png", count=4,
                         output=tmp_path / "sheet.png")
    assert Image.open(sheet).size[0] > 0


def test_mixup_with_label_maps_is_refused_by_name(tmp_path):
    paint_label_maps(tmp_path / "in")
    recipe = write_recipe(tmp_path, MASKS_RECIPE + "      blend: {ops: [{mixup: {}}]}\n")
    with pytest.raises(UsageError, match=r"^mixup carries no mask images .*blend"):
        run_recipe(recipe, workers=1)
    assert not (tmp_path / "out").exists()


# --- COCO RLE masks: each object in a colour of its own, its RLE exactly its pixels ------

mask_api = pytest.importorskip("pycocotools.mask")
coco_api = pytest.importorskip("pycocotools.coco")


def rle_dataset(folder: Path) -> set:
    """``paint_instances``' images with a COCO file whose objects are RLE masks (crowds) of
    their paint. Returns the objects' colours."""
    painted = paint_instances(folder)
    images, annotations = [], []
    for image_id, (name, objects) in enumerate(painted.items(), start=1):
        pixels = np.asarray(Image.open(folder / name).convert("RGB"))
        images.append({"id": image_id, "file_name": name, "width": pixels.shape[1],
                       "height": pixels.shape[0]})
        for label, colour in objects:
            rle = mask_api.encode(np.asfortranarray(
                np.all(pixels == colour, axis=2).astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": list(COLOURS).index(label) + 1,
                                "segmentation": {"size": rle["size"],
                                                 "counts": rle["counts"].decode("ascii")},
                                "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1})
        (folder / name.replace(".png", ".txt")).unlink()
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(COLOURS)]
    (folder / "coco.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    return {colour for objects in painted.values() for _, colour in objects}


@pytest.mark.parametrize("op", ["mosaic: {grid: [2, 2]}", "mosaic: {grid: [3, 3]}",
                                "cutmix: {area: [0.2, 0.5]}"])
def test_mosaic_and_cutmix_rle_masks_cover_exactly_the_paint_of_their_object(tmp_path, op):
    colours = rle_dataset(tmp_path / "in")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nseed: 6\nformat: png\n"
                                    "annotations: {format: coco, path: "
                                    f"{tmp_path / 'in' / 'coco.json'}, min_visibility: 0}}\n"
                                    f"variants: {{v: {{copies: 2, ops: [{{{op}}}]}}}}\n")
    report = run_recipe(recipe, workers=1)
    assert report.exit_code == 0, report.failures
    coco = coco_api.COCO(str(tmp_path / "out" / "coco.json"))
    covered = 0
    for image in coco.dataset["images"]:
        pixels = np.asarray(Image.open(tmp_path / "out" / image["file_name"]).convert("RGB"))
        by_colour: dict = {}
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            assert annotation["segmentation"]["size"] == [image["height"], image["width"]]
            mask = coco.annToMask(annotation).astype(bool)
            found, counts = np.unique(pixels[mask], axis=0, return_counts=True)
            colour = tuple(int(v) for v in found[counts.argmax()])
            assert colour in colours and counts.max() == mask.sum(), image["file_name"]
            by_colour[colour] = by_colour.get(colour, np.zeros(mask.shape, bool)) | mask
        for colour in colours:  # every object that shows has its mask, and only it
            paint = np.all(pixels == colour, axis=2)
            if not paint.any():
                continue
            assert colour in by_colour, (image["file_name"], colour)
            mask = by_colour[colour]
            assert (mask & paint).sum() / (mask | paint).sum() >= 0.95, image["file_name"]
            covered += 1
    assert covered > len(coco.dataset["images"])


def test_mixup_carries_the_rle_masks_of_both_images_the_donors_stretched(tmp_path):
    colours = rle_dataset(tmp_path / "in")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nseed: 6\nformat: png\n"
                                    "annotations: {format: coco, path: "
                                    f"{tmp_path / 'in' / 'coco.json'}}}\n"
                                    "variants: {v: {ops: [{mixup: {ratio: 0}}]}}\n")
    assert run_recipe(recipe, workers=1).exit_code == 0
    coco = coco_api.COCO(str(tmp_path / "out" / "coco.json"))
    records = {r["output"]: r for r in outputs_of(tmp_path / "out", "v")}
    source = coco_api.COCO(str(tmp_path / "in" / "coco.json"))
    count = {image["file_name"]: len(source.getAnnIds(imgIds=image["id"]))
             for image in source.dataset["images"]}
    scores = []
    for image in coco.dataset["images"]:
        record = records[image["file_name"]]
        found = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(found) == count[record["source"]] + count[record["donors"][0]["source"]]
        assert all(a["segmentation"]["size"] == [image["height"], image["width"]]
                   for a in found)
        # ratio 0: the pixels are the donor's, stretched; its objects' masks with them
        pixels = np.asarray(Image.open(tmp_path / "out" / image["file_name"]).convert("RGB"))
        palette = np.array([BACKGROUND, *sorted(colours)])  # each pixel: its nearest paint
        nearest = np.abs(pixels[:, :, None].astype(int) - palette).sum(axis=3).argmin(axis=2)
        for annotation in found[count[record["source"]]:]:
            mask = coco.annToMask(annotation).astype(bool)
            paint = nearest == np.bincount(nearest[mask]).argmax()
            scores.append((mask & paint).sum() / (mask | paint).sum())
    # a stretch blends the paint's edges (bilinear) where the mask is resampled whole
    assert np.median(scores) >= 0.9 and min(scores) >= 0.8, sorted(scores)[:3]
