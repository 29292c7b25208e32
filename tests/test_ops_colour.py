"""Colour and tone ops, against torchvision's, Keras', imgaug's or PIL's formulas."""

import colorsys

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from augcli.errors import RecipeError
from augcli.pipeline import Step, apply_steps

from .conftest import diff, photo_like, random_image, run, sample


def test_brightness_multiplies_like_torchvision_and_keras():
    grey = np.full((4, 4, 3), 100, np.uint8)
    assert (run(grey, "brightness", factor=1.5) == 150).all()
    assert (run(np.full((2, 2), 200, np.uint8), "brightness", factor=1.5) == 255).all()
    image = photo_like(seed=3)
    keras = np.asarray(ImageEnhance.Brightness(Image.fromarray(image)).enhance(1.3))
    assert diff(run(image, "brightness", factor=1.3), keras)[1] <= 1
    wide = np.full((3, 3), 1000, np.uint16)
    assert (run(wide, "brightness", factor=2.0) == 2000).all()


def test_contrast_blends_with_the_mean_grey_level():
    image = photo_like(seed=3)
    mean = (image.astype(float) @ [0.2989, 0.587, 0.114]).mean()
    assert (np.abs(run(image, "contrast", factor=0.0).astype(float) - mean) <= 0.5).all()
    expected = np.clip(np.rint(1.7 * image + (1 - 1.7) * mean), 0, 255)
    assert diff(run(image, "contrast", factor=1.7), expected)[1] <= 1
    assert np.array_equal(run(image, "contrast", factor=1.0), image)


def test_saturation_zero_is_grey_and_grey_images_are_left_alone():
    image = photo_like(seed=3)
    grey = run(image, "saturation", factor=0.0)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert diff(run(image, "saturation", factor=2.0), image)[0] > 5
    assert np.array_equal(run(image, "saturation", factor=1.0), image)
    flat = random_image((10, 10))
    assert np.array_equal(run(flat, "saturation", factor=0.0), flat)


def test_hue_turns_the_colour_wheel():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert (run(red, "hue", factor=0.5) == [0, 255, 255]).all()  # cyan
    assert (run(red, "hue", factor=1 / 3) == [0, 255, 0]).all()  # green
    image = photo_like(8, 8, seed=9)
    out = run(image, "hue", factor=0.2)
    for (y, x) in [(0, 0), (3, 5), (7, 2)]:
        h, s, v = colorsys.rgb_to_hsv(*(image[y, x] / 255.0))
        expected = np.array(colorsys.hsv_to_rgb((h + 0.2) % 1.0, s, v)) * 255
        assert np.abs(out[y, x] - expected).max() <= 1
    la = random_image((10, 10, 2))
    assert np.array_equal(run(la, "hue", factor=0.3), la)


def test_color_jitter_samples_torchvision_ranges_and_a_random_order():
    from augcli.ops import colour as ops_colour

    orders, seen = set(), []
    for seed in range(60):
        p = sample("[{color_jitter: {brightness: 0.5, contrast: [0.9, 1.1], saturation: 0, "
                   "hue: 0.2}}]", seed)[0].params
        assert sorted(p["order"]) == ["brightness", "contrast", "hue", "saturation"]
        orders.add(tuple(p["order"]))
        assert 0.5 <= p["brightness"] <= 1.5 and 0.9 <= p["contrast"] <= 1.1
        assert p["saturation"] is None and -0.2 <= p["hue"] <= 0.2
        seen.append(p)
    assert len(orders) > 10
    image = photo_like(seed=4)
    p = seen[0]
    expected = image
    for name in p["order"]:
        if p[name] is not None:
            expected = ops_colour._ADJUST[name](expected, p[name])
    assert np.array_equal(apply_steps(image, [Step("color_jitter", p)]), expected)
    with pytest.raises(RecipeError, match="color_jitter.hue"):
        sample("[{color_jitter: {hue: 0.7}}]")


def test_channel_shift_follows_keras_formula():
    def keras_apply_channel_shift(x, intensity):
        # keras.preprocessing.image.apply_channel_shift with channels last
        x = np.rollaxis(x.astype(np.float64), 2, 0)
        min_x, max_x = np.min(x), np.max(x)
        channels = [np.clip(channel + intensity, min_x, max_x) for channel in x]
        return np.rollaxis(np.stack(channels, axis=0), 0, 3)

    image = np.clip(photo_like(seed=5), 30, 220)
    for intensity in (-40.0, 12.5, 90.0):
        ours = run(image, "channel_shift", intensity=intensity)
        expected = np.rint(keras_apply_channel_shift(image, intensity))
        assert np.array_equal(ours, expected.astype(np.uint8))
    shifts = [sample("[{channel_shift: {intensity: 30}}]", seed)[0].params["intensity"]
              for seed in range(50)]
    assert min(shifts) < -15 and max(shifts) > 15 and max(map(abs, shifts)) <= 30


def test_gamma_is_imgaugs_gamma_contrast_byte_for_byte(iaa):
    from imgaug.augmenters.contrast import adjust_contrast_gamma

    every_uint8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    every_uint16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    for gamma in (0.01, 0.3, 0.7, 1.0, 1.3, 1.6, 2.0, 3.7, 10.0, 100.0):
        for levels in (every_uint8, every_uint16):
            assert np.array_equal(run(levels, "gamma", gamma=gamma),
                                  adjust_contrast_gamma(levels.copy(), gamma)), gamma
    image = photo_like(seed=6)
    assert np.array_equal(run(image, "gamma", gamma=1.6), iaa.GammaContrast(1.6)(image=image))


def test_gamma_darkens_mid_tones_by_the_power_law_and_keeps_alpha():
    # 255 * (128 / 255) ** 2 = 64.25 and 65535 * (32768 / 65535) ** 2 = 16384.25, truncated.
    assert run(np.full((2, 2), 128, np.uint8), "gamma", gamma=2.0)[0, 0] == 64
    assert run(np.full((2, 2), 32768, np.uint16), "gamma", gamma=2.0)[0, 0] == 16384
    rgba = random_image((6, 6, 4))
    out = run(rgba, "gamma", gamma=0.5)
    assert np.array_equal(out[..., 3], rgba[..., 3]) and (out[..., :3] >= rgba[..., :3]).all()


def test_grayscale_blends_to_grey_and_keeps_three_channels(iaa):
    image = photo_like(seed=7)
    out = run(image, "grayscale", alpha=1.0)
    assert out.shape == image.shape
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    for alpha in (1.0, 0.4):
        assert diff(run(image, "grayscale", alpha=alpha), iaa.Grayscale(alpha=alpha)(
            image=image))[1] <= 1
    rgba = random_image((10, 10, 4))
    assert np.array_equal(run(rgba, "grayscale", alpha=1.0)[..., 3], rgba[..., 3])
    assert all(not sample("[{grayscale: {p: 0}}]", seed) for seed in range(10))


def test_invert_maps_x_to_max_minus_x():
    image = random_image((10, 12, 4))
    out = run(image, "invert")
    assert np.array_equal(out[..., :3], 255 - image[..., :3])
    assert np.array_equal(out[..., 3], image[..., 3])
    wide = random_image((5, 5), np.uint16)
    assert np.array_equal(run(wide, "invert"), 65535 - wide)
    fired = sum(bool(sample("[{invert: {p: 0.5}}]", seed)) for seed in range(400))
    assert 160 < fired < 240


def test_clahe_is_imgaugs_clahe_and_raises_local_contrast(iaa):
    image = photo_like(60, 80, seed=5)
    for tiles in (3, 8):
        theirs = iaa.CLAHE(clip_limit=2.0, tile_grid_size_px=tiles)(image=image)
        assert np.array_equal(run(image, "clahe", clip_limit=2.0, tile_grid_size=tiles),
                              theirs)
        grey = np.ascontiguousarray(image[..., 1])
        theirs = iaa.CLAHE(clip_limit=2.0, tile_grid_size_px=tiles)(image=grey)
        assert np.array_equal(run(grey, "clahe", clip_limit=2.0, tile_grid_size=tiles), theirs)
    dull = (photo_like(64, 64, seed=2) // 4 + 100).astype(np.uint8)
    assert run(dull, "clahe", clip_limit=4.0, tile_grid_size=4).std() > dull.std() * 1.5


def test_clahe_on_16_bit_colour_equalizes_as_on_8_bit():
    """imgaug has no 16-bit CLAHE: a 16-bit image that is 257 x an 8-bit one comes out
    close to 257 x the 8-bit result (checked against imgaug above), its alpha untouched."""
    dull = (photo_like(64, 64, seed=2) // 4 + 100).astype(np.uint8)
    eight = run(dull, "clahe", clip_limit=4.0, tile_grid_size=4).astype(float)
    alpha = np.full((64, 64, 1), 4321, np.uint16)
    wide = np.dstack([dull.astype(np.uint16) * 257, alpha])
    out = run(wide, "clahe", clip_limit=4.0, tile_grid_size=4)
    assert out.dtype == np.uint16 and np.array_equal(out[..., 3:], alpha)
    levels = np.abs(out[..., :3] / 257.0 - eight)
    assert levels.max() <= 10 and levels.mean() <= 3
    assert (out[..., :3] / 257.0).std() > dull.std() * 1.5


def test_equalize_is_pils_equalize_per_channel():
    image = (photo_like(64, 80, seed=4) // 2 + 40).astype(np.uint8)
    expected = np.asarray(ImageOps.equalize(Image.fromarray(image)))
    assert np.array_equal(run(image, "equalize"), expected)
    grey = np.ascontiguousarray(image[..., 0])
    assert np.array_equal(run(grey, "equalize"), np.asarray(ImageOps.equalize(
        Image.fromarray(grey))))
    assert np.ptp(run(grey, "equalize")) > np.ptp(grey)
    flat = np.full((5, 5), 9, np.uint8)
    assert np.array_equal(run(flat, "equalize"), flat)
    wide = (grey.astype(np.uint16) * 100)
    assert run(wide, "equalize").max() > 60000
