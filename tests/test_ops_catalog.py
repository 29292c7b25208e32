"""The op catalog as a whole: registry, help, examples, and the contract every op keeps.

Every op runs on every image layout (grey, grey + alpha, RGB, RGBA, 16-bit
grey) with its defaults, makes the size it reports and keeps the dtype, and
gives the same steps and pixels for the same seed. The ops' own behaviour is
tested per family in test_ops_geometric, test_ops_colour, test_ops_pixel and
test_ops_keras.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from augcli.ops import ALIASES, CATALOG, lookup, op_help
from augcli.pipeline import Step, apply_steps, sample_steps
from augcli.targets.boxes import ImageBoxes
from augcli.targets.polygons import Polygon

from .conftest import LAYOUTS, ops_of, photo_like, random_image, run, sample

# The ops added after the first catalog (flips, affine warps, dropout, blur, keras).
NEW_OPS = {
    "zoom", "crop", "random_resized_crop", "resize", "letterbox", "pad", "rot90", "perspective",
    "elastic", "coarse_dropout", "cutout", "random_erasing", "salt_and_pepper", "brightness",
    "contrast", "saturation", "hue", "color_jitter", "channel_shift", "gamma", "grayscale",
    "invert", "clahe", "equalize", "gaussian_noise", "motion_blur", "sharpen", "jpeg",
}


# --- the registry and its help ---------------------------------------------------------------

def test_the_catalog_has_every_new_op_with_docs_and_unique_aliases():
    assert set(CATALOG) >= NEW_OPS
    for name in NEW_OPS:
        op = CATALOG[name]
        assert op.summary and op.example.startswith(f"- {name}"), name
        assert all(param.doc for param in op.params), name
        assert op_help(name).startswith(f"{name}:")
        # The example parses as a recipe, so every snippet in `augcli ops NAME` works.
        assert ops_of(f"[{op.example[2:]}]")
    assert not set(ALIASES) & set(CATALOG)
    for alias, name in [("scale", "zoom"), ("random_crop", "crop"), ("multiply", "brightness"),
                        ("colour_jitter", "color_jitter"), ("greyscale", "grayscale"),
                        ("jpeg_compression", "jpeg"), ("elastic_transform", "elastic"),
                        ("resize_with_pad", "letterbox"), ("additive_gaussian_noise",
                                                           "gaussian_noise")]:
        assert lookup(alias).name == name


def test_the_ops_table_lists_every_new_op_and_its_aliases():
    page = (Path(__file__).parent.parent / "docs" / "ops" / "index.md").read_text("utf-8")
    table = page.split("## At a glance", 1)[1].split("\n\n", 2)[1]
    rows = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}
    for name in NEW_OPS:
        assert name in rows, name
        assert all(f"`{alias}`" in rows[name].split("|")[1] for alias in CATALOG[name].aliases)
        assert all(f"`{param.name}`" in rows[name] for param in CATALOG[name].params), name


def test_op_help_says_which_ops_change_the_size():
    assert "changes the image size" in op_help("crop")
    assert "changes the image size" not in op_help("zoom")
    assert "composed with neighbouring" in op_help("pad")
    assert "resamples on its own" in op_help("rot90")


# --- the contract: every op on every layout --------------------------------------------------

# The imgaug dialect has its own syntax (no defaults): test_ops_imgaug runs every augmenter.
@pytest.mark.parametrize("name", sorted(name for name, op in CATALOG.items() if op.parse is None))
def test_every_op_is_documented_and_runs_on_every_layout(name):
    """Docs; shape (as size_after says), dtype, and the same pixels for the same seed. Ops
    that take donors get donors of every layout."""
    op = CATALOG[name]
    assert op.summary and op.example.startswith(f"- {name}")
    assert all(param.doc for param in op.params)
    names = tuple(f"donor{i}" for i in range(op.donor.most if op.donor else 0))
    donors = {name: random_image(*LAYOUTS[i % len(LAYOUTS)], seed=i)
              for i, name in enumerate(names)}
    outlines = {name: ImageBoxes(d.shape[1], d.shape[0], (Polygon("thing", (
        (1, 1, d.shape[1] - 2, 2, d.shape[1] / 2, d.shape[0] - 1),)),))
        for name, d in donors.items()}  # what copy_paste cuts out
    for layout, dtype in LAYOUTS:
        image = random_image(layout, dtype)
        for seed in range(3):
            steps = sample_steps(ops_of(f"[{{{name}: {{}}}}]"), np.random.default_rng(seed),
                                 image.shape, donors=names)
            out = apply_steps(image, steps, donor=donors.get, donor_targets=outlines.get)
            size = image.shape[:2]
            for step in steps:
                size = CATALOG[step.op].size_after(step.params, size)
            assert out.shape == tuple(size) + image.shape[2:], (layout, dtype)
            assert out.dtype == image.dtype
            again = sample_steps(ops_of(f"[{{{name}: {{}}}}]"), np.random.default_rng(seed),
                                 image.shape, donors=names)
            assert again == steps
            assert np.array_equal(apply_steps(image, again, donor=donors.get,
                                              donor_targets=outlines.get), out)


@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_recorded_params_replay_through_json(name):
    """What the manifest holds is enough to make the same pixels again."""
    image = photo_like(40, 56, seed=3)
    for seed in range(3):
        steps = sample_steps(ops_of(f"[{{{name}: {{}}}}]"), np.random.default_rng(seed),
                             image.shape)
        replayed = [Step(op, params) for record in json.loads(json.dumps(
            [s.as_record() for s in steps])) for op, params in record.items()]
        assert np.array_equal(apply_steps(image, replayed), apply_steps(image, steps))


def test_intensity_ops_scale_to_16_bit():
    wide = np.full((20, 20), 1000, np.uint16)
    two_levels = wide.copy()
    two_levels[10:] = 60000
    shifted = run(two_levels, "channel_shift", intensity=10.0)  # 10 levels = 2,570 at 16 bits
    assert (shifted[:10] == 3570).all() and (shifted[10:] == 60000).all()  # clipped to max
    out = run(wide, "cutout", boxes=[[0, 0, 5, 5]], fill_mode="constant", cval=255,
              fill_per_channel=False, seed=0)
    assert (out[:5, :5] == 65535).all()
    assert math.isclose(run(wide, "brightness", factor=0.5)[0, 0], 500)


# --- sampling shared by every op -------------------------------------------------------------

def test_probability_fires_exactly_when_random_is_below_p():
    never = [sample("[{fliplr: {p: 0}}]", seed) for seed in range(200)]
    always = [sample("[{fliplr: {p: 1}}]", seed) for seed in range(200)]
    assert all(steps == [] for steps in never)
    assert all([s.op for s in steps] == ["fliplr"] for steps in always)
    half = sum(bool(sample("[{fliplr: {p: 0.5}}]", seed)) for seed in range(2000))
    assert 900 < half < 1100


def test_ranges_are_sampled_within_bounds_and_recorded():
    angles = [sample("[{rotate: {degrees: [-20, 5]}}]", seed)[0].params["degrees"]
              for seed in range(300)]
    assert min(angles) >= -20 and max(angles) <= 5
    assert min(angles) < -15 and max(angles) > 0  # spread over the range
    assert all(isinstance(angle, float) for angle in angles)


def test_same_seed_same_steps_and_pixels():
    text = "[fliplr, {affine: {rotate: 30, scale: [0.8, 1.2]}}, {dropout: {p: 0.1}}]"
    img = photo_like(seed=4)
    a, b = sample(text, seed=42), sample(text, seed=42)
    assert a == b
    assert np.array_equal(apply_steps(img, a), apply_steps(img, b))
    assert sample(text, seed=43) != a


def test_sometimes_takes_else_branch_when_it_does_not_fire():
    assert [s.op for s in sample("[{sometimes: {p: 0, ops: [fliplr], else: [flipud]}}]")] == [
        "flipud"]
    assert [s.op for s in sample(
        "[{sometimes: {p: 1, ops: [{fliplr: {p: 1}}], else: [flipud]}}]")] == ["fliplr"]


def test_one_of_picks_exactly_one_and_all_get_picked():
    text = "[{one_of: [{fliplr: {p: 1}}, {flipud: {p: 1}}, {rotate: {degrees: 5}}]}]"
    picks = [tuple(s.op for s in sample(text, seed)) for seed in range(100)]
    assert all(len(pick) == 1 for pick in picks)
    assert {pick[0] for pick in picks} == {"fliplr", "flipud", "rotate"}


def test_some_of_picks_n_distinct_ops_in_recipe_order_unless_random():
    text = ("[{some_of: {n: [1, 2], ops: [{fliplr: {p: 1}}, {flipud: {p: 1}}, "
            "{rotate: {degrees: 5}}]}}]")
    order = {"fliplr": 0, "flipud": 1, "rotate": 2}
    picks = [[s.op for s in sample(text, seed)] for seed in range(200)]
    assert {len(pick) for pick in picks} == {1, 2}
    assert all(len(set(pick)) == len(pick) for pick in picks)
    assert all(sorted(pick, key=order.get) == pick for pick in picks)
    shuffled = text.replace("n: [1, 2]", "n: 3, random_order: true")
    orders = {tuple(s.op for s in sample(shuffled, seed)) for seed in range(100)}
    assert len(orders) == 6


def test_sequence_keeps_order_or_shuffles():
    fixed = "[{sequence: [{fliplr: {p: 1}}, {flipud: {p: 1}}]}]"
    assert all([s.op for s in sample(fixed, seed)] == ["fliplr", "flipud"] for seed in range(20))
    shuffled = "[{sequence: {ops: [{fliplr: {p: 1}}, {flipud: {p: 1}}], random_order: true}}]"
    assert len({tuple(s.op for s in sample(shuffled, seed)) for seed in range(50)}) == 2
