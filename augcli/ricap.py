"""RICAP montages with soft labels (Takahashi, Matsubara and Uehara, ACML 2018).

Each montage is W x H pixels, cut at a boundary point (w, h) into four
quadrants; each quadrant is a crop of a random source image, and the montage's
label is the area-weighted mix of the four sources' classes.

Data flows one way:

* parent: scan the class folders, then plan every montage from one seeded
  generator (boundaries, sources, crop positions): the plan, and so every
  output byte, does not depend on the number of workers;
* workers: one task per chunk of montages; decode each source the chunk
  needs once, resize it to W x H, cut, compose, encode, write atomically;
* parent: progress bar, report, then ``labels.csv`` and ``montages.jsonl``
  (only montages that were written), each written atomically.

Sources are brought to one layout before they are cut: 8-bit RGB (16-bit is
reduced to 8, grey is repeated into three channels, alpha is composited onto
white), then stretched to W x H as ``augcli normalize --size`` does
(INTER_AREA when shrinking both sides, INTER_LINEAR otherwise).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import geometry, imagefiles
from .errors import ImageReadError, UsageError
from .geometry import parse_size
from .jobs import JobReport, check_folders, default_workers, map_in_workers, progress_bar

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_BETA", "MontagePlan", "Quadrant", "RicapReport",
           "compose", "label_weights", "make_montages", "parse_size", "plan_montages",
           "quadrant_boxes"]

DEFAULT_BETA = 0.3        # the paper's choice for ImageNet/CIFAR
DEFAULT_BATCH_SIZE = 32   # montages sharing one boundary (Keras' default batch size)
DEFAULT_SEED = 0
JPEG_QUALITY = 95
FORMATS = ("png", "jpg")
HARD_LABELS = ("majority",)
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
LABELS_NAME = "labels.csv"
MONTAGES_NAME = "montages.jsonl"
MAJORITY_DIR = "majority"
NAME_PREFIX = "ricap_"
CHUNK_BYTES = 256 * 2**20  # bound on the resized sources one task holds at once
MAX_CHUNK = 64


# --- the geometry and the labels (pure functions) ----------------------------------------

def quadrant_boxes(width: int, height: int, w: int, h: int) -> tuple:
    """Output boxes (x, y, w, h) of the four quadrants around the boundary point (w, h).

    Top-left w x h, top-right (W-w) x h, bottom-left w x (H-h), bottom-right
    (W-w) x (H-h): they tile the W x H image exactly; some may be empty.
    """
    if not (0 <= w <= width and 0 <= h <= height):
        raise ValueError(f"boundary ({w}, {h}) is outside a {width}x{height} image")
    return ((0, 0, w, h), (w, 0, width - w, h), (0, h, w, height - h),
            (w, h, width - w, height - h))


def label_weights(quadrants, classes, width: int, height: int) -> dict:
    """Exact weight per class: the sum of its quadrants' areas over W * H (a Fraction).

    Every class of ``classes`` gets an entry (0 when it fills no quadrant); the
    weights sum to exactly 1. ``quadrants`` are ``Quadrant``s (empty ones count 0).
    """
    weights = {name: Fraction(0) for name in classes}
    total = width * height
    for quadrant in quadrants:
        area = quadrant.area
        if area:
            weights[quadrant.label] += Fraction(area, total)
    return weights


def majority_class(weights: dict) -> str:
    """The class with the largest weight; ties go to the first in sorted order."""
    best = max(weights.values())
    return min(name for name, weight in weights.items() if weight == best)


def compose(size: tuple, pieces, channels: int = 3) -> np.ndarray:
    """Paste each (source image, (crop x, crop y), output box) into a W x H uint8 canvas.

    The crop is the output box's size, taken at (crop x, crop y) of the source.
    Empty boxes are skipped (their source may be None).
    """
    width, height = size
    canvas = np.zeros((height, width, channels), np.uint8)
    for image, crop, (x, y, w, h) in pieces:
        if w == 0 or h == 0:
            continue
        cx, cy = crop
        canvas[y:y + h, x:x + w] = image[cy:cy + h, cx:cx + w]
    return canvas


def prepare_source(path: Path, size: tuple) -> np.ndarray:
    """Decode, convert to 8-bit RGB and stretch to ``size`` (width, height)."""
    image = imagefiles.to_rgb8(imagefiles.read_image(path))
    if (image.shape[1], image.shape[0]) != tuple(size):
        image = geometry.resize(image, *size)
    return np.ascontiguousarray(image)


# --- plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quadrant:
    """One quadrant: where it goes in the montage, and which crop of which source fills it."""

    position: str
    box: tuple                 # x, y, w, h in the montage
    source: str | None = None  # path relative to the input folder; None when empty
    label: str | None = None   # the source's class
    crop: tuple | None = None  # x, y, w, h in the resized source

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class MontagePlan:
    """Everything about one montage, decided in the parent: plain, picklable data."""

    index: int                 # 1-based
    filename: str
    batch: int                 # 0-based
    fractions: tuple           # (w', h') drawn from Beta(beta, beta)
    boundary: tuple            # (w, h) = (round(w' W), round(h' H))
    quadrants: tuple
    majority: str | None = None  # largest-area class, with --hard-label majority

    @property
    def sources(self) -> list:
        return [quadrant.source for quadrant in self.quadrants if quadrant.source is not None]


def plan_montages(images: list, count: int, size: tuple, *, beta: float = DEFAULT_BETA,
                  seed: int = DEFAULT_SEED, batch_size: int = DEFAULT_BATCH_SIZE,
                  per_sample: bool = False, fmt: str = "png",
                  hard_label: str | None = None) -> list:
    """Plan ``count`` montages from ``images``: (relative path, class) pairs, in order.

    One generator seeded with ``seed`` draws, montage by montage: the boundary
    (once per batch of ``batch_size``, or per montage with ``per_sample``),
    then for each non-empty quadrant in the order top-left, top-right,
    bottom-left, bottom-right: a source (uniform over all images) and a crop
    position (uniform over the positions where the crop fits). So the first
    montages of a longer run are the montages of a shorter one.
    """
    width, height = size
    classes = sorted({label for _, label in images})
    rng = np.random.default_rng(seed)
    digits = max(5, len(str(count)))
    plans, fractions = [], None
    for number in range(count):
        batch = number // batch_size
        if per_sample or number % batch_size == 0:
            fractions = tuple(float(value) for value in rng.beta(beta, beta, size=2))
        w, h = round(fractions[0] * width), round(fractions[1] * height)
        quadrants = []
        for position, box in zip(POSITIONS, quadrant_boxes(width, height, w, h)):
            if box[2] == 0 or box[3] == 0:
                quadrants.append(Quadrant(position, box))
                continue
            source, label = images[int(rng.integers(len(images)))]
            x = int(rng.integers(width - box[2] + 1))
            y = int(rng.integers(height - box[3] + 1))
            quadrants.append(Quadrant(position, box, source, label, (x, y, box[2], box[3])))
        majority = None
        if hard_label == "majority":
            majority = majority_class(label_weights(quadrants, classes, width, height))
        plans.append(MontagePlan(number + 1, f"{NAME_PREFIX}{number + 1:0{digits}d}.{fmt}", batch,
                                 fractions, (w, h), tuple(quadrants), majority))
    return plans


def montage_record(plan: MontagePlan, classes: list, size: tuple) -> dict:
    """One line of montages.jsonl: enough to trace every pixel to its source."""
    width, height = size
    weights = label_weights(plan.quadrants, classes, width, height)
    record = {
        "filename": plan.filename,
        "size": [width, height],
        "batch": plan.batch,
        "boundary": {"w": plan.boundary[0], "h": plan.boundary[1],
                     "w_fraction": plan.fractions[0], "h_fraction": plan.fractions[1]},
        "quadrants": [{
            "position": quadrant.position,
            "source": quadrant.source,
            "class": quadrant.label,
            "crop": list(quadrant.crop) if quadrant.crop else None,
            "output": list(quadrant.box),
            "area": quadrant.area,
            "weight": float(Fraction(quadrant.area, width * height)),
        } for quadrant in plan.quadrants],
        "labels": {name: float(weight) for name, weight in weights.items() if weight},
    }
    if plan.majority is not None:
        record["majority"] = plan.majority
    return record


# --- worker --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkTask:
    """A chunk of montages for one worker: plain, picklable data."""

    input_dir: Path
    output_dir: Path
    size: tuple
    fmt: str
    montages: tuple


@dataclass
class ChunkResult:
    written: list = field(default_factory=list)       # filenames
    failures: list = field(default_factory=list)      # (filename, reason)
    bad_sources: dict = field(default_factory=dict)   # relative path -> reason
    decoded: set = field(default_factory=set)         # relative paths read


def make_chunk(task: ChunkTask) -> ChunkResult:
    """Worker: decode each source of the chunk once, then compose, encode and write."""
    result = ChunkResult()
    resized = {}
    for plan in task.montages:
        for source in plan.sources:
            if source in resized or source in result.bad_sources:
                continue
            try:
                resized[source] = prepare_source(task.input_dir / source, task.size)
                result.decoded.add(source)
            except ImageReadError as exc:
                result.bad_sources[source] = exc.reason
        missing = sorted({s for s in plan.sources if s in result.bad_sources})
        if missing:
            reason = f"not made: source {missing[0]} cannot be read"
            result.failures.append((plan.filename, reason))
            continue
        montage = compose(task.size, [(resized.get(q.source), q.crop[:2] if q.crop else None,
                                       q.box) for q in plan.quadrants])
        try:
            data = imagefiles.encode(montage, task.fmt, JPEG_QUALITY)
            imagefiles.write_atomic(task.output_dir / plan.filename, data)
            if plan.majority is not None:
                imagefiles.write_atomic(task.output_dir / MAJORITY_DIR / plan.majority / plan.filename,
                                data)
        except (OSError, ValueError) as exc:
            result.failures.append((plan.filename, f"cannot write ({exc})"))
            continue
        result.written.append(plan.filename)
    return result


# --- running -------------------------------------------------------------------------------

@dataclass
class RicapReport(JobReport):
    bad_sources: int = 0
    failed_montages: int = 0

    def summary(self) -> str:
        return (f"{self.images_read} source images read, {self.written} montages written, "
                f"{self.failed_montages} failed, {self.bad_sources} unreadable sources, "
                f"{self.seconds:.1f} s")


def scan_classes(input_dir: Path) -> tuple[list, list, list]:
    """(images as (relative posix path, class), sorted classes, other files).

    Classes are the immediate subfolders of ``input_dir`` that hold images (at
    any depth). Images directly in ``input_dir`` belong to no class: an error.
    """
    images, others = imagefiles.scan(input_dir)
    loose = [relative.as_posix() for relative in images if len(relative.parts) == 1]
    if loose:
        shown = ", ".join(loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
        raise UsageError(f"{len(loose)} image(s) directly in {input_dir} belong to no class: "
                         f"{shown}; move each into a subfolder named after its class")
    if not images:
        raise UsageError(f"no images found in class subfolders of {input_dir} "
                         f"({imagefiles.looked_for()}); RICAP needs "
                         "one subfolder per class, e.g. cats/ and dogs/")
    pairs = [(relative.as_posix(), relative.parts[0]) for relative in images]
    return pairs, sorted({label for _, label in pairs}), others


def _check_options(count, size, beta, batch_size, fmt, hard_label, seed) -> None:
    rules = [
        (count < 1, "--count must be at least 1"),
        (not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0),
         f"--beta must be a number > 0 (got {beta!r})"),
        (batch_size < 1, "--batch-size must be at least 1"),
        (fmt not in FORMATS, f"unknown format {fmt!r}; choose png or jpg"),
        (hard_label not in HARD_LABELS + (None,),
         f"unknown hard label {hard_label!r}; choose majority"),
        (seed < 0, "--seed must be >= 0"),
        (size[0] * size[1] > imagefiles.DEFAULT_MAX_PIXELS,
         f"--size is over the limit of {imagefiles.DEFAULT_MAX_PIXELS:,} pixels"),
    ]
    for broken, message in rules:
        if broken:
            raise UsageError(message)


def _previous_outputs(output_dir: Path) -> list:
    """Files of an earlier ricap run in ``output_dir`` (by augcli's own names only)."""
    if not output_dir.is_dir():
        return []
    found = [output_dir / name for name in (LABELS_NAME, MONTAGES_NAME)
             if (output_dir / name).exists()]
    for pattern in (f"{NAME_PREFIX}*.png", f"{NAME_PREFIX}*.jpg"):
        found += output_dir.glob(pattern)
        found += output_dir.glob(f"{MAJORITY_DIR}/*/{pattern}")
    return sorted(found)


def _clear_previous(output_dir: Path, previous: list) -> None:
    for path in previous:
        path.unlink(missing_ok=True)
    majority = output_dir / MAJORITY_DIR
    if majority.is_dir():
        for folder in sorted(majority.iterdir()):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if not any(majority.iterdir()):
            majority.rmdir()


def _chunks(plans: list, workers: int, size: tuple) -> list:
    """Chunks of montages: a few per worker for balance, bounded in memory per task."""
    per_source = size[0] * size[1] * 3
    by_memory = max(1, CHUNK_BYTES // (4 * per_source))
    length = max(1, min(MAX_CHUNK, by_memory, math.ceil(len(plans) / (workers * 4))))
    return [plans[start:start + length] for start in range(0, len(plans), length)]


def labels_csv(plans: list, classes: list, size: tuple) -> str:
    """Header ``filename,<class>...`` then one row per montage; weights as shortest floats."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", *classes])
    for plan in plans:
        weights = label_weights(plan.quadrants, classes, *size)
        writer.writerow([plan.filename, *(repr(float(weights[name])) for name in classes)])
    return buffer.getvalue()


def make_montages(input_dir, output_dir, *, count: int, size, beta: float = DEFAULT_BETA,
                  seed: int = DEFAULT_SEED, batch_size: int = DEFAULT_BATCH_SIZE,
                  per_sample: bool = False, fmt: str = "png", hard_label: str | None = None,
                  overwrite: bool = False, workers: int | None = None, progress: bool = False,
                  notify=None) -> RicapReport:
    """Write ``count`` RICAP montages of ``input_dir``'s class folders; what ``augcli ricap`` calls.

    ``size`` is (width, height) or a "WxH" string. ``notify`` receives one line
    per unreadable source and per montage that could not be made.
    """
    started = time.perf_counter()
    size = parse_size(size) if isinstance(size, str) else tuple(size)
    _check_options(count, size, beta, batch_size, fmt, hard_label, seed)
    input_dir, output_dir = check_folders(Path(input_dir), Path(output_dir))
    images, classes, others = scan_classes(input_dir)
    previous = _previous_outputs(output_dir)
    if previous and not overwrite:
        raise UsageError(f"{output_dir} already holds outputs of a ricap run (e.g. "
                         f"{previous[0].relative_to(output_dir).as_posix()}); rerun with "
                         "--overwrite to replace them, or choose another output folder")

    plans = plan_montages(images, count, size, beta=beta, seed=seed, batch_size=batch_size,
                          per_sample=per_sample, fmt=fmt, hard_label=hard_label)
    _clear_previous(output_dir, previous)
    imagefiles.remove_stale_temp_files(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    report = RicapReport(ignored=others, notify=notify)
    workers = workers or default_workers()
    chunks = _chunks(plans, workers, size)
    tasks = [ChunkTask(input_dir, output_dir, size, fmt, tuple(chunk)) for chunk in chunks]
    written, decoded, bad = set(), set(), {}
    bar = progress_bar(count, progress)
    bar.set_description("ricap")
    try:
        for result in map_in_workers(make_chunk, tasks, max(1, min(workers, len(tasks)))):
            decoded |= result.decoded
            written.update(result.written)
            for source, reason in sorted(result.bad_sources.items()):
                if source not in bad:
                    bad[source] = reason
                    report.fail(source, reason)
            for filename, reason in result.failures:
                report.fail(filename, reason)
                report.failed_montages += 1
            bar.update(len(result.written) + len(result.failures))
    finally:
        bar.close()
        done = [plan for plan in plans if plan.filename in written]
        imagefiles.write_atomic(output_dir / LABELS_NAME, labels_csv(done, classes, size).encode())
        lines = (json.dumps(montage_record(plan, classes, size), ensure_ascii=False) + "\n"
                 for plan in done)
        imagefiles.write_atomic(output_dir / MONTAGES_NAME, "".join(lines).encode("utf-8"))
    report.images_read = len(decoded)
    report.written = len(written)
    report.bad_sources = len(bad)
    report.seconds = time.perf_counter() - started
    return report
