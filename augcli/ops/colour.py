"""Colour and tone ops of the catalog.

torchvision's meaning for brightness, contrast, saturation, hue and
color_jitter; Keras' for channel_shift; imgaug's for gamma, grayscale, clahe;
PIL's (and torchvision's) for equalize. All of them work on the colour
channels and keep alpha. On grey images saturation, hue and grayscale change
nothing; the others work on the single grey channel. Results are rounded to
the nearest integer (torchvision truncates its uint8 tensors).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..params import INT, NUMBER, NUMBER_OR_LIST, PROBABILITY, Param
from ..pixels import keras_channel_shift, max_value, on_colour, pointwise, to_dtype, unit_step
from .base import Op, register, with_probability

# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma).
_GREY_WEIGHTS = np.array([[0.2989, 0.587, 0.114]], dtype=np.float32)


def _grey(colour: np.ndarray) -> np.ndarray:
    """Luma as float32: the image itself for grey, weighted R, G, B for colour."""
    if colour.ndim == 2:
        return colour.astype(np.float32)
    return cv2.transform(colour.astype(np.float32), _GREY_WEIGHTS)


# --- the colour functions (colour channels in, colour channels out) -------------------

def adjust_brightness(colour: np.ndarray, factor: float) -> np.ndarray:
    """torchvision: multiply by factor (a blend with black); Keras' brightness_range too."""
    return pointwise(colour, lambda values: values * factor)


def adjust_contrast(colour: np.ndarray, factor: float) -> np.ndarray:
    """torchvision: blend with the mean grey level of the whole image."""
    mean = float(_grey(colour).mean(dtype=np.float64))
    return pointwise(colour, lambda values: factor * values + (1.0 - factor) * mean)


def adjust_saturation(colour: np.ndarray, factor: float) -> np.ndarray:
    """torchvision: blend each pixel with its own grey level (grey images: unchanged)."""
    if colour.ndim == 2:
        return colour
    grey = cv2.cvtColor(_grey(colour), cv2.COLOR_GRAY2RGB)
    blend = cv2.addWeighted(colour.astype(np.float32), factor, grey, 1.0 - factor, 0.0)
    return to_dtype(blend, colour.dtype)


def adjust_hue(colour: np.ndarray, shift: float) -> np.ndarray:
    """torchvision: turn the hue by ``shift`` of the colour wheel, in [-0.5, 0.5]."""
    if colour.ndim == 2 or shift == 0:
        return colour
    top = max_value(colour.dtype)
    hsv: np.ndarray = cv2.cvtColor(colour.astype(np.float32) / top, cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0]
    hue += np.float32(shift * 360.0)
    hue[hue >= 360] -= 360
    hue[hue < 0] += 360
    rgb: np.ndarray = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    rgb *= np.float32(top)
    return to_dtype(rgb, colour.dtype)


_ADJUST = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}


def _factor_apply(adjust):
    """``apply`` of an op that runs ``adjust(colour, factor)`` on the colour channels."""
    return lambda image, params: on_colour(image, lambda c: adjust(c, params["factor"]))


register(Op(
    name="brightness",
    summary="Multiply intensities by a factor (torchvision's adjust_brightness; Keras' "
            "brightness_range).",
    params=(Param("factor", NUMBER, [0.8, 1.2], "Factor: 1 keeps the image, 0 is black, 1.5 "
                  "is 50% brighter.", low=0, high=100),),
    example="- brightness: {factor: [0.7, 1.3]}",
    apply=_factor_apply(adjust_brightness),
    aliases=("multiply", "adjust_brightness"),
))

register(Op(
    name="contrast",
    summary="Blend with the image's mean grey level (torchvision's adjust_contrast).",
    params=(Param("factor", NUMBER, [0.8, 1.2], "Factor: 1 keeps the image, 0 is flat mean "
                  "grey, >1 adds contrast.", low=0, high=100),),
    example="- contrast: {factor: [0.7, 1.3]}",
    apply=_factor_apply(adjust_contrast),
    aliases=("adjust_contrast",),
))

register(Op(
    name="saturation",
    summary="Blend each pixel with its grey level (torchvision's adjust_saturation).",
    params=(Param("factor", NUMBER, [0.8, 1.2], "Factor: 1 keeps the image, 0 is grey, >1 "
                  "more saturated. Grey images are left as they are.", low=0, high=100),),
    example="- saturation: {factor: [0.5, 1.5]}",
    apply=_factor_apply(adjust_saturation),
    aliases=("adjust_saturation",),
))

register(Op(
    name="hue",
    summary="Turn the hue by a fraction of the colour wheel (torchvision's adjust_hue).",
    params=(Param("factor", NUMBER, 0.05, "Fraction of the wheel in [-0.5, 0.5] (0.5: red -> "
                  "cyan); d means [-d, d]. Grey images are left as they are.",
                  low=-0.5, high=0.5, symmetric=True),),
    example="- hue: {factor: 0.1}",
    apply=_factor_apply(adjust_hue),
    aliases=("adjust_hue",),
))


# --- color_jitter ------------------------------------------------------------------------

def _jitter_range(value, name: str, centre: float, low: float, high: float):
    """torchvision's ColorJitter._check_input: d -> [centre - d, centre + d] clipped, or [lo, hi].

    Returns None when the range is the single point ``centre`` (that part is skipped).
    """
    where = f"color_jitter.{name}"
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] > value[1] or value[0] < low or value[1] > high:
            raise ValueError(f"{where}: expected [lo, hi] with {low:g} <= lo <= hi <= "
                             f"{high:g}, got {list(value)!r}")
        lo, hi = float(value[0]), float(value[1])
    else:
        if value < 0 or (centre == 0 and value > high):
            raise ValueError(f"{where}: expected a number in [0, {high:g}] or [lo, hi], "
                             f"got {value!r}")
        lo, hi = max(low, centre - value), centre + value
    return None if lo == hi == centre else (lo, hi)


_JITTER_PARTS = (("brightness", 1.0, 0.0, 1e3), ("contrast", 1.0, 0.0, 1e3),
                 ("saturation", 1.0, 0.0, 1e3), ("hue", 0.0, -0.5, 0.5))


def _sample_color_jitter(draw, rng, shape):
    """Each factor uniform in its range; the four parts in a random order, as torchvision."""
    order = [_JITTER_PARTS[i][0] for i in rng.permutation(4)]
    params = {}
    for name, centre, low, high in _JITTER_PARTS:
        bounds = _jitter_range(draw(name), name, centre, low, high)
        params[name] = None if bounds is None else float(rng.uniform(*bounds))
    return {**params, "order": order}


def _apply_color_jitter(image, params):
    def jitter(colour):
        for name in params["order"]:
            if params[name] is not None:
                colour = _ADJUST[name](colour, params[name])
        return colour

    return on_colour(image, jitter)


register(Op(
    name="color_jitter",
    summary="torchvision's ColorJitter: brightness, contrast, saturation and hue in a random "
            "order.",
    params=(
        Param("brightness", NUMBER_OR_LIST, 0.4, "b means a factor in [max(0, 1 - b), 1 + b]; "
              "or [lo, hi]; 0 skips it.", low=0, high=100, lengths=(2,), ordered=True),
        Param("contrast", NUMBER_OR_LIST, 0.4, "As brightness: factor range around 1.",
              low=0, high=100, lengths=(2,), ordered=True),
        Param("saturation", NUMBER_OR_LIST, 0.4, "As brightness: factor range around 1.",
              low=0, high=100, lengths=(2,), ordered=True),
        Param("hue", NUMBER_OR_LIST, 0.1, "h means a hue shift in [-h, h] (h <= 0.5, a "
              "fraction of the colour wheel); or [lo, hi] within [-0.5, 0.5]; 0 skips it.",
              low=-0.5, high=0.5, lengths=(2,), ordered=True, magnitude=True),
    ),
    example="- color_jitter: {brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1}",
    sample=_sample_color_jitter,
    apply=_apply_color_jitter,
    aliases=("colour_jitter", "colorjitter"),
))


# --- channel_shift -------------------------------------------------------------------------

def _apply_channel_shift(image, params):
    """Keras' apply_channel_shift: add one intensity to every channel, clip to min..max."""
    shift = params["intensity"] * unit_step(image)
    return on_colour(image, lambda colour: keras_channel_shift(colour, shift))


register(Op(
    name="channel_shift",
    summary="Keras' channel shift: add one random intensity to all channels, clipped to the "
            "image's own min..max.",
    params=(Param("intensity", NUMBER, 20, "Intensity added, in 0-255 units (Keras' "
                  "channel_shift_range); d means [-d, d].", low=-255, high=255,
                  symmetric=True),),
    example="- channel_shift: {intensity: 30}",
    apply=_apply_channel_shift,
    aliases=("random_channel_shift",),
))


# --- gamma ---------------------------------------------------------------------------------

def gamma_contrast(colour: np.ndarray, gamma: float) -> np.ndarray:
    """imgaug's GammaContrast with a fixed gamma, byte for byte.

    uint8: imgaug's lookup table, computed in float32 and truncated; uint16:
    ``max * (x / max) ** gamma`` in float64, truncated (scikit-image's
    adjust_gamma, which imgaug calls for it).
    """
    if colour.size == 0:
        return colour
    if colour.dtype == np.uint8:
        levels = np.linspace(0, 1.0, num=256, dtype=np.float32)
        table = np.clip(levels ** np.float32(gamma) * 255, 0, 255).astype(np.uint8)
        return cv2.LUT(colour, table).reshape(colour.shape)
    top = float(max_value(colour.dtype))
    return ((colour / top) ** gamma * top).astype(colour.dtype)


register(Op(
    name="gamma",
    summary="imgaug's GammaContrast: max * (x / max) ** gamma.",
    params=(Param("gamma", NUMBER, [0.7, 1.7], "Exponent: >1 darkens the mid-tones, <1 "
                  "brightens them.", low=0.01, high=100),),
    example="- gamma: {gamma: [0.5, 2.0]}",
    apply=lambda image, params: on_colour(image, lambda c: gamma_contrast(c, params["gamma"])),
    aliases=("gamma_contrast", "adjust_gamma"),
))


# --- grayscale -------------------------------------------------------------------------------

def _to_grey(colour, alpha):
    if colour.ndim == 2 or alpha <= 0:
        return colour
    grey = cv2.cvtColor(_grey(colour), cv2.COLOR_GRAY2RGB)
    blend = cv2.addWeighted(grey, alpha, colour.astype(np.float32), 1.0 - alpha, 0.0)
    return to_dtype(blend, colour.dtype)


register(Op(
    name="grayscale",
    summary="Blend towards grey by alpha; keeps 3 channels (torchvision Grayscale("
            "num_output_channels=3), imgaug Grayscale).",
    params=(
        Param("p", PROBABILITY, 1.0, "Probability of applying it (torchvision's "
              "RandomGrayscale uses 0.1).", low=0, high=1),
        Param("alpha", NUMBER, 1.0, "1: fully grey; 0: unchanged; in between: a blend.",
              low=0, high=1),
    ),
    example="- grayscale: {p: 0.2}",
    sample=lambda draw, rng, shape: with_probability(draw, rng, {"alpha": draw("alpha")}),
    apply=lambda image, params: on_colour(image, lambda c: _to_grey(c, params["alpha"])),
    aliases=("greyscale", "to_grayscale"),
))


# --- invert ----------------------------------------------------------------------------------

register(Op(
    name="invert",
    summary="Negative: x -> max - x on the colour channels, with probability p.",
    params=(Param("p", PROBABILITY, 1.0, "Probability of inverting (torchvision's "
                  "RandomInvert uses 0.5).", low=0, high=1),),
    example="- invert: {p: 0.5}",
    sample=lambda draw, rng, shape: with_probability(draw, rng),
    apply=lambda image, params: on_colour(image, lambda c: max_value(c.dtype) - c),
))


# --- clahe -----------------------------------------------------------------------------------

def _apply_clahe(image, params):
    tiles = int(params["tile_grid_size"])
    clahe = cv2.createCLAHE(clipLimit=float(params["clip_limit"]), tileGridSize=(tiles, tiles))

    def equalized(colour):
        if colour.ndim == 2:
            return clahe.apply(colour)
        if colour.dtype == np.uint8:
            lab = cv2.cvtColor(colour, cv2.COLOR_RGB2Lab)
            lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
            return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
        return _clahe_wide(colour, clahe)

    return on_colour(image, equalized)


def _clahe_wide(colour: np.ndarray, clahe) -> np.ndarray:
    """16-bit colour (imgaug has no 16-bit CLAHE). OpenCV turns 16-bit RGB into Lab only
    through floats, and its 16-bit CLAHE (65536 bins) equalizes far harder than the 8-bit
    one; so L is equalized on the 8-bit scale, as for 8-bit images, and the change is
    added to the full-precision L, keeping the 16-bit detail."""
    top = float(max_value(colour.dtype))
    lab = cv2.cvtColor(colour.astype(np.float32) / top, cv2.COLOR_RGB2Lab)
    lightness = np.clip(np.rint(lab[..., 0] * 2.55), 0, 255).astype(np.uint8)
    change = clahe.apply(lightness).astype(np.float32) - lightness
    lab[..., 0] = np.clip(lab[..., 0] + change / 2.55, 0, 100)
    return to_dtype(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * top, colour.dtype)


register(Op(
    name="clahe",
    summary="imgaug's CLAHE: contrast-limited adaptive histogram equalization of the "
            "lightness (L of Lab; grey images directly).",
    params=(
        Param("clip_limit", NUMBER, [0.1, 8], "Contrast limit per tile (OpenCV's clipLimit); "
              "higher: stronger.", low=0.01, high=100),
        Param("tile_grid_size", INT, [3, 12], "Tiles per side of the grid (OpenCV's "
              "tileGridSize; imgaug's tile_grid_size_px).", low=2, high=64),
    ),
    example="- clahe: {clip_limit: [1, 4], tile_grid_size: 8}",
    apply=_apply_clahe,
))


# --- equalize --------------------------------------------------------------------------------

def _equalize_channel(channel: np.ndarray) -> np.ndarray:
    """PIL's ImageOps.equalize for one channel.

    uint8 is PIL's integer arithmetic exactly. uint16 uses the same formula
    with a fractional step: PIL's whole-number step would be 0 (and change
    nothing) for any image of fewer than 65535 pixels.
    """
    levels = max_value(channel.dtype) + 1
    histogram = np.bincount(channel.ravel(), minlength=levels).astype(np.int64)
    used = histogram[histogram > 0]
    if len(used) <= 1:
        return channel
    before = np.concatenate([[0], np.cumsum(histogram)[:-1]])
    if channel.dtype == np.uint8:
        step = (int(used.sum()) - int(used[-1])) // (levels - 1)
        if step == 0:
            return channel
        table = (step // 2 + before) // step
    else:
        fractional_step = (int(used.sum()) - int(used[-1])) / (levels - 1)
        table = np.floor((fractional_step / 2 + before) / fractional_step)
    table = np.minimum(table, levels - 1).astype(channel.dtype)
    return cv2.LUT(channel, table) if channel.dtype == np.uint8 else table[channel]


def _equalize(colour: np.ndarray) -> np.ndarray:
    if colour.ndim == 2:
        return _equalize_channel(colour)
    return np.dstack([_equalize_channel(colour[..., i]) for i in range(colour.shape[2])])


register(Op(
    name="equalize",
    summary="Histogram equalization of each channel (PIL's ImageOps.equalize, torchvision's "
            "equalize), with probability p.",
    params=(Param("p", PROBABILITY, 1.0, "Probability of equalizing (torchvision's "
                  "RandomEqualize uses 0.5).", low=0, high=1),),
    example="- equalize: {p: 0.5}",
    sample=lambda draw, rng, shape: with_probability(draw, rng),
    apply=lambda image, params: on_colour(image, _equalize),
    aliases=("histogram_equalization", "equalize_hist"),
))
