"""Every example in ``augcli COMMAND --help`` and in the README's shell blocks runs as
written (issue 25, item 16): each line, in a shell, in a folder that holds what the
examples name (the sample recipe and images, a run's output, a labelled folder), and
exits 0.

A README line that cannot run here is in ``NOT_HERE`` with the reason; any other line
must be an ``augcli`` command, so a new example is either run or skipped on purpose.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from augcli.cli import main

from .conftest import REPO, invoke, photo_like, save

# Text in a line -> why that line is not run here.
NOT_HERE = {
    "pip install": "installs packages from an index",
    "s3://": "needs an object store and a Dask scheduler",
    "az storage": "needs the Azure CLI and an Azure account",
    "docker ": "builds and runs the images: .ci/docker does, with a Docker engine of its own",
}


def commands(text: str) -> list:
    """The example command lines of a help text or a shell block: lines starting with
    ``augcli`` (or ``$ augcli``), a trailing backslash joining the next line."""
    found: list = []
    for raw in text.splitlines():
        line = raw.strip()
        if found and found[-1].endswith("\\"):
            found[-1] = found[-1][:-1].rstrip() + " " + line
        elif line.startswith(("augcli ", "$ augcli ")):
            found.append(line.removeprefix("$ "))
    return found


def shell_lines(block: str) -> list:
    """Every command line of a README shell block, comments and blank lines left out."""
    return [line for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


HELP = {("augcli" if name is None else f"help-{name}"): commands(command.help or "")
        for name, command in [(None, main), *sorted(main.commands.items())]}
README_BLOCKS = re.findall(r"```(?:bash|sh|shell)\n(.*?)```",
                           (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)
README = {f"readme-{index}": shell_lines(block) for index, block in enumerate(README_BLOCKS, 1)}


def test_every_command_has_examples_and_the_readme_has_shell_blocks():
    assert all(HELP[f"help-{name}"] for name in main.commands)
    assert len(README) >= 3


def test_every_readme_line_is_an_augcli_command_or_skipped_with_a_reason():
    for lines in README.values():
        for line in lines:
            assert line.startswith("augcli ") or any(text in line for text in NOT_HERE), line


@pytest.fixture
def prepared(tmp_path):
    """A folder with what the examples name: the sample recipe and images, the run's
    output (``out``, and copies as ``upload`` and ``bloated``), class folders as
    ``photos``, ``train`` and ``test``, and ``boxes_out``, a folder of images with YOLO
    labels beside them (enough per label for a detection project). Made for each test: a
    run's output belongs to its input folder, so it cannot be copied elsewhere."""
    folder = tmp_path / "work"
    shutil.copytree(REPO / "sample_images", folder / "sample_images")
    shutil.copy(REPO / "recipe.yaml", folder / "recipe.yaml")
    assert invoke("run", folder / "recipe.yaml", "-w", 1, "-q").exit_code == 0
    for name in ("upload", "bloated"):
        shutil.copytree(folder / "out", folder / name)
    for name in ("photos", "train", "test"):
        shutil.copytree(folder / "sample_images", folder / name)
    for index in range(16):
        save(folder / "boxes_out" / f"fruit_{index}.png", photo_like(seed=index))
        (folder / "boxes_out" / f"fruit_{index}.txt").write_text("0 0.5 0.5 0.4 0.3\n")
    return folder


def run_lines(lines: list, work: Path) -> None:
    """Each line in a shell, in order, in the prepared folder, with this tree's ``augcli``
    first on the PATH: each must exit 0."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    for line in lines:
        skipped = [reason for text, reason in NOT_HERE.items() if text in line]
        if skipped:
            continue
        result = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True,
                                text=True, timeout=300, check=False)
        assert result.returncode == 0, (line, result.stdout[-2000:], result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (line, result.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(HELP))
def test_every_help_example_runs_as_written(source, prepared):
    run_lines(HELP[source], prepared)


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(README))
def test_every_readme_shell_example_runs_as_written(source, prepared):
    run_lines(README[source], prepared)


PYTHON = re.findall(r"```python\n(.*?)```", "\n".join(
    path.read_text(encoding="utf-8") for path in [REPO / "README.md",
                                                  *sorted((REPO / "docs").rglob("*.md"))]),
    re.DOTALL)


@pytest.mark.slow
def test_the_check_folder_example_runs_on_the_sample_output(prepared):
    """The check_folder snippet, pasted into a file beside the sample run's output."""
    (example,) = [block for block in PYTHON if "check_folder(" in block]
    (prepared / "example.py").write_text(example, encoding="utf-8")
    result = subprocess.run([sys.executable, "example.py"], cwd=prepared, capture_output=True,
                            text=True, timeout=300, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    # 22 outputs per class folder (11 per photo), ready but under the 30 recommended; 16
    # images of label 0 (no classes.txt names it), one object each
    assert result.stdout == ("True [('cat', 22, 'below-recommended'), "
                             "('cup', 22, 'below-recommended')]\n[('0', 16, 16)]\n")
