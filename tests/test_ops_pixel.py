"""Pixel ops: dropout, erasing, noise, blur and compression.

Each checked by what it did to the pixels and, where imgaug or torchvision
has the same op, against that.
"""

import numpy as np
import pytest

from augcli.errors import RecipeError
from augcli.pipeline import Step, apply_steps

from .conftest import LAYOUTS, diff, photo_like, random_image, run, sample, smooth


def dropped_fraction(before, after):
    return float(np.mean(np.all(after == 0, axis=-1) & np.any(before != 0, axis=-1)))


# --- dropout and gaussian_blur ---------------------------------------------------------------

def test_dropout_zeroes_about_the_requested_fraction_of_pixels():
    img = np.full((200, 300, 3), 180, np.uint8)
    for p in (0.05, 0.3, 0.5):
        out = apply_steps(img, [Step("dropout", {"p": p, "per_channel": False,
                                                 "mask_seed": 11})])
        assert abs(dropped_fraction(img, out) - p) < 0.01
        # Whole pixels go black; the others are untouched.
        assert set(np.unique(out)) == {0, 180}


def test_dropout_agrees_with_imgaug_dropout(iaa):
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


@pytest.mark.parametrize("shape, dtype", [*LAYOUTS, ((30, 40, 3), np.uint16)])
def test_gaussian_blur_is_imgaugs_gaussian_blur_byte_for_byte(iaa, shape, dtype):
    from imgaug.augmenters.blur import blur_gaussian_

    image = random_image(shape, dtype, seed=4)
    # Sigmas on both sides of imgaug's kernel-size steps (3 and 5) and its eps (0.001).
    for sigma in (0.0, 0.0009, 0.002, 0.3, 1.0, 1.5, 2.99, 3.0, 4.5, 5.0, 8.3, 20.0):
        ours = run(image, "gaussian_blur", sigma=sigma)
        theirs = blur_gaussian_(image.copy(), sigma=sigma)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), sigma
    assert np.array_equal(run(image, "gaussian_blur", sigma=1.5),
                          iaa.GaussianBlur(sigma=1.5)(image=image))


def test_gaussian_blur_smooths_and_sigma_0_is_a_no_op():
    img = photo_like(60, 80, seed=2)
    ours = apply_steps(img, [Step("gaussian_blur", {"sigma": 1.5})])
    assert np.abs(np.diff(ours.astype(int), axis=1)).mean() < np.abs(
        np.diff(img.astype(int), axis=1)).mean()
    assert np.array_equal(apply_steps(img, [Step("gaussian_blur", {"sigma": 0.0})]), img)
    # A 5x5 kernel (imgaug's smallest) on one bright pixel: a symmetric bump summing to it.
    dot = np.zeros((11, 11), np.uint8)
    dot[5, 5] = 250
    bump = run(dot, "gaussian_blur", sigma=1.0)
    assert bump[5, 5] == bump.max() and np.array_equal(bump, bump.T)
    assert np.array_equal(bump, bump[::-1, ::-1]) and bump[:3].sum() == bump[:, :3].sum() == 0
    assert abs(int(bump.sum()) - 250) <= 15


# --- erasing ---------------------------------------------------------------------------------

def test_coarse_dropout_drops_whole_grid_cells_at_about_p(iaa):
    image = np.full((100, 100, 3), 180, np.uint8)
    params = {"p": 0.3, "size_percent_y": 0.1, "size_percent_x": 0.1, "per_channel": False}
    fractions = []
    for seed in range(20):
        out = run(image, "coarse_dropout", **params, seed=seed)
        dropped = np.all(out == 0, axis=-1)
        blocks = dropped.reshape(10, 10, 10, 10).transpose(0, 2, 1, 3).reshape(100, 100)
        assert (blocks.all(axis=1) | ~blocks.any(axis=1)).all()  # 10x10 cells, all or none
        fractions.append(dropped.mean())
    assert abs(np.mean(fractions) - 0.3) < 0.04
    theirs = [np.all(iaa.CoarseDropout(0.3, size_percent=0.1, seed=s)(image=image) == 0,
                     axis=-1).mean() for s in range(20)]
    assert abs(np.mean(theirs) - np.mean(fractions)) < 0.05
    rgba = np.full((50, 50, 4), 200, np.uint8)
    out = run(rgba, "coarse_dropout", **params, seed=1)
    assert (out[..., 3] == 200).all() and (out[..., :3] == 0).any()


def test_cutout_fills_the_recorded_boxes_like_imgaug(iaa):
    from imgaug.augmenters.arithmetic import cutout

    image = photo_like(48, 64, seed=2)
    for seed in range(10):
        step, = sample("[{cutout: {nb_iterations: 2, size: 0.3, cval: 77}}]", seed)
        out = apply_steps(image, [step])
        expected = image
        for x1, y1, x2, y2 in step.params["boxes"]:
            expected = cutout(expected, x1, y1, x2, y2, fill_mode="constant", cval=77)
            if x1 > 0 and x2 < 64 and y1 > 0 and y2 < 48:
                assert x2 - x1 == y2 - y1 or abs((x2 - x1) - (y2 - y1)) <= 1  # squared
        assert np.array_equal(out, expected)


def test_cutout_gaussian_fill_is_noise_around_mid_grey():
    image = np.zeros((100, 100), np.uint8)
    out = run(image, "cutout", boxes=[[10, 10, 90, 90]], fill_mode="gaussian", cval=0,
              fill_per_channel=False, seed=4)
    patch = out[10:90, 10:90].astype(float)
    assert abs(patch.mean() - 127.5) < 2 and abs(patch.std() - 42.5) < 2
    assert (out[:10] == 0).all()


def test_random_erasing_area_and_ratio_as_torchvision():
    image = photo_like(100, 120, seed=1)
    erased = 0
    for seed in range(300):
        steps = sample("[{random_erasing: {p: 1}}]", seed, image.shape)
        if not steps:
            continue
        p = steps[0].params
        erased += 1
        w, h = p["width"], p["height"]
        assert 0.02 * 0.9 <= w * h / 12000 <= 0.33 * 1.1 and h < 100 and w < 120
        if w > 5 and h > 5:
            assert 0.3 / 1.5 <= h / w <= 3.3 * 1.5
        out = apply_steps(image, steps)
        window = out[p["y"]:p["y"] + h, p["x"]:p["x"] + w]
        assert (window == 0).all()
        out[p["y"]:p["y"] + h, p["x"]:p["x"] + w] = image[p["y"]:p["y"] + h, p["x"]:p["x"] + w]
        assert np.array_equal(out, image)
    assert erased > 250  # ten attempts nearly always find a rectangle
    assert all(not sample("[{random_erasing: {p: 0}}]", seed) for seed in range(20))


def test_random_erasing_fills_a_colour_or_noise():
    image = np.zeros((50, 60, 4), np.uint8)
    params = {"x": 5, "y": 6, "width": 20, "height": 10, "seed": 1}
    coloured = run(image, "random_erasing", **params, value=[10, 20, 30], random_fill=False)
    assert (coloured[6:16, 5:25, :3] == [10, 20, 30]).all() and (coloured[..., 3] == 0).all()
    noisy = run(image, "random_erasing", **params, value=0, random_fill=True)
    assert noisy[6:16, 5:25, :3].std() > 50 and noisy[:6].sum() == 0
    with pytest.raises(RecipeError, match="random_erasing.value"):
        sample("[{random_erasing: {p: 1, value: [1, 2]}}]")


def test_salt_and_pepper_replaces_about_p_with_black_and_white_equally():
    image = np.full((200, 200), 100, np.uint8)
    out = run(image, "salt_and_pepper", p=0.2, per_channel=False, seed=5)
    assert abs((out != 100).mean() - 0.2) < 0.01
    assert abs((out == 0).mean() - (out == 255).mean()) < 0.01
    assert set(np.unique(out)) == {0, 100, 255}
    rgba = np.full((100, 100, 4), 100, np.uint8)
    out = run(rgba, "salt_and_pepper", p=0.5, per_channel=False, seed=5)
    assert (out[..., 3] == 100).all()
    assert (out[..., 0] == out[..., 1]).all()  # whole pixels, not channels
    wide = run(image.astype(np.uint16), "salt_and_pepper", p=0.5, per_channel=False, seed=5)
    assert (wide == 65535).any()


# --- noise, blur, compression ----------------------------------------------------------------

def test_gaussian_noise_has_the_requested_standard_deviation():
    image = np.full((200, 200, 3), 128, np.uint8)
    out = run(image, "gaussian_noise", scale=20.0, per_channel=False, seed=1)
    noise = out.astype(float) - 128
    assert abs(noise.std() - 20) < 0.5 and abs(noise.mean()) < 0.5
    assert (noise[..., 0] == noise[..., 1]).all()  # one value for all channels of a pixel
    coloured = run(image, "gaussian_noise", scale=20.0, per_channel=True, seed=1)
    assert (coloured[..., 0] != coloured[..., 1]).mean() > 0.9
    wide = np.full((100, 100), 30000, np.uint16)
    assert abs(run(wide, "gaussian_noise", scale=10.0, per_channel=False, seed=1).astype(
        float).std() - 2570) < 100


def test_motion_blur_is_imgaugs_motion_blur(iaa):
    image = smooth()
    for k, angle, direction in [(5, 30.0, 0.3), (7, 0.0, 0.0), (9, 123.0, -1.0)]:
        theirs = iaa.MotionBlur(k=k, angle=angle, direction=direction)(image=image)
        ours = run(image, "motion_blur", k=k, angle=angle, direction=direction)
        assert np.array_equal(ours, theirs)
    dot = np.zeros((21, 21), np.uint8)
    dot[10, 10] = 255
    streak = run(dot, "motion_blur", k=7, angle=0.0, direction=0.0)
    assert (streak[7:14, 10] > 0).all() and streak[:, :10].sum() == 0  # angle 0: vertical
    assert {sample("[{motion_blur: {k: 4}}]", seed)[0].params["k"] for seed in range(5)} == {5}


def test_sharpen_is_imgaugs_sharpen(iaa):
    image = smooth()
    theirs = iaa.Sharpen(alpha=0.5, lightness=1.1)(image=image)
    assert np.array_equal(run(image, "sharpen", alpha=0.5, lightness=1.1), theirs)
    assert np.array_equal(run(image, "sharpen", alpha=0.0, lightness=1.0), image)
    edges = np.abs(np.diff(image.astype(int), axis=1)).mean()
    sharper = np.abs(np.diff(run(image, "sharpen", alpha=1.0, lightness=1.0).astype(int),
                             axis=1)).mean()
    assert sharper > edges * 1.5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imgaug's imageio call
def test_jpeg_matches_imgaug_and_lower_quality_loses_more(iaa):
    from imgaug.augmenters.arithmetic import compress_jpeg

    image = photo_like(64, 80, seed=3)
    # imgaug's mapping, the README's numbers: not 100 - c (c = 70 is quality 31, not 30).
    documented = {0: 100, 30: 71, 50: 51, 70: 31, 90: 12}
    for compression in (0, 20, 30, 50, 70, 90):
        quality = round(1 + 99 * (1 - compression / 101))
        assert documented.get(compression, quality) == quality
        assert np.array_equal(run(image, "jpeg", quality=quality),
                              compress_jpeg(image, compression))
    errors = [diff(run(image, "jpeg", quality=q), image)[0] for q in (95, 60, 10)]
    assert errors[0] < errors[1] < errors[2]
    la = random_image((20, 20, 2))
    assert np.array_equal(run(la, "jpeg", quality=30)[..., 1], la[..., 1])


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 3), (480, 640), (1,), (3,)])
def test_dropout_mask_draws_what_numpy_integers_draws(shape):
    # The fast draw must be exactly NumPy's own uint16 stream, or outputs would change.
    from augcli.ops.pixel import uniform_uint16

    expected = np.random.default_rng(9).integers(0, 65536, shape, dtype=np.uint16)
    assert np.array_equal(uniform_uint16(np.random.default_rng(9), shape), expected)


PINNED_DROPPED = [5, 6, 12, 16, 19, 20, 24, 28, 29, 30, 31, 33, 35, 37, 38, 40, 41, 47, 56, 57, 58]


def test_dropout_drops_pixels_of_a_pinned_mask():
    # Seed 5, p 0.25 on an 8x8 white image: the dropped pixels are pinned, so a change
    # to the mask draw (which would change every dropout output) fails here.
    image = np.full((8, 8), 255, np.uint8)
    out = apply_steps(image, [Step("dropout", {"p": 0.25, "per_channel": False,
                                               "mask_seed": 5})])
    assert np.flatnonzero(out == 0).tolist() == PINNED_DROPPED


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape, dtype", [((40, 30, 3), np.uint8), ((40, 30, 3), np.uint16),
                                          ((40, 30), np.uint8), ((40, 30, 4), np.uint8),
                                          ((40, 30, 2), np.uint16)])
def test_dropout_zeroes_exactly_the_values_its_mask_draws(shape, dtype, per_channel):
    # Reference: NumPy's uint16 draw from the mask seed over the colour values (one per
    # pixel, or one per channel value), compared to round(p * 65536); alpha kept.
    image = random_image(shape, dtype, seed=2) | 1  # no zero before dropout
    out = apply_steps(image, [Step("dropout", {"p": 0.3, "per_channel": per_channel,
                                               "mask_seed": 7})])
    colours = 1 if len(shape) == 2 or shape[2] == 2 else 3
    colour = image if len(shape) == 2 else image[..., :colours].reshape(shape[:2] + (colours,))
    mask_shape = colour.shape if per_channel and len(shape) == 3 and colours == 3 else \
        shape[:2]
    keep = np.random.default_rng(7).integers(0, 65536, mask_shape, dtype=np.uint16) >= 19661
    if keep.ndim < colour.ndim:
        keep = keep[..., None]
    expected = colour * keep
    got = out if len(shape) == 2 else out[..., :colours]
    assert out.dtype == image.dtype and out.shape == image.shape
    assert np.array_equal(got.reshape(expected.shape), expected)
    if len(shape) == 3 and shape[2] in (2, 4):
        assert np.array_equal(out[..., -1], image[..., -1])
