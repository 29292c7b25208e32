"""The op catalog: recipe name -> parameters, docs, sampling and application.

Adding an op is one ``_register(Op(...))`` call. An op has

* ``matrix(params, size)`` only: geometric and fusable. It returns a forward
  3x3 matrix; runs of such steps are composed and resampled once (see
  ``geometry``), and the same matrix carries boxes and keypoints;
* ``apply(image, params)``: it makes the pixels itself (blur, noise, or a
  resize that wants area averaging). With a ``matrix`` too, it is still
  geometric for boxes, but it ends a fused run;
* ``output_shape(params, size)`` when it changes the image size (crop,
  resize, pad), so later steps sample and apply against the new size;
* ``refuses_boxes``: set when the op moves pixels but no matrix describes it
  (elastic); recipes with annotations refuse it. Ops without a matrix that
  leave ``refuses_boxes`` empty move no pixels, so boxes stay where they are.

Randomness happens only in ``sample``, which turns the recipe's distributions
into plain numbers (torchvision v2's make_params / transform split). The
numbers go into the manifest, so every output can be traced and replayed.

There is one registry, ``CATALOG``. This module defines ``Op``, the shared
helpers and the first ops; ``ops_geometry``, ``ops_colour`` and ``ops_pixel``
register the rest when this module is imported (see the end of the file).

Image layouts every op handles: H x W grey (uint8 or uint16), H x W x 2
(grey + alpha), H x W x 3 RGB and H x W x 4 RGBA. Pixel ops change the colour
channels only; alpha is always kept as it was. Colour-only ops (saturation,
hue, grayscale) leave grey images unchanged. Intensities given in 0-255 units
(noise scale, shifts, fill values of erasing ops) are scaled by 257 on 16-bit
images, so a recipe means the same on both.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import geometry
from .params import BOOL, ENUM, NUMBER, NUMBER_OR_LIST, PROBABILITY, Param
from .pixels import on_colour

FILL_PARAMS = (
    Param("fill", ENUM, "constant", "How to fill pixels that come from outside the image: "
          "constant (cval), edge (repeat border), reflect (dcb|abcd), symmetric (cba|abcd), wrap.",
          choices=geometry.FILL_MODES, random=False),
    Param("cval", NUMBER, 0, "Fill value 0-255 for fill: constant.", low=0, high=255),
)


@dataclass(frozen=True)
class Op:
    name: str
    summary: str
    params: tuple
    example: str
    sample: Callable | None = None  # (draw, rng, (h, w)) -> params dict, or None to skip
    matrix: Callable | None = None  # geometric: (params, (h, w)) -> 3x3 forward matrix
    apply: Callable | None = None  # makes its own pixels: (image, params) -> image
    output_shape: Callable | None = None  # (params, (h, w)) -> (h, w) when the size changes
    aliases: tuple = ()
    refused: dict = field(default_factory=dict)  # keys users bring from elsewhere -> why not
    # Moves pixels in a way no 3x3 matrix describes: why boxes cannot follow it. A recipe
    # with annotations refuses such an op rather than write boxes that are off.
    refuses_boxes: str = ""

    @property
    def geometric(self) -> bool:
        return self.matrix is not None

    @property
    def fusable(self) -> bool:
        """Pixels come from the composed warp: the step joins a run of geometric steps."""
        return self.matrix is not None and self.apply is None

    def size_after(self, params, size: tuple) -> tuple:
        """(height, width) of the image after this step."""
        return tuple(self.output_shape(params, size)) if self.output_shape else size

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def sample_params(self, draw, rng, shape):
        if self.sample is not None:
            return self.sample(draw, rng, shape)
        return {p.name: draw(p.name) for p in self.params}


CATALOG: dict[str, Op] = {}
ALIASES: dict[str, str] = {}


def _register(op: Op) -> None:
    CATALOG[op.name] = op
    for alias in op.aliases:
        ALIASES[alias] = op.name


def lookup(name: str) -> Op | None:
    """Find an op by name or alias."""
    return CATALOG.get(ALIASES.get(name, name))


def closest_names(name: str, candidates) -> list:
    return difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)


def all_names() -> list:
    return sorted([*CATALOG, *ALIASES])


# --- shared sampling helpers -------------------------------------------------

def _with_probability(draw, rng, params=None):
    """Fire with probability p: exactly ``rng.random() < p`` (p=0 never, p=1 always)."""
    return dict(params or {}) if rng.random() < draw("p") else None


def _fill(draw) -> dict:
    return {"fill": draw("fill"), "cval": draw("cval")}


def _fill_params(where: str) -> tuple:
    """FILL_PARAMS with docs saying where this op's fill shows."""
    fill, cval = FILL_PARAMS
    return (
        Param("fill", ENUM, fill.default, f"{where}: constant (cval), edge (repeat border), "
              "reflect (dcb|abcd), symmetric (cba|abcd), wrap.", choices=fill.choices,
              random=False),
        Param("cval", NUMBER, cval.default, cval.doc, low=cval.low, high=cval.high),
    )


def _seed(rng) -> int:
    """A seed for an op's own noise (masks, fields), recorded so the output can be replayed."""
    return int(rng.integers(2**31))


# --- shared pixel helpers ------------------------------------------------------

# --- geometric ops -----------------------------------------------------------

_register(Op(
    name="fliplr",
    summary="Mirror left-right with probability p.",
    params=(Param("p", PROBABILITY, 0.5, "Probability of flipping.", low=0, high=1),),
    example="- fliplr: {p: 0.5}",
    sample=lambda draw, rng, shape: _with_probability(draw, rng),
    matrix=lambda params, shape: geometry.flip_matrix(shape, horizontal=True),
    aliases=("hflip", "horizontal_flip"),
))

_register(Op(
    name="flipud",
    summary="Mirror top-bottom with probability p.",
    params=(Param("p", PROBABILITY, 0.5, "Probability of flipping.", low=0, high=1),),
    example="- flipud: {p: 0.5}",
    sample=lambda draw, rng, shape: _with_probability(draw, rng),
    matrix=lambda params, shape: geometry.flip_matrix(shape, horizontal=False),
    aliases=("vflip", "vertical_flip"),
))

_register(Op(
    name="rotate",
    summary="Rotate about the centre by an angle in degrees (positive = clockwise); size is kept.",
    params=(
        Param("degrees", NUMBER, 15, "Angle in degrees; a bare d means [-d, d].",
              low=-360, high=360, symmetric=True),
        *FILL_PARAMS,
    ),
    example="- rotate: {degrees: [-20, 20], fill: reflect}",
    sample=lambda draw, rng, shape: {"degrees": draw("degrees"), **_fill(draw)},
    matrix=lambda params, shape: geometry.affine_matrix(shape, rotate=params["degrees"]),
))


def _translate_matrix(params, shape):
    height, width = shape[:2]
    return geometry.translation(params["x"] * width, params["y"] * height)


_register(Op(
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
    sample=lambda draw, rng, shape: {"x": draw("x"), "y": draw("y"), **_fill(draw)},
    matrix=_translate_matrix,
    aliases=("shift",),
))

_register(Op(
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
    sample=lambda draw, rng, shape: {"x": draw("x"), "y": draw("y"), **_fill(draw)},
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
        **_fill(draw),
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


_register(Op(
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


# --- pixel ops ---------------------------------------------------------------

def _sample_dropout(draw, rng, shape):
    return {"p": draw("p"), "per_channel": draw("per_channel"),
            "mask_seed": int(rng.integers(2**31))}


_DROPOUT_LEVELS = 65536  # the mask compares 16-bit random integers: p to within 1/65536


def _apply_dropout(image: np.ndarray, params) -> np.ndarray:
    """Set a random fraction p of pixels to 0 (alpha is left alone).

    The mask is drawn as 16-bit integers and applied in one OpenCV pass (a
    masked copy, or a multiply per channel): several times faster than float
    draws and boolean indexing at 640x480.
    """
    p = params["p"]
    if p <= 0:
        return image
    mask_rng = np.random.default_rng(params["mask_seed"])
    threshold = min(round(p * _DROPOUT_LEVELS), _DROPOUT_LEVELS)

    def drop(colour):
        per_channel = params["per_channel"] and colour.ndim == 3
        mask_shape = colour.shape if per_channel else colour.shape[:2]
        keep = mask_rng.integers(0, _DROPOUT_LEVELS, mask_shape, dtype=np.uint16) >= threshold
        if per_channel:
            return cv2.multiply(colour, keep.astype(colour.dtype))
        return cv2.bitwise_and(colour, colour, mask=keep.view(np.uint8))

    return on_colour(image, drop)


_register(Op(
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


def _apply_gaussian_blur(image, params):
    from . import engine

    return engine.gaussian_blur(image, params["sigma"])


_register(Op(
    name="gaussian_blur",
    summary="Gaussian blur with standard deviation sigma in pixels (imgaug's GaussianBlur).",
    params=(Param("sigma", NUMBER, [0, 1.0], "Blur sigma in pixels (0 = no blur).",
                  low=0, high=50),),
    example="- gaussian_blur: {sigma: [0, 1.5]}",
    apply=_apply_gaussian_blur,
    aliases=("blur",),
))


# --- docs ----------------------------------------------------------------------

def _default_text(param: Param) -> str:
    return str(param.default).lower() if isinstance(param.default, bool) else str(param.default)


def catalog_listing() -> str:
    """One block per op: name, aliases, summary and a line per parameter."""
    blocks = []
    for name in sorted(CATALOG):
        op = CATALOG[name]
        aliases = f" (also: {', '.join(op.aliases)})" if op.aliases else ""
        lines = [f"{name}{aliases}: {op.summary}"]
        lines += [f"    {p.name} = {_default_text(p)}  [{p.describe_type()}]" for p in op.params]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def op_help(name: str) -> str | None:
    """Full help for one op (by name or alias), or None if there is no such op."""
    op = lookup(name)
    if op is None:
        return None
    if op.fusable:
        kind = "geometric (moves pixels; composed with neighbouring geometric ops)"
    elif op.geometric:
        kind = "geometric (moves pixels; resamples on its own, boxes follow its matrix)"
    elif op.refuses_boxes:
        kind = "geometric (moves pixels with no matrix: refused in recipes with annotations)"
    else:
        kind = "pixel (boxes stay where they are)"
    if op.output_shape is not None:
        kind += "; changes the image size"
    lines = [f"{op.name}: {op.summary}", f"kind: {kind}"]
    if op.aliases:
        lines.append(f"aliases: {', '.join(op.aliases)}")
    lines.append("parameters:")
    for param in op.params:
        lines.append(f"  {param.name} (default {_default_text(param)})")
        lines.append(f"      {param.doc}")
        lines.append(f"      accepts: {param.describe_type()}")
    lines.append("Numbers also take [lo, hi] (uniform), {choice: [...]} or {sweep: [...]}.")
    if any(param.kind == NUMBER_OR_LIST for param in op.params):
        lines.append("A list given to a 'number or list' parameter is one value (a pair, a "
                     "size, a colour), not a range.")
    lines += ["example:", f"  {op.example}"]
    return "\n".join(lines)


# The rest of the catalog registers itself into CATALOG on import.
from . import keras_dialect, ops_colour, ops_geometry, ops_pixel  # noqa: F401

_register(Op(
    name="keras",
    summary="Keras ImageDataGenerator augmentation kwargs, verbatim, with Keras' meaning.",
    params=keras_dialect.PARAMS,
    example="- keras: {rotation_range: 20, width_shift_range: 0.1, zoom_range: 0.2, "
            "horizontal_flip: true}",
    sample=keras_dialect.sample,
    apply=keras_dialect.apply,
    matrix=keras_dialect.matrix,
    aliases=("image_data_generator",),
    refused=keras_dialect.NOT_AUGMENTATIONS,
))
