"""RICAP montages with soft labels (Takahashi, Matsubara and Uehara, ACML 2018).

Each montage is W x H pixels, cut at a boundary point (w, h) into four
quadrants; each quadrant is a crop of a random source image, and the montage's
label is the area-weighted mix of the four sources' classes.

One implementation serves files and batches: ``draw_montages`` draws every
random choice (boundaries, sources, crop positions) from one generator,
``compose`` pastes the crops and ``area_weights`` turns the quadrant areas
into label weights. ``augcli ricap`` (``make_montages``) applies them to the
class folders of an input folder; ``ricap_batch`` applies them to an
in-memory ``(N, H, W, C)`` batch and its one-hot labels, as keras-ricap does
while a model trains. ``BetaSchedule`` raises beta linearly across epochs.

Data flows one way for files:

* parent: scan the class folders, then plan every montage from one seeded
  generator (per epoch with ``--epochs``): the plan, and so every output
  byte, does not depend on the number of workers; montages an earlier,
  interrupted run of the same plan finished are skipped (resume);
* workers: one task per chunk of montages; decode each source the chunk
  needs once, resize it to W x H, cut, compose, encode, write atomically;
* parent: progress bar, report, then ``labels.csv`` and ``montages.jsonl``
  (every montage of the plan that is on disk), each written atomically.

Sources are brought to one layout before they are cut: 8-bit RGB (16-bit is
reduced to 8, grey is repeated into three channels, alpha is composited onto
white), then stretched to W x H as ``augcli normalize --size`` does
(INTER_AREA when shrinking both sides, INTER_LINEAR otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import geometry, imagefiles, locations, manifest, stores, tiles
from .errors import STOPS_RUN, ImageReadError, OutputError, UsageError, output_error
from .executors import Executor, default_workers, open_executor
from .geometry import parse_size
from .probe import sight_of
from .report import JobReport, progress_bar
from .stores import StoreSpec
from .tiles import (  # noqa: F401 - part of this API
    LABELS_NAME,
    WEIGHT_GRID,
    area_weights,
    compose,
    majority_class,
)

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_BETA", "BetaSchedule", "MontagePlan", "Quadrant",
           "RicapReport", "RicapSettings", "area_weights", "compose", "draw_montages",
           "label_weights", "make_montages", "parse_size", "plan_montages", "quadrant_boxes",
           "ricap_batch"]

DEFAULT_BETA = 0.3        # the paper's choice for ImageNet/CIFAR
DEFAULT_BATCH_SIZE = 32   # montages sharing one boundary (Keras' default batch size)
DEFAULT_SEED = 0
JPEG_QUALITY = 95
FORMATS = ("png", "jpg")
HARD_LABELS = ("majority",)
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
MONTAGES_NAME = "montages.jsonl"
SETTINGS_NAME = "ricap.json"
MAX_MONTAGES = 1_000_000  # per run, all epochs together: the plan is about 1 KB a montage
MAJORITY_DIR = "majority"
NAME_PREFIX = "ricap_"
EPOCH_PREFIX = "epoch_"
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


def prepare_source(store, key: str, size: tuple) -> np.ndarray:
    """Decode ``key`` of a store (a folder or an object store), convert to 8-bit RGB and
    stretch to ``size`` (width, height)."""
    image = imagefiles.to_rgb8(store.read_image(key))
    if (image.shape[1], image.shape[0]) != tuple(size):
        image = geometry.resize(image, *size)
    return np.ascontiguousarray(image)


# --- drawing: every random choice, for files and batches alike -----------------------------

@dataclass(frozen=True)
class Draw:
    """The random choices of one montage; ``sources`` index the images drawn from."""

    batch: int                 # 0-based
    fractions: tuple           # (w', h') drawn from Beta(beta, beta)
    boundary: tuple            # (w, h) = (round(w' W), round(h' H))
    boxes: tuple               # the four output boxes (x, y, w, h), in POSITIONS order
    sources: tuple             # per quadrant: image index, None when the box is empty
    crops: tuple               # per quadrant: (x, y) of the crop in the source, or None


def draw_montages(rng: np.random.Generator, count: int, n_images: int, size: tuple,
                  beta: float, batch_size: int, per_sample: bool = False):
    """Yield a ``Draw`` per montage: what ``augcli ricap`` and ``ricap_batch`` both cut.

    Montage by montage, from ``rng``: the boundary (once per batch of
    ``batch_size``, or per montage with ``per_sample``), then for each
    non-empty quadrant in the order top-left, top-right, bottom-left,
    bottom-right: a source (uniform over the ``n_images``, with replacement)
    and a crop position (uniform over the positions where the crop fits).
    """
    width, height = size
    fractions: tuple = ()
    for number in range(count):
        if per_sample or number % batch_size == 0:
            fractions = tuple(float(value) for value in rng.beta(beta, beta, size=2))
        w, h = round(fractions[0] * width), round(fractions[1] * height)
        boxes = quadrant_boxes(width, height, w, h)
        sources: list[int | None] = []
        crops: list[tuple | None] = []
        for box in boxes:
            if box[2] == 0 or box[3] == 0:
                sources.append(None)
                crops.append(None)
                continue
            sources.append(int(rng.integers(n_images)))
            crops.append((int(rng.integers(width - box[2] + 1)),
                          int(rng.integers(height - box[3] + 1))))
        yield Draw(number // batch_size, fractions, (w, h), boxes, tuple(sources), tuple(crops))


# --- in memory: a batch, as keras-ricap does it --------------------------------------------

def ricap_batch(images, labels, beta: float = DEFAULT_BETA, per_sample: bool = False,
                rng=None) -> tuple[np.ndarray, np.ndarray]:
    """RICAP on one training batch: ``(patched_batch, mixed_labels)``.

    ``images``: an ``(N, H, W, C)`` array (any dtype); ``labels``: ``(N, K)``
    one-hot (or soft) labels. One boundary is shared by the whole batch, as in
    the paper (``per_sample=True``: one per image); each quadrant of image i
    is a crop of a batch image drawn uniformly, and its label row is the
    area-weighted sum of the four sources' rows. The draws are
    ``draw_montages``' with ``batch_size=N``, so for the same generator this
    gives the montages ``augcli ricap`` writes for the same N images.

    ``rng``: a ``numpy.random.Generator``, a seed, or None for fresh entropy
    (never NumPy's global state). Labels come back as float64 (float32 if
    they are float32); with one-hot float64 labels every row sums to exactly 1.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4:
        raise ValueError(f"images must be an (N, H, W, C) batch, got shape {images.shape}")
    if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must be one-hot of shape (N, K) with N = {images.shape[0]}, "
                         f"got shape {labels.shape}; for class ids use np.eye(K)[ids]")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a number > 0, got {beta!r}")
    count, height, width = images.shape[:3]
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    patched = np.empty_like(images)
    mixed = np.zeros(labels.shape, np.float64)
    size, total = (width, height), width * height
    for i, draw in enumerate(draw_montages(generator, count, count, size, beta,
                                           batch_size=max(count, 1), per_sample=per_sample)):
        compose(size, [(images[s] if s is not None else None, crop, box)
                       for s, crop, box in zip(draw.sources, draw.crops, draw.boxes)],
                out=patched[i])
        weights = area_weights([box[2] * box[3] for box in draw.boxes], total)
        for source, weight in zip(draw.sources, weights):
            if source is not None:
                mixed[i] += weight * labels[source]
    dtype = np.float32 if labels.dtype == np.float32 else np.float64
    return patched, mixed.astype(dtype, copy=False)


@dataclass(frozen=True)
class BetaSchedule:
    """Beta rising linearly from ``beta_min`` to ``beta_max`` between two epochs.

    ``schedule(epoch)`` is ``beta_min`` up to epoch ``start``, ``beta_max`` from
    epoch ``end`` on, and linear in between. Epochs count from 0, as Keras
    callbacks and ``for epoch in range(E)`` do. Picklable; parse the command
    line's form with ``BetaSchedule.parse("0.01:1.0:20:90")``.
    """

    beta_min: float
    beta_max: float
    start: int
    end: int

    def __post_init__(self):
        for name in ("beta_min", "beta_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an epoch number >= 0, got {value!r}")
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) must not come before start ({self.start})")

    def __call__(self, epoch: int) -> float:
        if epoch <= self.start:
            return float(self.beta_min)
        if epoch >= self.end:
            return float(self.beta_max)
        share = (epoch - self.start) / (self.end - self.start)
        return self.beta_min + (self.beta_max - self.beta_min) * share

    @classmethod
    def parse(cls, text: str) -> BetaSchedule:
        """``"BETA_MIN:BETA_MAX:START:END"`` -> a schedule (ValueError saying why not)."""
        parts = str(text).split(":")
        try:
            if len(parts) != 4:
                raise ValueError
            low, high, start, end = float(parts[0]), float(parts[1]), int(parts[2]), int(parts[3])
        except ValueError:
            raise ValueError(f"expected BETA_MIN:BETA_MAX:START_EPOCH:END_EPOCH such as "
                             f"0.01:1.0:20:90, got {text!r}") from None
        return cls(low, high, start, end)

    def to_text(self) -> str:
        return f"{self.beta_min!r}:{self.beta_max!r}:{self.start}:{self.end}"


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
                  seed=DEFAULT_SEED, batch_size: int = DEFAULT_BATCH_SIZE,
                  per_sample: bool = False, fmt: str = "png",
                  hard_label: str | None = None) -> list:
    """Plan ``count`` montages from ``images``: (relative path, class) pairs, in order.

    The draws are ``draw_montages``' from one generator seeded with ``seed``
    (an int, or a sequence of ints such as (seed, epoch)), so the first
    montages of a longer run are the montages of a shorter one.
    """
    width, height = size
    classes = sorted({label for _, label in images})
    rng = np.random.default_rng(seed)
    digits = max(5, len(str(count)))
    plans = []
    for number, draw in enumerate(draw_montages(rng, count, len(images), size, beta,
                                                batch_size, per_sample)):
        quadrants = []
        for position, box, source, crop in zip(POSITIONS, draw.boxes, draw.sources, draw.crops):
            if source is None:
                quadrants.append(Quadrant(position, box))
                continue
            path, label = images[source]
            quadrants.append(Quadrant(position, box, path, label, (*crop, box[2], box[3])))
        majority = None
        if hard_label == "majority":
            majority = majority_class(label_weights(quadrants, classes, width, height))
        plans.append(MontagePlan(number + 1, f"{NAME_PREFIX}{number + 1:0{digits}d}.{fmt}",
                                 draw.batch, draw.fractions, draw.boundary, tuple(quadrants),
                                 majority))
    return plans


def class_weights(plan: MontagePlan, classes: list, size: tuple) -> tuple[tuple, dict]:
    """(weight per quadrant, weight per class) as written: ``area_weights``, summed per class."""
    width, height = size
    per_quadrant = area_weights([quadrant.area for quadrant in plan.quadrants], width * height)
    per_class = dict.fromkeys(classes, 0.0)
    for quadrant, weight in zip(plan.quadrants, per_quadrant):
        if quadrant.label is not None:
            per_class[quadrant.label] += weight  # exact: multiples of 2**-52 up to 1
    return per_quadrant, per_class


def montage_record(plan: MontagePlan, classes: list, size: tuple, beta: float) -> dict:
    """One line of montages.jsonl: enough to trace every pixel to its source."""
    width, height = size
    per_quadrant, per_class = class_weights(plan, classes, size)
    record = {
        "filename": plan.filename,
        "size": [width, height],
        "beta": beta,
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
            "weight": weight,
        } for quadrant, weight in zip(plan.quadrants, per_quadrant)],
        "labels": {name: weight for name, weight in per_class.items() if weight},
    }
    if plan.majority is not None:
        record["majority"] = plan.majority
    return record


def labels_csv(plans: list, classes: list, size: tuple) -> str:
    """Header ``filename,<class>...`` then one row per montage; each row sums to exactly 1."""
    return tiles.labels_csv(((plan.filename, class_weights(plan, classes, size)[1])
                             for plan in plans), classes)


# --- worker --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkTask:
    """A chunk of montages for one worker: plain, picklable data (stores as specs, never
    open filesystems)."""

    input: StoreSpec  # the input folder or URL prefix
    output: StoreSpec  # the output folder or URL prefix
    folder: str  # the epoch's folder in the output ('' without --epochs)
    size: tuple
    fmt: str
    montages: tuple


@dataclass
class ChunkResult:
    folder: str = ""  # the epoch's folder in the output
    written: list = field(default_factory=list)       # filenames
    failures: list = field(default_factory=list)      # (filename, reason)
    bad_sources: dict = field(default_factory=dict)   # relative path -> reason
    decoded: set = field(default_factory=set)         # relative paths read
    stop: str | None = None  # a write error that stops the run (a full disk): its message


def make_chunk(task: ChunkTask) -> ChunkResult:
    """Worker: decode each source of the chunk once, then compose, encode and write."""
    result = ChunkResult(task.folder)
    source_store, destination = task.input.open(), task.output.open()
    resized = {}
    for plan in task.montages:
        for source in plan.sources:
            if source in resized or source in result.bad_sources:
                continue
            try:
                resized[source] = prepare_source(source_store, source, task.size)
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
        key = _key(task.folder, plan.filename)
        try:
            data = imagefiles.encode(montage, task.fmt, JPEG_QUALITY)
            destination.publish(key, data)
            if plan.majority is not None:
                key = _key(task.folder, f"{MAJORITY_DIR}/{plan.majority}/{plan.filename}")
                destination.publish(key, data)
        except OSError as exc:
            if exc.errno in STOPS_RUN:  # every later write would fail too
                result.stop = str(output_error(destination.name(key), exc))
                break
            result.failures.append((plan.filename, f"cannot write ({exc})"))
            continue
        except ValueError as exc:
            result.failures.append((plan.filename, f"cannot write ({exc})"))
            continue
        result.written.append(plan.filename)
    return result


# --- running -------------------------------------------------------------------------------

@dataclass
class RicapReport(JobReport):
    bad_sources: int = 0
    failed_montages: int = 0
    planned: int = 0
    dry_run: bool = False
    epochs: list = field(default_factory=list)  # (folder, beta) per epoch, with --epochs

    def summary(self) -> str:
        if self.dry_run:
            return (f"dry run: {self.planned} montages planned, {self.planned - self.skipped} "
                    f"to make, {self.skipped} already done; nothing written")
        return (f"{self.images_read} source images read, {self.written} montages written, "
                f"{self.failed_montages} failed, {self.skipped} skipped (already done), "
                f"{self.bad_sources} unreadable sources, {self.seconds:.1f} s")

    def to_json(self) -> dict:
        """JobReport's summary, with montages counted as ``failed`` and the plan's numbers."""
        summary = {**super().to_json(), "command": "ricap", "dry_run": self.dry_run,
                   "planned": self.planned, "failed": self.failed_montages,
                   "bad_sources": self.bad_sources}
        if self.epochs:
            summary["epochs"] = [{"epoch": number, "folder": folder, "beta": beta}
                                 for number, (folder, beta) in enumerate(self.epochs)]
        return summary


@dataclass(frozen=True)
class RicapSettings:
    """Every option of one ricap, checked once (``of``): what ``make_montages`` takes.
    The fields of ``RECORDED`` decide the montages: what a resumed run must match."""

    input: Path | str  # a folder of class folders, or a URL
    output: Path | str
    count: int
    size: tuple
    beta: float
    seed: int
    batch_size: int
    per_sample: bool
    fmt: str
    hard_label: str | None
    epochs: int | None = None
    beta_schedule: str | None = None  # BETA_MIN:BETA_MAX:START:END, with epochs
    overwrite: bool = False

    RECORDED = ("count", "size", "beta", "seed", "batch_size", "per_sample", "fmt",
                "hard_label", "epochs", "beta_schedule")

    @classmethod
    def of(cls, input, output, *, count: int, size, beta: float | None = None,
           seed: int = DEFAULT_SEED, batch_size: int = DEFAULT_BATCH_SIZE,
           per_sample: bool = False, fmt: str = "png", hard_label: str | None = None,
           epochs: int | None = None, beta_schedule=None,
           overwrite: bool = False) -> RicapSettings:
        """Check the options (UsageError naming the flag) and freeze them.

        ``size`` is (width, height) or a "WxH" string. ``beta`` defaults to 0.3.
        With ``epochs`` E, each of E folders ``epoch_000`` ... gets ``count``
        montages of its own (drawn from (seed, epoch)); ``beta_schedule``
        ("BETA_MIN:BETA_MAX:START:END" or a ``BetaSchedule``) sets each epoch's
        beta. ``input`` and ``output`` are folders or object-store URLs (s3://,
        az://, gs://); ``overwrite`` replaces the outputs of an earlier run.
        """
        size = parse_size(size) if isinstance(size, str) else tuple(size)
        if isinstance(beta_schedule, BetaSchedule):
            beta_schedule = beta_schedule.to_text()
        rules = [
            (count < 1, "--count must be at least 1"),
            (count * (epochs or 1) > MAX_MONTAGES,
             f"--count x --epochs is {count * (epochs or 1):,}, over the limit of "
             f"{MAX_MONTAGES:,} montages a run (the plan is held in memory); split the run"),
            (beta is not None and not (isinstance(beta, (int, float)) and math.isfinite(beta)
                                       and beta > 0),
             f"--beta must be a number > 0 (got {beta!r})"),
            (beta is not None and beta_schedule is not None,
             "--beta and --beta-schedule: give one (the schedule sets beta per epoch)"),
            (beta_schedule is not None and epochs is None, "--beta-schedule needs --epochs"),
            (epochs is not None and epochs < 1, "--epochs must be at least 1"),
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
        if beta_schedule is not None:
            try:
                beta_schedule = BetaSchedule.parse(beta_schedule).to_text()
            except ValueError as exc:
                raise UsageError(f"--beta-schedule: {exc}") from None
        beta = DEFAULT_BETA if beta is None else float(beta)
        return cls(locations.location(input), locations.location(output), count, size, beta, seed,
                   batch_size, per_sample, fmt, hard_label, epochs, beta_schedule, overwrite)

    def epoch_betas(self) -> list:
        """(folder relative to the output folder, beta) per epoch; one ('', beta) without."""
        if self.epochs is None:
            return [("", self.beta)]
        schedule = BetaSchedule.parse(self.beta_schedule) if self.beta_schedule else None
        digits = max(3, len(str(self.epochs - 1)))
        return [(f"{EPOCH_PREFIX}{epoch:0{digits}d}",
                 schedule(epoch) if schedule else self.beta) for epoch in range(self.epochs)]

    def seed_of(self, epoch: int):
        """Epoch e of an --epochs run draws from (seed, e); a single run from seed."""
        return self.seed if self.epochs is None else (self.seed, epoch)


@dataclass(frozen=True)
class Epoch:
    """One folder of montages: the whole output folder, or epoch_NNN/ with --epochs."""

    name: str      # relative to the output folder; '' without --epochs
    beta: float
    plans: list

    def key(self, name: str) -> str:
        """A file of this epoch, relative to the output folder (or prefix)."""
        return _key(self.name, name)


def _key(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def scan_classes(input_dir) -> tuple[list, list, list]:
    """(images as (relative posix path, class), sorted classes, other files).

    Classes are the immediate subfolders of ``input_dir`` (a folder, or a URL
    prefix) that hold images (at any depth). Images directly in ``input_dir``
    belong to no class: an error.
    """
    images, others = stores.open_store(input_dir).scan()
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


def _plan_epochs(settings: RicapSettings, images: list) -> list:
    """Every montage of the run, per output folder (one, or one per epoch)."""
    epochs = []
    for number, (name, beta) in enumerate(settings.epoch_betas()):
        plans = plan_montages(images, settings.count, settings.size, beta=beta,
                              seed=settings.seed_of(number), batch_size=settings.batch_size,
                              per_sample=settings.per_sample, fmt=settings.fmt,
                              hard_label=settings.hard_label)
        epochs.append(Epoch(name, beta, plans))
    return epochs


def _settings_record(settings: RicapSettings, images: list) -> dict:
    """ricap.json: the settings and a digest of the sources the plan draws from."""
    # surrogateescape: a name that is not UTF-8 counts as its own bytes.
    listing = "\n".join(f"{path}\t{label}" for path, label in images).encode(
        "utf-8", "surrogateescape")
    record = {name: getattr(settings, name) for name in settings.RECORDED}
    record["size"] = list(settings.size)
    record["sources"] = {"count": len(images),
                         "sha256": hashlib.sha256(listing).hexdigest()[:16]}
    return record


def _previous_outputs(store) -> list:
    """Files of an earlier ricap run in the output (by augcli's own names only), as posix
    paths relative to it, from one listing; a folder's listing never goes through a
    symbolic link to a folder, so none is reached through a link out of it."""
    return list(filter(_ricap_name, store.keys()))


def _ricap_name(key: str) -> bool:
    """ricap.json, or in the output or an epoch_* folder: labels.csv, montages.jsonl, a
    montage, or a montage's copy in majority/<class>/."""
    if key == SETTINGS_NAME:
        return True
    parts = key.split("/")
    if len(parts) > 1 and parts[0].startswith(EPOCH_PREFIX):
        parts = parts[1:]
    if len(parts) == 1:
        return parts[0] in (LABELS_NAME, MONTAGES_NAME) or _montage_name(parts[0])
    return len(parts) == 3 and parts[0] == MAJORITY_DIR and _montage_name(parts[2])


def _montage_name(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name.endswith(tuple(f".{fmt}" for fmt in FORMATS))


def _finished(store, epochs: list, record: dict, overwrite: bool, dry_run: bool) -> set:
    """Montages an earlier run of this same plan finished: {(folder name, filename)}
    (``manifest.reconcile``, as every command resumes and refuses).

    ``ricap.json`` says which settings made the montages in the output; montage files
    with none to say so, an earlier run of other settings or other sources, and files
    that are not ricap's need ``overwrite``, which deletes the earlier run's files this
    one does not make (not in a dry run).
    """
    previous = _previous_outputs(store)
    try:
        earlier = json.loads(store.read(SETTINGS_NAME).decode("utf-8"))
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict):
        earlier = None
    montages = [{"output": name} for name in previous
                if name != SETTINGS_NAME and _montage_name(name.rsplit("/", 1)[-1])]
    known = {_fingerprint(earlier)} if earlier is not None else {None} if previous else set()
    resume = manifest.reconcile(
        store, manifest.check_names(store, manifest.Earlier(montages, fingerprints=known,
                                                            files=set(previous))),
        fingerprint=_fingerprint(record), planned=lambda: iter(_planned_names(epochs)),
        own=[SETTINGS_NAME], overwrite=overwrite, dry_run=dry_run,
        other_run=lambda: _other_run(store, record, earlier, previous))
    if overwrite and not dry_run:
        store.prune(resume.removed)  # the folders the removed files leave empty
    return {(epoch.name, plan.filename) for epoch in epochs for plan in epoch.plans
            if all(name in resume.finished for name in _files_of(epoch, plan))}


def _fingerprint(record: dict | None) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _other_run(store, record: dict, earlier: dict | None, previous: list) -> str:
    """What a refusal of an output holding another run's montages says."""
    where = manifest.where(store)
    advice = "; rerun with --overwrite to replace them, or choose another output folder"
    if earlier is None:
        return (f"{where} already holds outputs of a ricap run (e.g. {previous[0]}) and no "
                f"readable {SETTINGS_NAME} says which{advice}")
    differ = sorted(key for key in record.keys() | earlier.keys()
                    if record.get(key) != earlier.get(key))
    flags = {"sources": "input images", "fmt": "--format"}
    names = ", ".join(flags.get(key, f"--{key.replace('_', '-')}") for key in differ)
    return f"{where} holds montages of another ricap run ({names} differ){advice}"


def _files_of(epoch: Epoch, plan: MontagePlan) -> list:
    """The montage and, with a hard label, its copy: both are written whole or not at all."""
    copy = [] if plan.majority is None else \
        [epoch.key(f"{MAJORITY_DIR}/{plan.majority}/{plan.filename}")]
    return [epoch.key(plan.filename), *copy]


def _start_output(store, record: dict) -> None:
    """Drop a killed run's temp files, record the settings."""
    try:
        store.tidy()
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        store.publish(SETTINGS_NAME, text.encode("utf-8"))
    except OSError as exc:
        raise output_error(store.name(SETTINGS_NAME), exc) from None


def _planned_names(epochs: list) -> list:
    """Every file the run may write, relative to the output folder."""
    names = [SETTINGS_NAME]
    for epoch in epochs:
        prefix = f"{epoch.name}/" if epoch.name else ""
        names += [prefix + LABELS_NAME, prefix + MONTAGES_NAME]
        for plan in epoch.plans:
            names.append(prefix + plan.filename)
            if plan.majority is not None:
                names.append(f"{prefix}{MAJORITY_DIR}/{plan.majority}/{plan.filename}")
    return names


def _chunks(plans: list, workers: int, size: tuple) -> list:
    """Chunks of montages: a few per worker for balance, bounded in memory per task."""
    per_source = size[0] * size[1] * 3
    by_memory = max(1, CHUNK_BYTES // (4 * per_source))
    length = max(1, min(MAX_CHUNK, by_memory, math.ceil(len(plans) / (workers * 4))))
    return [plans[start:start + length] for start in range(0, len(plans), length)]


def _make(specs: tuple, epochs: list, finished: set, settings: RicapSettings,
          report: RicapReport, executor: Executor, progress: bool, written: set) -> None:
    """Make every montage not yet finished on ``executor``: add each one written to
    ``written`` as (folder name, filename) as it lands, count reads and failures into
    ``report``. ``specs``: the input's and the output's specs."""
    slots = executor.slots
    tasks = []
    for epoch in epochs:
        todo = [plan for plan in epoch.plans if (epoch.name, plan.filename) not in finished]
        tasks += [ChunkTask(specs[0], specs[1], epoch.name, settings.size, settings.fmt,
                            tuple(chunk))
                  for chunk in _chunks(todo, slots, settings.size)]
    decoded, bad = set(), {}
    bar = progress_bar(sum(len(task.montages) for task in tasks), progress)
    bar.set_description("ricap")
    try:
        for result in executor.map(make_chunk, tasks, count=len(tasks)):
            name = result.folder
            decoded |= result.decoded
            written.update((name, filename) for filename in result.written)
            for source, reason in sorted(result.bad_sources.items()):
                if source not in bad:
                    bad[source] = reason
                    report.fail(source, reason)
            for filename, reason in result.failures:
                report.fail(f"{name}/{filename}" if name else filename, reason)
                report.failed_montages += 1
            bar.update(len(result.written) + len(result.failures))
            if result.stop is not None:
                raise OutputError(result.stop)
    finally:
        bar.close()
        report.images_read = len(decoded)
        report.written = len(written)
        report.bad_sources = len(bad)


def _write_indexes(store, epochs: list, done: set, classes: list, size: tuple) -> None:
    """labels.csv and montages.jsonl of each folder: every montage of the plan on disk."""
    for epoch in epochs:
        made = [plan for plan in epoch.plans if (epoch.name, plan.filename) in done]
        lines = (manifest.encode_line(montage_record(plan, classes, size, epoch.beta))
                 for plan in made)
        files = {MONTAGES_NAME: b"".join(lines),
                 LABELS_NAME: labels_csv(made, classes, size).encode("utf-8", "surrogateescape")}
        for name, data in files.items():
            try:
                store.publish(epoch.key(name), data)
            except OSError as exc:
                raise output_error(store.name(epoch.key(name)), exc) from None


def make_montages(settings: RicapSettings, *, dry_run: bool = False, workers: int | None = None,
                  progress: bool = False, notify=None, cluster=None,
                  client=None) -> RicapReport:
    """Write the RICAP montages of ``settings`` (``RicapSettings.of``) from the input's class
    folders; what ``augcli ricap`` calls.

    A rerun of the same settings over the same images finishes what an
    interrupted run left; other earlier outputs need ``overwrite``.
    ``dry_run`` plans and counts, and writes nothing. ``notify`` receives one
    line per unreadable source and per montage that could not be made.

    ``cluster`` (``"local"``, a Dask scheduler address or file) or ``client`` (a
    ``distributed.Client``) makes the montages on Dask, as ``run_recipe`` does: same
    bytes.
    """
    started = time.perf_counter()
    input_dir, output_dir, overwrite = settings.input, settings.output, settings.overwrite
    specs = stores.open_pair(input_dir, output_dir)
    store = specs[1].open()
    images, classes, others = scan_classes(input_dir)
    planned = _plan_epochs(settings, images)
    store.check_inside(_planned_names(planned))
    record = _settings_record(settings, images)
    workers = workers or default_workers()
    if dry_run:
        cluster = client = None  # a dry run reads no image: no cluster to start
    sight = sight_of(specs[0], images[0][0]) if (cluster or client) and images else None
    with open_executor(workers, cluster, client, sight=sight) as executor, \
            manifest.guard(store, dry_run):
        finished = _finished(store, planned, record, overwrite, dry_run)
        report = RicapReport(ignored=others, notify=notify, output_dir=output_dir,
                             dry_run=dry_run, planned=sum(len(epoch.plans) for epoch in planned),
                             skipped=len(finished))
        if settings.epochs is not None:
            report.epochs = [(epoch.name, epoch.beta) for epoch in planned]
        if not dry_run:
            _start_output(store, record)
            written: set = set()
            try:
                _make(specs, planned, finished, settings, report, executor, progress, written)
            except BaseException:
                with contextlib.suppress(OutputError):  # the first error is the one to report
                    _write_indexes(store, planned, finished | written, classes, settings.size)
                raise
            _write_indexes(store, planned, finished | written, classes, settings.size)
    report.seconds = time.perf_counter() - started
    return report
