"""The op catalog beyond flips, affine warps, dropout and blur.

Every op added for issue 3 is checked for shape and dtype on every layout,
for determinism under a fixed seed, for a replayable manifest record, and for
a property that shows it did its job; where imgaug (or PIL, or a formula from
Keras or torchvision) has the same op, against that.
"""

import colorsys
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image, ImageEnhance, ImageOps

from augcli import engine, geometry
from augcli.errors import RecipeError
from augcli.ops import ALIASES, CATALOG, lookup, op_help
from augcli.pipeline import Step, apply_steps, sample_steps
from augcli.recipe import parse_recipe

from .conftest import photo_like

NEW_OPS = {
    "zoom", "crop", "random_resized_crop", "resize", "letterbox", "pad", "rot90", "perspective",
    "elastic", "coarse_dropout", "cutout", "random_erasing", "salt_and_pepper", "brightness",
    "contrast", "saturation", "hue", "color_jitter", "channel_shift", "gamma", "grayscale",
    "invert", "clahe", "equalize", "gaussian_noise", "motion_blur", "sharpen", "jpeg",
}
SIZE_CHANGING = {"crop", "random_resized_crop", "resize", "letterbox", "pad", "rot90"}
LAYOUTS = [((30, 40), np.uint8), ((30, 40, 2), np.uint8), ((30, 40, 3), np.uint8),
           ((30, 40, 4), np.uint8), ((30, 40), np.uint16)]
FILL = {"fill": "constant", "cval": 0}


@pytest.fixture(scope="module")
def iaa():
    return engine.load()


def ops_of(text: str):
    return parse_recipe(yaml.safe_load(f"variants: {{a: {{ops: {text}}}}}")).variants[0].ops


def sample(text: str, seed=0, shape=(48, 64, 3)):
    return sample_steps(ops_of(text), np.random.default_rng(seed), shape)


def run(image, op, **params):
    return apply_steps(image, [Step(op, params)])


def random_image(shape, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype,
                                                endpoint=True)


def smooth(height=60, width=80, seed=5, sigma=2):
    return cv2.GaussianBlur(photo_like(height, width, seed=seed), (0, 0), sigma)


def diff(a, b):
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return d.mean(), d.max()


# --- every new op ------------------------------------------------------------------------

def test_the_catalog_has_every_new_op_with_docs_and_unique_aliases():
    assert NEW_OPS <= set(CATALOG)
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


def test_the_readme_ops_table_lists_every_new_op_and_its_aliases():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Ops", 1)[1].split("\n\n", 2)[1]
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


@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_new_op_runs_on_every_layout_with_its_defaults(name):
    """Shape (as size_after says), dtype, and the same pixels for the same seed."""
    for layout, dtype in LAYOUTS:
        image = random_image(layout, dtype)
        for seed in range(3):
            steps = sample_steps(ops_of(f"[{{{name}: {{}}}}]"), np.random.default_rng(seed),
                                 image.shape)
            out = apply_steps(image, steps)
            size = image.shape[:2]
            for step in steps:
                size = CATALOG[step.op].size_after(step.params, size)
            assert out.shape == tuple(size) + image.shape[2:], (layout, dtype)
            assert out.dtype == image.dtype
            again = sample_steps(ops_of(f"[{{{name}: {{}}}}]"), np.random.default_rng(seed),
                                 image.shape)
            assert again == steps
            assert np.array_equal(apply_steps(image, again), out)


@pytest.mark.parametrize("name", sorted(SIZE_CHANGING))
def test_size_changing_ops_report_the_size_they_make(name):
    """The counterpart of test_ops' layout test for ops whose output size differs."""
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


# --- geometry ----------------------------------------------------------------------------------

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


# --- erasing -----------------------------------------------------------------------------------

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
            if 0 < x1 and x2 < 64 and 0 < y1 and y2 < 48:
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


# --- colour and tone -----------------------------------------------------------------------------

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


def test_gamma_is_imgaugs_gamma_contrast(iaa):
    image = photo_like(seed=6)
    assert np.array_equal(run(image, "gamma", gamma=1.6), iaa.GammaContrast(1.6)(image=image))
    assert run(np.full((2, 2), 128, np.uint8), "gamma", gamma=2.0)[0, 0] in (64, 65)
    wide = np.full((2, 2), 32768, np.uint16)
    assert abs(int(run(wide, "gamma", gamma=2.0)[0, 0]) - 16384) <= 2


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


# --- noise, blur, compression -------------------------------------------------------------------

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
def test_jpeg_matches_imgaug_and_lower_quality_loses_more():
    from imgaug.augmenters.arithmetic import compress_jpeg

    engine.load()
    image = photo_like(64, 80, seed=3)
    for compression in (20, 50, 90):
        quality = round(1 + 99 * (1 - compression / 101))  # imgaug's mapping
        assert np.array_equal(run(image, "jpeg", quality=quality),
                              compress_jpeg(image, compression))
    errors = [diff(run(image, "jpeg", quality=q), image)[0] for q in (95, 60, 10)]
    assert errors[0] < errors[1] < errors[2]
    la = random_image((20, 20, 2))
    assert np.array_equal(run(la, "jpeg", quality=30)[..., 1], la[..., 1])


def test_intensity_ops_scale_to_16_bit():
    wide = np.full((20, 20), 1000, np.uint16)
    assert (run(wide, "channel_shift", intensity=10.0) == 1000).all()  # clipped to min..max
    out = run(wide, "cutout", boxes=[[0, 0, 5, 5]], fill_mode="constant", cval=255,
              fill_per_channel=False, seed=0)
    assert (out[:5, :5] == 65535).all()
    assert math.isclose(run(wide, "brightness", factor=0.5)[0, 0], 500)
