"""The command line: exit codes, messages without tracebacks, and real subprocess runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from augcli import ops
from augcli.cli import main
from augcli.runner import read_manifest

from .conftest import REPO, invoke, kill_when, photo_like, run_cli, save, start_cli, write_recipe


def test_run_writes_outputs_and_prints_a_summary(tmp_path, simple_recipe):
    result = invoke("run", simple_recipe, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "4 images read, 16 outputs written, 0 skipped (already done), 0 failed" in result.output
    assert len(list((tmp_path / "out").rglob("*_mixed_*"))) == 8


def test_flags_override_the_recipe(tmp_path, simple_recipe):
    result = invoke("run", simple_recipe, "-o", tmp_path / "elsewhere", "--seed", 3, "-w", 1,
                    "--quiet")
    assert result.exit_code == 0 and result.output == ""
    records = read_manifest(tmp_path / "elsewhere")
    assert len(records) == 16 and not (tmp_path / "out").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, simple_recipe):
    result = invoke("run", simple_recipe, "--dry-run")
    assert result.exit_code == 0
    assert "cats/tom.jpg: 4 outputs (noise 2, mixed 2)" in result.output
    assert "total: 4 sources -> 16 outputs" in result.output
    assert not (tmp_path / "out").exists()


def test_recipe_error_exits_2_with_key_paths_and_no_traceback(tmp_path, dataset):
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n"
                                    "  a: {ops: [flipr, {rotate: {degrees: [9, 1]}}]}\n")
    result = invoke("run", recipe)
    assert result.exit_code == 2
    assert "Error: invalid recipe (2 problems):" in result.output
    assert "variants.a.ops[0]: unknown op 'flipr' (did you mean 'fliplr'?)" in result.output
    assert "variants.a.ops[1].rotate.degrees: expected lo <= hi, got [9, 1]" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_failed_inputs_exit_1_and_are_named(tmp_path, simple_recipe, dataset):
    (dataset / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = invoke("run", simple_recipe, "-w", 1)
    assert result.exit_code == 1
    assert "failed: cats/broken.jpg: " in result.output
    assert "16 outputs written" in result.output and "1 failed" in result.output


def test_output_inside_input_exits_2(tmp_path, simple_recipe, dataset):
    result = invoke("run", simple_recipe, "--output", dataset / "out")
    assert result.exit_code == 2
    assert "inside the input folder" in result.output


def test_validate_reports_ok_or_problems(tmp_path, dataset):
    good = write_recipe(tmp_path, "variants: {a: {copies: 2, ops: [fliplr]}}\n")
    result = invoke("validate", good)
    assert result.exit_code == 0 and "valid; 1 variant(s), 2 output(s)" in result.output
    bad = write_recipe(tmp_path, "variants: {a: {ops: [{dropout: {p: 2}}]}}\n", name="bad.yaml")
    result = invoke("validate", bad)
    assert result.exit_code == 2 and "variants.a.ops[0].dropout.p: 2 is out of range" in \
        result.output


def test_ops_lists_every_op_and_shows_one(tmp_path):
    listing = invoke("ops").output
    for name in ops.CATALOG:
        assert f"\n{name}" in "\n" + listing
    shown = invoke("ops", "shift")
    assert shown.exit_code == 0 and shown.output.startswith("translate:")
    assert "- translate: {x: [-0.2, 0.2], y: 0.1}" in shown.output
    unknown = invoke("ops", "rotat")
    assert unknown.exit_code == 2 and "did you mean 'rotate'?" in unknown.output


def test_every_command_help_has_an_example():
    for name, command in main.commands.items():
        assert "Example" in (command.help or ""), name


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from augcli.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'cv2', 'imgaug', 'scipy', 'PIL') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


@pytest.mark.slow
def test_sample_recipe_runs_as_a_real_process(tmp_path):
    """What the README promises a new user, through the installed console script."""
    result = run_cli("run", REPO / "recipe.yaml", "--output", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 images read, 44 outputs written" in result.stderr
    assert "Traceback" not in result.stderr
    outputs = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*_*_*.*"))
    assert len(outputs) == 44
    assert "cat/chelsea_noise_1.jpg" in outputs and "cup/coffee_mixed_5.jpg" in outputs
    assert "cat/chelsea_face_rotate_3.png" in outputs


@pytest.mark.slow
def test_subprocess_exit_codes_for_scripts(tmp_path, simple_recipe, dataset):
    assert run_cli("run", simple_recipe, "-q", "-w", 2, cwd=tmp_path).returncode == 0
    assert run_cli("run", simple_recipe, "-q", "--seed", 1, cwd=tmp_path).returncode == 2
    (dataset / "cats" / "zero.png").write_bytes(b"")
    rerun = run_cli("run", simple_recipe, "-o", tmp_path / "fresh", "-w", 2, cwd=tmp_path)
    assert rerun.returncode == 1
    assert "cats/zero.png: file is empty" in rerun.stderr
    manifest = read_manifest(tmp_path / "fresh")
    assert len(manifest) == 16 and manifest[0]["recipe"]


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_work(flag):
    result = invoke(flag)
    assert result.exit_code == 0 and "augcli" in result.output


@pytest.mark.slow
def test_killed_run_leaves_only_whole_files_and_a_rerun_completes_it(tmp_path):
    """SIGKILL mid-run: every file under a final name decodes, and the rerun's
    outputs are byte-identical to an uninterrupted run."""
    from PIL import Image

    for i in range(30):
        save(tmp_path / "in" / f"img{i:02d}.png", photo_like(480, 640, seed=i))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n  a:\n    copies: 6\n"
                                    "    ops: [{affine: {rotate: 20}}, {dropout: {p: 0.1}}]\n")
    out = tmp_path / "out"
    kill_when(start_cli("run", recipe, "-w", 1, "-q", cwd=tmp_path),
              lambda: len(list(out.glob("*_a_*.png"))) >= 20, timeout=60)
    written = list(out.glob("*_a_*.png"))
    assert 20 <= len(written) < 180, "the run was not interrupted half-way"
    for path in written:
        with Image.open(path) as picture:
            picture.load()  # raises on a truncated file
    assert run_cli("run", recipe, "-w", 2, "-q", cwd=tmp_path).returncode == 0
    assert run_cli("run", recipe, "-o", tmp_path / "clean", "-w", 2, "-q",
                   cwd=tmp_path).returncode == 0
    resumed = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".png"}
    clean = {p.name: p.read_bytes() for p in (tmp_path / "clean").iterdir() if p.suffix == ".png"}
    assert len(clean) == 180 and resumed == clean
    assert not list(out.glob(".augcli-*"))


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, simple_recipe):
    result = invoke("run", simple_recipe, "-w", 1)
    assert result.exit_code == 0
    assert "img/s" not in result.output and "%|" not in result.output
    assert "16 outputs written" in result.output  # the summary line still shows


# --- packaging: one version, python -m augcli ------------------------------------------------

def test_python_m_augcli_works_and_every_version_agrees():
    import tomllib
    from importlib import metadata

    import augcli

    result = subprocess.run([sys.executable, "-m", "augcli", "--version"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"augcli, version {augcli.__version__}"
    assert invoke("--version").output.strip() == result.stdout.strip()
    # Written once: pyproject reads it from augcli/__init__.py.
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    assert project["project"]["dynamic"] == ["version"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "augcli.__version__"}
    try:
        installed = metadata.distribution("augcli")
    except metadata.PackageNotFoundError:
        return
    if Path(installed.locate_file("augcli")).resolve() == REPO / "augcli" or \
            f"file://{REPO}" in (installed.read_text("direct_url.json") or ""):
        assert installed.version == augcli.__version__  # this checkout is what is installed


# --- an output the user cannot write: one line, exit 2 ----------------------------------------

def test_unwritable_output_is_one_error_line(tmp_path, simple_recipe, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    result = invoke("run", str(simple_recipe), "-o", str(tmp_path / "o"),
                    "-w", "1", "-q")
    assert result.exit_code == 2 and not isinstance(result.exception, PermissionError)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot write {tmp_path / 'o'}: "
                                                   "Permission denied; this user cannot write")


def test_unwritable_output_in_a_real_process(tmp_path, simple_recipe):
    if os.geteuid() == 0:  # root writes anywhere: /proc refuses everyone a new folder
        target = Path("/proc/augcli-test-output")
        if not Path("/proc/self").exists():
            pytest.skip("no /proc here")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        target = locked / "out"
    result = run_cli("run", simple_recipe, "-o", target, "-q", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: cannot write {target}: ")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_validate_refuses_nan_that_would_break_the_run(tmp_path):
    recipe = write_recipe(tmp_path, "variants: {a: {ops: [{dropout: {p: .nan}}, "
                                    "{rotate: {degrees: [.nan, 3]}}]}}\n")
    result = invoke("validate", recipe)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "variants.a.ops[0].dropout.p: expected probability in [0, 1], got NaN" in result.output
    assert "variants.a.ops[1].rotate.degrees: expected number" in result.output


def test_absurd_per_class_is_refused_with_the_limit(tmp_path, simple_recipe):
    result = invoke("run", simple_recipe, "--per-class", 10**9)
    assert result.exit_code == 2
    assert "Error: --per-class: expected an integer in [1, 100,000], got 1000000000" in \
        result.output


def test_run_json_prints_one_summary_object_on_stdout(tmp_path, simple_recipe, dataset):
    (dataset / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (dataset / "notes.txt").write_text("not an image")
    result = invoke("run", str(simple_recipe), "-w", "1", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    [failure] = summary.pop("failures")
    assert failure["path"] == "cats/broken.jpg" and failure["reason"]
    assert isinstance(summary.pop("seconds"), float)
    assert summary == {"output": str(tmp_path / "out"), "images_read": 4, "written": 16,
                       "skipped": 0, "failed": 1, "ignored": ["notes.txt"], "exit_code": 1,
                       "classes": [], "objects": {}}
    assert "outputs written" not in result.stderr  # no human summary
    assert "failed: cats/broken.jpg" in result.stderr  # failures still show as they happen

    (dataset / "cats" / "broken.jpg").unlink()
    again = json.loads(invoke("run", str(simple_recipe), "--json",
                              "-q").stdout)
    assert (again["written"], again["skipped"], again["exit_code"]) == (0, 16, 0)


def test_run_json_has_the_class_counts_when_balancing(tmp_path, simple_recipe):
    result = invoke("run", simple_recipe, "-w", 1, "--per-class", 3, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["classes"] == [
        {"class": "cats", "before": 2, "after": 3}, {"class": "dogs", "before": 2, "after": 3}]
