"""The op registry: ``Op``, ``CATALOG`` and the helpers every family shares.

Adding an op is one ``register(Op(name="...", ...))`` call in its family's
module (``geometric``, ``colour``, ``pixel``, ``keras``, ``imgaug``). An op has

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

There is one registry, ``CATALOG``. This module never imports a family: the
package (``augcli.ops``) imports them, in the order of its ``FAMILIES``, and
each registers its ops here.

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

from .. import geometry
from ..params import ENUM, NUMBER, Param

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
    # (args) -> whether the op may mirror the image, turning left keypoints into right ones
    mirrors: Callable = lambda args: False
    # An op with its own recipe syntax (the imgaug dialect): (body, key path, problems) ->
    # args (name -> distribution) or None; ``params`` are then not used to read it.
    parse: Callable | None = None
    details: Callable | None = None  # () -> more text for ``augcli ops NAME``
    donor: DonorKernels | None = None  # takes other images of the split (mosaic, cutmix)

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


@dataclass(frozen=True)
class DonorKernels:
    """What an op that takes donor images does, beside ``sample`` (which draws its layout as
    fractions and never looks at a donor). The sampler gives each step the next ``count``
    of the output's donors (names, in ``params["donors"]``); one placement of the pieces
    serves the pixels, the boxes and the manifest's ``donors``."""

    most: int  # the most donors one step can take: how many the plan draws per step
    count: Callable  # (params) -> donors the step takes
    compose: Callable  # (image, params, donor images) -> image
    boxes: Callable  # (params, (h, w), boxes, donor ImageBoxes list, min_visibility)
    #                  -> (kept boxes, Dropped boxes)
    record: Callable  # (params, (h, w), donor (h, w) list) -> the manifest's donors
    # The kernels also need each donor's targets (copy_paste cuts instances by their
    # polygons): compose and record then take a last argument, the donors' ImageBoxes.
    targets: bool = False
    # The target kinds (``augcli.targets.KIND_NAMES``) the op carries; a recipe whose
    # annotations hold another kind is refused before any work (never left behind).
    carries: tuple = ("boxes",)
    # (params, (h, w), donor (h, w) list) -> [(image, amount)]: how much of the output each
    # image makes (image 0 is the image itself, donors from 1): the pixel area of its tiles
    # or patch, or its weight in a blend. The soft labels of class folders come from it;
    # None: the op makes none (copy_paste, refused there).
    shares: Callable | None = None
    # (label map, params, donor label maps, fill) -> label map: mask images pasted by the
    # same pieces as the pixels (a donor without a map comes as one of ``fill``); None: the
    # op carries none (a blend of class ids names no class), refused with mask images.
    labels: Callable | None = None


CATALOG: dict[str, Op] = {}
ALIASES: dict[str, str] = {}


def register(op: Op) -> None:
    """Add ``op`` (and its aliases) to the registry."""
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

def with_probability(draw, rng, params=None):
    """Fire with probability p: exactly ``rng.random() < p`` (p=0 never, p=1 always)."""
    return dict(params or {}) if rng.random() < draw("p") else None


def fill_args(draw) -> dict:
    """The drawn ``fill`` and ``cval`` of an op that takes FILL_PARAMS (or fill_params())."""
    return {"fill": draw("fill"), "cval": draw("cval")}


def fill_params(where: str) -> tuple:
    """FILL_PARAMS with docs saying where this op's fill shows."""
    fill, cval = FILL_PARAMS
    return (
        Param("fill", ENUM, fill.default, f"{where}: constant (cval), edge (repeat border), "
              "reflect (dcb|abcd), symmetric (cba|abcd), wrap.", choices=fill.choices,
              random=False),
        Param("cval", NUMBER, cval.default, cval.doc, low=cval.low, high=cval.high),
    )


def op_seed(rng) -> int:
    """A seed for an op's own noise (masks, fields), recorded so the output can be replayed."""
    return int(rng.integers(2**31))
