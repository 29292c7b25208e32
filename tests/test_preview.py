"""Preview shows exactly what run writes."""

import json

import cv2
import numpy as np
from PIL import Image

from augcli.imagefiles import read_image
from augcli.preview import BOX_COLOURS, TILE_WIDTH, make_preview, pick_outputs
from augcli.recipe import load_recipe
from augcli.runner import read_manifest, run_recipe

from .conftest import invoke, photo_like, save, write_recipe
from .test_multi_image import COLOURS, paint_sources

RECIPE = """\
    input: in
    output: out
    format: png
    variants:
      spin: {copies: 3, ops: [{rotate: {degrees: 40}}]}
      flip: {copies: 2, ops: [{fliplr: {p: 1}}]}
"""


def test_preview_tiles_are_the_files_run_writes(tmp_path):
    # The tile width equals the image width, so tiles are unscaled copies.
    save(tmp_path / "in" / "cats" / "tom.png", photo_like(48, TILE_WIDTH, seed=1))
    recipe_path = write_recipe(tmp_path, RECIPE)
    run_recipe(recipe_path, workers=1)
    sheet_path = make_preview(load_recipe(recipe_path), tmp_path / "in" / "cats" / "tom.png",
                              variant="spin", count=3, output=tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(sheet_path))
    tiles = [sheet[22:70, i * TILE_WIDTH:(i + 1) * TILE_WIDTH] for i in range(4)]
    assert np.array_equal(tiles[0], read_image(tmp_path / "in" / "cats" / "tom.png"))
    for index in (1, 2, 3):
        written = read_image(tmp_path / "out" / "cats" / f"tom_spin_{index}.png")
        assert np.array_equal(tiles[index], written)


def test_without_variant_all_variants_take_turns(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, RECIPE))
    picked = pick_outputs(recipe, tmp_path / "x.png", None, 4)
    assert [(o.variant, o.index) for o in picked] == [("spin", 1), ("flip", 1), ("spin", 2),
                                                      ("flip", 2)]


def test_preview_command(tmp_path):
    save(tmp_path / "in" / "a.jpg", photo_like(seed=2))
    recipe = write_recipe(tmp_path, RECIPE)
    result = invoke("preview", str(recipe), str(tmp_path / "in" / "a.jpg"),
                    "-n", "5", "-o", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "p.png") as sheet:
        assert sheet.size[0] == 4 * TILE_WIDTH  # six tiles: two rows of four
    bad = invoke("preview", str(recipe), str(tmp_path / "in" / "a.jpg"),
                 "--variant", "spun")
    assert bad.exit_code == 2 and "no variant 'spun'" in bad.output
    (tmp_path / "junk.png").write_text("no", encoding="utf-8")
    junk = invoke("preview", str(recipe), str(tmp_path / "junk.png"))
    assert junk.exit_code == 2 and "junk.png" in junk.output


def test_preview_never_replaces_the_image_nor_writes_into_the_input(tmp_path):
    source = save(tmp_path / "in" / "cats" / "tom.png", photo_like())
    original = source.read_bytes()
    recipe = write_recipe(tmp_path, RECIPE)
    for output, message in [(source, "is the image itself"),
                            (tmp_path / "in" / "cats" / ".." / "cats" / "tom.png",
                             "is the image itself"),
                            (tmp_path / "in" / "sheet.png", "is inside the input folder")]:
        result = invoke("preview", str(recipe), str(source), "-o",
                        str(output))
        assert result.exit_code == 2 and message in result.output, result.output
    assert source.read_bytes() == original
    assert sorted(p.name for p in (tmp_path / "in").rglob("*")) == ["cats", "tom.png"]


def test_preview_of_an_image_whose_name_is_not_utf8(tmp_path):
    import os

    name = os.fsdecode(b"t\xf6m.png")  # Latin-1: not valid UTF-8
    source = save(tmp_path / "in" / name, photo_like())
    result = invoke("preview", str(write_recipe(tmp_path, RECIPE)),
                    str(source), "-o", str(tmp_path / "sheet.png"))
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width == 4 * TILE_WIDTH


def _near(tile: np.ndarray, point, colour, reach: int = 1) -> bool:
    """Whether a pixel of about ``colour`` (lines are anti-aliased) is within ``reach`` of
    ``point`` (x, y) in ``tile``."""
    x, y = (int(round(v)) for v in point)
    patch = tile[max(0, y - reach): y + reach + 1, max(0, x - reach): x + reach + 1]
    distance = np.abs(patch.astype(int) - colour).max(axis=-1)
    return bool((distance < 50).any())


def test_preview_draws_polygons_keypoints_with_their_skeleton_and_mask_outlines(tmp_path):
    # a grey quadrilateral with two keypoints (left_eye, right_eye), in a 256-wide image so
    # the tiles are unscaled; the flip mirrors it and swaps the eyes
    width, height = TILE_WIDTH, 120
    ring = [40, 20, 120, 30, 110, 100, 30, 90]
    pixels = np.zeros((height, width, 3), np.uint8)
    cv2.fillPoly(pixels, [np.array(ring, np.int32).reshape(-1, 2)], (128, 128, 128))
    save(tmp_path / "in" / "a.png", pixels)
    labels = np.zeros((height, width), np.uint8)
    cv2.fillPoly(labels, [np.array(ring, np.int32).reshape(-1, 2)], 3)
    Image.fromarray(labels).save(tmp_path / "in" / "a_mask.png")
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [ring],
                         "keypoints": [60, 40, 2, 95, 45, 2], "num_keypoints": 2,
                         "bbox": [30, 20, 90, 80], "area": 1, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "cat", "keypoints": ["left_eye", "right_eye"],
                        "skeleton": [[1, 2]]}]}))
    variants = "variants:\n  flip: {ops: [{fliplr: {p: 1}}]}\n"
    coco = write_recipe(tmp_path, "input: in\noutput: out\nannotations: {format: coco, "
                                  f"path: coco.json, min_visibility: 0}}\n{variants}")
    sheet = np.asarray(Image.open(make_preview(load_recipe(coco), tmp_path / "in" / "a.png",
                                               count=1, output=tmp_path / "coco.png")))
    colour = BOX_COLOURS[0]
    tile = sheet[22:22 + height, TILE_WIDTH:2 * TILE_WIDTH]
    flipped = [(width - x, y) for x, y in zip(ring[::2], ring[1::2], strict=True)]
    for (x0, y0), (x1, y1) in zip(flipped, flipped[1:] + flipped[:1], strict=True):
        for t in (0.3, 0.5, 0.7):  # along each edge of the mirrored outline
            assert _near(tile, (x0 + t * (x1 - x0), y0 + t * (y1 - y0)), colour)
    # the eyes swapped places: the left eye (60, 40) is now at 256 - 95 = 161
    left, right = (width - 95, 45), (width - 60, 40)
    assert _near(tile, left, colour, 0) and _near(tile, right, colour, 0)
    assert _near(tile, ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2), colour)  # skeleton
    assert not _near(tile, (60, 40), colour, 3)  # nothing where the unmirrored eye was

    masks = write_recipe(tmp_path, f"input: in\noutput: out\nannotations: {{format: masks}}\n"
                                   f"{variants}", "masks.yaml")
    sheet = np.asarray(Image.open(make_preview(load_recipe(masks), tmp_path / "in" / "a.png",
                                               count=1, output=tmp_path / "masks.png")))
    tile = sheet[22:22 + height, TILE_WIDTH:2 * TILE_WIDTH]
    assert _near(tile, (width - 80, 25), colour, 2)  # the mirrored map's top edge
    assert not _near(tile, (80, 25), colour, 3)


# --- ops that take donors: the preview draws them as run does ---------------------------

DONOR_RECIPE = """\
    input: in
    output: out
    seed: 5
    format: png
    variants:
      mosaic: {copies: 2, ops: [{mosaic: {grid: [2, 2], size: [256, 120]}}]}
      cutmix: {ops: [{cutmix: {area: [0.2, 0.5]}}, {fliplr: {p: 0.5}}]}
      mixup: {ops: [{mixup: {ratio: [0.3, 0.7]}}]}
"""


def test_preview_of_donor_ops_shows_the_files_run_writes(tmp_path):
    for number in range(5):
        save(tmp_path / "in" / f"p{number}.png", photo_like(80 + 10 * number, TILE_WIDTH,
                                                            seed=number))
    recipe_path = write_recipe(tmp_path, DONOR_RECIPE)
    assert run_recipe(recipe_path, workers=2).exit_code == 0
    for variant, height in (("mosaic", 120), ("cutmix", 110), ("mixup", 110)):
        sheet = np.asarray(Image.open(make_preview(
            load_recipe(recipe_path), tmp_path / "in" / "p3.png", variant=variant, count=2,
            output=tmp_path / f"{variant}.png")))
        picked = [r for r in read_manifest(tmp_path / "out")
                  if r.get("variant") == variant and r["source"] == "p3.png"]
        assert picked and all(r["donors"] for r in picked)
        for column, record in enumerate(picked, start=1):
            tile = sheet[22:22 + height, column * TILE_WIDTH:(column + 1) * TILE_WIDTH]
            assert np.array_equal(tile, read_image(tmp_path / "out" / record["output"])), \
                record["output"]


def test_preview_of_a_mosaic_draws_the_boxes_of_the_source_and_its_donors(tmp_path):
    painted = paint_sources(tmp_path / "in", 6)
    recipe_path = write_recipe(tmp_path, """\
        input: in
        output: out
        seed: 2
        format: png
        annotations: {format: yolo, min_visibility: 0}
        variants:
          mosaic: {copies: 3, ops: [{mosaic: {grid: [2, 2], size: [256, 160]}}]}
    """)
    assert run_recipe(recipe_path, workers=1).exit_code == 0
    sheet = np.asarray(Image.open(make_preview(load_recipe(recipe_path),
                                               tmp_path / "in" / "img04.png", count=3,
                                               output=tmp_path / "sheet.png")))
    colours = dict(zip(sorted(COLOURS), BOX_COLOURS, strict=False))
    records = [r for r in read_manifest(tmp_path / "out") if r.get("source") == "img04.png"]
    assert sum(len(r["boxes"]) for r in records) > 3 * len(painted["img04.png"])
    for column, record in enumerate(records, start=1):
        tile = sheet[22:22 + 160, column * TILE_WIDTH:(column + 1) * TILE_WIDTH]
        for item in record["boxes"]:  # each box's bottom-right corner, in its label's colour
            x1, y1 = (int(np.ceil(v)) - 1 for v in item["box"][2:])
            assert tuple(tile[y1, x1]) == colours[item["label"]], (record["output"], item)


def test_preview_of_donor_ops_needs_an_image_of_the_recipes_input(tmp_path):
    for number in range(3):
        save(tmp_path / "in" / f"p{number}.png", photo_like(seed=number))
    elsewhere = save(tmp_path / "elsewhere.png", photo_like(seed=9))
    recipe = write_recipe(tmp_path, DONOR_RECIPE)
    result = invoke("preview", str(recipe), str(elsewhere), "-o", str(tmp_path / "p.png"))
    assert result.exit_code == 2
    assert "cutmix, mixup, mosaic take donors from the image's split" in result.output
    assert "elsewhere.png is not one of its sources" in result.output
