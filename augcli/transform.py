"""The same recipe at training time: an in-memory transform.

``load_transform(recipe)`` returns a ``Transform``: called on one image (a
NumPy array or a PIL image) it samples and applies one of the recipe's
variants, exactly as ``augcli run`` renders an output (``render.render``:
``pipeline.sample_steps`` then ``pipeline.apply_steps``), and carries boxes,
polygons and keypoints with the same matrix ``run`` uses for annotation files,
and masks through the same steps as its mask images. Given the seed that
``run`` derives for an output (``output_seed``), it returns that output's
pixels.

Without a seed, a call draws one from the transform's own generator (seeded
once, like ``torch.Generator``; never NumPy's global state), so a result can
always be replayed with ``transform(image, seed=result.seed)``. The object
pickles (DataLoader workers, multiprocessing), and may be called from several
threads at once: only the draw of the per-call seed is locked.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from . import imagefiles
from . import ops as catalog
from .errors import UsageError
from .ops.combinators import OpNode, children
from .ops.multi import donor_ops
from .pipeline import apply_steps_to_labels, carry_through
from .recipe import Recipe, load_recipe
from .render import OutputPlan, derive_seed, render
from .targets.boxes import DEFAULT_MIN_VISIBILITY, Box, ImageBoxes
from .targets.keypoints import Keypoints
from .targets.masks import fill_for
from .targets.polygons import Polygon

__all__ = ["Transform", "TransformResult", "load_transform", "output_seed"]

_CHOICE_STREAM = 0x7661726E  # keys the generator that picks a variant and a sweep value


def output_seed(recipe_seed: int, relative_path, variant: str, index: int) -> int:
    """The seed ``augcli run`` gives one output: (recipe seed, the source's path relative
    to the input folder, the variant's name, the 1-based output index).

    ``transform(image, seed=output_seed(...))`` on a transform of that variant
    returns the pixels ``run`` writes for that output (before encoding).
    """
    if not isinstance(relative_path, (str, PurePath)) or not isinstance(variant, str):
        raise TypeError(f"expected a relative path (str or Path) and a variant name (str), got "
                        f"{relative_path!r} and {variant!r}")
    relative = relative_path.as_posix() if isinstance(relative_path, PurePath) \
        else relative_path
    return derive_seed(_whole(recipe_seed, "recipe_seed", 0), relative, variant,
                       _whole(index, "index", 1, " (run's output index)"))


@dataclass(frozen=True)
class TransformResult:
    """What one call made: the image (the type it was given), the boxes, and what was drawn.

    ``params``: the sampled steps, as ``run`` records them in the manifest
    (``[{op: {param: value}}, ...]``). ``boxes``: None without boxes; an
    ``(M, 4)`` float array for an ``(N, 4)`` input, with ``kept`` the indices
    (into the input, then on into each donor's boxes in turn) of the M boxes
    still visible; a tuple of ``Box`` for ``Box`` input. ``seed`` replays the
    call: ``transform(image, seed=seed)``.
    ``polygons``, ``keypoints``, ``masks``: the other targets, in the kind
    they were given (see ``Transform.__call__``); ``kept_polygons``: the
    indices of the polygons kept (the image's, then each donor's), for
    polygons given as arrays.
    """

    image: object
    boxes: object
    params: list
    variant: str
    index: int
    seed: int
    kept: np.ndarray | None = None
    polygons: object = None
    keypoints: object = None
    masks: object = None
    kept_polygons: np.ndarray | None = None


class Transform:
    """A recipe as a callable: ``transform(image, boxes=None, seed=None, index=None)``.

    Make one with ``load_transform``. ``variant`` (None: one of the recipe's
    variants per call, uniformly, as ``one_of`` picks) and ``min_visibility``
    (share of a box that must stay visible) are fixed per object.
    """

    def __init__(self, recipe: Recipe, variant: str | None = None, seed: int | None = None,
                 min_visibility: float | None = None):
        names = [v.name for v in recipe.variants]
        if variant is not None and variant not in names:
            raise UsageError(f"no variant '{variant}' in the recipe; it has {', '.join(names)}")
        chosen = [v for v in recipe.variants if variant is None or v.name == variant]
        if min_visibility is None:
            min_visibility = recipe.annotations.min_visibility if recipe.annotations \
                else DEFAULT_MIN_VISIBILITY
        if not 0 <= min_visibility <= 1:
            raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility!r}")
        self.recipe = recipe
        self.variant = variant
        self.min_visibility = float(min_visibility)
        # Per variant: its name, one op tree per output index (as run expands it), and
        # whether the trees differ (sweeps) or are copies of one.
        self._choices = tuple((v.name, tuple(v.expand()), v.outputs_per_source != v.copies)
                              for v in chosen)
        self._refuses_boxes = {v.name: _refuses_boxes(v.ops) for v in chosen}
        self._lock = threading.Lock()
        self.manual_seed(seed)

    # -- the generator ------------------------------------------------------------------

    def manual_seed(self, seed: int | None = None) -> Transform:
        """Reseed the transform's own generator (None: fresh entropy); returns self.

        In DataLoader workers call it from ``worker_init_fn`` (e.g. with
        ``torch.initial_seed() % 2**63``) for distinct, reproducible streams.
        A copy used in another process without it draws a stream of its own
        (mixed with its process id), never a repeat of its parent's.
        """
        if seed is not None:
            seed = _whole(seed, "seed", 0, " or None")
        with self._lock:
            self._entropy = np.random.SeedSequence(seed).entropy
            self._rng = np.random.default_rng(np.random.SeedSequence(self._entropy))
            self._pid = os.getpid()
        return self

    def _next_seed(self) -> int:
        with self._lock:
            pid = os.getpid()
            if pid != self._pid:  # a copy in a worker process: its own stream
                self._rng = np.random.default_rng(
                    np.random.SeedSequence(self._entropy, spawn_key=(pid,)))
                self._pid = pid
            return int(self._rng.integers(2**63))

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self):
        which = self.variant or "|".join(name for name, _, _ in self._choices)
        return f"<augcli Transform {which}>"

    # -- one call -----------------------------------------------------------------------

    def __call__(self, image, boxes=None, *, polygons=None, keypoints=None, masks=None,
                 donors=None, seed: int | None = None,
                 index: int | None = None) -> TransformResult:
        """Augment one image (and its boxes, polygons, keypoints and masks).

        ``image``: H x W or H x W x C (C = 1 to 4) ``uint8``/``uint16`` array, or
        a PIL image (given back as one). ``boxes``: an ``(N, 4)`` array of
        ``x0, y0, x1, y1`` pixel edges (the image spans ``[0, W] x [0, H]``),
        or a sequence of ``augcli.targets.boxes.Box``. ``seed``: the output's
        seed (e.g. ``output_seed(...)``); None draws one. ``index``: the
        1-based output index, which picks the value of a ``sweep`` as ``run``
        does; None draws one.

        ``polygons``: ``augcli.targets.polygons.Polygon``\\ s (given back as the
        kept ones, clipped to the image), or one ``(N, 2)`` array of x, y pixel
        edges per polygon (given back as a list, per kept polygon, of its rings:
        a polygon cut by the border may become several; ``kept_polygons`` says
        which). ``keypoints``: ``augcli.targets.keypoints.Keypoints`` (given back
        as the kept objects), or an ``(N, K, 2 or 3)`` array of N objects' K
        points ``x, y[, v]`` (given back as ``(N, K, 3)``: a point that leaves
        the image is ``0, 0, 0``; a mirroring step reorders them by the
        recipe's ``annotations.flip_idx``). ``masks``: a label map ``(H, W)``
        (``uint8``, ``uint16`` or ``bool``), or a sequence of them, moved with
        nearest neighbour as ``run`` moves mask images (``mask_fill`` from the
        recipe where the image is filled; 0 for ``bool`` masks).

        ``donors``: ``[(image, boxes), ...]``, the other images a ``mosaic``,
        ``cutmix`` or ``mixup`` step takes, handed to the steps in order (as
        ``run`` hands each step the next of the output's donors: the ``donors``
        of its steps in the manifest's ``ops``); each donor's boxes come as its
        own ``boxes`` do (``[]`` for none). A donor may instead be ``(image,
        targets)``, ``targets`` a dict with the keyword names this call takes
        (``{"boxes": ..., "polygons": ..., "keypoints": ..., "masks": ...}``),
        each given as the image's is; every kind the image has, each donor needs
        (``[]`` for none; its label map(s) for ``masks``). The donors' objects
        come back after the image's (``kept`` and ``kept_polygons`` index on into
        each donor's; keypoints as an array are ``(N + donors' N, K, 3)``). With
        ``run``'s seed and donors it gives ``run``'s pixels and targets, by the
        same placement; a step that finds too few donors, or a kind its op does
        not carry (``augcli ops``: cutmix carries no keypoints, mixup no label
        maps), raises a ValueError naming it.
        """
        pixels, restore = _as_array(image)
        if 0 in pixels.shape[:2]:
            raise ValueError(f"expected an image of at least 1 x 1 pixels, got shape "
                             f"{pixels.shape}")
        seed = self._next_seed() if seed is None else _whole(seed, "seed", 0)
        if index is not None:
            index = _whole(index, "index", 1, " (run's output index)")
        name, index, tree = self._pick(seed, index)
        targets = {"boxes": boxes, "polygons": polygons, "keypoints": keypoints,
                   "masks": masks}
        given = next((kind for kind, value in targets.items() if value is not None), None)
        if given is not None and self._refuses_boxes[name]:
            op, reason = self._refuses_boxes[name]
            raise ValueError(f"variant '{name}' uses {op}, which {given} cannot follow: "
                             f"{reason}")
        _refuse_uncarried(name, tree, targets)
        donor_images, theirs = _donor_inputs(donors, targets)
        output, steps = render(pixels, OutputPlan("", name, index, int(seed), tree,
                                                  tuple(range(len(donor_images)))),
                               donor=donor_images.__getitem__)
        through = _Through(steps, pixels.shape, output.shape, donor_images)
        kept_boxes, kept = _carry_boxes(boxes, through, self.min_visibility, theirs["boxes"])
        kept_polygons, polygon_indices = _carry_polygons(polygons, through, self.min_visibility,
                                                         theirs["polygons"])
        annotations = self.recipe.annotations
        flip = annotations.flip_idx or () if annotations is not None else ()
        return TransformResult(restore(output), kept_boxes, [step.as_record() for step in steps],
                               name, index, int(seed), kept, kept_polygons,
                               _carry_keypoints(keypoints, through, self.min_visibility, flip,
                                                theirs["keypoints"]),
                               _carry_masks(masks, through,
                                            annotations.mask_fill if annotations else 0,
                                            theirs["masks"]),
                               polygon_indices)

    def _pick(self, seed: int, index: int | None) -> tuple:
        """(variant name, output index, op tree): drawn from their own stream of ``seed``,
        so the pixels come from ``seed`` itself, as in ``run``."""
        choices = self._choices
        side = np.random.default_rng([seed, _CHOICE_STREAM]) \
            if len(choices) > 1 or (index is None and choices[0][2]) else None
        name, trees, sweeps = choices[int(side.integers(len(choices)))] \
            if side is not None and len(choices) > 1 else choices[0]
        if index is None:
            index = 1 + int(side.integers(len(trees))) if side is not None and sweeps else 1
        return name, int(index), trees[(index - 1) % len(trees)]


def load_transform(recipe, variant: str | None = None, *, seed: int | None = None,
                   min_visibility: float | None = None) -> Transform:
    """A recipe (a path or a ``Recipe``) as an in-memory transform for training loops.

    ``variant``: use only that variant (None: one per call, uniformly).
    ``seed``: seeds the transform's own generator (None: fresh entropy).
    ``min_visibility``: boxes keeping less of their area are dropped (default:
    the recipe's ``annotations.min_visibility``, else 0.3).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    return Transform(recipe, variant, seed, min_visibility)


# --- helpers -------------------------------------------------------------------------------

def _whole(value, name: str, low: int, alternative: str = "") -> int:
    """``value`` as an int when it is a whole number (Python's or NumPy's, never a bool, a
    float or a string) of at least ``low``; else a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{alternative}, got {value!r}")
    return int(value)


def _refuses_boxes(nodes):
    """(op name, reason) of the first op in the tree that boxes cannot follow, or None."""
    for node in nodes:
        if isinstance(node, OpNode):
            reason = catalog.CATALOG[node.op].refuses_boxes
            if reason:
                return node.op, reason
            continue
        found = _refuses_boxes(children(node))
        if found:
            return found
    return None


def _as_array(image):
    """(pixels as augcli's ops take them, a function that gives a result back in kind)."""
    if type(image).__module__.startswith("PIL."):
        from PIL import Image

        return imagefiles.pil_to_array(image), Image.fromarray
    pixels = np.asarray(image)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"expected a uint8 or uint16 image, got dtype {pixels.dtype}; "
                        "augment before converting to float")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        return pixels[:, :, 0], lambda result: result[:, :, None]
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] <= 4):
        return pixels, lambda result: result
    hint = "; channels first? use image.transpose(1, 2, 0)" \
        if pixels.ndim == 3 and pixels.shape[0] <= 4 else ""
    raise ValueError(f"expected an H x W or H x W x C image (C = 1 to 4), got shape "
                     f"{pixels.shape}{hint}")


_KINDS = ("boxes", "polygons", "keypoints", "masks")  # the targets a call and a donor take


def _donor_inputs(donors, targets: dict) -> tuple:
    """(the donors' pixels, kind -> each donor's targets of that kind) from ``[(image, boxes
    or a dict of targets), ...]``; each kind the image has, every donor needs (its objects
    would land unlabelled), and a kind the image lacks is left out."""
    theirs: dict = {kind: [] for kind in _KINDS}
    if donors is None:
        return [], theirs
    images = []
    for number, pair in enumerate(donors):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"donors must be (image, boxes) or (image, targets) pairs; donor "
                             f"{number} is a {type(pair).__name__}")
        pixels, _ = _as_array(pair[0])
        if 0 in pixels.shape[:2]:
            raise ValueError(f"donor {number} has no pixels (shape {pixels.shape})")
        given = pair[1] if isinstance(pair[1], dict) else {"boxes": pair[1]}
        unknown = sorted(set(given) - set(_KINDS))
        if unknown:
            raise ValueError(f"donor {number}'s targets take {', '.join(_KINDS)}, not "
                             f"{unknown[0]!r}")
        for kind in _KINDS:
            if targets[kind] is not None and given.get(kind) is None:
                raise ValueError(f"donor {number} has no {kind} while the image has: its "
                                 "objects would land unlabelled; give "
                                 f"{'its label map' if kind == 'masks' else '[]'} for a donor "
                                 "without any")
            theirs[kind].append(given.get(kind))
        images.append(pixels)
    return images, theirs


def _refuse_uncarried(variant: str, tree, targets: dict) -> None:
    """Each donor step carries the kinds its op declares (``DonorKernels.carries``; label maps
    where it pastes them, ``DonorKernels.labels``), as run refuses the others; copy_paste,
    which cuts polygons out of its donors, is ``run``'s alone."""
    takers = donor_ops(tree)
    if "copy_paste" in takers:
        raise ValueError(f"variant '{variant}' uses copy_paste, which the training-time "
                         "transform does not make (it cuts donors' polygons): augcli run does")
    for op in sorted(takers):
        donor = catalog.CATALOG[op].donor
        assert donor is not None  # a donor op, by donor_ops
        for kind in (kind for kind in _KINDS if targets[kind] is not None):
            if kind == "masks" and donor.labels is None:
                raise ValueError(f"variant '{variant}' uses {op}, which carries no masks (label "
                                 "maps): a blend of class ids names no class")
            if kind != "masks" and kind not in donor.carries:
                raise ValueError(f"variant '{variant}' uses {op}, which carries "
                                 f"{', '.join(donor.carries)} only, not {kind}")


@dataclass(frozen=True)
class _Through:
    """What one call did, for carrying each kind of target as run does (``carry_through``
    and ``apply_steps_to_labels``): the steps, the image's and the output's shapes, and
    the donors' pixels (donor i is named i in the steps)."""

    steps: list
    shape: tuple
    output_shape: tuple
    donor_images: list

    def carry(self, lists, min_visibility: float) -> tuple:
        """The image's targets (``lists[0]``) and each donor's (``lists[1:]``) through the
        steps, placed by the donor steps' kernels: the kept ones."""
        donors = [ImageBoxes(image.shape[1], image.shape[0], tuple(listed))
                  for image, listed in zip(self.donor_images, lists[1:], strict=True)]
        kept, _ = carry_through(tuple(lists[0]), self.steps, self.shape, self.output_shape,
                                donors.__getitem__, min_visibility)
        return kept


def _carry_boxes(boxes, through: _Through, min_visibility, donor_boxes=()):
    """Boxes through the steps (and the donors' boxes through the steps that take them), as
    run writes them: (boxes, kept indices into the image's boxes then each donor's)."""
    if boxes is None:
        return None, None
    given = [boxes, *donor_boxes]
    objects = any(len(each) and all(isinstance(box, Box) for box in each) for each in given)
    lists, start = [], 0
    for number, each in enumerate(given):
        name = "boxes" if number == 0 else f"donor {number - 1}'s boxes"
        lists.append(_box_targets(each, name, objects, start))
        start += len(lists[-1])
    kept = through.carry(lists, min_visibility)
    if objects:
        return kept, None
    coordinates = np.array([[b.x0, b.y0, b.x1, b.y1] for b in kept], np.float64).reshape(-1, 4)
    return coordinates, np.array([int(b.label) for b in kept], np.intp)


def _box_targets(boxes, name: str, objects: bool, start: int) -> tuple:
    """Boxes as ``Box`` objects: given as such (``objects``), or an (N, 4) array of x0, y0, x1,
    y1, each labelled by its index (counted from ``start``)."""
    if objects:
        if not all(isinstance(box, Box) for box in boxes):
            raise ValueError(f"{name} must be Boxes as the others are")
        _require_finite(np.array([[box.x0, box.y0, box.x1, box.y1] for box in boxes],
                                 np.float64).reshape(-1, 4))
        return tuple(boxes)
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return ()
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must be an (N, 4) array of x0, y0, x1, y1, got shape "
                         f"{array.shape}")
    _require_finite(array)
    return tuple(Box(str(start + i), *row) for i, row in enumerate(array.tolist()))


def _objects(given, kind: type, name: str) -> bool:
    """Whether the image's and donors' targets (``given``) come as ``kind`` objects, not
    arrays: then all of them must."""
    if not any(len(each) and all(isinstance(item, kind) for item in each) for each in given):
        return False
    for number, each in enumerate(given):
        if not all(isinstance(item, kind) for item in each):
            owner = name if number == 0 else f"donor {number - 1}'s {name}"
            raise ValueError(f"{owner} must be {kind.__name__} objects as the others are")
    return True


def _carry_polygons(polygons, through: _Through, min_visibility, donor_polygons=()):
    """Polygons (and the donors') through the steps, as run writes them: (polygons, kept
    indices into the image's polygons then each donor's)."""
    if polygons is None:
        return None, None
    given = [polygons, *donor_polygons]
    if _objects(given, Polygon, "polygons"):
        return through.carry(given, min_visibility), None
    lists, start = [], 0
    for number, each in enumerate(given):
        owner = "" if number == 0 else f"donor {number - 1}'s "
        indexed = []
        for item, polygon in enumerate(each):
            points = np.asarray(polygon, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
                raise ValueError(f"{owner}polygon {item} must be an (N, 2) array of x, y with "
                                 f"N >= 3, got shape {points.shape}")
            if not np.isfinite(points).all():
                raise ValueError(f"{owner}polygon {item} has a vertex that is not a finite "
                                 "number")
            indexed.append(Polygon(str(start + item), (tuple(points.ravel().tolist()),)))
        lists.append(indexed)
        start += len(indexed)
    kept = through.carry(lists, min_visibility)
    return ([[np.asarray(ring, np.float64).reshape(-1, 2) for ring in polygon.rings]
             for polygon in kept], np.array([int(polygon.label) for polygon in kept], np.intp))


def _carry_keypoints(keypoints, through: _Through, min_visibility, flip, donor_keypoints=()):
    """Keypoints (and the donors') through the steps, as run writes them: the kept
    ``Keypoints``, or for (N, K, 2 or 3) arrays every object's points, the image's then each
    donor's, (N, K, 3), 0 0 0 where they left."""
    if keypoints is None:
        return None
    given = [keypoints, *donor_keypoints]
    if _objects(given, Keypoints, "keypoints"):
        return through.carry(given, min_visibility)
    arrays: list[np.ndarray] = []
    lists: list[list] = []
    images = [through.shape, *(image.shape for image in through.donor_images)]
    for number, (each, shape) in enumerate(zip(given, images, strict=True)):
        owner = "keypoints" if number == 0 else f"donor {number - 1}'s keypoints"
        array = np.asarray(each, dtype=np.float64)
        if array.size == 0:
            lists.append([])
            continue
        if array.ndim != 3 or array.shape[2] not in (2, 3):
            raise ValueError(f"{owner} must be an (N, K, 2 or 3) array of x, y[, visibility], "
                             f"got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{owner} must be finite numbers")
        if array.shape[2] == 2:  # every point labelled and visible
            array = np.concatenate([array, np.full(array.shape[:2] + (1,), 2.0)], axis=2)
        if arrays and array.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"{owner} have {array.shape[1]} points an object, the others "
                             f"{arrays[0].shape[1]}")
        if flip and len(flip) != array.shape[1]:
            raise ValueError(f"the recipe's flip_idx has {len(flip)} indices, the {owner} "
                             f"{array.shape[1]} points")
        height, width = shape[:2]
        whole = Box("", 0.0, 0.0, float(width), float(height))  # kept whatever moves out
        start = sum(len(done) for done in arrays)
        lists.append([Keypoints(str(start + item), tuple(points.ravel().tolist()), whole,
                                tuple(flip)) for item, points in enumerate(array)])
        arrays.append(array)
    if not arrays:
        return np.zeros((0, 0, 3))
    moved = np.zeros_like(np.concatenate(arrays))
    for item in through.carry(lists, 0.0):  # every object: its points left are 0 0 0
        moved[int(item.label)] = np.asarray(item.points, np.float64).reshape(-1, 3)
    return moved


def _carry_masks(masks, through: _Through, mask_fill, donor_masks=()):
    """Label maps through the steps, as run moves mask images (a donor step pastes its
    donors' maps as it pastes their pixels): one map, or a sequence (an (N, H, W) array
    stays an array)."""
    if masks is None:
        return None
    single = isinstance(masks, np.ndarray) and masks.ndim == 2
    maps = [masks] if single else list(masks)
    theirs = []
    for number, (each, image) in enumerate(zip(donor_masks, through.donor_images,
                                               strict=True)):
        listed = [each] if single else list(each)
        if len(listed) != len(maps):
            raise ValueError(f"donor {number} has {len(listed)} masks, the image {len(maps)}")
        theirs.append([_label_map(mask, f"donor {number}'s mask {item}", image.shape)
                       for item, mask in enumerate(listed)])
    moved = []
    for number, mask in enumerate(maps):
        labels = _label_map(mask, f"mask {number}", through.shape)
        fill = 0 if labels.dtype == bool else fill_for(labels, mask_fill)
        donor_maps = [each[number].view(np.uint8) if each[number].dtype == bool else each[number]
                      for each in theirs]
        map_ = apply_steps_to_labels(labels.view(np.uint8) if labels.dtype == bool else labels,
                                     through.steps, fill, donor_labels=donor_maps.__getitem__)
        moved.append(map_.astype(bool) if labels.dtype == bool else map_)
    if single:
        return moved[0]
    return np.stack(moved) if isinstance(masks, np.ndarray) else moved


def _label_map(mask, name: str, shape) -> np.ndarray:
    """A mask as a label map of its image's size (H, W): uint8, uint16 or bool class ids."""
    labels = np.asarray(mask)
    if labels.shape != tuple(shape[:2]):
        raise ValueError(f"{name} must be its image's {shape[0]} x {shape[1]} (H, W), got "
                         f"shape {labels.shape}")
    if labels.dtype not in (np.uint8, np.uint16, bool):
        raise TypeError(f"{name} must be uint8, uint16 or bool class ids, got dtype "
                        f"{labels.dtype}")
    return labels


def _require_finite(edges: np.ndarray) -> None:
    """Refuse a box with a NaN or infinite edge: it has no place to move to."""
    bad = np.flatnonzero(~np.isfinite(edges).all(axis=1))
    if bad.size:
        raise ValueError(f"box {bad[0]} has an edge that is not a finite number: "
                         f"{edges[bad[0]].tolist()}")
