"""The README's recipes are valid, so copying one never starts with an error."""

import os
import re
from pathlib import Path

import pytest
import yaml

from augcli import engine
from augcli.recipe import parse_recipe

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
RECIPES = [block for block in re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)
           if "variants:" in block]
STEPS = [block for block in re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)
         if block.lstrip().startswith("- ")]


def test_readme_has_recipes_to_check():
    assert len(RECIPES) >= 4 and len(STEPS) >= 2


@pytest.mark.parametrize("block", RECIPES)
def test_readme_recipe_is_valid(block):
    parse_recipe(yaml.safe_load(block))


@pytest.mark.parametrize("block", STEPS)
def test_readme_op_snippet_is_valid(block):
    if "imgaug:" in block and not engine.available():
        pytest.skip("the imgaug op's example needs the imgaug extra")
    steps = yaml.safe_load(block)
    # Combinator sketches use '...' placeholders; every real step must parse.
    if "[...]" not in block:
        parse_recipe({"variants": {"a": {"ops": steps}}})


# --- the Python examples ---------------------------------------------------------------------

PYTHON = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


# Library calls that start worker processes.
FOLDER_JOBS = ("run_recipe(", "normalize_folder(", "make_montages(", "check_folder(")


def test_every_python_example_starts_its_workers_under_the_main_guard():
    """Worker processes import the script again: work outside the guard would run in every
    worker (Python refuses with a bootstrapping error)."""
    with_workers = [block for block in PYTHON if any(call in block for call in FOLDER_JOBS)]
    assert len(with_workers) >= 4
    for block in with_workers:
        body = block.split('if __name__ == "__main__":', 1)
        assert len(body) == 2, block
        assert all(line.startswith(("from ", "import ")) for line in body[0].splitlines()
                   if line.strip()), block


@pytest.mark.slow
def test_the_run_recipe_example_runs_as_a_script(tmp_path):
    """Pasted into a file and run with 2 workers, as a user would."""
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    shutil.copytree(repo / "sample_images", tmp_path / "sample_images")
    shutil.copy(repo / "recipe.yaml", tmp_path / "recipe.yaml")
    (example,) = [block for block in PYTHON if "run_recipe(" in block and "Client" not in block]
    (tmp_path / "example.py").write_text(example, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "4 images read, 44 outputs written" in result.stdout
    assert len(list((tmp_path / "out").rglob("*_*_*.*"))) == 44
