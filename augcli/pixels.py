"""Pixel helpers the ops share: alpha kept apart, dtype ranges, per-value functions.

Colour ops work on colour channels only; alpha (the 2nd channel of grey+alpha,
the 4th of RGBA) passes through untouched. Intensities are given in 0-255
units and scaled to the image's dtype (x257 for 16-bit).
"""

from __future__ import annotations

import cv2
import numpy as np


def split_alpha(image: np.ndarray):
    """(colour, alpha): colour is H x W (grey, grey + alpha) or H x W x 3; alpha may be None."""
    if image.ndim == 2:
        return image, None
    channels: int = image.shape[2]
    if channels == 2:
        return image[..., 0], image[..., 1]
    if channels == 4:
        return image[..., :3], image[..., 3]
    if channels == 1:
        return image[..., 0], None
    return image, None


def on_colour(image: np.ndarray, function) -> np.ndarray:
    """Apply ``function`` to the colour channels only; alpha is kept as it was."""
    colour, alpha = split_alpha(image)
    out = function(np.ascontiguousarray(colour))
    if alpha is None:
        return out.reshape(image.shape)
    return np.dstack([out, alpha])


def max_value(dtype) -> int:
    return int(np.iinfo(dtype).max)


def unit_step(image: np.ndarray) -> float:
    """Size of one 0-255 step in the image's own range: 1 for uint8, 257 for uint16."""
    return max_value(image.dtype) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """16-bit values keep their top byte (65535 -> 255); 8-bit images pass through."""
    return (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image


def to_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """Round to nearest (half to even) and clip into the integer dtype's range."""
    values = np.rint(values)
    out = values if isinstance(values, np.ndarray) else None  # clip in place when we can
    return np.clip(values, 0, max_value(dtype), out=out).astype(dtype)


def pointwise(colour: np.ndarray, function) -> np.ndarray:
    """Apply a per-value float function: one lookup table for uint8, floats otherwise."""
    if colour.dtype == np.uint8:
        table = to_dtype(function(np.arange(256, dtype=np.float64)), np.uint8)
        return cv2.LUT(colour, table).reshape(colour.shape)
    return to_dtype(function(colour.astype(np.float64)), colour.dtype)


def gaussian_kernel_size(sigma: float) -> int:
    """imgaug's kernel size for a Gaussian blur of ``sigma``: odd, at least 5.

    About 3.3 sigma below sigma 3 (99% of the weight), 2.9 sigma below 5, 2.6
    sigma above (imgaug's ``_compute_gaussian_blur_ksize``, made odd).
    """
    factor = 3.3 if sigma < 3.0 else 2.9 if sigma < 5.0 else 2.6
    size = int(max(factor * sigma, 5))
    return size + 1 if size % 2 == 0 else size


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """imgaug's Gaussian blur with a fixed sigma, in one OpenCV call: the same bytes.

    Every channel is blurred, alpha included, as imgaug does (a cut-out gets a
    soft edge); mirrored borders (dcb|abcd). Sigma up to 0.001 changes nothing
    (imgaug's eps).
    """
    if sigma <= 1e-3 or image.size == 0:
        return image
    size = gaussian_kernel_size(sigma)
    blurred = cv2.GaussianBlur(np.ascontiguousarray(image), (size, size), sigmaX=sigma,
                               sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return blurred.reshape(image.shape)


def colour_channels(image: np.ndarray) -> int:
    """Channels that carry colour: alpha (the 2nd of LA, the 4th of RGBA) is excluded."""
    if image.ndim == 2:
        return 1
    channels: int = image.shape[2]
    return {2: 1, 4: 3}.get(channels, channels)


def keras_channel_shift(colour: np.ndarray, shift: float) -> np.ndarray:
    """Keras' apply_channel_shift: add ``shift`` to every channel, clip to the image's
    own min..max (not to the dtype's range)."""
    low, high = float(colour.min()), float(colour.max())
    return pointwise(colour, lambda values: np.clip(values + shift, low, high))
