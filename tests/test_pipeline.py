"""Golden values: derived seeds and sampled parameters pinned to literals.

Other tests check that seeds and parameters are consistent with the code that
makes them. These check that they do not change at all: a change to seeding
or sampling changes every output, so a resumed run would mix old and new
bytes. If one of these fails on purpose, record a new sampling version in the
recipe fingerprint and say so in CHANGELOG.md.
"""

import json
from pathlib import Path

import pytest

from augcli.render import derive_seed

from .conftest import invoke

SAMPLE_RECIPE = Path(__file__).resolve().parents[1] / "recipe.yaml"


@pytest.mark.parametrize(("recipe_seed", "relative", "variant", "index", "expected"), [
    (0, "cat/chelsea.jpg", "mixed", 2, 298957477606452635),
    (7, "cats/tom.jpg", "noise", 2, 7976423383676888302),
    (2**40, "ünï code/ä b.png", "v-1", 10, 125354521217531293),
])
def test_derived_seeds_are_pinned(recipe_seed, relative, variant, index, expected):
    assert derive_seed(recipe_seed, relative, variant, index) == expected


# Manifest records of the shipped sample recipe (seed 0), as first released.
GOLDEN_RECORDS = {
    "cat/chelsea_mixed_2.jpg": (298957477606452635, [
        {"affine": {"rotate": 2.2543828954758744, "shear": -2.675330955654034,
                    "translate_x": 0.0850331043092781, "translate_y": 0.07756704961190317,
                    "scale": 1.0735316913193031, "fill": "constant", "cval": 0.0}}]),
    "cat/chelsea_face_mixed_1.png": (4359184502203846807, [
        {"affine": {"rotate": -7.455489138303893, "shear": 9.923552333037009,
                    "translate_x": -0.01634597840553531, "translate_y": -0.03920245374245657,
                    "scale": 0.9936025920656217, "fill": "constant", "cval": 0.0}},
        {"gaussian_blur": {"sigma": 1.3955886731916107}}]),
    "cat/chelsea_face_rotate_3.png": (5939215591241685593, [
        {"rotate": {"degrees": -4.818215933985677, "fill": "constant", "cval": 0.0}}]),
    "cup/coffee_noise_1.jpg": (5247038134793159124, [
        {"dropout": {"p": 0.3, "per_channel": False, "mask_seed": 402661685}}]),
}


def test_sample_recipe_samples_the_pinned_parameters(tmp_path):
    result = invoke("run", str(SAMPLE_RECIPE), "-o", str(tmp_path / "out"),
                    "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    records = {record["output"]: record for record in map(json.loads, lines)
               if "output" in record}
    for output, (seed, ops) in GOLDEN_RECORDS.items():
        assert records[output]["seed"] == seed, output
        assert records[output]["ops"] == ops, output


def test_a_step_that_would_make_a_huge_image_fails_before_any_allocation():
    import numpy as np

    from augcli.pipeline import OutputTooLarge, sample_steps
    from augcli.recipe import parse_recipe

    # a 48 x 64 source made 100,000 wide is 100,000 x 75,000 (a wider one would fit)
    recipe = parse_recipe({"variants": {"big": {"ops": [{"resize": {"width": 100000}}]}}})
    with pytest.raises(OutputTooLarge, match=r"resize would make a 100000 x 75000 image, "
                                             r"over the limit of 100,000,000 pixels"):
        sample_steps(recipe.variants[0].ops, np.random.default_rng(0), (48, 64))
    pad = parse_recipe({"variants": {"p": {"ops": [{"pad": {"px": 20}}]}}}).variants[0].ops
    assert len(sample_steps(pad, np.random.default_rng(0), (48, 64), max_pixels=88 * 104)) == 1
    with pytest.raises(OutputTooLarge):
        sample_steps(pad, np.random.default_rng(0), (48, 64), max_pixels=88 * 104 - 1)
