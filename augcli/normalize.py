"""Normalize a folder of images as Keras would, without holding the dataset in memory.

Per-image methods (minmax, samplewise, caffe, tf, torch) run wholly in the
workers: decode -> prepare -> transform -> encode -> atomic write.

Dataset methods need statistics over the whole folder first, gathered in one
streaming pass whose memory does not grow with the number of images:

* featurewise: each worker returns one image's per-channel moments (count,
  mean, sum of squared deviations); the parent merges them (Chan et al.).
* zca: each worker returns one prepared image as a flat row of D = W*H*C
  values. While there are fewer rows than values (n < D) the parent keeps
  the rows (n x D, smaller than a D x D matrix) and solves the small n x n
  problem XXᵀ; from the D-th row on it folds rows, a batch at a time, into
  the D x D matrix XᵀX, whose eigendecomposition costs O(D³) (seconds at
  32x32 RGB, D = 3,072; minutes from 48x48). Applying whitening needs the
  D x D matrix W, so the parent whitens rows in batches (one matrix product
  each) and writes those outputs itself.

The output folder gets a ``manifest.jsonl``: a header line with the settings
and statistics, then one line per file written (source, output, method and
their fingerprints). A rerun with the same settings and statistics skips the
files already written (a killed run finishes exactly as an uninterrupted one
would); an output folder holding other outputs is refused unless overwrite.

Results of the pool are put back in input order before they are summed, so
statistics and output bytes do not depend on the number of workers.
Everything is computed in float64 and stored as float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import geometry, imagefiles, locations, manifest, stores
from .errors import STOPS_RUN, ImageReadError, OutputError, UsageError, output_error
from .executors import Executor, default_workers, open_executor
from .geometry import parse_size
from .probe import sight_of
from .report import JobReport, elapsed_spinner, progress_bar
from .stores import MANIFEST_NAME, StoreSpec

METHODS = ("minmax", "samplewise", "featurewise", "zca", "caffe", "tf", "torch")
FITTED_METHODS = ("featurewise", "zca")
FORMATS = ("npy", "png")
RESIZE_MODES = ("stretch", "letterbox")
COLORS = ("rgb", "grey")

STD_EPSILON = 1e-6          # Keras adds this to every std it divides by
DEFAULT_ZCA_EPSILON = 1e-6  # Keras' ImageDataGenerator(zca_epsilon=1e-6)
DEFAULT_ZCA_SIZE = (32, 32)  # D = 3,072 values in RGB: a fit of any number of images in seconds
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

# D x D float64 matrices alive at once while fitting ZCA: XᵀX, then eigh's copy of
# it, its eigenvectors and about two more of LAPACK workspace.
ZCA_FIT_MATRICES = 5
ZCA_APPLY_MATRICES = 1
ROW_BATCH_BYTES = 64 * 2**20  # rows folded into XᵀX (or whitened) per matrix product
STATS_FORMAT_VERSION = 1


# --- the formulas (float64 arrays, H x W x C, channels last) --------------------------

def minmax(x: np.ndarray, per_channel: bool = False) -> np.ndarray:
    """(x - min) / (max - min) * 255; a flat image (or channel) becomes 0, like sklearn."""
    axes = (0, 1) if per_channel else None
    low = x.min(axis=axes, keepdims=True)
    span = x.max(axis=axes, keepdims=True) - low
    flat = span == 0
    return np.where(flat, 0.0, (x - low) / np.where(flat, 1.0, span) * 255.0)


def samplewise(x: np.ndarray) -> np.ndarray:
    """Keras samplewise_center + samplewise_std_normalization: over all pixels and channels."""
    return (x - x.mean()) / (x.std() + STD_EPSILON)


def featurewise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Keras featurewise_center + featurewise_std_normalization with dataset statistics."""
    return (x - mean) / (std + STD_EPSILON)


def caffe(x: np.ndarray) -> np.ndarray:
    """Keras preprocess_input(mode="caffe"): RGB -> BGR, then subtract the ImageNet BGR mean."""
    return x[..., ::-1] - np.array(CAFFE_MEAN_BGR)


def tf(x: np.ndarray) -> np.ndarray:
    """Keras preprocess_input(mode="tf"): scale 0..255 to -1..1."""
    return x / 127.5 - 1.0


def torch(x: np.ndarray) -> np.ndarray:
    """Keras preprocess_input(mode="torch"): scale to 0..1, then ImageNet mean and std."""
    return (x / 255.0 - np.array(TORCH_MEAN)) / np.array(TORCH_STD)


def zca_components_from_rows(centred: np.ndarray, epsilon: float) -> np.ndarray:
    """The ZCA matrix W of current Keras from the n x D centred rows themselves, when n < D.

    Keras' U, s come from ``svd(Xᵀ, full_matrices=False)``: n singular vectors.
    They are those of the small n x n matrix XXᵀ = V diag(s²) Vᵀ, with
    U = Xᵀ V diag(1/s): an n x n eigendecomposition instead of a D x D one
    (for 4 images at 32x32 RGB, 4 x 4 instead of 3,072 x 3,072). Directions
    with s = 0 (images that span fewer than n dimensions, e.g. copies) have
    no defined U; they are left out, so they map to 0 like every direction
    the images do not span.
    """
    count = len(centred)
    eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)  # ascending
    spanned = eigenvalues > eigenvalues[-1] * max(centred.shape) * np.finfo(np.float64).eps
    singular = np.sqrt(eigenvalues[spanned])
    kept = centred.T @ (vectors[:, spanned] / singular)
    return (kept * (np.sqrt(count) / (singular + epsilon))) @ kept.T


def zca_components(gram: np.ndarray, count: int, epsilon: float) -> np.ndarray:
    """The ZCA matrix W of current Keras, from XᵀX instead of X.

    Keras (ImageDataGenerator.fit in Keras 3's legacy preprocessing and late
    Keras 2 releases) takes U, s from ``svd(Xᵀ, full_matrices=False)`` and sets
    W = U diag(√n / (s + ε)) Uᵀ. X itself cannot be held (n x D), so we
    eigendecompose XᵀX = U diag(s²) Uᵀ, accumulated in a streaming pass: same
    U, same s. ``full_matrices=False`` keeps only min(n, D) singular vectors,
    so we keep only the largest min(n, D) eigenpairs.
    """
    eigenvalues, vectors = np.linalg.eigh(gram)  # ascending
    del gram  # the caller passes its only reference: free D x D before building W
    keep = min(count, len(eigenvalues))
    singular = np.sqrt(np.clip(eigenvalues[-keep:], 0.0, None))
    kept = vectors[:, -keep:]
    return (kept * (np.sqrt(count) / (singular + epsilon))) @ kept.T


_PER_IMAGE = {"samplewise": samplewise, "caffe": caffe, "tf": tf, "torch": torch}


# --- streaming statistics ------------------------------------------------------------

@dataclass(frozen=True)
class ChannelMoments:
    """Count, mean and sum of squared deviations per channel: mergeable and tiny.

    Workers summarize their image so only a few numbers cross the process
    boundary; merging partial moments (Chan, Golub and LeVeque) avoids the
    cancellation of sum-of-squares minus squared-sum.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, pixels: np.ndarray, scale: float = 1.0) -> ChannelMoments:
        """Exact moments of 8- or 16-bit pixels (channels last), times ``scale``.

        Per-channel histograms give the sums as exact integers, and Python's
        int / int division rounds the results once: no float error at all,
        and about five times faster than float64 arithmetic on the image.
        """
        flat = pixels.reshape(-1, pixels.shape[-1])
        count, means, m2s = len(flat), [], []
        for channel in flat.T:
            histogram = np.bincount(channel)
            values = np.arange(len(histogram), dtype=np.int64)
            total, squares = int(values @ histogram), int((values * values) @ histogram)
            means.append(total / count * scale)
            m2s.append((count * squares - total * total) / count * scale**2)
        return cls(count, np.array(means), np.array(m2s))

    def merge(self, other: ChannelMoments) -> ChannelMoments:
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / count)
        return ChannelMoments(count, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Population std (ddof=0), what np.std and so Keras use."""
        return np.sqrt(self.m2 / self.count)


class GramAccumulator:
    """Streams rows x (flat images) into XᵀX about Keras' per-channel dataset mean.

    The centring mean is only known at the end, so we sum (x - k)(x - k)ᵀ for
    a fixed shift k (the first batch's mean row, which keeps the numbers small
    and the cancellation negligible) and correct for the true mean once done.
    """

    def __init__(self, channels: int):
        self.channels = channels
        self.count = 0
        # Set by the first ``add``; the gram goes again once ``centred_gram`` hands it out.
        self.shift: np.ndarray | None = None
        self.sums: np.ndarray | None = None
        self.gram: np.ndarray | None = None

    def add(self, rows: np.ndarray) -> None:
        if self.gram is None:
            self.shift = rows.mean(axis=0)
            self.sums = np.zeros_like(self.shift)
            self.gram = np.zeros((rows.shape[1], rows.shape[1]))
        assert self.shift is not None and self.sums is not None  # set with the first gram
        shifted = rows - self.shift
        self.gram += shifted.T @ shifted
        self.sums += shifted.sum(axis=0)
        self.count += len(rows)

    def channel_mean(self) -> np.ndarray:
        """Per-channel mean over all images and pixels (Keras' featurewise mean)."""
        assert self.sums is not None and self.shift is not None, "no rows were added"
        totals = (self.sums + self.count * self.shift).reshape(-1, self.channels)
        return totals.sum(axis=0) / (self.count * len(totals))

    def centred_gram(self, mean: np.ndarray) -> np.ndarray:
        """XᵀX of the centred rows, in place.

        With y = x - k and m = mean - k: Σ(y-m)(y-m)ᵀ = Σyyᵀ - a mᵀ - m aᵀ
        where a = Σy - n m / 2.
        """
        assert self.gram is not None and self.sums is not None and self.shift is not None, \
            "no rows were added, or the gram was handed out already"
        offset = np.tile(mean, len(self.shift) // self.channels) - self.shift
        correction = np.outer(self.sums - self.count * offset / 2, offset)
        gram, self.gram = self.gram, None
        gram -= correction
        gram -= correction.T
        return gram


class ZcaAccumulator:
    """Streams rows into whichever is smaller: the rows themselves while there are fewer
    than D of them, else XᵀX (``GramAccumulator``); then solves for W the cheap way."""

    def __init__(self, channels: int, features: int):
        self.channels, self.features = channels, features
        self.batches: list[np.ndarray] = []  # held rows, while fewer than ``features``
        self.count = 0
        self.gram: GramAccumulator | None = None

    def add(self, rows: np.ndarray) -> None:
        self.count += len(rows)
        if self.gram is None and self.count < self.features:
            self.batches.append(rows)
            return
        if self.gram is None:  # the D-th row: fold what was held, in order, then stream
            self.gram = GramAccumulator(self.channels)
            for held in self.batches:
                self.gram.add(held)
            self.batches = []
        self.gram.add(rows)

    @property
    def solve_text(self) -> str:
        """What the solve is about to do, for the progress line."""
        side = self.count if self.gram is None else self.features
        return f"{side:,} x {side:,} eigendecomposition"

    def solve(self, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
        """(per-channel mean, W) of the rows added."""
        if self.gram is not None:
            mean = self.gram.channel_mean()
            return mean, zca_components(self.gram.centred_gram(mean), self.count, epsilon)
        rows = np.concatenate(self.batches)
        self.batches = []
        mean = rows.reshape(-1, self.channels).mean(axis=0)
        rows -= np.tile(mean, self.features // self.channels)
        return mean, zca_components_from_rows(rows, epsilon)


# --- preparing images ------------------------------------------------------------------

@dataclass(frozen=True)
class Preparation:
    """How every image is brought to one layout before a method sees it.

    Keras' load_img order: drop alpha, convert the colour mode, then resize.
    """

    color: str = "rgb"
    size: tuple | None = None  # (width, height)
    resize: str = "stretch"

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    def layout(self, image: np.ndarray) -> np.ndarray:
        """An array from imagefiles.read_image -> H x W x C, still 8 or 16 bit."""
        image = _to_color(_without_alpha(image), self.color)
        if self.size is not None:
            image = geometry.letterbox(image, *self.size) if self.resize == "letterbox" \
                else geometry.resize(image, *self.size)
        return image.reshape(image.shape[0], image.shape[1], -1)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """An array from imagefiles.read_image -> float64 H x W x C on the 0..255 scale."""
        return self.layout(image) * _scale(image)

    def moments(self, image: np.ndarray) -> ChannelMoments:
        return ChannelMoments.of(self.layout(image), _scale(image))


def _scale(image: np.ndarray) -> float:
    """16-bit values are divided by 257 (65535 -> 255): every method assumes the 8-bit scale."""
    return 1 / 257 if image.dtype == np.uint16 else 1.0


def _without_alpha(image: np.ndarray) -> np.ndarray:
    """Drop alpha without compositing, as Pillow's convert('RGB') does for Keras."""
    if image.ndim == 3 and image.shape[2] in (2, 4):
        return image[..., :image.shape[2] - 1]
    return image


def _to_color(image: np.ndarray, color: str) -> np.ndarray:
    if color == "rgb":
        return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    if image.ndim == 3:  # RGB (always 8-bit) -> L with Pillow's weights, as Keras' grayscale
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"))
    return image


# --- encoding outputs ------------------------------------------------------------------

def to_8bit(result: np.ndarray, method: str) -> np.ndarray:
    """minmax is already 0..255; any other result is min-max stretched per image to 0..255."""
    scaled = result if method == "minmax" else minmax(result)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_output(result: np.ndarray, fmt: str, method: str) -> bytes:
    """npy: float32 H x W x C in the method's channel order. png: 8-bit, natural colours."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, result.astype(np.float32), allow_pickle=False)
        return buffer.getvalue()
    pixels = to_8bit(result, method)
    if method == "caffe":
        pixels = pixels[..., ::-1]  # BGR -> RGB so the picture looks right
    if pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return imagefiles.encode(np.ascontiguousarray(pixels), "png", 0)


# --- fitted statistics -----------------------------------------------------------------

@dataclass(frozen=True)
class FeaturewiseStats:
    """Per-channel dataset mean and std; saved as JSON so people can read them."""

    mean: tuple
    std: tuple
    images: int
    preparation: Preparation

    def to_bytes(self) -> bytes:
        record = {"augcli_stats": STATS_FORMAT_VERSION, "method": "featurewise",
                  "images": self.images, "mean": list(self.mean), "std": list(self.std),
                  **_preparation_record(self.preparation)}
        return (json.dumps(record, indent=2) + "\n").encode("utf-8")

    def fingerprint(self) -> str:
        """Identifies the numbers the outputs depend on (the manifest's ``stats``)."""
        numbers = {"mean": list(self.mean), "std": list(self.std),
                   **_preparation_record(self.preparation)}
        return _digest(json.dumps(numbers, sort_keys=True).encode())

    @classmethod
    def from_record(cls, record: dict) -> FeaturewiseStats:
        return cls(tuple(map(float, record["mean"])), tuple(map(float, record["std"])),
                   int(record["images"]), _preparation_of(record))


@dataclass(frozen=True, eq=False)
class ZcaStats:
    """Per-channel mean and the D x D whitening matrix; saved as .npz (binary, exact)."""

    mean: np.ndarray
    components: np.ndarray
    epsilon: float
    images: int
    preparation: Preparation

    def whiten(self, rows: np.ndarray) -> np.ndarray:
        """Keras' standardize: subtract the per-channel mean, then x_flat · W."""
        return (rows - np.tile(self.mean, rows.shape[1] // len(self.mean))) @ self.components

    def fingerprint(self) -> str:
        """Identifies the numbers the outputs depend on (the manifest's ``stats``)."""
        settings = {"epsilon": self.epsilon, **_preparation_record(self.preparation)}
        return _digest(json.dumps(settings, sort_keys=True).encode(),
                       np.ascontiguousarray(self.mean, dtype=np.float64),
                       np.ascontiguousarray(self.components, dtype=np.float64))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        record = {"augcli_stats": STATS_FORMAT_VERSION, "method": "zca", "images": self.images,
                  "epsilon": self.epsilon, **_preparation_record(self.preparation)}
        np.savez(buffer, meta=np.array(json.dumps(record)), mean=self.mean,
                 components=self.components)
        return buffer.getvalue()


def _digest(*parts) -> str:
    """16 hex digits of SHA-256 over bytes or C-contiguous arrays (hashed in place)."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.hexdigest()[:16]


def _preparation_record(preparation: Preparation) -> dict:
    size = list(preparation.size) if preparation.size else None
    return {"color": preparation.color, "size": size, "resize": preparation.resize}


def _preparation_of(record: dict) -> Preparation:
    size = tuple(record["size"]) if record.get("size") else None
    return Preparation(record["color"], size, record.get("resize", "stretch"))


def save_stats(path: Path, stats) -> None:
    imagefiles.write_atomic(Path(path), stats.to_bytes())


def load_stats(path: Path, method: str):
    """Read statistics saved by --fit-only; refuse a file made for another method."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"statistics file {path} does not exist; make it first with "
                         f"--fit-only --stats {path}")
    try:
        with open(path, "rb") as handle:
            is_npz = handle.read(4) == b"PK\x03\x04"
        if is_npz:
            return _load_zca(path, method)
        record = json.loads(path.read_text(encoding="utf-8"))
        _check_stats_method(path, record, method)
        return FeaturewiseStats.from_record(record)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read statistics from {path} ({exc})") from None


def _load_zca(path: Path, method: str) -> ZcaStats:
    with np.load(path, allow_pickle=False) as archive:
        record = json.loads(str(archive["meta"]))
        _check_stats_method(path, record, method)
        preparation = _preparation_of(record)
        check_zca_memory(preparation, ZCA_APPLY_MATRICES)
        return ZcaStats(archive["mean"], archive["components"], float(record["epsilon"]),
                        int(record["images"]), preparation)


def _check_stats_method(path: Path, record: dict, method: str) -> None:
    if record.get("method") != method:
        raise UsageError(f"{path} holds {record.get('method')} statistics, not {method}")


def memory_budget() -> int | None:
    """Half of physical memory: room for the matrices plus everything else running."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def check_zca_memory(preparation: Preparation, matrices: int, budget: int | None = None) -> None:
    """Refuse, before reading any image, a --size whose D x D matrices would not fit."""
    budget = memory_budget() if budget is None else budget
    assert preparation.size is not None  # zca always resizes (plan_normalize's default size)
    width, height = preparation.size
    features = width * height * preparation.channels
    matrix = features**2 * 8
    if budget is None or matrices * matrix <= budget:
        return
    largest = int((budget / (matrices * 8)) ** 0.5)
    side = int((largest / preparation.channels) ** 0.5)
    raise UsageError(
        f"--size {width}x{height} is too large for ZCA: {width}x{height}x{preparation.channels}"
        f" = {features:,} values per image need a {features:,} x {features:,} float64 matrix of "
        f"{_size_text(matrix)}, and ZCA holds {matrices} of them at once "
        f"({_size_text(matrices * matrix)}), over the budget of {_size_text(budget)} (half of "
        f"this machine's memory); the largest square size that fits is {side}x{side}")


def _size_text(count: int) -> str:
    return f"{count / 1e9:,.1f} GB" if count < 1e12 else f"{count / 1e12:,.0f} TB"


# --- work items --------------------------------------------------------------------------

@dataclass(frozen=True)
class Transform:
    """A per-image method with its parameters: what a worker applies."""

    method: str
    per_channel: bool = False
    mean: tuple = ()  # featurewise: the dataset's per-channel statistics
    std: tuple = ()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.method == "minmax":
            return minmax(x, self.per_channel)
        if self.method == "featurewise":
            return featurewise(x, np.array(self.mean), np.array(self.std))
        return _PER_IMAGE[self.method](x)


@dataclass(frozen=True)
class ImageTask:
    """One image for a worker: plain, picklable data (stores as specs, never open
    filesystems).

    ``job`` says what the worker returns: "moments" (featurewise fit), "row"
    (a flat image for ZCA) or "write" (transform, encode, publish).
    """

    index: int  # position in its pass (results are put back in this order)
    input: StoreSpec  # the input folder or URL prefix
    relative: str
    output: StoreSpec | None  # the output folder or URL prefix (None: fit only)
    destination: str | None  # the output's key in ``output``
    preparation: Preparation
    job: str
    transform: Transform | None = None
    fmt: str = "npy"
    number: int = 0  # position in the whole input folder, whatever the pass


@dataclass
class ImageResult:
    index: int
    relative: str
    destination: str | None  # the output's key
    number: int = 0
    payload: object = None  # moments or a row; the parent drops it once used
    failure: str | None = None
    decoded: bool = False  # a write can fail after a good decode
    stop: str | None = None  # a write error that stops the run (a full disk): its message


def process_image(task: ImageTask) -> ImageResult:
    """Worker: decode and prepare one image, then measure, flatten, or normalize and write it."""
    result = ImageResult(task.index, task.relative, task.destination, task.number)
    try:
        image = task.input.open().read_image(task.relative)
    except ImageReadError as exc:
        result.failure = exc.reason
        return result
    result.decoded = True
    preparation = task.preparation
    if task.job == "moments":
        result.payload = preparation.moments(image)
    elif task.job == "row":
        result.payload = preparation.apply(image).reshape(-1)
    else:
        assert task.output is not None and task.destination is not None and \
            task.transform is not None  # a "write" task
        try:
            result.failure = _write(task.output.open(), task.destination,
                                    task.transform(preparation.apply(image)), task.fmt,
                                    task.transform.method)
        except OutputError as exc:
            result.stop = str(exc)
    return result


def _write(store, key: str, result: np.ndarray, fmt: str, method: str) -> str | None:
    """Encode and publish whole (temp file + rename, or one object write); return the
    reason if that failed. Raises OutputError for a write error that every later write
    would meet too (a full disk)."""
    try:
        store.publish(key, encode_output(result, fmt, method))
    except OSError as exc:
        if exc.errno in STOPS_RUN:
            raise output_error(store.name(key), exc) from None
        return f"cannot write ({exc})"
    except ValueError as exc:
        return f"cannot write ({exc})"
    return None


# --- running -----------------------------------------------------------------------------

@dataclass
class NormalizeReport(JobReport):
    method: str = ""
    stats_path: str | None = None
    written_noun = "files"

    def summary(self) -> str:
        if self.stats_path:
            return (f"{self.images_read} images read, 0 files written, statistics saved to "
                    f"{self.stats_path}, {len(self.failures)} failed, {self.seconds:.1f} s")
        return super().summary()

    def to_json(self) -> dict:
        return {**super().to_json(), "method": self.method, "stats_file": self.stats_path}


@dataclass
class NormalizePlan:
    """Everything decided before any image is read; what ``--dry-run`` prints."""

    method: str
    fmt: str
    preparation: Preparation
    per_channel: bool
    epsilon: float
    saved: object  # statistics loaded from a --stats file to apply, or None
    stats_path: Path | None
    input_dir: Path | str  # a folder, or a URL
    output_store: StoreSpec | None  # the output folder or URL prefix; None: fit only
    tasks: list  # ImageTask per image, in input order
    ignored: list  # files that are not images
    outputs: dict = field(default_factory=dict)  # source -> output, relative posix paths
    settings: dict = field(default_factory=dict)  # what decides the bytes, but the statistics
    finished: dict = field(default_factory=dict)  # output -> record of an earlier run, file there
    stale: list = field(default_factory=list)  # with overwrite: earlier outputs no longer made
    overwrite: bool = False

    def output(self):
        """The output's store, opened in this process (a folder or an object store)."""
        assert self.output_store is not None  # not --fit-only
        return self.output_store.open()

    @property
    def fits(self) -> bool:
        """Whether statistics are fitted on the input folder first."""
        return self.method in FITTED_METHODS and self.saved is None

    @property
    def fingerprint(self) -> str:
        return _digest(json.dumps(self.settings, sort_keys=True).encode())


@dataclass
class _Passes:
    """What every pass over the images shares: executor, report, progress bar."""

    executor: Executor
    report: NormalizeReport
    progress: bool
    failed: set = field(default_factory=set)  # relative paths that could not be read
    decoded: int = 0  # images decoded by the latest pass

    def run(self, tasks: list, label: str, announced=iter):
        """Yield each readable image's result, in input order; report the others.
        ``announced``: the tasks as they are handed out (to journal each first)."""
        bar = progress_bar(len(tasks), self.progress)
        bar.set_description(label)
        self.decoded = 0
        try:
            for result in _in_input_order(self.executor.map(process_image, announced(tasks),
                                                            count=len(tasks))):
                bar.update(1)
                self.decoded += result.decoded
                if result.stop is not None:
                    raise OutputError(result.stop)
                if result.failure is None:
                    yield result
                else:
                    self.failed.add(result.relative)
                    self.report.fail(result.relative, result.failure)
        finally:
            bar.close()


def _in_input_order(results):
    """Re-sequence results that arrive in completion order.

    Sums then do not depend on the number of workers. Only results that
    finished before an earlier one wait here: a few, since the pool hands out
    tasks in order.
    """
    waiting, expected = {}, 0
    for result in results:
        waiting[result.index] = result
        while expected in waiting:
            yield waiting.pop(expected)
            expected += 1


def plan_normalize(settings: NormalizeSettings) -> NormalizePlan:
    """Check the folders, list the images and what an earlier run finished.

    Raises ``UsageError`` for an output folder holding files this normalize did
    not write, or wrote with other settings (unless ``overwrite``). Reads no
    image and writes nothing.
    """
    method, fmt, size, fit_only = settings.method, settings.fmt, settings.size, settings.fit_only
    stats = settings.stats
    saved = load_stats(stats, method) if stats is not None and not fit_only else None
    if method == "zca" and size is None and saved is None:
        size = DEFAULT_ZCA_SIZE
    preparation = _resolve_preparation(method, size, settings.resize, settings.color, saved)
    if method == "zca" and saved is None:
        check_zca_memory(preparation, ZCA_FIT_MATRICES)
    input_dir, output_dir = settings.input, settings.output
    input_spec, output_spec = _check_paths(input_dir, output_dir, fit_only)
    images, others = input_spec.open().scan()
    imagefiles.require_images(images, input_dir)
    outputs = {} if fit_only else _outputs(images, fmt)
    tasks = [ImageTask(number, input_spec, relative.as_posix(),
                       output_spec if outputs else None,
                       outputs[relative.as_posix()] if outputs else None,
                       preparation, "", number=number)
             for number, relative in enumerate(images)]
    plan = NormalizePlan(method, fmt, preparation, settings.per_channel,
                         settings.zca_epsilon or DEFAULT_ZCA_EPSILON, saved, stats, input_dir,
                         output_spec, tasks, others, outputs, overwrite=settings.overwrite)
    if plan.fits and not tasks:
        raise UsageError(f"no images in {input_dir} to fit {method} statistics on "
                         f"({imagefiles.looked_for()})")
    if output_spec is not None:
        plan.settings = json.loads(json.dumps({"method": method, "format": fmt,
                                               **_preparation_record(preparation),
                                               "per_channel": settings.per_channel}))
        plan.output().check_inside([MANIFEST_NAME, *outputs.values()])
        with manifest.guard(plan.output(), dry_run=True):  # refused while another run writes
            resume = _earlier_outputs(plan, dry_run=True)
        plan.finished, plan.stale = resume.finished, resume.removed
    return plan


def normalize_folder(settings: NormalizeSettings, *, workers: int | None = None,
                     progress: bool = False, notify=None, cluster=None,
                     client=None) -> NormalizeReport:
    """Normalize every image of the input into the output; what ``augcli normalize`` calls.

    featurewise and zca fit their statistics on the input unless ``settings.stats``
    names a file to apply; with ``fit_only`` they save them to ``stats`` and
    write no image. Files an earlier run with the same settings and statistics
    wrote are kept and skipped (see ``manifest.jsonl``); ``overwrite`` replaces
    an earlier run's outputs whatever made them. ``notify`` receives one line
    per failed input.

    ``cluster`` (``"local"``, a Dask scheduler address or file) or ``client`` (a
    ``distributed.Client``) runs the passes on Dask, as ``run_recipe`` does: same bytes.
    """
    started = time.perf_counter()
    method, fit_only = settings.method, settings.fit_only
    plan = plan_normalize(settings)
    report = NormalizeReport(ignored=plan.ignored, notify=notify, method=method,
                             output_dir=str(plan.output_store) if plan.output_store else None)
    first = plan.tasks[0] if plan.tasks else None
    sight = sight_of(first.input, first.relative) if first and (cluster or client) else None
    with open_executor(workers or default_workers(), cluster, client, sight=sight) \
            as executor, _output_lock(plan):
        passes = _Passes(executor, report, progress)
        if plan.output_store is not None:  # what the manifest says now, under the lock
            plan.finished = _earlier_outputs(plan, dry_run=False).finished
        fitted = plan.saved
        if plan.fits:
            fitted = _fit(method, plan.tasks, passes, plan.epsilon)
            if fit_only:
                assert plan.stats_path is not None  # --fit-only requires --stats (settings)
                save_stats(plan.stats_path, fitted)
                report.stats_path = str(plan.stats_path)
        if not fit_only:
            _write_outputs(plan, fitted, passes)
    report.images_read = passes.decoded
    report.seconds = time.perf_counter() - started
    return report


def _output_lock(plan: NormalizePlan):
    """One run per output folder or prefix (none with --fit-only, which writes only the
    statistics)."""
    if plan.output_store is None:
        return contextlib.nullcontext()
    return plan.output().lock()


def _write_outputs(plan: NormalizePlan, fitted, passes: _Passes) -> None:
    """Normalize what an earlier run did not finish, journaling each file in the manifest."""
    stats = fitted.fingerprint() if fitted is not None else None
    finished = _same_statistics(plan, stats)
    store = plan.output()
    try:
        store.tidy()  # temp files of writes that died with their worker
    except OSError as exc:
        raise output_error(plan.output_store, exc) from None
    header = {"normalize": plan.settings, "settings": plan.fingerprint, "stats": stats}
    records = dict(finished)
    _write_manifest(store, header, records.values())
    todo = [task for task in plan.tasks if task.relative not in passes.failed]
    passes.report.skipped = sum(plan.outputs[task.relative] in finished for task in todo)
    todo = [task for task in todo if plan.outputs[task.relative] not in finished]
    appended = manifest.Journal(store)

    def journal(result: ImageResult) -> None:
        record = {"output": plan.outputs[result.relative], "source": result.relative,
                  "method": plan.method, "settings": plan.fingerprint, "stats": stats}
        records[record["output"]] = record
        appended.append(record)
        passes.report.written += 1

    def announced(tasks):
        """The tasks, each journalled as ``started`` (with the file it will write) just
        before it is handed out: a file written before its record still has a line that
        says whose it is, if the run is killed in between."""
        for task in tasks:
            appended.append(manifest.started_line(task.relative, [plan.outputs[task.relative]],
                                                  plan.fingerprint))
            yield task

    try:
        with appended:  # closed (its last part out, on a store) before the rewrite
            if plan.method == "zca":
                _apply_zca(todo, fitted, plan.fmt, passes, journal, len(plan.tasks), store,
                           announced)
            else:
                _apply_in_workers(todo, _transform(plan.method, plan.per_channel, fitted),
                                  plan.fmt, passes, journal, announced)
    except BaseException:
        with contextlib.suppress(OutputError):  # the first error is the one to report
            _write_manifest(store, header, records.values())
        raise
    _write_manifest(store, header, records.values())


# --- the manifest ----------------------------------------------------------------------------

def read_manifest(output) -> tuple[dict | None, list]:
    """(header, output records) of an earlier normalize; a torn last line is ignored.
    ``output``: a folder, a URL or a ``StoreSpec``."""
    header, records, _ = _manifest_lines(output)
    return header, records


def _manifest_lines(output) -> tuple[dict | None, list, list]:
    """(header, output records, ``started`` lines) of an earlier normalize: a run killed
    before it recorded a file it wrote left that file's ``started`` line."""
    header: dict | None = None
    records: list[dict] = []
    started: list[dict] = []
    for record in manifest.read_lines(output):
        if "normalize" in record:
            header = record
        elif isinstance(record.get("output"), str):
            records.append(record)
        elif manifest.is_started(record):
            started.append(record)
    return header, records, started


def _write_manifest(store, header: dict, records) -> None:
    """Rewrite the manifest whole: the header, then one line per output, by name (on an
    object store, the journal's parts then go: the manifest holds their lines)."""
    lines = [header, *sorted(records, key=lambda record: record["output"])]
    manifest.write(store, map(manifest.encode_line, lines))


def _earlier_outputs(plan: NormalizePlan, dry_run: bool) -> manifest.Resume:
    """What an earlier normalize of these settings finished (``manifest.reconcile``, as every
    command resumes and refuses): an output whose manifest records other settings, or
    files no manifest accounts for, need ``overwrite``, which deletes the earlier run's
    outputs that this one does not make (e.g. of another --format; not in a dry run)."""
    store = plan.output()
    header, records, started = _manifest_lines(store)
    settings = {line.get("settings", line.get("recipe")) for line in (*records, *started)}
    if header is not None:
        settings.add(header.get("settings"))
    earlier = manifest.check_names(store, manifest.Earlier(records, started,
                                                           fingerprints=settings))
    outputs = plan.outputs.values()
    return manifest.reconcile(store, earlier, fingerprint=plan.fingerprint,
                              planned=lambda: iter(outputs), own=[MANIFEST_NAME],
                              overwrite=plan.overwrite, dry_run=dry_run,
                              other_run=lambda: _other_settings(plan, header))


def _other_settings(plan: NormalizePlan, header: dict | None) -> str:
    advice = "; rerun with --overwrite to replace them, or choose another output folder"
    earlier = header.get("normalize") if header is not None else None
    if not isinstance(earlier, dict):
        return (f"{plan.output_store} holds outputs this command did not make (its "
                f"{MANIFEST_NAME} is not one augcli normalize wrote){advice}")
    changes = ", ".join(f"{key} {_setting_text(earlier.get(key))} -> {_setting_text(value)}"
                        for key, value in plan.settings.items() if earlier.get(key) != value)
    return (f"{plan.output_store} holds outputs of an earlier normalize with other settings "
            f"({changes or 'another version'}){advice}")


def _setting_text(value) -> str:
    if isinstance(value, list):
        return "x".join(map(str, value))
    return "none" if value is None else str(value).lower()


def _same_statistics(plan: NormalizePlan, stats: str | None) -> dict:
    """The earlier outputs to keep: refuse them if they were made with other statistics."""
    other = {record.get("stats") for record in plan.finished.values()} - {stats}
    if other and not plan.overwrite:
        raise UsageError(f"{plan.output_store} holds {plan.method} outputs made with other "
                         "statistics (the input folder or the statistics file changed since); "
                         "rerun with --overwrite to replace them, or choose another output "
                         "folder")
    return plan.finished


# --- checks before any image is read ---------------------------------------------------

@dataclass(frozen=True)
class NormalizeSettings:
    """Every option of one normalize, checked once (``of``): what ``plan_normalize`` and
    ``normalize_folder`` take. How the work runs (workers, cluster, progress) is not here."""

    input: Path | str  # a folder, or a URL
    output: Path | str | None  # None: fit only
    method: str
    fmt: str
    size: tuple | None = None  # (width, height); None: as read (zca: 32x32, see plan_normalize)
    resize: str = "stretch"
    color: str | None = None  # None: rgb, or the saved statistics'
    per_channel: bool = False
    zca_epsilon: float | None = None  # None: Keras' 1e-6
    stats: Path | None = None  # statistics file to apply, or to save with fit_only
    fit_only: bool = False
    overwrite: bool = False

    @classmethod
    def of(cls, input, output=None, *, method: str, fmt: str | None = None, size=None,
           resize: str = "stretch", color: str | None = None, per_channel: bool = False,
           zca_epsilon: float | None = None, stats=None, fit_only: bool = False,
           overwrite: bool = False) -> NormalizeSettings:
        """Refuse, before any image is read, every flag combination that cannot work.

        ``size`` is (width, height) or a "WxH" string; ``input`` and ``output`` are
        folders or object-store URLs (s3://, az://, gs://)."""
        fmt = fmt or ("png" if method == "minmax" else "npy")
        # (width, height) or "WxH"; an empty --size "" is no size
        size = (parse_size(size) if isinstance(size, str) else tuple(size)) if size else None
        applying_saved = stats is not None and not fit_only
        rules = [
            (method not in METHODS,
             f"unknown method {method!r}; choose one of {', '.join(METHODS)}"),
            (fmt not in FORMATS, f"unknown format {fmt!r}; choose npy or png"),
            (resize not in RESIZE_MODES,
             f"unknown resize mode {resize!r}; choose stretch or letterbox"),
            (color not in (*COLORS, None), f"unknown colour mode {color!r}; choose rgb or grey"),
            (per_channel and method != "minmax", "--per-channel only applies to --method minmax"),
            (zca_epsilon is not None and method != "zca",
             "--zca-epsilon only applies to --method zca"),
            (zca_epsilon is not None and zca_epsilon <= 0, "--zca-epsilon must be > 0"),
            (zca_epsilon is not None and applying_saved,
             "--zca-epsilon is part of the saved statistics; it cannot change when applying "
             "them"),
            (resize == "letterbox" and size is None, "--resize letterbox needs --size"),
            (size is not None and size[0] * size[1] > imagefiles.DEFAULT_MAX_PIXELS,
             f"--size is over the limit of {imagefiles.DEFAULT_MAX_PIXELS:,} pixels"),
            (color == "grey" and method in ("caffe", "torch"),
             f"--method {method} subtracts a mean per RGB channel; it cannot use --color grey"),
            ((stats is not None or fit_only) and method not in FITTED_METHODS,
             "--stats and --fit-only only apply to --method featurewise or zca"),
            (fit_only and stats is None,
             "--fit-only needs --stats FILE to save the statistics to"),
            (locations.is_url(stats),
             f"--stats needs a local file, not {locations.redact(stats)}: the statistics are "
             "read and saved on this machine (input and output may be URLs)"),
            (fit_only and output is not None,
             "--fit-only writes only the statistics file; drop -o/--output"),
            (not fit_only and output is None, "no output folder: pass -o/--output"),
        ]
        for broken, message in rules:
            if broken:
                raise UsageError(message)
        return cls(locations.location(input), locations.location(output), method, fmt, size,
                   resize, color, per_channel, zca_epsilon,
                   Path(stats) if stats is not None else None, fit_only, overwrite)


def _resolve_preparation(method, size, resize, color, saved) -> Preparation:
    """Flags, or the layout saved with the statistics; a conflict between them is an error."""
    if saved is None:
        return Preparation(color or "rgb", size, resize)
    fitted = saved.preparation
    if color is not None and color != fitted.color:
        raise UsageError(f"the statistics were fitted with --color {fitted.color}, "
                         f"not {color}")
    if method == "zca":
        if size is not None and tuple(size) != fitted.size:
            raise UsageError(f"the ZCA statistics were fitted at --size "
                             f"{fitted.size[0]}x{fitted.size[1]}; images must be resized "
                             "to that size")
        return fitted
    return Preparation(fitted.color, size, resize)


def _check_paths(input_dir, output_dir, fit_only: bool) -> tuple[StoreSpec, StoreSpec | None]:
    """The input's and output's specs: folders or object-store URLs (``stores.open_pair``)."""
    if not fit_only:
        return stores.open_pair(input_dir, output_dir)
    if locations.is_url(input_dir):
        stores.require_extra(input_dir)
    else:
        stores.check_input_folder(input_dir)
    return StoreSpec.of(input_dir), None


def _outputs(images: list, fmt: str) -> dict:
    """Same relative path and stem, the format's extension; refuse two sources on one name."""
    outputs: dict[str, str] = {}
    claimed: dict[str, str] = {}
    for relative in images:
        target = relative.with_suffix(f".{fmt}").as_posix()
        if target in claimed:
            raise UsageError(f"{claimed[target]} and {relative.as_posix()} would both write "
                             f"{target}; rename one of them")
        claimed[target] = relative.as_posix()
        outputs[relative.as_posix()] = target
    return outputs


# --- the passes ----------------------------------------------------------------------------

def _for_pass(tasks: list, job: str, **changes) -> list:
    """The tasks of one pass, numbered by position so results can be put back in order."""
    return [replace(task, index=position, job=job, **changes)
            for position, task in enumerate(tasks)]


def _fit(method: str, tasks: list, passes: _Passes, epsilon: float):
    """One streaming pass over the images; the statistics of those that could be read."""
    if method == "featurewise":
        return _fit_featurewise(tasks, passes)
    return _fit_zca(tasks, passes, epsilon)


def _fit_featurewise(tasks: list, passes: _Passes) -> FeaturewiseStats:
    total, images = None, 0
    for result in passes.run(_for_pass(tasks, "moments"), "fit"):
        total = result.payload if total is None else total.merge(result.payload)
        images += 1
    if total is None:
        raise UsageError(f"none of the {len(tasks)} images could be read; nothing to fit")
    return FeaturewiseStats(tuple(total.mean.tolist()), tuple(total.std.tolist()), images,
                            tasks[0].preparation)


def _fit_zca(tasks: list, passes: _Passes, epsilon: float) -> ZcaStats:
    preparation = tasks[0].preparation
    accumulator = ZcaAccumulator(preparation.channels, _features(preparation))
    for batch in _row_batches(passes.run(_for_pass(tasks, "row"), "fit"), preparation):
        accumulator.add(np.stack([row for _, row in batch]))
    if accumulator.count == 0:
        raise UsageError(f"none of the {len(tasks)} images could be read; nothing to fit")
    with elapsed_spinner(f"solve ({accumulator.solve_text})", passes.progress):
        mean, components = accumulator.solve(epsilon)
    return ZcaStats(mean, components, epsilon, accumulator.count, preparation)


def _features(preparation: Preparation) -> int:
    assert preparation.size is not None  # zca always resizes (plan_normalize's default size)
    width, height = preparation.size
    return width * height * preparation.channels


def _rows_per_batch(preparation: Preparation) -> int:
    return max(1, ROW_BATCH_BYTES // (_features(preparation) * 8))


def _row_batches(results, preparation: Preparation):
    """Group flat rows so each matrix product works on many images at once.

    the executor keeps every finished future until its pool closes, so the
    row is taken out of its result here: only the small shell stays behind.
    """
    rows_per_batch = _rows_per_batch(preparation)
    batch = []
    for result in results:
        batch.append((result, result.payload))
        result.payload = None
        if len(batch) == rows_per_batch:
            yield batch
            batch = []
    if batch:
        yield batch


def _transform(method: str, per_channel: bool, fitted) -> Transform:
    if method == "featurewise":
        return Transform(method, mean=tuple(fitted.mean), std=tuple(fitted.std))
    return Transform(method, per_channel=per_channel)


def _apply_in_workers(tasks: list, transform: Transform, fmt: str, passes: _Passes,
                      journal, announced) -> None:
    for result in passes.run(_for_pass(tasks, "write", transform=transform, fmt=fmt),
                             "normalize", announced):
        journal(result)


def _apply_zca(tasks: list, stats: ZcaStats, fmt: str, passes: _Passes, journal,
               total: int, store, announced) -> None:
    """Workers decode and resize; the parent, which holds W, whitens and writes.

    Rows are whitened in fixed blocks of the whole folder: block b holds the
    images numbered b·R to b·R + R - 1 in input order, and the rows of images
    not in this pass (unreadable, or finished by an earlier run) are zeros.
    Each image so meets the same matrix product, in the same place, whichever
    images a resumed run has left to do, and its bytes never depend on that.
    """
    assert stats.preparation.size is not None  # zca statistics record their size
    width, height = stats.preparation.size
    per_block = _rows_per_batch(stats.preparation)
    block: int | None = None
    start = 0
    rows = np.empty((0, 0))  # the block's rows: made at the first result
    waiting: list[ImageResult] = []

    def write_block():
        whitened = stats.whiten(rows)
        for result in waiting:
            pixels = whitened[result.number - start].reshape(height, width, -1)
            assert result.destination is not None  # rows of this pass have an output
            failure = _write(store, result.destination, pixels, fmt, "zca")
            if failure is None:
                journal(result)
            else:
                passes.report.fail(result.relative, failure)

    for result in passes.run(_for_pass(tasks, "row"), "normalize", announced):
        if result.number // per_block != block:
            if waiting:
                write_block()
            block = result.number // per_block
            start = block * per_block
            rows = np.zeros((min(per_block, total - start), _features(stats.preparation)))
            waiting = []
        rows[result.number - start] = result.payload
        result.payload = None
        waiting.append(result)
    if waiting:
        write_block()
