"""The ``keras`` op: Keras ``ImageDataGenerator`` augmentation kwargs, verbatim.

A recipe step ``- keras: {rotation_range: 20, zoom_range: 0.2, ...}`` samples
and applies what keras-preprocessing 1.1.2's ``get_random_transform`` and
``apply_transform`` do (its scipy backend), checked against that package:

* one inverse affine map in (row, column) coordinates,
  ``R(theta) . T(tx, ty) . Shear(shear) . Zoom(zx, zy)``, pivoting where
  ``transform_matrix_offset_center`` puts it, ``(h / 2 + 0.5, w / 2 + 0.5)``
  (one pixel below and right of the centre), so ``zoom_range`` values
  above 1 zoom *out* and a positive shift moves the picture up/left;
* resampled as ``scipy.ndimage.affine_transform(order=1)`` with scipy's
  boundary modes (``geometry.warp_ndimage``): ``constant`` cuts hard at the
  edge, ``wrap`` has period ``size - 1``, ``reflect`` is ``cba|abcd|dcb``;
* then the channel shift (one intensity added to every channel, clipped to the
  image's own min and max), the flips, and the brightness change (PIL's
  Brightness after Keras stretches the image to the full 0-255 range).

keras-preprocessing 1.1.2 applies ``height_shift_range`` along the rows and
``width_shift_range`` along the columns, as Keras documents. Keras 3's legacy
generator differs (axes swapped and more): docs/ops/keras.md has the list.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

from .. import geometry
from ..params import BOOL, ENUM, NUMBER, NUMBER_OR_LIST, Param
from ..pixels import keras_channel_shift, on_colour, unit_step
from .base import Op, register

KERAS_FILL = geometry.NDIMAGE_MODES

NOT_AUGMENTATIONS = {
    name: f"'{name}' is a Keras normalization setting, not an augmentation; "
          "normalize the dataset with 'augcli normalize' instead"
    for name in ("rescale", "preprocessing_function", "featurewise_center", "samplewise_center",
                 "featurewise_std_normalization", "samplewise_std_normalization",
                 "zca_whitening", "zca_epsilon")
} | {
    name: f"'{name}' configures Keras' data pipeline, not an augmentation; leave it out"
    for name in ("data_format", "validation_split", "dtype", "interpolation_order")
}

PARAMS = (
    Param("rotation_range", NUMBER, 0, "Degrees: theta ~ U(-r, r).", low=0, high=360,
          random=False),
    Param("width_shift_range", NUMBER_OR_LIST, 0, "Fraction of the width if < 1, else pixels: "
          "a float d draws from [-d, d], an integer n a whole number of pixels in "
          "[-(n - 1), n - 1] (Keras' np.random.choice(n) with a random sign); a list: one of "
          "its values with a random sign.", random=False, keep_int=True),
    Param("height_shift_range", NUMBER_OR_LIST, 0, "As width_shift_range, for the height.",
          random=False, keep_int=True),
    Param("shear_range", NUMBER, 0, "Shear angle in degrees: U(-s, s).", low=0, high=89,
          random=False),
    Param("zoom_range", NUMBER_OR_LIST, 0, "z means [1 - z, 1 + z]; or [lo, hi]. x and y are "
          "drawn separately; values above 1 zoom out, as in Keras.", low=0, high=10,
          lengths=(2,), ordered=True, random=False),
    Param("channel_shift_range", NUMBER, 0, "Intensity added to all channels: U(-c, c).",
          low=0, high=255, random=False),
    Param("brightness_range", NUMBER_OR_LIST, 0, "[lo, hi] brightness factor (0 = off).",
          low=0, high=10, lengths=(2,), ordered=True, random=False),
    Param("horizontal_flip", BOOL, False, "Flip left-right half of the time.", random=False),
    Param("vertical_flip", BOOL, False, "Flip top-bottom half of the time.", random=False),
    Param("fill_mode", ENUM, "nearest", "Keras (scipy.ndimage) fill: constant, nearest, "
          "reflect (cba|abcd|dcb) or wrap (period size - 1, as scipy).", choices=KERAS_FILL,
          random=False),
    Param("cval", NUMBER, 0, "Fill value for fill_mode: constant.", low=0, high=255,
          random=False),
)


def _zoom_bounds(zoom_range) -> tuple:
    if isinstance(zoom_range, tuple):
        return zoom_range[0], zoom_range[-1]
    return 1 - zoom_range, 1 + zoom_range


def _sample_shift(rng, shift_range, extent: int) -> float:
    """Keras' shift draw (get_random_transform).

    A list, or an integer n, goes through ``np.random.choice`` with a random
    sign: one of the list's values, or a whole number in [0, n) (so n = 3
    gives -2..2, and n = 1 always 0). A float d is uniform in [-d, d]. When
    the largest value is below 1 the shift is a fraction of ``extent``.
    """
    if not shift_range:
        return 0.0
    if isinstance(shift_range, tuple):
        shift = float(rng.choice(shift_range)) * float(rng.choice([-1, 1]))
    elif isinstance(shift_range, int) and shift_range > 0:  # np.random.choice(n)
        shift = float(rng.integers(shift_range)) * float(rng.choice([-1, 1]))
    else:
        shift = float(rng.uniform(-shift_range, shift_range))  # Keras' except ValueError
    largest = max(shift_range) if isinstance(shift_range, tuple) else shift_range
    return shift * extent if largest < 1 else shift


def sample(draw, rng, size):
    height, width = size
    low, high = _zoom_bounds(draw("zoom_range"))
    zoom_x, zoom_y = (1.0, 1.0) if low == high == 1 else map(float, rng.uniform(low, high, 2))
    rotation, shear, channel_shift = (draw(name) for name in
                                      ("rotation_range", "shear_range", "channel_shift_range"))
    brightness = draw("brightness_range")
    params = {
        "theta": float(rng.uniform(-rotation, rotation)) if rotation else 0.0,
        # tx shifts rows (the height), ty columns (the width), as Keras' scipy backend.
        "tx": _sample_shift(rng, draw("height_shift_range"), height),
        "ty": _sample_shift(rng, draw("width_shift_range"), width),
        "shear": float(rng.uniform(-shear, shear)) if shear else 0.0,
        "zx": zoom_x,
        "zy": zoom_y,
        "flip_horizontal": bool(rng.random() < 0.5) and draw("horizontal_flip"),
        "flip_vertical": bool(rng.random() < 0.5) and draw("vertical_flip"),
        "channel_shift_intensity": (float(rng.uniform(-channel_shift, channel_shift))
                                    if channel_shift else None),
        "brightness": (float(rng.uniform(*brightness))
                       if isinstance(brightness, tuple) else None),
        "fill_mode": draw("fill_mode"),
        "cval": draw("cval"),
    }
    return params


def inverse_map_rows_cols(params, size) -> np.ndarray:
    """Keras' output->input map in (row, col) coordinates.

    Pivots on (h / 2 + 0.5, w / 2 + 0.5), keras-preprocessing 1.1.2's
    ``transform_matrix_offset_center``: not the centre of the pixel grid,
    ((h - 1) / 2, (w - 1) / 2), but one pixel further down and right.
    """
    theta, shear = np.deg2rad(params["theta"]), np.deg2rad(params["shear"])
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0],
                         [0, 0, 1]])
    shift = geometry.translation(params["tx"], params["ty"])
    shearing = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    zoom = np.diag([params["zx"], params["zy"], 1.0])
    height, width = size
    centre = geometry.translation(height / 2 + 0.5, width / 2 + 0.5)
    return centre @ rotation @ shift @ shearing @ zoom @ np.linalg.inv(centre)


_SWAP_AXES = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)


def _inverse_affine(params, size) -> np.ndarray:
    """Keras' output->input map in (x, y) coordinates."""
    return _SWAP_AXES @ inverse_map_rows_cols(params, size) @ _SWAP_AXES


def _forward_affine(params, size) -> np.ndarray:
    """Keras' map turned into augcli's convention: forward, in (x, y) coordinates."""
    return np.linalg.inv(_inverse_affine(params, size))


def matrix(params, size) -> np.ndarray:
    """Forward map of the whole step, flips included (for boxes)."""
    forward = _forward_affine(params, size)
    if params["flip_horizontal"]:
        forward = geometry.flip_matrix(size, horizontal=True) @ forward
    if params["flip_vertical"]:
        forward = geometry.flip_matrix(size, horizontal=False) @ forward
    return forward


def apply(image: np.ndarray, params) -> np.ndarray:
    """Keras' apply_transform order: affine, channel shift, flips, brightness.

    Alpha (of grey+alpha or RGBA) moves with the pixels; the colour changes
    leave it alone.
    """
    inverse = _inverse_affine(params, image.shape[:2])
    if np.allclose(inverse, np.eye(3), atol=1e-12):  # Keras skips the warp then, too
        out = image
    else:
        out = geometry.warp_ndimage(image, inverse, params["fill_mode"], params["cval"])
    if params["flip_horizontal"]:
        out = out[:, ::-1]
    if params["flip_vertical"]:
        out = out[::-1]
    return on_colour(np.ascontiguousarray(out), lambda colour: _colour_changes(colour, params))


def _colour_changes(colour: np.ndarray, params) -> np.ndarray:
    if params["channel_shift_intensity"] is not None:
        colour = keras_channel_shift(colour, params["channel_shift_intensity"])
    if params["brightness"] is not None:
        colour = _brightness(colour, params["brightness"])
    return colour


def _brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Keras apply_brightness_shift: stretch to 0-255 (array_to_img), then PIL Brightness.

    The result is on Keras' 0-255 scale; a 16-bit image gets it back in its own range
    (x257), so its dtype is kept."""
    values = image.astype(np.float64)
    low, high = values.min(), values.max()
    stretched = (values - low) / (high - low) * 255 if high > low else values - low
    picture = Image.fromarray(stretched.astype(np.uint8))
    brightened = np.asarray(ImageEnhance.Brightness(picture).enhance(factor))
    return brightened if image.dtype == np.uint8 else \
        (brightened.astype(np.uint32) * round(unit_step(image))).astype(image.dtype)


def _values(distribution) -> tuple:
    """Every value a recipe's setting can take (a constant, a choice or a sweep)."""
    if distribution is None:
        return ()
    return getattr(distribution, "values", None) or (getattr(distribution, "value", None),)


register(Op(
    name="keras",
    summary="Keras ImageDataGenerator augmentation kwargs, verbatim, with Keras' meaning.",
    params=PARAMS,
    example="- keras: {rotation_range: 20, width_shift_range: 0.1, zoom_range: 0.2, "
            "horizontal_flip: true}",
    sample=sample,
    apply=apply,
    matrix=matrix,
    mirrors=lambda args: any(value is True for key in ("horizontal_flip", "vertical_flip")
                             for value in _values(args.get(key))),
    aliases=("image_data_generator",),
    refused=NOT_AUGMENTATIONS,
))
