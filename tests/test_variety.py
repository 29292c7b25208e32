"""Every output worth uploading: outputs of one source differ in pixels from it and each other."""

import hashlib
import json
from itertools import combinations

import numpy as np
import pytest

from augcli.imagefiles import read_image
from augcli.pipeline import Step, apply_steps
from augcli.recipe import parse_recipe
from augcli.render import MAX_DRAWS, Distinct, OutputPlan, derive_seed, redraw_seed
from augcli.runner import MANIFEST_NAME, read_manifest, run_recipe

from .conftest import invoke, photo_like, save, write_recipe

FLIPS = """\
    input: in
    output: out
    seed: 3
    variants:
      flips:
        copies: 3
        ops: [{fliplr: {p: 0.5}}, {flipud: {p: 0.5}}]
"""


@pytest.fixture
def sources(tmp_path):
    for i in range(6):
        save(tmp_path / "in" / f"s{i}.png", photo_like(seed=10 + i))
    return tmp_path / "in"


def pixels_by_source(out, records) -> dict:
    grouped = {}
    for record in records:
        grouped.setdefault(record["source"], []).append(read_image(out / record["output"]))
    return grouped


def test_outputs_of_a_source_differ_from_it_and_from_each_other(tmp_path, sources):
    report = run_recipe(write_recipe(tmp_path, FLIPS), workers=1)
    out = tmp_path / "out"
    assert report.exit_code == 0 and report.written == 18  # 3 flips besides the identity
    records = read_manifest(out)
    for source, images in pixels_by_source(out, records).items():
        original = read_image(sources / source)
        assert not any(np.array_equal(image, original) for image in images), source
        assert not any(np.array_equal(a, b) for a, b in combinations(images, 2)), source
    # Three of the four outcomes, so most sources needed redraws; each is recorded with the
    # seed that made its pixels, and that seed is derived from the first one.
    redrawn = [r for r in records if r.get("redraws")]
    assert redrawn
    for record in redrawn:
        first = derive_seed(3, record["source"], "flips", record["index"])
        assert record["seed"] == redraw_seed(first, record["redraws"])
        steps = [Step(*next(iter(step.items()))) for step in record["ops"]]
        replayed = apply_steps(read_image(sources / record["source"]), steps)
        assert np.array_equal(replayed, read_image(out / record["output"]))


def test_redraw_seeds_are_pinned():
    # Changing these changes output bytes: bump OUTPUT_VERSION in augcli/recipe.py.
    assert redraw_seed(0, 1) == 6528918111040916223
    assert redraw_seed(derive_seed(3, "s0.png", "flips", 2), 4) == 7945158426966501413
    key = b"12345\x1fredraw\x1f2"  # the documented derivation: 63 bits of BLAKE2b-64
    assert redraw_seed(12345, 2) == int.from_bytes(hashlib.blake2b(key, digest_size=8)
                                                   .digest(), "big") >> 1


def test_redraws_give_the_same_bytes_for_any_worker_count_and_on_resume(tmp_path, sources):
    recipe = write_recipe(tmp_path, FLIPS)
    run_recipe(recipe, output=tmp_path / "one", workers=1)
    run_recipe(recipe, output=tmp_path / "two", workers=2)
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    assert one == {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()}
    # Resume: an output made by a redraw away from its earlier siblings is lost (as if the
    # run was killed before it); the rerun draws the siblings again to tell it apart.
    records = read_manifest(tmp_path / "one")
    lost = next(r for r in records if r.get("redraws") and r["index"] == 3)
    (tmp_path / "one" / lost["output"]).unlink()
    kept = [r for r in records if r is not lost]
    (tmp_path / "one" / MANIFEST_NAME).write_text(
        "".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    report = run_recipe(recipe, output=tmp_path / "one", workers=1)
    assert (report.written, report.skipped) == (1, 17)
    assert {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()} == one


def test_a_variant_that_cannot_make_enough_different_images_reports_the_rest(tmp_path):
    save(tmp_path / "in" / "a.png", photo_like(seed=1))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\n"
                                    "variants: {flip: {copies: 3, ops: [{fliplr: {p: 1}}]}}\n")
    result = invoke("run", str(recipe), "-w", "1")
    assert result.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_flip_1.png",
                                                                    MANIFEST_NAME]
    for name in ("a_flip_2.png", "a_flip_3.png"):
        assert f"failed: {name}: identical to a_flip_1.png in all {MAX_DRAWS} draws" in \
            result.output


@pytest.mark.parametrize("ops, copies, warning", [
    ("[{fliplr: {p: 0.5}}]", 5, "variants.v: makes only 1 different image(s) from a source"),
    ("[{fliplr: {p: 0}}, {rotate: {degrees: 0}}]", 1,
     "variants.v: none of its ops changes an image"),
    ("[{fliplr: {p: 1}}, {flipud: {p: {sweep: [0, 1]}}}]", 2,
     "variants.v (sweep value 1): makes only 1 different image(s)"),
    ("[{rotate: {degrees: 10}}]", 5, None),
    ("[{fliplr: {p: 0.5}}, {flipud: {p: 0.5}}]", 3, None),
])
def test_validate_and_dry_run_warn_about_a_variant_that_cannot_vary(tmp_path, ops, copies,
                                                                   warning):
    save(tmp_path / "in" / "a.png", photo_like(seed=1))
    recipe = write_recipe(tmp_path, f"input: in\noutput: out\n"
                                    f"variants: {{v: {{copies: {copies}, ops: {ops}}}}}\n")
    for command in (["validate", str(recipe)], ["run", str(recipe), "--dry-run"]):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
        if warning is None:
            assert "warning" not in result.output
        else:
            assert f"warning: {warning}" in result.output
    assert not (tmp_path / "out").exists()


def test_dry_run_counts_what_balancing_asks_of_a_variant(tmp_path):
    save(tmp_path / "in" / "cat" / "a.png", photo_like(seed=1))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\ntarget_per_class: 5\n"
                                    "variants: {flip: {ops: [{fliplr: {p: 1}}]}}\n")
    assert "warning" not in invoke("validate", str(recipe)).output
    result = invoke("run", str(recipe), "--dry-run")
    assert "warning: variants.flip: makes only 1 different image(s) from a source (in 64 " \
           "tries) but 4 are asked of it" in result.output


def test_images_sharing_a_key_are_compared_in_full():
    """The key samples the pixels; one changed value that no sample falls on is still
    a different image, and a flipped output equal to an earlier one is still caught."""
    source = photo_like(seed=3)
    distinct = Distinct(source, "source.jpg")
    changed = source.copy()
    changed[0, 0, 0] ^= 1  # the first value: before the first sample
    plan = OutputPlan("out_1.jpg", "v", 1, 0)
    assert distinct.add(source, changed, "out_1.jpg", plan) is None
    assert distinct.add(source, source.copy(), "out_2.jpg", plan) == "source.jpg"
    recipe = parse_recipe({"input": ".", "output": "out", "variants": {
        "v": {"copies": 1, "ops": [{"fliplr": {"p": 1.0}}]}}})
    flip = OutputPlan("out_3.jpg", "v", 3, 0, next(iter(recipe.variants[0].expand())))
    flipped = source[:, ::-1]
    assert distinct.add(source, flipped, "out_3.jpg", flip) is None
    assert distinct.add(source, flipped.copy(), "out_4.jpg", plan) == "out_3.jpg"
