"""augcli check and the profiles: each problem flagged on purpose-made files, through
the library and the command line."""

import json
import pickle
import shutil
from functools import partial

import numpy as np
import pytest

from augcli import check as ck
from augcli.check import check_folder, format_report
from augcli.errors import UsageError
from augcli.profiles import CUSTOM_VISION, GENERIC, MIB, PROFILES, get_profile

from .conftest import invoke, photo_like, save

check_cli = partial(invoke, "check")  # augcli check ARGS...


def conforming(folder, tags=("cat", "cup"), count=5):
    """``count`` distinct 300 x 260 JPEGs in each tag folder: passes custom-vision."""
    for t, tag in enumerate(tags):
        for i in range(count):
            save(folder / tag / f"{tag}{i}.jpg", photo_like(260, 300, seed=10 * t + i),
                 quality=90)
    return folder


def kinds(report, path):
    return {(f.kind, f.severity) for f in report.findings if f.path == path}


def row(report, tag):
    return next(r for r in report.tags if r.tag == tag)


# --- a folder that passes --------------------------------------------------------

def test_a_conforming_folder_is_ready_and_exits_0(tmp_path):
    folder = conforming(tmp_path / "set")
    report = check_folder(folder, "custom-vision", "classification")
    assert report.ready and report.findings == [] and report.exit_code == 0
    assert [(r.tag, r.images, r.usable, r.minimum, r.recommended, r.status)
            for r in report.tags] == [("cat", 5, 5, 5, 30, ck.BELOW_RECOMMENDED),
                                      ("cup", 5, 5, 5, 30, ck.BELOW_RECOMMENDED)]
    assert report.upload_batches == 1

    result = check_cli(folder)
    assert result.exit_code == 0, result.output
    assert "cat  " in result.output and "below-recommended: 25 more recommended" in result.output
    assert "Ready for custom-vision: 10 images in 2 tag(s); 0 error(s), 0 warning(s)." \
        in result.output


def test_json_output_parses_and_has_the_same_verdict(tmp_path):
    folder = conforming(tmp_path / "set")
    save(folder / "cup" / "tiny.png", photo_like(100, 100))
    good = check_cli(folder, "--json")
    data = json.loads(good.output)
    assert good.exit_code == 0 and data["ready"] is True
    assert data["profile"] == "custom-vision" and data["task"] == "classification"
    assert data["findings"] == [{"path": "cup/tiny.png", "kind": "side-too-small",
                                 "severity": "warning", "message": data["findings"][0]["message"]}]
    assert data["tags"][1] == {"tag": "cup", "images": 6, "usable": 6, "minimum": 5,
                               "recommended": 30, "status": "below-recommended"}

    (folder / "cat" / "cat0.jpg").unlink()  # cat drops to 4
    bad = check_cli(folder, "--json")
    data = json.loads(bad.output)
    assert bad.exit_code == check_cli(folder).exit_code == 1
    assert data["ready"] is False and data["tags"][0]["status"] == "too-few"
    assert data == check_folder(folder).to_json()


def test_quiet_prints_nothing_and_the_exit_code_is_the_verdict(tmp_path):
    folder = conforming(tmp_path / "set")
    ready = check_cli(folder, "--quiet")
    assert ready.exit_code == 0 and ready.output == ""
    (folder / "cat" / "cat0.jpg").unlink()  # cat drops to 4: not ready
    not_ready = check_cli(folder, "-q")
    assert not_ready.exit_code == 1 and not_ready.output == ""


# --- each problem, on its own ----------------------------------------------------

def test_a_file_over_6_mib_is_an_error(tmp_path):
    folder = conforming(tmp_path / "set")
    big = save(folder / "cat" / "big.bmp", np.zeros((1400, 1500, 3), np.uint8))
    assert big.stat().st_size > 6 * MIB == CUSTOM_VISION.max_file_bytes
    report = check_folder(folder)
    assert kinds(report, "cat/big.bmp") == {(ck.FILE_TOO_LARGE, ck.ERROR)}
    assert not report.ready and row(report, "cat").usable == 5
    result = check_cli(folder)
    assert result.exit_code == 1
    assert "6,300,054 bytes) is over the limit of 6 MiB (6,291,456 bytes)" in result.output
    assert check_folder(folder, "generic").ready  # no size limit there


def test_a_100x100_image_is_only_a_warning(tmp_path):
    folder = conforming(tmp_path / "set")
    save(folder / "cat" / "small.png", photo_like(100, 100))
    report = check_folder(folder)
    assert kinds(report, "cat/small.png") == {(ck.SIDE_TOO_SMALL, ck.WARNING)}
    assert report.ready and row(report, "cat").usable == 6
    result = check_cli(folder)
    assert result.exit_code == 0 and "upscales it" in result.output


def test_an_aspect_ratio_over_25_to_1_is_an_error(tmp_path):
    folder = conforming(tmp_path / "set")
    save(folder / "cat" / "wide.png", np.zeros((256, 6500), np.uint8))  # 25.4:1, sides in range
    save(folder / "cat" / "just.png", np.zeros((256, 6400), np.uint8))  # exactly 25:1 is fine
    report = check_folder(folder)
    assert kinds(report, "cat/wide.png") == {(ck.ASPECT_RATIO, ck.ERROR)}
    assert kinds(report, "cat/just.png") == set()
    assert not report.ready


def test_a_side_over_10240_px_is_an_error(tmp_path):
    folder = conforming(tmp_path / "set")
    save(folder / "cup" / "long.png", np.zeros((1000, 10_300), np.uint8))  # ratio 10.3:1
    report = check_folder(folder)
    assert kinds(report, "cup/long.png") == {(ck.SIDE_TOO_LARGE, ck.ERROR)}
    assert not report.ready and check_folder(folder, "generic").ready


def test_webp_is_unsupported_for_custom_vision_but_fine_for_generic(tmp_path):
    folder = conforming(tmp_path / "set")
    save(folder / "cat" / "photo.webp", photo_like(260, 300), lossless=True)
    report = check_folder(folder)
    assert kinds(report, "cat/photo.webp") == {(ck.UNSUPPORTED_FORMAT, ck.ERROR)}
    assert not report.ready
    assert check_cli(folder, "--profile", "generic").exit_code == 0
    assert check_folder(folder, GENERIC).findings == []


def test_the_format_is_judged_by_content_not_by_extension(tmp_path):
    folder = conforming(tmp_path / "set")
    save(folder / "cat" / "really_png.jpg", photo_like(260, 300), format="PNG")
    save(folder / "cat" / "really_webp.png", photo_like(260, 300), format="WEBP")
    report = check_folder(folder)
    assert kinds(report, "cat/really_png.jpg") == {(ck.EXTENSION_MISMATCH, ck.WARNING)}
    assert kinds(report, "cat/really_webp.png") == {(ck.UNSUPPORTED_FORMAT, ck.ERROR),
                                                    (ck.EXTENSION_MISMATCH, ck.WARNING)}


def test_truncated_corrupt_and_empty_files_are_unreadable(tmp_path):
    folder = conforming(tmp_path / "set")
    whole = (folder / "cat" / "cat0.jpg").read_bytes()
    (folder / "cat" / "truncated.jpg").write_bytes(whole[:len(whole) // 2])
    (folder / "cat" / "text.jpg").write_text("not a picture")
    (folder / "cat" / "empty.png").write_bytes(b"")
    report = check_folder(folder)
    for name in ("truncated.jpg", "text.jpg", "empty.png"):
        assert kinds(report, f"cat/{name}") == {(ck.UNREADABLE, ck.ERROR)}, name
    assert "truncated" in next(f.message for f in report.findings
                               if f.path == "cat/truncated.jpg")
    assert row(report, "cat").images == 8 and row(report, "cat").usable == 5
    assert not report.ready and not check_folder(folder, "generic").ready


def test_an_image_over_the_pixel_limit_is_checked_by_header_only(tmp_path):
    path = save(tmp_path / "a.png", photo_like(260, 300))
    findings, digest = ck.inspect_file(path, "a.png", CUSTOM_VISION, max_pixels=1000)
    assert [(f.kind, f.severity) for f in findings] == [(ck.NOT_DECODED, ck.WARNING)]
    assert len(digest) == 64


def test_identical_files_in_one_tag_are_a_warning_naming_both(tmp_path):
    folder = conforming(tmp_path / "set")
    shutil.copy(folder / "cat" / "cat1.jpg", folder / "cat" / "zz_copy.jpg")
    shutil.copy(folder / "cat" / "cat1.jpg", folder / "cup" / "also.jpg")  # other tag: fine
    report = check_folder(folder)
    [duplicate] = [f for f in report.findings if f.kind == ck.DUPLICATE]
    assert (duplicate.path, duplicate.severity) == ("cat/zz_copy.jpg", ck.WARNING)
    assert "cat/cat1.jpg" in duplicate.message
    assert (row(report, "cat").images, row(report, "cat").usable) == (6, 5)
    assert report.ready


def test_a_copy_does_not_count_towards_the_minimum(tmp_path):
    folder = conforming(tmp_path / "set", count=4)
    shutil.copy(folder / "cat" / "cat1.jpg", folder / "cat" / "cat1_again.jpg")
    report = check_folder(folder)
    assert (row(report, "cat").images, row(report, "cat").usable) == (5, 4)
    assert row(report, "cat").status == ck.TOO_FEW and not report.ready


def test_a_tag_with_3_images_is_too_few_for_classification(tmp_path):
    folder = conforming(tmp_path / "set")
    conforming(folder, tags=("mug",), count=3)
    report = check_folder(folder)
    assert row(report, "mug").status == ck.TOO_FEW and report.findings == []
    assert [r.tag for r in report.tags_too_few] == ["mug"] and not report.ready
    result = check_cli(folder)
    assert result.exit_code == 1
    assert "too-few: 2 more needed" in result.output
    assert "1 tag(s) under the minimum of 5 usable images" in result.output


def test_detection_needs_15_images_per_tag(tmp_path):
    folder = conforming(tmp_path / "set")
    report = check_folder(folder, "custom-vision", "detection")
    assert {r.minimum for r in report.tags} == {15} and not report.ready
    result = check_cli(folder, "--task", "detection")
    assert result.exit_code == 1 and "too-few: 10 more needed" in result.output
    assert "not counted yet" in result.output


# --- tags, ignored files, the report text ----------------------------------------

def test_tags_are_folders_holding_images_and_the_root_is_dot(tmp_path):
    folder = tmp_path / "set"
    save(folder / "top.jpg", photo_like(260, 300, seed=1))
    conforming(folder / "pets", tags=("dogs",), count=1)
    (folder / "pets" / "readme.txt").write_text("about the pets")
    (folder / "empty").mkdir()
    report = check_folder(folder, "generic")
    assert [(r.tag, r.images) for r in report.tags] == [(".", 1), ("pets/dogs", 1)]
    assert report.ignored == ["pets/readme.txt"] and report.ready
    assert "ignored 1 file(s) that are not images by name" in format_report(report)


def test_findings_are_grouped_by_file_in_the_text(tmp_path):
    folder = conforming(tmp_path / "set")
    save(folder / "cat" / "tiny.webp", photo_like(100, 100), lossless=True)
    text = format_report(check_folder(folder))
    lines = text.splitlines()
    at = lines.index("cat/tiny.webp")
    assert lines[at + 1].split()[:2] == ["error", "unsupported-format"]
    assert lines[at + 2].split()[:2] == ["warning", "side-too-small"]
    assert text.endswith("Upload 10 images in 1 batch(es) of at most 64.")


def test_an_empty_folder_is_not_ready(tmp_path):
    (tmp_path / "set").mkdir()
    result = check_cli(tmp_path / "set")
    assert result.exit_code == 1 and "no images found" in result.output


# --- usage errors and profiles ----------------------------------------------------

def test_usage_errors_exit_2(tmp_path):
    missing = check_cli(tmp_path / "nowhere")
    assert missing.exit_code == 2 and "Error: no folder" in missing.output
    conforming(tmp_path / "set", count=1)
    typo = check_cli(tmp_path / "set", "--profile", "custom-vison", "--json")
    assert typo.exit_code == 2
    assert "unknown profile 'custom-vison' (did you mean 'custom-vision'?)" in typo.output
    assert check_cli(tmp_path / "set", "--task", "segmentation").exit_code == 2


def test_get_profile_names_the_closest_on_a_typo():
    assert get_profile("custom-vision") is CUSTOM_VISION and get_profile(GENERIC) is GENERIC
    with pytest.raises(UsageError, match="did you mean 'generic'"):
        get_profile("generik")
    with pytest.raises(UsageError, match="choose one of azureml-automl, custom-vision, generic"):
        get_profile("zzz")


def test_profiles_are_frozen_picklable_data():
    for name, profile in PROFILES.items():
        assert profile.name == name and profile.source
        assert pickle.loads(pickle.dumps(profile)) == profile
        hash(profile)
        for task in ("classification", "detection"):
            assert 1 <= profile.min_images(task) <= profile.recommended_images(task)
    assert CUSTOM_VISION.formats == {"jpg", "png", "bmp", "gif"}
    assert (CUSTOM_VISION.max_file_bytes, CUSTOM_VISION.min_side, CUSTOM_VISION.max_side,
            CUSTOM_VISION.max_aspect_ratio, CUSTOM_VISION.max_upload_batch) == \
        (6 * 1024 * 1024, 256, 10_240, 25.0, 64)
    assert (CUSTOM_VISION.min_images("classification"),
            CUSTOM_VISION.min_images("detection")) == (5, 15)
    with pytest.raises(AttributeError):  # FrozenInstanceError
        CUSTOM_VISION.min_side = 1


def test_help_names_every_profile_and_has_an_example():
    text = invoke("check", "--help").output
    assert all(name in text for name in PROFILES) and "Example:" in text


# --- many files: workers, progress, grouped findings -----------------------------

def many_small(folder, count=6):
    """A conforming folder plus ``count`` distinct 100 x 120 images in cup/: each only a
    side-too-small warning."""
    conforming(folder)
    for i in range(count):
        save(folder / "cup" / f"small{i}.png", photo_like(100, 120, seed=50 + i))
    return folder


def test_workers_give_the_same_report_as_one_process(tmp_path, monkeypatch):
    folder = many_small(tmp_path / "set", count=30)
    shutil.copy(folder / "cup" / "small3.png", folder / "cup" / "small3_copy.png")
    (folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    alone = check_folder(folder, workers=1).to_json()
    used = []

    def recording(workers):
        used.append(workers)
        return real(workers)

    real = ck.open_executor
    monkeypatch.setattr(ck, "open_executor", recording)
    pooled = check_folder(folder, workers=3).to_json()
    assert used == [3]  # 42 files: enough for three worker processes
    assert pooled == alone
    assert {f["kind"] for f in alone["findings"]} == {"side-too-small", "duplicate",
                                                      "unreadable"}
    check_folder(conforming(tmp_path / "few"), workers=8)
    assert used[-1] == 1  # 10 files are checked in-process: a worker costs more than that


@pytest.mark.slow
def test_a_kind_found_in_many_files_is_shown_once_with_examples(tmp_path):
    folder = many_small(tmp_path / "set", count=6)
    save(folder / "cat" / "wide.png", photo_like(20, 600))  # 30:1 and a small side
    result = check_cli(folder, "-w", 1)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    at = lines.index("warning  side-too-small: 7 files, e.g.")
    assert [line.split()[0] for line in lines[at + 1:at + 4]] == [
        "cat/wide.png", "cup/small0.png", "cup/small1.png"]
    assert "120 x 100 px: a side is under 256 px" in lines[at + 2]
    assert lines[at + 4] == "  and 4 more (--verbose lists each)"
    assert "cup/small5.png" not in result.output
    wide = lines.index("cat/wide.png")  # its other finding, a rarer kind, stays by file
    assert lines[wide + 1].split()[:2] == ["error", "aspect-ratio"]

    verbose = check_cli(folder, "-w", 1, "--verbose")
    assert "files, e.g." not in verbose.output
    for i in range(6):
        at = verbose.output.splitlines().index(f"cup/small{i}.png")
        assert verbose.output.splitlines()[at + 1].split()[:2] == ["warning", "side-too-small"]

    data = json.loads(check_cli(folder, "--json").stdout)  # --json lists every finding
    assert sum(f["kind"] == "side-too-small" for f in data["findings"]) == 7
    assert data == check_folder(folder).to_json()


def test_three_files_of_one_kind_are_still_listed_by_file(tmp_path):
    folder = many_small(tmp_path / "set", count=3)
    text = check_cli(folder).output
    assert "files, e.g." not in text
    assert all(f"cup/small{i}.png\n  warning  side-too-small" in text for i in range(3))


@pytest.mark.slow
def test_the_readme_upload_flow_warns_once_about_small_sides(tmp_path):
    """docs/checking.md: run upload.yaml, then check: 30 small photos, one grouped warning."""
    import re
    from pathlib import Path

    from .conftest import write_recipe

    page = (Path(__file__).resolve().parent.parent / "docs" / "checking.md").read_text("utf-8")
    recipe = re.search(r"```yaml\n(# upload.yaml\n.*?)```", page, re.S).group(1)
    shutil.copytree(Path(__file__).resolve().parent.parent / "sample_images",
                    tmp_path / "sample_images")
    path = write_recipe(tmp_path, recipe, name="upload.yaml")
    ran = invoke("run", str(path), "-q")
    assert ran.exit_code == 0, ran.output
    result = check_cli(tmp_path / "upload")
    assert result.exit_code == 0
    assert "warning  side-too-small: 30 files, e.g." in result.output
    assert "and 27 more (--verbose lists each)" in result.output
    assert len(result.output.splitlines()) < 20


def test_a_progress_bar_counts_the_files_on_a_terminal(tmp_path, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    folder = conforming(tmp_path / "set")
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    check_folder(folder, workers=1, progress=True)
    assert "10/10" in screen.getvalue()
    check_folder(folder, workers=1)  # the library is silent unless asked
    assert screen.getvalue().count("10/10") == 1


def test_mask_images_count_each_class_region_as_an_object_and_are_not_images(tmp_path):
    # Roboflow's semantic-segmentation export: <stem>_mask.png beside each image, one class
    # id per pixel (0 the background). Each separate region of a class is one object.
    folder = tmp_path / "masks"
    maps = {"a": [(1, (2, 2, 10, 10)), (1, (20, 20, 30, 30)), (2, (40, 5, 55, 25))],
            "b": [(2, (5, 5, 50, 35))],
            "c": []}
    for index, (stem, regions) in enumerate(maps.items()):
        save(folder / f"{stem}.jpg", photo_like(40, 60, seed=index))
        labels = np.zeros((40, 60), np.uint8)
        for class_id, (x0, y0, x1, y1) in regions:
            labels[y0:y1, x0:x1] = class_id
        save(folder / f"{stem}_mask.png", labels)
    result = invoke("check", str(folder), "--task", "detection", "--annotations", "masks",
                    "--profile", "generic", "--json")
    report = json.loads(result.output)
    assert report["images"] == 3
    rows = {row["tag"]: (row["images"], row["objects"]) for row in report["tags"]}
    assert rows == {"1": (1, 2), "2": (2, 2)}
    findings = {(f["path"], f["kind"]) for f in report["findings"]}
    assert ("c.jpg", "no-objects") in findings
    assert not [path for path, _ in findings if "_mask" in path]
