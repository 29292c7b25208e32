"""Detection datasets on object stores: a YOLO data.yaml dataset, COCO files and flat
YOLO labels in an S3 bucket (moto's server) augmented into another bucket give the
bytes (images, labels, data.yaml, COCO files) and records of the same run between
local folders. Every run is a CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from augcli.cli import main
from augcli.runner import read_manifest

from .conftest import folder_files, output_files, photo_like, save, write_recipe
from .test_cluster import comparable, new_bucket, store_files
from .test_datasets import TRAIN_AND_VAL, coco_split, make_yolo_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

RECIPE = """\
    seed: 5
    variants:
      turn:
        copies: 2
        ops:
          - fliplr: {p: 0.5}
          - affine: {rotate: [-15, 15], scale: [0.8, 1.1]}
"""


def run(recipe: Path, source, output, *options: str) -> None:
    result = CliRunner().invoke(main, ["run", str(recipe), "-i", str(source), "-o", str(output),
                                       "-q", *options])
    assert result.exit_code == 0, result.output


def assert_same_run(s3, bucket_output: str, folder: Path) -> None:
    """The objects under ``bucket_output`` (``bucket/prefix``) and their records are the
    folder's, byte for byte."""
    expected = output_files(folder)
    got = store_files(s3, bucket_output)
    assert sorted(got) == sorted(expected)
    assert got == expected
    assert comparable(read_manifest(f"s3://{bucket_output}")) == \
        comparable(read_manifest(folder))


@pytest.mark.slow
def test_a_yolo_data_yaml_dataset_from_s3_on_a_local_cluster_gives_the_folder_bytes(
        servers, tmp_path):
    source = tmp_path / "ds"
    make_yolo_dataset(source, data_yaml="path: .\n" + TRAIN_AND_VAL.replace(
        "train/images", "../train/images"))
    recipe = write_recipe(tmp_path, RECIPE)
    run(recipe, source, tmp_path / "local", "-w", "1")
    local = folder_files(tmp_path / "local")
    assert "data.yaml" in local and "valid/labels/c.txt" in local
    assert "train/labels/a_turn_2.txt" in local and "valid/images/c_turn_1.jpg" not in local

    s3 = servers.s3()
    bucket, out = new_bucket(s3), new_bucket(s3)
    s3.put(f"{source}/", f"{bucket}/ds/", recursive=True)
    run(recipe, f"s3://{bucket}/ds", f"s3://{out}/aug", "--cluster", "local", "-w", "2")
    assert_same_run(s3, f"{out}/aug", tmp_path / "local")

    # The data.yaml named itself; a rerun finds everything done.
    run(recipe, f"s3://{bucket}/ds/data.yaml", f"s3://{out}/named", "-w", "1")
    assert_same_run(s3, f"{out}/named", tmp_path / "local")
    result = CliRunner().invoke(main, ["run", str(recipe), "-i", f"s3://{bucket}/ds", "-o",
                                       f"s3://{out}/aug", "-w", "1"])
    assert result.exit_code == 0 and "0 outputs written, 7 skipped" in result.output, \
        result.output


@pytest.mark.slow
def test_roboflow_coco_splits_and_a_coco_file_on_s3_give_the_folder_bytes(servers, tmp_path):
    s3 = servers.s3()
    bucket, out = new_bucket(s3), new_bucket(s3)
    box = {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 30], "area": 600,
           "segmentation": [], "iscrowd": 0}
    splits = tmp_path / "splits"
    coco_split(splits / "train", ["a.jpg", "b.jpg"], [box, {**box, "id": 4, "image_id": 2}])
    coco_split(splits / "valid", ["c.jpg"], [box])
    recipe = write_recipe(tmp_path, RECIPE)
    run(recipe, splits, tmp_path / "splits-out", "-w", "1")
    assert "valid/_annotations.coco.json" in folder_files(tmp_path / "splits-out")
    s3.put(f"{splits}/", f"{bucket}/splits/", recursive=True)
    run(recipe, f"s3://{bucket}/splits", f"s3://{out}/splits", "-w", "2")
    assert_same_run(s3, f"{out}/splits", tmp_path / "splits-out")

    # One folder of images and its COCO file, named by annotations.path.
    flat = tmp_path / "flat"
    coco_split(flat, ["a.jpg", "b.jpg"], [box, {**box, "id": 4, "image_id": 2}])
    (flat / "_annotations.coco.json").rename(tmp_path / "coco.json")
    s3.put(str(tmp_path / "coco.json"), f"{bucket}/labels/coco.json")
    s3.put(f"{flat}/", f"{bucket}/flat/", recursive=True)
    for where, path in (("local", tmp_path / "coco.json"),
                        ("s3", f"s3://{bucket}/labels/coco.json")):
        with_path = write_recipe(tmp_path, RECIPE + f"    annotations: {{format: coco, "
                                 f"path: '{path}'}}\n", name=f"{where}.yaml")
        if where == "local":
            run(with_path, flat, tmp_path / "flat-out", "-w", "1")
        else:
            run(with_path, f"s3://{bucket}/flat", f"s3://{out}/flat", "-w", "1")
    assert "coco.json" in folder_files(tmp_path / "flat-out")
    document = json.loads(folder_files(tmp_path / "flat-out")["coco.json"])
    assert len(document["images"]) == 4  # two turns of each image
    assert_same_run(s3, f"{out}/flat", tmp_path / "flat-out")


@pytest.mark.slow
def test_a_flat_yolo_folder_on_s3_gives_the_folder_bytes(servers, tmp_path):
    source = tmp_path / "in"
    for index, name in enumerate(("cats/a.jpg", "cats/b.png", "dogs/c.jpg")):
        save(source / name, photo_like(48, 64, seed=index), quality=95)
        (source / name).with_suffix(".txt").write_text(f"{index % 2} 0.4 0.5 0.3 0.2\n")
    (source / "classes.txt").write_text("cat\ndog\n")
    recipe = write_recipe(tmp_path, RECIPE + "    annotations: {format: yolo}\n")
    run(recipe, source, tmp_path / "local", "-w", "1")
    local = folder_files(tmp_path / "local")
    assert local["classes.txt"] == b"cat\ndog\n" and "cats/a_turn_1.txt" in local

    s3 = servers.s3()
    bucket, out = new_bucket(s3), new_bucket(s3)
    s3.put(f"{source}/", f"{bucket}/in/", recursive=True)
    run(recipe, f"s3://{bucket}/in", f"s3://{out}/aug", "-w", "2")
    assert_same_run(s3, f"{out}/aug", tmp_path / "local")
