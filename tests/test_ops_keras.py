"""The keras op against Keras' documented formulas, recomputed here with scipy as Keras did."""

import numpy as np
import pytest
from scipy import ndimage

from augcli.ops import keras as keras_dialect
from augcli.params import Const

from .conftest import photo_like

NEUTRAL = {"theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.0,
           "flip_horizontal": False, "flip_vertical": False, "channel_shift_intensity": None,
           "brightness": None, "fill_mode": "constant", "cval": 0.0}


def keras_affine_reference(image, theta, tx, ty, shear, zx, zy, mode, cval):
    """ImageDataGenerator.apply_transform's affine part (scipy backend), in float64."""
    t, s = np.deg2rad(theta), np.deg2rad(shear)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shearing = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    matrix = rotation @ shift @ shearing @ zoom
    h, w = image.shape[:2]
    ox, oy = h / 2 - 0.5, w / 2 - 0.5
    offset = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
    reset = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    matrix = offset @ matrix @ reset
    channels = [ndimage.affine_transform(image[..., c].astype(np.float64), matrix[:2, :2],
                                         matrix[:2, 2], order=1, mode=mode, cval=cval)
                for c in range(image.shape[2])]
    return np.stack(channels, axis=-1)


@pytest.fixture
def smooth():
    import cv2

    return cv2.GaussianBlur(photo_like(60, 80, seed=12), (0, 0), 2)


@pytest.mark.parametrize("transform", [
    {"theta": 25.0},
    {"tx": 7.0, "ty": -11.0},
    {"shear": 14.0},
    {"zx": 1.3, "zy": 0.8},
    {"theta": -15.0, "tx": 3.0, "ty": 5.0, "shear": 8.0, "zx": 0.9, "zy": 1.1},
])
def test_affine_part_matches_keras(smooth, transform):
    params = {**NEUTRAL, **transform}
    ours = keras_dialect.apply(smooth, params).astype(np.float64)
    reference = keras_affine_reference(smooth, params["theta"], params["tx"], params["ty"],
                                       params["shear"], params["zx"], params["zy"],
                                       "constant", 0.0)
    # OpenCV interpolates with 1/32-pixel fixed-point weights and rounds to
    # uint8: within a level on average. A wrong direction or axis is off by tens.
    inside = (slice(6, -6), slice(6, -6))  # borders differ only in how edge pixels blend
    assert np.abs(ours[inside] - reference[inside]).mean() < 1.0
    assert np.abs(ours - reference).mean() < 3


def test_zoom_above_one_zooms_out_as_in_keras():
    image = np.zeros((41, 41, 3), np.uint8)
    image[20, 35] = 255  # 15 px right of the centre
    out = keras_dialect.apply(image, {**NEUTRAL, "zx": 1.5, "zy": 1.5})
    row, col = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    assert (row, col) == (20, 30)  # 15 / 1.5 = 10 px from the centre


def test_channel_shift_adds_and_clips_to_the_image_range():
    image = np.array([[[10, 50, 200], [100, 120, 140]]], np.uint8)
    out = keras_dialect.apply(image, {**NEUTRAL, "channel_shift_intensity": 30.0})
    expected = np.clip(image.astype(float) + 30, image.min(), image.max())
    assert np.array_equal(out, expected.astype(np.uint8))


def test_brightness_stretches_then_scales_like_keras():
    image = np.array([[[50, 50, 50], [150, 150, 150]]], np.uint8)
    out = keras_dialect.apply(image, {**NEUTRAL, "brightness": 0.5})
    # array_to_img(scale=True) maps 50 -> 0 and 150 -> 255, then PIL halves.
    assert out[0, 0].tolist() == [0, 0, 0]
    assert abs(int(out[0, 1, 0]) - 128) <= 1


def test_flips_and_alpha():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 200)
    out = keras_dialect.apply(rgba, {**NEUTRAL, "flip_horizontal": True, "flip_vertical": True,
                                     "channel_shift_intensity": 10.0})
    assert out.shape == rgba.shape
    assert out[3, 5, 3] == 200  # alpha moved with the pixel, untouched by the shift


def _sample(**kwargs):
    args = {p.name: Const(kwargs.get(p.name, p.default)) for p in keras_dialect.PARAMS}
    rng = np.random.default_rng(kwargs.pop("seed", 0))

    def draw(name):
        value = args[name].value
        return tuple(value) if isinstance(value, list) else value

    return keras_dialect.sample(draw, rng, (50, 100))


def test_shift_ranges_follow_keras_fraction_pixel_and_choice_rules():
    fractions = [_sample(width_shift_range=0.2, height_shift_range=0.1, seed=s)
                 for s in range(200)]
    assert max(abs(p["ty"]) for p in fractions) <= 20 and max(abs(p["ty"]) for p in fractions) > 15
    assert max(abs(p["tx"]) for p in fractions) <= 5
    pixels = [_sample(width_shift_range=3, seed=s)["ty"] for s in range(100)]
    assert max(abs(p) for p in pixels) <= 3 and max(abs(p) for p in pixels) > 2
    choices = {_sample(width_shift_range=[10, 20], seed=s)["ty"] for s in range(100)}
    assert choices == {-20.0, -10.0, 10.0, 20.0}


def test_zoom_range_draws_x_and_y_separately():
    draws = [_sample(zoom_range=0.2, seed=s) for s in range(100)]
    assert all(0.8 <= p["zx"] <= 1.2 and 0.8 <= p["zy"] <= 1.2 for p in draws)
    assert any(abs(p["zx"] - p["zy"]) > 0.05 for p in draws)
    assert all(p["zx"] == p["zy"] == 1.0 for p in (_sample(seed=s) for s in range(5)))


def test_matrix_carries_points_like_the_pixels():
    image = np.zeros((41, 61, 3), np.uint8)
    image[10, 45] = 255
    params = {**NEUTRAL, "theta": 30.0, "tx": 4.0, "flip_horizontal": True}
    out = keras_dialect.apply(image, params)
    x, y, _ = keras_dialect.matrix(params, image.shape[:2]) @ np.array([45, 10, 1.0])
    row, col = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    assert abs(col - x) <= 1 and abs(row - y) <= 1


def test_recipe_refuses_keras_settings_that_are_not_augmentations():
    import yaml

    from augcli.errors import RecipeError
    from augcli.recipe import parse_recipe

    text = ("variants: {a: {ops: [{keras: {rotation_range: 10, rescale: 0.0039, "
            "featurewise_center: true, zoom_range: [1.2, 0.8]}}]}}")
    with pytest.raises(RecipeError) as caught:
        parse_recipe(yaml.safe_load(text))
    problems = "\n".join(caught.value.problems)
    assert "keras.featurewise_center: 'featurewise_center' is a Keras normalization" in problems
    assert "keras.rescale: 'rescale' is a Keras normalization setting, not an augmentation; " \
           "normalize the dataset with 'augcli normalize' instead" in problems
    assert "keras.zoom_range: expected lo <= hi" in problems
