"""Geometric ops: flips, affine warps, zoom, crops, resizes, padding, quarter turns, warps.

Fusable ops (flips, ``rotate``, ``translate``, ``shear``, ``affine``,
``zoom``, ``crop``, ``pad``) only give a matrix and join the pipeline's
single warp; integer translations resample exactly, so crops and pads are
pixel-exact. Ops that make their own pixels (area-averaged resizes, exact
quarter turns, perspective and elastic warps) give ``apply`` and, where a
3x3 matrix describes them, a ``matrix`` for boxes and keypoints.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .. import geometry
from ..params import BOOL, INT, NUMBER, NUMBER_OR_LIST, PROBABILITY, Param
from ..pixels import gaussian_blur, gaussian_kernel_size
from .base import FILL_PARAMS, Op, fill_args, fill_params, op_seed, register, with_probability

_MAX_SIDE = 100_000


# --- flips and affine warps ----------------------------------------------------------

register(Op(
    name="fliplr",
    summary="Mirror left-right with probability p.",
    params=(Param("p", PROBABILITY, 0.5, "Probability of flipping.", low=0, high=1),),
    example="- fliplr: {p: 0.5}",
    sample=lambda draw, rng, shape: with_probability(draw, rng),
    matrix=lambda params, shape: geometry.flip_matrix(shape, horizontal=True),
    mirrors=lambda args: True,
    aliases=("hflip", "horizontal_flip"),
))

register(Op(
    name="flipud",
    summary="Mirror top-bottom with probability p.",
    params=(Param("p", PROBABILITY, 0.5, "Probability of flipping.", low=0, high=1),),
    example="- flipud: {p: 0.5}",
    sample=lambda draw, rng, shape: with_probability(draw, rng),
    matrix=lambda params, shape: geometry.flip_matrix(shape, horizontal=False),
    mirrors=lambda args: True,
    aliases=("vflip", "vertical_flip"),
))

register(Op(
    name="rotate",
    summary="Rotate about the centre by an angle in degrees (positive = clockwise); size is kept.",
    params=(
        Param("degrees", NUMBER, 15, "Angle in degrees; a bare d means [-d, d].",
              low=-360, high=360, symmetric=True),
        *FILL_PARAMS,
    ),
    example="- rotate: {degrees: [-20, 20], fill: reflect}",
    sample=lambda draw, rng, shape: {"degrees": draw("degrees"), **fill_args(draw)},
    matrix=lambda params, shape: geometry.affine_matrix(shape, rotate=params["degrees"]),
))


def _translate_matrix(params, shape):
    height, width = shape[:2]
    return geometry.translation(params["x"] * width, params["y"] * height)


register(Op(
    name="translate",
    summary="Shift by a fraction of the width (x) and height (y); positive = right/down.",
    params=(
        Param("x", NUMBER, 0.1, "Horizontal shift as a fraction of the width; d means [-d, d].",
              low=-1, high=1, symmetric=True),
        Param("y", NUMBER, 0.1, "Vertical shift as a fraction of the height; d means [-d, d].",
              low=-1, high=1, symmetric=True),
        *FILL_PARAMS,
    ),
    example="- translate: {x: [-0.2, 0.2], y: 0.1}",
    sample=lambda draw, rng, shape: {"x": draw("x"), "y": draw("y"), **fill_args(draw)},
    matrix=_translate_matrix,
    aliases=("shift",),
))

register(Op(
    name="shear",
    summary="Shear along x and/or y by an angle in degrees, about the centre.",
    params=(
        Param("x", NUMBER, 10, "x-shear angle in degrees; d means [-d, d].",
              low=-89, high=89, symmetric=True),
        Param("y", NUMBER, 0, "y-shear angle in degrees; d means [-d, d].",
              low=-89, high=89, symmetric=True),
        *FILL_PARAMS,
    ),
    example="- shear: {x: [-15, 15]}",
    sample=lambda draw, rng, shape: {"x": draw("x"), "y": draw("y"), **fill_args(draw)},
    matrix=lambda params, shape: geometry.affine_matrix(
        shape, shear_x=params["x"], shear_y=params["y"]),
))


def _sample_affine(draw, rng, shape):
    scale = draw("scale")
    return {
        "rotate": draw("rotate"),
        "shear": draw("shear"),
        "translate_x": draw("translate"),
        "translate_y": draw("translate"),
        "scale": scale,
        **fill_args(draw),
    }


def _affine_matrix(params, shape):
    height, width = shape[:2]
    return geometry.affine_matrix(
        shape,
        rotate=params["rotate"],
        shear_x=params["shear"],
        scale_x=params["scale"],
        scale_y=params["scale"],
        translate_x=params["translate_x"] * width,
        translate_y=params["translate_y"] * height,
    )


register(Op(
    name="affine",
    summary="Scale, shear, rotate and shift in one resampling (imgaug's Affine order).",
    params=(
        Param("rotate", NUMBER, 0, "Rotation in degrees (positive = clockwise); d means [-d, d].",
              low=-360, high=360, symmetric=True),
        Param("shear", NUMBER, 0, "x-shear in degrees; d means [-d, d].",
              low=-89, high=89, symmetric=True),
        Param("translate", NUMBER, 0, "Shift as a fraction of the size, drawn separately for "
              "x and y; d means [-d, d].", low=-1, high=1, symmetric=True),
        Param("scale", NUMBER, 1.0, "Zoom factor about the centre (>1 enlarges).",
              low=0.01, high=100),
        *FILL_PARAMS,
    ),
    example="- affine: {rotate: [-15, 15], shear: [-10, 10], translate: [-0.1, 0.1], "
            "scale: [0.9, 1.1]}",
    sample=_sample_affine,
    matrix=_affine_matrix,
))


# --- zoom --------------------------------------------------------------------------

def _sample_zoom(draw, rng, shape):
    x = draw("factor")
    y = x if draw("keep_aspect") else draw("factor")
    return {"x": x, "y": y, **fill_args(draw)}


register(Op(
    name="zoom",
    summary="Zoom about the centre by a factor (>1 enlarges); the size is kept.",
    params=(
        Param("factor", NUMBER, [0.9, 1.1], "Zoom factor: >1 zooms in (enlarges), <1 zooms out. "
              "Keras' zoom_range means the opposite (its >1 zooms out).", low=0.01, high=100),
        Param("keep_aspect", BOOL, True, "true: one factor for both axes; false: x and y are "
              "drawn separately, as Keras' zoom_range does.", random=False),
        *fill_params("What fills the border when zooming out"),
    ),
    example="- zoom: {factor: [0.8, 1.2], fill: reflect}",
    sample=_sample_zoom,
    matrix=lambda params, shape: geometry.affine_matrix(
        shape, scale_x=params["x"], scale_y=params["y"]),
    aliases=("scale",),
))


# --- crop ----------------------------------------------------------------------------

def _crop_axis(draw, rng, length: int, size: int):
    """(start, size) of the window along one axis, in source pixels."""
    if size > 0:
        slack = length - size  # negative: the window is larger than the image
        start = int(rng.integers(min(0, slack), max(0, slack) + 1))
        return start, size
    before = min(round(draw("percent") * length), length - 1)
    after = min(round(draw("percent") * length), length - 1 - before)
    return before, length - before - after


def _sample_crop(draw, rng, shape):
    height, width = shape[:2]
    x, crop_width = _crop_axis(draw, rng, width, draw("width"))
    y, crop_height = _crop_axis(draw, rng, height, draw("height"))
    return {"x": x, "y": y, "width": crop_width, "height": crop_height, **fill_args(draw)}


register(Op(
    name="crop",
    summary="Random crop to a fixed size in pixels, or by a random percent of each side.",
    params=(
        Param("width", INT, 0, "Window width in pixels, placed at a random x (torchvision "
              "RandomCrop); 0: cut the left and right sides by percent instead.",
              low=0, high=_MAX_SIDE),
        Param("height", INT, 0, "Window height in pixels, placed at a random y; 0: cut the top "
              "and bottom by percent instead.", low=0, high=_MAX_SIDE),
        Param("percent", NUMBER, [0, 0.1], "Fraction of the width (left, right) or height (top, "
              "bottom) cut from a side, drawn for each side (imgaug's Crop(percent=...)); at "
              "least one pixel is kept.", low=0, high=0.5),
        *fill_params("Only when the window is larger than the image: what fills the rest "
                      "(the image sits at a random place in the window)"),
    ),
    example="- crop: {width: 224, height: 224}",
    sample=_sample_crop,
    matrix=lambda params, shape: geometry.translation(-params["x"], -params["y"]),
    output_shape=lambda params, shape: (params["height"], params["width"]),
    aliases=("random_crop",),
))


# --- random_resized_crop ---------------------------------------------------------------

def _output_size(value, where: str) -> tuple:
    """``size`` as (width, height): one number for a square or [width, height]."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(items) == 1:
        items = items * 2
    if len(items) != 2 or not all(float(v).is_integer() and 1 <= v <= _MAX_SIDE for v in items):
        raise ValueError(f"{where}: expected a whole number of pixels or [width, height] "
                         f"in [1, {_MAX_SIDE}], got {value!r}")
    return int(items[0]), int(items[1])


def _range(value) -> tuple:
    """A [lo, hi] pair from one number (lo = hi) or a list the recipe already checked."""
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    return float(items[0]), float(items[1])


def _resized_crop_window(draw, rng, height: int, width: int, ratio) -> tuple:
    """torchvision's RandomResizedCrop.get_params: (x, y, w, h) of the crop window.

    Ten attempts at an area fraction ``scale`` (uniform, drawn per attempt) and
    an aspect ratio w/h (log-uniform in ``ratio``); then the central crop with
    the aspect ratio clamped into ``ratio``.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * draw("scale")
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            y = int(rng.integers(0, height - h + 1))
            x = int(rng.integers(0, width - w + 1))
            return x, y, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    # An extreme ratio on a small image rounds a side to 0 (torchvision then fails): keep
    # at least one pixel.
    w, h = min(max(w, 1), width), min(max(h, 1), height)
    return (width - w) // 2, (height - h) // 2, w, h


def _sample_resized_crop(draw, rng, shape):
    out_width, out_height = _output_size(draw("size"), "random_resized_crop.size")
    ratio = _range(draw("ratio"))
    height, width = shape[:2]
    x, y, w, h = _resized_crop_window(draw, rng, height, width, ratio)
    return {"x": x, "y": y, "crop_width": w, "crop_height": h,
            "width": out_width, "height": out_height}


def _apply_resized_crop(image, params):
    x, y = params["x"], params["y"]
    window = image[y:y + params["crop_height"], x:x + params["crop_width"]]
    return geometry.resize(window, params["width"], params["height"])


def _resized_crop_matrix(params, shape):
    window = (params["crop_height"], params["crop_width"])
    resize = geometry.resize_matrix(window, (params["height"], params["width"]))
    return resize @ geometry.translation(-params["x"], -params["y"])


register(Op(
    name="random_resized_crop",
    summary="torchvision's RandomResizedCrop: a crop of random area and aspect ratio, "
            "resized to size.",
    params=(
        Param("size", NUMBER_OR_LIST, 224, "Output size in pixels: one number for a square, or "
              "[width, height] (torchvision's size is (height, width): mind the order).",
              low=1, high=65535, lengths=(2,)),
        Param("scale", NUMBER, [0.08, 1.0], "Area of the crop as a fraction of the image's, "
              "drawn uniformly for each attempt.", low=0, high=1),
        Param("ratio", NUMBER_OR_LIST, [0.75, 1.3333333333333333], "Aspect ratio (width / "
              "height) of the crop as [lo, hi], drawn log-uniformly; one number fixes it.",
              low=0.01, high=100, lengths=(2,), ordered=True),
    ),
    example="- random_resized_crop: {size: 224, scale: [0.5, 1.0]}",
    sample=_sample_resized_crop,
    apply=_apply_resized_crop,
    matrix=_resized_crop_matrix,
    output_shape=lambda params, shape: (params["height"], params["width"]),
    aliases=("resized_crop",),
))


# --- resize ----------------------------------------------------------------------------

def _sample_resize(draw, rng, shape):
    height, width = shape[:2]
    new_width, new_height, scale = draw("width"), draw("height"), draw("scale")
    if new_width and not new_height:
        new_height = max(1, round(height * new_width / width))
    elif new_height and not new_width:
        new_width = max(1, round(width * new_height / height))
    elif not new_width and not new_height:
        new_width = max(1, round(width * scale))
        new_height = max(1, round(height * scale))
    return {"width": int(new_width), "height": int(new_height)}


register(Op(
    name="resize",
    summary="Resize to width x height (one of them keeps the aspect ratio), or by a factor.",
    params=(
        Param("width", INT, 0, "New width in pixels; 0: follows from height (same aspect "
              "ratio) or from scale.", low=0, high=_MAX_SIDE),
        Param("height", INT, 0, "New height in pixels; 0: follows from width (same aspect "
              "ratio) or from scale.", low=0, high=_MAX_SIDE),
        Param("scale", NUMBER, 1.0, "Factor for both sides, used when width and height are "
              "both 0.", low=0.01, high=100),
    ),
    example="- resize: {width: 320}",
    sample=_sample_resize,
    apply=lambda image, params: geometry.resize(image, params["width"], params["height"]),
    matrix=lambda params, shape: geometry.resize_matrix(shape, (params["height"],
                                                                params["width"])),
    output_shape=lambda params, shape: (params["height"], params["width"]),
))


# --- letterbox -------------------------------------------------------------------------

def _letterbox_layout(params, shape):
    """(new_width, new_height, left, top) of the resized image inside the box."""
    return geometry.letterbox_layout(shape, params["width"], params["height"], params["upscale"])


def _apply_letterbox(image, params):
    return geometry.letterbox(image, params["width"], params["height"], params["upscale"],
                              params["fill"], params["cval"])


def _letterbox_matrix(params, shape):
    new_width, new_height, left, top = _letterbox_layout(params, shape)
    return geometry.translation(left, top) @ geometry.resize_matrix(shape,
                                                                    (new_height, new_width))


register(Op(
    name="letterbox",
    summary="Fit inside width x height keeping the aspect ratio, centred on bars of cval.",
    params=(
        Param("width", INT, 640, "Width of the box in pixels.", low=1, high=_MAX_SIDE),
        Param("height", INT, 640, "Height of the box in pixels.", low=1, high=_MAX_SIDE),
        Param("upscale", BOOL, True, "false: never enlarge, only shrink images bigger than "
              "the box (a thumbnail centred on the bars).", random=False),
        *fill_params("What fills the bars"),
    ),
    example="- letterbox: {width: 640, height: 640, cval: 114}",
    sample=lambda draw, rng, shape: {"width": draw("width"), "height": draw("height"),
                                     "upscale": draw("upscale"), **fill_args(draw)},
    apply=_apply_letterbox,
    matrix=_letterbox_matrix,
    output_shape=lambda params, shape: (params["height"], params["width"]),
    aliases=("resize_with_pad",),
))


# --- pad ---------------------------------------------------------------------------------

def _sample_pad(draw, rng, shape):
    height, width = shape[:2]
    sides = {}
    for side, length in (("top", height), ("right", width), ("bottom", height),
                         ("left", width)):
        sides[side] = int(draw("px") + round(draw("percent") * length))
    return {**sides, **fill_args(draw)}


register(Op(
    name="pad",
    summary="Pad each side by pixels and/or a fraction of the side, drawn for each side.",
    params=(
        Param("px", INT, 0, "Pixels added to a side, drawn for each side (imgaug's "
              "Pad(px=...)).", low=0, high=_MAX_SIDE),
        Param("percent", NUMBER, 0, "Fraction of the width (left, right) or height (top, "
              "bottom) added to a side, drawn for each side; adds to px.", low=0, high=10),
        *fill_params("What fills the added border"),
    ),
    example="- pad: {percent: [0, 0.1], fill: reflect}",
    sample=_sample_pad,
    matrix=lambda params, shape: geometry.translation(params["left"], params["top"]),
    output_shape=lambda params, shape: (shape[0] + params["top"] + params["bottom"],
                                        shape[1] + params["left"] + params["right"]),
))


# --- rot90 -------------------------------------------------------------------------------

register(Op(
    name="rot90",
    summary="Rotate by k quarter turns clockwise, exactly; odd k swaps width and height.",
    params=(Param("k", INT, [0, 3], "Quarter turns clockwise (negative: anticlockwise); "
                  "[0, 3] picks any of the four orientations, as imgaug's Rot90((0, 3)).",
                  low=-3, high=3),),
    example="- rot90: {k: {choice: [1, 3]}}",
    sample=lambda draw, rng, shape: {"k": draw("k") % 4},
    apply=lambda image, params: geometry.rot90(image, params["k"]),
    matrix=lambda params, shape: geometry.rot90_matrix(shape, params["k"]),
    output_shape=lambda params, shape: (shape[:2] if params["k"] % 2 == 0
                                        else (shape[1], shape[0])),
    aliases=("rotate90", "random_rotate90"),
))


# --- perspective ---------------------------------------------------------------------------

def _sample_perspective(draw, rng, shape):
    scale = draw("scale")
    # imgaug's PerspectiveTransform: corner offsets |N(0, scale)| mod 1, as fractions of
    # the size, each pulled inwards from its corner (tl, tr, br, bl).
    jitter = np.mod(np.abs(rng.normal(0.0, scale, (4, 2))), 1.0)
    corners = jitter.copy()
    corners[1, 0] = 1.0 - jitter[1, 0]
    corners[2] = 1.0 - jitter[2]
    corners[3, 1] = 1.0 - jitter[3, 1]
    return {"scale": scale, "corners": [[float(x), float(y)] for x, y in corners],
            **fill_args(draw)}


def _order_points(points: np.ndarray) -> np.ndarray:
    """tl, tr, br, bl by coordinate sums and differences, as imgaug orders them."""
    ordered = np.zeros((4, 2), dtype=np.float32)
    sums, diffs = points.sum(axis=1), np.diff(points, axis=1)[:, 0]
    ordered[0], ordered[2] = points[np.argmin(sums)], points[np.argmax(sums)]
    ordered[1], ordered[3] = points[np.argmin(diffs)], points[np.argmax(diffs)]
    return ordered


def _widen(quad: np.ndarray, axis: int, minimum: float = 2.0) -> None:
    """Make the quadrilateral at least ``minimum`` pixels wide (axis 0) or high (axis 1).

    imgaug's guard against degenerate views: the short sides are pushed apart.
    """
    tl, tr, br, bl = quad
    first, second = ((tl, tr), (bl, br)) if axis == 0 else ((tl, bl), (tr, br))
    for _ in range(100):
        shortest = int(min(np.linalg.norm(first[1] - first[0]),
                           np.linalg.norm(second[1] - second[0])))
        if shortest >= minimum:
            return
        step = (minimum - shortest) / 2
        for low, high in (first, second):
            low[axis] -= step
            high[axis] += step


def _perspective_matrix(params, shape):
    """The homography that maps the sampled quadrilateral onto the whole image.

    imgaug (keep_size=True) warps the quadrilateral to its own bounding size and
    resizes back; here both happen in one warp. Corner coordinates run from 0
    to w (pixel edges); the matrix works on pixel centres.
    """
    height, width = shape[:2]
    quad = _order_points(np.array(params["corners"], dtype=np.float32)
                         * np.float32([width, height]))
    _widen(quad, 0)
    _widen(quad, 1)
    rect = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    edges = cv2.getPerspectiveTransform(quad, rect)
    return geometry.translation(-0.5, -0.5) @ edges @ geometry.translation(0.5, 0.5)


def _apply_perspective(image, params):
    matrix = _perspective_matrix(params, image.shape)
    if np.allclose(matrix, np.eye(3), atol=1e-9):
        return image
    return geometry.warp_perspective(image, matrix, params["fill"], params["cval"])


register(Op(
    name="perspective",
    summary="imgaug's PerspectiveTransform: view a random quadrilateral near the corners "
            "as the whole image.",
    params=(
        Param("scale", NUMBER, [0, 0.06], "Standard deviation of the corner offsets as a "
              "fraction of the size (imgaug's scale); 0.05-0.1 is a strong tilt.",
              low=0, high=0.5),
        *fill_params("Rarely seen (the view stays inside the image): what fills outside"),
    ),
    example="- perspective: {scale: [0.02, 0.08]}",
    sample=_sample_perspective,
    apply=_apply_perspective,
    # A 3x3 homography: boxes and keypoints follow it through geometry.project_points
    # (with the projective divide). The op resamples on its own, never in a fused warp.
    matrix=_perspective_matrix,
    aliases=("perspective_transform",),
))


# --- elastic -------------------------------------------------------------------------------

def elastic_shift_maps(shape, alpha: float, sigma: float, seed: int):
    """imgaug's ElasticTransformation displacement fields (dx, dy), float32.

    Uniform noise in [-1, 1] on a padded grid, smoothed by a Gaussian of
    ``sigma`` (imgaug's kernel size and border), scaled by ``alpha``; the
    padding keeps the borders as smooth as the middle. The same numbers as
    imgaug's ``_generate_shift_maps`` given the same NumPy generator.
    """
    height, width = shape[:2]
    ksize = gaussian_kernel_size(sigma)
    padded_height, padded_width = height + 2 * ksize, width + 2 * ksize
    rng = np.random.default_rng(seed)
    noise = rng.random((2 * padded_height, padded_width), dtype=np.float32) * 2 - 1
    fields = []
    for field in (noise[:padded_height], noise[padded_height:]):
        field = gaussian_blur(field, sigma)
        fields.append(field[ksize:-ksize, ksize:-ksize] * np.float32(alpha))
    return fields[0], fields[1]


def _apply_elastic(image, params):
    if params["alpha"] <= 0:
        return image
    dx, dy = elastic_shift_maps(image.shape, params["alpha"], params["sigma"], params["seed"])
    height, width = image.shape[:2]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return geometry.remap(image, x - dx, y - dy, params["fill"], params["cval"])


register(Op(
    name="elastic",
    summary="imgaug's ElasticTransformation: move pixels along smooth random displacement "
            "fields.",
    params=(
        Param("alpha", NUMBER, [0, 40], "Strength of the displacement (imgaug's alpha).",
              low=0, high=10_000),
        # Up to 100: the fields are padded by the kernel's size (2.6 sigma each side), so
        # sigma 1000 meant blurring a 5,200 px border even around a 1 x 1 image (minutes).
        Param("sigma", NUMBER, [4, 8], "Smoothness: sigma in pixels of the Gaussian that "
              "smooths the fields (imgaug's sigma); about alpha / 10 looks like water.",
              low=0, high=100),
        *fill_params("What fills pixels pulled in from outside the image"),
    ),
    example="- elastic: {alpha: [20, 50], sigma: 5}",
    sample=lambda draw, rng, shape: {"alpha": draw("alpha"), "sigma": draw("sigma"),
                                     "seed": op_seed(rng), **fill_args(draw)},
    apply=_apply_elastic,
    aliases=("elastic_transform", "elastic_transformation"),
    refuses_boxes="elastic moves each pixel its own way, so an axis-aligned box cannot follow "
                  "it; remove it from recipes with annotations",
))
