"""Draw a picture of every op for the reference site: ``python docs/gallery.py [OP ...]``.

Each op runs on two sample images at the three strengths in ``STRENGTHS`` (the
recipe shown under its picture), through the same planning and rendering as
``augcli run``; the boxes and polygons below are carried by the same matrix as
``run`` carries them, and drawn. ``docs/ops/<op>.png`` is the picture;
``docs/ops/gallery.json`` records a digest of each op's recipe and augcli's
version, so a test can tell a picture that no longer matches its recipe.
The imgaug op needs the ``imgaug`` extra (``pip install -e '.[test]'`` has it).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from augcli import __version__, imagefiles
from augcli.ops import CATALOG
from augcli.ops.multi import donor_names, most_donors
from augcli.pipeline import carry_boxes, steps_matrix
from augcli.preview import BOX_COLOURS, _as_rgb, _sheet
from augcli.recipe import parse_recipe
from augcli.render import render, source_outputs
from augcli.targets.boxes import Box, ImageBoxes, transform_boxes
from augcli.targets.polygons import Polygon

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "ops"
RECORD = OUT / "gallery.json"
SEED = 0


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> tuple:
    return tuple(v for i in range(n) for v in (cx + rx * math.cos(2 * math.pi * i / n),
                                                cy + ry * math.sin(2 * math.pi * i / n)))


# The two sample images and hand-drawn targets on them (pixel edges, as run uses).
SAMPLES = {
    "cat/chelsea.jpg": (Box("eye", 95, 55, 150, 105), Box("eye", 205, 75, 250, 118),
                        Polygon("nose", ((160, 160, 205, 155, 200, 190, 182, 197, 165, 182),))),
    "cup/coffee.jpg": (Box("cup", 90, 10, 225, 165), Box("spoon", 170, 125, 215, 178),
                       Polygon("saucer", (_ellipse(150, 128, 105, 74),))),
}


def _fixed(value):
    """A range of one value: the strength shown, with nothing left to chance."""
    return [value, value]


# Op -> up to three settings, weak to strong. An op that is on or off (a flip) has one.
STRENGTHS: dict[str, list] = {
    "fliplr": [{"p": 1}],
    "flipud": [{"p": 1}],
    "rotate": [{"degrees": _fixed(d)} for d in (10, 25, 45)],
    "translate": [{"x": _fixed(x), "y": _fixed(y)} for x, y in ((0.05, 0), (0.15, 0.1),
                                                              (0.3, 0.2))],
    "shear": [{"x": _fixed(x)} for x in (10, 20, 35)],
    "affine": [{"rotate": _fixed(5), "scale": _fixed(0.95)},
               {"rotate": _fixed(15), "shear": _fixed(10), "scale": _fixed(0.9)},
               {"rotate": _fixed(30), "shear": _fixed(20), "translate": _fixed(0.1),
                "scale": _fixed(0.8)}],
    "zoom": [{"factor": _fixed(f)} for f in (0.8, 1.2, 1.5)],
    "crop": [{"percent": _fixed(f)} for f in (0.05, 0.15, 0.3)],
    "random_resized_crop": [{"size": 256, "scale": _fixed(s)} for s in (0.8, 0.4, 0.1)],
    "resize": [{"scale": s} for s in (0.75, 0.5, 0.25)],
    "letterbox": [{"width": w, "height": h, "cval": 114}
                  for w, h in ((320, 320), (400, 160), (160, 320))],
    "pad": [{"percent": _fixed(f)} for f in (0.05, 0.15, 0.3)],
    "rot90": [{"k": _fixed(k)} for k in (1, 2, 3)],
    "perspective": [{"scale": _fixed(s)} for s in (0.03, 0.08, 0.15)],
    "elastic": [{"alpha": _fixed(a), "sigma": _fixed(s)} for a, s in ((10, 5), (30, 5),
                                                                       (60, 4))],
    "brightness": [{"factor": _fixed(f)} for f in (0.6, 1.3, 1.7)],
    "contrast": [{"factor": _fixed(f)} for f in (0.5, 1.5, 2.0)],
    "saturation": [{"factor": _fixed(f)} for f in (0.3, 1.5, 2.5)],
    "hue": [{"factor": _fixed(f)} for f in (0.05, 0.15, 0.3)],
    "color_jitter": [{"brightness": b, "contrast": b, "saturation": b, "hue": h}
                     for b, h in ((0.2, 0.05), (0.4, 0.1), (0.8, 0.3))],
    "channel_shift": [{"intensity": _fixed(i)} for i in (20, 50, 100)],
    "gamma": [{"gamma": _fixed(g)} for g in (0.5, 1.5, 2.5)],
    "grayscale": [{"alpha": a} for a in (0.3, 0.6, 1.0)],
    "invert": [{"p": 1}],
    "clahe": [{"clip_limit": _fixed(c), "tile_grid_size": 8} for c in (1, 4, 8)],
    "equalize": [{"p": 1}],
    "dropout": [{"p": p} for p in (0.05, 0.15, 0.3)],
    "gaussian_blur": [{"sigma": _fixed(s)} for s in (1, 3, 6)],
    "coarse_dropout": [{"p": p, "size_percent": _fixed(0.05)} for p in (0.05, 0.1, 0.2)],
    "cutout": [{"nb_iterations": n, "size": 0.2} for n in (1, 2, 4)],
    "random_erasing": [{"p": 1, "scale": _fixed(s)} for s in (0.05, 0.15, 0.3)],
    "salt_and_pepper": [{"p": _fixed(p)} for p in (0.01, 0.05, 0.15)],
    "gaussian_noise": [{"scale": _fixed(s)} for s in (10, 25, 50)],
    "motion_blur": [{"k": _fixed(k), "angle": _fixed(45), "direction": _fixed(0)}
                    for k in (5, 11, 21)],
    "sharpen": [{"alpha": _fixed(a), "lightness": _fixed(1)} for a in (0.2, 0.5, 1.0)],
    "jpeg": [{"quality": _fixed(q)} for q in (50, 20, 5)],
    "keras": [{"rotation_range": 10},
              {"rotation_range": 20, "width_shift_range": 0.1, "zoom_range": 0.1},
              {"rotation_range": 40, "shear_range": 20, "zoom_range": 0.3,
               "channel_shift_range": 50}],
    "imgaug": [[{"Dropout": {"p": 0.1}}], [{"GaussianBlur": {"sigma": 2.0}}],
               [{"Emboss": {"alpha": 1.0}}]],
    # the other sample image is the donor; their boxes are drawn on ops/multi.md's picture
    "mosaic": [{"grid": [2, 2], "center": _fixed(c)} for c in (0.5, 0.35)]
    + [{"grid": [3, 3], "center": _fixed(0.5)}],
    "cutmix": [{"area": _fixed(a)} for a in (0.1, 0.25, 0.5)],
    "mixup": [{"ratio": _fixed(r)} for r in (0.8, 0.6, 0.4)],
    # objects of the other sample image (its polygons) pasted, their outlines drawn
    "copy_paste": [{"objects": _fixed(n)} for n in (1, 2, 3)],
}

NAMES = ("weak", "medium", "strong")


def recipe(op: str) -> dict:
    """The recipe that makes ``op``'s picture: one variant per strength."""
    settings = STRENGTHS[op]
    names = NAMES if len(settings) == len(NAMES) else ("always",)
    return {"seed": SEED, "variants": {name: {"ops": [{op: setting}]}
                                       for name, setting in zip(names, settings)}}


def digest(op: str) -> str:
    """What the picture depends on besides the pixels' code: its recipe and the version."""
    text = json.dumps([recipe(op), sorted(SAMPLES), __version__], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _draw(image: np.ndarray, targets) -> np.ndarray:
    """Boxes as rectangles and polygons as outlines, one colour per label."""
    image = np.array(image)  # a writable copy: a flip's output may be a read-only view
    labels = sorted({t.label for targets_ in SAMPLES.values() for t in targets_})
    thick = max(1, round(image.shape[1] / 160))
    for target in targets:
        colour = BOX_COLOURS[labels.index(target.label) % len(BOX_COLOURS)]
        if isinstance(target, Polygon):
            for ring in target.rings:
                points = np.round(np.array(ring).reshape(-1, 2)).astype(np.int32)
                cv2.polylines(image, [points], True, colour, thick, cv2.LINE_AA)
        else:
            cv2.rectangle(image, (round(target.x0), round(target.y0)),
                          (round(target.x1) - 1, round(target.y1) - 1), colour, thick)
    return image


def picture(op: str) -> np.ndarray:
    """Rows of (source, then each strength) for each sample image."""
    parsed = parse_recipe(recipe(op))
    takes_donors = CATALOG[op].donor is not None
    carried = not CATALOG[op].refuses_boxes and op != "imgaug" and not takes_donors
    images = {relative: imagefiles.read_image(ROOT / "sample_images" / relative)
              for relative in SAMPLES}
    pool = tuple(SAMPLES)
    cuts = CATALOG[op].donor is not None and CATALOG[op].donor.targets  # by their polygons
    polygons = {relative: ImageBoxes(images[relative].shape[1], images[relative].shape[0],
                                     tuple(t for t in targets if isinstance(t, Polygon)))
                for relative, targets in SAMPLES.items()}
    tiles = []
    for own, (relative, targets) in enumerate(SAMPLES.items()):
        source = images[relative]
        tiles.append((_draw(_as_rgb(source), targets), f"{Path(relative).name}", None))
        for output in source_outputs(parsed, Path(relative)):
            if takes_donors:  # as run draws them: from the output's seed, among the others
                output = replace(output, donors=donor_names(output.seed,
                                                            most_donors(output.ops), pool, own))
            pixels, steps = render(source, output, donor=images.__getitem__,
                                   donor_targets=polygons.__getitem__)
            moved = ()
            if cuts:
                moved = carry_boxes(polygons[relative].boxes, steps, source.shape,
                                    polygons.__getitem__, 0.0)[0]
            if carried:
                matrix = steps_matrix(steps, source.shape)
                moved, _ = transform_boxes(targets, matrix, pixels.shape[:2], 0.0)
            label = output.variant if carried or cuts else f"{output.variant} (no targets)"
            tiles.append((_draw(_as_rgb(pixels), moved), label, None))
    return _sheet(tiles)


def write(op: str) -> Path:
    path = OUT / f"{op}.png"
    # A palette of 256 colours keeps 37 pictures in the repository small.
    Image.fromarray(picture(op)).quantize(256, dither=Image.Dither.NONE).save(path,
                                                                               optimize=True)
    return path


def main(ops) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    for op in ops or list(CATALOG):
        print(write(op).relative_to(ROOT))
        record[op] = digest(op)
    RECORD.write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
