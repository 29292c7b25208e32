"""Pixel ops of the catalog: dropout, erasing, noise, blur and compression.

Every random mask or noise field comes from a ``seed`` drawn in ``sample``
and recorded, so ``apply`` is deterministic and a manifest line replays the
exact pixels. Alpha is never touched; intensities in 0-255 units are scaled
to 16-bit images.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np

from .. import geometry
from ..params import BOOL, ENUM, INT, NUMBER, NUMBER_OR_LIST, PROBABILITY, Param
from ..pixels import colour_channels, gaussian_blur, max_value, on_colour, to_dtype, unit_step
from .base import Op, op_seed, register

# --- dropout and gaussian_blur -----------------------------------------------------------

def _sample_dropout(draw, rng, shape):
    return {"p": draw("p"), "per_channel": draw("per_channel"),
            "mask_seed": int(rng.integers(2**31))}


_DROPOUT_LEVELS = 65536  # the mask compares 16-bit random integers: p to within 1/65536


def uniform_uint16(rng: np.random.Generator, shape) -> np.ndarray:
    """The values ``rng.integers(0, 65536, shape, dtype=np.uint16)`` draws, 3x faster.

    For the full 16-bit range NumPy takes each 64-bit output of the bit generator
    as four little-endian 16-bit values, so the raw outputs, viewed as 16-bit,
    are the same stream without the per-value bounding work. Call it only on
    a fresh generator (NumPy buffers leftover halves between calls).
    """
    count = int(np.prod(shape))
    raw = rng.bit_generator.random_raw((count + 3) // 4).astype("<u8", copy=False)
    return raw.view("<u2")[:count].reshape(shape)


def _apply_dropout(image: np.ndarray, params) -> np.ndarray:
    """Set a random fraction p of pixels to 0 (alpha is left alone).

    The mask is drawn as 16-bit integers and applied in one OpenCV pass: a
    masked copy into a zeroed image (``cv2.copyTo``; its mask may have one
    channel per pixel or per value), several times faster than float draws
    and boolean indexing, and three times faster than a masked ``bitwise_and``.
    """
    p = params["p"]
    if p <= 0:
        return image
    mask_rng = np.random.default_rng(params["mask_seed"])
    threshold = min(round(p * _DROPOUT_LEVELS), _DROPOUT_LEVELS)

    def drop(colour):
        per_channel = params["per_channel"] and colour.ndim == 3
        mask_shape = colour.shape if per_channel else colour.shape[:2]
        keep = uniform_uint16(mask_rng, mask_shape) >= threshold
        return cv2.copyTo(colour, keep.view(np.uint8))

    return on_colour(image, drop)


register(Op(
    name="dropout",
    summary="Pixel dropout noise: set a fraction p of pixels to black (imgaug's Dropout).",
    params=(
        Param("p", PROBABILITY, 0.05, "Fraction of pixels to drop.", low=0, high=1),
        Param("per_channel", BOOL, False, "Drop channels independently (coloured speckles).",
              random=False),
    ),
    example="- dropout: {p: {sweep: [0.3, 0.4, 0.5]}}",
    sample=_sample_dropout,
    apply=_apply_dropout,
    aliases=("pixel_dropout",),
))


register(Op(
    name="gaussian_blur",
    summary="Gaussian blur with standard deviation sigma in pixels (imgaug's GaussianBlur).",
    params=(Param("sigma", NUMBER, [0, 1.0], "Blur sigma in pixels (0 = no blur).",
                  low=0, high=50),),
    example="- gaussian_blur: {sigma: [0, 1.5]}",
    apply=lambda image, params: gaussian_blur(image, params["sigma"]),
    aliases=("blur",),
))


# --- coarse_dropout ----------------------------------------------------------------------

def _apply_coarse_dropout(image, params):
    """imgaug's CoarseDropout: a dropout mask drawn on a coarse grid, enlarged (nearest)."""
    p = params["p"]
    if p <= 0:
        return image
    height, width = image.shape[:2]
    grid = (max(int(height * params["size_percent_y"]), 3),
            max(int(width * params["size_percent_x"]), 3))
    colour = colour_channels(image)
    per_channel = params["per_channel"] and colour > 1
    rng = np.random.default_rng(params["seed"])
    keep = (rng.random(grid + ((colour,) if per_channel else ())) >= p).astype(np.uint8)
    keep = cv2.resize(keep, (width, height), interpolation=cv2.INTER_NEAREST)
    if not per_channel and colour > 1:
        keep = keep[..., None]
    return on_colour(image, lambda c: c * keep.astype(c.dtype))


register(Op(
    name="coarse_dropout",
    summary="imgaug's CoarseDropout: black rectangles from a dropout mask on a coarse grid.",
    params=(
        Param("p", PROBABILITY, [0.02, 0.1], "Fraction of grid cells dropped.", low=0, high=1),
        Param("size_percent", NUMBER, [0.02, 0.25], "Grid size as a fraction of the image "
              "size, drawn for height and width (small: big rectangles); at least 3x3 cells.",
              low=0.001, high=1),
        Param("per_channel", BOOL, False, "Drop channels independently (coloured blocks).",
              random=False),
    ),
    example="- coarse_dropout: {p: 0.1, size_percent: [0.05, 0.1]}",
    sample=lambda draw, rng, shape: {
        "p": draw("p"), "size_percent_y": draw("size_percent"),
        "size_percent_x": draw("size_percent"), "per_channel": draw("per_channel"),
        "seed": op_seed(rng)},
    apply=_apply_coarse_dropout,
))


# --- cutout ------------------------------------------------------------------------------

def _sample_cutout(draw, rng, shape):
    """imgaug's Cutout: centres uniform in the image, sides a fraction of height/width."""
    height, width = shape[:2]
    squared = draw("squared")
    boxes = []
    for _ in range(draw("nb_iterations")):
        centre_x, centre_y = rng.random(), rng.random()
        size_h, size_w = draw("size"), draw("size")
        y1, y2 = (centre_y - size_h / 2) * height, (centre_y + size_h / 2) * height
        if squared:
            half = size_h * height / 2
            x1, x2 = centre_x * width - half, centre_x * width + half
        else:
            x1, x2 = (centre_x - size_w / 2) * width, (centre_x + size_w / 2) * width
        # imgaug: truncate towards zero, then clip into the image.
        x1, x2 = (min(max(int(v), 0), width) for v in (x1, x2))
        y1, y2 = (min(max(int(v), 0), height) for v in (y1, y2))
        if x2 > x1 and y2 > y1:
            boxes.append([x1, y1, x2, y2])
    return {"boxes": boxes, "fill_mode": draw("fill_mode"), "cval": draw("cval"),
            "fill_per_channel": draw("fill_per_channel"), "seed": op_seed(rng)}


def _apply_cutout(image, params):
    rng = np.random.default_rng(params["seed"])
    top = max_value(image.dtype)

    def cut(colour):
        out = colour.copy()
        for x1, y1, x2, y2 in params["boxes"]:
            if params["fill_mode"] == "gaussian":
                # imgaug: N(centre of the range, range / 6), clipped, truncated to integers.
                shape = (y2 - y1, x2 - x1)
                if params["fill_per_channel"] and out.ndim == 3:
                    shape += (out.shape[2],)
                noise = np.clip(rng.normal(top / 2, top / 6, shape), 0, top).astype(out.dtype)
                out[y1:y2, x1:x2] = noise if noise.ndim == out.ndim else noise[..., None]
            else:
                out[y1:y2, x1:x2] = to_dtype(np.float64(params["cval"]) * top / 255, out.dtype)
        return out

    return on_colour(image, cut)


register(Op(
    name="cutout",
    summary="imgaug's Cutout: fill nb_iterations rectangles at random places with a colour "
            "or Gaussian noise.",
    params=(
        Param("nb_iterations", INT, 1, "How many rectangles.", low=0, high=100),
        Param("size", NUMBER, 0.2, "Side as a fraction of the image height (and width unless "
              "squared), drawn per rectangle.", low=0, high=1),
        Param("squared", BOOL, True, "true: square rectangles (width = height in pixels).",
              random=False),
        Param("fill_mode", ENUM, "constant", "constant: fill with cval; gaussian: noise "
              "around mid-grey.", choices=("constant", "gaussian"), random=False),
        Param("cval", NUMBER, 128, "Fill value 0-255 for fill_mode: constant (imgaug's "
              "default is 128).", low=0, high=255),
        Param("fill_per_channel", BOOL, False, "gaussian: independent noise per channel "
              "(coloured).", random=False),
    ),
    example="- cutout: {nb_iterations: [1, 3], size: 0.2, fill_mode: gaussian}",
    sample=_sample_cutout,
    apply=_apply_cutout,
))


# --- random_erasing ----------------------------------------------------------------------

def _erase_value(value):
    """A grey level, or an [r, g, b] list (the recipe checked lengths and bounds)."""
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else value


def _sample_random_erasing(draw, rng, shape):
    """torchvision's RandomErasing.get_params: ten attempts, else nothing is erased."""
    if not rng.random() < draw("p"):
        return None
    value = _erase_value(draw("value"))
    given = draw("ratio")  # one number, or [lo, hi] with 0 < lo <= hi (checked by the recipe)
    ratio = list(given) if isinstance(given, (list, tuple)) else [given, given]
    height, width = shape[:2]
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        erase_area = area * draw("scale")
        aspect = math.exp(rng.uniform(log_low, log_high))  # height / width
        h = round(math.sqrt(erase_area * aspect))
        w = round(math.sqrt(erase_area / aspect))
        if not (h < height and w < width):
            continue
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        return {"x": x, "y": y, "width": w, "height": h, "value": value,
                "random_fill": draw("random_fill"), "seed": op_seed(rng)}
    return None


def _apply_random_erasing(image, params):
    x, y, w, h = params["x"], params["y"], params["width"], params["height"]
    top = max_value(image.dtype)

    def erase(colour):
        out = colour.copy()
        window = out[y:y + h, x:x + w]
        if params["random_fill"]:
            rng = np.random.default_rng(params["seed"])
            window[...] = rng.integers(0, top, window.shape, dtype=out.dtype, endpoint=True)
            return out
        value = np.asarray(params["value"], dtype=np.float64)
        if out.ndim == 2 and value.size == 3:
            value = np.dot(value, (0.2989, 0.587, 0.114))  # a colour on a grey image: its luma
        window[...] = to_dtype(value * top / 255, out.dtype)
        return out

    return on_colour(image, erase)


register(Op(
    name="random_erasing",
    summary="torchvision's RandomErasing: with probability p, erase one rectangle of random "
            "area and aspect ratio.",
    params=(
        Param("p", PROBABILITY, 0.5, "Probability of erasing.", low=0, high=1),
        Param("scale", NUMBER, [0.02, 0.33], "Area as a fraction of the image's, drawn "
              "uniformly per attempt.", low=0, high=1),
        Param("ratio", NUMBER_OR_LIST, [0.3, 3.3], "Aspect ratio (height / width, as "
              "torchvision) as [lo, hi], drawn log-uniformly; one number fixes it.",
              low=0.01, high=100, lengths=(2,), ordered=True),
        Param("value", NUMBER_OR_LIST, 0, "Fill: a grey level 0-255 or an [r, g, b] colour.",
              low=0, high=255, lengths=(3,)),
        Param("random_fill", BOOL, False, "true: fill with uniform random noise per pixel and "
              "channel instead (torchvision's value='random').", random=False),
    ),
    example="- random_erasing: {p: 0.5, scale: [0.02, 0.2], random_fill: true}",
    sample=_sample_random_erasing,
    apply=_apply_random_erasing,
    aliases=("erasing", "random_erase"),
))


# --- salt_and_pepper ---------------------------------------------------------------------

_LEVELS = 65536  # masks compare 16-bit random integers: p to within 1/65536


def _apply_salt_and_pepper(image, params):
    p = params["p"]
    if p <= 0:
        return image
    height, width = image.shape[:2]
    colour = colour_channels(image)
    per_channel = params["per_channel"] and colour > 1
    draws = np.random.default_rng(params["seed"]).integers(
        0, _LEVELS, (height, width, colour) if per_channel else (height, width),
        dtype=np.uint16)
    hit = min(round(p * _LEVELS), _LEVELS)
    pepper, salt = draws < hit // 2, (draws >= hit // 2) & (draws < hit)

    def sprinkle(c):
        out = c.copy()
        out[pepper] = 0  # a 2-D mask on H x W x 3 sets whole pixels
        out[salt] = max_value(c.dtype)
        return out

    return on_colour(image, sprinkle)


register(Op(
    name="salt_and_pepper",
    summary="Replace a fraction p of pixels by black or white, with equal chance.",
    params=(
        Param("p", PROBABILITY, [0, 0.03], "Fraction of pixels replaced.", low=0, high=1),
        Param("per_channel", BOOL, False, "Replace channels independently (coloured "
              "speckles).", random=False),
    ),
    example="- salt_and_pepper: {p: [0.01, 0.05]}",
    sample=lambda draw, rng, shape: {"p": draw("p"), "per_channel": draw("per_channel"),
                                     "seed": op_seed(rng)},
    apply=_apply_salt_and_pepper,
))


# --- gaussian_noise ----------------------------------------------------------------------

def _apply_gaussian_noise(image, params):
    scale = params["scale"] * unit_step(image)
    if scale <= 0:
        return image
    rng = np.random.default_rng(params["seed"])

    def noisy(colour):
        per_channel = params["per_channel"] and colour.ndim == 3
        noise = rng.standard_normal(colour.shape if per_channel else colour.shape[:2],
                                    dtype=np.float32) * np.float32(scale)
        if colour.ndim == 3 and not per_channel:
            noise = noise[..., None]
        return to_dtype(colour + noise, colour.dtype)

    return on_colour(image, noisy)


register(Op(
    name="gaussian_noise",
    summary="Add Gaussian noise (imgaug's AdditiveGaussianNoise with loc 0).",
    params=(
        Param("scale", NUMBER, [0, 15], "Standard deviation in 0-255 units.", low=0, high=255),
        Param("per_channel", BOOL, False, "Independent noise per channel (coloured); false: "
              "the same for all channels of a pixel.", random=False),
    ),
    example="- gaussian_noise: {scale: [5, 20], per_channel: true}",
    sample=lambda draw, rng, shape: {"scale": draw("scale"),
                                     "per_channel": draw("per_channel"), "seed": op_seed(rng)},
    apply=_apply_gaussian_noise,
    aliases=("additive_gaussian_noise", "gauss_noise"),
))


# --- motion_blur -------------------------------------------------------------------------

def motion_kernel(k: int, angle: float, direction: float) -> np.ndarray:
    """imgaug's MotionBlur kernel: a vertical line, weighted by direction, rotated by angle."""
    start = (float(np.clip(direction, -1.0, 1.0)) + 1.0) / 2.0
    line = np.zeros((k, k), dtype=np.float32)
    line[:, k // 2] = np.linspace(start, 1.0 - start, num=k)
    # imgaug rotates an 8-bit picture of the line with its Affine (bilinear, black border).
    picture = (line * 255).astype(np.uint8)
    rotated = geometry.warp(picture, geometry.affine_matrix(picture.shape, rotate=angle))
    kernel = rotated.astype(np.float32) / 255.0
    total = kernel.sum()
    return kernel / total if total > 0 else np.zeros_like(kernel)


def _apply_motion_blur(image, params):
    kernel = motion_kernel(params["k"], params["angle"], params["direction"])
    if not kernel.any():
        return image
    return on_colour(image, lambda colour: cv2.filter2D(colour, -1, kernel))


def _sample_motion_blur(draw, rng, shape):
    k = draw("k")
    return {"k": k if k % 2 else k + 1, "angle": draw("angle"), "direction": draw("direction")}


register(Op(
    name="motion_blur",
    summary="imgaug's MotionBlur: blur along a line of k pixels at an angle.",
    params=(
        Param("k", INT, [3, 7], "Kernel size in pixels (even sizes become the next odd one).",
              low=3, high=101),
        Param("angle", NUMBER, [0, 360], "Angle of the motion in degrees, clockwise; 0 is "
              "vertical, as in imgaug.", low=-360, high=360),
        Param("direction", NUMBER, [-1, 1], "Weighting along the line: 0 even, -1 / 1 "
              "strongest at one end (a streak that fades).", low=-1, high=1),
    ),
    example="- motion_blur: {k: [5, 11], angle: [-45, 45]}",
    sample=_sample_motion_blur,
    apply=_apply_motion_blur,
))


# --- sharpen -----------------------------------------------------------------------------

def sharpen_kernel(alpha: float, lightness: float) -> np.ndarray:
    """imgaug's Sharpen kernel: identity blended by alpha with a Laplacian-style kernel."""
    identity = np.zeros((3, 3), dtype=np.float32)
    identity[1, 1] = 1.0
    effect = np.full((3, 3), -1.0, dtype=np.float32)
    effect[1, 1] = 8.0 + lightness
    return ((1.0 - alpha) * identity + alpha * effect).astype(np.float32)


register(Op(
    name="sharpen",
    summary="imgaug's Sharpen: blend the image with a sharpened copy by alpha.",
    params=(
        Param("alpha", NUMBER, [0, 0.2], "Blend: 0 unchanged, 1 fully sharpened.",
              low=0, high=1),
        Param("lightness", NUMBER, [0.8, 1.2], "Brightness of the sharpened copy (1 keeps "
              "it).", low=0, high=10),
    ),
    example="- sharpen: {alpha: [0.2, 0.5], lightness: 1.0}",
    apply=lambda image, params: on_colour(image, lambda colour: cv2.filter2D(
        colour, -1, sharpen_kernel(params["alpha"], params["lightness"]))),
))


# --- jpeg ----------------------------------------------------------------------------------

def jpeg_roundtrip(colour: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` with Pillow and decode again (in memory).

    The same encoder as imgaug's JpegCompression. 16-bit grey goes through 8
    bits, as JPEG has no more.
    """
    from PIL import Image

    wide = colour.dtype != np.uint8
    eight = to_dtype(colour / 257.0, np.uint8) if wide else colour
    buffer = io.BytesIO()
    Image.fromarray(eight).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded.convert("L" if eight.ndim == 2 else "RGB"))
    return out.astype(np.uint16) * 257 if wide else out


register(Op(
    name="jpeg",
    summary="JPEG compression artefacts: encode and decode at a random quality.",
    params=(Param("quality", INT, [50, 95], "JPEG quality 1-100 (lower: more artefacts). "
                  "imgaug's JpegCompression(compression=c) is quality "
                  "round(1 + 99 * (1 - c / 101)): c = 70 is 31.",
                  low=1, high=100),),
    example="- jpeg: {quality: [20, 80]}",
    apply=lambda image, params: on_colour(image,
                                           lambda colour: jpeg_roundtrip(colour,
                                                                         params["quality"])),
    aliases=("jpeg_compression", "image_compression"),
))
