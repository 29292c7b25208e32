"""augcli ops: the combinators' help against what the recipe parser really accepts."""

from functools import partial

import pytest
import yaml

from augcli import recipe
from augcli.errors import RecipeError
from augcli.ops.combinators import COMBINATORS
from augcli.ops.help import combinator_help, targets_table
from augcli.recipe import parse_recipe

from .conftest import REPO, invoke

ops_cli = partial(invoke, "ops")  # augcli ops ARGS...


def variant_ops(ops_yaml: str) -> dict:
    return {"variants": {"a": {"ops": yaml.safe_load(ops_yaml)}}}


def test_every_combinator_the_parser_knows_has_help_and_no_other():
    assert set(COMBINATORS) == set(recipe._COMBINATORS)


@pytest.mark.parametrize("name", sorted(COMBINATORS))
def test_each_example_is_a_valid_recipe_using_that_combinator(name):
    parsed = parse_recipe(variant_ops(COMBINATORS[name].example))
    [node] = parsed.variants[0].ops
    assert type(node).keyword == name


@pytest.mark.parametrize("name", sorted(COMBINATORS))
def test_the_documented_keys_are_exactly_the_ones_the_parser_accepts(name):
    values = {"p": 0.5, "n": 1, "ops": ["fliplr"], "else": ["flipud"], "random_order": True}
    documented = {item.name for item in COMBINATORS[name].fields}
    for key, value in values.items():
        body = {"ops": ["fliplr"], key: value}
        try:
            parse_recipe({"variants": {"a": {"ops": [{name: body}]}}})
            accepted = True
        except RecipeError as exc:
            assert "unknown key" in str(exc)
            accepted = False
        assert accepted == (key in documented), key
    required = {item.name for item in COMBINATORS[name].fields if item.default is None}
    assert required == {"ops"}
    with pytest.raises(RecipeError, match="expected a non-empty list of ops"):
        parse_recipe({"variants": {"a": {"ops": [{name: {}}]}}})


def test_ops_lists_the_combinators_with_their_parameters_and_examples():
    listing = ops_cli().output
    for name, combinator in COMBINATORS.items():
        assert f"\n{name}: {combinator.summary}\n" in listing
        assert f"    example: {combinator.example}" in listing
    assert "    n = 1  [integer in [0, inf]]" in listing
    assert "    random_order = false  [true|false]" in listing


@pytest.mark.parametrize("name", sorted(COMBINATORS))
def test_ops_name_shows_one_combinator(name):
    shown = ops_cli(name)
    assert shown.exit_code == 0
    assert shown.output == combinator_help(name) + "\n"
    assert shown.output.startswith(f"{name}: ")
    assert f"example:\n  {COMBINATORS[name].example}\n" in shown.output


def test_one_of_in_full():
    text = ops_cli("one_of").output
    assert "kind: combinator" in text
    assert "  ops (required)\n      The candidates." in text
    assert "one_of: [a, b, c]" in text


def test_a_misspelt_combinator_is_suggested():
    result = ops_cli("some_off")
    assert result.exit_code == 2 and "did you mean 'some_of'?" in result.output


def test_every_op_says_what_it_does_to_each_kind_of_annotation():
    listing = ops_cli().output
    assert "    annotations: follow the pixels; mirrors (left and right keypoints swap)" in listing
    assert "    annotations: refused (no matrix describes how it moves the pixels)" in listing
    shown = ops_cli("cutout").output
    assert "  masks: unchanged (the object is still there under the patch)\n" in shown
    shown = ops_cli("rotate").output
    assert "  masks: resampled with nearest neighbour" in shown
    assert "swaps left and right" not in shown
    assert "swaps left and right" in ops_cli("keras").output


def test_the_docs_table_of_ops_and_annotations_is_the_registry_s():
    page = (REPO / "docs" / "annotations.md").read_text(encoding="utf-8")
    assert targets_table() in page
    for name in ("fliplr", "elastic", "random_erasing", "perspective"):
        assert f"`{name}`" in targets_table()
