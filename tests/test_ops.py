"""Pixel ops, sampling and combinators: each checked by what it did to pixels or choices."""

import numpy as np
import pytest
import yaml

from augcli import engine
from augcli.ops import CATALOG
from augcli.pipeline import Step, apply_steps, sample_steps
from augcli.recipe import parse_recipe

from .conftest import photo_like


def ops_of(text: str):
    return parse_recipe(yaml.safe_load(f"variants: {{a: {{ops: {text}}}}}")).variants[0].ops


def sample(text: str, seed=0, shape=(48, 64, 3)):
    return sample_steps(ops_of(text), np.random.default_rng(seed), shape)


def dropped_fraction(before, after):
    return float(np.mean(np.all(after == 0, axis=-1) & np.any(before != 0, axis=-1)))


def test_dropout_zeroes_about_the_requested_fraction_of_pixels():
    img = np.full((200, 300, 3), 180, np.uint8)
    for p in (0.05, 0.3, 0.5):
        out = apply_steps(img, [Step("dropout", {"p": p, "per_channel": False,
                                                 "mask_seed": 11})])
        assert abs(dropped_fraction(img, out) - p) < 0.01
        # Whole pixels go black; the others are untouched.
        assert set(np.unique(out)) == {0, 180}


def test_dropout_agrees_with_imgaug_dropout():
    iaa = engine.load()
    img = np.full((200, 300, 3), 99, np.uint8)
    theirs = iaa.Dropout(p=0.2, seed=1)(image=img)
    ours = apply_steps(img, [Step("dropout", {"p": 0.2, "per_channel": False, "mask_seed": 1})])
    assert abs(dropped_fraction(img, theirs) - dropped_fraction(img, ours)) < 0.01


def test_dropout_per_channel_drops_channels_independently():
    img = np.full((200, 200, 3), 50, np.uint8)
    out = apply_steps(img, [Step("dropout", {"p": 0.5, "per_channel": True, "mask_seed": 3})])
    zero_channels = (out == 0).sum(axis=-1)
    assert abs((out == 0).mean() - 0.5) < 0.02
    assert (zero_channels == 1).any() and (zero_channels == 2).any()


def test_dropout_keeps_alpha_and_greyscale_works():
    rgba = np.full((100, 100, 4), 200, np.uint8)
    out = apply_steps(rgba, [Step("dropout", {"p": 0.5, "per_channel": False, "mask_seed": 1})])
    assert (out[..., 3] == 200).all() and (out[..., :3] == 0).any()
    grey = np.full((100, 100), 70, np.uint8)
    out = apply_steps(grey, [Step("dropout", {"p": 0.25, "per_channel": False, "mask_seed": 1})])
    assert out.shape == grey.shape and abs((out == 0).mean() - 0.25) < 0.03


def test_gaussian_blur_matches_imgaug_and_smooths():
    iaa = engine.load()
    img = photo_like(60, 80, seed=2)
    ours = apply_steps(img, [Step("gaussian_blur", {"sigma": 1.5})])
    theirs = iaa.GaussianBlur(sigma=1.5)(image=img)
    assert np.array_equal(ours, theirs)
    assert np.abs(np.diff(ours.astype(int), axis=1)).mean() < np.abs(
        np.diff(img.astype(int), axis=1)).mean()
    assert np.array_equal(apply_steps(img, [Step("gaussian_blur", {"sigma": 0.0})]), img)


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


def test_affine_draws_translate_separately_for_x_and_y():
    steps = [sample("[{affine: {translate: 0.2}}]", seed)[0].params for seed in range(50)]
    assert any(abs(s["translate_x"] - s["translate_y"]) > 0.01 for s in steps)
    assert all(abs(s["translate_x"]) <= 0.2 and abs(s["translate_y"]) <= 0.2 for s in steps)


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


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_op_is_documented_and_runs_on_every_layout(name):
    op = CATALOG[name]
    assert op.summary and op.example.startswith(f"- {name}")
    assert all(param.doc for param in op.params)
    rng = np.random.default_rng(0)
    for layout in [(30, 40), (30, 40, 2), (30, 40, 3), (30, 40, 4)]:
        img = rng.integers(0, 256, layout, dtype=np.uint8)
        steps = sample_steps(ops_of(f"[{{{name}: {{}}}}]"), np.random.default_rng(1), img.shape)
        out = apply_steps(img, steps)
        size = op.size_after(steps[0].params, img.shape[:2]) if steps else img.shape[:2]
        assert out.shape == tuple(size) + img.shape[2:] and out.dtype == img.dtype
