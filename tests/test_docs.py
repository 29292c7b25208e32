"""The README and the reference site (docs/) stay true: every recipe in them is valid, every
console example prints what it shows, every op has a generated entry and a current picture."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from augcli import engine
from augcli.ops import CATALOG, FAMILIES, OPS_BY_FAMILY
from augcli.recipe import parse_recipe

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "docs"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"augcli_docs_{name}", SITE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _module("hooks")
GALLERY = _module("gallery")
# Each page as the site shows it: the generated parts (ops, combinators) filled in.
PAGES = {path.relative_to(REPO).as_posix(): HOOKS.expand(path.read_text(encoding="utf-8"))
         for path in sorted(SITE.rglob("*.md"))}
README = (REPO / "README.md").read_text(encoding="utf-8")
TEXT = "\n".join([README, *PAGES.values()])
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", TEXT, re.DOTALL)
RECIPES = [block for block in YAML_BLOCKS if "variants:" in block]
STEPS = [block for block in YAML_BLOCKS if block.lstrip().startswith("- ")]


def test_docs_have_recipes_to_check():
    # The cookbook's and the gallery's recipes, and every op's example.
    assert len(RECIPES) >= 4 + len(CATALOG) and len(STEPS) >= len(CATALOG)


@pytest.mark.parametrize("block", RECIPES)
def test_docs_recipe_is_valid(block):
    if "imgaug:" in block and not engine.available():
        pytest.skip("the imgaug op's recipe needs the imgaug extra")
    parse_recipe(yaml.safe_load(block))


@pytest.mark.parametrize("block", STEPS)
def test_docs_op_snippet_is_valid(block):
    if "imgaug:" in block and not engine.available():
        pytest.skip("the imgaug op's example needs the imgaug extra")
    steps = yaml.safe_load(block)
    # Combinator sketches use '...' placeholders; every real step must parse.
    if "[...]" not in block:
        parse_recipe({"variants": {"a": {"ops": steps}}})


# --- the Python examples ---------------------------------------------------------------------

PYTHON = re.findall(r"```python\n(.*?)```", TEXT, re.DOTALL)


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
    repo = REPO
    shutil.copytree(repo / "sample_images", tmp_path / "sample_images")
    shutil.copy(repo / "recipe.yaml", tmp_path / "recipe.yaml")
    example = next(block for block in PYTHON if "run_recipe(" in block and "Client" not in block)
    (tmp_path / "example.py").write_text(example, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "4 images read, 44 outputs written" in result.stdout
    assert len(list((tmp_path / "out").rglob("*_*_*.*"))) == 44


# --- the op reference and its pictures ------------------------------------------------------

def test_every_family_has_a_page_and_every_op_an_entry():
    """A new op shows up on its family's page with no edit to the docs; a new family needs
    a page with its marker, and this fails until it has one."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in SITE.rglob("*.md"))
    for family in FAMILIES:
        assert f"<!-- augcli:ops {family} -->" in sources, f"no page lists the {family} ops"
    assert sorted(name for names in OPS_BY_FAMILY.values() for name in names) == sorted(CATALOG)
    for name in CATALOG:
        assert f"## `{name}`" in TEXT, f"op {name} has no entry in the reference"
        assert f"]({name}.png)" in TEXT, f"op {name} has no picture on its page"


@pytest.mark.parametrize("op", sorted(CATALOG))
def test_every_op_has_a_current_picture(op):
    """The picture exists and was drawn from the recipe its page shows, by this version."""
    assert (SITE / "ops" / f"{op}.png").is_file(), f"run: python docs/gallery.py {op}"
    recorded = json.loads((SITE / "ops" / "gallery.json").read_text()).get(op)
    assert recorded == GALLERY.digest(op), f"stale picture; run: python docs/gallery.py {op}"


def test_the_gallery_draws_an_op_as_its_page_says():
    """Drawn again, a picture is the committed one's size: two rows, each the source and its
    three strengths."""
    from PIL import Image

    sheet = GALLERY.picture("rot90")
    with Image.open(SITE / "ops" / "rot90.png") as committed:
        assert sheet.shape[1::-1] == committed.size
    assert sheet.shape[1] == 4 * 256


# --- console examples -----------------------------------------------------------------------

CONSOLE = [(page, block) for page, text in PAGES.items()
           for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL)]


def _matches(shown: str, produced: str) -> bool:
    """``...`` in a shown line stands for what differs between runs (seconds)."""
    pattern = ".*".join(re.escape(part) for part in shown.split("..."))
    return re.fullmatch(pattern, produced) is not None


def test_there_are_console_examples():
    assert len(CONSOLE) >= 3


@pytest.mark.slow
@pytest.mark.parametrize(("page", "block"), CONSOLE, ids=[page for page, _ in CONSOLE])
def test_console_example_prints_what_it_shows(tmp_path, page, block):
    """Each ``$ augcli ...`` line runs in a copy of the sample folder and recipe; the lines
    after it are its output (stdout and stderr), as shown."""
    shutil.copytree(REPO / "sample_images", tmp_path / "sample_images")
    shutil.copy(REPO / "recipe.yaml", tmp_path / "recipe.yaml")
    augcli = str(Path(sys.executable).with_name("augcli"))
    commands: list = []
    for line in block.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            commands[-1][1].append(line)
    for command, shown in commands:
        argv = shlex.split(command)
        assert argv[0] == "augcli", command
        result = subprocess.run([augcli, *argv[1:]], cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, check=False)
        assert result.returncode == 0, (command, result.stderr)
        produced = (result.stdout + result.stderr).splitlines()
        assert len(produced) == len(shown), (page, command, produced)
        for want, got in zip(shown, produced):
            assert _matches(want, got), (page, command, want, got)


def test_the_readme_shows_the_sample_recipe():
    """The recipe the README shows is recipe.yaml, the one its first command runs."""
    shown = next(yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", README,
                                                               re.DOTALL) if "variants:" in block)
    assert shown == yaml.safe_load((REPO / "recipe.yaml").read_text(encoding="utf-8"))
