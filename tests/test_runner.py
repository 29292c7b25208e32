"""End-to-end runs through the library: names, manifest, determinism, resume, failures."""

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augcli.errors import UsageError
from augcli.plan import plan_run
from augcli.recipe import load_recipe
from augcli.render import derive_seed
from augcli.runner import MANIFEST_NAME, read_manifest, run_recipe

from .conftest import (
    folder_files,
    invoke,
    kill_when,
    mount_tmpfs,
    output_files,
    photo_like,
    run_cli,
    save,
    start_cli,
    unmount,
    write_recipe,
)

SOURCES = ["cats/felix.png", "cats/tom.jpg", "dogs/fido.webp", "dogs/rex.bmp"]


def test_outputs_are_named_after_source_variant_and_index(tmp_path, simple_recipe):
    report = run_recipe(simple_recipe, workers=1)
    out = tmp_path / "out"
    expected = {f"{Path(s).parent}/{Path(s).stem}_{variant}_{i}{Path(s).suffix}"
                for s in SOURCES for variant in ("noise", "mixed") for i in (1, 2)}
    assert set(output_files(out)) == expected
    assert (report.images_read, report.written, report.skipped, report.failures) == (4, 16, 0, [])
    assert report.exit_code == 0
    # Each output keeps its source's format and size.
    with Image.open(out / "dogs/fido_mixed_2.webp") as picture:
        assert picture.format == "WEBP" and picture.size == (64, 48)


def test_manifest_traces_every_output_to_its_source_and_parameters(tmp_path, simple_recipe):
    run_recipe(simple_recipe, workers=1)
    records = {r["output"]: r for r in read_manifest(tmp_path / "out")}
    assert len(records) == 16
    noise = records["cats/tom_noise_2.jpg"]
    assert noise["source"] == "cats/tom.jpg" and noise["variant"] == "noise"
    assert noise["index"] == 2
    assert noise["seed"] == derive_seed(7, "cats/tom.jpg", "noise", 2)
    (dropout,) = noise["ops"]
    assert dropout["dropout"]["p"] == 0.2  # the second swept value
    mixed = records["dogs/rex_mixed_1.bmp"]["ops"]
    affine = next(step["affine"] for step in mixed if "affine" in step)
    assert -15 <= affine["rotate"] <= 15 and -0.1 <= affine["translate_x"] <= 0.1


def test_replaying_manifest_parameters_reproduces_the_pixels(tmp_path, simple_recipe):
    """The recorded ops are enough to recompute an output: it is fully traceable."""
    from augcli.imagefiles import read_image
    from augcli.pipeline import Step, apply_steps

    run_recipe(simple_recipe, workers=1)
    record = next(r for r in read_manifest(tmp_path / "out") if r["output"] ==
                  "cats/felix_mixed_2.png")
    steps = [Step(*next(iter(step.items()))) for step in record["ops"]]
    replayed = apply_steps(read_image(tmp_path / "in" / record["source"]), steps)
    assert np.array_equal(replayed, read_image(tmp_path / "out" / record["output"]))


def test_same_seed_gives_identical_bytes_for_one_and_two_workers(tmp_path, simple_recipe):
    run_recipe(simple_recipe, output=tmp_path / "one", workers=1)
    run_recipe(simple_recipe, output=tmp_path / "two", workers=2)
    one, two = output_files(tmp_path / "one"), output_files(tmp_path / "two")
    assert len(one) == 16 and one == two
    manifest = (tmp_path / "one" / MANIFEST_NAME).read_bytes()
    assert manifest == (tmp_path / "two" / MANIFEST_NAME).read_bytes()


def test_a_different_seed_gives_different_outputs(tmp_path, simple_recipe):
    run_recipe(simple_recipe, output=tmp_path / "a", workers=1)
    run_recipe(simple_recipe, output=tmp_path / "b", workers=1, seed=8)
    a, b = output_files(tmp_path / "a"), output_files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert sum(a[name] != b[name] for name in a) >= 14


def test_rerun_after_interruption_finishes_only_the_rest(tmp_path, simple_recipe):
    run_recipe(simple_recipe, workers=1)
    out = tmp_path / "out"
    complete = output_files(out)
    # Simulate a killed run: some outputs never written, a torn manifest line,
    # and a stray temp file from the atomic writer.
    for name in ("cats/tom_mixed_1.jpg", "dogs/rex_noise_2.bmp"):
        (out / name).unlink()
    with open(out / MANIFEST_NAME, "a", encoding="utf-8") as manifest:
        manifest.write('{"output": "cats/tom_mix')
    untouched = out / "cats/felix_noise_1.png"
    mtime = untouched.stat().st_mtime_ns
    report = run_recipe(simple_recipe, workers=1)
    assert (report.written, report.skipped) == (2, 14)
    assert output_files(out) == complete
    assert untouched.stat().st_mtime_ns == mtime
    assert len(read_manifest(out)) == 16


def test_rerun_with_changed_seed_refuses_to_mix_unless_overwrite(tmp_path, simple_recipe):
    run_recipe(simple_recipe, workers=1)
    before = output_files(tmp_path / "out")
    with pytest.raises(UsageError, match=r"other settings \(seed 7 -> 99\).*--overwrite"):
        run_recipe(simple_recipe, workers=1, seed=99)
    assert output_files(tmp_path / "out") == before
    report = run_recipe(simple_recipe, workers=1, seed=99, overwrite=True)
    assert report.written == 16
    records = read_manifest(tmp_path / "out")
    assert {r["seed"] for r in records} == {derive_seed(99, r["source"], r["variant"], r["index"])
                                            for r in records}


def test_overwrite_removes_outputs_the_new_recipe_no_longer_makes(tmp_path, dataset):
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n"
                                    "  a: {copies: 2, ops: [fliplr]}\n")
    run_recipe(recipe, workers=1)
    smaller = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n"
                                     "  a: {copies: 1, ops: [flipud]}\n", name="smaller.yaml")
    run_recipe(smaller, workers=1, overwrite=True)
    names = set(output_files(tmp_path / "out"))
    assert names == {f"{Path(s).parent}/{Path(s).stem}_a_1{Path(s).suffix}" for s in SOURCES}


def test_unaccounted_files_in_the_output_folder_are_not_overwritten(tmp_path, simple_recipe):
    mine = tmp_path / "out" / "cats" / "tom_noise_1.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    with pytest.raises(UsageError, match="no manifest says where they came from"):
        run_recipe(simple_recipe, workers=1)
    assert mine.read_bytes() == b"my own file"


def test_bad_inputs_are_reported_and_the_rest_is_written(tmp_path, simple_recipe, dataset):
    (dataset / "cats" / "empty.jpg").write_bytes(b"")
    (dataset / "cats" / "notes.png").write_text("not a picture", encoding="utf-8")
    good = (dataset / "cats" / "tom.jpg").read_bytes()
    (dataset / "dogs" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (dataset / "README.txt").write_text("ignored", encoding="utf-8")
    messages = []
    report = run_recipe(simple_recipe, workers=2, notify=messages.append)
    failed = dict(report.failures)
    assert set(failed) == {"cats/empty.jpg", "cats/notes.png", "dogs/cut.jpg"}
    assert "empty" in failed["cats/empty.jpg"]
    assert report.written == 16 and report.images_read == 4
    assert report.exit_code == 1
    assert len(messages) == 3 and any(m.startswith("dogs/cut.jpg: ") for m in messages)
    assert [p.as_posix() for p in report.ignored] == ["README.txt"]
    assert not any(name.startswith(("cats/empty_", "dogs/cut_"))
                   for name in output_files(tmp_path / "out"))


def test_include_original_and_format_conversion(tmp_path, dataset):
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        include_original: true
        format: png
        variants: {flip: {ops: [{fliplr: {p: 1}}]}}
    """)
    run_recipe(recipe, workers=1)
    out = tmp_path / "out"
    assert (out / "cats/felix.png").read_bytes() == (dataset / "cats/felix.png").read_bytes()
    with Image.open(out / "cats/tom.png") as converted, Image.open(out / "cats/tom_flip_1.png") \
            as flipped:
        assert converted.format == flipped.format == "PNG"
        assert np.array_equal(np.asarray(flipped), np.asarray(converted)[:, ::-1])
    record = next(r for r in read_manifest(out) if r["output"] == "cats/tom.png")
    assert record["copy"] is True and record["variant"] is None


def test_jpeg_quality_from_the_recipe_is_used(tmp_path, dataset):
    sizes = {}
    for quality in (30, 95):
        recipe = write_recipe(tmp_path, f"input: in\noutput: q{quality}\nformat: jpg\n"
                                        f"quality: {quality}\nvariants: {{a: {{ops: [flipud]}}}}\n")
        run_recipe(recipe, workers=1)
        sizes[quality] = (tmp_path / f"q{quality}" / "cats/felix_a_1.jpg").stat().st_size
    assert sizes[30] < sizes[95] * 0.7


def test_output_inside_input_is_refused(tmp_path, simple_recipe, dataset):
    for output in (dataset, dataset / "cats" / "augmented"):
        with pytest.raises(UsageError, match="inside the input folder"):
            run_recipe(simple_recipe, output=output, workers=1)
    assert not (dataset / "cats" / "augmented").exists()


def test_two_sources_that_would_write_the_same_file_are_refused(tmp_path, dataset):
    save(dataset / "cats" / "tom.png", photo_like(seed=8))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nformat: jpg\n"
                                    "variants: {a: {ops: [fliplr]}}\n")
    with pytest.raises(UsageError, match="cats/tom.jpg and cats/tom.png would both write "
                                         "cats/tom_a_1.jpg"):
        run_recipe(recipe, workers=1)


def test_missing_or_empty_input_folder_is_a_usage_error(tmp_path, simple_recipe):
    with pytest.raises(UsageError, match="does not exist"):
        run_recipe(simple_recipe, input=tmp_path / "nowhere", workers=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        run_recipe(simple_recipe, input=tmp_path / "empty", workers=1)


def test_plan_counts_outputs_without_writing(tmp_path, simple_recipe):
    plan = plan_run(load_recipe(simple_recipe))
    assert plan.total_outputs == 16
    assert [task.relative for task in plan.tasks] == SOURCES
    assert not (tmp_path / "out").exists()


def test_exif_orientation_is_applied_before_augmenting(tmp_path):
    source = np.zeros((20, 40, 3), np.uint8)
    source[0:4, 0:4] = 255  # marker at the top-left of the stored pixels
    picture = Image.fromarray(source)
    exif = picture.getexif()
    exif[0x0112] = 6  # viewers rotate 90 degrees clockwise
    (tmp_path / "in").mkdir()
    picture.save(tmp_path / "in" / "phone.png", exif=exif)
    recipe = write_recipe(tmp_path, "input: in\noutput: out\n"
                                    "variants: {flip: {ops: [{fliplr: {p: 1}}]}}\n")
    run_recipe(recipe, workers=1)
    out = np.asarray(Image.open(tmp_path / "out" / "phone_flip_1.png"))
    assert out.shape == (40, 20, 3)  # portrait, as displayed
    assert out[0:4, 0:4].min() == 255  # marker top-right as displayed, then mirrored


def test_unicode_and_spaces_in_names(tmp_path):
    save(tmp_path / "in" / "chats noirs" / "été 1.JPG", photo_like(seed=6), format="JPEG")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants: {x: {ops: [fliplr]}}\n")
    report = run_recipe(recipe, workers=2)
    assert report.written == 1
    assert (tmp_path / "out" / "chats noirs" / "été 1_x_1.JPG").exists()
    assert read_manifest(tmp_path / "out")[0]["source"] == "chats noirs/été 1.JPG"


def test_temp_files_of_a_killed_run_are_cleaned_up(tmp_path, simple_recipe):
    run_recipe(simple_recipe, workers=1)
    stale = tmp_path / "out" / "cats" / ".augcli-abc123.tmp"
    stale.write_bytes(b"half an image")
    run_recipe(simple_recipe, workers=1)
    assert not stale.exists()


# --- balancing: target_per_class tops every class folder up to exactly N ---------------

BALANCE = """\
    input: in
    output: out
    target_per_class: 8
    variants:
      flip: {ops: [{fliplr: {p: 1}}, {affine: {scale: [0.8, 1.2]}}]}
      spin: {copies: 2, ops: [{rotate: {degrees: 30}}]}
"""


def make_classes(root: Path, sizes: dict) -> None:
    for tag, count in sizes.items():
        for i in range(count):
            save(root / "in" / tag / f"{tag}{i}.png", photo_like(24, 32, seed=hash(tag) % 99 + i))


def images_in(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".png")


def test_classes_below_target_reach_it_exactly_and_others_are_untouched(tmp_path):
    make_classes(tmp_path, {"cats": 3, "dogs": 1, "birds": 9})
    report = run_recipe(write_recipe(tmp_path, BALANCE), workers=1)
    out = tmp_path / "out"
    assert len(images_in(out / "cats")) == 8
    assert len(images_in(out / "dogs")) == 8
    assert images_in(out / "birds") == images_in(tmp_path / "in" / "birds")  # originals only
    for name in images_in(tmp_path / "in" / "cats"):
        assert (out / "cats" / name).read_bytes() == (tmp_path / "in" / "cats" / name).read_bytes()
    assert [(c.tag, c.before, c.after) for c in report.classes] == [
        ("birds", 9, 9), ("cats", 3, 8), ("dogs", 1, 8)]


def test_every_source_is_used_once_before_any_is_used_twice(tmp_path):
    make_classes(tmp_path, {"cats": 3})
    run_recipe(write_recipe(tmp_path, BALANCE), workers=1)
    extras = [r for r in read_manifest(tmp_path / "out") if r["variant"] is not None]
    per_source = Counter(r["source"] for r in extras)
    assert sum(per_source.values()) == 5
    assert per_source == {"cats/cats0.png": 2, "cats/cats1.png": 2, "cats/cats2.png": 1}
    # A source used twice gets both variants, not the same one again.
    for source in ("cats/cats0.png", "cats/cats1.png"):
        assert {r["variant"] for r in extras if r["source"] == source} == {"flip", "spin"}


def test_balancing_is_deterministic(tmp_path):
    make_classes(tmp_path, {"cats": 2, "dogs": 3})
    recipe = write_recipe(tmp_path, BALANCE)
    run_recipe(recipe, output=tmp_path / "a", workers=1)
    run_recipe(recipe, output=tmp_path / "b", workers=2)
    for tag in ("cats", "dogs"):
        names = images_in(tmp_path / "a" / tag)
        assert names == images_in(tmp_path / "b" / tag)
        for name in names:
            assert (tmp_path / "a" / tag / name).read_bytes() == \
                (tmp_path / "b" / tag / name).read_bytes()


def test_manifest_and_cli_show_per_class_counts(tmp_path):
    make_classes(tmp_path, {"cats": 2, "dogs": 10})
    recipe = write_recipe(tmp_path, BALANCE)
    dry = invoke("run", str(recipe), "--dry-run", "--per-class", "5")
    assert "class cats: 2 -> 5" in dry.output and "class dogs: 10 -> 10" in dry.output
    result = invoke("run", str(recipe), "-w", "1", "--per-class", "5")
    assert result.exit_code == 0, result.output
    assert "cats: 2 -> 5" in result.output
    assert "dogs: 10 (already at or above the target, nothing added)" in result.output
    lines = [json.loads(line) for line in
             (tmp_path / "out" / MANIFEST_NAME).read_text("utf-8").splitlines()]
    assert {"class": "cats", "before": 2, "after": 5} in lines
    assert len(images_in(tmp_path / "out" / "cats")) == 5


def test_changing_the_target_is_a_different_recipe(tmp_path):
    make_classes(tmp_path, {"cats": 2})
    recipe = write_recipe(tmp_path, BALANCE)
    run_recipe(recipe, workers=1)
    result = invoke("run", str(recipe), "--per-class", "4")
    assert result.exit_code == 2 and "(target_per_class 8 -> 4)" in result.output


# --- hostile inputs and output folders ----------------------------------------------------

def test_undecodable_source_is_not_counted_as_balanced(tmp_path):
    make_classes(tmp_path, {"cats": 2})
    (tmp_path / "in" / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = invoke("run", str(write_recipe(tmp_path, BALANCE)), "-w", "1")
    assert result.exit_code == 1
    written = len(images_in(tmp_path / "out" / "cats"))
    assert f"cats: 3 -> {written}" in result.output and written < 8
    lines = [json.loads(line) for line in
             (tmp_path / "out" / MANIFEST_NAME).read_text("utf-8").splitlines()]
    assert {"class": "cats", "before": 3, "after": written} in lines


def test_symlinked_class_folders_are_followed_without_loops(tmp_path, simple_recipe, dataset):
    elsewhere = tmp_path / "birds"
    save(elsewhere / "tweety.png", photo_like(seed=8))
    (dataset / "birds").symlink_to(elsewhere)
    (dataset / "cats" / "loop").symlink_to(dataset)  # would walk forever if followed blindly
    report = run_recipe(simple_recipe, workers=1)
    assert report.images_read == 5 and report.exit_code == 0
    assert (tmp_path / "out" / "birds" / "tweety_noise_1.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder whatever its mode")
def test_an_unreadable_subfolder_is_a_failure_with_its_path(tmp_path, simple_recipe, dataset):
    os.chmod(dataset / "dogs", 0)
    try:
        result = invoke("run", str(simple_recipe), "-w", "1")
    finally:
        os.chmod(dataset / "dogs", 0o755)
    assert result.exit_code == 1, result.output
    assert "failed: dogs/: cannot read this folder (Permission denied)" in result.output
    assert (tmp_path / "out" / "cats" / "tom_noise_1.jpg").exists()


def test_a_fifo_named_like_an_image_is_skipped(tmp_path, dataset):
    os.mkfifo(dataset / "cats" / "pipe.jpg")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nprofile: custom-vision\n"
                                    "variants: {a: {ops: [fliplr]}}\n")
    report = run_recipe(recipe, workers=1)  # would block forever opening the FIFO
    assert report.exit_code == 0 and "cats/pipe.jpg" in [p.as_posix() for p in report.ignored]


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_corrupt_source_with_a_profile_is_a_failure_not_a_crash(tmp_path, dataset, dry_run):
    (dataset / "cats" / "empty.webp").write_bytes(b"")
    (dataset / "cats" / "junk.tif").write_bytes(b"II*\x00junk")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nprofile: custom-vision\n"
                                    "variants: {a: {ops: [fliplr]}}\n")
    result = invoke("run", str(recipe), "-w", "1",
                    *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1, result.output  # a dry run exits as the run would
    assert "failed: cats/empty.webp: cannot read the image header" in result.output
    assert "failed: cats/junk.tif: cannot read the image header" in result.output


def test_an_output_folder_that_cannot_be_written_is_one_line_exit_2(tmp_path, simple_recipe):
    (tmp_path / "file").write_text("a regular file", encoding="utf-8")
    result = invoke("run", str(simple_recipe), "-o",
                    str(tmp_path / "file" / "out"), "-w", "1")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: cannot write {tmp_path / 'file' / 'out'}: Not a directory"]


def test_a_read_only_file_system_is_one_line_exit_2(tmp_path, simple_recipe):
    mount = tmp_path / "ro"
    mount.mkdir()
    if not mount_tmpfs(mount, "ro,size=64k"):
        pytest.skip("mounting a read-only tmpfs needs root")
    try:
        result = invoke("run", str(simple_recipe), "-o", str(mount), "-w", "1")
    finally:
        unmount(mount)
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: cannot write {mount}/.augcli.lock: Read-only file "
                                    "system")
    assert len(result.output.strip().splitlines()) == 1


def test_an_output_name_too_long_is_that_outputs_failure(tmp_path):
    save(tmp_path / "in" / ("x" * 245 + ".png"), photo_like())
    save(tmp_path / "in" / "ok.png", photo_like(seed=1))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants: {long: {ops: [fliplr]}}\n")
    report = run_recipe(recipe, workers=1)
    assert report.written == 1 and report.exit_code == 1
    reason = "cannot write: the output file name is too long for the file system"
    assert report.failures == [("x" * 245 + "_long_1.png", reason)]


def test_an_immutable_manifest_is_one_line_exit_2(tmp_path, simple_recipe):
    run_recipe(simple_recipe, workers=1)
    manifest_path = tmp_path / "out" / MANIFEST_NAME
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", str(manifest_path)],
                                           capture_output=True, check=False).returncode:
        pytest.skip("chattr +i needs root and a file system that supports it")
    try:
        result = invoke("run", str(simple_recipe), "-w", "1")
    finally:
        subprocess.run(["chattr", "-i", str(manifest_path)], check=False)
    assert result.exit_code == 2
    assert result.output == f"Error: cannot write {manifest_path}: Operation not permitted\n"


def test_an_output_over_the_pixel_limit_fails_alone(tmp_path, dataset):
    # a 64 x 48 input resized to 12,000 px wide is 12,000 x 9,000: 108 million pixels,
    # over the 100 million inputs have too. That output fails; the others are written.
    # (A wider input would fit, so the recipe itself is valid.)
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          huge: {ops: [{resize: {width: 12000}}]}
          flip: {ops: [{fliplr: {p: 1}}]}
    """)
    report = run_recipe(recipe, workers=1)
    assert report.written == 4 and len(report.failures) == 4
    assert all("resize would make a 12000 x 9000 image, over the limit of 100,000,000 pixels"
               in reason for _, reason in report.failures)
    assert not list((tmp_path / "out").rglob("*_huge_*"))


# --- the output folder holds only what the run accounts for; --dry-run tells the truth ---

UPLOAD = """\
    input: in
    output: upload
    seed: 0
    target_per_class: 4
    variants:
      turn: {ops: [{rotate: {degrees: [-20, 20]}}]}
"""


def make_input(tmp_path):
    for tag in ("cat", "cup"):
        save(tmp_path / "in" / tag / f"{tag}.png", photo_like(seed=len(tag) + ord(tag[1])))
    return write_recipe(tmp_path, UPLOAD)


def test_a_stray_photo_in_the_output_folder_stops_the_run(tmp_path):
    recipe = make_input(tmp_path)
    stray = tmp_path / "upload" / "cat" / "holiday.jpg"
    save(stray, photo_like(seed=99), quality=90)
    (tmp_path / "upload" / "cat" / ".DS_Store").write_bytes(b"finder")  # hidden: not counted
    result = invoke("run", recipe, "-w", "1")
    assert result.exit_code == 2
    assert "holds 1 file(s) that no manifest says where they came from (cat/holiday.jpg)" \
        in result.output
    assert sorted(folder_files(tmp_path / "upload")) == ["cat/.DS_Store", "cat/holiday.jpg"]
    # --overwrite goes ahead and never deletes a file augcli did not write
    assert invoke("run", recipe, "-w", "1", "--overwrite").exit_code == 0
    assert stray.exists() and len(read_manifest(tmp_path / "upload")) == 8


def test_a_file_added_after_a_run_stops_the_rerun(tmp_path):
    recipe = make_input(tmp_path)
    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 0
    before = folder_files(tmp_path / "upload")
    (tmp_path / "upload" / "cup" / "notes.txt").write_text("to do")
    save(tmp_path / "upload" / "extra" / "x.png", photo_like(seed=5))
    result = invoke("run", recipe, "-w", "1")
    assert result.exit_code == 2 and "(cup/notes.txt, extra/x.png)" in result.output
    (tmp_path / "upload" / "cup" / "notes.txt").unlink()
    (tmp_path / "upload" / "extra" / "x.png").unlink()
    assert invoke("run", recipe, "-w", "1").exit_code == 0
    assert folder_files(tmp_path / "upload") == before


def test_a_killed_run_is_resumed_even_with_an_unrecorded_output(tmp_path):
    recipe = make_input(tmp_path)
    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 0
    complete = folder_files(tmp_path / "upload")
    manifest = tmp_path / "upload" / MANIFEST_NAME
    records = read_manifest(tmp_path / "upload")
    cup = [r for r in records if r["source"] == "cup/cup.png"]
    # killed after a worker wrote cup's outputs but before the parent recorded them: the
    # journal holds the line saying cup.png was handed to a worker and what it writes
    started = {"started": "cup/cup.png", "outputs": [r["output"] for r in cup],
               "recipe": cup[0]["recipe"]}
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records if r not in cup) +
                        json.dumps(started) + "\n")
    result = invoke("run", recipe, "-w", "1")
    assert result.exit_code == 0 and "4 outputs written, 4 skipped" in result.output
    assert folder_files(tmp_path / "upload") == complete


def test_dry_run_reports_what_is_done_and_refuses_what_the_run_refuses(tmp_path):
    recipe = make_input(tmp_path)
    fresh = invoke("run", recipe, "--dry-run")
    assert fresh.exit_code == 0 and "already done" not in fresh.output
    assert "total: 2 sources -> 8 outputs" in fresh.output
    assert not (tmp_path / "upload").exists()

    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 0
    records = read_manifest(tmp_path / "upload")
    manifest = tmp_path / "upload" / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records[:5]))
    for record in records[5:]:  # not made yet
        (tmp_path / "upload" / record["output"]).unlink()
    before = folder_files(tmp_path / "upload")
    partial = invoke("run", recipe, "--dry-run")
    assert partial.exit_code == 0
    assert "upload, 5 already done (a run skips them)" in partial.output

    other_seed = invoke("run", recipe, "--dry-run", "--seed", "4")
    assert other_seed.exit_code == 2 and "different recipe, seed or input folder" in \
        other_seed.output  # a manifest without its settings line, as older runs wrote
    assert invoke("run", recipe, "--dry-run", "--seed", "4", "--overwrite").exit_code == 0

    save(tmp_path / "upload" / "cat" / "stray.png", photo_like(seed=8))
    stray = invoke("run", recipe, "--dry-run")
    assert stray.exit_code == 2 and "cat/stray.png" in stray.output
    (tmp_path / "upload" / "cat" / "stray.png").unlink()
    assert folder_files(tmp_path / "upload") == before  # a dry run writes and deletes nothing


def test_dry_run_exit_code_is_1_when_inputs_would_fail(tmp_path):
    recipe = make_input(tmp_path)
    recipe.write_text(recipe.read_text() + "annotations: {format: regions}\n")
    (tmp_path / "in" / "cat" / "cat.json").write_text('{"regions": [{"tagName": "cat"}]}')
    (tmp_path / "in" / "cup" / "cup.json").write_text('{"regions": []}')
    result = invoke("run", recipe, "--dry-run")
    assert result.exit_code == 1 and "failed: " in result.output
    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 1


@pytest.mark.slow
def test_a_run_killed_part_way_through_a_source_leaves_a_rerun_that_finishes(tmp_path):
    # The real run and its workers are killed (SIGKILL) while sources have some but not all
    # of their outputs written: the same command again finishes
    # the folder (it must not refuse those files as unaccounted for) with a clean run's bytes.
    copies = 20
    for index in range(4):
        save(tmp_path / "in" / f"p{index}.png", photo_like(360, 480, seed=index))
    recipe = write_recipe(tmp_path, f"""\
        input: in
        output: out
        seed: 5
        variants: {{spin: {{copies: {copies}, ops: [{{rotate: {{degrees: [-30, 30]}}}}]}}}}
    """)
    out = tmp_path / "out"

    def part_way() -> list:
        """The sources with some but not all of their outputs in the folder."""
        made = Counter(path.name.split("_spin_")[0] for path in out.glob("*_spin_*.png"))
        return [source for source, count in made.items() if count < copies]

    kill_when(start_cli("run", recipe, "-w", 2, "-q", cwd=tmp_path), lambda: bool(part_way()))
    cut = part_way()
    assert cut, "the run was not killed part-way through a source"
    # outputs are journalled as they are published: every record of a cut source names a
    # file that is there, and its other files are the rerun's to make
    recorded = [record["output"] for record in read_manifest(out)
                if record["source"] in {f"{source}.png" for source in cut}]
    assert all((out / name).is_file() for name in recorded)

    rerun = run_cli("run", recipe, "-w", 2, "-q", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    clean = run_cli("run", recipe, "-o", tmp_path / "clean", "-w", 2, "-q", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert len(output_files(tmp_path / "clean")) == 4 * copies
    assert output_files(out) == output_files(tmp_path / "clean")


# --- streaming: the plan and the manifest are not held in the parent -------------------------

def test_a_plan_of_millions_of_outputs_holds_only_its_sources(tmp_path):
    """300 sources x 10,000 copies: planning takes memory per source, not per output (a
    plan that built its tasks would hold three million OutputPlans)."""
    import tracemalloc

    for index in range(300):
        save(tmp_path / "in" / f"s{index:03d}.png", photo_like(8, 8, seed=index))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\n"
                                    "variants: {a: {copies: 10000, ops: [fliplr]}}\n")
    tracemalloc.start()
    try:
        plan = plan_run(load_recipe(recipe))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan.total_outputs == 3_000_000
    assert peak < 4 * 1024 * 1024, peak  # ~1 KB an output if they were built: ~3 GB
    task = plan.tasks[299]  # a task is built when asked for, with every output
    assert task.relative == "s299.png" and len(task.outputs) == 10_000
    assert task.outputs[-1].relative == "s299_a_10000.png"
    assert task.outputs[-1].seed == derive_seed(load_recipe(recipe).seed, "s299.png", "a",
                                                10_000)


class Stop(Exception):
    pass


def test_tasks_are_built_as_workers_take_them(tmp_path, monkeypatch):
    """A run stopped at its first result has built only the tasks of its bounded window,
    not one per source."""
    from augcli import plan as planning

    built = []
    task = planning.Plan.task
    monkeypatch.setattr(planning.Plan, "task", lambda plan, *args: built.append(1) or
                        task(plan, *args))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a000.png").write_bytes(b"not an image")
    for index in range(1, 200):
        save(tmp_path / "in" / f"a{index:03d}.png", photo_like(8, 8, seed=index))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\n"
                                    "variants: {a: {copies: 2, ops: [fliplr]}}\n")

    def notify(line):
        raise Stop(line)

    with pytest.raises(Stop):
        run_recipe(recipe, workers=2, notify=notify)
    assert 0 < len(built) < 40  # 2 workers x 4 tasks in flight, and those replacing results
    # what finished before the stop is in the manifest, sorted by output name
    records = read_manifest(tmp_path / "out")
    assert [r["output"] for r in records] == sorted(r["output"] for r in records)


@pytest.mark.slow
def test_the_manifest_is_the_same_when_its_records_spill_to_disk(tmp_path, monkeypatch):
    """Records kept in many sorted runs on disk give the manifest of records kept in memory,
    byte for byte, and leave no file behind."""
    from augcli import manifest

    for index in range(30):
        save(tmp_path / "in" / f"c{index % 3}" / f"p{index:02d}.png", photo_like(8, 8, seed=index))
    recipe = write_recipe(tmp_path, "input: in\nvariants:\n"
                                    "  a: {copies: 3, ops: [{dropout: {p: [0.05, 0.3]}}]}\n"
                                    "  b: {copies: 11, ops: [{dropout: {p: [0.05, 0.3]}}]}\n")
    run_recipe(recipe, output=tmp_path / "memory", workers=2)
    monkeypatch.setattr(manifest, "SPILL_BYTES", 2000)  # a run every few records
    monkeypatch.setattr(manifest, "MERGE_RUNS", 3)  # and merges of runs, and of merged runs
    report = run_recipe(recipe, output=tmp_path / "spilled", workers=2)
    assert report.written == 30 * 14
    memory = (tmp_path / "memory" / MANIFEST_NAME).read_bytes()
    spilled = (tmp_path / "spilled" / MANIFEST_NAME).read_bytes()
    lines = [json.loads(line) for line in memory.splitlines() if b'"output"' in line]
    assert [line["output"] for line in lines] == sorted(line["output"] for line in lines)
    assert spilled == memory
    assert sorted(p.name for p in (tmp_path / "spilled").iterdir()) == ["c0", "c1", "c2",
                                                                         MANIFEST_NAME]


@pytest.mark.parametrize("names, clash", [
    # a source named like another's output
    (["a.png", "a_f_1.png"], "a.png and a_f_1.png would both write a_f_1.png"),
    # and one step removed: a_f_1's output is another's own copy
    (["a_f_1.png", "a_f_1_f_1.png", "b.png"],
     "a_f_1.png and a_f_1_f_1.png would both write a_f_1_f_1.png"),
    # a dot in the stem
    (["x.y.png", "x.y_f_2.png", "x.png"], "x.y.png and x.y_f_2.png would both write x.y_f_2.png"),
])
def test_a_source_named_like_another_sources_output_is_refused(tmp_path, names, clash):
    for index, name in enumerate(names):
        save(tmp_path / "in" / name, photo_like(8, 8, seed=index))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\ninclude_original: true\n"
                                    "variants: {f: {copies: 2, ops: [fliplr]}}\n")
    with pytest.raises(UsageError, match=clash):
        run_recipe(recipe, workers=1)
    assert not (tmp_path / "out").exists()


def test_sources_whose_names_only_look_alike_do_not_clash(tmp_path):
    for index, name in enumerate(["a.png", "a_f.png", "a_f_1x.png", "a.b.png", "a-f_1.png"]):
        save(tmp_path / "in" / name, photo_like(8, 8, seed=index))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\ninclude_original: true\n"
                                    "variants: {f: {copies: 2, ops: [{dropout: {p: 0.2}}]}}\n")
    assert run_recipe(recipe, workers=1).written == 15


# --- spare cores: a worker publishes while it renders the next output --------------------------

def test_helper_threads_go_only_to_cores_that_sources_leave_idle():
    from augcli.runner import publish_threads

    # (workers asked for, worker processes a run's sources keep busy) -> threads per process
    assert [publish_threads(w, n) for w, n in [(2, 1), (4, 2), (16, 5), (16, 1), (3, 2),
                                               (4, 4), (16, 16), (1, 1)]] == \
        [1, 1, 2, 2, 0, 0, 0, 0]


def test_the_last_sources_of_a_run_get_the_cores_they_leave_idle(tmp_path):
    """Publish threads per task by its place in the run: a source near the end of the run
    runs with fewer others, so its worker may use the cores they leave."""
    from augcli.runner import _with_publish_threads

    for index in range(20):
        save(tmp_path / "in" / f"s{index:02d}.png", photo_like(8, 8, seed=index))
    plan = plan_run(load_recipe(write_recipe(tmp_path, "input: in\noutput: out\n"
                                                       "variants: {a: {ops: [fliplr]}}\n")))
    threads = [task.publish_threads for task in _with_publish_threads(plan.tasks, 20, 16)]
    assert threads == [0] * 12 + [1] * 3 + [2] * 5
    assert [task.publish_threads
            for task in _with_publish_threads(plan.tasks[:3], 3, 2)] == [0, 0, 1]
    assert [task.publish_threads for task in _with_publish_threads(plan.tasks[:2], 2, 4)] == \
        [1, 2]  # the last runs alone in the end


def test_one_source_on_many_workers_gives_the_bytes_and_records_of_one_worker(tmp_path):
    """One source, 30 outputs, 4 workers: one process renders, two threads publish. Files,
    records and their order are those of a single worker publishing each in turn; an
    output whose file cannot be written (a folder holds its name) fails alone."""
    save(tmp_path / "in" / "tom.png", photo_like(96, 128, seed=7))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nseed: 3\nformat: jpg\nvariants:\n"
                                    "  spin: {copies: 30, ops: [{rotate: {degrees: [-30, 30]}},"
                                    " {dropout: {p: 0.05}}]}\n")
    outputs = {}
    for workers in (1, 4):
        out = tmp_path / f"out{workers}"
        (out / "tom_spin_7.jpg").mkdir(parents=True)
        report = run_recipe(recipe, output=out, workers=workers)
        assert (report.written, report.exit_code) == (29, 1)
        assert [path for path, _ in report.failures] == ["tom_spin_7.jpg"]
        outputs[workers] = (folder_files(out), read_manifest(out))
    files, records = outputs[4]
    assert files.keys() == outputs[1][0].keys() and len(files) == 30  # 29 images + manifest
    assert files == {**outputs[1][0], MANIFEST_NAME: files[MANIFEST_NAME]}
    assert [r["output"] for r in records] == [r["output"] for r in outputs[1][1]]
    assert [r["ops"] for r in records] == [r["ops"] for r in outputs[1][1]]


def test_a_source_deleted_after_planning_fails_alone_with_the_words_of_every_command(tmp_path):
    """The worker asks for the source only once it takes it: gone by then, it is that
    source's failure, worded as normalize and ricap word it (imagefiles.read_source)."""
    from augcli.worker import process_source

    save(tmp_path / "in" / "a.png", photo_like(16, 16, seed=1))
    save(tmp_path / "in" / "b.png", photo_like(16, 16, seed=2))
    plan = plan_run(load_recipe(write_recipe(tmp_path, "input: in\noutput: out\n"
                                                       "variants: {a: {ops: [fliplr]}}\n")))
    (tmp_path / "in" / "a.png").unlink()
    gone, kept = (process_source(task) for task in plan.tasks)
    assert gone.failures == [("a.png", "file not found (was it moved or deleted during the "
                                        "run?)")] and not gone.records
    assert not kept.failures and [r["output"] for r in kept.records] == ["b_a_1.png"]


def _buggy_apply(image, params):
    """An op with a bug that shows only on real sources (the variety check's sample image is
    48 x 64): it raises a ValueError, as a slip in an op's arithmetic would."""
    if image.shape[0] > 100:
        raise ValueError("a bug in an op")
    return image


def test_a_bug_in_an_op_surfaces_instead_of_failing_one_output_as_a_write(tmp_path,
                                                                          monkeypatch):
    """Only the errors that fail one output (writes, memory, a duplicate or oversized
    output) are reported per output; a ValueError from an op is a bug, and it is raised,
    not reported as "cannot write" with exit 1."""
    from augcli.ops import CATALOG, Op

    monkeypatch.setitem(CATALOG, "buggy", Op(name="buggy", summary="raises on real images",
                                             params=(), example="- buggy: {}",
                                             apply=_buggy_apply))
    save(tmp_path / "in" / "a.png", photo_like(120, 160))
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          bug: {ops: [{buggy: {}}]}
        """)
    with pytest.raises(ValueError, match="a bug in an op"):
        run_recipe(recipe, workers=1)
    assert not list((tmp_path / "out").glob("a_bug_*"))
