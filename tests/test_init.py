"""``augcli init FOLDER``: the starter recipe it writes loads, dry-runs and runs on each
layout a user brings, carrying the labels that layout shows (issue 25, item 17)."""

import shutil
from pathlib import Path

import pytest
import yaml

from augcli.recipe import load_recipe

from .conftest import REPO, invoke, photo_like, save
from .test_datasets import (
    assert_paint_is_boxed,
    make_painted_dataset,
    output_boxes,
    plain_output_boxes,
)


def init(folder: Path, recipe: Path, *flags):
    return invoke("init", folder, "-o", recipe, *flags)


def dry_run(recipe: Path):
    return invoke("run", recipe, "--dry-run")


@pytest.mark.parametrize(("layout", "fmt", "found"), [
    ("data.yaml", "yolo", "a YOLO dataset (data.yaml; splits train, val)"),
    ("coco", "coco", "a dataset with coco labels (splits train, valid, test)"),
    ("yolo", "yolo", "a dataset with yolo labels (splits train, valid)"),
    ("voc", "voc", "a dataset with voc labels (splits train, valid)"),
])
def test_a_dataset_gets_its_splits_and_labels_and_the_recipe_runs(tmp_path, layout, fmt, found):
    # Roboflow's and Ultralytics' exports: the recipe names the labels, and every output's
    # label still boxes the rectangle painted on its pixels.
    make_painted_dataset(tmp_path / "ds", layout)
    recipe = tmp_path / "recipe.yaml"
    result = init(tmp_path / "ds", recipe)
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'ds'}: {found}" in result.output
    document = yaml.safe_load(recipe.read_text())
    assert document["input"] == "ds" and document["output"] == "ds_aug"
    assert document["splits"] == ["train"] and document["annotations"] == {"format": fmt}
    assert load_recipe(recipe).annotations.format == fmt
    assert dry_run(recipe).exit_code == 0
    assert invoke("run", recipe, "-w", 1, "-q").exit_code == 0
    boxes = output_boxes(tmp_path / "ds_aug", layout)
    assert len(boxes) == 2 * 7  # a and b: the original and 6 outputs each
    for image, box in boxes.items():
        assert_paint_is_boxed(image, box)


def yolo_beside(train: Path) -> None:
    """YOLO .txt files beside the images (no images/ and labels/ folders)."""
    for label in (train / "labels").glob("*.txt"):
        label.rename(train / "images" / label.name)
    (train / "labels").rmdir()


def voc_devkit(train: Path) -> None:
    """Pascal VOC's own layout: JPEGImages/ beside Annotations/."""
    for path in list(train.iterdir()):
        kind = "Annotations" if path.suffix == ".xml" else "JPEGImages"
        (train / kind).mkdir(exist_ok=True)
        path.rename(train / kind / path.name)


@pytest.mark.parametrize(("layout", "prepare", "annotations", "input_"), [
    ("voc", None, {"format": "voc"}, "train"),
    ("coco", None, {"format": "coco", "path": "train/_annotations.coco.json"}, "train"),
    ("coco", lambda train: (train / "_annotations.coco.json").rename(train / "instances.json"),
     {"format": "coco", "path": "train/instances.json"}, "train"),
    ("yolo", None, {"format": "yolo", "path": "train/labels"}, "train/images"),
    ("yolo", yolo_beside, {"format": "yolo"}, "train/images"),
    ("voc", voc_devkit, {"format": "voc", "path": "train/Annotations"}, "train/JPEGImages"),
], ids=["voc", "coco-roboflow-name", "coco-other-name", "yolo-images-labels", "yolo-beside",
        "voc-devkit"])
def test_a_folder_with_labels_gets_its_annotations_block_and_the_labels_travel(
        tmp_path, layout, prepare, annotations, input_):
    make_painted_dataset(tmp_path / "ds", layout)
    train = tmp_path / "ds" / "train"
    shutil.rmtree(tmp_path / "ds" / "valid")
    shutil.rmtree(tmp_path / "ds" / "test", ignore_errors=True)
    if prepare:
        prepare(train)
    folder = train / "images" if prepare is yolo_beside else train
    recipe = tmp_path / "ds" / "recipe.yaml"
    result = init(folder, recipe)
    assert result.exit_code == 0, result.output
    assert "a detection folder" in result.output and "(detection)" in result.output
    document = yaml.safe_load(recipe.read_text())
    assert document["annotations"] == annotations and document["input"] == input_
    assert load_recipe(recipe).annotations.format == annotations["format"]
    assert dry_run(recipe).exit_code == 0
    assert invoke("run", recipe, "-w", 1, "-q").exit_code == 0
    out = tmp_path / "ds" / document["output"]
    boxes = plain_output_boxes(out, annotations["format"])
    assert len(boxes) == 2 * 6
    for image, box in boxes.items():
        assert_paint_is_boxed(image, box)


def test_class_folders_are_classification_and_the_printed_commands_run(tmp_path, monkeypatch):
    shutil.copytree(REPO / "sample_images", tmp_path / "sample_images")
    monkeypatch.chdir(tmp_path)
    result = invoke("init", "sample_images")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "sample_images: a classification folder (2 class folders: cat, cup)"
    assert lines[1:] == ["wrote recipe.yaml (classification); next:",
                         "  augcli preview recipe.yaml sample_images/cat/chelsea.jpg",
                         "  augcli run recipe.yaml --dry-run", "  augcli run recipe.yaml"]
    text = Path("recipe.yaml").read_text()
    assert "annotations" not in yaml.safe_load(text)
    assert "'augcli ops' lists them all" in text  # the comments point to the catalog
    for line in lines[2:4]:
        command = line.split()[1:]
        assert invoke(*command).exit_code == 0, line
    assert Path("preview.png").is_file() and not Path("sample_images_aug").exists()


@pytest.mark.parametrize("layout", ["flat", "splits"])
def test_a_flat_folder_is_plain_and_class_splits_a_dataset_without_labels(tmp_path, layout):
    names = ["a.jpg", "b.png"] if layout == "flat" else \
        ["train/cat/a.jpg", "train/dog/b.png", "val/cat/c.jpg"]
    for seed, name in enumerate(names):
        save(tmp_path / "photos" / name, photo_like(seed=seed))
    recipe = tmp_path / "recipe.yaml"
    result = init(tmp_path / "photos", recipe)
    assert result.exit_code == 0, result.output
    kind, found = ("plain", "a folder of 2 images") if layout == "flat" else \
        ("dataset", "a classification dataset (splits train, val, class folders in each)")
    assert f"{found}\nwrote {recipe} ({kind})" in result.output
    loaded = load_recipe(recipe)
    assert loaded.annotations is None and [v.name for v in loaded.variants] == \
        ["flip", "geometry", "colour"]
    plan = dry_run(recipe)
    # flat: 6 outputs each; splits: train's 2 images and 6 outputs each, val's copied
    outputs = 12 if layout == "flat" else 15
    assert plan.exit_code == 0 and f"sources -> {outputs} outputs" in plan.output


def test_an_existing_recipe_is_kept_unless_force(tmp_path):
    shutil.copytree(REPO / "sample_images", tmp_path / "sample_images")
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("# edited by hand\n")
    refused = init(tmp_path / "sample_images", recipe)
    assert refused.exit_code == 2
    assert refused.output == f"Error: {recipe} exists; pass --force to replace it, or -o " \
                             "another file\n"
    assert recipe.read_text() == "# edited by hand\n"
    assert init(tmp_path / "sample_images", recipe, "--force").exit_code == 0
    assert load_recipe(recipe).input == tmp_path / "sample_images"


def test_a_missing_folder_a_file_or_an_empty_folder_is_refused_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder")
    for path, says in [(tmp_path / "nosuch", "no such folder"), (tmp_path / "notes.txt",
                                                                 "is a file"),
                       (tmp_path / "empty", "no images found")]:
        result = init(path, tmp_path / "recipe.yaml")
        assert result.exit_code == 2, path
        assert len(result.output.splitlines()) == 1 and str(path) in result.output
        assert says in result.output
    assert not (tmp_path / "recipe.yaml").exists()


@pytest.mark.slow
def test_an_object_store_prefix_gets_a_recipe_that_reads_it_there(servers, tmp_path):
    # a labelled folder on S3: the recipe names the prefix and an output prefix beside it
    # (URLs as they are), the labels it shows, and the run reads and writes there
    from .test_cluster import new_bucket

    s3 = servers.s3()
    bucket = new_bucket(s3)
    make_painted_dataset(tmp_path / "ds", "voc")
    for path in sorted((tmp_path / "ds" / "train").iterdir()):
        s3.pipe_file(f"{bucket}/shelf/{path.name}", path.read_bytes())
    recipe = tmp_path / "recipe.yaml"
    result = init(f"s3://{bucket}/shelf", recipe)
    assert result.exit_code == 0, result.output
    assert f"s3://{bucket}/shelf: a detection folder (voc labels: a.xml)" in result.output
    document = yaml.safe_load(recipe.read_text())
    assert document["input"] == f"s3://{bucket}/shelf"
    assert document["output"] == f"s3://{bucket}/shelf_aug"
    assert document["annotations"] == {"format": "voc"}
    assert invoke("run", recipe, "-q").exit_code == 0
    written = sorted(name.rsplit("/", 1)[1] for name in s3.find(f"{bucket}/shelf_aug"))
    assert "a_flip_1.jpg" in written and "a_flip_1.xml" in written
