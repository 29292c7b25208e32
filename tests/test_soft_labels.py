"""Donor ops on class folders (no annotations): soft labels in labels.csv, checked against
real files painted in one pure colour per class, and resume when a donor changes."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augcli.errors import RecipeError, UsageError
from augcli.runner import read_manifest, run_recipe

from .conftest import save, write_recipe

CHANNEL = {"cats": 0, "dogs": 1, "owls": 2}  # each class painted in one pure colour
FILL = 114  # the mosaic's grey where no tile reaches: no class's

RECIPE = """\
    input: in
    output: out
    seed: 5
    format: png
    include_original: true
    variants:
      mosaic:
        copies: 2
        ops:
          - mosaic: {grid: [2, 2], size: [96, 80]}
          - fliplr: {p: 0.5}
      cutmix:
        copies: 2
        ops: [{cutmix: {area: [0.2, 0.5]}}]
      mixup:
        ops: [{mixup: {ratio: [0.3, 0.7]}}]
      chain:
        ops:
          - mosaic: {grid: [3, 3]}
          - mixup: {ratio: [0.3, 0.7]}
"""


def paint_classes(folder: Path, per_class: int = 1) -> list:
    """Sources of 64 x 48 pixels, each all in its class's pure colour (one per class: two
    of a class would mix into their own copies)."""
    names = []
    for label, channel in CHANNEL.items():
        for number in range(per_class):
            image = np.zeros((48, 64, 3), np.uint8)
            image[..., channel] = 255
            names.append(f"{label}/{label}{number}.png")
            save(folder / names[-1], image)
    return names


def read_labels(folder: Path) -> dict:
    with open(folder / "labels.csv", newline="") as file:
        rows = list(csv.reader(file))
    header, body = rows[0], rows[1:]
    assert header[0] == "filename" and header[1:] == sorted(CHANNEL)
    names = [row[0] for row in body]
    assert len(names) == len(set(names))
    return {row[0]: dict(zip(header[1:], map(float, row[1:]), strict=True)) for row in body}


def painted_shares(path: Path) -> dict:
    """Each class's share of the painted pixels of an output (the grey fill left out)."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    painted = ~np.all(pixels == FILL, axis=2)
    return {label: pixels[painted][:, channel].sum() / 255 / painted.sum()
            for label, channel in CHANNEL.items()}


@pytest.fixture
def classes(tmp_path):
    return paint_classes(tmp_path / "in")


def test_each_output_weighs_its_classes_by_the_paint_it_shows(tmp_path, classes):
    report = run_recipe(write_recipe(tmp_path, RECIPE), workers=1)
    assert report.exit_code == 0, report.failures
    out = tmp_path / "out"
    labels = read_labels(out)
    records = read_manifest(out)
    assert sorted(labels) == sorted(record["output"] for record in records)
    assert len(records) == len(classes) * 7  # the copy and 6 variants' outputs
    mixed = 0
    for record in records:
        weights = labels[record["output"]]
        assert sum(weights.values()) == 1.0
        if record.get("donors"):  # out of every class folder, weighed by its paint
            assert "/" not in record["output"]
            mixed += len({record["source"].split("/")[0]} |
                         {d["source"].split("/")[0] for d in record["donors"]}) > 1
        else:
            assert record["output"].startswith(record["source"].split("/")[0] + "/")
        assert weights == pytest.approx(painted_shares(out / record["output"]), abs=0.01), \
            record["output"]
    assert mixed > len(classes)  # most outputs mix classes
    grey = [r for r in records if r["variant"] == "mosaic"
            and np.any(np.all(np.asarray(Image.open(out / r["output"])) == FILL, axis=2))]
    assert grey  # some mosaics have fill, which weighs nothing


def test_same_bytes_at_one_and_two_workers_and_a_rerun_writes_nothing(tmp_path, classes):
    recipe = write_recipe(tmp_path, RECIPE)
    assert run_recipe(recipe, workers=1).exit_code == 0
    assert run_recipe(recipe, output=tmp_path / "two", workers=2).exit_code == 0
    one = {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes()
           for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name != "manifest.jsonl"}
    two = {p.relative_to(tmp_path / "two").as_posix(): p.read_bytes()
           for p in (tmp_path / "two").rglob("*") if p.is_file() and p.name != "manifest.jsonl"}
    assert one == two and "labels.csv" in one
    stamps = {path: os.stat(tmp_path / "out" / path).st_mtime_ns for path in one}
    again = run_recipe(recipe, workers=2)
    assert again.exit_code == 0 and again.written == 0
    assert {path: os.stat(tmp_path / "out" / path).st_mtime_ns for path in one} == stamps


def test_a_resumed_run_lists_every_output_in_labels_csv(tmp_path, classes):
    recipe = write_recipe(tmp_path, RECIPE)
    assert run_recipe(recipe, workers=1).exit_code == 0
    whole = (tmp_path / "out" / "labels.csv").read_bytes()
    records = read_manifest(tmp_path / "out")
    gone = [r["output"] for r in records if r.get("donors")][::3]
    for name in gone:
        (tmp_path / "out" / name).unlink()
    (tmp_path / "out" / "labels.csv").unlink()
    report = run_recipe(recipe, workers=2)
    assert report.exit_code == 0 and report.written == len(gone)
    assert (tmp_path / "out" / "labels.csv").read_bytes() == whole


def test_a_changed_donor_redoes_the_outputs_that_took_it_and_no_other(tmp_path, classes):
    recipe = write_recipe(tmp_path, RECIPE)
    assert run_recipe(recipe, workers=1).exit_code == 0
    out = tmp_path / "out"
    records = read_manifest(out)
    donor = "owls/owls0.png"
    takers = {r["output"] for r in records if donor in r.get("donor_stamps", {})}
    own = {r["output"] for r in records if r["source"] == donor}
    assert takers and all(r["donor_stamps"] for r in records if r.get("donors"))
    before = {r["output"]: os.stat(out / r["output"]).st_mtime_ns for r in records}
    image = np.zeros((40, 56, 3), np.uint8)
    image[..., 2] = 255  # still an owl, other pixels
    save(tmp_path / "in" / donor, image)
    os.utime(tmp_path / "in" / donor, ns=(1_000_000_000, 1_000_000_000))
    report = run_recipe(recipe, workers=2)
    assert report.exit_code == 0 and report.written == len(takers | own)
    after = {name: os.stat(out / name).st_mtime_ns for name in before}
    assert {name for name in before if after[name] != before[name]} == takers | own
    stamped = {r["output"]: r["donor_stamps"][donor]["source_mtime_ns"]
               for r in read_manifest(out) if donor in r.get("donor_stamps", {})}
    assert set(stamped.values()) == {1_000_000_000}
    # this process kept the old donor decoded (the first run ran in it): a run here takes
    # the new one, and writes the bytes the fresh workers wrote
    assert run_recipe(recipe, output=tmp_path / "again", workers=1).exit_code == 0
    for name in takers | own:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name


def test_a_classification_dataset_keeps_mixed_outputs_in_their_split(tmp_path):
    for name in ("train/cats/a.png", "train/dogs/b.png", "train/owls/c.png", "val/cats/d.png"):
        image = np.zeros((30, 40, 3), np.uint8)
        image[..., CHANNEL[name.split("/")[1]]] = 255
        save(tmp_path / "in" / name, image)
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          mixed: {ops: [{cutmix: {area: 0.4}}]}
    """)
    assert run_recipe(recipe, workers=1).exit_code == 0
    labels = read_labels_of(tmp_path / "out")
    assert sorted(labels) == ["train/cats/a.png", "train/cats_a_mixed_1.png",
                              "train/dogs/b.png", "train/dogs_b_mixed_1.png",
                              "train/owls/c.png", "train/owls_c_mixed_1.png"]
    assert (tmp_path / "out" / "val" / "cats" / "d.png").exists()


def read_labels_of(folder: Path) -> dict:
    with open(folder / "labels.csv", newline="") as file:
        return {row["filename"]: row for row in csv.DictReader(file)}


@pytest.mark.parametrize("body, message", [
    ("variants:\n  mixed: {ops: [{copy_paste: {}}]}", "copy_paste.*polygons"),
    ("variants:\n  mixed: {ops: [{mixup: {}}]}", "loose.png is in no class folder"),
    # mixed outputs sit beside the class folders: they cannot fill them
    ("target_per_class: 5\nvariants:\n  mixed: {ops: [{mosaic: {}}]}",
     "target_per_class fills each class folder"),
])
def test_refused_on_class_folders(tmp_path, classes, body, message):
    save(tmp_path / "in" / "loose.png", np.zeros((20, 20, 3), np.uint8))
    recipe = write_recipe(tmp_path, f"input: in\noutput: out\n{body}\n")
    with pytest.raises(UsageError, match=message):
        run_recipe(recipe)
    assert not (tmp_path / "out").exists()


def test_hard_label_majority_copies_each_mixed_output_into_its_largest_class(tmp_path,
                                                                             classes):
    # the paint says which class covers most of an output; the copy sits in that folder
    recipe = write_recipe(tmp_path, RECIPE.replace("    seed: 5\n",
                                                   "    seed: 5\n    hard_label: majority\n"))
    assert run_recipe(recipe, workers=2).exit_code == 0
    out = tmp_path / "out"
    copied = 0
    for name, weights in read_labels(out).items():
        if max(weights.values()) == 1.0:
            assert not any((out / label / name).exists() for label in CHANNEL)
            continue  # an original: it is in its class folder already
        shares = painted_shares(out / name)
        largest = max(shares, key=shares.get)
        if sorted(shares.values())[-2] > shares[largest] - 0.02:
            continue  # a near tie: the paint cannot tell
        assert (out / largest / name).read_bytes() == (out / name).read_bytes(), name
        assert [label for label in CHANNEL if (out / label / name).exists()] == [largest]
        copied += 1
    assert copied > len(classes)
    def stamps():
        return {p: p.stat().st_mtime_ns for p in out.rglob("*")
                if p.is_file() and p.name != "manifest.jsonl"}

    files = stamps()
    again = run_recipe(recipe, workers=1)  # a rerun: the copies are its own, nothing new
    assert again.exit_code == 0 and again.written == 0
    assert stamps() == files
    (out / "labels.csv").unlink()  # without hard_label the copies are still accounted for
    plain = write_recipe(tmp_path, RECIPE, name="plain.yaml")
    assert run_recipe(plain, workers=1).exit_code == 0


def test_hard_label_needs_soft_labels_and_says_what_it_takes(tmp_path, classes):
    bad = write_recipe(tmp_path, "input: in\noutput: out\nhard_label: argmax\n"
                                 "variants: {m: {ops: [mosaic]}}\n")
    with pytest.raises(RecipeError, match="hard_label: expected majority"):
        run_recipe(bad)
    plain = write_recipe(tmp_path, "input: in\noutput: out\nhard_label: majority\n"
                                   "variants: {f: {ops: [fliplr]}}\n", name="plain.yaml")
    with pytest.raises(UsageError, match="makes none: remove the line"):
        run_recipe(plain)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_files_of_an_uninterrupted_one(tmp_path):
    # a real process killed mid-run: the rerun finishes with the very files (outputs,
    # labels.csv, the majority copies) an uninterrupted run writes, nothing stray
    from .conftest import folder_files, kill_when, start_cli

    paint_classes(tmp_path / "in")
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        seed: 3
        format: png
        hard_label: majority
        variants:
          mosaic:
            copies: 60
            ops: [{mosaic: {grid: [2, 2], size: [96, 80]}}, {fliplr: {p: 0.5}}]
          mixup:
            copies: 20
            ops: [{mixup: {ratio: [0.2, 0.8]}}]
        """)
    out = tmp_path / "out"
    kill_when(start_cli("run", recipe, "-w", 1, "-q", cwd=tmp_path),
              lambda: len(list(out.glob("*_mosaic_*.png"))) >= 10)
    assert 10 <= len(list(out.glob("*_mosaic_*.png"))) < 3 * 60
    assert run_recipe(recipe, workers=2).exit_code == 0
    assert run_recipe(recipe, output=tmp_path / "clean", workers=1).exit_code == 0
    resumed, clean = folder_files(out), folder_files(tmp_path / "clean")
    resumed.pop("manifest.jsonl")
    clean.pop("manifest.jsonl")
    assert resumed == clean
    assert sum(name.count("/") == 1 for name in clean) > 3 * 60  # the majority copies
