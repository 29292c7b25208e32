"""What a new user met on the command line: refusals at recipe time, resumes, JSON for
scripts, messages that name the fix. Real processes on real files."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import photo_like, save, write_recipe

REPO = Path(__file__).resolve().parent.parent


def augcli(*args, cwd=None, timeout=300):
    """The installed console script, as a user runs it."""
    executable = Path(sys.executable).with_name("augcli")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "augcli"]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([*command, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def test_a_size_the_recipe_fixes_over_the_limit_is_refused_before_any_work(tmp_path, dataset):
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n"
                                    "  big: {ops: [{letterbox: {width: 100000, height: 100000}}]}\n"
                                    "  cut: {ops: [{crop: {width: 100000, height: 100000}}]}\n"
                                    "  wide: {ops: [{resize: {width: 100000, height: 2000}}]}\n"
                                    "  pads: {ops: [{pad: {px: 100000}}]}\n"
                                    "  fine: {ops: [{resize: {width: 100000}}]}\n")
    for command in ("run", "validate"):
        result = augcli(command, recipe, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        for name, size in (("big", "100000 x 100000"), ("cut", "100000 x 100000"),
                           ("wide", "100000 x 2000"), ("pads", "200001 x 200001")):
            assert f"variants.{name}.ops: " in result.stderr and size in result.stderr
        # one side fixed, the other follows the input: a wide enough input fits
        assert "variants.fine" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_validate_never_crashes_on_sizes_some_draws_put_over_the_limit(tmp_path, dataset):
    recipe = write_recipe(tmp_path, "variants:\n  big: {copies: 3, ops: "
                                    "[{letterbox: {width: [500, 2000], height: 100000}}]}\n")
    result = augcli("validate", recipe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # real subprocesses: over 2 s each
def test_a_profile_refuses_a_format_its_own_check_would_reject(tmp_path, dataset):
    for written in ("TIFF", "tiff", ".tif", "WEBP"):
        recipe = write_recipe(tmp_path, f"input: in\noutput: out\nprofile: custom-vision\n"
                                        f"format: {written}\nvariants: {{a: {{ops: [fliplr]}}}}\n")
        result = augcli("run", recipe, cwd=tmp_path)
        assert result.returncode == 2, (written, result.stderr)
        assert "is not accepted by profile custom-vision" in result.stderr
        assert not (tmp_path / "out").exists()
    # what the profile accepts is written and passes its check
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nprofile: custom-vision\n"
                                    "format: PNG\nvariants: {a: {ops: [fliplr]}}\n")
    assert augcli("run", recipe, "-w", 1, "-q", cwd=tmp_path).returncode == 0
    checked = augcli("check", tmp_path / "out", "--profile", "custom-vision", cwd=tmp_path)
    assert "not accepted" not in checked.stdout + checked.stderr


@pytest.mark.slow  # real subprocesses: over 2 s each
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_every_output_on_disk_when_a_run_is_stopped_counts_as_done(tmp_path, how):
    """Sources of many outputs each, stopped part-way through them: the rerun makes none
    of the files that were on disk again, and ends with the bytes of an unstopped run."""
    for i in range(6):
        save(tmp_path / "in" / f"img{i}.png", photo_like(480, 640, seed=i))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n  a:\n    copies: 30\n"
                                    "    ops: [{affine: {rotate: 20}}, {dropout: {p: 0.1}}]\n")
    executable = Path(sys.executable).with_name("augcli")
    process = subprocess.Popen([str(executable), "run", str(recipe), "-w", "2", "-q"],
                               cwd=tmp_path, stderr=subprocess.DEVNULL)
    out = tmp_path / "out"
    deadline = time.monotonic() + 120
    while len(list(out.glob("*_a_*.png"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(how)
    process.wait(timeout=120)
    time.sleep(1)  # workers of a killed run end as they see it gone
    on_disk = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*_a_*.png")}
    assert 20 <= len(on_disk) < 180, "the run was not stopped part-way"
    assert augcli("run", recipe, "-w", 2, "-q", cwd=tmp_path).returncode == 0
    again = {name: (out / name).stat() for name in on_disk}
    remade = sorted(name for name, stat in again.items()
                    if (stat.st_ino, stat.st_mtime_ns) != on_disk[name])
    assert remade == [], f"{len(remade)} of {len(on_disk)} finished outputs were made again"
    assert augcli("run", recipe, "-o", tmp_path / "clean", "-w", 2, "-q",
                  cwd=tmp_path).returncode == 0
    resumed = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".png"}
    clean = {p.name: p.read_bytes() for p in (tmp_path / "clean").iterdir() if p.suffix == ".png"}
    assert len(clean) == 180 and resumed == clean


@pytest.mark.slow  # real subprocesses: over 2 s each
def test_scripts_get_the_plan_the_verdict_and_the_catalog_as_json(tmp_path, dataset):
    import json

    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n"
                                    "  a: {copies: 2, ops: [{rotate: {degrees: 10}}]}\n")
    plan = augcli("run", recipe, "--dry-run", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert data["dry_run"] is True and data["total_outputs"] == 8
    assert {"source": "cats/tom.jpg", "outputs": 2, "per_variant": {"a": 2}} in data["sources"]
    assert not (tmp_path / "out").exists()

    normalized = augcli("normalize", "in", "-o", "norm", "-m", "tf", "--dry-run", "--json",
                        cwd=tmp_path)
    assert normalized.returncode == 0, normalized.stderr
    images = json.loads(normalized.stdout)["images"]
    assert {"source": "dogs/rex.bmp", "output": "dogs/rex.npy", "done": False} in images
    assert not (tmp_path / "norm").exists()

    verdict = json.loads(augcli("validate", recipe, "--json", cwd=tmp_path).stdout)
    assert verdict["valid"] is True and verdict["outputs_per_source"] == 2
    bad = write_recipe(tmp_path, "variants: {a: {ops: [flipr]}}\n", name="bad.yaml")
    invalid = augcli("validate", bad, "--json", cwd=tmp_path)
    assert invalid.returncode == 2
    assert json.loads(invalid.stdout)["problems"] == [
        "variants.a.ops[0]: unknown op 'flipr' (did you mean 'fliplr'?); run 'augcli ops' "
        "for the list"]

    catalog = json.loads(augcli("ops", "--json", cwd=tmp_path).stdout)
    rotate = next(op for op in catalog["ops"] if op["name"] == "rotate")
    assert "degrees" in [param["name"] for param in rotate["params"]]
    assert "one_of" in [c["name"] for c in catalog["combinators"]]
    shift = json.loads(augcli("ops", "shift", "--json", cwd=tmp_path).stdout)
    assert shift["name"] == "translate" and "shift" in shift["aliases"]


@pytest.mark.slow  # real subprocesses: over 2 s each
def test_refusing_another_recipes_outputs_names_what_changed(tmp_path):
    for folder in ("a", "b"):
        for i in range(2):
            save(tmp_path / folder / "c" / f"img{i}.png", photo_like(seed=i))
    recipe = write_recipe(tmp_path, "input: a\noutput: out\nseed: 1\nvariants:\n"
                                    "  rot: {copies: 2, ops: [{rotate: {degrees: [-10, 10]}}]}\n")
    assert augcli("run", recipe, "-w", 1, "-q", cwd=tmp_path).returncode == 0
    moved = f"(input {tmp_path / 'a'} -> {tmp_path / 'b'})"
    for flags, changed in ((["--seed", 2], "(seed 1 -> 2)"), (["-i", tmp_path / "b"], moved)):
        for dry in ([], ["--dry-run"]):
            refused = augcli("run", recipe, "-w", 1, *flags, *dry, cwd=tmp_path)
            assert refused.returncode == 2 and changed in refused.stderr, refused.stderr
    edited = write_recipe(tmp_path, recipe.read_text().replace("-10, 10", "-20, 20"),
                          name="edited.yaml")
    refused = augcli("run", edited, "-w", 1, cwd=tmp_path)
    assert refused.returncode == 2
    assert "(variants.rot.ops[0].rotate.degrees [-10, 10] -> [-20, 20])" in refused.stderr


@pytest.mark.slow
def test_a_manifest_without_the_settings_line_still_resumes(tmp_path):
    for i in range(2):
        save(tmp_path / "in" / f"img{i}.png", photo_like(seed=i))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n"
                                    "  rot: {copies: 2, ops: [{rotate: {degrees: 10}}]}\n")
    assert augcli("run", recipe, "-w", 1, "-q", cwd=tmp_path).returncode == 0
    manifest = tmp_path / "out" / "manifest.jsonl"
    lines = manifest.read_text("utf-8").splitlines(keepends=True)
    manifest.write_text("".join(line for line in lines if not line.startswith('{"run"')),
                        "utf-8")  # as augcli wrote manifests before it kept the settings
    other = augcli("run", recipe, "-w", 1, "--seed", 5, cwd=tmp_path)
    assert other.returncode == 2 and "holds outputs of a different recipe" in other.stderr
    resumed = augcli("run", recipe, "-w", 1, cwd=tmp_path)
    assert resumed.returncode == 0 and "0 outputs written, 4 skipped" in resumed.stderr


def test_validate_reports_every_error_inside_a_badly_named_variant(tmp_path):
    recipe = write_recipe(tmp_path, "variants:\n  my_rotate:\n    copies: 0\n"
                                    "    ops: [flipr, {rotate: {degrees: [9, 1]}}]\n"
                                    "  ok: {ops: [fliplr]}\n")
    result = augcli("validate", recipe, cwd=tmp_path)
    assert result.returncode == 2 and "invalid recipe (4 problems)" in result.stderr
    for line in ("variants.my_rotate: a variant name becomes part of file names: use letters, "
                 "digits and '-' only (e.g. 'my-rotate')",
                 "variants.my_rotate.copies: expected an integer in [1, 10,000], got 0",
                 "variants.my_rotate.ops[0]: unknown op 'flipr' (did you mean 'fliplr'?)",
                 "variants.my_rotate.ops[1].rotate.degrees: expected lo <= hi, got [9, 1]"):
        assert line in result.stderr


@pytest.mark.slow
def test_a_bare_value_sets_the_ops_main_parameter_or_says_what_to_write(tmp_path, dataset):
    bare = write_recipe(tmp_path, "input: in\noutput: bare\nvariants:\n"
                                  "  a: {ops: [{rotate: 10}, {dropout: 0.1}]}\n")
    spelt = write_recipe(tmp_path, "input: in\noutput: spelt\nvariants:\n"
                                   "  a: {ops: [{rotate: {degrees: 10}}, {dropout: {p: 0.1}}]}\n",
                         name="spelt.yaml")
    for recipe in (bare, spelt):
        assert augcli("run", recipe, "-w", 1, "-q", cwd=tmp_path).returncode == 0
    images = sorted(p.relative_to(tmp_path / "spelt") for p in (tmp_path / "spelt").rglob("*_a_*"))
    assert len(images) == 4
    for name in images:
        assert (tmp_path / "bare" / name).read_bytes() == (tmp_path / "spelt" / name).read_bytes()

    several = write_recipe(tmp_path, "variants: {a: {ops: [{affine: 10}]}}\n", name="x.yaml")
    result = augcli("validate", several, cwd=tmp_path)
    assert result.returncode == 2
    assert ("variants.a.ops[0].affine: expected a mapping of parameters, got 10; affine has "
            "several parameters, so name one: e.g. {affine: {rotate: 10}}") in result.stderr


FOREIGN = ("ShiftScaleRotate", "RandomBrightnessContrast", "HorizontalFlip", "RandomRotate90",
           "CLAHE", "RandomResizedCrop", "RandomRotation", "RandomAffine", "ColorJitter",
           "GaussNoise", "ImageCompression", "LongestMaxSize", "PadIfNeeded", "ToGray",
           "RandomHorizontalFlip", "RandomErasing", "ElasticTransform", "Pad", "JPEG")


def test_names_from_albumentations_and_torchvision_point_to_augcli_ops_that_work(tmp_path):
    ops = "".join(f"      - {name}\n" for name in (*FOREIGN, "Mosaic"))
    recipe = write_recipe(tmp_path, f"variants:\n  a:\n    ops:\n{ops}")
    result = augcli("validate", recipe, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "unknown op" in line]
    assert len(lines) == len(FOREIGN) + 1
    assert ("unknown op 'ShiftScaleRotate' (albumentations' ShiftScaleRotate is augcli's "
            "affine: - affine: {") in result.stderr
    assert "unknown op 'Mosaic' (albumentations' Mosaic: augcli has no mosaic op" in result.stderr
    # every snippet suggested is a valid recipe line
    snippets = [line.split(" is augcli's ", 1)[1].split(": ", 1)[1].rsplit(")", 1)[0]
                for line in lines if " is augcli's " in line]
    assert len(snippets) == len(FOREIGN)
    ported = write_recipe(tmp_path, "variants:\n  a:\n    ops:\n" +
                          "".join(f"      {snippet}\n" for snippet in snippets), name="p.yaml")
    checked = augcli("validate", ported, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    shown = augcli("ops", "RandomRotation", cwd=tmp_path)
    assert "torchvision's RandomRotation is augcli's rotate: - rotate: {degrees: 30}" in \
        shown.stderr


@pytest.mark.slow  # real subprocesses: over 2 s each
def test_small_frictions_of_a_new_user(tmp_path, dataset):
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants: {a: {ops: [fliplr]}}\n")
    typo = augcli("run", recipe, "--cluster", "loacl", cwd=tmp_path)
    assert typo.returncode == 2 and "(did you mean 'local'?)" in typo.stderr
    # host:port is a scheduler address, as Dask takes it (nothing listens on port 9 here)
    address = augcli("run", recipe, "--cluster", "127.0.0.1:9", cwd=tmp_path)
    assert address.returncode == 2
    assert "cannot reach the Dask scheduler at 127.0.0.1:9" in address.stderr

    square = augcli("ricap", "in", "-o", "montages", "-n", 2, "--size", 24, cwd=tmp_path)
    assert square.returncode == 0, square.stderr
    from PIL import Image

    made = sorted((tmp_path / "montages").rglob("*.png"))
    assert made and all(Image.open(path).size == (24, 24) for path in made)

    missing = augcli("preview", recipe, "nosuch.jpg", cwd=tmp_path)
    assert missing.returncode == 2 and "nosuch.jpg: no such image file" in missing.stderr
    assert "moved or deleted" not in missing.stderr

    windows = augcli("run", recipe, "-o", "C:\\data\\out", "-w", 1, cwd=tmp_path)
    assert windows.returncode == 0, windows.stderr
    assert "has backslashes, which are part of a folder name here" in windows.stderr


def test_a_missing_extra_is_named_with_a_pip_command_that_works_from_a_checkout(tmp_path):
    """The message's command installs from this checkout, by path, from any folder."""
    from augcli.errors import install_hint

    hint = install_hint("distributed,s3")
    assert hint == f"pip install -e '{REPO}[distributed,s3]'"
    target = hint.split("'")[1].split("[")[0]
    assert (Path(target) / "pyproject.toml").is_file()


def test_every_help_example_is_printed_whole_on_one_line():
    """An example broken across lines cannot be copied and run (item 16, in part)."""
    import re

    from augcli.cli import main

    for name, command in main.commands.items():
        examples = [line.strip() for line in (command.help or "").splitlines()
                    if line.strip().startswith("augcli ")]
        assert examples, name
        shown = subprocess.run([sys.executable, "-m", "augcli", name, "--help"], text=True,
                               capture_output=True, env={**os.environ, "COLUMNS": "60"},
                               check=True).stdout
        lines = [re.sub(r"\s+", " ", line.strip()) for line in shown.splitlines()]
        for example in examples:
            assert re.sub(r"\s+", " ", example) in lines, (name, example)
