"""Geometric ops: flips, affine warps, zoom, crops, resizes, padding, quarter turns, warps.

Each checked by where the pixels went, against imgaug or torchvision where
they have the same op, and by its matrix carrying points to the same place.
"""

import cv2
import numpy as np
import pytest

from augcli import geometry
from augcli.errors import RecipeError
from augcli.ops import CATALOG
from augcli.pipeline import Step, apply_steps, sample_steps

from .conftest import FILL, LAYOUTS, diff, ops_of, photo_like, random_image, run, sample, smooth

SIZE_CHANGING = {"crop", "random_resized_crop", "resize", "letterbox", "pad", "rot90"}


# --- sampling and sizes ----------------------------------------------------------------------

def test_affine_draws_translate_separately_for_x_and_y():
    steps = [sample("[{affine: {translate: 0.2}}]", seed)[0].params for seed in range(50)]
    assert any(abs(s["translate_x"] - s["translate_y"]) > 0.01 for s in steps)
    assert all(abs(s["translate_x"]) <= 0.2 and abs(s["translate_y"]) <= 0.2 for s in steps)


@pytest.mark.parametrize("name", sorted(SIZE_CHANGING))
def test_size_changing_ops_report_the_size_they_make(name):
    """The counterpart of the layout contract (test_ops_catalog) for ops whose size differs."""
    examples = {
        "crop": "{crop: {width: 25, height: 12}}",
        "random_resized_crop": "{random_resized_crop: {size: [20, 10]}}",
        "resize": "{resize: {scale: 0.5}}",
        "letterbox": "{letterbox: {width: 50, height: 50}}",
        "pad": "{pad: {px: [1, 5]}}",
        "rot90": "{rot90: {k: 1}}",
    }
    for layout, dtype in LAYOUTS:
        image = random_image(layout, dtype)
        steps = sample_steps(ops_of(f"[{examples[name]}]"), np.random.default_rng(1),
                             image.shape)
        out = apply_steps(image, steps)
        expected = CATALOG[name].size_after(steps[0].params, image.shape[:2])
        assert out.shape[:2] == tuple(expected) != image.shape[:2]
        assert out.shape[2:] == image.shape[2:] and out.dtype == image.dtype


def test_later_ops_sample_against_the_new_size():
    steps = sample("[{resize: {width: 20, height: 10}}, {crop: {width: 8, height: 4}}]",
                   shape=(100, 200, 3))
    crop = steps[1].params
    assert 0 <= crop["x"] <= 12 and 0 <= crop["y"] <= 6
    assert apply_steps(photo_like(100, 200), steps).shape == (4, 8, 3)


# --- boxes follow the pixels -----------------------------------------------------------------

def _centroid(image):
    weights = image.astype(np.float64)
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


@pytest.mark.parametrize("op, params", [
    ("zoom", {"x": 1.3, "y": 0.8, **FILL}),
    ("shear", {"x": 14.0, "y": -11.0, **FILL}),
    ("crop", {"x": 30, "y": 10, "width": 40, "height": 30, **FILL}),
    ("pad", {"top": 3, "bottom": 5, "left": 7, "right": 2, **FILL}),
    ("random_resized_crop", {"x": 30, "y": 5, "crop_width": 40, "crop_height": 30,
                             "width": 60, "height": 45}),
    ("resize", {"width": 37, "height": 90}),
    ("letterbox", {"width": 64, "height": 64, "upscale": True, **FILL}),
    ("letterbox", {"width": 120, "height": 100, "upscale": False, **FILL}),
    ("rot90", {"k": 1}),
    ("rot90", {"k": 2}),
    ("rot90", {"k": 3}),
    ("perspective", {"scale": 0.05, "corners": [[0.05, 0.03], [0.92, 0.02], [0.96, 0.94],
                                                [0.01, 0.93]], **FILL}),
])
def test_the_matrix_moves_points_where_the_pixels_went(op, params):
    """A blob's centre, mapped through the op's matrix, lands on the blob in the output."""
    image = np.zeros((60, 80), np.uint8)
    image[20:25, 50:55] = 255  # centre (52, 22)
    out = run(image, op, **params)
    expected = geometry.project_points(CATALOG[op].matrix(params, image.shape), [[52, 22]])[0]
    assert np.allclose(_centroid(out), expected, atol=0.6), (_centroid(out), expected)


# --- geometry --------------------------------------------------------------------------------

def test_zoom_scales_about_the_centre_and_matches_imgaug(iaa):
    image = smooth()
    ours = run(image, "zoom", x=1.25, y=1.25, **FILL)
    theirs = iaa.Affine(scale=1.25, order=1)(image=image)
    assert diff(ours, theirs)[1] <= 1
    marker = np.zeros((21, 21), np.uint8)
    marker[10, 14] = 255  # 4 px right of the centre
    assert run(marker, "zoom", x=2.0, y=2.0, **FILL)[10, 18] > 100  # now 8 px right
    steps = [s.params for s in (sample("[{zoom: {factor: [0.5, 2], keep_aspect: false}}]", seed)[0]
                                for seed in range(30))]
    assert all(0.5 <= s["x"] <= 2 and 0.5 <= s["y"] <= 2 for s in steps)
    assert any(abs(s["x"] - s["y"]) > 0.05 for s in steps)
    assert all(s["x"] == s["y"] for s in (sample("[zoom]", seed)[0].params for seed in range(5)))


@pytest.mark.parametrize("x, y", [(15.0, 12.0), (-20.0, 25.0), (0.0, 18.0)])
def test_shear_on_both_axes_is_imgaugs_affine_shear(iaa, x, y):
    """imgaug shears along y, then along x; the op (and its matrix) do the same."""
    image = photo_like(60, 80, seed=3)
    theirs = iaa.Affine(shear={"x": x, "y": y}, order=1, mode="constant", cval=0)(image=image)
    ours = run(image, "shear", x=x, y=y, **FILL)
    mean, largest = diff(ours, theirs)
    assert largest <= 1 and mean < 0.01
    # The same parameters through affine + shear ops fused into one warp.
    fused = apply_steps(image, [Step("shear", {"x": 0.0, "y": y, **FILL}),
                                Step("shear", {"x": x, "y": 0.0, **FILL})])
    assert diff(fused, theirs)[1] <= 1


def test_crop_output_is_the_recorded_window_of_the_source():
    image = photo_like(48, 64, seed=1)
    for seed in range(20):
        step, = sample("[{crop: {width: 30, height: 20}}]", seed)
        p = step.params
        assert (p["width"], p["height"]) == (30, 20)
        assert 0 <= p["x"] <= 34 and 0 <= p["y"] <= 28
        assert np.array_equal(apply_steps(image, [step]),
                              image[p["y"]:p["y"] + 20, p["x"]:p["x"] + 30])
    positions = {(s[0].params["x"], s[0].params["y"])
                 for s in (sample("[{crop: {width: 30, height: 20}}]", seed) for seed in range(20))}
    assert len(positions) > 10


def test_crop_by_percent_cuts_each_side_separately():
    for seed in range(30):
        p = sample("[{crop: {percent: [0, 0.25]}}]", seed)[0].params
        assert 0 <= p["x"] <= 16 and 0 <= p["y"] <= 12
        assert 32 <= p["width"] <= 64 - p["x"] and 24 <= p["height"] <= 48 - p["y"]
    # Even cutting half from every side keeps a pixel.
    p = sample("[{crop: {percent: 0.5}}]", shape=(5, 5, 3))[0].params
    assert p["width"] >= 1 and p["height"] >= 1


def test_crop_larger_than_the_image_fills_with_cval():
    image = np.full((10, 12), 200, np.uint8)
    step, = sample("[{crop: {width: 20, height: 10, cval: 7}}]", seed=3, shape=image.shape)
    x = step.params["x"]
    assert -8 <= x <= 0
    out = apply_steps(image, [step])
    assert out.shape == (10, 20)
    assert (out[:, -x:-x + 12] == 200).all() and (out == 7).sum() == 80


def test_crop_after_rotate_is_one_warp_with_the_same_pixels():
    image = smooth()
    rotate = Step("rotate", {"degrees": 12.0, **FILL})
    crop = Step("crop", {"x": 10, "y": 5, "width": 50, "height": 40, **FILL})
    fused = apply_steps(image, [rotate, crop])
    separate = apply_steps(apply_steps(image, [rotate]), [crop])
    assert diff(fused, separate)[1] <= 1


def test_random_resized_crop_area_and_ratio_stay_in_bounds():
    height, width = 300, 400
    for seed in range(300):
        p = sample("[{random_resized_crop: {size: [32, 24]}}]", seed, (height, width))[0].params
        assert (p["width"], p["height"]) == (32, 24)
        w, h = p["crop_width"], p["crop_height"]
        assert 0 <= p["x"] <= width - w and 0 <= p["y"] <= height - h
        # Rounding to whole pixels moves area and ratio by a little.
        assert 0.08 * 0.95 <= w * h / (width * height) <= 1.0
        assert 0.75 / 1.03 <= w / h <= (4 / 3) * 1.03


def test_random_resized_crop_falls_back_to_a_central_crop_like_torchvision():
    # Width 2x height is never possible at full area on a square image: ten attempts
    # fail, and torchvision takes the full width and height = width / 2, centred.
    p = sample("[{random_resized_crop: {size: 16, scale: 1.0, ratio: 2}}]",
               shape=(100, 100))[0].params
    assert (p["crop_width"], p["crop_height"], p["x"], p["y"]) == (100, 50, 0, 25)


def test_random_resized_crop_at_its_extreme_ratio_keeps_at_least_one_pixel():
    # ratio 0.01 (its documented bound) on a 64 x 48 image: the central fallback would be
    # 0 px wide (round(48 * 0.01)); it is 1 px, and the output is made.
    p = sample("[{random_resized_crop: {size: 8, scale: 1.0, ratio: 0.01}}]",
               shape=(48, 64))[0].params
    assert (p["crop_width"], p["crop_height"], p["x"], p["y"]) == (1, 48, 31, 0)
    image = photo_like(48, 64, seed=1)
    out = run(image, "random_resized_crop", **p)
    assert out.shape == (8, 8, 3)
    assert np.array_equal(out[:, 0], cv2.resize(image[:, 31:32], (8, 8))[:, 0])


def test_random_resized_crop_resizes_the_window_with_area_averaging():
    image = photo_like(80, 120, seed=2)
    params = {"x": 10, "y": 20, "crop_width": 64, "crop_height": 48, "width": 32,
              "height": 24}
    expected = cv2.resize(image[20:68, 10:74], (32, 24), interpolation=cv2.INTER_AREA)
    assert np.array_equal(run(image, "random_resized_crop", **params), expected)
    bigger = dict(params, width=100, height=70)
    expected = cv2.resize(image[20:68, 10:74], (100, 70), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(run(image, "random_resized_crop", **bigger), expected)


def test_random_resized_crop_rejects_a_bad_size_with_its_key():
    # Found when the recipe is read, before any image is touched.
    with pytest.raises(RecipeError, match="random_resized_crop.size"):
        sample("[{random_resized_crop: {size: [10, 20, 30]}}]")
    with pytest.raises(RecipeError, match="random_resized_crop.ratio"):
        sample("[{random_resized_crop: {ratio: [2, 1]}}]")


def test_resize_keeps_the_aspect_ratio_when_given_one_side():
    assert sample("[{resize: {width: 32}}]")[0].params == {"width": 32, "height": 24}
    assert sample("[{resize: {height: 12}}]")[0].params == {"width": 16, "height": 12}
    assert sample("[{resize: {scale: 1.5}}]")[0].params == {"width": 96, "height": 72}
    assert sample("[{resize: {width: 10, height: 50}}]")[0].params == {"width": 10,
                                                                       "height": 50}


def test_resize_averages_when_shrinking():
    checker = (np.indices((40, 40)).sum(axis=0) % 2 * 255).astype(np.uint8)
    half = run(checker, "resize", width=20, height=20)
    assert half.shape == (20, 20) and np.abs(half.astype(int) - 128).max() <= 1
    assert run(checker, "resize", width=40, height=40) is checker


def test_letterbox_keeps_the_aspect_ratio_and_centres_on_cval_bars():
    image = np.full((50, 100, 3), 200, np.uint8)  # 2:1
    out = run(image, "letterbox", width=64, height=64, upscale=True, fill="constant", cval=114)
    assert out.shape == (64, 64, 3)
    content = np.all(out == 200, axis=-1)
    rows = np.flatnonzero(content.any(axis=1))
    assert content.all(axis=1)[rows].all() and len(rows) == 32  # 64 x 32: still 2:1
    assert rows[0] == 16 and rows[-1] == 47  # centred
    assert (out[:16] == 114).all() and (out[48:] == 114).all()
    # upscale: false leaves a small image at its size, centred in the box.
    small = np.full((10, 20), 90, np.uint8)
    boxed = run(small, "letterbox", width=40, height=30, upscale=False, **FILL)
    assert boxed.shape == (30, 40) and (boxed[10:20, 10:30] == 90).all() and boxed.sum() == \
        90 * 200
    grown = run(small, "letterbox", width=40, height=30, upscale=True, **FILL)
    assert (grown[5:25] == 90).all() and (grown[:5] == 0).all()


@pytest.mark.parametrize("fill", ["constant", "edge", "reflect", "symmetric", "wrap"])
def test_pad_adds_the_recorded_border_as_numpy_pads(fill):
    image = photo_like(20, 30, seed=4)
    params = {"top": 3, "right": 40, "bottom": 0, "left": 25, "fill": fill, "cval": 9}
    out = run(image, "pad", **params)
    mode = {"edge": "edge", "reflect": "reflect", "symmetric": "symmetric", "wrap": "wrap"}
    expected = np.pad(image, [(3, 0), (25, 40), (0, 0)], mode=mode.get(fill, "constant"),
                      **({"constant_values": 9} if fill == "constant" else {}))
    assert np.array_equal(out, expected)


def test_pad_draws_each_side_and_adds_px_and_percent():
    sides = [sample("[{pad: {px: [0, 10]}}]", seed)[0].params for seed in range(20)]
    assert all(0 <= s[k] <= 10 for s in sides for k in ("top", "right", "bottom", "left"))
    assert any(len({s["top"], s["right"], s["bottom"], s["left"]}) > 1 for s in sides)
    p = sample("[{pad: {px: 2, percent: 0.25}}]", shape=(40, 80))[0].params
    assert (p["top"], p["right"], p["bottom"], p["left"]) == (12, 22, 12, 22)
    assert sample("[pad]")[0].params["top"] == 0  # nothing unless px or percent is given


def test_rot90_turns_clockwise_exactly_and_matches_imgaug(iaa):
    image = np.zeros((10, 20), np.uint8)
    image[2, 3] = 255
    quarter = run(image, "rot90", k=1)
    assert quarter.shape == (20, 10) and quarter[3, 7] == 255 and quarter.sum() == 255
    assert run(image, "rot90", k=2)[7, 16] == 255
    assert run(image, "rot90", k=3)[16, 2] == 255
    colour = photo_like(30, 50, seed=6)
    for k in (1, 2, 3):
        assert np.array_equal(run(colour, "rot90", k=k), iaa.Rot90(k, keep_size=False)(
            image=colour))
    assert {sample("[rot90]", seed)[0].params["k"] for seed in range(40)} == {0, 1, 2, 3}
    assert sample("[{rot90: {k: -1}}]")[0].params["k"] == 3


def test_perspective_shows_the_quadrilateral_as_the_whole_image(iaa):
    import imgaug.parameters as iap

    class Fixed(iap.StochasticParameter):
        def __init__(self, values):
            super().__init__()
            self.values = values

        def _draw_samples(self, size, random_state):
            return self.values.reshape(size)

    image = smooth(120, 160, sigma=3)
    jitter = np.array([[0.05, -0.03], [0.08, 0.02], [-0.04, 0.06], [0.01, -0.07]])
    corners = np.abs(jitter)
    corners[1, 0], corners[2], corners[3, 1] = 1 - corners[1, 0], 1 - corners[2], \
        1 - corners[3, 1]
    augmenter = iaa.PerspectiveTransform(scale=0.05, keep_size=True)
    augmenter.jitter = Fixed(jitter)
    theirs = augmenter(image=image)
    ours = run(image, "perspective", scale=0.05, corners=corners.tolist(), **FILL)
    # imgaug resamples twice (warp, then resize back); one warp here: close, not equal.
    assert diff(ours[5:-5, 5:-5], theirs[5:-5, 5:-5])[0] < 0.5
    assert diff(ours, image)[0] > 5
    identity = [[0, 0], [1, 0], [1, 1], [0, 1]]
    assert run(image, "perspective", scale=0.0, corners=identity, **FILL) is image
    for seed in range(10):
        p = sample("[{perspective: {scale: 0.1}}]", seed)[0].params
        assert len(p["corners"]) == 4 and all(0 <= v <= 1 for xy in p["corners"] for v in xy)


def test_elastic_is_imgaugs_elastic_transformation_on_todays_opencv(iaa):
    import imgaug.random as iarandom

    image = smooth()
    transform = iaa.ElasticTransformation
    dx, dy = transform._generate_shift_maps(image.shape[:2], alpha=30.0, sigma=5.0,
                                            random_state=iarandom.RNG(np.random.default_rng(7)))
    theirs = transform._map_coordinates(image, dx, dy, order=1, cval=0, mode="constant")
    ours = run(image, "elastic", alpha=30.0, sigma=5.0, seed=7, **FILL)
    assert np.array_equal(ours, theirs)


def test_elastic_moves_pixels_but_keeps_the_histogram_roughly():
    image = photo_like(96, 128, seed=8)
    out = run(image, "elastic", alpha=40.0, sigma=4.0, seed=3, fill="reflect", cval=0)
    assert diff(out, image)[0] > 3
    before = np.histogram(image, bins=16, range=(0, 256))[0] / image.size
    after = np.histogram(out, bins=16, range=(0, 256))[0] / out.size
    assert np.abs(before - after).sum() < 0.15
    assert run(image, "elastic", alpha=0.0, sigma=4.0, seed=3, **FILL) is image


def test_elastic_sigma_is_bounded_when_the_recipe_is_read():
    # sigma 1000 padded the fields by 5,200 px and took minutes even on a 1 x 1 image.
    with pytest.raises(RecipeError, match=r"elastic\.sigma"):
        sample("[{elastic: {alpha: 10, sigma: 1000}}]")
    assert sample("[{elastic: {alpha: 10, sigma: 100}}]")[0].params["sigma"] == 100


def test_cval_is_in_the_images_own_range_and_fills_alpha_as_imgaug():
    """imgaug's Affine fills every channel with cval, unscaled: README, 'Ops'."""
    rgba = np.full((20, 20, 4), 200, np.uint8)
    assert list(run(rgba, "rotate", degrees=45, fill="constant", cval=7)[0, 0]) == [7, 7, 7, 7]
    wide = np.full((20, 20, 3), 60000, np.uint16)
    corner = run(wide, "rotate", degrees=45, fill="constant", cval=255)[0, 0]
    assert list(corner) == [255, 255, 255]
