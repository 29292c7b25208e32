"""Recipe validation: every problem found at once, with key paths and suggestions."""

import pickle
from pathlib import Path

import pytest
import yaml

from augcli.errors import RecipeError
from augcli.ops.combinators import OneOf, Sometimes
from augcli.params import Choice, Const, Uniform
from augcli.recipe import load_recipe, parse_recipe

from .conftest import invoke, write_recipe


def parse(text: str):
    return parse_recipe(yaml.safe_load(text), base_dir=Path("/base"))


def problems_of(text: str) -> list:
    with pytest.raises(RecipeError) as caught:
        parse(text)
    return caught.value.problems


def test_card_recipe_parses_into_the_expected_distributions():
    recipe = parse("""
        input: imgs
        output: /abs/out
        seed: 3
        variants:
          rotate:
            copies: 3
            ops:
              - rotate: {degrees: 20}
              - fliplr
              - one_of: [{flipud: {p: 1}}, {dropout: {p: {choice: [0.1, 0.2]}}}]
    """)
    assert recipe.input == Path("/base/imgs") and recipe.output == Path("/abs/out")
    assert recipe.seed == 3
    (variant,) = recipe.variants
    assert variant.copies == 3
    rotate, fliplr, one_of = variant.ops
    assert rotate.args["degrees"] == Uniform(-20.0, 20.0)  # bare d means [-d, d]
    assert fliplr.args["p"] == Const(0.5)  # default
    assert isinstance(one_of, OneOf)
    assert one_of.ops[1].args["p"] == Choice((0.1, 0.2))


def test_aliases_resolve_to_the_canonical_op():
    recipe = parse("variants: {a: {ops: [hflip, {shift: {x: 0.2}}]}}")
    assert [node.op for node in recipe.variants[0].ops] == ["fliplr", "translate"]


def test_every_problem_is_reported_with_its_key_path():
    problems = problems_of("""
        seed: -1
        colour: red
        variants:
          mixed:
            copies: 0
            ops:
              - flipr: {p: 0.5}
              - affine: {rotate: [20, -20], sheer: 3}
              - sometimes: {p: 1.5, ops: [{gaussian_blur: {sigma: abc}}]}
              - dropout: {p: [0.1, 0.2, 0.3]}
    """)
    text = "\n".join(problems)
    assert "seed: expected an integer >= 0, got -1" in text
    assert "colour: unknown key" in text
    assert "variants.mixed.copies: expected an integer in [1, 10,000], got 0" in text
    assert "variants.mixed.ops[0]: unknown op 'flipr' (did you mean 'fliplr'?)" in text
    assert "variants.mixed.ops[1].affine.rotate: expected lo <= hi" in text
    assert "variants.mixed.ops[1].affine.sheer: unknown key (did you mean 'shear'?)" in text
    assert "variants.mixed.ops[2].sometimes.p: 1.5 is out of range [0, 1]" in text
    assert "variants.mixed.ops[2].sometimes.ops[0].gaussian_blur.sigma: expected" in text
    assert "variants.mixed.ops[3].dropout.p: expected [lo, hi] (two numbers)" in text
    assert len(problems) == 9


@pytest.mark.parametrize("text, expected", [
    ("variants: {}", "variants: expected a mapping"),
    ("variants: {a: {copies: 2}}", "variants.a.ops: expected a non-empty list"),
    ("variants: {'a b': {ops: [fliplr]}}", "variants.a b: a variant name becomes part"),
    ("format: heic\nvariants: {a: {ops: [fliplr]}}", "format: expected one of jpg"),
    ("quality: 101\nvariants: {a: {ops: [fliplr]}}", "quality: expected an integer in [1, 100]"),
    ("variants: {a: {ops: [{rotate: {fill: mirror}}]}}",
     "variants.a.ops[0].rotate.fill: expected one of constant, edge"),
    ("variants: {a: {ops: [{dropout: {per_channel: [true, false]}}]}}",
     "variants.a.ops[0].dropout.per_channel: expected true|false, got a list"),
    ("variants: {a: {ops: [{rotate: {degrees: {sweep: []}}}]}}",
     "variants.a.ops[0].rotate.degrees.sweep: expected a non-empty list"),
    ("variants: {a: {ops: [{fliplr: {p: true}}]}}", "variants.a.ops[0].fliplr.p: expected"),
    ("- just a list", "expected a mapping of recipe keys"),
])
def test_single_problems_are_named(text, expected):
    assert any(expected in problem for problem in problems_of(text))


def test_recipe_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RecipeError, match="nope.yaml: no such recipe file"):
        load_recipe(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("variants: [unclosed", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"broken.yaml:1:20: not valid YAML: expected ',' or "
                                          r"'\]'"):
        load_recipe(broken)
    broken.write_text("variants:\n  a: {ops: [fliplr]}\n bad: 1\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="broken.yaml:3:2: not valid YAML"):
        load_recipe(broken)


def test_sweeps_expand_as_a_grid_then_copies_in_order():
    recipe = parse("""
        variants:
          grid:
            copies: 2
            ops:
              - dropout: {p: {sweep: [0.1, 0.2]}}
              - sometimes: {p: {sweep: [0, 1]}, ops: [fliplr]}
    """)
    variant = recipe.variants[0]
    trees = list(variant.expand())
    assert variant.outputs_per_source == len(trees) == 8
    pairs = [(tree[0].args["p"].value, tree[1].p.value) for tree in trees]
    assert pairs == [(0.1, 0), (0.1, 0), (0.1, 1), (0.1, 1),
                     (0.2, 0), (0.2, 0), (0.2, 1), (0.2, 1)]
    assert isinstance(trees[0][1], Sometimes)


def test_fingerprint_follows_what_decides_output_bytes():
    base = "seed: 1\nvariants: {a: {ops: [fliplr]}}"
    same_but_output = "input: x\noutput: y\nworkers: 3\n" + base
    assert parse("input: x\n" + base).fingerprint == parse(same_but_output).fingerprint
    # The input folder decides which sources there are: another input is another recipe.
    assert parse("input: x\n" + base).fingerprint != parse("input: z\n" + base).fingerprint
    assert parse(base).fingerprint != parse("input: x\n" + base).fingerprint
    assert parse(base).fingerprint != parse(base.replace("seed: 1", "seed: 2")).fingerprint
    assert parse(base).fingerprint != parse(base.replace("fliplr", "flipud")).fingerprint
    assert parse(base).fingerprint != parse(base).with_overrides(seed=5).fingerprint


def test_parsed_recipes_pickle_for_worker_processes():
    recipe = parse("variants: {a: {copies: 2, ops: [{affine: {rotate: 10}}, "
                   "{some_of: {n: [1, 2], ops: [fliplr, flipud]}}]}}")
    assert pickle.loads(pickle.dumps(recipe)) == recipe


@pytest.mark.parametrize("text, expected", [
    ("{color_jitter: {hue: [0.2, 0.9]}}", "color_jitter.hue: 0.9 is out of range [-0.5, 0.5]"),
    ("{color_jitter: {brightness: [1.5, 0.5]}}", "color_jitter.brightness: expected lo <= hi"),
    ("{random_erasing: {value: [1, 2]}}",
     "random_erasing.value: expected a number or a list of 3 numbers"),
    ("{random_resized_crop: {size: [0, 10]}}", "random_resized_crop.size: 0 is out of range"),
    ("{color_jitter: {hue: -0.5}}", ("color_jitter.hue: a single number d means [-d, d], so it "
                                    "must be >= 0, got -0.5")),
])
def test_list_parameters_are_checked_before_the_run(text, expected):
    problems = problems_of(f"variants: {{a: {{ops: [{text}]}}}}")
    assert any(expected in problem for problem in problems), problems


# --- hostile recipes: clear errors, bounded messages, bounded work --------------------------

@pytest.mark.parametrize("value", [".nan", "[.nan, 3]", "{choice: [1, .nan]}", ".inf", "-.inf",
                                   "{sweep: [.nan]}"])
def test_nan_and_infinity_are_never_valid_numbers(value):
    problems = problems_of(f"variants: {{a: {{ops: [{{rotate: {{degrees: {value}}}}}]}}}}")
    assert len(problems) == 1 and "variants.a.ops[0].rotate.degrees" in problems[0]
    assert "NaN" in problems[0] or "not a finite number" in problems[0]


def test_nan_in_a_list_parameter_and_a_probability_is_refused():
    problems = problems_of("variants: {a: {ops: [{color_jitter: {hue: [.nan, 0.1]}}, "
                           "{dropout: {p: .nan}}]}}")
    assert [problem.split(":")[0] for problem in problems] == [
        "variants.a.ops[0].color_jitter.hue", "variants.a.ops[1].dropout.p"]


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for name, previous in zip("bcdefghi", "abcdefgh"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nvariants: *i\n", encoding="utf-8")
    assert len(bomb.read_bytes()) < 1000
    with pytest.raises(RecipeError) as caught:
        load_recipe(bomb)
    assert "more than 100,000 values once its YAML aliases are expanded" in str(caught.value)
    assert len(str(caught.value)) < 300


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("variants: &v {a: {ops: [*v]}}\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="loop.yaml:1: a YAML alias refers to a value that "
                                          "contains it"):
        load_recipe(path)


def test_messages_quote_at_most_a_short_excerpt_of_a_value(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(f"seed: {'9' * 5000}\nvariants: {{a: {{ops: [fliplr]}}}}\n",
                    encoding="utf-8")
    with pytest.raises(RecipeError, match="long.yaml: not valid YAML .a number has too many "
                                          "digits"):
        load_recipe(path)
    path.write_text("variants: {a: {ops: [{rotate: {degrees: '" + "x" * 200_000 + "'}}]}}\n"
                    f"{'k' * 1000}: 1\n", encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert len(message) < 800, message[:1000]
    assert "(a str of 200,000 characters)" in message
    assert "(a str of 1,000 characters)" in message
    with pytest.raises(RecipeError) as caught:
        parse_recipe({"seed": "s" * 2_000_000, "variants": {"a": {"ops": ["fliplr"]}}})
    assert len(str(caught.value)) < 300 and "(a str of 2,000,000 characters)" in str(caught.value)


def test_a_recipe_file_over_a_megabyte_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("variants: {a: {ops: [fliplr]}}\n#" + "x" * (1 << 20), encoding="utf-8")
    with pytest.raises(RecipeError, match="huge.yaml: 1,048,608 bytes is over the limit of "
                                          "1,048,576 bytes"):
        load_recipe(path)


@pytest.mark.parametrize("text, expected", [
    ("variants: {a: {copies: 1000000000, ops: [fliplr]}}",
     "variants.a.copies: expected an integer in [1, 10,000], got 1000000000"),
    ("variants: {a: {copies: 200, ops: [{rotate: {degrees: {sweep: "
     + str(list(range(100))) + "}}}]}}",
     "variants: 20,000 outputs per source image is over the limit of 10,000"),
    ("target_per_class: 1000000000\nvariants: {a: {ops: [fliplr]}}",
     "target_per_class: expected an integer in [1, 100,000], got 1000000000"),
    ("profile: [x]\nvariants: {a: {ops: [fliplr]}}", "profile: unknown profile ['x']"),
    ("input: ~nouser-augcli/x\nvariants: {a: {ops: [fliplr]}}",
     "input: cannot expand '~nouser-augcli/x': no such user's home folder"),
    ('output: "a\\0b"\nvariants: {a: {ops: [fliplr]}}', ("output: expected a folder path, got "
                                                       "'a\\x00b' (it has a NUL character)")),
    ("annotations: {format: [yolo]}\nvariants: {a: {ops: [fliplr]}}",
     "annotations.format: expected one of"),
])
def test_absurd_or_malformed_values_are_refused_with_the_limit(text, expected):
    problems = problems_of(text)
    assert any(expected in problem for problem in problems), problems


def test_deeply_nested_combinators_are_refused_not_a_crash(tmp_path):
    depth = 40
    ops = "{sometimes: {ops: [" * depth + "fliplr" + "]}}" * depth
    problems = problems_of(f"variants: {{a: {{ops: [{ops}]}}}}")
    assert problems == [(f"variants.a.ops{'[0].sometimes.ops' * 33}: combinators nested more "
                        "than 32 deep")]
    path = tmp_path / "deep.yaml"
    path.write_text(f"variants: {{a: {{ops: [{'[' * 1000}]}}}}\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="deep.yaml: nested too deeply"):
        load_recipe(path)


def test_fingerprint_changes_with_the_output_version(monkeypatch):
    """A new output version makes old manifests foreign: a resume never mixes the two."""
    from augcli import recipe as recipe_module

    parsed = parse("seed: 1\nvariants: {a: {ops: [fliplr]}}\n")
    before = parsed.fingerprint
    monkeypatch.setattr(recipe_module, "OUTPUT_VERSION", recipe_module.OUTPUT_VERSION + 1)
    assert parsed.fingerprint != before


def test_null_parameter_values_are_recipe_errors_not_crashes(tmp_path):
    recipe = write_recipe(tmp_path, """\
        variants:
          a: {ops: [{color_jitter: {brightness: null}}]}
          b: {ops: [{color_jitter: {brightness: [0.1, null]}}]}
    """)
    result = invoke("validate", str(recipe))
    assert result.exit_code == 2 and "Traceback" not in result.output
    for variant in ("a", "b"):
        assert (f"variants.{variant}.ops[0].color_jitter.brightness: expected a number or a "
                "list of numbers, got None") in result.output
