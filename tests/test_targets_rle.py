"""COCO RLE masks (``iscrowd: 1``, compressed or uncompressed counts) follow the pixels.

The sources are the polygon tests' painted stars, given as RLE masks of their
painted pixels (pycocotools encodes the compressed ones); pycocotools loads
the output, decodes every mask (``annToMask``), and the painted pixels are
the truth. Run with ``-s`` to see the measured IoU.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from .test_targets_polygons import (
    HEIGHT,
    NAMES,
    OPS,
    WIDTH,
    iou,
    painted,
    painted_sources,
    raster,
    report,
    run_coco,
)

coco_api = pytest.importorskip("pycocotools.coco")
mask_api = pytest.importorskip("pycocotools.mask")


def runs(mask: np.ndarray) -> list:
    """COCO's uncompressed counts: column-major runs, the first of zeros."""
    counts, value, length = [], False, 0
    for pixel in mask.ravel(order="F").tolist():
        if pixel != value:
            counts.append(length)
            value, length = pixel, 0
        length += 1
    return [*counts, length]


def test_runs_is_what_pycocotools_reads():
    mask = np.zeros((5, 4), bool)
    mask[1:3, 1:3] = mask[4, 3] = True
    rle = mask_api.frPyObjects({"size": [5, 4], "counts": runs(mask)}, 5, 4)
    assert (mask_api.decode(rle) == mask).all()
    mask[0, 0] = True
    rle = mask_api.frPyObjects({"size": [5, 4], "counts": runs(mask)}, 5, 4)
    assert (mask_api.decode(rle) == mask).all()


def test_coco_rle_masks_follow_the_painted_shapes(tmp_path):
    shapes = painted_sources(tmp_path / "in")
    images, annotations = [], []
    for image_id, (name, objects) in enumerate(shapes.items(), start=1):
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
        for number, (label, ring) in enumerate(objects):
            mask = raster([ring], (HEIGHT, WIDTH))
            if number % 2:  # uncompressed counts, as COCO writes crowds in its files
                rle = {"size": [HEIGHT, WIDTH], "counts": runs(mask)}
            else:
                rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": NAMES.index(label) + 1, "segmentation": rle,
                                "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1})
    coco = run_coco(tmp_path, images, annotations)
    scores: dict = {op: [] for op in OPS}
    offsets = []
    for image in coco.dataset["images"]:
        pixels = np.asarray(Image.open(tmp_path / "out" / image["file_name"]).convert("RGB"))
        op = image["file_name"].split("_")[1]
        found = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(found) == 4
        for number, annotation in enumerate(found):
            counts = annotation["segmentation"]["counts"]
            assert isinstance(counts, list if number % 2 else str)  # the same encoding
            assert annotation["segmentation"]["size"] == [image["height"], image["width"]]
            assert annotation["iscrowd"] == 1
            label = coco.loadCats(annotation["category_id"])[0]["name"]
            truth = painted(pixels, label)
            mask = coco.annToMask(annotation).astype(bool)
            scores[op].append(iou(mask, truth))
            assert annotation["area"] == mask.sum()
            if number % 2:
                assert counts == runs(mask)
            else:  # the text pycocotools writes for the same mask: RLE round-trips
                assert counts == mask_api.encode(np.asfortranarray(
                    mask.astype(np.uint8)))["counts"].decode("ascii")
            rows, columns = np.nonzero(mask)
            x, y, w, h = annotation["bbox"]
            assert [x, y, x + w, y + h] == [columns.min(), rows.min(), columns.max() + 1,
                                            rows.max() + 1]  # tight around the mask
            rows, columns = np.nonzero(truth)
            offsets.append(np.abs(np.array([x, y, x + w, y + h]) - (
                columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)).max())
    report("COCO RLE (pycocotools annToMask vs painted pixels)", scores)
    print(f"  bbox vs painted bounds: median {np.median(offsets):.3f} px, "
          f"max {max(offsets):.3f} px")
    for op, values in scores.items():
        assert np.median(values) >= 0.95 and min(values) >= 0.85, (op, values)
    assert np.median(offsets) <= 1.0 and max(offsets) <= 1.5
