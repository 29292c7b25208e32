"""The README's recipes are valid, so copying one never starts with an error."""

import re
from pathlib import Path

import pytest
import yaml

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
    steps = yaml.safe_load(block)
    # Combinator sketches use '...' placeholders; every real step must parse.
    if "[...]" not in block:
        parse_recipe({"variants": {"a": {"ops": steps}}})
