"""Native geometric ops against imgaug's own result and against marker pixels."""

import cv2
import numpy as np
import pytest

from augcli import geometry
from augcli.pipeline import Step, apply_steps

from .conftest import photo_like, smooth


def _mean_abs(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


@pytest.mark.parametrize("ours, theirs", [
    ({"rotate": 20}, {"rotate": 20}),
    ({"rotate": -33}, {"rotate": -33}),
    ({"shear_x": 15}, {"shear": 15}),
    ({"shear_y": 12}, {"shear": {"y": 12}}),
    ({"scale_x": 1.2, "scale_y": 1.2}, {"scale": 1.2}),
    ({"translate_x": 8, "translate_y": -12}, {"translate_px": {"x": 8, "y": -12}}),
    ({"rotate": 10, "shear_x": 8, "scale_x": 0.9, "scale_y": 0.9, "translate_x": 8,
      "translate_y": 3},
     {"rotate": 10, "shear": 8, "scale": 0.9, "translate_px": {"x": 8, "y": 3}}),
    # Both shears: imgaug shears along y first, then along x (they do not commute).
    ({"shear_x": 15, "shear_y": 12}, {"shear": {"x": 15, "y": 12}}),
    ({"shear_x": -20, "shear_y": 30}, {"shear": {"x": -20, "y": 30}}),
    ({"shear_x": 10, "shear_y": -8, "rotate": 25, "scale_x": 1.2, "scale_y": 0.8,
      "translate_x": 5, "translate_y": -4},
     {"shear": {"x": 10, "y": -8}, "rotate": 25, "scale": {"x": 1.2, "y": 0.8},
      "translate_px": {"x": 5, "y": -4}}),
])
@pytest.mark.parametrize("texture", ["smooth", "noisy"])
def test_affine_matches_imgaug(iaa, ours, theirs, texture):
    image = smooth() if texture == "smooth" else photo_like(60, 80, seed=5)
    expected = iaa.Affine(**theirs, order=1, mode="constant", cval=0)(image=image)
    actual = geometry.warp(image, geometry.affine_matrix(image.shape, **ours))
    # Same matrix, same OpenCV resampling: equal up to rounding of the last bit
    # (imgaug turns by 3.141592 / 2 for its y-shear, not by pi / 2).
    assert _mean_abs(actual, expected) < 0.05
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= 1


def test_both_shears_compose_as_imgaug_does():
    """y-shear first, then x-shear: the corner term is 1 - tan(x) tan(y), by hand."""
    tx, ty = np.tan(np.radians(15)), np.tan(np.radians(12))
    linear = geometry.affine_matrix((61, 81), shear_x=15, shear_y=12)[:2, :2]
    assert np.allclose(linear, [[1 - tx * ty, -tx], [ty, 1]])
    # The centre stays put.
    assert np.allclose(geometry.project_points(
        geometry.affine_matrix((61, 81), shear_x=15, shear_y=12), [[40, 30]]), [[40, 30]])


def test_fill_modes_match_imgaug(iaa):
    image = smooth()
    for mode in ("edge", "reflect", "symmetric", "wrap"):
        expected = iaa.Affine(rotate=25, mode=mode, order=1)(image=image)
        actual = geometry.warp(image, geometry.affine_matrix(image.shape, rotate=25), fill=mode)
        assert _mean_abs(actual, expected) < 0.05, mode


def test_flips_move_a_marker_pixel_exactly():
    img = np.zeros((10, 20, 3), np.uint8)
    img[2, 3] = (255, 0, 0)
    h_flipped = apply_steps(img, [Step("fliplr", {})])
    v_flipped = apply_steps(img, [Step("flipud", {})])
    assert tuple(h_flipped[2, 16]) == (255, 0, 0) and h_flipped.sum() == 255
    assert tuple(v_flipped[7, 3]) == (255, 0, 0) and v_flipped.sum() == 255


def test_rotate_90_moves_marker_clockwise():
    img = np.zeros((21, 21), np.uint8)
    img[2, 10] = 200  # top centre
    rotated = apply_steps(img, [Step("rotate", {"degrees": 90.0, "fill": "constant", "cval": 0})])
    # Clockwise: top centre goes to right centre.
    assert rotated[10, 18] == 200
    assert rotated[2, 10] == 0


def test_translate_shifts_by_fraction_of_size():
    img = np.zeros((10, 20), np.uint8)
    img[5, 5] = 255
    shifted = apply_steps(img, [Step("translate", {"x": 0.25, "y": -0.2, "fill": "constant",
                                                   "cval": 0})])
    assert shifted[3, 10] == 255  # 0.25 * 20 = 5 px right, 0.2 * 10 = 2 px up


def test_consecutive_geometric_ops_resample_once():
    """Two rotations compose into one warp: the same pixels as a single rotation."""
    img = photo_like(40, 40, seed=9)
    fill = {"fill": "constant", "cval": 0}
    twice = apply_steps(img, [Step("rotate", {"degrees": 10.0, **fill}),
                              Step("rotate", {"degrees": 20.0, **fill})])
    once = apply_steps(img, [Step("rotate", {"degrees": 30.0, **fill})])
    assert np.array_equal(twice, once)


def test_flip_then_flip_is_identity_without_resampling():
    img = photo_like(seed=3)
    assert np.array_equal(apply_steps(img, [Step("fliplr", {}), Step("fliplr", {})]), img)


def test_identity_and_mirrors_within_a_rounding_error_are_not_resampled():
    img = np.random.default_rng(4).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    both = geometry.flip_matrix(img.shape, horizontal=True) @ \
        geometry.flip_matrix(img.shape, horizontal=False)
    assert geometry.warp(img, np.eye(3) + 1e-12) is img
    assert np.array_equal(geometry.warp(img, both + 1e-12), img[::-1, ::-1])
    assert np.array_equal(geometry.warp(img, geometry.flip_matrix(img.shape, horizontal=True)),
                          img[:, ::-1])
    half_pixel = geometry.warp(img, geometry.translation(0.5, 0))  # integer 2x2, not a mirror
    assert not np.array_equal(half_pixel, img) and half_pixel.shape == img.shape


def test_different_fills_are_not_composed():
    img = np.full((20, 20), 100, np.uint8)
    steps = [Step("translate", {"x": 0.5, "y": 0.0, "fill": "constant", "cval": 255}),
             Step("translate", {"x": -0.5, "y": 0.0, "fill": "constant", "cval": 0})]
    out = apply_steps(img, steps)
    # Composed, the shifts would cancel and leave all 100. Warped one after the
    # other, the left half keeps the original and the right half gets cval 0.
    assert (out[:, :10] == 100).all()
    assert (out[:, 10:] == 0).all()


def test_transform_points_follows_the_warp():
    matrix = geometry.affine_matrix((21, 21), rotate=90)
    assert np.allclose(geometry.project_points(matrix, [[10, 2]]), [[18, 10]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("fill", geometry.FILL_MODES)
def test_colour_warp_equals_opencvs_three_channel_warp(dtype, fill):
    # warp() takes OpenCV's faster 4-channel path for RGB; it must give exactly the
    # values of OpenCV's own 3-channel warpAffine.
    rng = np.random.default_rng(3)
    image = rng.integers(0, np.iinfo(dtype).max + 1, (37, 53, 3)).astype(dtype)
    matrix = geometry.affine_matrix(image.shape, rotate=23.5, shear_x=11, scale_x=1.3,
                                    scale_y=0.8, translate_x=4.5)
    expected = cv2.warpAffine(image, matrix[:2], (53, 37), flags=cv2.INTER_LINEAR,
                              borderMode=geometry._BORDER[fill], borderValue=(10, 20, 30, 0))
    assert np.array_equal(geometry.warp(image, matrix, fill, [10, 20, 30]), expected)


@pytest.mark.parametrize("mode", geometry.NDIMAGE_MODES)
def test_warp_ndimage_is_scipys_affine_transform(mode):
    """scipy.ndimage's order-1 affine_transform, boundary modes included: constant cuts
    hard at the edge, wrap has period size - 1 (OpenCV's borders differ there)."""
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is the reference")
    rng = np.random.default_rng(4)
    image = photo_like(31, 45, seed=2)[..., 0]
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]])
    for _ in range(40):
        inverse = np.eye(3)
        inverse[:2, :2] += rng.normal(0, 0.3, (2, 2))
        inverse[:2, 2] = rng.normal(0, 12, 2)
        rows_cols = swap @ inverse @ swap  # scipy's matrices are in (row, col)
        expected = ndimage.affine_transform(image.astype(np.float64), rows_cols[:2, :2],
                                            rows_cols[:2, 2], order=1, mode=mode, cval=99.0)
        gap = np.abs(geometry.warp_ndimage(image, inverse, mode, 99) - expected)
        assert (gap <= 1).mean() >= 0.995 and gap.mean() < 0.35
