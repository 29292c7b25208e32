"""Sample an op tree into concrete steps, then apply the steps to an image.

``sample_steps`` is the only place randomness is drawn for an output, from the
one generator seeded for that output. ``apply_steps`` is deterministic: the
same steps on the same image always give the same pixels. Consecutive
geometric steps that share a fill are composed into one matrix and resampled
once.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import geometry
from . import ops as catalog
from .errors import UsageError
from .imagefiles import DEFAULT_MAX_PIXELS
from .ops.combinators import OpNode
from .targets.boxes import transform_boxes


class MissingDonors(UsageError, ValueError):
    """An op that takes donor images (mosaic, cutmix, mixup) with too few to take: only a run
    over a folder or dataset draws them, from the source's split; the training-time
    transform takes them from its caller (a ValueError there, as its other bad inputs)."""


class OutputTooLarge(ValueError):
    """A step would make an image over the pixel limit inputs have too (found while
    sampling, before anything is allocated): that output fails, the run goes on."""


@dataclass(frozen=True)
class Step:
    """One op with concrete parameters: what the manifest records."""

    op: str
    params: dict

    def as_record(self) -> dict:
        return {self.op: self.params}


def sample_steps(nodes, rng: np.random.Generator, shape,
                 max_pixels: int = DEFAULT_MAX_PIXELS, donors: tuple = ()) -> list:
    """Walk the op tree, draw every random choice, and return the steps that fire.

    ``shape`` is the source image's; ops that change the size (crops, resizes)
    hand the new size to the ops after them. A step that would make an image of
    more than ``max_pixels`` raises OutputTooLarge. ``donors``: the output's donor
    names, handed in order to the steps that take donors (``params["donors"]``).
    """
    sampler = _Sampler(rng, tuple(shape[:2]), max_pixels, donors)
    sampler.visit(nodes)
    return sampler.steps


class _Sampler:
    def __init__(self, rng, size, max_pixels, donors=()):
        self.rng = rng
        self.donors = list(donors)  # not yet handed to a step
        self.given = len(self.donors)
        self.size = size  # (height, width) at this point of the pipeline
        self.max_pixels = max_pixels
        self.steps = []

    def visit(self, nodes) -> None:
        rng = self.rng
        for node in nodes:
            if isinstance(node, OpNode):
                op = catalog.CATALOG[node.op]
                params = op.sample_params(_drawer(node.args, rng), rng, self.size)
                if params is not None and op.donor is not None:
                    params["donors"] = self._take(node.op, op.donor.count(params))
                if params is not None:
                    self.steps.append(Step(node.op, params))
                    self.size = op.size_after(params, self.size)
                    self._check_size(node.op)
            else:
                self.visit(node.choose(rng))


    def _take(self, op_name: str, count: int) -> list:
        if count > len(self.donors):
            left = len(self.donors)
            raise MissingDonors(
                f"{op_name} takes {count} donor image(s) from the source's split, and "
                f"{left} of the {self.given} given {'is' if left == 1 else 'are'} left: only "
                "augcli run draws them; the training-time transform takes them as "
                "donors=[(image, boxes), ...]")
        taken, self.donors = self.donors[:count], self.donors[count:]
        return taken

    def _check_size(self, op_name: str) -> None:
        height, width = self.size
        if height * width > self.max_pixels:
            raise OutputTooLarge(f"{op_name} would make a {width} x {height} image, over the "
                                 f"limit of {self.max_pixels:,} pixels")


def _drawer(args: dict, rng):
    """A function that draws a fresh value of the named parameter on every call."""

    def draw(name):
        return _plain(args[name].sample(rng))

    return draw


def _plain(value):
    """NumPy scalars -> Python numbers, so params serialise to JSON as they read."""
    return value.item() if isinstance(value, np.generic) else value


class _Runs:
    """The run of fused geometric steps not yet resampled, as ``apply_steps`` builds it and
    ``apply_steps_to_labels`` follows it: both resample at the same steps, so a label map
    moves with exactly the warps its pixels had. ``size``: the image's size so far."""

    def __init__(self, size):
        self.size = size
        self.run = None  # (matrix, fill, size)

    def ended_by(self, op, step) -> tuple | None:
        """The run to resample before ``step`` when it cannot join it (it makes its own
        pixels, or fills in another way), else None."""
        run = self.run
        if run is not None and _ends_run(op, run[1], _fill_of(step)):
            self.run = None
            return run
        return None

    def join(self, op, step) -> None:
        """Add a geometric step's matrix to the run."""
        matrix = op.matrix(step.params, self.size)
        self.size = op.size_after(step.params, self.size)
        fill = _fill_of(step)
        self.run = (matrix, fill, self.size) if self.run is None else \
            (matrix @ self.run[0], self.run[1] or fill, self.size)

    def take(self) -> tuple | None:
        """The run left (the last one, resampled after the steps), emptied."""
        run, self.run = self.run, None
        return run


def apply_steps(image: np.ndarray, steps, padded: np.ndarray | None = None,
                donor=None, donor_targets=None) -> np.ndarray:
    """Apply sampled steps in order; runs of fusable geometric steps become one warp.

    Steps without a fill (flips: exact mirrors) join any run; a step whose
    fill differs from the run's starts a new run. ``padded``: the image with a
    spare channel (``geometry.with_spare_channel``), kept by a caller that warps
    one image many times; ``donor``: name -> image, for the steps that take donors
    (``donor_targets``: name -> ImageBoxes, for those that cut objects out of them).
    """
    source = image
    runs = _Runs(image.shape[:2])
    for step in steps:
        op = catalog.CATALOG[step.op]
        if (run := runs.ended_by(op, step)) is not None:
            image = _resample(image, run, padded if image is source else None)
        if op.fusable:
            assert op.matrix is not None  # fusable: a matrix and no apply of its own
            runs.join(op, step)
            continue
        if op.donor is not None:
            if donor is None:
                raise MissingDonors(f"{step.op} needs its donor images")
            images = [donor(n) for n in step.params["donors"]]
            if op.donor.targets:
                image = op.donor.compose(image, step.params, images,
                                         _targets_of(step, donor_targets))
            else:
                image = op.donor.compose(image, step.params, images)
        else:
            assert op.apply is not None  # not fusable, so it makes its own pixels
            image = op.apply(image, step.params)
        runs.size = image.shape[:2]
    run = runs.take()
    return image if run is None else _resample(image, run, padded if image is source else None)


def apply_steps_to_labels(labels: np.ndarray, steps, cval: int = 0,
                          donor_labels=None) -> np.ndarray:
    """Move a label map (class ids, ``augcli.targets.masks``) through sampled steps as
    ``apply_steps`` moves the pixels: in the same runs of fused geometric steps, each
    resampled once, but with nearest neighbour (no blended ids) and ``cval`` wherever the
    pixels are filled. Steps without a matrix (pixel ops) leave the map as it is; a step
    that takes donors pastes their maps as it pastes their pixels (``donor_labels``: name
    -> label map; one of ``cval`` for a donor without one)."""
    runs = _Runs(labels.shape[:2])
    for step in steps:
        op = catalog.CATALOG[step.op]
        if (run := runs.ended_by(op, step)) is not None:
            labels = geometry.warp_nearest(labels, run[0], run[2], cval)
        if op.donor is not None:
            labels = _paste_labels(op, step, labels, donor_labels, cval)
            runs.size = labels.shape[:2]
            continue
        if op.matrix is None:
            continue
        runs.join(op, step)
        if not op.fusable and (run := runs.take()) is not None:  # its own pixels: its own run
            labels = geometry.warp_nearest(labels, run[0], run[2], cval)
    run = runs.take()
    return labels if run is None else geometry.warp_nearest(labels, run[0], run[2], cval)


def _paste_labels(op, step: Step, labels: np.ndarray, donor_labels, cval: int) -> np.ndarray:
    """A donor step's label map, from the map so far and its donors' maps."""
    if op.donor.labels is None:
        raise ValueError(f"{step.op} carries no mask images: a blend of class ids names no "
                         "class")
    if donor_labels is None:
        raise MissingDonors(f"{step.op} needs its donors' label maps")
    return op.donor.labels(labels, step.params,
                           [donor_labels(name) for name in step.params["donors"]], cval)


def _fill_of(step: Step):
    """(fill, cval) of a step that fills, else None (a flip, a crop: any run may take it)."""
    return (step.params["fill"], step.params["cval"]) if "fill" in step.params else None


def _ends_run(op, run_fill, step_fill) -> bool:
    """Whether a step cannot join the geometric run before it: it makes its own pixels, or
    it fills in another way than the run does."""
    return not op.fusable or bool(run_fill and step_fill and run_fill != step_fill)


def steps_matrix(steps, shape) -> np.ndarray:
    """Forward 3x3 map (pixel centres) of the whole pipeline: where boxes and points go.

    Every geometric step counts, fused or not (a resize or quarter turn moves
    boxes as much as a rotation); pixel ops move nothing. Each matrix is built
    for the size the image has when its step runs, as ``apply_steps`` does.
    """
    matrix, size = np.eye(3), tuple(shape[:2])
    for step in steps:
        op = catalog.CATALOG[step.op]
        if op.matrix is not None:  # geometric
            matrix = op.matrix(step.params, size) @ matrix
        size = op.size_after(step.params, size)
    return matrix


def takes_donors(steps) -> bool:
    return any(catalog.CATALOG[step.op].donor is not None for step in steps)


def carry_boxes(boxes, steps, shape, donor_boxes, min_visibility: float) -> tuple:
    """Boxes through the steps up to the last that takes donors, whose tiles and patches no
    one matrix describes: (boxes, Dropped boxes, the steps left, the size after).

    The steps before each donor step move the boxes by their matrix (clipped to the
    image there); the donor step places them with its pieces, beside the boxes of its
    donors (``donor_boxes``: name -> ImageBoxes). The steps left move them as usual."""
    dropped: list = []
    start, size = 0, tuple(shape[:2])
    for index, step in enumerate(steps):
        op = catalog.CATALOG[step.op]
        if op.donor is None:
            continue
        before = steps[start:index]
        here = _size_after(before, size)
        boxes, gone = transform_boxes(boxes, steps_matrix(before, size), here, min_visibility)
        dropped += gone
        boxes, gone = op.donor.boxes(step.params, here, boxes,
                                     [donor_boxes(name) for name in step.params["donors"]],
                                     min_visibility)
        dropped += gone
        start, size = index + 1, op.size_after(step.params, here)
    return boxes, tuple(dropped), steps[start:], size


def carry_through(boxes, steps, shape, output_shape, donor_boxes, min_visibility: float,
                  after: tuple = ()) -> tuple:
    """Boxes through every step to the output of ``output_shape``: (kept, Dropped). Steps
    that take donors place them with their pieces (``carry_boxes``); the rest move them by
    their matrix, then by each of ``after`` in turn (what a profile did to the file: its
    pad or crop, its downscale)."""
    carried: tuple = ()
    if takes_donors(steps):
        boxes, carried, steps, shape = carry_boxes(boxes, steps, shape, donor_boxes,
                                                   min_visibility)
    matrix = steps_matrix(steps, shape)
    for then in after:
        matrix = then @ matrix
    kept, dropped = transform_boxes(boxes, matrix, output_shape[:2], min_visibility)
    return kept, (*carried, *dropped)


def donor_records(steps, shape, donor_shape, donor_targets=None) -> list:
    """The manifest's ``donors`` of an output: each donor's crop and place (or weight), step
    by step (``donor_shape``: name -> (h, w); ``donor_targets``: name -> ImageBoxes)."""
    records, size = [], tuple(shape[:2])
    for step in steps:
        op = catalog.CATALOG[step.op]
        if op.donor is not None:
            shapes = [donor_shape(name) for name in step.params["donors"]]
            records += op.donor.record(step.params, size, shapes,
                                       _targets_of(step, donor_targets)) \
                if op.donor.targets else op.donor.record(step.params, size, shapes)
        size = op.size_after(step.params, size)
    return records


def source_shares(steps, shape, donor_shape) -> dict:
    """What share of an output each image it was made from makes, as an exact Fraction:
    None for the source itself, a donor by its name; the shares sum to 1. Each donor step
    splits what the image had so far by its ``shares`` (tile and patch areas, blend
    weights, as the manifest's ``donors`` record them; a mosaic's fill is no one's), so
    a mosaic then a mixup weighs the mosaic's tiles by the mixup's ratio. Steps that take
    no donors change no share. ``donor_shape``: name -> (h, w)."""
    held, size = {None: Fraction(1)}, tuple(shape[:2])
    for step in steps:
        op = catalog.CATALOG[step.op]
        if op.donor is not None and op.donor.shares is not None:
            names = step.params["donors"]
            parts = op.donor.shares(step.params, size, [donor_shape(n) for n in names])
            total = sum(Fraction(amount) for _, amount in parts)
            mixed: dict = {}
            for image, amount in parts:
                share = Fraction(amount) / total
                for name, had in (held.items() if image == 0 else ((names[image - 1], 1),)):
                    mixed[name] = mixed.get(name, 0) + had * share
            held = mixed
        size = op.size_after(step.params, size)
    return held


def _targets_of(step: Step, donor_targets) -> list:
    """The ImageBoxes of a step's donors, for an op that cuts objects out of them."""
    if donor_targets is None:
        raise MissingDonors(f"{step.op} cuts objects out of its donors by their polygons: "
                            "it needs the recipe's annotations")
    return [donor_targets(name) for name in step.params["donors"]]


def _size_after(steps, size) -> tuple:
    for step in steps:
        size = catalog.CATALOG[step.op].size_after(step.params, size)
    return size


def _resample(image, run, padded=None):
    matrix, fill, size = run
    return geometry.warp(image, matrix, *(fill or ("constant", 0)), size=size, padded=padded)
