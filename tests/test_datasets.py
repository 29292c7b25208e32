"""Datasets as people have them: Ultralytics/Roboflow YOLO (data.yaml), COCO and VOC splits.

The outputs are read back the way the other tools read them: labels through
Ultralytics' own images -> labels rule (copied below from ultralytics.data.utils),
data.yaml through PyYAML, COCO and VOC files through json and ElementTree.
"""

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from augcli.runner import read_manifest, run_recipe

from .conftest import (
    folder_files,
    imgaug_or_skip,
    invoke,
    kill_when,
    photo_like,
    save,
    start_cli,
    write_recipe,
)

FLIP = "variants: {flip: {ops: [{fliplr: {p: 1}}]}}\n"


def img2label_paths(img_paths):
    """Ultralytics' rule (ultralytics/data/utils.py): /images/ -> /labels/, .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return [sb.join(x.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt" for x in img_paths]


def load_yolo_split(data_yaml: Path, split: str) -> dict:
    """Image path -> label rows, the way a YOLO trainer finds them from a data.yaml: the
    root is ``path`` (a relative one from the working folder) or else the data.yaml's
    folder (ultralytics.data.utils.check_det_dataset)."""
    data = yaml.safe_load(data_yaml.read_text())
    root = Path(data.get("path") or data_yaml.parent).resolve()
    folders = data[split] if isinstance(data[split], list) else [data[split]]
    images = sorted(str(p) for folder in folders for p in (root / folder).rglob("*")
                    if p.suffix in (".jpg", ".png"))
    rows = {}
    for image, label in zip(images, img2label_paths(images), strict=True):
        text = Path(label).read_text() if Path(label).exists() else ""
        rows[image] = [[float(v) for v in line.split()] for line in text.splitlines()]
    return rows


TRAIN_AND_VAL = "train: train/images\nval: valid/images\nnames: [cat, dog]\n"  # a data.yaml


def make_yolo_dataset(root: Path, layout="roboflow", data_yaml: str | None = None):
    """Two splits of a small YOLO dataset, with ``data_yaml`` as its data.yaml when given;
    returns {relative image: label text}."""
    labels = {"a.jpg": "0 0.25 0.5 0.2 0.4\n1 0.7 0.3 0.1 0.2\n", "b.png": "1 0.5 0.5 0.5 0.5\n",
              "c.jpg": "0 0.3 0.3 0.2 0.2\n"}
    splits = {"a.jpg": "train", "b.png": "train", "c.jpg": "valid"}
    written = {}
    for seed, (name, text) in enumerate(labels.items()):
        split = splits[name]
        folder = f"{split}/images" if layout == "roboflow" else f"images/{split}"
        save(root / folder / name, photo_like(48, 64, seed=seed), quality=95)
        label = root / img2label_paths([str(root / folder / name)])[0]
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(text)
        written[f"{folder}/{name}"] = text
    if data_yaml is not None:
        (root / "data.yaml").write_text(data_yaml)
    return written


@pytest.mark.slow
def test_a_roboflow_yolo_export_keeps_its_layout_and_only_train_is_augmented(tmp_path):
    source = tmp_path / "ds"
    make_yolo_dataset(source)
    (source / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cat', 'dog']\n"
        "roboflow:\n  workspace: me\n  version: 3\n")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nseed: 1\n" + FLIP)
    report = run_recipe(recipe, workers=2)
    out = tmp_path / "out"
    assert report.exit_code == 0 and report.written == 5  # a, b + their flips, c copied

    data = yaml.safe_load((out / "data.yaml").read_text())
    assert "path" not in data  # the root is the data.yaml's folder, wherever it is moved
    assert (data["train"], data["val"]) == ("train/images", "valid/images")
    assert data["names"] == ["cat", "dog"] and data["nc"] == 2
    assert data["roboflow"] == {"workspace": "me", "version": 3}

    got = folder_files(out)
    # the validation split is copied byte for byte, images and labels
    for relative in ("valid/images/c.jpg", "valid/labels/c.txt"):
        assert got[relative] == (source / relative).read_bytes()
    assert not any(name.startswith("valid/") and "_flip_" in name for name in got)
    # no label lands beside an image, nor a classes.txt: the data.yaml names the classes
    assert sorted(n for n in got if n.endswith(".txt")) == [
        "train/labels/a.txt", "train/labels/a_flip_1.txt", "train/labels/b.txt",
        "train/labels/b_flip_1.txt", "valid/labels/c.txt"]

    train = load_yolo_split(out / "data.yaml", "train")
    assert len(train) == 4
    flipped = train[str(out.resolve() / "train/images/a_flip_1.jpg")]
    original = train[str(out.resolve() / "train/images/a.jpg")]
    assert [row[0] for row in flipped] == [0, 1]
    for (_, cx, cy, w, h), (_, fx, fy, fw, fh) in zip(original, flipped, strict=True):
        assert (fx, fy, fw, fh) == pytest.approx((1 - cx, cy, w, h), abs=1e-9)
    assert len(load_yolo_split(out / "data.yaml", "val")) == 1


def test_images_split_layout_a_names_map_and_chosen_splits(tmp_path):
    source = tmp_path / "ds"
    make_yolo_dataset(source, layout="ultralytics")
    save(source / "images/test/d.jpg", photo_like(48, 64, seed=9), quality=95)
    (source / "coco.yaml").write_text(
        "path: .\ntrain: images/train\nval: [images/valid]\ntest: images/test\n"
        "names: {0: cat, 1: dog}\n")
    recipe = write_recipe(tmp_path, "output: out\nsplits: [train, valid]\n" + FLIP)
    result = invoke("run", str(recipe), "--input",
                    str(source / "coco.yaml"), "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    got = folder_files(out)
    assert "images/valid/c_flip_1.jpg" in got and "labels/valid/c_flip_1.txt" in got
    assert got["images/test/d.jpg"] == (source / "images/test/d.jpg").read_bytes()
    assert not any("test/d_" in name for name in got)
    data = yaml.safe_load((out / "coco.yaml").read_text())
    assert data["val"] == ["images/valid"] and data["names"] == {0: "cat", 1: "dog"}
    labels = load_yolo_split(out / "coco.yaml", "val")
    assert labels[str(out.resolve() / "images/valid/c_flip_1.jpg")] == \
        [[0, pytest.approx(0.7), pytest.approx(0.3), pytest.approx(0.2), pytest.approx(0.2)]]


@pytest.mark.parametrize("yaml_text, message", [
    ("train: train/images\nval: train/images\nnames: [cat, dog]\n", "share images"),
    ("train: train\nval: train/images\nnames: [cat, dog]\n", "share images"),
    ("train: train/images\nnames: [cat]\nnc: 2\n", "nc is 2 but names lists 1"),
    ("train: train/images\nnames: [cat, \"ca\\x1bt\\nx\"]\n",
     "names[1]: class name 'ca\\x1bt\\nx' has control characters"),
    ("train: train/images\nnames: [cat, dog, cat]\n",
     "names[2]: 'cat' is also the name of class 0"),
    ("train: train/images\nnames: " + "x" * 5000 + "\n", "(a str of 5,000 characters)"),
    ("train: train/images\nnames: {0: cat, 2: dog}\n", "class ids must be 0 to 1"),
    ("train: train/list.txt\nnames: [cat]\n", "lists of image files"),
    ("train: ../../elsewhere\nnames: [cat]\n", "is not a folder"),
    ("val: valid/images\nnames: [cat]\n", "train: missing"),
    ("train: [train/images\n", "not valid YAML"),
])
def test_a_broken_or_leaking_data_yaml_is_refused_before_any_work(tmp_path, yaml_text,
                                                                  message):
    make_yolo_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "data.yaml").write_text(yaml_text)
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + FLIP)
    result = invoke("run", str(recipe))
    assert result.exit_code == 2 and message in result.output
    assert "data.yaml" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_split_the_dataset_does_not_have_is_refused(tmp_path):
    make_yolo_dataset(tmp_path / "ds", data_yaml=TRAIN_AND_VAL)
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nsplits: [tain]\n" + FLIP)
    result = invoke("run", str(recipe), "--dry-run")
    assert result.exit_code == 2 and "no split 'tain'" in result.output
    assert "it has train, val" in result.output


def test_dry_run_names_the_splits(tmp_path):
    make_yolo_dataset(tmp_path / "ds", data_yaml=TRAIN_AND_VAL)
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + FLIP)
    result = invoke("run", str(recipe), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "splits train augmented; val copied unchanged" in result.output
    assert "valid/images/c.jpg: 1 outputs (original 1)" in result.output


def coco_split(folder: Path, names, annotations):
    images = []
    for i, name in enumerate(names, start=1):
        save(folder / name, photo_like(48, 64, seed=i), quality=95)
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
    document = {"info": {"description": "export"}, "images": images,
                "annotations": annotations,
                "categories": [{"id": 0, "name": "things", "supercategory": "none"},
                               {"id": 1, "name": "cat", "supercategory": "things"}]}
    (folder / "_annotations.coco.json").write_text(json.dumps(document, indent=1))


def test_roboflow_coco_splits_carry_iscrowd_and_attributes_and_copy_held_out_files(tmp_path):
    ds = tmp_path / "ds"
    coco_split(ds / "train", ["a.jpg"], [
        {"id": 7, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 30], "area": 600,
         "segmentation": [], "iscrowd": 0, "attributes": {"occluded": True}}])
    coco_split(ds / "valid", ["c.jpg"], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12,
         "segmentation": [], "iscrowd": 1}])
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nannotations: {format: coco}\n"
                                    "variants: {zoom: {ops: [{fliplr: {p: 1}}, "
                                    "{affine: {scale: 0.5}}]}}\n")
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out"
    assert (out / "valid/_annotations.coco.json").read_bytes() == \
        (ds / "valid/_annotations.coco.json").read_bytes()
    assert (out / "valid/c.jpg").read_bytes() == (ds / "valid/c.jpg").read_bytes()
    document = json.loads((out / "train/_annotations.coco.json").read_text())
    by_name = {image["file_name"]: image["id"] for image in document["images"]}
    assert set(by_name) == {"a.jpg", "a_zoom_1.jpg"}
    (zoomed,) = [a for a in document["annotations"] if a["image_id"] == by_name["a_zoom_1.jpg"]]
    # flip: x edges 10..30 -> 34..54; half size about the centre pixel (31.5, 23.5): edges
    # map as x -> 32 + (x - 32) / 2, y -> 24 + (y - 24) / 2: x 33..43, y 14.5..29.5
    assert zoomed["bbox"] == pytest.approx([33, 14.5, 10, 15])
    assert zoomed["area"] == pytest.approx(150)
    assert zoomed["iscrowd"] == 0 and zoomed["attributes"] == {"occluded": True}
    assert zoomed["segmentation"] == []
    assert document["categories"][1] == {"id": 1, "name": "cat", "supercategory": "things"}


def test_coco_without_a_path_is_judged_by_the_input_the_run_reads(tmp_path):
    ds = tmp_path / "ds"
    coco_split(ds / "train", ["a.jpg"], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 30], "area": 600}])
    coco_split(ds / "valid", ["c.jpg"], [])
    save(tmp_path / "plain" / "x.jpg", photo_like(48, 64))
    recipe = write_recipe(tmp_path, "input: plain\noutput: out\nannotations: {format: coco}\n"
                          + FLIP)
    # the recipe alone cannot tell: -i may name a dataset with a COCO file per split
    assert invoke("validate", str(recipe)).exit_code == 0
    split = invoke("run", str(recipe), "-i", str(ds), "--dry-run")
    assert split.exit_code == 0, split.output
    assert "train/a.jpg: 2 outputs" in split.output and "objects cat: 1" in split.output
    plain = invoke("run", str(recipe))
    assert plain.exit_code == 2 and "Traceback" not in plain.output
    assert "Error: annotations.path: required for coco" in plain.output
    assert not (tmp_path / "out").exists()


def test_coco_keypoints_travel_in_a_split_dataset(tmp_path):
    ds = tmp_path / "ds"
    coco_split(ds / "train", ["a.jpg"], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 30], "area": 600,
         "keypoints": [12, 8, 2, 20, 9, 1, 0, 0, 0], "num_keypoints": 2, "iscrowd": 0}])
    coco_split(ds / "test", ["c.jpg"], [])
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + FLIP)
    assert invoke("run", str(recipe)).exit_code == 0
    written = json.loads((tmp_path / "out" / "train" / "_annotations.coco.json").read_text())
    flipped = next(a for a in written["annotations"] if a["image_id"] == next(
        i["id"] for i in written["images"] if "_flip" in i["file_name"]))
    # 64 wide: x -> 64 - x; no left/right names, so no swap; the unlabelled point stays 0 0 0
    assert flipped["keypoints"] == [52, 8, 2, 44, 9, 1, 0, 0, 0]
    assert flipped["num_keypoints"] == 2 and flipped["bbox"] == [34, 5, 20, 30]


def test_coco_segmentation_polygons_travel_in_a_split_dataset(tmp_path):
    ds = tmp_path / "ds"
    coco_split(ds / "train", ["a.jpg"], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 30], "area": 300,
         "segmentation": [[10, 5, 30, 5, 30, 35]], "iscrowd": 0}])
    coco_split(ds / "test", ["c.jpg"], [])
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nannotations: {format: coco}\n"
                          + FLIP)
    assert run_recipe(recipe, workers=1).exit_code == 0
    document = json.loads((tmp_path / "out/train/_annotations.coco.json").read_text())
    by_name = {image["file_name"]: image["id"] for image in document["images"]}
    (flipped,) = [a for a in document["annotations"]
                  if a["image_id"] == by_name[next(n for n in by_name if n != "a.jpg")]]
    # 64 px wide: x -> 64 - x
    assert flipped["segmentation"] == [[54, 5, 34, 5, 34, 35]]
    assert flipped["bbox"] == [34, 5, 20, 30] and flipped["area"] == 300


def voc(name: str, objects: str) -> str:
    return (f"<annotation><filename>{name}</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{objects}</annotation>")


def test_voc_splits_keep_difficult_truncated_and_pose(tmp_path):
    ds = tmp_path / "ds"
    save(ds / "train/a.jpg", photo_like(seed=1), quality=95)
    (ds / "train/a.xml").write_text(voc("a.jpg", (
        "<object><name>cat</name><pose>Left</pose><truncated>1</truncated>"
        "<difficult>1</difficult><bndbox><xmin>10</xmin><ymin>5</ymin><xmax>30</xmax>"
        "<ymax>35</ymax></bndbox></object>"
        "<object><name>cat</name><pose>Unspecified</pose><truncated>0</truncated>"
        "<difficult>0</difficult><bndbox><xmin>40</xmin><ymin>5</ymin><xmax>50</xmax>"
        "<ymax>15</ymax></bndbox></object>")))
    save(ds / "valid/c.jpg", photo_like(seed=2), quality=95)
    (ds / "valid/c.xml").write_text(voc("c.jpg", "") + "\n<!-- as exported -->\n")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nannotations: {format: voc}\n"
                          + FLIP)
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out"
    assert (out / "valid/c.xml").read_bytes() == (ds / "valid/c.xml").read_bytes()
    objects = ET.parse(out / "train/a_flip_1.xml").getroot().findall("object")
    assert [(o.findtext("pose"), o.findtext("truncated"), o.findtext("difficult"))
            for o in objects] == [("Left", "1", "1"), ("Unspecified", "0", "0")]
    assert [float(objects[0].findtext(f"bndbox/{k}")) for k in ("xmin", "xmax")] == [34, 54]
    record = next(r for r in read_manifest(out) if r["output"] == "train/a_flip_1.jpg")
    assert record["boxes"][0]["extra"] == {"pose": "Left", "truncated": 1, "difficult": 1}
    assert "extra" not in record["boxes"][1]


def test_class_folders_in_splits_augment_train_only(tmp_path):
    ds = tmp_path / "ds"
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        save(ds / split / "cat" / "tom.png", photo_like(seed=seed))
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\ninclude_original: false\n"
                          + FLIP)
    assert run_recipe(recipe, workers=1).exit_code == 0
    got = folder_files(tmp_path / "out")
    assert sorted(n for n in got if n != "manifest.jsonl") == [
        "test/cat/tom.png", "train/cat/tom_flip_1.png", "val/cat/tom.png"]
    flipped = np.asarray(Image.open(tmp_path / "out" / "train/cat/tom_flip_1.png"))
    assert np.array_equal(flipped, photo_like(seed=1)[:, ::-1])


def test_preview_of_a_dataset_image_shows_what_run_writes_with_its_labels(tmp_path):
    from augcli.preview import _source_boxes, relative_to_input
    from augcli.recipe import load_recipe

    make_yolo_dataset(tmp_path / "ds", data_yaml=TRAIN_AND_VAL)
    recipe = load_recipe(write_recipe(tmp_path, "input: ds/data.yaml\noutput: out\n" + FLIP))
    image = tmp_path / "ds" / "train" / "images" / "a.jpg"
    assert relative_to_input(recipe, image).as_posix() == "train/images/a.jpg"
    source, _ = _source_boxes(recipe, Path("train/images/a.jpg"), image)
    assert [box.label for box in source.boxes] == ["cat", "dog"]
    result = invoke("preview", str(tmp_path / "recipe.yaml"), str(image),
                    "-n", "1", "-o", str(tmp_path / "sheet.png"))
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_a_killed_dataset_run_resumes_with_its_labels_accounted_for(tmp_path):
    # The source a worker was on when the run was killed has written some images and
    # labels (train/labels/...) that no record names yet: its "started" journal line does,
    # so the rerun takes them as its own (no stray-file refusal) and ends as a clean run.
    ds = tmp_path / "ds"
    save(ds / "train" / "images" / "big.jpg", photo_like(480, 640), quality=95)
    save(ds / "valid" / "images" / "v.jpg", photo_like(48, 64, seed=2), quality=95)
    for split, name in (("train", "big"), ("valid", "v")):
        (ds / split / "labels").mkdir(parents=True)
        (ds / split / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (ds / "data.yaml").write_text("train: train/images\nval: valid/images\nnames: [cat]\n")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nvariants:\n  a:\n    copies: 40\n"
                                    "    ops: [{affine: {rotate: 20}}, {dropout: {p: 0.1}}]\n")
    labels = tmp_path / "out" / "train" / "labels"
    kill_when(start_cli("run", recipe, "-w", 1, "-q", cwd=tmp_path),
              lambda: len(list(labels.glob("big_a_*.txt"))) >= 3)
    assert 3 <= len(list(labels.glob("big_a_*.txt"))) < 40
    result = invoke("run", str(recipe), "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    assert run_recipe(recipe, output=tmp_path / "clean", workers=1).exit_code == 0
    resumed, clean = folder_files(tmp_path / "out"), folder_files(tmp_path / "clean")
    for made in (resumed, clean):
        made.pop("manifest.jsonl")
        made.pop("data.yaml")  # its path is the output folder
    assert resumed == clean


def test_an_unreadable_folder_in_a_split_fails_its_images_and_the_rest_go_on(tmp_path,
                                                                           monkeypatch):
    ds = tmp_path / "ds"
    for split in ("train", "val"):
        save(ds / split / "cat" / "tom.png", photo_like(seed=1))
        save(ds / split / "dog" / "rex.png", photo_like(seed=2))
    scandir = os.scandir

    def refuse_train_dog(path):
        if Path(path) == ds / "train" / "dog":
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_train_dog)
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + FLIP)
    report = run_recipe(recipe, workers=1)
    assert report.exit_code == 1
    assert [path for path, _ in report.failures] == ["train/dog/"]
    assert sorted(n for n in folder_files(tmp_path / "out") if n != "manifest.jsonl") == [
        "train/cat/tom.png", "train/cat/tom_flip_1.png", "val/cat/tom.png", "val/dog/rex.png"]


def test_check_reads_a_yolo_dataset_by_the_images_to_labels_rule(tmp_path):
    # run writes a YOLO dataset (labels/ beside images/, names in data.yaml); check counts
    # its objects per label from there, not from .txt files beside the images.
    source = tmp_path / "ds"
    make_yolo_dataset(source)
    (source / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cat', 'dog']\n")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nseed: 1\n" + FLIP)
    assert run_recipe(recipe, workers=1).exit_code == 0
    result = invoke("check", str(tmp_path / "out"), "--profile", "generic",
                    "--task", "detection", "--annotations", "yolo",
                    "--json", "-w", "1")
    report = json.loads(result.output)
    rows = {row["tag"]: (row["images"], row["objects"]) for row in report["tags"]}
    # cat: a, its flip and c (valid); dog: a, b and their flips
    assert rows == {"cat": (3, 3), "dog": (4, 4)}
    assert not [f for f in report["findings"] if f["kind"] in ("bad-annotation", "no-objects")]


# --- labels the layout shows travel without annotations: in the recipe ------------------

MAGENTA = (255, 0, 255)
PAINTED = {"a.jpg": (50, 30, 80, 60), "b.jpg": (30, 20, 70, 44), "c.jpg": (60, 40, 90, 70)}
TURN = "variants: {turn: {ops: [{fliplr: {p: 1}}, {affine: {rotate: 30}}]}}\n"


def paint(path: Path, box) -> None:
    """A flat grey photo with a magenta rectangle exactly where ``box`` (pixel edges
    x0, y0, x1, y1) says, saved as an export saves it (JPEG)."""
    array = np.full((96, 128, 3), 128, np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = MAGENTA
    save(path, array, quality=95, subsampling=0)


def assert_paint_is_boxed(image: Path, box) -> None:
    """The output's label agrees with its pixels: the magenta's extent is the box (a
    rotated rectangle's hull), to the two pixels resampling and JPEG blur allow."""
    pixels = np.asarray(Image.open(image).convert("RGB")).astype(int)
    mask = (pixels[..., 0] > 180) & (pixels[..., 1] < 90) & (pixels[..., 2] > 180)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 100, image
    painted = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert painted == pytest.approx(box, abs=2.5), image


def yolo_box(label: Path, size=(128, 96)) -> tuple:
    (row,) = [line.split() for line in label.read_text().splitlines() if line.strip()]
    cx, cy, w, h = (float(v) for v in row[1:])
    width, height = size
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
            (cy + h / 2) * height)


def make_painted_dataset(root: Path, layout: str) -> list:
    """Train (a, b), valid (c) and, for COCO, test (c) as Roboflow or Ultralytics export
    them; returns the label files of the held-out splits (to be copied byte for byte)."""
    splits = {"train": ["a.jpg", "b.jpg"], "valid": ["c.jpg"]}
    if layout == "coco":
        splits["test"] = ["c.jpg"]
    held_out = []
    for split, names in splits.items():
        images = []
        for i, name in enumerate(names, start=1):
            x0, y0, x1, y1 = PAINTED[name]
            if layout in ("yolo", "data.yaml"):
                paint(root / split / "images" / name, PAINTED[name])
                label = root / split / "labels" / f"{Path(name).stem}.txt"
                label.parent.mkdir(exist_ok=True)
                label.write_text(f"0 {(x0 + x1) / 256} {(y0 + y1) / 192} {(x1 - x0) / 128} "
                                 f"{(y1 - y0) / 96}\n")
            elif layout == "voc":
                paint(root / split / name, PAINTED[name])
                label = root / split / f"{Path(name).stem}.xml"
                label.write_text(
                    f"<annotation><filename>{name}</filename><size><width>128</width>"
                    f"<height>96</height><depth>3</depth></size><object><name>cat</name>"
                    f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                    f"<ymax>{y1}</ymax></bndbox></object></annotation>")
            else:
                paint(root / split / name, PAINTED[name])
                images.append({"id": i, "file_name": name, "width": 128, "height": 96})
                label = root / split / "_annotations.coco.json"
            if split != "train":
                held_out.append(label)
        if layout == "coco":
            (root / split / "_annotations.coco.json").write_text(json.dumps({
                "images": images, "categories": [{"id": 0, "name": "cat"}],
                "annotations": [{"id": i, "image_id": i, "category_id": 0, "area": 1,
                                 "bbox": [PAINTED[image["file_name"]][0],
                                          PAINTED[image["file_name"]][1],
                                          PAINTED[image["file_name"]][2]
                                          - PAINTED[image["file_name"]][0],
                                          PAINTED[image["file_name"]][3]
                                          - PAINTED[image["file_name"]][1]]}
                                for i, image in enumerate(images, start=1)]}))
    if layout == "data.yaml":
        (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\n"
                                        "nc: 1\nnames: ['cat']\n")
    return sorted(set(held_out))


def voc_box(xml: Path) -> tuple:
    """The one object's box of a VOC file, in pixel edges."""
    box = ET.parse(xml).getroot().find("object/bndbox")
    return tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))


def coco_boxes(document: Path, folder: Path) -> dict:
    """Image -> its one box (pixel edges) from a COCO file, images named under ``folder``."""
    loaded = json.loads(document.read_text())
    names = {image["id"]: image["file_name"] for image in loaded["images"]}
    return {folder / names[a["image_id"]]: (a["bbox"][0], a["bbox"][1],
                                            a["bbox"][0] + a["bbox"][2],
                                            a["bbox"][1] + a["bbox"][3])
            for a in loaded["annotations"]}


def output_boxes(out: Path, layout: str) -> dict:
    """Output image -> its one box in pixel edges, read as each format's tools read it."""
    if layout in ("yolo", "data.yaml"):
        return {image: yolo_box(out / img2label_paths([str(image.relative_to(out))])[0])
                for image in sorted((out / "train/images").glob("*.jpg"))}
    if layout == "voc":
        return {image: voc_box(image.with_suffix(".xml"))
                for image in sorted((out / "train").glob("*.jpg"))}
    return coco_boxes(out / "train/_annotations.coco.json", out / "train")


@pytest.mark.parametrize("layout", ["data.yaml", "coco", "yolo", "voc"])
def test_labels_the_layout_shows_travel_with_the_pixels_without_annotations(tmp_path, layout):
    # Roboflow's COCO export (a _annotations.coco.json per split), YOLO split folders
    # without a data.yaml (train/images + train/labels), VOC (XML beside each image) and
    # a data.yaml: each output's label still boxes the magenta rectangle it was painted on.
    held_out = make_painted_dataset(tmp_path / "ds", layout)
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + TURN)
    result = invoke("run", str(recipe), "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    boxes = output_boxes(out, layout)
    assert sorted(image.name for image in boxes) == ["a.jpg", "a_turn_1.jpg", "b.jpg",
                                                     "b_turn_1.jpg"]
    for image, box in boxes.items():
        assert_paint_is_boxed(image, box)
    for label in held_out:
        relative = label.relative_to(tmp_path / "ds")
        assert (out / relative).read_bytes() == label.read_bytes()


def test_yolo_labels_beside_a_splits_images_travel_with_the_pixels(tmp_path):
    # split folders whose YOLO .txt sit beside the images (no labels/ folder): the same
    # detector as a plain folder's finds them, and every output's label boxes its paint
    make_painted_dataset(tmp_path / "ds", "yolo")
    for split in ("train", "valid"):
        for label in (tmp_path / "ds" / split / "labels").iterdir():
            label.rename(tmp_path / "ds" / split / "images" / label.name)
        (tmp_path / "ds" / split / "labels").rmdir()
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + TURN)
    assert invoke("run", str(recipe), "-w", "1", "-q").exit_code == 0
    images = sorted((tmp_path / "out/train/images").glob("*.jpg"))
    assert [image.name for image in images] == ["a.jpg", "a_turn_1.jpg", "b.jpg",
                                                "b_turn_1.jpg"]
    for image in images:
        assert_paint_is_boxed(image, yolo_box(image.with_suffix(".txt")))


@pytest.mark.parametrize("layout", ["data.yaml", "coco"])
@pytest.mark.parametrize("op, name", [
    ("{imgaug: {Affine: {rotate: 45}}}", "imgaug"),
    ("{elastic: {alpha: 30}}", "elastic"),
])
@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["validate"]])
def test_ops_labels_cannot_follow_are_refused_in_a_dataset_without_annotations(
        tmp_path, layout, op, name, command):
    if name == "imgaug":
        imgaug_or_skip()
    make_painted_dataset(tmp_path / "ds", layout)
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n"
                                    f"variants: {{ia: {{ops: [{op}]}}}}\n")
    result = invoke(*command, str(recipe))
    assert result.exit_code == 2, result.output
    assert f"variants.ia.ops[0].{name}: not with annotations" in result.output
    why = "is a YOLO dataset" if layout == "data.yaml" else \
        "'annotations: {format: coco}' is implied"
    assert why in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_split_folders_with_labels_of_two_formats_are_refused_naming_the_line(tmp_path):
    make_painted_dataset(tmp_path / "ds", "yolo")
    (tmp_path / "ds/valid/_annotations.coco.json").write_text('{"images": []}')
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + TURN)
    result = invoke("run", str(recipe))
    assert result.exit_code == 2, result.output
    assert "yolo (train/labels); coco (valid/_annotations.coco.json)" in result.output
    assert "add the line 'annotations: {format: yolo}' to the recipe" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", [".", None, "absolute"])
def test_the_output_data_yaml_loads_wherever_the_output_is_moved(tmp_path, monkeypatch, path):
    # Ultralytics takes the data.yaml's folder as the root when it has no path (and a
    # relative path from the working folder): the output names none, so a moved or
    # unzipped copy still finds its images and labels.
    path = str(tmp_path / "ds") if path == "absolute" else path
    make_yolo_dataset(tmp_path / "ds", data_yaml=(f"path: {path}\n" if path else "")
                      + TRAIN_AND_VAL)
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + FLIP)
    assert invoke("run", str(recipe), "-w", "1", "-q").exit_code == 0
    (tmp_path / "moved").mkdir()
    moved = tmp_path / "moved" / "fruit_aug"
    (tmp_path / "out").rename(moved)
    monkeypatch.chdir(tmp_path / "moved")
    assert "path" not in yaml.safe_load((moved / "data.yaml").read_text())
    train = load_yolo_split(moved / "data.yaml", "train")
    assert sorted(Path(image).name for image in train) == ["a.jpg", "a_flip_1.jpg", "b.png",
                                                           "b_flip_1.png"]
    assert all(rows for rows in train.values())
    assert list(load_yolo_split(moved / "data.yaml", "val").values()) == \
        [[[0, 0.3, 0.3, 0.2, 0.2]]]


def test_a_test_folder_that_does_not_exist_is_left_out_with_a_note(tmp_path):
    # Roboflow's data.yaml names ../test/images even when the export has no test split;
    # Ultralytics needs only train and val, and trains on it.
    make_yolo_dataset(tmp_path / "ds", data_yaml="train: ../train/images\n"
                      "val: ../valid/images\ntest: ../test/images\nnames: [cat, dog]\n")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\n" + FLIP)
    dry = invoke("run", str(recipe), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "note: " in dry.output and "test: ../test/images does not exist" in dry.output
    result = invoke("run", str(recipe), "-w", "1")
    assert result.exit_code == 0, result.output
    assert "note: " in result.output and "test: ../test/images does not exist" in result.output
    out = tmp_path / "out"
    assert yaml.safe_load((out / "data.yaml").read_text())["test"] == "../test/images"
    assert len(load_yolo_split(out / "data.yaml", "train")) == 4
    assert not (out / "test").exists()


# --- a plain folder's label files are never left behind without a word -------------------

def make_painted_folder(root: Path, layout: str) -> Path:
    """A plain folder (no splits) of painted images with their labels beside them, as a
    YOLO, VOC or COCO export of one split is laid out."""
    made = {"images-labels": "yolo", "voc-devkit": "voc"}.get(layout, layout)
    make_painted_dataset(root / "ds", made)
    folder = root / "labelled"
    if layout == "voc-devkit":  # Pascal VOC's own: JPEGImages/ beside Annotations/
        for path in (root / "ds/train").iterdir():
            kind = "Annotations" if path.suffix == ".xml" else "JPEGImages"
            (folder / kind).mkdir(parents=True, exist_ok=True)
            path.rename(folder / kind / path.name)
    elif layout == "yolo":  # labels beside their images, Ultralytics' rule without 'images'
        folder.mkdir()
        for path in [*(root / "ds/train/images").iterdir(), *(root / "ds/train/labels").iterdir()]:
            path.rename(folder / path.name)
    else:
        (root / "ds/train").rename(folder)
    return folder


def plain_output_boxes(out: Path, layout: str) -> dict:
    """Output image -> its one box, read from the labels written beside a plain folder's
    outputs (a COCO file: the one at its top)."""
    images = sorted(out.glob("*.jpg"))
    if layout in ("yolo", "images-labels"):
        return {image: yolo_box(image.with_suffix(".txt")) for image in images}
    if layout in ("voc", "voc-devkit"):
        return {image: voc_box(image.with_suffix(".xml")) for image in images}
    (document,) = out.glob("*.json")
    return coco_boxes(document, out)


@pytest.mark.parametrize("layout", ["yolo", "voc", "coco", "images-labels", "voc-devkit"])
def test_a_plain_folder_with_labels_beside_its_images_is_refused_naming_the_line(tmp_path,
                                                                                layout):
    # The rule for every layout: an input whose label files augcli can see is never
    # augmented into outputs without them, unless the recipe says so.
    folder = make_painted_folder(tmp_path, layout)
    recipe = write_recipe(tmp_path, f"input: {folder.name}\noutput: out\n" + TURN)
    for command in (["run"], ["run", "--dry-run"]):
        result = invoke(*command, str(recipe))
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        fmt = {"images-labels": "yolo", "voc-devkit": "voc"}.get(layout, layout)
        assert f"looks like {fmt} labels" in result.output
        assert "or 'annotations: none' to augment the images alone" in result.output
    assert not (tmp_path / "out").exists()
    # the line the refusal names carries the labels, and they agree with the paint
    lines = re.search(r"give the recipe '(.+?)' to carry", result.output).group(1)
    lines = lines.split("' and '")  # an input folder too, for images/ beside labels/
    if not lines[0].startswith("input:"):
        lines.insert(0, f"input: {folder.name}")
    recipe.write_text("\n".join(lines) + "\noutput: out\n" + TURN)
    result = invoke("run", str(recipe), "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    boxes = plain_output_boxes(tmp_path / "out", layout)
    assert sorted(image.name for image in boxes) == ["a_turn_1.jpg", "b_turn_1.jpg"]
    for image, box in boxes.items():
        assert_paint_is_boxed(image, box)


def test_labels_in_a_layout_no_recipe_can_name_are_refused_not_dropped(tmp_path):
    # the XML files mirror no folder of the images: annotations.path cannot find them
    make_painted_dataset(tmp_path / "ds", "voc")
    for path in (tmp_path / "ds/train").iterdir():
        folder = "anno" if path.suffix == ".xml" else f"imgs/{path.stem}"
        (tmp_path / "in" / folder).mkdir(parents=True, exist_ok=True)
        path.rename(tmp_path / "in" / folder / path.name)
    recipe = write_recipe(tmp_path, "input: in\noutput: out\n" + TURN)
    result = invoke("run", str(recipe))
    assert result.exit_code == 2, result.output
    assert "laid out in a way augcli cannot read" in result.output
    assert "in/anno/a.xml looks like voc labels" in result.output
    assert not (tmp_path / "out").exists()
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nannotations: none\n" + TURN)
    assert invoke("run", str(recipe), "-q").exit_code == 0


def test_mask_images_beside_their_images_are_refused_not_augmented_as_images(tmp_path):
    # Roboflow's semantic-segmentation export: a.jpg beside a_mask.png (class ids)
    for name in ("a", "b"):
        save(tmp_path / "in" / f"{name}.jpg", photo_like(40, 60))
        labels = np.zeros((40, 60), np.uint8)
        labels[5:20, 10:30] = 1
        save(tmp_path / "in" / f"{name}_mask.png", labels)
    recipe = write_recipe(tmp_path, "input: in\noutput: out\n" + FLIP)
    result = invoke("run", str(recipe))
    assert result.exit_code == 2, result.output
    assert "in/a_mask.png looks like masks labels" in result.output
    assert "'annotations: {format: masks}'" in result.output
    assert not (tmp_path / "out").exists()
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nannotations: {format: masks}\n"
                          + FLIP)
    assert invoke("run", str(recipe), "-q").exit_code == 0
    written = sorted(path.name for path in (tmp_path / "out").glob("*.png"))
    assert written == ["a_flip_1_mask.png", "b_flip_1_mask.png"]
    flipped = np.asarray(Image.open(tmp_path / "out" / "a_flip_1_mask.png"))
    assert flipped[5:20, 30:50].all() and not flipped[5:20, 10:30].any()


def test_annotations_none_augments_the_images_alone_on_purpose(tmp_path):
    folder = make_painted_folder(tmp_path, "yolo")
    recipe = write_recipe(tmp_path, f"input: {folder.name}\noutput: out\nannotations: none\n"
                          + TURN)
    assert invoke("validate", str(recipe)).exit_code == 0
    result = invoke("run", str(recipe), "-q")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "a_turn_1.jpg", "b_turn_1.jpg", "manifest.jsonl"]


def test_captions_beside_images_are_not_taken_for_labels(tmp_path):
    # text-to-image sets keep a caption beside each image: not labels augcli could carry
    save(tmp_path / "in" / "a.jpg", photo_like(48, 64))
    (tmp_path / "in" / "a.txt").write_text("a photo of a cat on a sofa, 3 cushions\n")
    (tmp_path / "in" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no image b: a stray
    recipe = write_recipe(tmp_path, "input: in\noutput: out\n" + FLIP)
    result = invoke("run", str(recipe), "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a_flip_1.jpg").exists()


def test_annotations_none_leaves_split_folders_labels_out_but_not_a_data_yaml(tmp_path):
    make_painted_dataset(tmp_path / "ds", "voc")
    recipe = write_recipe(tmp_path, "input: ds\noutput: out\nannotations: none\n" + TURN)
    result = invoke("run", str(recipe), "-q")
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "out" / "train").glob("*.xml"))
    make_painted_dataset(tmp_path / "yds", "data.yaml")
    recipe = write_recipe(tmp_path, "input: yds\noutput: yout\nannotations: none\n" + TURN)
    result = invoke("run", str(recipe))
    assert result.exit_code == 2 and "annotations: none" in result.output, result.output
    assert "is a YOLO dataset" in result.output and not (tmp_path / "yout").exists()
