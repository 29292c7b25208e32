"""What a new user met on the command line: refusals at recipe time, resumes, JSON for
scripts, messages that name the fix. Real processes on real files."""

import os
import subprocess
import sys
from pathlib import Path

from .conftest import write_recipe

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


def test_validate_never_crashes_on_sizes_some_draws_put_over_the_limit(tmp_path, dataset):
    recipe = write_recipe(tmp_path, "variants:\n  big: {copies: 3, ops: "
                                    "[{letterbox: {width: [500, 2000], height: 100000}}]}\n")
    result = augcli("validate", recipe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


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
