"""augcli ricap: geometry, provenance, labels, sampling, determinism and the CLI.

Sources are real PNG files whose pixels encode where they come from: red is
the column, green the row and blue the image's own number, so every pixel of
a montage says which source and which position it was cut from. Expected
values are computed here, from the recorded plan and the sources' own pixels.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from fractions import Fraction
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from augcli import imagefiles, ricap

from .conftest import folder_files, invoke, kill_when, photo_like, run_cli, save, start_cli

WIDTH, HEIGHT = 40, 30


# --- helpers -------------------------------------------------------------------------------

ricap_cli = partial(invoke, "ricap")  # augcli ricap ARGS...


def coded(number: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """RGB image: R = column, G = row, B = a number unique to the image."""
    y, x = np.mgrid[0:height, 0:width]
    blue = np.full_like(x, 10 * number)
    return np.stack([x, y, blue], axis=-1).astype(np.uint8)


def make_classes(folder: Path, layout: dict, size=(WIDTH, HEIGHT)) -> dict:
    """Save coded images as folder/<class>/<name>.png; return {relative path: array}."""
    sources, number = {}, 1
    for label, names in layout.items():
        for name in names:
            array = coded(number, *size)
            save(folder / label / f"{name}.png", array)
            sources[f"{label}/{name}.png"] = array
            number += 1
    return sources


@pytest.fixture
def classes(tmp_path):
    """Three classes of coded 40x30 PNGs, one of them in a nested folder."""
    folder = tmp_path / "in"
    sources = make_classes(folder, {"ant": ["a1", "a2"], "bee": ["b1"], "cow": ["c1", "c2", "c3"]})
    nested = coded(9)
    save(folder / "cow" / "deep" / "c4.png", nested)
    sources["cow/deep/c4.png"] = nested
    return folder, sources


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def records(output: Path) -> list:
    return [json.loads(line) for line in
            (output / "montages.jsonl").read_text(encoding="utf-8").splitlines()]


def label_rows(output: Path) -> tuple[list, list]:
    with open(output / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def check_provenance(output: Path, record: dict, resized: dict) -> None:
    """Quadrants tile the montage once each, and each holds its recorded crop."""
    montage = read_png(output / record["filename"])
    width, height = record["size"]
    assert montage.shape == (height, width, 3)
    covered = np.zeros((height, width), int)
    for quadrant in record["quadrants"]:
        x, y, w, h = quadrant["output"]
        covered[y:y + h, x:x + w] += 1
        if w * h == 0:
            assert quadrant["source"] is None and quadrant["weight"] == 0
            continue
        cx, cy, cw, ch = quadrant["crop"]
        assert (cw, ch) == (w, h)
        assert 0 <= cx <= width - w and 0 <= cy <= height - h
        source = resized[quadrant["source"]]
        np.testing.assert_array_equal(montage[y:y + h, x:x + w], source[cy:cy + h, cx:cx + w])
    assert (covered == 1).all()


# --- geometry and labels, as pure functions ---------------------------------------------

@pytest.mark.parametrize("w, h", [(0, 0), (0, 7), (13, 0), (40, 30), (40, 0), (17, 11)])
def test_quadrant_boxes_tile_the_image_even_when_some_are_empty(w, h):
    boxes = ricap.quadrant_boxes(WIDTH, HEIGHT, w, h)
    covered = np.zeros((HEIGHT, WIDTH), int)
    for x, y, bw, bh in boxes:
        covered[y:y + bh, x:x + bw] += 1
    assert (covered == 1).all()
    assert [b[2:] for b in boxes] == [(w, h), (WIDTH - w, h), (w, HEIGHT - h),
                                      (WIDTH - w, HEIGHT - h)]


def test_zero_size_patches_weigh_nothing_and_compose_without_a_source():
    boxes = ricap.quadrant_boxes(WIDTH, HEIGHT, 0, 12)
    image = coded(3)
    quadrants = [ricap.Quadrant(p, box) if box[2] * box[3] == 0 else
                 ricap.Quadrant(p, box, "x/a.png", "x", box)  # crop where it goes
                 for p, box in zip(ricap.POSITIONS, boxes)]
    weights = ricap.label_weights(quadrants, ["x", "y"], WIDTH, HEIGHT)
    assert weights == {"x": Fraction(1), "y": Fraction(0)}
    pieces = [(image if q.source else None, q.crop[:2] if q.crop else None, q.box)
              for q in quadrants]
    np.testing.assert_array_equal(ricap.compose((WIDTH, HEIGHT), pieces), image)


def test_weights_are_exact_area_fractions_summed_per_class():
    boxes = ricap.quadrant_boxes(WIDTH, HEIGHT, 13, 7)
    labels = ["a", "b", "a", "c"]
    quadrants = [ricap.Quadrant(p, box, f"{label}/s.png", label, (0, 0, box[2], box[3]))
                 for p, box, label in zip(ricap.POSITIONS, boxes, labels)]
    weights = ricap.label_weights(quadrants, ["a", "b", "c", "d"], WIDTH, HEIGHT)
    total = WIDTH * HEIGHT
    assert weights == {"a": Fraction(13 * 7 + 13 * 23, total), "b": Fraction(27 * 7, total),
                       "c": Fraction(27 * 23, total), "d": 0}
    assert sum(weights.values()) == 1


def test_majority_ties_go_to_the_first_class_in_sorted_order():
    half = Fraction(1, 2)
    assert ricap.majority_class({"cup": half, "cat": half}) == "cat"
    assert ricap.majority_class({"a": Fraction(1, 4), "b": Fraction(3, 4)}) == "b"


# --- sampling ------------------------------------------------------------------------------

IMAGES = [("a/1.png", "a"), ("b/1.png", "b")]


def fractions(beta: float, count: int = 2000) -> np.ndarray:
    plans = ricap.plan_montages(IMAGES, count, (100, 100), beta=beta, seed=3, per_sample=True)
    return np.array([plan.fractions for plan in plans])


def test_small_beta_puts_boundaries_near_the_edges_and_large_beta_near_the_centre():
    small, large = fractions(0.1), fractions(10.0)
    # E|X - 1/2| is about 0.44 for Beta(0.1, 0.1) and 0.09 for Beta(10, 10)
    assert np.abs(small - 0.5).mean() > 0.4
    assert np.abs(large - 0.5).mean() < 0.12
    assert (np.abs(small - 0.5) > 0.4).mean() > 0.7
    assert (np.abs(large - 0.5) < 0.2).mean() > 0.9
    # both are symmetric about 1/2
    assert abs(small.mean() - 0.5) < 0.03 and abs(large.mean() - 0.5) < 0.01


def test_boundary_is_the_rounded_fraction_of_the_size():
    plans = ricap.plan_montages(IMAGES, 300, (37, 23), beta=0.3, seed=1, per_sample=True)
    for plan in plans:
        assert plan.boundary == (round(plan.fractions[0] * 37), round(plan.fractions[1] * 23))


def test_per_batch_shares_the_boundary_and_per_sample_does_not():
    batched = ricap.plan_montages(IMAGES, 40, (64, 64), seed=5, batch_size=8)
    assert [plan.batch for plan in batched] == [i // 8 for i in range(40)]
    for batch in range(5):
        members = {plan.fractions for plan in batched if plan.batch == batch}
        assert len(members) == 1
    assert len({plan.fractions for plan in batched}) == 5
    # crops and sources still differ within a batch
    assert len({plan.quadrants for plan in batched[:8]}) == 8
    per_sample = ricap.plan_montages(IMAGES, 40, (64, 64), seed=5, batch_size=8, per_sample=True)
    assert len({plan.fractions for plan in per_sample}) == 40


def test_a_shorter_run_makes_the_first_montages_of_a_longer_one():
    short = ricap.plan_montages(IMAGES, 10, (50, 40), seed=9, batch_size=4)
    long = ricap.plan_montages(IMAGES, 30, (50, 40), seed=9, batch_size=4)
    assert short == long[:10]


def test_sources_are_drawn_uniformly_over_all_images():
    images = [("a/1.png", "a"), ("a/2.png", "a"), ("a/3.png", "a"), ("b/1.png", "b")]
    plans = ricap.plan_montages(images, 1000, (64, 64), beta=1.0, seed=2, per_sample=True)
    drawn = [source for plan in plans for source in plan.sources]
    shares = [drawn.count(path) / len(drawn) for path, _ in images]
    assert all(abs(share - 0.25) < 0.03 for share in shares)


# --- end to end through the library -------------------------------------------------------

def test_montages_are_made_of_the_recorded_crops(tmp_path, classes):
    folder, sources = classes
    output = tmp_path / "out"
    settings = ricap.RicapSettings.of(folder, output, count=25, size=(WIDTH, HEIGHT), beta=1.0,
                                      seed=4, per_sample=True)
    report = ricap.make_montages(settings, workers=1)
    assert report.exit_code == 0 and report.written == 25 and report.failures == []
    made = records(output)
    assert [r["filename"] for r in made] == [f"ricap_{i:05d}.png" for i in range(1, 26)]
    for record in made:
        check_provenance(output, record, sources)
        for quadrant in record["quadrants"]:
            if quadrant["source"]:
                assert quadrant["class"] == quadrant["source"].split("/")[0]
    used = {q["source"] for r in made for q in r["quadrants"]}
    assert "cow/deep/c4.png" in used  # deeper images belong to their top-level class
    assert report.images_read == len(used - {None})


def test_sources_of_other_sizes_are_stretched_as_normalize_does(tmp_path):
    folder = tmp_path / "in"
    big, small = photo_like(90, 120, seed=1), photo_like(12, 16, seed=2)
    wide = photo_like(20, 100, seed=3)  # shrinks in width, grows in height
    save(folder / "big" / "x.png", big)
    save(folder / "small" / "y.png", small)
    save(folder / "wide" / "z.png", wide)
    size = (WIDTH, HEIGHT)
    expected = {
        "big/x.png": cv2.resize(big, size, interpolation=cv2.INTER_AREA),
        "small/y.png": cv2.resize(small, size, interpolation=cv2.INTER_LINEAR),
        "wide/z.png": cv2.resize(wide, size, interpolation=cv2.INTER_LINEAR),
    }
    output = tmp_path / "out"
    ricap.make_montages(ricap.RicapSettings.of(folder, output, count=15, size=size, beta=1.0,
                                               seed=0), workers=1)
    made = records(output)
    assert {q["source"] for r in made for q in r["quadrants"]} == set(expected)
    for record in made:
        check_provenance(output, record, expected)


def test_grey_alpha_and_16_bit_sources_become_8_bit_rgb():
    grey16 = np.full((2, 2), 65535, np.uint16)
    assert imagefiles.to_rgb8(grey16).tolist() == [[[255] * 3] * 2] * 2
    rgba = np.zeros((1, 1, 4), np.uint8)  # fully transparent black -> white
    assert imagefiles.to_rgb8(rgba).tolist() == [[[255, 255, 255]]]
    grey = np.array([[7]], np.uint8)
    assert imagefiles.to_rgb8(grey).tolist() == [[[7, 7, 7]]]


def test_labels_sum_to_one_and_equal_the_areas(tmp_path, classes):
    folder, _ = classes
    output = tmp_path / "out"
    ricap.make_montages(ricap.RicapSettings.of(folder, output, count=40, size=(WIDTH, HEIGHT),
                                               seed=8), workers=1)
    header, rows = label_rows(output)
    assert header == ["filename", "ant", "bee", "cow"]
    made = {r["filename"]: r for r in records(output)}
    assert [row[0] for row in rows] == sorted(made)
    for row in rows:
        weights = [float(value) for value in row[1:]]
        assert sum(weights) == 1.0 and sum(reversed(weights)) == 1.0  # exactly, in float
        assert np.array(weights).sum() == 1.0 and math.fsum(weights) == 1.0
        record = made[row[0]]
        areas = dict.fromkeys(header[1:], 0)
        for quadrant in record["quadrants"]:
            if quadrant["area"]:
                areas[quadrant["class"]] += quadrant["area"]
            assert abs(Fraction(quadrant["weight"]) - Fraction(quadrant["area"], WIDTH * HEIGHT)) \
                <= Fraction(3, 2**52)
        assert sum(areas.values()) == WIDTH * HEIGHT  # exact, in integers
        for name, weight in zip(header[1:], weights):
            assert abs(Fraction(weight) - Fraction(areas[name], WIDTH * HEIGHT)) <= \
                Fraction(3, 2**52)
        assert record["labels"] == {n: w for n, w in zip(header[1:], weights) if w}


def test_zero_size_patches_in_a_real_run(tmp_path, classes):
    """Beta(0.01, 0.01) gives w' of exactly 0 or 1 about a third of the time."""
    folder, sources = classes
    output = tmp_path / "out"
    settings = ricap.RicapSettings.of(folder, output, count=30, size=(WIDTH, HEIGHT),
                                      beta=0.01, seed=0, per_sample=True)
    report = ricap.make_montages(settings, workers=1)
    assert report.exit_code == 0 and report.written == 30
    made = records(output)
    empty = [q for r in made for q in r["quadrants"] if q["area"] == 0]
    assert empty and all(q["source"] is None and q["crop"] is None for q in empty)
    for record in made:
        check_provenance(output, record, sources)
        assert sum(q["area"] for q in record["quadrants"]) == WIDTH * HEIGHT


def test_majority_export_holds_each_montage_under_its_largest_class(tmp_path, classes):
    folder, _ = classes
    output = tmp_path / "out"
    ricap.make_montages(ricap.RicapSettings.of(folder, output, count=30, size=(WIDTH, HEIGHT),
                                               seed=2, hard_label="majority"), workers=1)
    header, rows = label_rows(output)
    exported = sorted(p.relative_to(output / "majority").as_posix()
                      for p in (output / "majority").rglob("*.png"))
    assert len(exported) == 30
    expected = []
    for row in rows:
        weights = [Fraction(value) for value in row[1:]]
        best = max(weights)
        label = header[1:][weights.index(best)]  # first in sorted order on a tie
        expected.append(f"{label}/{row[0]}")
        assert (output / "majority" / label / row[0]).read_bytes() == \
            (output / row[0]).read_bytes()
    assert exported == sorted(expected)
    assert {r["majority"] for r in records(output)} <= set(header[1:])


def test_unreadable_source_fails_only_the_montages_that_need_it(tmp_path, classes):
    folder, _ = classes
    (folder / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    output = tmp_path / "out"
    lines = []
    settings = ricap.RicapSettings.of(folder, output, count=30, size=(WIDTH, HEIGHT), beta=1.0,
                                      seed=1)
    report = ricap.make_montages(settings, workers=1, notify=lines.append)
    plans = ricap.plan_montages(ricap.scan_classes(folder)[0], 30, (WIDTH, HEIGHT), beta=1.0,
                                seed=1)
    needing = {p.filename for p in plans if "bee/broken.png" in p.sources}
    assert needing and len(needing) < 30
    assert report.exit_code == 1
    assert report.failed_montages == len(needing) and report.bad_sources == 1
    assert report.written == 30 - len(needing)
    assert [path for path, _ in report.failures].count("bee/broken.png") == 1
    assert any(line.startswith("bee/broken.png: ") for line in lines)
    _, rows = label_rows(output)
    assert {row[0] for row in rows} == {p.filename for p in plans} - needing
    assert not any((output / name).exists() for name in needing)


# --- the command line ----------------------------------------------------------------------

def test_cli_writes_montages_and_a_summary(tmp_path, classes):
    folder, _ = classes
    result = ricap_cli(folder, "-o", tmp_path / "out", "--count", 7, "--size", "40x30", "--format",
                       "jpg", "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "7 montages written, 0 failed" in result.output
    names = sorted(p.name for p in (tmp_path / "out").glob("ricap_*"))
    assert names == [f"ricap_{i:05d}.jpg" for i in range(1, 8)]
    assert Image.open(tmp_path / "out" / names[0]).size == (40, 30)


def test_same_seed_gives_identical_files_with_1_or_2_workers(tmp_path, classes):
    folder, _ = classes
    outputs = {}
    for workers in (1, 2):
        output = tmp_path / f"out{workers}"
        result = ricap_cli(folder, "-o", output, "-n", 24, "--size", "40x30", "--seed", 11,
                           "--batch-size", 5, "--hard-label", "majority", "-w", workers, "-q")
        assert result.exit_code == 0, result.output
        outputs[workers] = {p.relative_to(output).as_posix(): p.read_bytes()
                            for p in sorted(output.rglob("*")) if p.is_file()}
    assert len(outputs[1]) == 24 * 2 + 3  # montages, majority copies, 2 indexes, ricap.json
    assert outputs[1] == outputs[2]


def test_images_directly_in_the_input_folder_exit_2_and_are_named(tmp_path, classes):
    folder, _ = classes
    save(folder / "stray.png", coded(1))
    result = ricap_cli(folder, "-o", tmp_path / "out", "-n", 3, "--size", "40x30")
    assert result.exit_code == 2
    assert "stray.png" in result.output and "belong to no class" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--size", "40by30"], "--size expects WIDTHxHEIGHT"),
    (["--size", "0x30"], "--size expects WIDTHxHEIGHT"),
    (["--size", "40x30", "--beta", "0"], "Invalid value for '--beta'"),
    (["--size", "40x30", "--hard-label", "vote"], "Invalid value for '--hard-label'"),
])
def test_bad_flags_exit_2(tmp_path, classes, args, message):
    folder, _ = classes
    result = ricap_cli(folder, "-o", tmp_path / "out", "-n", 3, *args)
    assert result.exit_code == 2 and message in result.output


def test_settings_are_checked_when_built_before_any_folder_is_read(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ricap.UsageError, match="--count must be at least 1"):
        ricap.RicapSettings.of(missing, tmp_path / "out", count=0, size=(40, 30))
    with pytest.raises(ricap.UsageError, match="--beta-schedule needs --epochs"):
        ricap.RicapSettings.of(missing, tmp_path / "out", count=3, size="40x30",
                               beta_schedule=ricap.BetaSchedule(0.1, 1.0, 0, 5))
    settings = ricap.RicapSettings.of(str(missing), "s3://bucket/out/", count=3, size="40x30",
                                      epochs=2, beta_schedule="0.1:1:0:5")
    assert (settings.input, settings.output) == (missing, "s3://bucket/out")
    assert (settings.size, settings.beta, settings.beta_schedule) == ((40, 30), 0.3,
                                                                      "0.1:1.0:0:5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.count = 4
    assert not missing.exists() and not (tmp_path / "out").exists()


def test_ricap_json_records_what_decides_the_montages_not_where_they_go(tmp_path, classes):
    folder, _ = classes
    output = tmp_path / "out"
    ricap.make_montages(ricap.RicapSettings.of(folder, output, count=2, size=(WIDTH, HEIGHT),
                                               overwrite=True), workers=1)
    record = json.loads((output / "ricap.json").read_text(encoding="utf-8"))
    assert sorted(record) == ["batch_size", "beta", "beta_schedule", "count", "epochs", "fmt",
                              "hard_label", "per_sample", "seed", "size", "sources"]
    assert (record["size"], record["beta"], record["count"]) == ([WIDTH, HEIGHT], 0.3, 2)


def test_folders_without_class_subfolders_and_output_inside_input_exit_2(tmp_path, classes):
    folder, _ = classes
    result = ricap_cli(folder, "-o", folder / "out", "-n", 3, "--size", "40x30")
    assert result.exit_code == 2 and "inside the input folder" in result.output
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    result = ricap_cli(empty, "-o", tmp_path / "out", "-n", 3, "--size", "40x30")
    assert result.exit_code == 2 and "no images found in class subfolders" in result.output


def test_earlier_outputs_need_overwrite_which_removes_them(tmp_path, classes):
    folder, _ = classes
    output = tmp_path / "out"
    base = [folder, "-o", output, "--size", "40x30", "-w", 1, "-q", "--hard-label", "majority"]
    assert ricap_cli(*base, "-n", 6).exit_code == 0
    (output / "notes.txt").write_text("mine")
    refused = ricap_cli(*base, "-n", 3)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert ricap_cli(*base, "-n", 3, "--overwrite").exit_code == 0
    assert sorted(p.name for p in output.glob("ricap_*")) == \
        ["ricap_00001.png", "ricap_00002.png", "ricap_00003.png"]
    assert len(list((output / "majority").rglob("*.png"))) == 3
    assert (output / "notes.txt").read_text() == "mine"  # not ours: left alone


def test_help_explains_the_outputs_and_has_an_example():
    result = invoke("ricap", "--help")
    assert result.exit_code == 0
    for text in ("labels.csv", "montages.jsonl", "majority", "Example", "--per-sample"):
        assert text in result.output


# --- exact label sums -----------------------------------------------------------------------

def test_area_weights_sum_to_exactly_one_in_any_order_and_stay_within_a_few_ulps():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        width, height = (int(v) for v in rng.integers(1, 700, size=2))
        w, h = int(rng.integers(width + 1)), int(rng.integers(height + 1))
        areas = [b[2] * b[3] for b in ricap.quadrant_boxes(width, height, w, h)]
        weights = ricap.area_weights(areas, width * height)
        for order in (weights, weights[::-1], weights[1:] + weights[:1]):
            assert sum(order) == 1.0
        assert np.array(weights, np.float64).sum() == 1.0 and math.fsum(weights) == 1.0
        for area, weight in zip(areas, weights):
            assert (Fraction(weight) * 2**52).denominator == 1  # a multiple of 2**-52
            assert abs(Fraction(weight) - Fraction(area, width * height)) <= Fraction(3, 2**52)
            assert (weight == 0) == (area == 0)


# --- in memory: ricap_batch ---------------------------------------------------------------

def decode_sources(montage: np.ndarray) -> np.ndarray:
    """Per pixel of a montage of coded images: the number of the image it came from."""
    return montage[..., 2].astype(int) // 10


def first_seam(line: np.ndarray, along: int) -> int:
    """Where a line of montage pixels passes into another crop: the source changes, the
    coded coordinate along the line stops stepping by one, or the one across it changes;
    0 when it never does (w = 0 and w = W tile alike)."""
    line = line.astype(int)
    steps = (np.diff(line[:, 2]) != 0) | (np.diff(line[:, along]) != 1) | \
        (np.diff(line[:, 1 - along]) != 0)
    return int(np.argmax(steps)) + 1 if steps.any() else 0


def test_ricap_batch_patches_four_crops_and_mixes_labels_by_area():
    count, classes = 16, 5
    batch = np.stack([coded(n + 1) for n in range(count)])
    labels = np.eye(classes)[np.arange(count) % classes]
    for per_sample in (False, True):
        patched, mixed = ricap.ricap_batch(batch, labels, beta=1.0, per_sample=per_sample,
                                           rng=np.random.default_rng(3))
        assert patched.shape == batch.shape and patched.dtype == np.uint8
        assert mixed.shape == (count, classes) and mixed.dtype == np.float64
        boundaries = set()
        for montage, row in zip(patched, mixed):
            source = decode_sources(montage) - 1
            w = first_seam(montage[0], along=0) or WIDTH
            h = first_seam(montage[:, 0], along=1) or HEIGHT
            boundaries.add((w, h))
            expected = np.zeros(classes)
            for x0, y0, bw, bh in ricap.quadrant_boxes(WIDTH, HEIGHT, w, h):
                if bw * bh == 0:
                    continue
                block = montage[y0:y0 + bh, x0:x0 + bw].astype(int)
                assert len(set(source[y0:y0 + bh, x0:x0 + bw].ravel())) == 1
                # a crop keeps the source's own coordinates: R and G step by one
                cx, cy = block[0, 0, 0], block[0, 0, 1]
                assert (block[..., 0] == cx + np.arange(bw)).all()
                assert (block[..., 1] == (cy + np.arange(bh))[:, None]).all()
                expected += bw * bh / (WIDTH * HEIGHT) * labels[source[y0, x0]]
            np.testing.assert_allclose(row, expected, atol=1e-15)
            assert row.sum() == 1.0
        assert (len(boundaries) == 1) != per_sample


def test_ricap_batch_is_the_file_command_for_the_same_draws(tmp_path):
    """N files in class folders -> augcli ricap with one batch of N; the same N images as
    an array -> ricap_batch with a generator of the same seed: the same montages, labels."""
    layout = {"ant": ["a1", "a2", "a3"], "bee": ["b1", "b2"], "cow": ["c1", "c2", "c3", "c4"]}
    sources = make_classes(tmp_path / "in", layout)
    names = sorted(sources)  # the order augcli ricap lists them
    batch = np.stack([sources[name] for name in names])
    classes = sorted(layout)
    labels = np.eye(len(classes))[[classes.index(name.split("/")[0]) for name in names]]
    for per_sample, seed in ((False, 5), (True, 6)):
        output = tmp_path / f"out{per_sample}"
        flags = ["--per-sample"] if per_sample else []
        result = ricap_cli(tmp_path / "in", "-o", output, "-n", len(names), "--size", "40x30",
                           "--batch-size", len(names), "--seed", seed, "--beta", 0.5, "-w", 1, "-q",
                           *flags)
        assert result.exit_code == 0, result.output
        patched, mixed = ricap.ricap_batch(batch, labels, beta=0.5, per_sample=per_sample,
                                           rng=np.random.default_rng(seed))
        header, rows = label_rows(output)
        assert header[1:] == classes
        for i, row in enumerate(rows):
            np.testing.assert_array_equal(read_png(output / row[0]), patched[i])
            assert [float(value) for value in row[1:]] == mixed[i].tolist()


def test_ricap_batch_seeds_and_generators_and_never_the_global_state():
    batch = np.stack([coded(n) for n in range(1, 9)]).astype(np.float32) / 255
    labels = np.eye(8, dtype=np.float32)
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    a = ricap.ricap_batch(batch, labels, rng=7)
    b = ricap.ricap_batch(batch, labels, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == np.float32 and a[1].dtype == np.float32
    unseeded = [ricap.ricap_batch(batch, labels, beta=1.0)[0] for _ in range(2)]
    assert not np.array_equal(*unseeded)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ricap.ricap_batch(batch[0], labels)
    with pytest.raises(ValueError, match="np.eye"):
        ricap.ricap_batch(batch, np.arange(8))
    with pytest.raises(ValueError, match="beta must be a number > 0"):
        ricap.ricap_batch(batch, labels, beta=0)


def test_beta_schedule_is_linear_between_its_epochs():
    schedule = ricap.BetaSchedule(0.01, 1.0, start=20, end=90)
    assert [schedule(e) for e in (0, 20, 55, 90, 200)] == [0.01, 0.01, 0.01 + 0.99 * 0.5, 1.0,
                                                           1.0]
    assert schedule(27) == pytest.approx(0.01 + 0.99 * 7 / 70)
    assert ricap.BetaSchedule.parse("0.01:1.0:20:90") == schedule
    assert ricap.BetaSchedule.parse(schedule.to_text()) == schedule
    assert ricap.BetaSchedule(0.5, 0.1, 3, 3)(3) == 0.5 and ricap.BetaSchedule(0.5, 0.1, 3, 3)(4) \
        == 0.1
    for text, message in [("0.01:1.0:20", "BETA_MIN:BETA_MAX"), ("0:1:0:5", "beta_min must"),
                          ("0.1:1:9:5", "must not come before"), ("a:1:0:5", "BETA_MIN")]:
        with pytest.raises(ValueError, match=message):
            ricap.BetaSchedule.parse(text)


# --- epochs, dry run, JSON, resume -------------------------------------------------------------

def test_epochs_write_a_folder_each_with_the_scheduled_beta(tmp_path, classes):
    folder, sources = classes
    output = tmp_path / "out"
    result = ricap_cli(folder, "-o", output, "-n", 6, "--size", "40x30", "--epochs", 5,
                       "--beta-schedule", "0.1:2.0:1:3", "-w", 1, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    expected = [0.1, 0.1, 0.1 + 1.9 / 2, 2.0, 2.0]
    assert [e["beta"] for e in summary["epochs"]] == expected
    assert [e["folder"] for e in summary["epochs"]] == [f"epoch_{i:03d}" for i in range(5)]
    assert summary["written"] == summary["planned"] == 30
    plans = []
    for epoch, beta in enumerate(expected):
        made = records(output / f"epoch_{epoch:03d}")
        assert len(made) == 6 and {r["beta"] for r in made} == {beta}
        for record in made:
            check_provenance(output / f"epoch_{epoch:03d}", record, sources)
        plans.append([r["quadrants"] for r in made])
        _, rows = label_rows(output / f"epoch_{epoch:03d}")
        assert len(rows) == 6
    assert all(plans[i] != plans[j] for i in range(5) for j in range(i))  # own draws
    assert not list(output.glob("ricap_*"))


@pytest.mark.parametrize("args, message", [
    (["--beta-schedule", "0.1:1:0:5"], "--beta-schedule needs --epochs"),
    (["--epochs", 3, "--beta-schedule", "0.1:1"], "--beta-schedule: expected BETA_MIN"),
    (["--epochs", 3, "--beta-schedule", "0.1:1:0:5", "--beta", 0.3], "give one"),
])
def test_schedule_misuse_exits_2_naming_the_flag(tmp_path, classes, args, message):
    folder, _ = classes
    result = ricap_cli(folder, "-o", tmp_path / "out", "-n", 3, "--size", "40x30", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_dry_run_counts_and_writes_nothing(tmp_path, classes):
    folder, _ = classes
    output = tmp_path / "out"
    base = [folder, "-o", output, "-n", 12, "--size", "40x30", "-w", 1]
    result = ricap_cli(*base, "--dry-run")
    assert result.exit_code == 0 and "12 montages planned, 12 to make, 0 already done" in \
        result.output
    assert not output.exists()
    assert ricap_cli(*base, "-q").exit_code == 0
    (output / "ricap_00004.png").unlink()
    summary = json.loads(ricap_cli(*base, "--dry-run", "--json").stdout)
    assert (summary["dry_run"], summary["planned"], summary["skipped"], summary["written"]) == \
        (True, 12, 11, 0)
    assert not (output / "ricap_00004.png").exists()


def test_json_summary_has_counts_failures_seconds_and_the_output_folder(tmp_path, classes):
    folder, _ = classes
    (folder / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    output = tmp_path / "out"
    result = ricap_cli(folder, "-o", output, "-n", 30, "--size", "40x30", "--beta", 1.0, "--seed",
                       1, "-w", 1, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)  # stdout holds the JSON object alone
    assert summary["output"] == str(output) and summary["command"] == "ricap"
    assert summary["failed"] > 0 and summary["bad_sources"] == 1
    assert summary["written"] + summary["failed"] == summary["planned"] == 30
    assert summary["exit_code"] == 1 and isinstance(summary["seconds"], float)
    paths = [f["path"] for f in summary["failures"]]
    assert paths[0] == "bee/broken.png" and summary["failures"][0]["reason"]
    assert all(f["reason"] == "not made: source bee/broken.png cannot be read"
               for f in summary["failures"][1:])
    assert "montages written" not in result.stderr


def test_rerun_of_the_same_settings_resumes_and_other_settings_are_refused(tmp_path, classes):
    folder, _ = classes
    output = tmp_path / "out"
    base = [folder, "-o", output, "--size", "40x30", "-w", 1, "--hard-label", "majority"]
    assert ricap_cli(*base, "-n", 20, "-q").exit_code == 0
    clean = {p.relative_to(output).as_posix(): p.read_bytes() for p in output.rglob("*")
             if p.is_file()}
    for name in ("ricap_00003.png", "ricap_00017.png", "labels.csv", "montages.jsonl"):
        (output / name).unlink()
    majority = next((output / "majority").rglob("ricap_00009.png"))
    majority.unlink()  # the copy is missing: the montage is made again
    result = ricap_cli(*base, "-n", 20, "--json")
    summary = json.loads(result.stdout)
    assert (summary["written"], summary["skipped"]) == (3, 17)
    assert {p.relative_to(output).as_posix(): p.read_bytes() for p in output.rglob("*")
            if p.is_file()} == clean
    refused = ricap_cli(*base, "-n", 20, "--seed", 2)
    assert refused.exit_code == 2 and "--seed differ" in refused.output
    save(folder / "ant" / "new.png", coded(12))
    refused = ricap_cli(*base, "-n", 20)
    assert refused.exit_code == 2 and "input images differ" in refused.output


@pytest.mark.slow
def test_killed_ricap_resumes_to_the_files_of_an_uninterrupted_run(tmp_path):
    """SIGKILL mid-run through a real process, then the same command again: every file,
    labels.csv and montages.jsonl are byte-identical to a run that was never interrupted."""
    for label in ("cat", "dog"):
        for i in range(3):
            save(tmp_path / "in" / label / f"{i}.png", photo_like(160, 200, seed=i))
    args = ["ricap", tmp_path / "in", "-n", 800, "--size", "128x96", "--seed", 4,
            "--hard-label", "majority", "-w", 1, "-q"]
    out = tmp_path / "out"
    kill_when(start_cli(*args, "-o", out), lambda: len(list(out.glob("ricap_*.png"))) >= 10,
              timeout=180)  # a loaded machine can be slow to start the run
    assert 10 <= len(list(out.glob("ricap_*.png"))) < 800, "the run was not interrupted"
    assert not (out / "labels.csv").exists()
    resumed = run_cli(*args, "-o", out, "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] >= 10 and summary["skipped"] + summary["written"] == 800
    clean = run_cli(*args, "-o", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr

    assert folder_files(out) == folder_files(tmp_path / "clean")


def test_absurd_counts_are_refused_with_the_limit(tmp_path):
    for label in ("cat", "dog"):
        save(tmp_path / "in" / label / "a.png", photo_like(20, 30, seed=1))
    result = invoke("ricap", str(tmp_path / "in"), "-o", str(tmp_path / "o"),
                    "-n", "1000000000", "--size", "16x16")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--count x --epochs is 1,000,000,000, over the limit of 1,000,000 montages" in \
        result.output
    result = invoke("ricap", str(tmp_path / "in"), "-o", str(tmp_path / "o"),
                    "-n", "1000", "--epochs", "1001", "--size", "16x16")
    assert result.exit_code == 2 and "1,001,000, over the limit" in result.output


def test_class_and_file_names_that_are_not_utf8_round_trip(tmp_path):
    # A source named with bytes that are not UTF-8: the run finishes, montages.jsonl stays
    # UTF-8 (JSON escapes) and names the very same file, labels.csv keeps the raw name.
    root = os.fsencode(tmp_path / "in")
    os.makedirs(os.path.join(root, b"c\xe9t"))
    os.makedirs(os.path.join(root, b"dog"))
    with open(os.path.join(root, b"c\xe9t", b"\xff.png"), "wb") as handle:
        Image.fromarray(photo_like(20, 30, seed=2)).save(handle, format="PNG")
    save(tmp_path / "in" / "dog" / "a.png", photo_like(20, 30, seed=3))
    result = invoke("ricap", str(tmp_path / "in"), "-o", str(tmp_path / "o"),
                    "-n", "6", "--size", "16x16", "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "labels.csv").read_bytes().startswith(b"filename,c\xe9t,dog\n")
    sources = {quadrant["source"]
               for line in (tmp_path / "o" / "montages.jsonl").read_bytes().decode().splitlines()
               for quadrant in json.loads(line)["quadrants"] if quadrant["source"]}
    assert os.fsdecode(b"c\xe9t/\xff.png") in sources


# --- the output folder: links, one run at a time, a full disk -------------------------------

def test_overwrite_never_deletes_through_a_link_in_the_output_folder(classes, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    save(elsewhere / "ricap_00001.png", coded(1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "epoch_777").symlink_to(elsewhere, target_is_directory=True)
    result = ricap_cli(classes[0], "-o", out, "--count", 2, "--size", "20x20", "--overwrite",
                       "--workers", 1)
    assert result.exit_code == 0, result.output
    assert (elsewhere / "ricap_00001.png").is_file()
    assert (out / "epoch_777").is_symlink()
    assert (out / "ricap_00001.png").is_file()


@pytest.mark.parametrize("link", ["epoch_000", "epoch_000/majority"])
def test_a_planned_folder_that_links_out_of_the_output_folder_is_refused(classes, tmp_path,
                                                                        link):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / link).parent.mkdir(parents=True)
    (out / link).symlink_to(elsewhere, target_is_directory=True)
    result = ricap_cli(classes[0], "-o", out, "--count", 2, "--size", "20x20", "--epochs", 1,
                       "--hard-label", "majority", "--workers", 1)
    assert result.exit_code == 2
    assert "Error:" in result.output and "leads out of the output folder" in result.output
    assert list(elsewhere.iterdir()) == []
    assert not (out / ricap.SETTINGS_NAME).exists()


def test_a_second_run_into_a_locked_output_folder_is_refused(classes, tmp_path):
    from augcli.stores import LOCK_NAME, FolderStore

    out = tmp_path / "out"
    out.mkdir()
    with FolderStore(out).lock():
        result = ricap_cli(classes[0], "-o", out, "--count", 2, "--size", "20x20", "--workers", 1)
    assert result.exit_code == 2
    assert "another augcli run" in result.output
    assert sorted(p.name for p in out.iterdir()) == []
    result = ricap_cli(classes[0], "-o", out, "--count", 2, "--size", "20x20", "--workers", 1)
    assert result.exit_code == 0, result.output
    assert not (out / LOCK_NAME).exists()


def test_a_full_disk_stops_the_run_with_one_error_and_no_traceback(tmp_path):
    from .test_manifest import augcli

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for number in range(3):
            save(tmp_path / "in" / label / f"{number}.png",
                 rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    # Noise montages of 64x64 are about 12 KB each: the first one is over the limit.
    run = augcli("ricap", "in", "-o", "out", "--count", 6, "--size", "64x64", "--workers", 2,
                 cwd=tmp_path, limit_bytes=8000)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: cannot write ")
    assert "File too large" in errors[0]
    assert "failed" not in run.stderr
    out = tmp_path / "out"
    assert (out / ricap.LABELS_NAME).read_text().splitlines() == ["filename,a,b"]
    assert (out / ricap.MONTAGES_NAME).read_bytes() == b""
    assert not list(out.glob("ricap_*"))
