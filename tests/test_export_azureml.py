"""`augcli export --to azureml`: every split loads in Microsoft's own `mltable` package.

mltable (with azureml-dataprep) is the oracle: it reads the MLTable file and the JSONL
offline, turns image_url into a stream (None for a URL it cannot convert) and nulls a
field whose JSON type differs between lines. Expected boxes and polygons are computed here
from the numbers written into the source annotation files, never by augcli.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from augcli.cli import main

from .conftest import photo_like, save


def mltable():
    """The oracle, from the azureml-test extra: azureml-dataprep pins cloudpickle<3, which
    the distributed extra's Dask cannot use, so CI installs it in a venv of its own
    (pip install -e '.[azureml-test]'). The tests that need no reader run everywhere."""
    return pytest.importorskip("mltable", reason="the azureml-test extra is not installed")

PREFIX = ("azureml://subscriptions/0000/resourcegroups/rg/workspaces/ws/datastores/"
          "workspaceblobstore/paths/bloated")
HTTPS = "https://myaccount.blob.core.windows.net/images/bloated"


def export(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


def load(split):
    """The split as AutoML loads it: one row per line, image_url converted to a stream."""
    frame = mltable().load(str(split)).to_pandas_dataframe()
    assert frame["image_url"].notna().all(), "an image_url did not convert to a stream"
    return frame


def lines(split):
    return [json.loads(line) for line in
            (split / "annotations.jsonl").read_text(encoding="utf-8").splitlines()]


def check_types(rows, task):
    """One JSON type per field on every line, as the issue fixes them."""
    for row in rows:
        assert set(row) == {"image_url", "image_details", "label"}
        details = row["image_details"]
        assert isinstance(details["format"], str)
        assert type(details["width"]) is int and type(details["height"]) is int
        if task == "multiclass":
            assert isinstance(row["label"], str)
        elif task == "multilabel":
            assert all(isinstance(label, str) for label in row["label"])
        elif task == "segmentation":
            for item in row["label"]:
                assert set(item) == {"label", "isCrowd", "polygon"}
                assert isinstance(item["label"], str)
                assert type(item["isCrowd"]) is int and item["isCrowd"] in (0, 1)
                assert isinstance(item["polygon"], list) and item["polygon"]
                for ring in item["polygon"]:
                    assert len(ring) >= 6 and len(ring) % 2 == 0  # >= 3 points
                    assert all(type(v) is float and 0.0 <= v <= 1.0 for v in ring)
        else:
            for box in row["label"]:
                assert isinstance(box["label"], str)
                assert type(box["isCrowd"]) is int and box["isCrowd"] in (0, 1)
                for key in ("topX", "topY", "bottomX", "bottomY"):
                    assert type(box[key]) is float and 0.0 <= box[key] <= 1.0
                assert box["topX"] < box["bottomX"] and box["topY"] < box["bottomY"]


def pixels(box, width, height):
    return (box["topX"] * width, box["topY"] * height, box["bottomX"] * width,
            box["bottomY"] * height)


def ring_pixels(ring, width, height):
    return [value * (height if index % 2 else width) for index, value in enumerate(ring)]


def close(found, expected):
    return all(abs(a - b) <= 0.5 for a, b in zip(found, expected, strict=True))


def test_class_folders_export_as_multiclass_and_load_in_mltable(tmp_path):
    folder = tmp_path / "bloated"
    save(folder / "cats" / "tom.jpg", photo_like(40, 60, seed=1))
    save(folder / "cats" / "felix.png", photo_like(30, 50, seed=2))
    save(folder / "dogs" / "rex.bmp", photo_like(20, 70, seed=3))
    turned = Image.fromarray(photo_like(30, 80, seed=4))  # EXIF 6: decoded as 30 wide, 80 high
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.save(folder / "dogs" / "fido.jpg", exif=exif)

    result = export(folder, "--to", "azureml", "--task", "multiclass", "--image-url", PREFIX + "/")
    assert result.exit_code == 0, result.output
    split = folder / "azureml" / "train"
    assert (split / "MLTable").is_file()
    frame = load(split)
    assert len(frame) == 4
    rows = lines(split)
    check_types(rows, "multiclass")
    by_url = {row["image_url"]: row for row in rows}
    assert set(by_url) == {f"{PREFIX}/{name}" for name in
                           ("cats/felix.png", "cats/tom.jpg", "dogs/fido.jpg", "dogs/rex.bmp")}
    assert by_url[f"{PREFIX}/dogs/fido.jpg"]["image_details"] == \
        {"format": "jpg", "width": 30, "height": 80}
    assert by_url[f"{PREFIX}/cats/tom.jpg"]["label"] == "cats"
    assert sorted(frame["label"]) == ["cats", "cats", "dogs", "dogs"]


def test_the_same_picture_in_two_class_folders_is_one_multilabel_line(tmp_path):
    folder = tmp_path / "in"
    both = save(folder / "cats" / "pair.png", photo_like(seed=5))
    (folder / "dogs").mkdir()
    (folder / "dogs" / "pair.png").write_bytes(both.read_bytes())
    save(folder / "dogs" / "rex.png", photo_like(seed=6))
    out = tmp_path / "out"

    result = export(folder, "--to", "azureml", "--task", "multilabel", "--image-url", HTTPS,
                    "-o", out)
    assert result.exit_code == 0, result.output
    frame = load(out / "train")
    assert len(frame) == 2
    rows = lines(out / "train")
    check_types(rows, "multilabel")
    assert {row["image_url"]: row["label"] for row in rows} == {
        f"{HTTPS}/cats/pair.png": ["cats", "dogs"], f"{HTTPS}/dogs/rex.png": ["dogs"]}


def test_regions_with_several_tags_export_as_multilabel(tmp_path):
    folder = tmp_path / "in"
    save(folder / "a.jpg", photo_like(seed=1))
    save(folder / "b.jpg", photo_like(seed=2))
    regions = [{"tagName": "cup", "left": 0.1, "top": 0.1, "width": 0.2, "height": 0.2},
               {"tagName": "cat", "left": 0.5, "top": 0.5, "width": 0.3, "height": 0.3}]
    (folder / "a.json").write_text(json.dumps({"regions": regions}), encoding="utf-8")
    (folder / "b.json").write_text(json.dumps({"regions": regions[:1]}), encoding="utf-8")

    result = export(folder, "--to", "azureml", "--task", "multilabel", "--image-url", HTTPS,
                    "--annotations", "regions")
    assert result.exit_code == 0, result.output
    split = folder / "azureml" / "train"
    assert len(load(split)) == 2
    rows = lines(split)
    check_types(rows, "multilabel")
    assert [row["label"] for row in rows] == [["cat", "cup"], ["cup"]]


def test_a_yolo_data_yaml_dataset_exports_train_and_validation_with_its_boxes(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "data.yaml").write_text("train: train/images\nval: valid/images\n"
                                    "names: [cat, dog]\n", encoding="utf-8")
    sources = {  # image -> (size (w, h), YOLO lines)
        "train/images/a.jpg": ((64, 48), ["0 0.5 0.5 0.25 0.5", "1 0.125 0.2 0.25 0.3"]),
        "train/images/b.jpg": ((80, 60), ["1 0.6 0.4 0.3 0.2"]),
        "train/images/empty.jpg": ((64, 48), []),
        "valid/images/c.jpg": ((50, 40), ["0 0.3 0.7 0.4 0.2"]),
    }
    for name, ((width, height), text) in sources.items():
        save(root / name, photo_like(height, width, seed=len(name)))
        label = root / name.replace("images", "labels").replace(".jpg", ".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in text), encoding="utf-8")

    result = export(root, "--to", "azureml", "--task", "detection", "--image-url", PREFIX)
    assert result.exit_code == 0, result.output
    names = ("cat", "dog")
    for split, count in (("train", 3), ("validation", 1)):
        assert len(load(root / "azureml" / split)) == count
        rows = lines(root / "azureml" / split)
        check_types(rows, "detection")
        for row in rows:
            relative = row["image_url"][len(PREFIX) + 1:]
            (width, height), text = sources[relative]
            assert (row["image_details"]["width"], row["image_details"]["height"]) == \
                (width, height)
            expected = []
            for line in text:
                index, cx, cy, w, h = line.split()
                cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, \
                    float(h) * height
                expected.append((names[int(index)], (cx - w / 2, cy - h / 2, cx + w / 2,
                                                     cy + h / 2)))
            found = [(box["label"], pixels(box, width, height)) for box in row["label"]]
            assert len(found) == len(expected)
            for (label, box), (want_label, want) in zip(found, expected, strict=True):
                assert label == want_label and close(box, want)
    empty = [row for row in lines(root / "azureml" / "train")
             if row["image_url"].endswith("empty.jpg")]
    assert empty[0]["label"] == []  # background stays


def test_a_coco_set_keeps_iscrowd_as_an_integer_and_a_zero_corner_as_a_float(tmp_path):
    folder = tmp_path / "in"
    save(folder / "a.png", photo_like(48, 64, seed=1))
    save(folder / "b.png", photo_like(40, 50, seed=2))
    save(folder / "bg.png", photo_like(40, 50, seed=3))
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
                       {"id": 2, "file_name": "b.png", "width": 50, "height": 40},
                       {"id": 3, "file_name": "bg.png", "width": 50, "height": 40}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 32, 24],
                 "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 8, "bbox": [10.5, 5.25, 20, 30],
                 "iscrowd": 1},
                {"id": 3, "image_id": 2, "category_id": 7, "bbox": [25, 10, 25, 30]}],
            "categories": [{"id": 7, "name": "cat"}, {"id": 8, "name": "crowd"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")

    result = export(folder, "--to", "azureml", "--task", "detection", "--image-url", HTTPS,
                    "--annotations", "coco", "--annotations-path", tmp_path / "coco.json",
                    "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    split = tmp_path / "out" / "train"
    frame = load(split)
    assert len(frame) == 3
    rows = lines(split)
    check_types(rows, "detection")
    text = (split / "annotations.jsonl").read_text(encoding="utf-8")
    assert '"topX": 0.0' in text and '"isCrowd": 1' in text
    by_name = {row["image_url"].rsplit("/", 1)[1]: row for row in rows}
    assert by_name["bg.png"]["label"] == []
    for name, (width, height) in (("a.png", (64, 48)), ("b.png", (50, 40))):
        wanted = [(a["bbox"], a.get("iscrowd", 0)) for a in coco["annotations"]
                  if a["image_id"] == {"a.png": 1, "b.png": 2}[name]]
        for box, (bbox, crowd) in zip(by_name[name]["label"], wanted, strict=True):
            x, y, w, h = bbox
            assert close(pixels(box, width, height), (x, y, x + w, y + h))
            assert box["isCrowd"] == crowd
    # mltable reads the boxes back as numbers, none nulled for a type that varies
    for labels in frame["label"]:
        for box in labels:
            assert None not in (box["topX"], box["isCrowd"], box["label"])


@pytest.mark.parametrize(("prefix", "reason"), [
    ("azureml://datastores/workspaceblobstore/paths/bloated", "short azureml://datastores"),
    ("bloated", "relative path"),
    ("s3://bucket/bloated", "AutoML reads"),
])
def test_an_image_url_mltable_cannot_stream_is_refused(tmp_path, prefix, reason):
    save(tmp_path / "in" / "cats" / "a.png", photo_like())
    result = export(tmp_path / "in", "--to", "azureml", "--task", "multiclass",
                    "--image-url", prefix)
    assert result.exit_code == 2
    assert result.output.startswith("Error: --image-url") and reason in result.output
    assert not (tmp_path / "in" / "azureml").exists()


def test_an_az_folder_without_a_prefix_is_told_what_to_pass():
    result = export("az://images/bloated", "--to", "azureml", "--task", "multiclass")
    assert result.exit_code == 2
    assert "https://<account>.blob.core.windows.net/images/bloated" in result.output


def test_a_coco_polygon_set_exports_as_segmentation_and_loads_in_mltable(tmp_path):
    folder = tmp_path / "in"
    save(folder / "a.png", photo_like(48, 64, seed=1))
    save(folder / "b.png", photo_like(40, 50, seed=2))
    save(folder / "bg.png", photo_like(40, 50, seed=3))
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
                       {"id": 2, "file_name": "b.png", "width": 50, "height": 40},
                       {"id": 3, "file_name": "bg.png", "width": 50, "height": 40}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 32, 24],
                 "segmentation": [[0, 0, 32, 0, 16, 24]], "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 8, "bbox": [40, 10, 24, 38],
                 "segmentation": [[40, 10, 50, 10, 50, 20, 40, 20],
                                  [52.5, 30.25, 64, 30.25, 64, 48, 52.5, 48]],
                 "iscrowd": 1},
                {"id": 3, "image_id": 2, "category_id": 7, "bbox": [5.5, 4.75, 30, 30],
                 "segmentation": [[5.5, 4.75, 35.5, 10.1, 30.2, 34.75, 8.3, 20.6]]}],
            "categories": [{"id": 7, "name": "cat"}, {"id": 8, "name": "crowd"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")

    result = export(folder, "--to", "azureml", "--task", "segmentation", "--image-url", HTTPS,
                    "--annotations", "coco", "--annotations-path", tmp_path / "coco.json",
                    "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    split = tmp_path / "out" / "train"
    rows = lines(split)
    check_types(rows, "segmentation")
    text = (split / "annotations.jsonl").read_text(encoding="utf-8")
    assert '"polygon": [[0.0, 0.0, ' in text and '"isCrowd": 1' in text
    by_name = {row["image_url"].rsplit("/", 1)[1]: row for row in rows}
    assert by_name["bg.png"]["label"] == []
    names = {7: "cat", 8: "crowd"}
    for name, image_id, (width, height) in (("a.png", 1, (64, 48)), ("b.png", 2, (50, 40))):
        wanted = [a for a in coco["annotations"] if a["image_id"] == image_id]
        found = by_name[name]["label"]
        assert len(found) == len(wanted)
        for item, annotation in zip(found, wanted, strict=True):
            assert item["label"] == names[annotation["category_id"]]
            assert item["isCrowd"] == annotation.get("iscrowd", 0)
            assert len(item["polygon"]) == len(annotation["segmentation"])
            for ring, source in zip(item["polygon"], annotation["segmentation"], strict=True):
                assert close(ring_pixels(ring, width, height), source)
    frame = load(split)
    assert len(frame) == 3
    # mltable reads every polygon back as the numbers written, none nulled for a type that
    # varies between lines
    read = [[(item["label"], item["isCrowd"], [[float(v) for v in ring]
                                                 for ring in item["polygon"]])
             for item in labels] for labels in frame["label"]]
    assert read == [[(item["label"], item["isCrowd"], item["polygon"]) for item in row["label"]]
                    for row in rows]


def test_a_yolo_seg_folder_exports_as_segmentation(tmp_path):
    folder = tmp_path / "in"
    sources = {  # image -> (size (w, h), YOLO-seg lines)
        "a.jpg": ((64, 48), ["0 0.1 0.1 0.5 0.1 0.3 0.6", "1 0.6 0.5 0.9 0.5 0.9 0.9 0.6 0.9"]),
        "b.jpg": ((80, 60), ["1 0 0 1 0 1 1 0.5 0.75"]),
        "empty.jpg": ((64, 48), []),
    }
    for name, ((width, height), text) in sources.items():
        save(folder / name, photo_like(height, width, seed=len(name)))
        (folder / name).with_suffix(".txt").write_text("".join(line + "\n" for line in text),
                                                       encoding="utf-8")
    (folder / "classes.txt").write_text("cat\ndog\n", encoding="utf-8")

    result = export(folder, "--to", "azureml", "--task", "segmentation", "--image-url", PREFIX,
                    "--annotations", "yolo")
    assert result.exit_code == 0, result.output
    split = folder / "azureml" / "train"
    rows = lines(split)
    check_types(rows, "segmentation")
    assert len(rows) == 3
    for row in rows:
        (width, height), text = sources[row["image_url"][len(PREFIX) + 1:]]
        assert (row["image_details"]["width"], row["image_details"]["height"]) == \
            (width, height)
        assert len(row["label"]) == len(text)
        for item, line in zip(row["label"], text, strict=True):
            index, *coordinates = line.split()
            assert item["label"] == ("cat", "dog")[int(index)] and item["isCrowd"] == 0
            expected = ring_pixels([float(v) for v in coordinates], width, height)
            assert len(item["polygon"]) == 1
            assert close(ring_pixels(item["polygon"][0], width, height), expected)
    assert len(load(split)) == 3


def test_segmentation_needs_polygons_for_every_object_and_one_in_the_split(tmp_path):
    folder = tmp_path / "in"
    save(folder / "a.png", photo_like())
    result = export(folder, "--to", "azureml", "--task", "segmentation", "--image-url", HTTPS)
    assert result.exit_code == 2 and "needs polygons" in result.output
    (folder / "a.txt").write_text("", encoding="utf-8")
    result = export(folder, "--to", "azureml", "--task", "segmentation", "--image-url", HTTPS,
                    "--annotations", "yolo")
    assert result.exit_code == 2 and "not one object" in result.output
    save(folder / "b.png", photo_like(seed=2))
    (folder / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n", encoding="utf-8")  # a box
    save(folder / "c.png", photo_like(seed=3))
    (folder / "c.txt").write_text("0 0.1 0.1 0.5 0.1 0.3 0.6\n", encoding="utf-8")
    result = export(folder, "--to", "azureml", "--task", "segmentation", "--image-url", HTTPS,
                    "--annotations", "yolo")
    assert result.exit_code == 1
    assert "b.png: its '0' object is a box, not a polygon" in result.output
    assert [row["image_url"] for row in lines(folder / "azureml" / "train")] == \
        [f"{HTTPS}/a.png", f"{HTTPS}/c.png"]


def test_detection_without_boxes_or_without_any_object_is_a_usage_error(tmp_path):
    folder = tmp_path / "in"
    save(folder / "a.png", photo_like())
    result = export(folder, "--to", "azureml", "--task", "detection", "--image-url", HTTPS)
    assert result.exit_code == 2 and "--annotations FORMAT" in result.output
    (folder / "a.txt").write_text("", encoding="utf-8")
    save(folder / "b.png", photo_like(seed=2))
    (folder / "b.txt").write_text("", encoding="utf-8")
    result = export(folder, "--to", "azureml", "--task", "detection", "--image-url", HTTPS,
                    "--annotations", "yolo")
    assert result.exit_code == 2 and "not one object" in result.output


def test_a_broken_annotation_leaves_that_image_out_names_it_and_exits_1(tmp_path):
    folder = tmp_path / "in"
    for name in ("a", "b"):
        save(folder / f"{name}.png", photo_like(seed=len(name)))
    (folder / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n", encoding="utf-8")
    (folder / "b.txt").write_text("0 0.5 oops 0.2 0.2\n", encoding="utf-8")

    result = export(folder, "--to", "azureml", "--task", "detection", "--image-url", HTTPS,
                    "--annotations", "yolo")
    assert result.exit_code == 1
    assert "failed: " in result.output and "b.txt:1" in result.output
    assert [row["image_url"] for row in lines(folder / "azureml" / "train")] == \
        [f"{HTTPS}/a.png"]


def test_multiclass_refuses_an_image_outside_a_class_folder(tmp_path):
    folder = tmp_path / "in"
    save(folder / "cats" / "a.png", photo_like())
    save(folder / "loose.png", photo_like(seed=2))
    result = export(folder, "--to", "azureml", "--task", "multiclass", "--image-url", HTTPS)
    assert result.exit_code == 1 and "loose.png: not in a class folder" in result.output
    assert len(load(folder / "azureml" / "train")) == 1


def test_the_azureml_automl_profile_needs_10_images_and_refuses_gif(tmp_path):
    folder = tmp_path / "in"
    for index in range(9):
        save(folder / "cats" / f"{index}.png", photo_like(seed=index))
    result = CliRunner().invoke(main, ["check", str(folder), "--profile", "azureml-automl",
                                       "--task", "multiclass", "-w", "1", "-q"])
    assert result.exit_code == 1
    result = CliRunner().invoke(main, ["check", str(folder), "--profile", "azureml-automl",
                                       "--task", "multiclass", "-w", "1"])
    assert "under the minimum of 10" in result.output
    save(folder / "cats" / "9.png", photo_like(seed=9))
    save(folder / "cats" / "10.webp", photo_like(seed=10))
    result = CliRunner().invoke(main, ["check", str(folder), "--profile", "azureml-automl",
                                       "--task", "multiclass", "-w", "1"])
    assert result.exit_code == 1 and "webp is not accepted by azureml-automl" in result.output
    (folder / "cats" / "10.webp").unlink()
    result = CliRunner().invoke(main, ["check", str(folder), "--profile", "azureml-automl",
                                       "--task", "multiclass", "-w", "1"])
    assert result.exit_code == 0, result.output
    assert "Ready for azureml-automl" in result.output and "25 Sep 2028" not in result.output


def test_the_custom_vision_report_names_the_retirement_and_the_export(tmp_path):
    save(tmp_path / "in" / "cats" / "a.png", photo_like())
    result = CliRunner().invoke(main, ["check", str(tmp_path / "in"), "-w", "1"])
    assert "25 Sep 2028" in result.output and "augcli export DIR --to azureml" in result.output
