"""The worker side of a run: one ``SourceTask`` in, one ``SourceResult`` out.

A worker decodes its source once, reads its donors and label map, renders each output
(``render``), moves its annotations with the same steps, encodes and publishes the
files atomically through the output store, and journals each published output so an
interrupted run counts it done. It gets plain data and returns plain data: only the
parent writes the manifest and counts.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import budget, geometry, imagefiles, manifest
from .annotations import encode_boxes
from .errors import (
    STOPS_RUN,
    ImageReadError,
    output_error,
)
from .manifest import MANIFEST_NAME, read_manifest  # noqa: F401 - part of this module's API
from .pipeline import (
    OutputTooLarge,
    apply_steps_to_labels,
    carry_through,
    donor_records,
    source_shares,
    takes_donors,
)
from .plan import SourceTask
from .profiles import Profile
from .render import (
    Distinct,
    DuplicateOutput,
    OutputPlan,
)
from .targets.boxes import ImageBoxes
from .targets.masks import LabelMapError, decode_labels, donor_labels, encode_labels, fill_for
from .tiles import area_weights


@dataclass
class SourceResult:
    relative: str
    records: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (path, reason)
    decoded: bool = False
    stop: str | None = None  # the output folder cannot be written (disk full): stop the run
    crashed: bool = False  # its worker died: some of its outputs may be on disk


def _fits(profile: Profile | None, size: int, image: np.ndarray) -> bool:
    """Whether a source file of ``size`` bytes can be copied as it is under the profile's
    limits."""
    if profile is None:
        return True
    small_enough = profile.max_file_bytes is None or size <= profile.max_file_bytes
    long_side, short_side = max(image.shape[:2]), min(image.shape[:2])
    return small_enough and (profile.max_side is None or long_side <= profile.max_side) and \
        (profile.max_aspect_ratio is None or long_side / short_side <= profile.max_aspect_ratio)


def _fit_aspect(image: np.ndarray, task: SourceTask) -> tuple:
    """Pad or crop an output to the profile's aspect-ratio limit (the recipe's ``conform``).

    Returns (pixels, forward matrix, what was done or None)."""
    if task.profile is None or task.profile.max_aspect_ratio is None:
        return image, geometry.identity(), None
    conform = task.conform
    return geometry.fit_aspect(image, task.profile.max_aspect_ratio, conform.aspect,
                               conform.fill, conform.cval)


def _encode(image: np.ndarray, fmt: str, task: SourceTask) -> tuple[bytes, dict]:
    if task.profile is None:
        return imagefiles.encode(image, fmt, task.quality), {}
    return imagefiles.encode_within(image, fmt, task.quality, task.profile.max_file_bytes,
                                    task.profile.max_side, task.profile.max_aspect_ratio)


def process_source(task: SourceTask, memory: budget.Budget | None = None) -> SourceResult:
    """Decode one source once and publish all of its planned outputs (and their boxes),
    within the pool's memory budget ``memory`` (see ``budget``)."""
    reservation = budget.Reservation(memory)
    try:
        with _OutputJournal.opened(task):
            return _process_source(task, reservation)
    finally:
        reservation.release()


class _OutputJournal:
    """The manifest's journal as a worker appends to it: each output's record goes in as
    soon as the output is published, not when its source is done, so a run stopped part-way
    through a source (Ctrl-C, SIGKILL, a lost machine) has its published outputs recorded
    and the rerun skips them. (The parent still rewrites the manifest whole at the start
    and the end.) Opened per task, found by the task (its publish threads journal too)."""

    _open: dict = {}  # id(task) -> (journal file, lock)

    @classmethod
    @contextlib.contextmanager
    def opened(cls, task: SourceTask):
        cls._open[id(task)] = (None, threading.Lock())
        try:
            yield
        finally:
            file, _ = cls._open.pop(id(task))
            if file is not None:
                with contextlib.suppress(OSError):  # a failed append already failed its output
                    file.close()

    @classmethod
    def append(cls, task: SourceTask, record: dict) -> None:
        """Journal ``record`` (OSError as a publish raises it: the output fails)."""
        record["recipe"] = task.fingerprint
        file, lock = cls._open[id(task)]
        with lock:
            if file is None:
                file = task.output.open().journal(MANIFEST_NAME)
                cls._open[id(task)] = (file, lock)
            file.write(manifest.encode_line(record))
            file.flush()


def _process_source(task: SourceTask, reservation: budget.Reservation) -> SourceResult:
    result = SourceResult(task.relative)
    source = task.input.open()
    name = source.name(task.relative)
    size = None
    try:
        stamp = task.stamp if task.stamp is not None else \
            imagefiles.read_source(functools.partial(source.stamp, task.relative), name)
        data = imagefiles.read_source(functools.partial(source.read, task.relative), name)
        size = reservation.reserve(data, task.outputs)
        image = imagefiles.decode_image(data, name, task.max_pixels)
    except ImageReadError as exc:
        result.failures.append((task.relative, exc.reason))
        return result
    except MemoryError:
        result.failures.append((task.relative, budget.out_of_memory(size)))
        return result
    result.decoded = True
    if task.boxes is not None and (task.boxes.height, task.boxes.width) != image.shape[:2]:
        reason = (f"decodes as {image.shape[1]} x {image.shape[0]} but its header said "
                  f"{task.boxes.width} x {task.boxes.height}")
        result.failures.append((task.relative, reason))
        return result
    try:
        labels = _read_labels(task)
    except (OSError, LabelMapError) as exc:
        result.failures.append((task.relative, f"its mask: {exc}"))
        return result
    source_format = imagefiles.format_of(Path(task.relative))
    distinct = Distinct(image, task.relative)
    donors = _Donors(source, task.outputs, dict(task.donor_stamps), task.donor_targets)
    todo = sum(output.relative not in task.done for output in task.outputs)
    with _Publisher(task.publish_threads) as publisher:
        for output in task.outputs:
            if not todo or result.stop is not None:
                break
            donors.release_before(output)
            if output.relative in task.done:  # finished earlier: drawn again only to be told apart
                if output.variant is not None:
                    with contextlib.suppress(DuplicateOutput, DonorUnreadable):
                        distinct.draw(image, output, donors.image, task.donor_targets)
                continue
            todo -= 1
            record = {"output": output.relative, "source": task.relative,
                      "variant": output.variant, "index": output.index, **stamp}
            try:
                publish = _render_output(task, output, data, image, source_format, record,
                                         distinct, donors, labels)
            except _OUTPUT_ERRORS as exc:
                _output_failed(result, task, output, exc, size)
                continue
            for outcome in publisher.submit(output, record, publish):
                _published(result, task, size, *outcome)
        for outcome in publisher.drain():
            _published(result, task, size, *outcome)
    return result


class DonorUnreadable(ValueError):
    """A donor an output takes cannot be read: that output fails, the rest go on."""


class _DecodedDonors:
    """Donor images a worker process keeps decoded between its tasks, the least recently
    taken dropped first beyond ``limit`` bytes. Donors are drawn from the whole split, so
    on a small one the next task takes the same images again; each is kept under its
    stamp (size and modification time), so a changed file is read anew. Kept read-only:
    an op that wrote into a donor would fail, never change another output's pixels."""

    def __init__(self, limit: int):
        self.limit = limit
        self.images: collections.OrderedDict = collections.OrderedDict()
        self.held = 0
        self.lock = threading.Lock()  # a Dask worker runs tasks on several threads

    def get(self, key) -> np.ndarray | None:
        with self.lock:
            image = self.images.get(key)
            if image is not None:
                self.images.move_to_end(key)
            return image

    def put(self, key, image: np.ndarray) -> np.ndarray:
        image.flags.writeable = False
        if image.nbytes > self.limit:
            return image
        with self.lock:
            if key not in self.images:
                self.images[key] = image
                self.held += image.nbytes
            while self.held > self.limit:
                _, dropped = self.images.popitem(last=False)
                self.held -= dropped.nbytes
        return image


# Up to this many bytes of decoded donors per worker process (docs/guarantees.md: like a
# worker's start-up memory, outside the pool's budget): 70 images of 640 x 480.
DECODED_DONORS = _DecodedDonors(64 * 2**20)


class _Donors:
    """The donor images of one task (and their label maps, with mask images), each read
    through the input store and decoded once, however many of the task's outputs take it,
    and let go after the last of them."""

    def __init__(self, store, outputs, stamps: dict, targets=None):
        self.store = store
        self.images: dict = {}
        self.maps: dict = {}
        self.targets = targets  # name -> ImageBoxes (where its map is); None without
        self.stamps = stamps  # name -> stamp: the listing's, or taken before it is read
        self.position = {output.relative: index for index, output in enumerate(outputs)}
        self.last = {name: index for index, output in enumerate(outputs)
                     for name in output.donors}  # the last output that takes each donor

    def release_before(self, output: OutputPlan) -> None:
        """Drop the donors no output from ``output`` on takes."""
        here = self.position[output.relative]
        for name in [name for name in self.images if self.last[name] < here]:
            del self.images[name]
            self.maps.pop(name, None)

    def image(self, name: str) -> np.ndarray:
        if name not in self.images:
            try:
                if name not in self.stamps:
                    self.stamps[name] = imagefiles.read_source(
                        functools.partial(self.store.stamp, name), self.store.name(name))
                stamp = self.stamps[name]
                key = (str(self.store.name(name)), tuple(sorted(stamp.items()))) \
                    if None not in stamp.values() else None  # no stamp: never kept
                image = DECODED_DONORS.get(key) if key else None
                if image is None:
                    image = self.store.read_image(name)
                    if key:
                        image = DECODED_DONORS.put(key, image)
                self.images[name] = image
            except ImageReadError as exc:
                raise DonorUnreadable(f"its donor {name} cannot be read: {exc.reason}") from None
        return self.images[name]

    def shape(self, name: str) -> tuple:
        return self.image(name).shape[:2]

    def labels(self, name: str, fill: int) -> np.ndarray:
        """The donor's label map, of its image's size; ``fill`` everywhere without one."""
        if name not in self.maps:
            shape = self.shape(name)
            try:
                self.maps[name] = donor_labels(self.targets(name).mask, shape, fill)
            except (OSError, LabelMapError) as exc:
                raise DonorUnreadable(f"its donor {name}'s mask cannot be read: {exc}") \
                    from None
        return self.maps[name]


# What fails one output, and the rest go on (unless its output cannot be written at all): a
# write (OSError, StorageError), an output drawn the same as another or over the pixel
# limit, a donor that cannot be read, and memory (OpenCV says so with a cv2.error). Anything
# else is a bug: it surfaces.
_OUTPUT_ERRORS = (OSError, DuplicateOutput, OutputTooLarge, DonorUnreadable, MemoryError,
                  cv2.error)


def _published(result: SourceResult, task: SourceTask, size, output: OutputPlan, record: dict,
               error: BaseException | None) -> None:
    """Keep an output's record, or note why it failed."""
    if error is None:
        result.records.append(record)
    else:
        _output_failed(result, task, output, error, size)


def _output_failed(result: SourceResult, task: SourceTask, output: OutputPlan,
                   error: BaseException, size) -> None:
    """Note why one output failed; an output folder that cannot be written (disk full, read
    only) stops the run (``result.stop``). An error no output should raise is raised."""
    if isinstance(error, (DuplicateOutput, OutputTooLarge, DonorUnreadable)):
        result.failures.append((output.relative, str(error)))
    elif isinstance(error, OSError) and error.errno in STOPS_RUN:
        if result.stop is None:
            result.stop = str(output_error(task.output.open().name(output.relative), error))
    elif isinstance(error, OSError):
        result.failures.append((output.relative, _write_failure(error)))
    elif isinstance(error, MemoryError) or (isinstance(error, cv2.error)
                                            and "Insufficient memory" in str(error)):
        result.failures.append((output.relative, budget.out_of_memory(size, " and its ops")))
    else:
        raise error


class _Publisher:
    """Runs each output's encode and publish after its render: at once, in this thread, or
    in ``threads`` helper threads while the next output renders, when the run has cores to
    spare (fewer sources than workers). Outcomes, (output, record, error or None), come
    back in output order; at most ``threads`` outputs wait, each holding its pixels."""

    def __init__(self, threads: int):
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="augcli-publish") \
            if threads else None
        self.waiting: collections.deque = collections.deque()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)  # nothing is left half-published behind the caller

    def submit(self, output: OutputPlan, record: dict, publish) -> list:
        """Start publishing one output; return the outcomes that are ready, in order."""
        if self.pool is None:
            return [(output, record, _error_of(publish))]
        self.waiting.append((output, record, self.pool.submit(publish)))
        ready = []
        while len(self.waiting) > self.threads or (self.waiting and self.waiting[0][2].done()):
            ready.append(self._next())
        return ready

    def drain(self) -> list:
        """The outcomes of every output still waiting, in order (waits for them)."""
        return [self._next() for _ in range(len(self.waiting))]

    def _next(self) -> tuple:
        output, record, future = self.waiting.popleft()
        return output, record, future.exception()


def _error_of(publish) -> BaseException | None:
    """Run ``publish``; the error an output may fail with, or None."""
    try:
        publish()
    except _OUTPUT_ERRORS as exc:
        return exc
    return None


def _write_failure(exc: OSError) -> str:
    """Why one output could not be written, without echoing its (maybe very long) path."""
    if exc.errno == errno.ENAMETOOLONG:
        return "cannot write: the output file name is too long for the file system"
    return f"cannot write ({exc.strerror or exc})"


def _read_labels(task: SourceTask) -> tuple | None:
    """The source's label map (mask images), read once for all of its outputs: (its bytes,
    its ids), or None without one. Raises ``OSError`` or ``LabelMapError``."""
    if task.boxes is None or task.boxes.mask is None:
        return None
    spec, key = task.boxes.mask
    data = spec.open().read(key)
    return data, decode_labels(data, (task.boxes.width, task.boxes.height))


def _render_output(task: SourceTask, output: OutputPlan, source: bytes, image: np.ndarray,
                   source_format: str, record: dict, distinct: Distinct, donors: _Donors,
                   labels: tuple | None = None):
    """Render one output, fill in its record so far, and return what publishes it.

    An augmented output is drawn apart from the source and the outputs before it
    (``distinct``), so outputs render in order; raises DuplicateOutput when it
    cannot be. The returned function (no arguments) encodes and publishes the
    output and its annotation file, and completes the record; it may run in
    another thread (see ``_Publisher``)."""
    fmt = task.format or source_format
    if output.variant is None:
        record["copy"] = True
        if fmt == source_format and _fits(task.profile, len(source), image):
            return functools.partial(_publish_copy, task, output, source, image, record,
                                     labels)
        pixels, steps = image, ()
    else:
        pixels, steps, seed, redraws = distinct.draw(image, output, donors.image,
                                                     task.donor_targets)
        record["seed"] = seed
        if redraws:
            record["redraws"] = redraws
        record["ops"] = [step.as_record() for step in steps]
        if output.donors and takes_donors(steps):
            record["donors"] = donor_records(steps, image.shape, donors.shape,
                                             task.donor_targets)
            record["donor_stamps"] = {name: donors.stamps[name] for name in
                                      sorted({n for step in steps
                                              for n in step.params.get("donors", ())})}
        if task.classes and output.donors:
            record["labels"] = _soft_labels(task, steps, image.shape, donors.shape)
        if labels is not None and output.donors:  # read here: publishing may be threaded
            fill = task.annotation_format.mask_fill if task.annotation_format else 0
            labels = (*labels, {name: donors.labels(name, fill) for step in steps
                                for name in step.params.get("donors", ())})
    return functools.partial(_publish_rendered, task, output, pixels, steps, fmt, record,
                             labels)


def _soft_labels(task: SourceTask, steps, shape, donor_shape) -> dict:
    """An output's class weights: the shares of its source and donors (``source_shares``)
    summed per class, as ``area_weights`` rounds them (each row sums to exactly 1)."""
    classes = dict(task.classes)
    per_class: dict = {}
    for name, share in source_shares(steps, shape, donor_shape).items():
        label = classes[task.relative if name is None else name]
        per_class[label] = per_class.get(label, 0) + share
    labels = sorted(per_class)
    weights = area_weights([per_class[label] for label in labels], 1)
    return {label: weight for label, weight in zip(labels, weights, strict=True) if weight}


def _publish_copy(task: SourceTask, output: OutputPlan, source: bytes, image: np.ndarray,
                  record: dict, labels: tuple | None = None) -> None:
    """Publish the source's own bytes as an output (with its annotation file).

    Each file is published whole: temp file + rename in a folder, one whole-object
    write on an object store; never through an open handle."""
    _write_boxes(task, output, (), image, {}, record, copy_from=task.copy_annotation,
                 labels=labels)
    record["bytes"] = len(source)
    task.output.open().publish(output.relative, source)
    _OutputJournal.append(task, record)


def _publish_rendered(task: SourceTask, output: OutputPlan, pixels: np.ndarray, steps, fmt: str,
                      record: dict, labels: tuple | None = None) -> None:
    """Encode an output's pixels (within the profile's limits) and publish them, annotation
    file first, each whole."""
    pixels, fitted, aspect = _fit_aspect(pixels, task)
    data, adjustments = _encode(pixels, fmt, task)
    if aspect is not None:
        adjustments = {"aspect": aspect, **adjustments}
    _write_boxes(task, output, steps, pixels, adjustments, record, fitted, labels=labels)
    record["bytes"] = len(data)
    if adjustments:
        record["conformed"] = adjustments
    task.output.open().publish(output.relative, data)
    _OutputJournal.append(task, record)


def _write_boxes(task: SourceTask, output: OutputPlan, steps, pixels: np.ndarray,
                 adjustments: dict, record: dict, fitted: np.ndarray | None = None,
                 copy_from: tuple | None = None, labels: tuple | None = None) -> None:
    """Carry the source's boxes to one output, write its annotation file, note it in the record.

    The boxes go through the same sampled steps as the pixels, then through the
    pad or crop (``fitted``) and downscale a profile may have forced on the
    encoded file. Written before the image, so an image on disk always has its
    annotation beside it. ``copy_from``: an image copied as it is in a held-out
    split gets its source annotation file byte for byte (none if it had none).
    """
    fmt = task.annotation_format
    if task.boxes is None or fmt is None:
        return
    if labels is not None:  # mask images: the label map is the annotation
        _write_labels(task, output, steps, pixels, adjustments, record, fitted, labels)
        return
    after: tuple = () if fitted is None else (fitted,)  # what the profile did to the file
    size = pixels.shape[:2]
    if "size" in adjustments:
        width, height = adjustments["size"]
        after += (geometry.resize_matrix(size, (height, width)),)
        size = (height, width)
    kept, dropped = carry_through(task.boxes.boxes, steps, (task.boxes.height, task.boxes.width),
                                  size, task.donor_targets, fmt.min_visibility, after)
    record["size"] = [size[1], size[0]]
    record["boxes"] = [box.to_record() for box in kept]
    record["dropped_boxes"] = [item.to_record() for item in dropped]
    name = fmt.output_file(output.relative, task.boxes)
    if name is not None and copy_from is not None:
        held, key = copy_from
        try:
            data = held.open().read(key)
        except FileNotFoundError:
            return
        task.output.open().publish(name, data)
        record["annotation"] = name
    elif name is not None:
        depth = 1 if pixels.ndim == 2 or pixels.shape[2] <= 2 else 3
        text = encode_boxes(fmt, ImageBoxes(size[1], size[0], kept), Path(output.relative).name,
                            depth)
        task.output.open().publish(name, text)
        record["annotation"] = name


def _write_labels(task: SourceTask, output: OutputPlan, steps, pixels: np.ndarray,
                  adjustments: dict, record: dict, fitted: np.ndarray | None,
                  labels: tuple) -> None:
    """Carry the source's label map (mask images) to one output and publish it beside it:
    the same steps as the pixels, with nearest neighbour, then the profile's pad or crop
    and downscale; ``mask_fill`` wherever the image is filled. An output that is the source
    unchanged gets the map's own bytes."""
    fmt = task.annotation_format
    assert fmt is not None  # only called with one
    data, ids, *donor_maps = labels
    size = pixels.shape[:2]
    if steps or fitted is not None or "size" in adjustments:
        cval = fill_for(ids, fmt.mask_fill)
        ids = apply_steps_to_labels(ids, steps, cval,
                                    donor_maps[0].__getitem__ if donor_maps else None)
        if fitted is not None:
            ids = geometry.warp_nearest(ids, fitted, size, cval)
        if "size" in adjustments:
            width, height = adjustments["size"]
            ids = geometry.warp_nearest(ids, geometry.resize_matrix(size, (height, width)),
                                        (height, width), cval)
            size = (height, width)
        data = encode_labels(ids)
    name = fmt.file_for(output.relative)
    assert name is not None  # a label image is per image
    record["size"] = [size[1], size[0]]
    task.output.open().publish(name, data)
    record["annotation"] = name


