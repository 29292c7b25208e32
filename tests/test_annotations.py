"""Bounding boxes: they follow the pixels through every geometric op, survive a read/write
round trip in each format, are clipped and dropped as documented, and travel end to end."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from augcli import formats, geometry, imagefiles
from augcli.annotations import AnnotationFormat, AnnotationSource, encode_boxes
from augcli.check import check_folder
from augcli.errors import RecipeError, UsageError
from augcli.formats import AnnotationError, AnnotationSpec
from augcli.formats.regions import parse_regions
from augcli.formats.voc import parse_voc
from augcli.formats.yolo import parse_yolo
from augcli.pipeline import apply_steps, sample_steps, steps_matrix
from augcli.preview import BOX_COLOURS, LABEL_HEIGHT, TILE_WIDTH, make_preview
from augcli.recipe import load_recipe, parse_recipe
from augcli.runner import read_manifest, run_recipe
from augcli.stores import StoreSpec
from augcli.targets.boxes import Box, ImageBoxes, transform_boxes

from .conftest import invoke, save, write_recipe

WIDTH, HEIGHT = 80, 60
RECT = (20, 10, 45, 30)  # x0, y0, x1, y1 in pixel edges: columns 20..44, rows 10..29


def rect_image(rect=RECT, width=WIDTH, height=HEIGHT) -> np.ndarray:
    """Black RGB image with one solid white rectangle."""
    image = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = rect
    image[y0:y1, x0:x1] = 255
    return image


def pixel_hull(image: np.ndarray):
    """Pixel-edge bounding box of the bright pixels (None when there are none)."""
    rows, cols = np.nonzero(image[..., 0] >= 128)
    if len(rows) == 0:
        return None
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def steps_for(op_yaml: str, seed=0, shape=(HEIGHT, WIDTH)):
    """Sampled steps of one op written as in a recipe."""
    recipe = parse_recipe({"variants": {"a": {"ops": [yaml.safe_load(op_yaml)]}}})
    return sample_steps(recipe.variants[0].ops, np.random.default_rng(seed), shape)


def moved_box(steps, image=None, min_visibility=0.0):
    image = rect_image() if image is None else image
    out = apply_steps(image, steps)
    kept, _ = transform_boxes([Box("obj", *map(float, RECT))], steps_matrix(steps, image.shape),
                              out.shape, min_visibility)
    return out, kept


# --- boxes follow the pixels -----------------------------------------------------------

@pytest.mark.parametrize("op_yaml, seeds", [
    ("{fliplr: {p: 1}}", [0]),
    ("{flipud: {p: 1}}", [0]),
    ("{rot90: {k: 1}}", [0]),
    ("{rot90: {k: 2}}", [0]),
    ("{rot90: {k: 3}}", [0]),
    ("{rotate: {degrees: [90, 90]}}", [0]),
    ("{rotate: {degrees: [-90, -90]}}", [0]),
    ("{translate: {x: [0.1, 0.1], y: [-0.05, -0.05]}}", [0]),
    ("{shear: {x: [15, 15], y: [0, 0]}}", [0]),
    ("{shear: {x: [0, 0], y: [-12, -12]}}", [0]),
    ("{affine: {rotate: [90, 90], scale: [0.8, 0.8], translate: [0.05, 0.05]}}", [0]),
    ("{crop: {width: 60, height: 40}}", [0, 1, 2]),
    ("{crop: {percent: [0.05, 0.2]}}", [0, 1]),
    ("{letterbox: {width: 100, height: 100}}", [0]),
    ("{letterbox: {width: 50, height: 90}}", [0]),
    ("{zoom: {factor: [1.2, 1.2]}}", [0]),
    ("{zoom: {factor: [0.7, 1.3], keep_aspect: false}}", [3]),
    ("{pad: {px: [0, 12]}}", [0]),
    ("{resize: {width: 120, height: 45}}", [0]),
    ("{random_resized_crop: {size: [64, 48], scale: [0.5, 1]}}", [0, 1, 2]),
    (("{keras: {width_shift_range: 0.1, height_shift_range: 0.1, zoom_range: 0.2, "
      "shear_range: 10, horizontal_flip: true, vertical_flip: true, fill_mode: constant}}"),
     [0, 1, 2]),
    ("{perspective: {scale: [0.08, 0.08]}}", [0, 1, 2]),
])
def test_box_matches_the_rectangles_pixel_hull(op_yaml, seeds):
    for seed in seeds:
        steps = steps_for(op_yaml, seed)
        assert steps, op_yaml
        out, kept = moved_box(steps)
        hull = pixel_hull(out)
        assert hull is not None and len(kept) == 1, (op_yaml, seed)
        box = kept[0]
        assert np.allclose((box.x0, box.y0, box.x1, box.y1), hull, atol=1.5), \
            (op_yaml, seed, box, hull)


def test_a_pipeline_of_fused_and_own_resampling_steps_moves_the_box_with_the_pixels():
    steps = [*steps_for("{fliplr: {p: 1}}"), *steps_for("{rot90: {k: 1}}"),
             *steps_for("{translate: {x: [0.05, 0.05], y: [0.1, 0.1]}}", shape=(WIDTH, HEIGHT)),
             *steps_for("{letterbox: {width: 96, height: 64}}", shape=(WIDTH, HEIGHT))]
    out, (box,) = moved_box(steps)
    assert out.shape[:2] == (64, 96)
    assert np.allclose((box.x0, box.y0, box.x1, box.y1), pixel_hull(out), atol=1.5)


def test_rotation_by_30_degrees_gives_the_hull_of_the_turned_corners():
    """Checked against corners turned by hand about the centre ((w - 1) / 2, (h - 1) / 2)."""
    steps = steps_for("{rotate: {degrees: [30, 30]}}")
    out, (box,) = moved_box(steps)
    theta = math.radians(30)
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    turned = []
    for x, y in ((20, 10), (45, 10), (45, 30), (20, 30)):
        u, v = x - 0.5 - cx, y - 0.5 - cy  # pixel edge -> pixel centre coordinates
        turned.append((cx + u * math.cos(theta) - v * math.sin(theta) + 0.5,
                       cy + u * math.sin(theta) + v * math.cos(theta) + 0.5))
    xs, ys = zip(*turned, strict=True)
    assert np.allclose((box.x0, box.y0, box.x1, box.y1), (min(xs), min(ys), max(xs), max(ys)))
    # The turned rectangle's own pixels lie inside the box (antialiasing aside).
    hull = pixel_hull(out)
    assert box.x0 - 1 <= hull[0] and box.y0 - 1 <= hull[1]
    assert hull[2] <= box.x1 + 1 and hull[3] <= box.y1 + 1


def test_pixel_ops_leave_boxes_where_they_are():
    steps = [*steps_for("{dropout: {p: 0.3}}"), *steps_for("{random_erasing: {p: 1}}"),
             *steps_for("{gaussian_noise: {scale: 10}}"), *steps_for("brightness")]
    assert np.array_equal(steps_matrix(steps, (HEIGHT, WIDTH)), np.eye(3))


def test_edge_matrix_flips_edges_exactly_and_scales_them_by_the_resize_factor():
    flip = geometry.edge_matrix(geometry.flip_matrix((HEIGHT, WIDTH), horizontal=True))
    assert np.allclose(geometry.project_points(flip, [[0, 0], [WIDTH, 0]]), [[WIDTH, 0], [0, 0]])
    resize = geometry.edge_matrix(geometry.resize_matrix((60, 80), (30, 200)))
    assert np.allclose(geometry.project_points(resize, [[80, 60], [10, 6]]), [[200, 30], [25, 3]])


# --- clipping and min_visibility ------------------------------------------------------------

def shifted(fraction: float, min_visibility: float):
    box = Box("obj", 0.0, 10.0, 20.0, 30.0)
    matrix = geometry.translation(fraction * 20, 0)
    return transform_boxes([box], matrix, (HEIGHT, WIDTH), min_visibility)


def test_a_box_half_out_is_clipped_and_kept_at_the_default_visibility():
    kept, dropped = shifted(-0.5, 0.3)
    assert kept == (Box("obj", 0.0, 10.0, 10.0, 30.0),) and dropped == ()


def test_a_box_80_percent_out_is_dropped_with_its_visibility():
    kept, (dropped,) = shifted(-0.8, 0.3)
    assert kept == () and dropped.box == Box("obj", 0.0, 10.0, 20.0, 30.0)
    assert dropped.visibility == pytest.approx(0.2)
    assert shifted(-0.8, 0.1)[0]  # kept when less visibility is asked for
    assert shifted(-1.5, 0.0)[0] == ()  # nothing visible: always dropped


def test_boxes_a_hair_outside_or_on_the_very_edge_are_clamped_never_raised():
    size = (WIDTH, HEIGHT)
    text = "0 0.5 0.5 1 1\n0 0.5 0.5 1.0000001 1.0000001\n0 0.0000001 0.5 0.0000002 0.1\n"
    boxes = parse_yolo(text, "edge.txt", size)
    assert boxes[0] == boxes[1] == Box("0", 0.0, 0.0, 80.0, 60.0)
    for op_yaml in ("{rot90: {k: 1}}", "{rotate: {degrees: [33, 33]}}",
                    "{perspective: {scale: [0.1, 0.1]}}", "{fliplr: {p: 1}}"):
        steps = steps_for(op_yaml)
        out = apply_steps(rect_image(), steps)
        kept, _ = transform_boxes(boxes, steps_matrix(steps, (HEIGHT, WIDTH)), out.shape, 0.0)
        image = ImageBoxes(out.shape[1], out.shape[0], kept)
        for line in encode_boxes(AnnotationFormat("yolo"), image, "x.png", 3).decode().split("\n"):
            if line:
                cx, cy, w, h = map(float, line.split()[1:])
                assert cx - w / 2 >= -1e-9 and cx + w / 2 <= 1 + 1e-9, line
                assert cy - h / 2 >= -1e-9 and cy + h / 2 <= 1 + 1e-9, line


# --- reading and writing: lossless round trips ------------------------------------------------

def test_yolo_round_trip_is_lossless_and_uses_classes_txt(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n", encoding="utf-8")
    text = "0 0.40625 0.3333333333 0.3125 0.3333333333\n1 0.123456 0.654321 0.1 0.2\n"
    source = AnnotationSource(AnnotationSpec("yolo"), tmp_path)
    boxes = parse_yolo(text, "a.txt", (WIDTH, HEIGHT), source.format.classes)
    assert [box.label for box in boxes] == ["cat", "dog"]
    assert boxes[0].x0 == pytest.approx(20) and boxes[0].y1 == pytest.approx(30)
    written = encode_boxes(source.format, ImageBoxes(WIDTH, HEIGHT, boxes), "a.png", 3)
    assert written.decode() == text


def test_voc_round_trip_is_lossless(tmp_path):
    xml = """<annotation><filename>a.png</filename>
      <size><width>80</width><height>60</height><depth>3</depth></size>
      <object><name>cat</name><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>45</xmax>
      <ymax>30</ymax></bndbox></object>
      <object><name>dog &amp; co</name><bndbox><xmin>1.25</xmin><ymin>2.5</ymin>
      <xmax>79.999999</xmax><ymax>60</ymax></bndbox></object></annotation>"""
    boxes = parse_voc(xml, "a.xml", (WIDTH, HEIGHT))
    assert boxes == (Box("cat", 20, 10, 45, 30), Box("dog & co", 1.25, 2.5, 79.999999, 60))
    written = encode_boxes(AnnotationFormat("voc"), ImageBoxes(WIDTH, HEIGHT, boxes), "b.png", 3)
    assert parse_voc(written.decode(), "b.xml", (WIDTH, HEIGHT)) == boxes
    assert "<filename>b.png</filename>" in written.decode()
    assert "<xmin>20</xmin>" in written.decode() and "<xmax>79.999999</xmax>" in written.decode()


def test_regions_round_trip_is_lossless_in_custom_visions_shape():
    document = {"regions": [{"tagName": "cat", "left": 0.25, "top": 0.1666666667,
                             "width": 0.3125, "height": 0.3333333333},
                            {"tagName": "cup", "left": 0, "top": 0, "width": 1, "height": 1}]}
    boxes = parse_regions(json.dumps(document), "a.json", (WIDTH, HEIGHT))
    written = encode_boxes(AnnotationFormat("regions"), ImageBoxes(WIDTH, HEIGHT, boxes),
                           "a.png", 3)
    assert json.loads(written) == document


def coco_document():
    return {
        "info": {"description": "test"},
        "images": [{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT},
                   {"id": 2, "file_name": "sub/b.png", "width": WIDTH, "height": HEIGHT}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [20, 10, 25, 20], "area": 500,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0.5, 1.25, 10, 8.5],
             "area": 85, "iscrowd": 0}],
        "categories": [{"id": 3, "name": "dog", "supercategory": "pet"},
                       {"id": 7, "name": "cat", "supercategory": "pet"}],
    }


def test_coco_round_trip_is_lossless(tmp_path):
    document = coco_document()
    (tmp_path / "coco.json").write_text(json.dumps(document), encoding="utf-8")
    save(tmp_path / "a.png", rect_image())
    save(tmp_path / "sub" / "b.png", rect_image())
    source = AnnotationSource(AnnotationSpec("coco", tmp_path / "coco.json"), tmp_path)
    records = []
    for relative in ("a.png", "sub/b.png"):
        image = source.read(relative, tmp_path / relative)
        records.append({"output": relative, "size": [image.width, image.height],
                        "boxes": [box.to_record() for box in image.boxes]})
    source.finish_output(StoreSpec.of(tmp_path / "out").open(), records)
    assert json.loads((tmp_path / "out" / "coco.json").read_text("utf-8")) == document


# --- malformed annotations ----------------------------------------------------------------------

@pytest.mark.parametrize("text, where, reason", [
    ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n", 2,
     "expected 5 values (class cx cy w h) or an odd number >= 7"),
    ("cat 0.5 0.5 0.2 0.2\n", 1, "class must be a whole number"),
    ("0 0.5 nan 0.2 0.2\n", 1, "expected a finite number"),
    ("0 0.5 0.5 0 0.2\n", 1, "box has no area"),
    ("\n\n0 1.5 1.5 0.2 0.2\n", 3, "box lies outside the 80 x 60 image"),
    ("0 0.5 0.5 0.2 0.2 0.1\n", 1, "(a polygon: class x1 y1 x2 y2 x3 y3 ...), got 6"),
    ("0 0.1 0.1 0.2 0.1 0.3 0.1\n", 1, "polygon has no area"),
])
def test_malformed_yolo_lines_name_file_and_line(text, where, reason):
    with pytest.raises(AnnotationError) as caught:
        parse_yolo(text, "cats/tom.txt", (WIDTH, HEIGHT))
    assert str(caught.value).startswith(f"cats/tom.txt:{where}: ")
    assert reason in str(caught.value)


def test_malformed_json_and_xml_name_their_key_path_or_line():
    with pytest.raises(AnnotationError, match=r"^a.json: regions\[1\].left: expected a number"):
        parse_regions('{"regions": [{"tagName": "a", "left": 0, "top": 0, "width": 1, '
                      '"height": 1}, {"tagName": "a", "left": "x"}]}', "a.json", (8, 6))
    with pytest.raises(AnnotationError, match=r"^a.json:2: not valid JSON"):
        parse_regions('{"regions":\n [}', "a.json", (8, 6))
    with pytest.raises(AnnotationError, match=r"^a.xml: size: says 100 x 60 but the image"):
        parse_voc("<annotation><size><width>100</width><height>60</height></size>"
                  "</annotation>", "a.xml", (WIDTH, HEIGHT))
    with pytest.raises(AnnotationError, match=r"^a.xml: object\[0\].bndbox.ymax: missing"):
        parse_voc("<annotation><object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                  "<xmax>3</xmax></bndbox></object></annotation>", "a.xml", (WIDTH, HEIGHT))


@pytest.mark.parametrize("text, message", [
    ("cat\n\ndog\n", "classes.txt:2: empty class name"),
    ("cat\nca\x1bt\n", r"classes.txt:2: class name 'ca\x1bt' has control characters"),
    ("cat\ndog\ncat\n", "classes.txt:3: 'cat' is also the name of class 0"),
])
def test_a_classes_txt_that_cannot_name_classes_is_refused_by_line(tmp_path, text, message):
    (tmp_path / "classes.txt").write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        AnnotationSource(AnnotationSpec("yolo"), tmp_path)
    assert message in str(caught.value)


def test_no_file_or_an_empty_one_means_no_objects(tmp_path):
    save(tmp_path / "a.png", rect_image())
    save(tmp_path / "b.png", rect_image())
    (tmp_path / "b.txt").write_text("\n  \n", encoding="utf-8")
    source = AnnotationSource(AnnotationSpec("yolo"), tmp_path)
    assert source.read("a.png", tmp_path / "a.png") == ImageBoxes(WIDTH, HEIGHT, ())
    assert source.read("b.png", tmp_path / "b.png") == ImageBoxes(WIDTH, HEIGHT, ())


def test_sizes_follow_exif_orientation(tmp_path):
    picture = Image.fromarray(rect_image())
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(tmp_path / "phone.png", exif=exif)
    assert imagefiles.image_size(tmp_path / "phone.png") == (HEIGHT, WIDTH)


# --- recipes ----------------------------------------------------------------------------------

def test_recipe_annotations_key_is_validated_with_key_paths():
    with pytest.raises(RecipeError) as caught:
        parse_recipe({"annotations": {"format": "yolov", "min_visibilty": 0.5},
                      "variants": {"a": {"ops": ["fliplr"]}}})
    text = str(caught.value)
    assert "annotations.format: expected one of yolo, voc, coco, regions, masks, got 'yolov' " \
           "(did you mean 'yolo'?)" in text
    assert "annotations.min_visibilty: unknown key (did you mean 'min_visibility'?)" in text
    with pytest.raises(RecipeError, match=r"annotations.min_visibility: expected a number in "
                                          r"\[0, 1\]"):
        parse_recipe({"annotations": {"format": "voc", "min_visibility": 2},
                      "variants": {"a": {"ops": ["fliplr"]}}})


def test_elastic_is_refused_with_annotations_wherever_it_is():
    ops = ["fliplr", {"sometimes": {"p": 0.5, "ops": ["flipud"],
                                    "else": [{"elastic_transform": {"alpha": 5}}]}}]
    parse_recipe({"variants": {"a": {"ops": ops}}})  # fine without annotations
    with pytest.raises(RecipeError, match=r"variants.a.ops\[1\].sometimes.else\[0\].elastic: "
                                          "not with annotations: elastic moves each pixel"):
        parse_recipe({"annotations": {"format": "yolo"}, "variants": {"a": {"ops": ops}}})


def test_fingerprint_includes_annotations_and_is_unchanged_without_them(tmp_path):
    base = {"variants": {"a": {"ops": ["fliplr"]}}}
    plain = parse_recipe(base).fingerprint
    yolo = parse_recipe({**base, "annotations": {"format": "yolo"}}).fingerprint
    strict = parse_recipe({**base, "annotations": {"format": "yolo", "min_visibility": 0.9}})
    assert len({plain, yolo, strict.fingerprint}) == 3
    # Without annotations the fingerprint is what it was before they existed (at the same
    # output version), so output folders of earlier runs are still recognised as this
    # recipe's.
    decisive = {"variants": base["variants"], "format": None, "quality": None,
                "include_original": None, "seed": 0, "target_per_class": None, "profile": None,
                "output_version": 4}
    text = json.dumps(decisive, sort_keys=True, default=str)
    assert plain == hashlib.sha256(text.encode()).hexdigest()[:16]


# --- end to end ---------------------------------------------------------------------------------

YOLO_BOX = "0 0.40625 0.3333333333 0.3125 0.3333333333\n"  # RECT in an 80 x 60 image


def detection_set(tmp_path, fmt: str) -> Path:
    """Two class folders, one image each with RECT labelled, in ``fmt``; returns the recipe."""
    folder = tmp_path / "in"
    for tag in ("cats", "cups"):
        save(folder / tag / f"{tag[:-1]}.png", rect_image())
    if fmt == "yolo":
        (folder / "classes.txt").write_text("cats\ncups\n", encoding="utf-8")
        (folder / "cats" / "cat.txt").write_text(YOLO_BOX, encoding="utf-8")
        (folder / "cups" / "cup.txt").write_text("1" + YOLO_BOX[1:], encoding="utf-8")
    elif fmt == "voc":
        for tag in ("cats", "cups"):
            (folder / tag / f"{tag[:-1]}.xml").write_text(
                f"<annotation><object><name>{tag}</name><bndbox><xmin>20</xmin><ymin>10</ymin>"
                "<xmax>45</xmax><ymax>30</ymax></bndbox></object></annotation>", "utf-8")
    elif fmt == "regions":
        for tag in ("cats", "cups"):
            region = {"tagName": tag, "left": 0.25, "top": 1 / 6, "width": 0.3125,
                      "height": 1 / 3}
            (folder / tag / f"{tag[:-1]}.json").write_text(json.dumps({"regions": [region]}),
                                                           "utf-8")
    else:
        document = {"images": [{"id": 5, "file_name": "cats/cat.png"},
                               {"id": 9, "file_name": "cups/cup.png"}],
                    "annotations": [{"image_id": 5, "category_id": 1, "bbox": [20, 10, 25, 20]},
                                    {"image_id": 9, "category_id": 2, "bbox": [20, 10, 25, 20]}],
                    "categories": [{"id": 1, "name": "cats"}, {"id": 2, "name": "cups"}]}
        (tmp_path / "labels.json").write_text(json.dumps(document), "utf-8")
    path = ", path: labels.json" if fmt == "coco" else ""
    return write_recipe(tmp_path, f"""\
        input: in
        output: out
        include_original: true
        annotations: {{format: {fmt}{path}}}
        variants:
          flip: {{ops: [{{fliplr: {{p: 1}}}}]}}
          turn: {{ops: [{{rot90: {{k: 1}}}}]}}
    """)


def read_output_boxes(out: Path, fmt: str, image: str):
    """Boxes of one output image, read back with augcli's own reader."""
    spec = AnnotationSpec(fmt, out / "labels.json" if fmt == "coco" else None)
    return AnnotationSource(spec, out).read(image, out / image).boxes


@pytest.mark.parametrize("fmt", ["yolo", "voc", "regions", "coco"])
def test_run_writes_boxes_that_follow_each_output(tmp_path, fmt):
    recipe = detection_set(tmp_path, fmt)
    result = invoke("run", str(recipe), "-w", "1")
    assert result.exit_code == 0, result.output
    assert "objects cats: 1 -> 3" in result.output and "objects cups: 1 -> 3" in result.output
    out = tmp_path / "out"
    for tag in ("cats", "cups"):
        stem = f"{tag}/{tag[:-1]}"
        for name, expected in ((f"{stem}.png", RECT), (f"{stem}_flip_1.png", (35, 10, 60, 30)),
                               (f"{stem}_turn_1.png", (30, 20, 50, 45))):
            (box,) = read_output_boxes(out, fmt, name)
            assert box.label == tag
            assert np.allclose((box.x0, box.y0, box.x1, box.y1), expected, atol=1e-6), name
            assert np.allclose(expected, pixel_hull(imagefiles.read_image(out / name)))
    if fmt == "yolo":
        assert (out / "classes.txt").read_text("utf-8") == "cats\ncups\n"
        assert (out / "cats" / "cat.txt").read_text("utf-8") == YOLO_BOX  # the original's own
    if fmt == "voc":
        xml = (out / "cups" / "cup_turn_1.xml").read_text("utf-8")
        assert "<filename>cup_turn_1.png</filename>" in xml and "<width>60</width>" in xml
    if fmt == "coco":
        document = json.loads((out / "labels.json").read_text("utf-8"))
        assert [image["file_name"] for image in document["images"]] == [
            "cats/cat.png", "cats/cat_flip_1.png", "cats/cat_turn_1.png", "cups/cup.png",
            "cups/cup_flip_1.png", "cups/cup_turn_1.png"]
        assert [image["id"] for image in document["images"]] == [1, 2, 3, 4, 5, 6]
        assert [a["id"] for a in document["annotations"]] == [1, 2, 3, 4, 5, 6]
    record = next(r for r in read_manifest(out) if r["output"] == "cats/cat_turn_1.png")
    assert record["size"] == [60, 80] and record["dropped_boxes"] == []
    assert record["boxes"] == [{"label": "cats", "box": [30, 20, 50, 45]}]


def test_dropped_boxes_are_listed_in_the_manifest(tmp_path):
    save(tmp_path / "in" / "a.png", rect_image())
    # One box near the left edge (20 px wide), one in the middle.
    (tmp_path / "in" / "a.txt").write_text("0 0.125 0.5 0.25 0.2\n1 0.6 0.5 0.2 0.2\n", "utf-8")
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        annotations: {format: yolo}
        variants:
          half: {ops: [{translate: {x: [-0.125, -0.125], y: [0, 0]}}]}
          most: {ops: [{translate: {x: [-0.2, -0.2], y: [0, 0]}}]}
    """)
    report = run_recipe(recipe, workers=1)
    records = {r["output"]: r for r in read_manifest(tmp_path / "out")}
    half, most = records["a_half_1.png"], records["a_most_1.png"]
    assert [b["label"] for b in half["boxes"]] == ["0", "1"] and half["dropped_boxes"] == []
    assert half["boxes"][0]["box"] == [0, 24, 10, 36]
    assert [b["label"] for b in most["boxes"]] == ["1"]
    assert most["dropped_boxes"] == [{"label": "0", "box": [0, 24, 20, 36], "visibility": 0.2}]
    assert (tmp_path / "out" / "a_most_1.txt").read_text("utf-8").startswith("1 ")
    assert report.objects == {"0": (1, 1), "1": (1, 2)}


def test_a_malformed_line_skips_that_image_and_the_run_goes_on(tmp_path):
    recipe = detection_set(tmp_path, "yolo")
    (tmp_path / "in" / "cups" / "cup.txt").write_text(YOLO_BOX + "1 0.5 0.5\n", "utf-8")
    result = invoke("run", str(recipe), "-w", "1")
    assert result.exit_code == 1
    location = tmp_path / "in" / "cups" / "cup.txt"
    assert (f"{location}:2: expected 5 values (class cx cy w h) or an odd number >= 7 (a polygon: "
            "class x1 y1 x2 y2 x3 y3 ...), got 3 (cups/cup.png skipped)" in result.output)
    assert "1 failed" in result.output
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["cats/cat.png", "cats/cat_flip_1.png", "cats/cat_turn_1.png"]


def test_one_and_two_workers_write_identical_annotations(tmp_path):
    recipe = detection_set(tmp_path, "voc")
    for index in range(3):
        save(tmp_path / "in" / "cats" / f"more{index}.png", rect_image())
        (tmp_path / "in" / "cats" / f"more{index}.xml").write_text(
            "<annotation><object><name>cats</name><bndbox><xmin>20</xmin><ymin>10</ymin>"
            "<xmax>45</xmax><ymax>30</ymax></bndbox></object></annotation>", "utf-8")
    spin = recipe.read_text("utf-8") + "  spin: {copies: 2, ops: [{rotate: {degrees: 40}}]}\n"
    recipe.write_text(spin, "utf-8")
    run_recipe(recipe, output=tmp_path / "one", workers=1)
    run_recipe(recipe, output=tmp_path / "two", workers=2)

    def annotations(folder):
        return {p.relative_to(folder).as_posix(): p.read_bytes()
                for p in sorted(folder.rglob("*")) if p.suffix in (".xml", ".jsonl")}

    one = annotations(tmp_path / "one")
    assert len(one) == 5 * 5 + 1 and one == annotations(tmp_path / "two")


def test_a_profile_downscale_scales_the_boxes(tmp_path):
    save(tmp_path / "in" / "long.png", rect_image((1000, 5, 3000, 35), width=11000, height=40))
    (tmp_path / "in" / "long.xml").write_text(
        "<annotation><object><name>bar</name><bndbox><xmin>1000</xmin><ymin>5</ymin>"
        "<xmax>3000</xmax><ymax>35</ymax></bndbox></object></annotation>", "utf-8")
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        profile: custom-vision
        annotations: {format: voc}
        variants: {flip: {ops: [{fliplr: {p: 1}}]}}
    """)
    run_recipe(recipe, workers=1)
    (record,) = read_manifest(tmp_path / "out")
    width, height = record["conformed"]["size"]
    assert record["size"] == [width, height] and width <= 10240
    (box,) = read_output_boxes(tmp_path / "out", "voc", "long_flip_1.png")
    factor = width / 11000
    assert np.allclose((box.x0, box.x1), (8000 * factor, 10000 * factor))
    # 275:1 is padded to custom-vision's 25:1 first (11000 / 25 = 440 rows), then scaled
    left, top, right, bottom = record["conformed"]["aspect"]["pad"]
    assert (left, right, top, top + 40 + bottom) == (0, 0, 200, 440)
    assert np.allclose((box.y0, box.y1), (205 * height / 440, 235 * height / 440))


def test_balancing_counts_images_and_reports_objects_per_tag(tmp_path):
    recipe = detection_set(tmp_path, "regions")
    report = run_recipe(recipe, per_class=3, workers=1)  # the original, flip_1 and turn_1
    assert [(c.tag, c.before, c.after) for c in report.classes] == [("cats", 1, 3),
                                                                   ("cups", 1, 3)]
    assert report.object_lines() == ["objects cats: 1 -> 3", "objects cups: 1 -> 3"]


def test_dry_run_lists_objects_and_annotation_failures(tmp_path):
    recipe = detection_set(tmp_path, "regions")
    (tmp_path / "in" / "cups" / "cup.json").write_text("{}", "utf-8")
    result = invoke("run", str(recipe), "--dry-run")
    assert "objects cats: 1 in the sources" in result.output
    assert "cup.json: regions: expected" in result.output
    assert not (tmp_path / "out").exists()


# --- preview and check --------------------------------------------------------------------------

def test_preview_draws_each_box_on_its_tile(tmp_path):
    recipe_path = detection_set(tmp_path, "voc")  # whole-pixel boxes: edges land on known rows
    image = tmp_path / "in" / "cats" / "cat.png"
    sheet_path = make_preview(load_recipe(recipe_path), image, variant="turn", count=1,
                              output=tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(sheet_path))
    colour = BOX_COLOURS[0]  # the first label in sorted order
    scale = TILE_WIDTH / WIDTH
    original = sheet[LABEL_HEIGHT:, :TILE_WIDTH]
    top = round(RECT[1] * scale)
    edge = original[top, round(RECT[0] * scale) + 12: round(RECT[2] * scale) - 2]
    assert (edge == colour).all(axis=-1).mean() > 0.9
    turned = sheet[LABEL_HEIGHT:, TILE_WIDTH:]  # 60 x 80 scaled: the box is at x 30..50
    scale = TILE_WIDTH / HEIGHT
    left = round(30 * scale)
    column = turned[round(20 * scale) + 12: round(45 * scale) - 2, left]
    assert (column == colour).all(axis=-1).mean() > 0.9


def test_check_counts_objects_per_label(tmp_path):
    recipe = detection_set(tmp_path, "yolo")
    run_recipe(recipe, workers=1)
    out = tmp_path / "out"
    save(out / "cats" / "empty.png", rect_image((5, 5, 9, 9)))
    report = check_folder(out, "generic", "detection", AnnotationSpec("yolo"))
    assert [(r.tag, r.images, r.usable, r.objects) for r in report.tags] == [
        ("cats", 3, 3, 3), ("cups", 3, 3, 3)]
    assert report.ready and report.images == report.usable == 7
    assert [(f.path, f.kind) for f in report.findings] == [("cats/empty.png", "no-objects")]
    (out / "cups" / "cup.txt").write_text("7 0.5 0.5 0.1 0.1\n", "utf-8")
    result = invoke("check", str(out), "--task", "detection", "--profile",
                    "generic", "--annotations", "yolo")
    assert result.exit_code == 1, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("tag "))
    assert header.split()[:4] == ["tag", "images", "usable", "objects"]
    assert "cup.txt:1: class 7 is not in classes.txt" in result.output
    assert json.loads(invoke(
        "check", str(out), "--task", "detection", "--annotations", "yolo", "--json").output
    )["tags"][1]["objects"] == 2
    usage = invoke("check", str(out), "--annotations", "yolo")
    assert usage.exit_code == 2 and "--task detection" in usage.output
    coco = invoke("check", str(out), "--task", "detection",
                  "--annotations", "coco")
    assert coco.exit_code == 2 and "--annotations-path" in coco.output


def test_a_wrong_annotations_path_stops_the_run_before_any_work(tmp_path):
    recipe = detection_set(tmp_path, "voc")
    wrong = write_recipe(tmp_path, recipe.read_text("utf-8").replace(
        "{format: voc}", "{format: voc, path: labels}"), name="wrong.yaml")
    with pytest.raises(UsageError, match="no annotations found for any of the 2 images"):
        run_recipe(wrong, workers=1)
    assert not (tmp_path / "out").exists()


def test_images_that_would_share_an_annotation_file_are_refused(tmp_path):
    recipe = detection_set(tmp_path, "yolo")
    save(tmp_path / "in" / "cats" / "cat.jpg", rect_image())
    with pytest.raises(UsageError, match="cats/cat.jpg and cats/cat.png would both write "
                                         "cats/cat.txt"):
        run_recipe(recipe, workers=1)


def test_a_resumed_run_keeps_every_output_in_the_coco_file(tmp_path):
    recipe = detection_set(tmp_path, "coco")
    run_recipe(recipe, workers=1)
    out = tmp_path / "out"
    complete = (out / "labels.json").read_text("utf-8")
    (out / "cups" / "cup_turn_1.png").unlink()
    report = run_recipe(recipe, workers=1)
    assert (report.written, report.skipped) == (1, 5)
    assert (out / "labels.json").read_text("utf-8") == complete


def test_overwrite_removes_annotation_files_of_outputs_no_longer_made(tmp_path):
    recipe = detection_set(tmp_path, "regions")
    run_recipe(recipe, workers=1)
    assert (tmp_path / "out" / "cats" / "cat_turn_1.json").exists()
    smaller = write_recipe(tmp_path, recipe.read_text("utf-8").split("  turn:")[0],
                           name="smaller.yaml")
    run_recipe(smaller, workers=1, overwrite=True)
    assert not (tmp_path / "out" / "cats" / "cat_turn_1.json").exists()
    assert (tmp_path / "out" / "cats" / "cat_flip_1.json").exists()


def _parse_tsv(text, path, size, classes=(), classes_from=""):
    return tuple(Box(label, *map(float, edges)) for label, *edges in
                 (line.split("\t") for line in text.splitlines() if line))


def _write_tsv(image, filename, depth, classes=()):
    return "".join(f"{b.label}\t{b.x0:g}\t{b.y0:g}\t{b.x1:g}\t{b.y1:g}\n" for b in image.boxes)


def test_a_format_is_one_registration_for_recipes_run_and_check(tmp_path, monkeypatch):
    monkeypatch.setitem(formats.FORMATS, "tsv", formats.Format("tsv", "TSV", ".tsv", _parse_tsv,
                                                               _write_tsv))
    assert formats.names()[:4] == ("yolo", "voc", "coco", "regions")  # MODULES' order
    save(tmp_path / "in" / "a.png", rect_image())
    (tmp_path / "in" / "a.tsv").write_text("cat\t20\t10\t45\t30\n")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nannotations: {format: tsv}\n"
                                    "variants: {flip: {ops: [{fliplr: {p: 1}}]}}\n")
    assert run_recipe(recipe, workers=1).exit_code == 0
    # fliplr of edges 20..45 in an 80-wide image: 35..60
    assert (tmp_path / "out" / "a_flip_1.tsv").read_text() == "cat\t35\t10\t60\t30\n"
    assert pixel_hull(np.asarray(Image.open(tmp_path / "out" / "a_flip_1.png"))) == \
        (35, 10, 60, 30)
    help_text = invoke("check", "--help").output
    assert "yolo|voc|coco|regions|masks|tsv" in help_text
    report = check_folder(tmp_path / "out", task="detection",
                          annotations=AnnotationSpec("tsv"))
    assert report.annotations == "tsv"
    assert [(row.tag, row.objects) for row in report.tags] == [("cat", 1)]  # a_flip_1 only
