"""Contact sheet of a recipe's outputs for one image, to check a recipe before a long run.

The samples are the very outputs ``augcli run`` would write for that image
(same planning, same seeds, same rendering), so what you see is what you get.
With annotations in the recipe, each tile also shows what ``run`` would
write, in a colour per label (or class id): boxes as thin rectangles with the
label, polygons and oriented boxes as their outlines, RLE masks and mask
images as the outlines of their pixels, keypoints as dots joined by their
skeleton (COCO's) over their object's outline, so a person sees that they
follow the pixels.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from . import datasets, imagefiles
from .annotations import AnnotationSource
from .errors import ImageReadError, UsageError
from .formats import AnnotationError
from .ops.multi import donor_ops
from .pipeline import apply_steps_to_labels, carry_through
from .pixels import to_uint8
from .plan import plan_run
from .recipe import Recipe
from .render import Distinct, DuplicateOutput, render, source_outputs
from .targets.boxes import ImageBoxes
from .targets.keypoints import Keypoints
from .targets.masks import decode_labels, donor_labels, fill_for
from .targets.oriented import OrientedBox
from .targets.polygons import Polygon
from .targets.rle import RleMask

TILE_WIDTH = 256
HALO = (16, 16, 16)  # under every outline and label: they show on paint of their colour
LABEL_HEIGHT = 22
COLUMNS = 4
BACKGROUND = 40
BOX_COLOURS = ((255, 64, 64), (64, 220, 64), (64, 160, 255), (255, 210, 0), (255, 64, 255),
               (0, 230, 230), (255, 140, 0), (170, 110, 255))  # RGB, one per label in turn


def relative_to_input(recipe: Recipe, image_path: Path) -> Path:
    """The path ``run`` would know the image by: relative to the input folder (a dataset's
    root) if inside it."""
    root = _input_root(recipe)
    if root is not None:
        try:
            return image_path.resolve().relative_to(root.resolve())
        except ValueError:
            pass
    return Path(image_path.name)


def _input_root(recipe: Recipe) -> Path | None:
    """The folder ``run`` reads: a dataset's root, else the recipe's input folder."""
    return _annotations(recipe)[2]


def _input_folder(recipe: Recipe) -> Path | None:
    """The recipe's input when it is a folder; None for none or an object-store URL
    (the image to preview is a local file: known by its name)."""
    return recipe.input if isinstance(recipe.input, Path) else None


def pick_outputs(recipe: Recipe, relative: Path, variant: str | None, count: int,
                 outputs=None) -> list:
    """Up to ``count`` augmented outputs: one variant's in order, or all variants in turn.
    ``outputs``: the source's outputs as planned (default: ``source_outputs``)."""
    if outputs is None:
        outputs = source_outputs(recipe, relative)
    outputs = [o for o in outputs if o.variant is not None]
    if variant is not None:
        known = [v.name for v in recipe.variants]
        if variant not in known:
            raise UsageError(f"no variant '{variant}' in the recipe; it has {', '.join(known)}")
        return [o for o in outputs if o.variant == variant][:count]
    per_variant = [[o for o in outputs if o.variant == v.name] for v in recipe.variants]
    interleaved = [o for group in _zip_longest(per_variant) for o in group]
    return interleaved[:count]


def _zip_longest(groups):
    for i in range(max(len(g) for g in groups)):
        yield [g[i] for g in groups if i < len(g)]


def make_preview(recipe: Recipe, image_path, variant=None, count=8, output="preview.png") -> Path:
    """Write a labelled grid (the original first, then the samples) as a PNG; return its path."""
    image_path, output = Path(image_path), Path(output)
    _refuse_writing_into_sources(recipe, image_path, output)
    if not image_path.is_file():  # the user's typo, not a file lost during a run
        raise UsageError(f"{image_path}: no such image file")
    try:
        image = imagefiles.read_image(image_path)
    except ImageReadError as exc:
        raise UsageError(str(exc)) from None
    relative = relative_to_input(recipe, image_path)
    source, skeletons = _source_boxes(recipe, relative, image_path)
    boxes, labels = source.boxes, _label_map(source)
    planned = _Planned.of(recipe, relative)
    tiles = [(_as_rgb(image), "original", _Drawn(boxes, labels, skeletons))]
    picked = pick_outputs(recipe, relative, variant, count, planned.outputs)
    drawn = _drawn(image, relative, picked, planned)
    spec = _annotations(recipe)[0] if boxes or labels is not None else None
    for plan in picked:
        augmented, steps, name = drawn[plan.relative]
        kept, moved = (), None
        if spec is not None:
            kept, _ = carry_through(boxes, steps, image.shape, augmented.shape,
                                    planned.donor_targets, spec.min_visibility)
        if spec is not None and labels is not None:
            moved = apply_steps_to_labels(labels, steps, fill_for(labels, spec.mask_fill),
                                          planned.donor_labels(spec.mask_fill))
        tiles.append((_as_rgb(augmented), _printable(name), _Drawn(kept, moved, skeletons)))
    ids = sorted(int(v) for v in np.unique(labels) if v) if labels is not None else []
    seen = sorted({target.label for _, _, shown in tiles for target in shown.targets})
    colours = {label: BOX_COLOURS[i % len(BOX_COLOURS)] for i, label in enumerate([*seen, *ids])}
    imagefiles.write_atomic(output, imagefiles.encode(_sheet(tiles, colours), "png", 95))
    return output


class _Drawn:
    """What a tile shows over its pixels: targets, a label map (or None), and skeletons
    (label -> index pairs)."""

    def __init__(self, targets, labels, skeletons):
        self.targets, self.labels, self.skeletons = targets, labels, skeletons

    def __bool__(self) -> bool:
        return bool(self.targets) or self.labels is not None


def _label_map(source: ImageBoxes) -> np.ndarray | None:
    """The image's label map (mask images), or None without one."""
    if source.mask is None:
        return None
    spec, key = source.mask
    try:
        return decode_labels(spec.open().read(key), (source.width, source.height))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{key}: {exc}") from None


class _Planned:
    """The image's outputs as ``run`` plans them, and its donors: planned by ``plan_run``
    itself when the recipe takes donors (they come from the image's split, drawn from
    each output's seed), else only its outputs (no input to list)."""

    def __init__(self, outputs, donor=None, donor_targets=None):
        self.outputs, self.donor, self.donor_targets = outputs, donor, donor_targets

    @classmethod
    def of(cls, recipe: Recipe, relative: Path) -> _Planned:
        takers = sorted(set().union(*(donor_ops(v.ops) for v in recipe.variants)))
        if not takers:
            return cls(source_outputs(recipe, relative))
        if recipe.input is None:
            raise UsageError(f"{', '.join(takers)} take donors from the image's split: give "
                             "the recipe the input the image belongs to")
        plan = plan_run(recipe)
        source = next((s for s in plan.sources if s.relative == relative.as_posix()), None)
        if source is None:
            raise UsageError(f"{', '.join(takers)} take donors from the image's split: "
                             f"preview an image of the recipe's input {plan.input_dir} "
                             f"({relative.as_posix()} is not one of its sources)")
        task = plan.task(source)
        return cls(task.outputs, functools.cache(plan.input().read_image), task.donor_targets)

    def donor_labels(self, fill: int):
        """name -> a donor's label map (``fill`` everywhere without one), as run reads it;
        None without donors."""
        if self.donor is None or self.donor_targets is None:
            return None
        donor, targets = self.donor, self.donor_targets

        def read(name: str) -> np.ndarray:
            try:
                return donor_labels(targets(name).mask, donor(name).shape, fill)
            except (OSError, ValueError) as exc:
                raise UsageError(f"{name}: its mask: {exc}") from None

        return read


def _drawn(image: np.ndarray, relative: Path, picked, planned: _Planned) -> dict:
    """relative -> (pixels, steps, label) of the picked outputs, drawn as ``run`` draws
    them: in plan order, each apart from the source and the outputs before it, with the
    same donors. An output ``run`` would not write (a duplicate) is shown as its first
    draw, so marked."""
    wanted = {plan.relative for plan in picked}
    distinct = Distinct(image, relative.as_posix())
    drawn: dict = {}
    donor, targets = planned.donor, planned.donor_targets
    for output in planned.outputs:
        if wanted <= drawn.keys():
            break
        if output.variant is None:
            continue
        name = Path(output.relative).stem
        try:
            pixels, steps, _, _ = distinct.draw(image, output, donor, targets)
        except DuplicateOutput:
            (pixels, steps), name = render(image, output, donor=donor,
                                           donor_targets=targets), f"{name} (duplicate)"
        drawn[output.relative] = (pixels, steps, name)
    return drawn


def _annotations(recipe: Recipe):
    """(AnnotationSpec or None, Layout, input root) as ``run`` reads the recipe's input."""
    folder = _input_folder(recipe)
    dataset = datasets.open_dataset(folder, recipe.splits)
    if dataset is not None:
        return (*dataset.annotations(recipe.annotations), dataset.root)
    return recipe.annotations, None, folder


def _refuse_writing_into_sources(recipe: Recipe, image_path: Path, output: Path) -> None:
    """The contact sheet must never replace the image, nor land among the sources."""
    if output.resolve() == image_path.resolve() or \
            output.exists() and image_path.exists() and output.samefile(image_path):
        raise UsageError(f"--output {output} is the image itself; write the sheet elsewhere")
    root = _input_root(recipe)
    if root is not None and root.resolve() in output.resolve().parents:
        raise UsageError(f"--output {output} is inside the input folder {root}: the "
                         "sheet would become a source of the next run; write it elsewhere")


def _source_boxes(recipe: Recipe, relative: Path, image_path: Path) -> tuple:
    """(the image's ``ImageBoxes`` as ``run`` reads them, empty without annotations in the
    recipe; the keypoints' skeletons by label)."""
    spec, layout, root = _annotations(recipe)
    if spec is None:
        return ImageBoxes(0, 0), {}
    # an image outside the input folder is known by its name: its labels are beside it
    inside = root is not None and root.resolve() in image_path.resolve().parents
    input_dir = root if inside else image_path.parent
    try:
        source = AnnotationSource(spec, input_dir, layout)
        return source.read(relative.as_posix(), image_path), source.skeletons()
    except (AnnotationError, ImageReadError) as exc:
        raise UsageError(str(exc)) from None


def _printable(label: str) -> str:
    """A label OpenCV can draw: bytes of a file name that is not UTF-8 become U+FFFD."""
    return label.encode("utf-8", "replace").decode("utf-8")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """8-bit RGB for display: grey is repeated, alpha is composited on a checkerboard."""
    image = to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] in (2, 4):
        colour = image[..., :-1].astype(np.float32)
        if colour.shape[2] == 1:
            colour = np.repeat(colour, 3, axis=2)
        alpha = image[..., -1:].astype(np.float32) / 255
        rows, cols = np.ogrid[:image.shape[0], :image.shape[1]]
        checker = np.where(((rows // 8 + cols // 8) % 2)[..., None] == 0, 200.0, 150.0)
        return np.round(colour * alpha + checker * (1 - alpha)).astype(np.uint8)
    return image


def _draw_boxes(tile: np.ndarray, drawn: _Drawn, scale: tuple, colours: dict) -> None:
    """Each target's outline with its label, and the label map's outlines, in place;
    ``scale``: (x, y) image -> tile. Everything is drawn twice: a dark halo under all of
    it first, then each outline in its label's colour, so outlines show on any pixels
    (paint of their own colour included) and no halo covers another's line."""
    height, width = tile.shape[:2]
    for halo in (True, False):
        def ink(colour, halo=halo):
            return (HALO, 3) if halo else (colour, 1)
        if drawn.labels is not None:
            for class_id in np.unique(drawn.labels).tolist():
                if class_id == 0:  # the background, as Roboflow's maps have it: its outline
                    continue  # is every object's
                _draw_pixels(tile, drawn.labels == class_id,
                             ink(colours.get(class_id, BOX_COLOURS[0])))
        for box in drawn.targets:
            colour = ink(colours.get(box.label, BOX_COLOURS[0]))  # (colour, thickness)
            left = min(width - 1, int(np.floor(box.x0 * scale[0])))
            top = min(height - 1, int(np.floor(box.y0 * scale[1])))
            _draw_target(tile, box, scale, colour, drawn.skeletons.get(box.label, ()))
            cv2.putText(tile, box.label[:20], (left + 2, min(height - 2, top + 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.33, colour[0], colour[1], cv2.LINE_AA)


def _draw_target(tile: np.ndarray, target, scale: tuple, ink: tuple, skeleton=()) -> None:
    """One target's outline, in place: a polygon's rings, an oriented box's corners, an RLE
    mask's pixels, keypoints over their object's outline, else the box. ``ink``: (colour,
    line thickness)."""
    colour, thickness = ink
    height, width = tile.shape[:2]
    if isinstance(target, Keypoints):
        _draw_target(tile, target.shape, scale, ink)
        points = np.asarray(target.points, np.float64).reshape(-1, 3)
        at = [(round(x * scale[0]), round(y * scale[1])) if v > 0 else None
              for x, y, v in points.tolist()]
        for a, b in skeleton:
            if 0 <= a < len(at) and 0 <= b < len(at) and at[a] and at[b]:
                cv2.line(tile, at[a], at[b], colour, thickness, cv2.LINE_AA)
        for point in filter(None, at):
            cv2.circle(tile, point, 1 + thickness, colour, -1, cv2.LINE_AA)
    elif isinstance(target, (Polygon, OrientedBox)):
        rings = target.rings if isinstance(target, Polygon) else (target.corners,)
        for ring in rings:
            points = np.asarray(ring, np.float64).reshape(-1, 2) * scale
            cv2.polylines(tile, [np.round(points).astype(np.int32)], True, colour, thickness,
                          cv2.LINE_AA)
    elif isinstance(target, RleMask):
        _draw_pixels(tile, target.mask(), ink)
    else:
        left = min(width - 1, int(np.floor(target.x0 * scale[0])))
        top = min(height - 1, int(np.floor(target.y0 * scale[1])))
        right = max(left, min(width, int(np.ceil(target.x1 * scale[0]))) - 1)
        bottom = max(top, min(height, int(np.ceil(target.y1 * scale[1]))) - 1)
        cv2.rectangle(tile, (left, top), (right, bottom), colour, thickness)


def _draw_pixels(tile: np.ndarray, mask: np.ndarray, ink: tuple) -> None:
    """The outline of a mask's pixels (scaled to the tile), in place; ``ink``: (colour,
    line thickness)."""
    scaled = cv2.resize(mask.astype(np.uint8), tile.shape[1::-1],
                        interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(scaled, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    colour, thickness = ink
    cv2.drawContours(tile, contours, -1, colour, thickness, cv2.LINE_AA)


def _sheet(tiles, colours=None) -> np.ndarray:
    """Tiles scaled to a common width, with labels (and boxes), in rows of COLUMNS."""
    scaled = []
    for image, label, boxes in tiles:
        height = max(1, round(image.shape[0] * TILE_WIDTH / image.shape[1]))
        interpolation = cv2.INTER_AREA if image.shape[1] > TILE_WIDTH else cv2.INTER_LINEAR
        tile = cv2.resize(image, (TILE_WIDTH, height), interpolation=interpolation)
        if boxes:
            tile = np.ascontiguousarray(tile)
            _draw_boxes(tile, boxes, (TILE_WIDTH / image.shape[1], height / image.shape[0]),
                        colours or {})
        scaled.append((tile, label))
    tile_height = max(image.shape[0] for image, _ in scaled) + LABEL_HEIGHT
    rows = -(-len(scaled) // COLUMNS)
    columns = min(COLUMNS, len(scaled))
    sheet = np.full((rows * tile_height, columns * TILE_WIDTH, 3), BACKGROUND, np.uint8)
    for i, (image, label) in enumerate(scaled):
        top, left = (i // COLUMNS) * tile_height, (i % COLUMNS) * TILE_WIDTH
        cv2.putText(sheet, label[:34], (left + 4, top + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (235, 235, 235), 1, cv2.LINE_AA)
        sheet[top + LABEL_HEIGHT: top + LABEL_HEIGHT + image.shape[0], left: left + TILE_WIDTH] \
            = image
    return sheet
