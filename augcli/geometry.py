"""Affine geometry on OpenCV: matrices, composition and one warp per run of ops.

Conventions (the same as imgaug's ``Affine``, so recipes mean what imgaug
users expect):

* coordinates are pixel centres; rotation, shear and scale pivot on the image
  centre ``((w - 1) / 2, (h - 1) / 2)``;
* positive rotation turns the picture clockwise as displayed (y points down);
* positive x-shear moves the bottom of the picture to the left, positive y-shear
  moves its right side down, as imgaug does;
* translation is in pixels here; ops convert fractions of the size to pixels;
* within one ``affine`` step the order is imgaug's: y-shear, scale, x-shear,
  rotate, translate (imgaug shears along y first, then applies the rest).

Matrices are 3x3 float64 forward maps (source pixel -> output pixel). A run of
consecutive geometric steps multiplies into one matrix and is resampled once:
faster than warping per step, and sharper (one interpolation, not several).
"""

from __future__ import annotations

import math
import re

import cv2
import numpy as np

from .errors import UsageError
from .pixels import to_dtype

FILL_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")

_BORDER = {
    "constant": cv2.BORDER_CONSTANT,
    "edge": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,  # dcb|abcd|cba, numpy's and imgaug's "reflect"
    "symmetric": cv2.BORDER_REFLECT,  # cba|abcd|dcb, Keras' and scipy's "reflect"
    "wrap": cv2.BORDER_WRAP,
}


def identity() -> np.ndarray:
    return np.eye(3)


def translation(tx: float, ty: float) -> np.ndarray:
    matrix = np.eye(3)
    matrix[0, 2] = tx
    matrix[1, 2] = ty
    return matrix


def about_centre(linear: np.ndarray, shape) -> np.ndarray:
    """Conjugate a transform so that it pivots on the image centre."""
    height, width = shape[:2]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return translation(cx, cy) @ linear @ translation(-cx, -cy)


def affine_matrix(shape, rotate=0.0, shear_x=0.0, shear_y=0.0, scale_x=1.0, scale_y=1.0,
                  translate_x=0.0, translate_y=0.0) -> np.ndarray:
    """Forward matrix for y-shear -> scale -> x-shear -> rotate -> translate about the centre.

    Angles in degrees, translation in pixels. The order is imgaug's
    ``Affine``: it shears along y on its own first (a turned x-shear) and then
    applies scale, x-shear, rotation and translation as one skimage
    ``AffineTransform``. With both shears non-zero the two do not commute:
    ``shear_x @ shear_y`` has ``1 - tan(x) tan(y)`` in its corner.
    """
    theta = math.radians(rotate)
    cos, sin = math.cos(theta), math.sin(theta)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    x_shear = np.array([[1.0, -math.tan(math.radians(shear_x)), 0.0], [0.0, 1.0, 0.0],
                        [0.0, 0.0, 1.0]])
    y_shear = np.array([[1.0, 0.0, 0.0], [math.tan(math.radians(shear_y)), 1.0, 0.0],
                        [0.0, 0.0, 1.0]])
    scale = np.diag([scale_x, scale_y, 1.0])
    linear = translation(translate_x, translate_y) @ rotation @ x_shear @ scale @ y_shear
    return about_centre(linear, shape)


def flip_matrix(shape, horizontal: bool) -> np.ndarray:
    """Mirror: x -> (w - 1) - x, or y -> (h - 1) - y. Exact on the pixel grid."""
    height, width = shape[:2]
    matrix = np.eye(3)
    if horizontal:
        matrix[0, 0], matrix[0, 2] = -1.0, width - 1.0
    else:
        matrix[1, 1], matrix[1, 2] = -1.0, height - 1.0
    return matrix


def _as_exact_flip(matrix: np.ndarray, shape):
    """Return the cv2.flip code if the matrix is identity or a pure mirror, else None.

    Identity -> "identity"; such matrices need no resampling at all. Compared as
    plain floats with ``np.allclose``'s test (atol 1e-9): its NumPy calls cost more
    than the flip they spare, on every output.
    """
    values = matrix.ravel().tolist()
    # nearly every matrix (any rotation, shear or scale) fails on its 2x2 part
    for value in (values[0], values[1], values[3], values[4]):
        if not math.isfinite(value) or not _close(value, round(value)):
            return None
    right, bottom = shape[1] - 1.0, shape[0] - 1.0  # flip_matrix's translations
    candidates = {
        "identity": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        1: (-1.0, 0.0, right, 0.0, 1.0, 0.0),
        0: (1.0, 0.0, 0.0, 0.0, -1.0, bottom),
        -1: (-1.0, 0.0, right, 0.0, -1.0, bottom),
    }
    if not all(_close(a, b) for a, b in zip(values[6:], (0.0, 0.0, 1.0))):
        return None
    for code, candidate in candidates.items():
        if all(_close(a, b) for a, b in zip(values[:6], candidate)):
            return code
    return None


def _close(value: float, target: float) -> bool:
    """``np.isclose(value, target, atol=1e-9)`` for two finite floats."""
    return abs(value - target) <= 1e-9 + 1e-5 * abs(target)


def _border_value(cval, channels: int):
    values = list(cval) if isinstance(cval, (tuple, list)) else [cval]
    if len(values) == 1:
        values = values * channels
    # OpenCV takes up to four values; pad so the tuple is always valid.
    return tuple(float(v) for v in (values + [0.0] * 4)[:4])


def with_spare_channel(image: np.ndarray) -> np.ndarray | None:
    """A 3-channel image with a fourth channel, as ``warp`` resamples it; None for other
    layouts. Made once per source, it spares each output's warp the copy."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2RGBA) if _channels(image) == 3 else None


def warp(image: np.ndarray, matrix: np.ndarray, fill: str = "constant", cval=0,
         size=None, padded: np.ndarray | None = None) -> np.ndarray:
    """Resample ``image`` through a forward matrix into ``size`` (h, w; default: its own).

    ``padded``: ``with_spare_channel(image)``, when the caller keeps it."""
    height, width = size if size is not None else image.shape[:2]
    if (height, width) == image.shape[:2]:
        code = _as_exact_flip(matrix, image.shape)
        if code == "identity":
            return image
        if code is not None:
            return cv2.flip(image, code)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 3:
        # OpenCV's 4-channel warp is about twice as fast as its 3-channel one and gives
        # the same values per channel: warp with a spare channel, then drop it.
        if padded is None:
            padded = with_spare_channel(image)
        return cv2.cvtColor(_warp_affine(padded, matrix, (width, height), fill, cval, 3),
                            cv2.COLOR_RGBA2RGB)
    return _warp_affine(image, matrix, (width, height), fill, cval, channels)


def _warp_affine(image, matrix, size, fill, cval, channels) -> np.ndarray:
    return cv2.warpAffine(image, matrix[:2], size, flags=cv2.INTER_LINEAR,
                          borderMode=_BORDER[fill], borderValue=_border_value(cval, channels))


def edge_matrix(matrix: np.ndarray) -> np.ndarray:
    """The same map for pixel-edge coordinates, where boxes live.

    Matrices here map pixel centres: pixel column j is the point x = j. In
    edge coordinates that pixel spans [j, j + 1), so its centre is j + 0.5:
    centre = edge - 0.5. Hence edge' = M (edge - 0.5) + 0.5, i.e.
    T(0.5) @ M @ T(-0.5). A flip then maps the edge x to w - x (not w - 1 - x)
    and a resize scales edges by exactly w'/w.
    """
    return translation(0.5, 0.5) @ matrix @ translation(-0.5, -0.5)


# --- helpers for ops that resample on their own (resize, pad, perspective, remap) ------

def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


def resize_matrix(src_size, dst_size) -> np.ndarray:
    """Forward matrix of a resize from (h, w) to (h', w'), as ``cv2.resize`` maps pixels.

    Pixel centres are aligned the way OpenCV (and PIL, torchvision) resize:
    ``x' = (x + 0.5) * w' / w - 0.5``, so boxes follow the resized pixels.
    """
    height, width = src_size[:2]
    new_height, new_width = dst_size[:2]
    sx, sy = new_width / width, new_height / height
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def rot90_matrix(shape, k: int) -> np.ndarray:
    """Forward matrix of ``k`` clockwise quarter turns of an image of ``shape`` (exact)."""
    height, width = shape[:2]
    k %= 4
    if k == 1:
        return np.array([[0.0, -1.0, height - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    if k == 2:
        return np.array([[-1.0, 0.0, width - 1.0], [0.0, -1.0, height - 1.0], [0.0, 0.0, 1.0]])
    if k == 3:
        return np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, width - 1.0], [0.0, 0.0, 1.0]])
    return np.eye(3)


def rot90(image: np.ndarray, k: int) -> np.ndarray:
    """Rotate by ``k`` clockwise quarter turns, exactly (no resampling)."""
    k %= 4
    if k == 0:
        return image
    codes = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}
    if _channels(image) <= 4:
        turned = cv2.rotate(np.ascontiguousarray(image), codes[k])
        return turned.reshape(turned.shape[:2] + image.shape[2:])
    return np.ascontiguousarray(np.rot90(image, -k, axes=(0, 1)))


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to ``width`` x ``height``: area averaging when no side grows, else bilinear."""
    old_height, old_width = image.shape[:2]
    if (old_height, old_width) == (height, width):
        return image
    shrinking = width <= old_width and height <= old_height
    return cv2.resize(np.ascontiguousarray(image), (int(width), int(height)),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def pad(image: np.ndarray, top: int, bottom: int, left: int, right: int,
        fill: str = "constant", cval=0) -> np.ndarray:
    """Add rows/columns on each side, filled as ``fill`` says (exact, any pad size)."""
    height, width = image.shape[:2]
    size = (height + top + bottom, width + left + right)
    return warp(image, translation(left, top), fill, cval, size=size)


def letterbox_layout(shape, box_width: int, box_height: int, upscale: bool = True) -> tuple:
    """(new_width, new_height, left, top): the image resized to fit the box, aspect kept,
    centred (odd leftovers go right and below)."""
    height, width = shape[:2]
    factor = min(box_width / width, box_height / height)
    if not upscale:
        factor = min(factor, 1.0)
    new_width = min(box_width, max(1, round(width * factor)))
    new_height = min(box_height, max(1, round(height * factor)))
    return new_width, new_height, (box_width - new_width) // 2, (box_height - new_height) // 2


def letterbox(image: np.ndarray, box_width: int, box_height: int, upscale: bool = True,
              fill: str = "constant", cval=0) -> np.ndarray:
    """Fit inside the box keeping the aspect ratio, centred on bars filled as ``fill`` says."""
    new_width, new_height, left, top = letterbox_layout(image.shape, box_width, box_height,
                                                        upscale)
    resized = resize(image, new_width, new_height)
    return pad(resized, top, box_height - new_height - top, left, box_width - new_width - left,
               fill, cval)


def fit_aspect(image: np.ndarray, max_ratio: float, mode: str = "pad",
               fill: str = "constant", cval=0) -> tuple:
    """Bring long side / short side within ``max_ratio``: pad the short side (``fill``,
    ``cval``) or crop the long side, centred (odd leftovers go right and below).

    Returns (image, forward matrix, what was done): ``{"pad": [left, top, right,
    bottom]}`` or ``{"crop": [x, y, width, height]}``; an image already within the
    limit comes back as it is, with None.
    """
    height, width = image.shape[:2]
    long_side, short_side = max(height, width), min(height, width)
    if long_side / short_side <= max_ratio:  # as ``augcli check`` measures it
        return image, identity(), None
    wide = width >= height
    if mode == "pad":
        extra = math.ceil(long_side / max_ratio) - short_side
        before, after = extra // 2, extra - extra // 2
        left, top, right, bottom = (0, before, 0, after) if wide else (before, 0, after, 0)
        return (pad(image, top, bottom, left, right, fill, cval), translation(left, top),
                {"pad": [left, top, right, bottom]})
    kept = max(1, math.floor(short_side * max_ratio))
    start = (long_side - kept) // 2
    x, y, w, h = (start, 0, kept, height) if wide else (0, start, width, kept)
    return (np.ascontiguousarray(image[y:y + h, x:x + w]), translation(-x, -y),
            {"crop": [x, y, w, h]})


def warp_perspective(image: np.ndarray, matrix: np.ndarray, fill: str = "constant", cval=0,
                     size=None) -> np.ndarray:
    """Resample through a forward 3x3 homography into ``size`` (h, w; default: its own)."""
    height, width = size if size is not None else image.shape[:2]
    return cv2.warpPerspective(
        np.ascontiguousarray(image), matrix, (int(width), int(height)),
        flags=cv2.INTER_LINEAR, borderMode=_BORDER[fill],
        borderValue=_border_value(cval, _channels(image)))


def remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, fill: str = "constant",
          cval=0) -> np.ndarray:
    """Output pixel (y, x) = input at (map_y, map_x), bilinear.

    The maps go in as float32 (OpenCV rejects float64 maps, and on NumPy 2
    imgaug 0.4 builds float64 ones, so its ElasticTransformation fails) and
    become OpenCV's fixed-point maps (1/32 pixel), as in imgaug and as
    warpAffine works inside: the same pixels as imgaug's remap.
    """
    map1: np.ndarray = map_x.astype(np.float32, copy=False)
    map2: np.ndarray = map_y.astype(np.float32, copy=False)
    if max(image.shape[:2]) < 32767:  # fixed-point maps hold 16-bit coordinates
        map1, map2 = cv2.convertMaps(map1, map2, cv2.CV_16SC2)
    return cv2.remap(
        np.ascontiguousarray(image), map1, map2, interpolation=cv2.INTER_LINEAR,
        borderMode=_BORDER[fill], borderValue=_border_value(cval, _channels(image)))


# --- scipy.ndimage's boundary modes (the Keras dialect) ----------------------------------

NDIMAGE_MODES = ("constant", "nearest", "reflect", "wrap")


def _ndimage_wrap(coords: np.ndarray, length: int) -> np.ndarray:
    """scipy.ndimage's ``wrap`` for one axis: the period is ``length - 1``.

    scipy (and so Keras) wraps so that the first and the last pixel sit on
    the same point: a coordinate past the last pixel continues from between
    the first two, not from the first. OpenCV's (and numpy's) wrap has period
    ``length``. Folded the way scipy's C code folds it.
    """
    if length <= 1:
        return np.zeros_like(coords)
    period = length - 1
    folded = coords.copy()
    low, high = coords < 0, coords > period
    folded[low] += period * (np.trunc(-coords[low] / period) + 1)
    folded[high] -= period * np.trunc(coords[high] / period)
    return folded


def _source_points(inverse: np.ndarray, height: int, width: int):
    """(x, y) in the input of every output pixel, in float64, for an output->input map."""
    cols = np.arange(width, dtype=np.float64)[None, :]
    rows = np.arange(height, dtype=np.float64)[:, None]
    return (inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2],
            inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2])


def warp_ndimage(image: np.ndarray, inverse: np.ndarray, mode: str = "constant",
                 cval=0) -> np.ndarray:
    """``scipy.ndimage.affine_transform(order=1)``'s pixels on OpenCV: output pixel (x, y)
    takes the input at ``inverse @ (x, y, 1)``, with scipy's boundary ``mode``.

    ``nearest`` repeats the edge and ``reflect`` is ``cba|abcd|dcb``, as
    OpenCV's replicate and reflect borders. ``constant`` does not blend the
    edge with ``cval`` as OpenCV's constant border does: a point outside
    [0, w - 1] x [0, h - 1] is ``cval``, one inside comes from the image
    alone. ``wrap`` has scipy's period ``w - 1`` (see ``_ndimage_wrap``).
    On OpenCV 5 the bilinear weights are exact, as scipy's: the same values
    up to rounding to the dtype. OpenCV versions that interpolate with
    1/32-pixel weights stay within a level on photographs (up to 4 levels on
    pixel-sized noise).
    """
    height, width = image.shape[:2]
    if mode == "wrap":
        src_x, src_y = _source_points(inverse, height, width)
        out = cv2.remap(np.ascontiguousarray(image),
                        _ndimage_wrap(src_x, width).astype(np.float32),
                        _ndimage_wrap(src_y, height).astype(np.float32),
                        interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out.reshape(image.shape)
    border = cv2.BORDER_REFLECT if mode == "reflect" else cv2.BORDER_REPLICATE
    out = cv2.warpAffine(np.ascontiguousarray(image), inverse[:2], (width, height),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)
    out = out.reshape(image.shape)
    if mode == "constant":
        src_x, src_y = _source_points(inverse, height, width)
        outside = (src_x < 0) | (src_x > width - 1) | (src_y < 0) | (src_y > height - 1)
        out[outside] = to_dtype(np.asarray(cval, dtype=np.float64), out.dtype)
    return out


def project_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 matrix with the projective divide (homographies too)."""
    homogeneous = _homogeneous(matrix, points)
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def project_in_view(matrix: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """``project_points``, or None when a point maps to infinity or behind the view of a
    homography (what a target then drops)."""
    homogeneous = _homogeneous(matrix, points)
    if not np.all(homogeneous[:, 2] > 1e-12):
        return None
    projected = homogeneous[:, :2] / homogeneous[:, 2:3]
    return projected if np.all(np.isfinite(projected)) else None


def _homogeneous(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.hstack([points, np.ones((len(points), 1))]) @ matrix.T


def warp_nearest(image: np.ndarray, matrix: np.ndarray, size, cval=0) -> np.ndarray:
    """Resample labels (a mask, class ids) through a forward 3x3 map of pixel centres into
    ``size`` (h, w) with nearest neighbour, so no two ids blend; outside: ``cval``."""
    height, width = size
    code = _as_exact_flip(matrix, image.shape) if (height, width) == image.shape[:2] else None
    if code is not None:
        return image if code == "identity" else cv2.flip(image, code)
    return cv2.warpPerspective(np.ascontiguousarray(image), matrix, (int(width), int(height)),
                               flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=cval)


def parse_size(text: str) -> tuple[int, int]:
    """'64x48' -> (64, 48): width first, as people say it; '224' is a square."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match or min(int(match[1]), int(match[2] or match[1])) < 1:
        raise UsageError(f"--size expects WIDTHxHEIGHT with both >= 1, like 64x48, or one "
                         f"number for a square (got {text!r})")
    return int(match[1]), int(match[2] or match[1])
