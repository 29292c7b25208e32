"""Ops that take donors: other images of the same split pasted into or blended with the
source (Ultralytics' mosaic, CutMix, MixUp), as recipe steps any op may follow.

A donor op's ``sample`` draws its layout as fractions (the mosaic's centre, where each
tile is cut from its image) and never looks at a donor, so sampling stays a function of
the output's seed and the current size. The plan draws each output's donor names from
that same seed (``donor_names``); the sampler hands each step the next ones. Every
piece is placed by one function per op (``_mosaic_pieces``, ``_cutmix_pieces``) from
the params and the images' sizes: the pixels, the boxes and the manifest's ``donors``
all come from it.

Donors are brought to the source's layout (its dtype and channels) before they are
pasted. Mask images (label maps) are pasted by the same pieces (``DonorKernels.labels``):
each tile or patch is the crop of its image's map, resized with nearest neighbour.
Copy-paste cuts instances out of its donors by their polygons, so its kernels also get
each donor's targets (``DonorKernels.targets``).
"""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from .. import geometry, pixels
from ..params import NUMBER, NUMBER_OR_LIST, Param
from ..targets.boxes import Box, Dropped, ImageBoxes, transform_boxes
from ..targets.polygons import Polygon
from ..targets.rle import RleMask
from ..tiles import compose
from .base import CATALOG, DonorKernels, Op, register
from .combinators import OpNode, children

# The target kinds a tile's crop or a stretch carries: each moves by its own ``moved``.
_CLIPPED = ("boxes", "polygons", "keypoints", "oriented boxes", "masks")
DONOR_STREAM = 0x646F6E6F72  # "donor": the output's donors come from (seed, DONOR_STREAM)
MOSAIC_FILL = 114  # Ultralytics' grey where no tile reaches


def donor_names(seed: int, count: int, pool, own: int | None) -> tuple:
    """``count`` donors of the output seeded ``seed``: drawn uniformly, with replacement,
    from ``pool`` (the names of the split's sources, in plan order) less the source
    itself at index ``own``; a source alone in its split is its own donor."""
    if not count:
        return ()
    others = len(pool) - (own is not None)
    if others <= 0:
        return (pool[own],) * count
    picks = np.random.default_rng([seed, DONOR_STREAM]).integers(others, size=count)
    return tuple(pool[int(i) + int(own is not None and i >= own)] for i in picks)


def most_donors(nodes) -> int:
    """The most donors an op tree can take for one output (every donor op firing)."""
    total = 0
    for node in nodes:
        if isinstance(node, OpNode):
            donor = CATALOG[node.op].donor
            total += donor.most if donor is not None else 0
        else:
            total += most_donors(children(node))
    return total


def donor_ops(nodes) -> set:
    """The names of the ops in an op tree that take donors."""
    names: set = set()
    for node in nodes:
        if isinstance(node, OpNode):
            names |= {node.op} if CATALOG[node.op].donor is not None else set()
        else:
            names |= donor_ops(children(node))
    return names


def match_layout(donor: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``donor`` in the dtype and channels of ``like``: 16-bit <-> 8-bit by the top byte
    (x 257 up), grey <-> RGB, an alpha channel dropped or made opaque."""
    if donor.dtype != like.dtype:
        donor = pixels.to_uint8(donor) if like.dtype == np.uint8 else \
            donor.astype(np.uint16) * np.uint16(257)
    have, want = pixels.colour_channels(donor), pixels.colour_channels(like)
    alpha_have = donor.ndim == 3 and donor.shape[2] in (2, 4)
    alpha_want = like.ndim == 3 and like.shape[2] in (2, 4)
    if (have, alpha_have) == (want, alpha_want):
        return donor
    colour = donor[..., :have] if donor.ndim == 3 else donor
    if colour.ndim == 3 and have == 1:
        colour = colour[..., 0]
    if have != want:
        colour = cv2.cvtColor(np.ascontiguousarray(colour),
                              cv2.COLOR_RGB2GRAY if want == 1 else cv2.COLOR_GRAY2RGB)
    if alpha_want:
        colour = colour if colour.ndim == 3 else colour[..., None]
        opaque = np.full(colour.shape[:2] + (1,), pixels.max_value(like.dtype), like.dtype)
        return np.concatenate([colour, opaque], axis=2)
    return colour


def _span(cell: int, image: int, fraction: float) -> tuple:
    """(offset in the image, offset in the cell, length) of one side of a tile: a crop
    at ``fraction`` of the room when the image is the longer, else the whole image
    placed at ``fraction`` of the room in the cell."""
    if image >= cell:
        return round(fraction * (image - cell)), 0, cell
    return 0, round(fraction * (cell - image)), image


def _tile(cell: tuple, shape: tuple, fraction) -> tuple:
    """(crop (x, y, w, h) in the image of ``shape`` (h, w), where it goes (x, y, w, h))."""
    x, y, width, height = cell
    cx, ox, w = _span(width, shape[1], fraction[0])
    cy, oy, h = _span(height, shape[0], fraction[1])
    return (cx, cy, w, h), (x + ox, y + oy, w, h)


def _clip_to(targets, crop: tuple, out: tuple, canvas: tuple, min_visibility: float,
             resized: np.ndarray | None = None) -> tuple:
    """Targets of an image whose ``crop`` lands at ``out`` in an output of ``canvas`` (h, w):
    clipped to the crop, then moved there (whole-pixel shifts, so every coordinate moves
    exactly; an RLE mask becomes one of the output's size). ``resized``: the matrix of a
    resize of the image before its crop."""
    x, y, width, height = out
    shift = geometry.translation(-crop[0], -crop[1])
    if resized is not None:
        shift = shift @ resized
    kept, dropped = transform_boxes(targets, shift, (height, width), min_visibility)
    placed, _ = transform_boxes(kept, geometry.translation(x, y), canvas, 0)
    return placed, dropped


def _label_layout(maps) -> np.dtype:
    """The dtype of a label map pasted from ``maps``: 16-bit when one of them is (its ids
    kept), else 8-bit."""
    return np.dtype(np.uint16 if any(m.dtype == np.uint16 for m in maps) else np.uint8)


def _donor_records(params, pieces) -> list:
    """A record per donor piece; a mosaic tile's image resized first says by how much (its
    crop is in the resized image's pixels)."""
    names = params["donors"]
    return [{"source": names[image - 1], "crop": list(crop), "output": list(out),
             **({"scale": rest[0]} if rest and rest[0] != 1 else {})}
            for image, crop, out, *rest in pieces if image]


# --- mosaic ------------------------------------------------------------------------------

def _grid(value) -> tuple:
    cols, rows = value if isinstance(value, tuple) else (value, value)
    return int(round(cols)), int(round(rows))


def _sample_mosaic(draw, rng, shape):
    cols, rows = _grid(draw("grid"))
    size = draw("size")
    width, height = size if isinstance(size, tuple) else (size, size)
    centre = [draw("center"), draw("center")]
    crops = [[float(rng.random()), float(rng.random())] for _ in range(cols * rows)]
    params = {"grid": [cols, rows], "width": int(width) or shape[1],
              "height": int(height) or shape[0], "center": centre, "crops": crops}
    scales = [draw("scale") for _ in range(cols * rows)]  # drawn last: scale 1 draws nothing
    if any(scale != 1 for scale in scales):
        params["scales"] = scales
    return params


def _cuts(count: int, centre: float, length: int) -> list:
    """Cell edges along one side: a cut at the centre (2 cells), or a middle cell a third
    of the side wide around it (3 cells)."""
    inner = [centre] if count == 2 else [centre - 1 / 6, centre + 1 / 6]
    return [0, *(min(max(round(c * length), 0), length) for c in inner), length]


def _scaled(shape: tuple, scale: float) -> tuple:
    """(h, w) of an image of ``shape`` resized by ``scale`` (at least a pixel a side)."""
    return tuple(max(1, round(side * scale)) for side in shape[:2])


def _mosaic_pieces(params, shapes) -> list:
    """(image index, crop, output box, scale) per non-empty tile; image 0 is the source (the
    top-left cell of 2 x 2, the middle one of 3 x 3), donors fill the others in order.
    ``shapes``: (h, w) of the source and of each donor; a tile's crop is in its image
    resized by its cell's scale."""
    cols, rows = params["grid"]
    xs = _cuts(cols, params["center"][0], params["width"])
    ys = _cuts(rows, params["center"][1], params["height"])
    own = (rows - 1) // 2 * cols + (cols - 1) // 2
    scales = params.get("scales") or [1] * (cols * rows)
    pieces, donor = [], 0
    for cell in range(cols * rows):
        row, col = divmod(cell, cols)
        image = 0 if cell == own else (donor := donor + 1)
        box = (xs[col], ys[row], xs[col + 1] - xs[col], ys[row + 1] - ys[row])
        if box[2] and box[3]:
            shape = _scaled(shapes[image], scales[cell])
            pieces.append((image, *_tile(box, shape, params["crops"][cell]), scales[cell]))
    return pieces


def _compose_mosaic(image, params, donors):
    images = [image, *(match_layout(donor, image) for donor in donors)]
    canvas = np.full((params["height"], params["width"]) + image.shape[2:],
                     round(MOSAIC_FILL * pixels.unit_step(image)), image.dtype)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        canvas[..., -1] = pixels.max_value(image.dtype)
    pieces = _mosaic_pieces(params, [im.shape[:2] for im in images])
    return compose((params["width"], params["height"]),
                   [(_resized(images[i], scale), crop[:2], out)
                    for i, crop, out, scale in pieces], out=canvas)


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (as ``_scaled`` says), or itself at 1."""
    if scale == 1:
        return image
    height, width = _scaled(image.shape, scale)
    return geometry.resize(image, width, height)


def _mosaic_labels(labels, params, donors, fill):
    """The mosaic of the label maps (the source's, each donor's): its pieces cut from the
    maps as ``_compose_mosaic`` cuts them from the images, resized with nearest neighbour
    (no blended ids); ``fill`` where no tile reaches."""
    maps = [labels, *donors]
    canvas = np.full((params["height"], params["width"]), fill, _label_layout(maps))
    pieces = _mosaic_pieces(params, [m.shape[:2] for m in maps])
    return compose((params["width"], params["height"]),
                   [(_nearest(maps[i], scale, fill), crop[:2], out)
                    for i, crop, out, scale in pieces], out=canvas)


def _nearest(labels: np.ndarray, scale: float, fill: int) -> np.ndarray:
    """A label map resized by ``scale`` as ``_resized`` resizes its image, with nearest
    neighbour; itself at 1."""
    if scale == 1:
        return labels
    size = _scaled(labels.shape, scale)
    return geometry.warp_nearest(labels, geometry.resize_matrix(labels.shape, size), size, fill)


def _mosaic_boxes(params, size, boxes, donors, min_visibility):
    shapes = [size, *((d.height, d.width) for d in donors)]
    pieces = _mosaic_pieces(params, shapes)
    kept: list = []
    dropped: list = []
    for image, crop, out, scale in pieces:
        own = boxes if image == 0 else donors[image - 1].boxes
        resized = None if scale == 1 else \
            geometry.resize_matrix(shapes[image], _scaled(shapes[image], scale))
        moved, gone = _clip_to(own, crop, out, (params["height"], params["width"]),
                               min_visibility, resized)
        kept += moved
        dropped += gone
    return tuple(kept), tuple(dropped)


register(Op(
    name="mosaic",
    summary="Ultralytics' mosaic: the source and 3 (2 x 2) or 8 (3 x 3) donors of its split "
            "tiled around a random centre, each tile a crop of its image (optionally "
            "resized by scale); boxes clipped to their tiles.",
    params=(
        Param("grid", NUMBER_OR_LIST, [2, 2], "Tiles [columns, rows]: 2 or 3 each (one number: "
              "a square grid).", low=2, high=3, lengths=(2,)),
        Param("size", NUMBER_OR_LIST, 0, "Output [width, height] in pixels (one number: a "
              "square); 0: the image's size at this step.", low=0, high=65535, lengths=(2,)),
        Param("center", NUMBER, [0.25, 0.75], "Where the tiles meet, as a fraction of the "
              "width and of the height (each drawn on its own); with 3 cells a side, the "
              "middle cell (a third of the side) is centred there.", low=0, high=1),
        Param("scale", NUMBER, 1, "Each tile's image is resized by this factor (a range: "
              "drawn per tile) before its crop is cut, so objects vary in size; the "
              "manifest's donors record it (their crop is in the resized image).",
              low=0.1, high=4),
    ),
    example="- mosaic: {grid: [2, 2], size: [640, 640], center: [0.25, 0.75], "
            "scale: [0.5, 1.5]}",
    sample=_sample_mosaic,
    output_shape=lambda params, shape: (params["height"], params["width"]),
    donor=DonorKernels(
        most=8, count=lambda params: params["grid"][0] * params["grid"][1] - 1,
        compose=_compose_mosaic, boxes=_mosaic_boxes, carries=_CLIPPED, labels=_mosaic_labels,
        record=lambda params, size, shapes: _donor_records(
            params, _mosaic_pieces(params, [size, *shapes])),
        shares=lambda params, size, shapes: [
            (image, out[2] * out[3]) for image, _, out, _ in _mosaic_pieces(params,
                                                                         [size, *shapes])]),
))


# --- cutmix ------------------------------------------------------------------------------

def _sample_cutmix(draw, rng, shape):
    height, width = shape[:2]
    area = draw("area")
    w = min(width, max(1, round(width * area ** 0.5)))
    h = min(height, max(1, round(height * area ** 0.5)))
    x, y = round(float(rng.random()) * (width - w)), round(float(rng.random()) * (height - h))
    return {"area": area, "patch": [x, y, w, h],
            "crop": [float(rng.random()), float(rng.random())]}


def _cutmix_pieces(params, shape) -> list:
    """The one piece: the donor of ``shape`` (h, w) cut where the patch goes."""
    return [(1, *_tile(tuple(params["patch"]), shape, params["crop"]))]


def _compose_cutmix(image, params, donors):
    donor = match_layout(donors[0], image)
    (_, crop, out), = _cutmix_pieces(params, donor.shape[:2])
    return compose((image.shape[1], image.shape[0]), [(donor, crop[:2], out)],
                   out=image.copy())


def _cutmix_labels(labels, params, donors, fill):
    """The label map with the donor's map cut where its pixels are."""
    (_, crop, out), = _cutmix_pieces(params, donors[0].shape[:2])
    canvas = labels.astype(_label_layout([labels, donors[0]]))
    return compose((labels.shape[1], labels.shape[0]), [(donors[0], crop[:2], out)],
                   out=canvas)


def _uncovered(box: Box, patch: tuple) -> tuple:
    """(visible share of ``box`` around the patch (x, y, w, h), the box tightened to what
    shows when the patch hides a whole side of it)."""
    px0, py0, px1, py1 = patch[0], patch[1], patch[0] + patch[2], patch[1] + patch[3]
    wide = max(0.0, min(box.x1, px1) - max(box.x0, px0))
    tall = max(0.0, min(box.y1, py1) - max(box.y0, py0))
    visible = 1 - wide * tall / box.area if box.area else 0.0
    x0, y0, x1, y1 = box.x0, box.y0, box.x1, box.y1
    if py0 <= y0 and py1 >= y1:  # the patch spans the box's height: its left or right goes
        if px0 <= x0 < px1:
            x0 = px1
        elif px0 < x1 <= px1:
            x1 = px0
    if px0 <= box.x0 and px1 >= box.x1:  # its width: its top or bottom goes
        if py0 <= y0 < py1:
            y0 = py1
        elif py0 < y1 <= py1:
            y1 = py0
    return visible, Box(box.label, x0, y0, x1, y1, box.extra)


def _cut(target: Polygon | RleMask, mask: np.ndarray, size: tuple) -> tuple:
    """(visible share of a polygon or RLE mask where ``mask`` (h, w) hides pixels, the
    target reduced to what shows (a polygon traced around it), or None); one the mask does
    not touch is kept as it is."""
    own = target.mask() if isinstance(target, RleMask) else _raster(target, size)
    if not (own & mask).any():
        return 1.0, target
    whole = own.sum()
    left = own & ~mask
    visible = float(left.sum() / whole) if whole else 0.0
    if visible <= 0:
        return visible, None
    if isinstance(target, RleMask):
        return visible, RleMask.of(target.label, left, target.compressed, target.extra)
    return visible, _retrace(target, left)


def _keep_or_drop(target, visible: float, shown, min_visibility: float, kept: list,
                  dropped: list) -> None:
    """What is left of a target something was pasted over (``shown``, with the ``visible``
    share of it) into ``kept``; the target into ``dropped`` when too little shows."""
    if shown is None or visible <= 0 or visible < min_visibility:
        dropped.append(Dropped(target, visible))
    else:
        kept.append(shown)


def _cutmix_boxes(params, size, boxes, donors, min_visibility):
    (_, crop, out), = _cutmix_pieces(params, (donors[0].height, donors[0].width))
    patch = np.zeros(size, bool)
    patch[out[1]:out[1] + out[3], out[0]:out[0] + out[2]] = True
    kept: list = []
    dropped: list = []
    for box in boxes:
        visible, shown = _cut(box, patch, size) if isinstance(box, (Polygon, RleMask)) \
            else _uncovered(box, out)
        _keep_or_drop(box, visible, shown, min_visibility, kept, dropped)
    pasted, gone = _clip_to(donors[0].boxes, crop, out, size, min_visibility)
    return (*kept, *pasted), (*dropped, *gone)


def _cutmix_shares(params, size, shapes) -> list:
    """The patch's area to the donor, the rest of the image to the image."""
    (_, _, out), = _cutmix_pieces(params, shapes[0])
    return [(0, size[0] * size[1] - out[2] * out[3]), (1, out[2] * out[3])]


register(Op(
    name="cutmix",
    summary="CutMix: a rectangle of one donor of the split pasted into the image; the donor's "
            "boxes inside it come along, the image's keep or drop by their visible area.",
    params=(
        Param("area", NUMBER, [0.1, 0.5], "Area of the rectangle as a fraction of the image's "
              "(its aspect ratio is the image's).", low=0, high=1),
    ),
    example="- cutmix: {area: [0.1, 0.5]}",
    sample=_sample_cutmix,
    donor=DonorKernels(
        most=1, count=lambda params: 1, compose=_compose_cutmix, boxes=_cutmix_boxes,
        carries=("boxes", "polygons", "masks"), labels=_cutmix_labels,
        record=lambda params, size, shapes: _donor_records(
            params, _cutmix_pieces(params, shapes[0])),
        shares=_cutmix_shares),
))


# --- mixup -------------------------------------------------------------------------------

def _sample_mixup(draw, rng, shape):
    alpha = draw("alpha")
    ratio = float(rng.beta(alpha, alpha)) if alpha > 0 else draw("ratio")
    return {"ratio": ratio}


def _compose_mixup(image, params, donors):
    donor = geometry.resize(match_layout(donors[0], image), image.shape[1], image.shape[0])
    ratio = params["ratio"]
    return pixels.to_dtype(image.astype(np.float32) * ratio +
                           donor.astype(np.float32) * (1 - ratio), image.dtype)


def _mixup_boxes(params, size, boxes, donors, min_visibility):
    donor = donors[0]
    stretch = geometry.resize_matrix((donor.height, donor.width), size)
    moved, dropped = transform_boxes(donor.boxes, stretch, size, min_visibility)
    return (*boxes, *moved), dropped


register(Op(
    name="mixup",
    summary="MixUp: the image blended with one donor of the split (stretched to its size); "
            "the boxes of both.",
    params=(
        Param("ratio", NUMBER, [0.3, 0.7], "The image's weight in the blend (the donor's is "
              "1 - ratio).", low=0, high=1),
        Param("alpha", NUMBER, 0, "When > 0, the ratio is drawn from Beta(alpha, alpha) "
              "instead (Ultralytics uses 32).", low=0, high=1000),
    ),
    example="- mixup: {ratio: [0.3, 0.7]}",
    sample=_sample_mixup,
    donor=DonorKernels(
        most=1, count=lambda params: 1, compose=_compose_mixup, boxes=_mixup_boxes,
        carries=_CLIPPED,
        record=lambda params, size, shapes: [{"source": params["donors"][0],
                                              "weight": 1 - params["ratio"]}],
        shares=lambda params, size, shapes: [(0, Fraction(params["ratio"])),
                                             (1, 1 - Fraction(params["ratio"]))]),
))


# --- copy_paste --------------------------------------------------------------------------
# A pasted instance hides what it lands on. The polygons it covers (the source's, and the
# instances pasted before it) are cut by rasterising: each is drawn as a mask, the pasted
# masks are taken out, and what is left is traced again (``_retrace``). Exact ring clipping
# (``polygons.clip_ring``) only clips against the image's rectangle, and the same masks
# that paste the pixels cut the polygons, so each polygon covers exactly its own pixels.

def _sample_copy_paste(draw, rng, shape):
    objects = max(1, int(round(draw("objects"))))
    return {"objects": objects,
            "picks": [[float(rng.random()) for _ in range(3)] for _ in range(objects)]}


def _raster(polygon: Polygon, size: tuple) -> np.ndarray:
    """The pixels (h, w) whose centres ``polygon`` (pixel edges) covers: the union of its
    rings, each filled even-odd along the rows of pixel centres."""
    height, width = size
    mask = np.zeros(size, bool)
    for ring in polygon.rings:
        start = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
        end = np.roll(start, -1, axis=0)
        low, high = np.minimum(start[:, 1], end[:, 1]), np.maximum(start[:, 1], end[:, 1])
        first = np.clip(np.ceil(low - 0.5), 0, height).astype(np.int64)  # rows whose centre
        last = np.clip(np.ceil(high - 0.5), 0, height).astype(np.int64)  # is in [low, high)
        counts = last - first
        edge = np.repeat(np.arange(len(start)), counts)
        rows = first[edge] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts,
                                                                  counts)
        (x0, y0), (x1, y1) = start[edge].T, end[edge].T
        x = x0 + (rows + 0.5 - y0) * (x1 - x0) / (y1 - y0)
        toggles = np.zeros((height, width + 1), np.int32)
        np.add.at(toggles, (rows, np.clip(np.ceil(x - 0.5), 0, width).astype(np.int64)), 1)
        mask |= (np.cumsum(toggles, axis=1)[:, :width] & 1).astype(bool)
    return mask


def _pastes(params, size: tuple, donors) -> list:
    """(donor index, its instance (donor pixel edges), the instance where it lands, its mask
    there (h, w), (dx, dy)) per pasted instance: pick ``u`` chooses the donor's polygon,
    ``fx, fy`` place its box in the image. ``donors``: ImageBoxes of each donor (its size
    and targets); one with no polygons pastes nothing."""
    height, width = size
    pastes = []
    for index, (donor, (u, fx, fy)) in enumerate(zip(donors, params["picks"], strict=False)):
        polygons = [t.clipped(donor.width, donor.height) for t in donor.boxes
                    if isinstance(t, Polygon)]
        polygons = [p for p in polygons if p.rings]
        if not polygons:
            continue
        instance = polygons[min(int(u * len(polygons)), len(polygons) - 1)]
        x0, y0 = int(np.floor(instance.x0)), int(np.floor(instance.y0))
        w, h = int(np.ceil(instance.x1)) - x0, int(np.ceil(instance.y1)) - y0
        dx = round(fx * max(width - w, 0)) - x0
        dy = round(fy * max(height - h, 0)) - y0
        placed, _ = instance.moved(geometry.translation(dx, dy), width, height)
        if placed is None:
            continue
        mask = _raster(placed, size)
        ys, xs = np.nonzero(mask)  # only where the donor has pixels to give
        outside = (ys - dy < 0) | (ys - dy >= donor.height) | (xs - dx < 0) | \
            (xs - dx >= donor.width)
        mask[ys[outside], xs[outside]] = False
        pastes.append((index, instance, placed, mask, (dx, dy)))
    return pastes


def _compose_copy_paste(image, params, donors, targets):
    out = image.copy()
    shapes = [ImageBoxes(d.shape[1], d.shape[0], t.boxes) for d, t in zip(donors, targets,
                                                                          strict=True)]
    for index, _, _, mask, (dx, dy) in _pastes(params, image.shape[:2], shapes):
        donor = match_layout(donors[index], image)
        ys, xs = np.nonzero(mask)
        out[ys, xs] = donor[ys - dy, xs - dx]
    return out


def _retrace(polygon: Polygon, mask: np.ndarray) -> Polygon | None:
    """``polygon`` reduced to ``mask`` (its pixels left visible), traced back into rings in
    pixel edges that ``_raster`` fills to exactly ``mask``: traced at twice the resolution,
    each ring runs a quarter pixel inside the outline of its pixels. A hole (an object
    pasted inside it) is opened by a slit one pixel wide up from its top, since COCO and
    YOLO-seg rings cannot hold holes."""
    mask = mask.astype(np.uint8)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0] if len(contours) else (),
                                          strict=True):
        if parent >= 0:  # a hole: cut the object from its top up to the image's edge
            x, y = contour[contour[:, 0, 1].argmin(), 0]
            mask[:y + 1, x] = 0
    twice = np.ascontiguousarray(mask.repeat(2, axis=0).repeat(2, axis=1))
    contours, _ = cv2.findContours(twice, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    rings = tuple(tuple(((c.reshape(-1, 2) + 0.5) / 2).ravel().tolist()) for c in contours
                  if len(c) >= 3)
    return Polygon(polygon.label, rings, polygon.extra) if rings else None


def _copy_paste_boxes(params, size, boxes, donors, min_visibility):
    """The source's polygons and the pasted ones, each cut (``_cut``) by the instances
    pasted over it, the later ones (dropped below ``min_visibility`` of what it covered);
    other target kinds stay."""
    pastes = _pastes(params, size, donors)
    later = np.zeros(size, bool)  # what the pastes after each one cover, last first
    covers = []
    for _, _, _, mask, _ in reversed(pastes):
        covers.append(later)
        later = later | mask
    targets = [(target, later) for target in boxes]  # the source's: under every paste
    targets += [(polygon, cover) for (_, _, polygon, _, _), cover
                in zip(pastes, reversed(covers), strict=True)]
    kept: list = []
    dropped: list = []
    for target, cover in targets:
        visible, shown = _cut(target, cover, size) if isinstance(target, Polygon) \
            else (1.0, target)
        _keep_or_drop(target, visible, shown, min_visibility, kept, dropped)
    return tuple(kept), tuple(dropped)


def _copy_paste_records(params, size, shapes, donors) -> list:
    names = params["donors"]
    return [{"source": names[index], "label": instance.label,
             "crop": [int(np.floor(instance.x0)), int(np.floor(instance.y0)),
                      int(np.ceil(instance.x1)) - int(np.floor(instance.x0)),
                      int(np.ceil(instance.y1)) - int(np.floor(instance.y0))],
             "output": [int(np.floor(instance.x0)) + dx, int(np.floor(instance.y0)) + dy,
                        int(np.ceil(instance.x1)) - int(np.floor(instance.x0)),
                        int(np.ceil(instance.y1)) - int(np.floor(instance.y0))]}
            for index, instance, _, _, (dx, dy) in _pastes(params, size, donors)]


register(Op(
    name="copy_paste",
    summary="Copy-paste: instances cut from donors of the split by their polygons and pasted "
            "at random places, with their polygons; the polygons they cover are cut.",
    params=(
        Param("objects", NUMBER, [1, 3], "Instances pasted, each from its own donor (a random "
              "polygon of it; a donor without polygons pastes nothing).", low=1, high=8),
    ),
    example="- copy_paste: {objects: [1, 3]}",
    sample=_sample_copy_paste,
    donor=DonorKernels(
        most=8, count=lambda params: params["objects"], compose=_compose_copy_paste,
        boxes=_copy_paste_boxes, record=_copy_paste_records, targets=True),
))
