"""Normalize a folder of images as Keras would, without holding the dataset in memory.

Per-image methods (minmax, samplewise, caffe, tf, torch) run wholly in the
workers: decode -> prepare -> transform -> encode -> atomic write.

Dataset methods need statistics over the whole folder first, gathered in one
streaming pass whose memory does not grow with the number of images:

* featurewise: each worker returns one image's per-channel moments (count,
  mean, sum of squared deviations); the parent merges them (Chan et al.).
* zca: each worker returns one prepared image as a flat row of D = W*H*C
  values; the parent folds rows, a batch at a time, into the D x D matrix
  XᵀX. Applying whitening needs that D x D matrix too, so the parent whitens
  rows in batches (one matrix product each) and writes those outputs itself.

Results of the pool are put back in input order before they are summed, so
statistics and output bytes do not depend on the number of workers.
Everything is computed in float64 and stored as float32.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import geometry, imagefiles
from .errors import ImageReadError, UsageError
from .jobs import JobReport, check_folders, default_workers, map_in_workers, progress_bar

METHODS = ("minmax", "samplewise", "featurewise", "zca", "caffe", "tf", "torch")
FITTED_METHODS = ("featurewise", "zca")
FORMATS = ("npy", "png")
RESIZE_MODES = ("stretch", "letterbox")
COLORS = ("rgb", "grey")

STD_EPSILON = 1e-6          # Keras adds this to every std it divides by
DEFAULT_ZCA_EPSILON = 1e-6  # Keras' ImageDataGenerator(zca_epsilon=1e-6)
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
        self.shift = self.sums = self.gram = None

    def add(self, rows: np.ndarray) -> None:
        if self.gram is None:
            self.shift = rows.mean(axis=0)
            self.sums = np.zeros_like(self.shift)
            self.gram = np.zeros((rows.shape[1], rows.shape[1]))
        shifted = rows - self.shift
        self.gram += shifted.T @ shifted
        self.sums += shifted.sum(axis=0)
        self.count += len(rows)

    def channel_mean(self) -> np.ndarray:
        """Per-channel mean over all images and pixels (Keras' featurewise mean)."""
        totals = (self.sums + self.count * self.shift).reshape(-1, self.channels)
        return totals.sum(axis=0) / (self.count * len(totals))

    def centred_gram(self, mean: np.ndarray) -> np.ndarray:
        """XᵀX of the centred rows, in place.

        With y = x - k and m = mean - k: Σ(y-m)(y-m)ᵀ = Σyyᵀ - a mᵀ - m aᵀ
        where a = Σy - n m / 2.
        """
        offset = np.tile(mean, len(self.shift) // self.channels) - self.shift
        correction = np.outer(self.sums - self.count * offset / 2, offset)
        gram, self.gram = self.gram, None
        gram -= correction
        gram -= correction.T
        return gram


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

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        record = {"augcli_stats": STATS_FORMAT_VERSION, "method": "zca", "images": self.images,
                  "epsilon": self.epsilon, **_preparation_record(self.preparation)}
        np.savez(buffer, meta=np.array(json.dumps(record)), mean=self.mean,
                 components=self.components)
        return buffer.getvalue()


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
    """One image for a worker: plain, picklable data.

    ``job`` says what the worker returns: "moments" (featurewise fit), "row"
    (a flat image for ZCA) or "write" (transform, encode, write).
    """

    index: int
    source: Path
    relative: str
    destination: Path | None
    preparation: Preparation
    job: str
    transform: Transform | None = None
    fmt: str = "npy"


@dataclass
class ImageResult:
    index: int
    relative: str
    destination: Path | None
    payload: object = None  # moments or a row; the parent drops it once used
    failure: str | None = None
    decoded: bool = False  # a write can fail after a good decode


def process_image(task: ImageTask) -> ImageResult:
    """Worker: decode and prepare one image, then measure, flatten, or normalize and write it."""
    result = ImageResult(task.index, task.relative, task.destination)
    try:
        image = imagefiles.read_image(task.source)
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
        result.failure = _write(task.destination, task.transform(preparation.apply(image)),
                                task.fmt, task.transform.method)
    return result


def _write(destination: Path, result: np.ndarray, fmt: str, method: str) -> str | None:
    """Encode and write atomically; return the reason if that failed."""
    try:
        imagefiles.write_atomic(destination, encode_output(result, fmt, method))
    except (OSError, ValueError) as exc:
        return f"cannot write ({exc})"
    return None


# --- running -----------------------------------------------------------------------------

@dataclass
class NormalizeReport(JobReport):
    stats_path: str | None = None

    def summary(self) -> str:
        saved = f", statistics saved to {self.stats_path}" if self.stats_path else ""
        return (f"{self.images_read} images read, {self.written} files written{saved}, "
                f"{len(self.failures)} failed, {self.seconds:.1f} s")


@dataclass
class _Passes:
    """What every pass over the images shares: pool size, report, progress bar."""

    workers: int
    report: NormalizeReport
    progress: bool
    failed: set = field(default_factory=set)  # relative paths that could not be read
    decoded: int = 0  # images decoded by the latest pass

    def run(self, tasks: list, label: str):
        """Yield each readable image's result, in input order; report the others."""
        bar = progress_bar(len(tasks), self.progress)
        bar.set_description(label)
        workers = max(1, min(self.workers, len(tasks)))
        self.decoded = 0
        try:
            for result in _in_input_order(map_in_workers(process_image, tasks, workers)):
                bar.update(1)
                self.decoded += result.decoded
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


def normalize_folder(input_dir, output_dir=None, *, method: str, fmt: str | None = None,
                     size: tuple | None = None, resize: str = "stretch", color: str | None = None,
                     per_channel: bool = False, zca_epsilon: float | None = None, stats=None,
                     fit_only: bool = False, workers: int | None = None, progress: bool = False,
                     notify=None) -> NormalizeReport:
    """Normalize every image of ``input_dir`` into ``output_dir``; what ``augcli normalize`` calls.

    featurewise and zca fit their statistics on ``input_dir`` unless ``stats``
    names a file to apply; with ``fit_only`` they save them to ``stats`` and
    write no image. ``notify`` receives one line per failed input.
    """
    started = time.perf_counter()
    fmt = fmt or ("png" if method == "minmax" else "npy")
    _check_options(method, fmt, size, resize, color, per_channel, zca_epsilon, stats, fit_only,
                   output_dir)
    saved = load_stats(stats, method) if stats is not None and not fit_only else None
    preparation = _resolve_preparation(method, size, resize, color, saved)
    if method == "zca" and saved is None:
        check_zca_memory(preparation, ZCA_FIT_MATRICES)
    input_dir, output_dir = _check_paths(input_dir, output_dir, fit_only)
    images, others = imagefiles.scan_images(input_dir)
    destinations = None if fit_only else _destinations(images, output_dir, fmt)

    report = NormalizeReport(ignored=others, notify=notify)
    passes = _Passes(workers or default_workers(), report, progress)
    tasks = [ImageTask(index, input_dir / relative, relative.as_posix(),
                       destinations[index] if destinations else None, preparation, "")
             for index, relative in enumerate(images)]
    fitted = saved
    if method in FITTED_METHODS and fitted is None:
        fitted = _fit(method, tasks, passes, zca_epsilon or DEFAULT_ZCA_EPSILON)
        if fit_only:
            save_stats(Path(stats), fitted)
            report.stats_path = str(stats)
    if not fit_only:
        remaining = [task for task in tasks if task.relative not in passes.failed]
        if method == "zca":
            _apply_zca(remaining, fitted, fmt, passes)
        else:
            _apply_in_workers(remaining, _transform(method, per_channel, fitted), fmt, passes)
    report.images_read = passes.decoded
    report.seconds = time.perf_counter() - started
    return report


def _check_options(method, fmt, size, resize, color, per_channel, zca_epsilon, stats, fit_only,
                   output_dir) -> None:
    """Refuse, before any image is read, every flag combination that cannot work."""
    applying_saved = stats is not None and not fit_only
    rules = [
        (method not in METHODS, f"unknown method {method!r}; choose one of {', '.join(METHODS)}"),
        (fmt not in FORMATS, f"unknown format {fmt!r}; choose npy or png"),
        (resize not in RESIZE_MODES,
         f"unknown resize mode {resize!r}; choose stretch or letterbox"),
        (color not in (*COLORS, None), f"unknown colour mode {color!r}; choose rgb or grey"),
        (per_channel and method != "minmax", "--per-channel only applies to --method minmax"),
        (zca_epsilon is not None and method != "zca", "--zca-epsilon only applies to --method zca"),
        (zca_epsilon is not None and zca_epsilon <= 0, "--zca-epsilon must be > 0"),
        (zca_epsilon is not None and applying_saved,
         "--zca-epsilon is part of the saved statistics; it cannot change when applying them"),
        (resize == "letterbox" and size is None, "--resize letterbox needs --size"),
        (method == "zca" and size is None and not applying_saved,
         "--method zca needs --size WxH: every image must have the same number of values"),
        (size is not None and size[0] * size[1] > imagefiles.DEFAULT_MAX_PIXELS,
         f"--size is over the limit of {imagefiles.DEFAULT_MAX_PIXELS:,} pixels"),
        (color == "grey" and method in ("caffe", "torch"),
         f"--method {method} subtracts a mean per RGB channel; it cannot use --color grey"),
        ((stats is not None or fit_only) and method not in FITTED_METHODS,
         "--stats and --fit-only only apply to --method featurewise or zca"),
        (fit_only and stats is None, "--fit-only needs --stats FILE to save the statistics to"),
        (fit_only and output_dir is not None,
         "--fit-only writes only the statistics file; drop -o/--output"),
        (not fit_only and output_dir is None, "no output folder: pass -o/--output"),
    ]
    for broken, message in rules:
        if broken:
            raise UsageError(message)


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


def _check_paths(input_dir, output_dir, fit_only: bool) -> tuple[Path, Path | None]:
    input_dir = Path(input_dir)
    if fit_only:
        if not input_dir.is_dir():
            raise UsageError(f"input folder {input_dir} does not exist or is not a folder")
        return input_dir, None
    return check_folders(input_dir, Path(output_dir))


def _destinations(images: list, output_dir: Path, fmt: str) -> list:
    """Same relative path and stem, the format's extension; refuse two sources on one name."""
    destinations, claimed = [], {}
    for relative in images:
        target = relative.with_suffix(f".{fmt}")
        if target in claimed:
            raise UsageError(f"{claimed[target]} and {relative.as_posix()} would both write "
                             f"{target.as_posix()}; rename one of them")
        claimed[target] = relative.as_posix()
        destinations.append(output_dir / target)
    return destinations


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
    accumulator = GramAccumulator(preparation.channels)
    for batch in _row_batches(passes.run(_for_pass(tasks, "row"), "fit"), preparation):
        accumulator.add(np.stack([row for _, row in batch]))
    if accumulator.count == 0:
        raise UsageError(f"none of the {len(tasks)} images could be read; nothing to fit")
    mean = accumulator.channel_mean()
    components = zca_components(accumulator.centred_gram(mean), accumulator.count, epsilon)
    return ZcaStats(mean, components, epsilon, accumulator.count, preparation)


def _row_batches(results, preparation: Preparation):
    """Group flat rows so each matrix product works on many images at once.

    map_in_workers keeps every finished future until its pool closes, so the
    row is taken out of its result here: only the small shell stays behind.
    """
    width, height = preparation.size
    rows_per_batch = max(1, ROW_BATCH_BYTES // (width * height * preparation.channels * 8))
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


def _apply_in_workers(tasks: list, transform: Transform, fmt: str, passes: _Passes) -> None:
    for _ in passes.run(_for_pass(tasks, "write", transform=transform, fmt=fmt), "normalize"):
        passes.report.written += 1


def _apply_zca(tasks: list, stats: ZcaStats, fmt: str, passes: _Passes) -> None:
    """Workers decode and resize; the parent, which holds W, whitens and writes."""
    width, height = stats.preparation.size
    report = passes.report
    for batch in _row_batches(passes.run(_for_pass(tasks, "row"), "normalize"),
                              stats.preparation):
        whitened = stats.whiten(np.stack([row for _, row in batch]))
        for (result, _), row in zip(batch, whitened, strict=True):
            failure = _write(result.destination, row.reshape(height, width, -1), fmt, "zca")
            if failure is None:
                report.written += 1
            else:
                passes.report.fail(result.relative, failure)
