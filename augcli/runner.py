"""Plan a run, execute it on a process pool (or a Dask cluster), and report what happened.

Data flows one way: scan -> plan (a small ``PlannedSource`` per source) -> tasks
(one frozen ``SourceTask`` per source, one ``OutputPlan`` per output, each with
its own seed, built as a worker takes the source) -> workers (decode once,
sample, apply, encode, atomic write) -> parent (progress, manifest, report).
Workers receive plain data and return plain data; only the parent writes the
manifest and counts.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import errno
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from . import budget, datasets, formats, geometry, imagefiles, locations, manifest, stores
from .annotations import AnnotationFormat, AnnotationSource, encode_boxes
from .errors import (
    STOPS_RUN,
    ImageReadError,
    OutputError,
    UsageError,
    output_error,
)
from .executors import Executor, default_workers, open_executor
from .formats import AnnotationError, yolo
from .manifest import MANIFEST_NAME, read_manifest  # noqa: F401 - part of this module's API
from .ops.base import CATALOG
from .ops.multi import donor_names, donor_ops, most_donors
from .pipeline import (
    OutputTooLarge,
    apply_steps_to_labels,
    carry_boxes,
    donor_records,
    source_shares,
    steps_matrix,
    takes_donors,
)
from .probe import Sight, recipe_probe
from .profiles import Conform, Profile, get_profile
from .recipe import (
    MAX_TARGET_PER_CLASS,
    Recipe,
    load_recipe,
    profile_format_conflict,
    refuse_mirrors,
    refuse_ops_boxes_cannot_follow,
)
from .render import (
    Distinct,
    DuplicateOutput,
    OutputPlan,
    augmented_output,
    original_output,
    source_outputs,
)
from .report import JobReport, progress_bar
from .stores import StoreSpec
from .targets import KIND_NAMES
from .targets.boxes import ImageBoxes, count_labels, transform_boxes
from .targets.masks import LabelMapError, decode_labels, encode_labels, fill_for
from .targets.polygons import Polygon
from .tiles import LABELS_NAME, area_weights, labels_csv
from .variety import plan_needs, variant_warnings

# --- plan ----------------------------------------------------------------------

@dataclass(frozen=True)
class SourceTask:
    """Everything a worker needs for one source image: plain, picklable data.

    The stores are specs (a location and non-secret options), never open
    filesystems: a worker opens them with its own credentials."""

    input: StoreSpec  # where the source is read from (a folder or a URL prefix)
    relative: str
    output: StoreSpec  # where its outputs are published
    outputs: tuple
    format: str | None  # None: keep the source's format
    quality: int
    max_pixels: int = imagefiles.DEFAULT_MAX_PIXELS
    profile: Profile | None = None  # upload target whose limits every output must meet
    boxes: ImageBoxes | None = None  # the source's boxes, when the recipe has annotations
    annotation_format: AnnotationFormat | None = None
    conform: Conform = Conform()  # how outputs meet the profile's aspect-ratio limit
    copy_annotation: tuple | None = None  # held-out split: (store spec, key) of the annotation
    # file copied as it is
    done: frozenset = frozenset()  # outputs an earlier run finished: not written again
    stamp: dict | None = None  # the source's stamp from the plan's listing (object stores)
    publish_threads: int = 0  # threads that encode and publish while the next output renders
    donor_boxes: tuple = ()  # (name, ImageBoxes) of each donor its outputs take (annotations)
    donor_stamps: tuple = ()  # (name, stamp) of its donors, from the plan's listing (object
    # stores; a folder's are taken as each donor is read)
    classes: tuple = ()  # (name, class) of the source and its donors: soft labels
    fingerprint: str = ""  # the recipe's, for the records the worker journals

    @property
    def donor_targets(self):
        """name -> ImageBoxes of the donors its outputs take; None without annotations."""
        return dict(self.donor_boxes).__getitem__ if self.boxes is not None else None


@dataclass(frozen=True, slots=True)
class PlannedSource:
    """What a plan keeps of one source until its task is built: a few small fields, however
    many outputs the source makes."""

    relative: str
    format: str | None  # the output format; None keeps the source's own
    boxes: ImageBoxes | None = None  # the source's boxes, when the recipe has annotations
    augment: bool = True  # False: an image of a dataset split that is only copied
    balance: tuple | None = None  # balancing: (its position among its class's sources, their count)
    stamp: dict | None = None  # size and time, from the listing of an object store's input


@dataclass
class Plan:
    """Every source to do and how: its outputs, their names and seeds are decided by the
    recipe, and built (``tasks``) only when a source is handed to a worker, so that a plan
    of millions of outputs holds per source only its ``PlannedSource``."""

    recipe: Recipe
    input_dir: Path | str  # a folder, or a URL
    output_store: StoreSpec  # the output folder or URL prefix
    sources: list  # PlannedSource per source, in order
    ignored: list  # files in the input folder that are not images
    classes: list = field(default_factory=list)  # ClassCount per class folder, when balancing
    failures: list = field(default_factory=list)  # (path, reason): sources skipped when planning
    annotations: AnnotationSource | None = None
    dataset: datasets.Dataset | None = None  # a dataset with splits (data.yaml, split folders)
    input_store: StoreSpec | None = None  # set by plan_run

    def output(self):
        """The output's store (a folder or an object-store prefix), opened in this process."""
        return self.output_store.open()

    def input(self):
        """The input's store (a folder or an object-store prefix), opened in this process."""
        if self.input_store is None:
            raise UsageError(f"no store for the input {self.input_dir}")
        return self.input_store.open()

    @property
    def tasks(self) -> Tasks:
        """The ``SourceTask`` of each source, in order, each built when it is asked for."""
        return Tasks(self)

    def task(self, source: PlannedSource) -> SourceTask:
        """The task of one source, with all of its outputs."""
        annotations = self.annotations
        assert self.input_store is not None  # plan_run's
        outputs = tuple(self.outputs_of(source))
        return SourceTask(self.input_store, source.relative, self.output_store,
                          outputs, source.format, self.recipe.quality,
                          profile=self._profile, boxes=source.boxes,
                          annotation_format=annotations.format if annotations else None,
                          conform=self.recipe.conform or Conform(),
                          copy_annotation=_held_out_annotation(self.dataset, annotations,
                                                               source.relative),
                          stamp=source.stamp, donor_boxes=self._donor_boxes(outputs),
                          donor_stamps=self._donor_stamps(outputs),
                          classes=self._classes(source, outputs))

    def outputs_of(self, source: PlannedSource) -> list:
        """A source's ``OutputPlan``\\ s, in order (the only place they are decided), each
        with its donors when its ops take some."""
        outputs = self._outputs_of(source)
        return self._with_donors(source, outputs) if self.takes_donors else outputs

    def _outputs_of(self, source: PlannedSource) -> list:
        relative = Path(source.relative)
        if not source.augment:
            return [original_output(relative, source.format)]
        if source.balance is None:
            return source_outputs(self.recipe, relative, source.format)
        position, count = source.balance
        return balanced_outputs(self.recipe, relative, position, count, source.format,
                                self._trees)

    def count_of(self, source: PlannedSource) -> int:
        """How many outputs a source makes, without deciding them."""
        recipe = self.recipe
        if not source.augment:
            return 1
        if source.balance is None:
            return int(recipe.include_original) + sum(variant.outputs_per_source
                                                      for variant in recipe.variants)
        position, count = source.balance
        return 1 + len(_extra_rounds(recipe, position, count))

    def files_written(self):
        """The name of every file the plan writes (its images and their annotation files),
        source by source, each with a hint for when two sources would write it."""
        for source in self.sources:
            yield from _files_written(self.outputs_of(source), self.annotations, source.boxes)

    def objects_before(self) -> dict:
        """Objects per label in the planned sources (empty without annotations)."""
        return count_labels(box for source in self.sources if source.boxes is not None
                            for box in source.boxes.boxes)

    @property
    def total_outputs(self) -> int:
        return sum(map(self.count_of, self.sources))

    @functools.cached_property
    def _profile(self) -> Profile | None:
        return get_profile(self.recipe.profile) if self.recipe.profile else None

    @functools.cached_property
    def takes_donors(self) -> bool:
        """Whether any op of the recipe takes donor images (mosaic, cutmix, mixup)."""
        return any(most_donors(tree) for trees in self._trees.values() for tree in trees)

    @functools.cached_property
    def donor_ops(self) -> frozenset:
        """The names of the recipe's ops that take donor images."""
        return frozenset().union(*(donor_ops(tree) for trees in self._trees.values()
                                   for tree in trees))

    def _with_donors(self, source: PlannedSource, outputs: list) -> list:
        """The outputs with the donors their ops may take, drawn from each output's seed
        among the other sources of its split: only names travel in a task, never the
        split's listing, and a worker reads each donor of its task once."""
        pool, own = self._donor_pools.get(source.relative, ((source.relative,), 0))
        return [replace(output, donors=donor_names(output.seed, count, pool, own),
                        relative=self.mixed_name(output.relative) if self.soft_labels
                        else output.relative)
                if output.variant is not None and (count := most_donors(output.ops)) else output
                for output in outputs]

    @functools.cached_property
    def soft_labels(self) -> bool:
        """Whether the outputs of donor ops mix classes of class folders (no annotations):
        such an output goes beside its split's class folders (``mixed_name``), never in one,
        and its class weights go to ``labels.csv``, as ``augcli ricap`` writes them."""
        return self.annotations is None and self.takes_donors and \
            any(self.class_of(source.relative) for source in self.sources if source.augment)

    def class_of(self, relative: str) -> str | None:
        """The class of a source: the first folder of its path under its split's folder (the
        input's without splits); None for an image directly there."""
        under = relative[len(self._split_folder(relative)):]
        return under.split("/", 1)[0] if "/" in under else None

    def mixed_name(self, relative: str) -> str:
        """Where an output that mixes classes goes: out of its class folder, into the folder
        that holds the class folders, its path there joined by ``_``
        (``cats/tom_mosaic_1.jpg`` -> ``cats_tom_mosaic_1.jpg``)."""
        folder = self._split_folder(relative)
        return folder + relative[len(folder):].replace("/", "_")

    def _split_folder(self, relative: str) -> str:
        """The folder (with its ``/``) of the split that holds ``relative``; '' without."""
        split = self.dataset.split_of(relative) if self.dataset else None
        return next((folder + "/" for folder in (split.folders if split else ())
                     if relative.startswith(folder + "/")), "")

    def _classes(self, source: PlannedSource, outputs) -> tuple:
        """(name, class) of a source and of every donor its outputs take (soft labels)."""
        if not self.soft_labels:
            return ()
        names = {source.relative} | {name for output in outputs for name in output.donors}
        return tuple((name, self.class_of(name)) for name in sorted(names))

    def _donor_stamps(self, outputs) -> tuple:
        """(name, stamp) of the donors the outputs take, where the plan's listing gave one."""
        names = sorted({name for output in outputs for name in output.donors})
        return tuple((name, stamp) for name in names
                     if (stamp := self._by_name[name].stamp) is not None)

    @functools.cached_property
    def _donor_pools(self) -> dict:
        """source -> (the names of its split's augmented sources, its index there)."""
        splits: dict = {}
        for source in self.sources:
            if source.augment and (self.annotations is None or source.boxes is not None):
                split = self.dataset.split_of(source.relative) if self.dataset else None
                splits.setdefault(split.name if split else "", []).append(source.relative)
        pools: dict = {}
        for names in splits.values():
            pool = tuple(names)
            pools.update((name, (pool, index)) for index, name in enumerate(pool))
        return pools

    def _donor_boxes(self, outputs) -> tuple:
        """(name, ImageBoxes) of every donor the outputs take, with annotations."""
        if self.annotations is None:
            return ()
        names = sorted({name for output in outputs for name in output.donors})
        return tuple((name, self._by_name[name].boxes) for name in names)

    @functools.cached_property
    def _by_name(self) -> dict:
        return {source.relative: source for source in self.sources}

    @functools.cached_property
    def _trees(self) -> dict:
        """Each variant's op trees, in output order (balancing picks among them)."""
        return {variant.name: list(variant.expand()) for variant in self.recipe.variants}


class Tasks(Sequence):
    """A plan's tasks, one per source, each built when it is asked for and held by no one
    but the caller."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan.sources)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.plan.task(source) for source in self.plan.sources[index]]
        return self.plan.task(self.plan.sources[index])

    def __iter__(self):
        return map(self.plan.task, self.plan.sources)


@dataclass(frozen=True)
class ClassCount:
    """Images of one class folder before the run and after it (balancing)."""

    tag: str
    before: int
    after: int


def output_format(recipe: Recipe, relative: Path, store) -> str | None:
    """The format to write a source's outputs in; None keeps the source's own.

    With a profile, a source format the target does not accept becomes PNG if
    the image has transparency, else JPEG.
    """
    if recipe.format or recipe.profile is None:
        return recipe.format
    if get_profile(recipe.profile).accepts(imagefiles.format_of(relative)):
        return None
    key = relative.as_posix()
    return "png" if store.header(key, lambda header: imagefiles.has_alpha(header, key)) else "jpg"


def balanced_outputs(recipe: Recipe, relative: Path, position: int, count: int,
                     fmt: str | None = None, trees: dict | None = None) -> list:
    """The outputs of one source of a class folder that ``recipe.target_per_class`` brings
    up to its target: the source at ``position`` of the folder's ``count`` sources.

    Originals are always copied (the output folder is the upload-ready set).
    Extra outputs go round-robin over the folder's sources in sorted order, so every
    source is used once before any is used twice: source i's r-th extra output is the
    folder's extra i + r * count, from variant (i + r) mod V, so variants alternate
    within and across rounds. A variant used again on the same source takes its next
    index (and its next sweep value, if it sweeps). ``trees``: each variant's op trees
    (``list(variant.expand())``), when the caller already has them.
    """
    fmt = fmt or recipe.format
    trees = trees or {variant.name: list(variant.expand()) for variant in recipe.variants}
    outputs = [original_output(relative, fmt)]
    uses: dict = {}
    for round_ in range(len(_extra_rounds(recipe, position, count))):
        variant = recipe.variants[(position + round_) % len(recipe.variants)]
        index = uses[variant.name] = uses.get(variant.name, 0) + 1
        tree = trees[variant.name][(index - 1) % len(trees[variant.name])]
        outputs.append(augmented_output(recipe, relative, variant, index, tree, fmt))
    return outputs


def _extra_rounds(recipe: Recipe, position: int, count: int) -> range:
    """The class folder's extra outputs that fall to the source at ``position``."""
    return range(position, max(0, (recipe.target_per_class or 0) - count), count)


def plan_run(recipe: Recipe) -> Plan:
    """Scan the input folder and plan each source; its outputs, their names and seeds
    follow from the plan (``Plan.outputs_of``), built only when asked for.

    Sources that cannot be planned (unreadable folders and headers, bad
    annotations) are in ``Plan.failures``; the rest go on.
    """
    unreadable: list = []
    dataset, input_spec, output_spec, listing = _open_input(recipe, unreadable)
    spec, layout = _annotations_of(recipe, dataset)
    if dataset is not None and "include_original" not in recipe.raw:
        recipe = replace(recipe, include_original=True)  # a dataset keeps its training images
    input_dir = dataset.root if dataset else recipe.input
    assert input_dir is not None  # open_pair refuses a missing one
    input_store = input_spec.open()
    images, others, stamps = listing
    if dataset is not None:
        images, others = dataset.select(images, others, unreadable)
    else:
        imagefiles.require_images(images, input_dir)
        if spec is None and not recipe.labels_left_out:
            _refuse_labels_left_behind(input_store, images, others, input_dir)
    failures = {path: (path, reason) for path, reason in unreadable}
    source = AnnotationSource(spec, input_dir, layout, recipe.storage) if spec else None
    if source is not None:  # label maps beside the images are annotations, never sources
        others = others + [r for r in images if source.format.is_label_image(r.as_posix())]
        images = [r for r in images if not source.format.is_label_image(r.as_posix())]
    boxes = _read_boxes(source, images, failures)
    formats = _output_formats(recipe, input_store, images, failures)
    images = [relative for relative in images if relative.as_posix() not in failures]
    sources, classes = _plan_sources(recipe, images, formats, boxes, dataset, stamps)
    plan = Plan(recipe, input_dir, output_spec, sources, others, classes,
                list(failures.values()), source, dataset, input_spec)
    _refuse_unlabelled_donors(plan)
    _refuse_clashes(plan)
    return plan


def _refuse_labels_left_behind(store, images: list, others: list, where) -> None:
    """A plain folder whose images have label files (``datasets.labels_beside``), and a
    recipe without ``annotations:``: the outputs would be written without them. Refused,
    naming the line that carries them and the one that leaves them out on purpose."""
    found = datasets.labels_beside(store, images, others)
    if found is None:
        return
    line = datasets.annotations_line(found.format)
    if found.path is not None:  # a recipe's paths are its own: the full one works anywhere
        line = f"annotations: {{format: {found.format}, path: {locations.join(where, found.path)}}}"
    if found.images is not None:
        line = f"input: {locations.join(where, found.images)}' and '{line}"
    raise UsageError(f"{locations.join(where, found.shown_by)} looks like {found.format} "
                     "labels of the images, which the outputs would be written without: give "
                     f"the recipe '{line}' to carry them, or 'annotations: none' to augment "
                     "the images alone")


def _refuse_unlabelled_donors(plan: Plan) -> None:
    """Ops that take donors mix images of several classes. On class folders (a
    classification dataset's too) without annotations, their outputs get soft labels
    (``Plan.soft_labels``); an image beside the class folders has no class to weigh, so
    it is refused, as ``augcli ricap`` refuses it."""
    if plan.annotations is None and "copy_paste" in plan.donor_ops:
        raise UsageError("copy_paste cuts objects out of other images by their polygons: give "
                         "the recipe 'annotations:' with polygons (coco or yolo segmentation)")
    if plan.soft_labels and plan.recipe.target_per_class:
        raise UsageError("target_per_class fills each class folder, and mosaic, cutmix and "
                         "mixup write their outputs beside the class folders with soft labels "
                         "(labels.csv): remove target_per_class, or run the donor ops in a "
                         "recipe of their own")
    if plan.soft_labels:
        loose = next((s.relative for s in plan.sources
                      if s.augment and plan.class_of(s.relative) is None), None)
        if loose is not None:
            raise UsageError(
                f"mosaic, cutmix and mixup mix the classes of class folders into soft labels "
                f"(labels.csv), and {loose} is in no class folder: move it into the folder "
                "of its class")
    if plan.annotations is not None and plan.donor_ops - {"copy_paste"}:
        _refuse_donors_beyond_boxes(plan)
    if plan.annotations is not None and "copy_paste" in plan.donor_ops:
        _refuse_copy_paste_without_polygons(plan)


def _refuse_copy_paste_without_polygons(plan: Plan) -> None:
    """copy_paste cuts its objects out of donors by their polygons, and cuts the polygons it
    covers: a split with no polygon has nothing to paste, and a box, a keypoint, an oriented
    box or a label map would be left under the pasted pixels, so those are refused."""
    assert plan.annotations is not None  # the caller's
    if formats.lookup(plan.annotations.format.name).label_image:
        raise UsageError("copy_paste cuts objects by their polygons, not mask images "
                         f"(annotations: {{format: {plan.annotations.format.name}}}); leave "
                         "it out of this recipe")
    targets = [(source.relative, target) for source in plan.sources
               for target in (source.boxes.boxes if source.boxes else ())]
    beyond = next(((name, t) for name, t in targets if type(t) is not Polygon), None)
    if beyond is not None:
        raise UsageError(f"copy_paste carries polygons only: {beyond[0]} has a "
                         f"{type(beyond[1]).__name__} ({beyond[1].label}), which pasted objects "
                         "would cover without cutting it; leave copy_paste out of this recipe")
    if not targets:
        raise UsageError("copy_paste cuts objects out of donors by their polygons, and the "
                         "recipe's annotations have none: give them polygons (coco "
                         "segmentation, yolo-seg), or leave copy_paste out of this recipe")


def _refuse_donors_beyond_boxes(plan: Plan) -> None:
    """mosaic, cutmix and mixup carry the target kinds their op declares
    (``DonorKernels.carries``): a label map or another kind would be left behind its
    pixels, so it is refused."""
    assert plan.annotations is not None  # the caller's
    ops = sorted(plan.donor_ops - {"copy_paste"})
    if formats.lookup(plan.annotations.format.name).label_image:
        raise UsageError(f"{', '.join(ops)} carry no mask images "
                         f"(annotations: {{format: {plan.annotations.format.name}}}); leave "
                         "them out of this recipe")
    for name in ops:
        donor = CATALOG[name].donor
        assert donor is not None  # a donor op, by donor_ops
        carries = donor.carries
        for source in plan.sources:
            beyond = next((target for target in (source.boxes.boxes if source.boxes else ())
                           if KIND_NAMES[type(target)] not in carries), None)
            if beyond is not None:
                raise UsageError(f"{name} carries {', '.join(carries)} only: "
                                 f"{source.relative} has {KIND_NAMES[type(beyond)]} "
                                 f"({beyond.label}), which would be left behind its pixels; "
                                 f"leave {name} out of this recipe")


def _scan_input(store, unreadable: list) -> tuple[list, list, dict]:
    """(images, other files, stamps) of the input (``Store.scan_with_stamps``): the stamps
    an object store's listing gives travel in the tasks, so a worker asks for nothing
    but the image itself."""
    return store.scan_with_stamps(unreadable)


def _open_input(recipe: Recipe, unreadable: list) -> tuple:
    """(dataset or None, input spec, output spec, (images, other files, stamps) under the
    input root): the input's store listed once, and its layout (a data.yaml, split folders:
    ``datasets.open_dataset``) read from that listing, on a folder or an object store."""
    where = recipe.input
    dataset = None
    if str(where).lower().endswith((".yaml", ".yml")):  # a data.yaml: its root is listed
        dataset = datasets.open_dataset(where, recipe.splits, recipe.storage)
    if dataset is None:
        specs = stores.open_pair(where, recipe.output, recipe.storage)
        listing = _scan_input(specs[0].open(), unreadable)
        dataset = datasets.open_dataset(where, recipe.splits, recipe.storage,
                                        listing[0] + listing[1])
        if dataset is None or dataset.root == where:
            return (dataset, *specs, listing)
    specs = stores.open_pair(dataset.root, recipe.output, recipe.storage)
    unreadable.clear()
    return (dataset, *specs, _scan_input(specs[0].open(), unreadable))


def dataset_annotations(recipe: Recipe) -> tuple:
    """(dataset or None, AnnotationSpec or None, Layout or None) as a run reads the
    recipe's input (a folder, or an object-store prefix)."""
    dataset = datasets.open_dataset(recipe.input, recipe.splits, recipe.storage)
    return (dataset, *_annotations_of(recipe, dataset))


def _annotations_of(recipe: Recipe, dataset: datasets.Dataset | None) -> tuple:
    """(AnnotationSpec or None, Layout or None) of the recipe's input. A dataset's labels
    travel without ``annotations:`` in the recipe, so ops they cannot follow are refused
    just as with it."""
    if dataset is None:
        spec, layout = recipe.annotations, None
    elif recipe.labels_left_out:
        if dataset.yaml_file is not None:
            raise UsageError(f"annotations: none: {dataset.yaml_file} is a YOLO dataset, "
                             "whose labels its data.yaml names; remove the line")
        spec, layout = None, None
    else:
        spec, layout = dataset.annotations(recipe.annotations)
        if recipe.annotations is None and spec is not None:
            refuse_ops_boxes_cannot_follow(recipe, dataset.labels_reason(spec))
    if spec is not None and spec.task == yolo.POSE and spec.flip_idx is None:
        refuse_mirrors(recipe, "the keypoints have no flip_idx to swap left and right")
    return spec, layout


def _held_out_annotation(dataset, source: AnnotationSource | None,
                         relative: str) -> tuple | None:
    """The annotation file of an image in a split that is copied unchanged (per-image
    formats), to copy byte for byte beside the copied image: (its store's spec, its key)."""
    if dataset is None or source is None or dataset.augments(relative) or \
            source.format.file_for(relative) is None:
        return None
    return source.file_for(relative)


def _output_formats(recipe: Recipe, store, images: list, failures: dict) -> dict:
    """The output format of each source (see ``output_format``); a source whose header
    cannot be read (a profile must look at it) goes to ``failures``."""
    formats = {}
    for relative in images:
        rel = relative.as_posix()
        if rel in failures:
            continue
        try:
            formats[relative] = output_format(recipe, relative, store)
        except ImageReadError as exc:
            failures[rel] = (rel, exc.reason)
        except OSError as exc:
            failures[rel] = (rel, f"cannot read ({exc.strerror or exc})")
    return formats


def _read_boxes(source: AnnotationSource | None, images: list, failures: dict) -> dict:
    """Boxes per source (relative path -> ImageBoxes); a source whose annotations cannot
    be read goes to ``failures`` (relative path -> (path, reason)): skipped, the rest go on.

    A malformed annotation is reported where it is (``in/cats/tom.txt:3``). An
    image whose header cannot be read is left to the worker, which reports it as
    it reports any unreadable image."""
    boxes: dict = {}
    if source is None:
        return boxes
    for relative in images:
        rel = relative.as_posix()
        try:
            boxes[rel] = source.read(rel)
        except AnnotationError as exc:
            failures[rel] = (exc.location, f"{exc.reason} ({rel} skipped)")
        except ImageReadError:
            continue
    source.require_some(len(images))
    return boxes


def _files_written(outputs, source: AnnotationSource | None, boxes: ImageBoxes | None = None):
    """Every file a source's outputs make (the images and their annotation files), each
    with a hint for when two sources would make the same one. ``boxes``: the source's
    annotations (a label map is written only for a source that has one)."""
    for output in outputs:
        yield output.relative, " or drop 'format:'"
        annotation = None if source is None else source.format.output_file(output.relative,
                                                                             boxes)
        if annotation is not None:
            yield annotation, " (images that differ only in extension share annotation files)"


def _plan_sources(recipe: Recipe, images: list, formats: dict, boxes: dict,
                  dataset: datasets.Dataset | None = None,
                  stamps: dict | None = None) -> tuple[list, list]:
    """A ``PlannedSource`` per image, and per-class counts when the recipe balances classes.

    In a dataset, images of the splits not augmented are only copied."""
    def planned(relative: Path, **how) -> PlannedSource:
        rel = relative.as_posix()
        return PlannedSource(rel, formats[relative], boxes.get(rel),
                             stamp=stamps.get(rel) if stamps else None, **how)

    copied = {relative for relative in images
              if dataset is not None and not dataset.augments(relative.as_posix())}
    if recipe.target_per_class is None:
        return [planned(relative, augment=relative not in copied) for relative in images], []
    by_class: dict = {}
    for relative in images:
        if relative not in copied:
            by_class.setdefault(relative.parent.as_posix(), []).append(relative)
    position = {relative: (index, len(members)) for members in by_class.values()
                for index, relative in enumerate(members)}
    classes = [ClassCount(tag, len(members), max(len(members), recipe.target_per_class))
               for tag, members in by_class.items()]
    return [planned(relative, augment=False) if relative in copied else
            planned(relative, balance=position[relative]) for relative in images], classes


def _refuse_clashes(plan: Plan) -> None:
    """Refuse two sources that would write the same file, before anything is written.

    Every file a source makes is named after it: its folder and stem, then ``.`` or
    ``_`` (its annotation files too, in their own folder). So two sources can share a
    file only when, in one folder, one's stem is the other's or starts with it and
    ``.`` or ``_``: only the files of such sources are listed and compared, and the
    plan holds no name per output. The clash reported is the first in plan order.
    """
    clashes = [clash for group in _related_sources(plan) if (clash := _first_clash(plan, group))]
    if clashes:
        raise UsageError(min(clashes)[2])


def _first_clash(plan: Plan, group: list) -> tuple | None:
    """The first file two sources of ``group`` would both write: (index of the second
    source, of the file among its files, the message), or None."""
    claimed: dict = {}
    for index in group:
        rel = plan.sources[index].relative
        written = _files_written(plan.outputs_of(plan.sources[index]), plan.annotations,
                                 plan.sources[index].boxes)
        for position, (name, hint) in enumerate(written):
            if name in claimed:
                return index, position, (f"{claimed[name]} and {rel} would both write {name}; "
                                         f"rename one of them{hint}")
            claimed[name] = rel
    return None


def _related_sources(plan: Plan) -> list:
    """Groups of sources (indices, in plan order) whose files could share a name (see
    ``_refuse_clashes``); sources that cannot clash with any other are left out."""
    by_stem: dict = {}  # (folder, stem) -> indices of the sources it names files after
    for index, source in enumerate(plan.sources):
        for name in map(PurePosixPath, _copy_files(plan, source)):
            by_stem.setdefault((name.parent.as_posix(), name.stem), []).append(index)
    group = list(range(len(plan.sources)))  # union-find: index -> an index of its group

    def root(index: int) -> int:
        while group[index] != index:
            group[index] = index = group[group[index]]
        return index

    def join(one: int, other: int) -> None:
        group[root(other)] = root(one)

    stems: dict = {}
    for folder, stem in by_stem:
        stems.setdefault(folder, []).append(stem)
    for folder, names in stems.items():
        names.sort()
        for stem in names:
            first, *others = by_stem[folder, stem]
            for other in others:
                join(first, other)
            for prefix in (stem + ".", stem + "_"):
                at = bisect.bisect_left(names, prefix)
                while at < len(names) and names[at].startswith(prefix):
                    join(first, by_stem[folder, names[at]][0])
                    at += 1
    groups: dict = {}
    for index in range(len(plan.sources)):
        groups.setdefault(root(index), []).append(index)
    return [members for members in groups.values() if len(members) > 1]


# --- worker --------------------------------------------------------------------

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
    donors = _Donors(source, task.outputs, dict(task.donor_stamps))
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


class _Donors:
    """The donor images of one task, each read through the input store and decoded once,
    however many of the task's outputs take it, and let go after the last of them."""

    def __init__(self, store, outputs, stamps: dict):
        self.store = store
        self.images: dict = {}
        self.stamps = stamps  # name -> stamp: the listing's, or taken before it is read
        self.position = {output.relative: index for index, output in enumerate(outputs)}
        self.last = {name: index for index, output in enumerate(outputs)
                     for name in output.donors}  # the last output that takes each donor

    def release_before(self, output: OutputPlan) -> None:
        """Drop the donors no output from ``output`` on takes."""
        here = self.position[output.relative]
        for name in [name for name in self.images if self.last[name] < here]:
            del self.images[name]

    def image(self, name: str) -> np.ndarray:
        if name not in self.images:
            try:
                if name not in self.stamps:
                    self.stamps[name] = imagefiles.read_source(
                        functools.partial(self.store.stamp, name), self.store.name(name))
                self.images[name] = self.store.read_image(name)
            except ImageReadError as exc:
                raise DonorUnreadable(f"its donor {name} cannot be read: {exc.reason}") from None
        return self.images[name]

    def shape(self, name: str) -> tuple:
        return self.image(name).shape[:2]


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
    boxes, shape, carried = task.boxes.boxes, (task.boxes.height, task.boxes.width), ()
    if takes_donors(steps):  # tiles and patches: no one matrix moves the boxes
        boxes, carried, steps, shape = carry_boxes(boxes, steps, shape,
                                                   task.donor_targets,
                                                   fmt.min_visibility)
    matrix = steps_matrix(steps, shape)
    if fitted is not None:
        matrix = fitted @ matrix
    size = pixels.shape[:2]
    if "size" in adjustments:
        width, height = adjustments["size"]
        matrix = geometry.resize_matrix(size, (height, width)) @ matrix
        size = (height, width)
    kept, dropped = transform_boxes(boxes, matrix, size, fmt.min_visibility)
    record["size"] = [size[1], size[0]]
    record["boxes"] = [box.to_record() for box in kept]
    record["dropped_boxes"] = [item.to_record() for item in (*carried, *dropped)]
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
    data, ids = labels
    size = pixels.shape[:2]
    if steps or fitted is not None or "size" in adjustments:
        cval = fill_for(ids, fmt.mask_fill)
        ids = apply_steps_to_labels(ids, steps, cval)
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


# --- resume ----------------------------------------------------------------------

def _resume(plan: Plan, fingerprint: str, overwrite: bool,
            dry_run: bool = False, settings: dict | None = None) -> manifest.Resume:
    """Outputs already finished by an earlier run of this same recipe, and the ``started``
    lines of its sources that were handed to workers but not finished
    (``manifest.reconcile``, as every command resumes and refuses).

    Holds what the output and its manifest name (nothing on a fresh run); the plan's
    own names are computed source by source and never held. ``settings``: the recipe's
    (``Recipe.settings``), to say what changed when refusing another recipe's outputs.
    """
    store = plan.output()
    store.check_inside(_one_file_per_folder(plan))
    own = [MANIFEST_NAME]
    if plan.annotations is not None:
        own += plan.annotations.output_files()
    if plan.dataset is not None:
        own += plan.dataset.output_files()
    if plan.soft_labels:
        own.append(LABELS_NAME)
    lines = manifest.read_lines(store)
    earlier = manifest.check_names(store, manifest.Earlier.of_lines(lines))
    header = next((line[_HEADER] for line in lines if isinstance(line.get(_HEADER), dict)),
                  None)
    return manifest.reconcile(
        store, earlier, fingerprint=fingerprint, own=own, overwrite=overwrite,
        dry_run=dry_run, planned=lambda: (name for name, _ in plan.files_written()),
        other_run=lambda: _other_recipe(store, header, settings))


_HEADER = "run"  # the manifest line that holds the recipe's settings: {"run": {...}}


def _header(settings: dict | None) -> dict | None:
    """The manifest's first line: the recipe's settings, as JSON reads them back."""
    return None if settings is None else \
        {_HEADER: json.loads(json.dumps(settings, sort_keys=True, default=str))}


def _other_recipe(store, earlier: dict | None, settings: dict | None) -> str:
    """Why an output of another recipe is refused, naming what changed where the manifest
    records the settings it was made with (older manifests do not)."""
    advice = f"; rerun with --overwrite to replace them, or choose another output {store.noun}"
    now = _header(settings)
    if earlier is None or now is None:
        return (f"{manifest.where(store)} holds outputs of a different recipe, seed or input "
                f"folder{advice}")
    changed = manifest.changes(earlier, now[_HEADER])
    return (f"{manifest.where(store)} holds outputs of other settings "
            f"({', '.join(changed) or 'another augcli version'}){advice}")


def _one_file_per_folder(plan: Plan):
    """A file the plan writes in each folder it writes to (what ``check_inside`` needs):
    every file of a source goes beside its copy or that copy's annotation file."""
    for source in plan.sources:
        yield from _copy_files(plan, source)


def _copy_files(plan: Plan, source: PlannedSource):
    """The names of a source's copy and of its annotation file (when it has one): every
    other file the source makes is named after one of them, in the same folder."""
    original = original_output(Path(source.relative), source.format)
    names = [name for name, _ in _files_written([original], plan.annotations, source.boxes)]
    return names + [plan.mixed_name(original.relative)] if plan.soft_labels else names


def _unchanged(stamp: dict | None, records: list) -> bool:
    """Whether a source (its ``stamp``; None: it cannot be read) is the very file its
    earlier outputs were made from."""
    return stamp is not None and all(record.get(key) == value for record in records
                                     for key, value in stamp.items())


def _donors_unchanged(plan: Plan, stamp, record: dict) -> bool:
    """Whether every donor an earlier output took is still in the plan and the very file it
    took (its stamp, as the record's ``donor_stamps`` has it)."""
    return all(name in plan._by_name and _unchanged(stamp(plan._by_name[name]), [taken])
               for name, taken in record.get("donor_stamps", {}).items())


def _stamps(plan: Plan):
    """source -> its stamp (None where it cannot be read): the one the plan's listing gave
    (an object store's, never one request per source there), or else asked of the store."""
    store = plan.input()
    asked: dict = {}  # a donor is asked again for every output that took it

    def stamp(source: PlannedSource) -> dict | None:
        if source.stamp is not None:
            return source.stamp
        if source.relative not in asked:
            try:
                asked[source.relative] = store.stamp(source.relative)
            except OSError:
                asked[source.relative] = None
        return asked[source.relative]
    return stamp


def _count_finished(plan: Plan, finished: dict, report: Report) -> set:
    """Count the outputs an earlier run finished as skipped, and return the sources with
    none left to do. A source that changed since has none finished: its stale records
    are dropped from ``finished``."""
    complete: set = set()
    if not finished:
        return complete
    stamp = _stamps(plan)
    for source in plan.sources:
        names = [output.relative for output in plan.outputs_of(source)]
        earlier = [finished[name] for name in names if name in finished]
        if earlier and not _unchanged(stamp(source), earlier):
            for record in earlier:
                del finished[record["output"]]
            earlier = []
        for record in [r for r in earlier if not _donors_unchanged(plan, stamp, r)]:
            del finished[record["output"]]
            earlier.remove(record)
        report.skipped += len(earlier)
        if len(earlier) == len(names):
            complete.add(source.relative)
    return complete


def _remaining_tasks(plan: Plan, finished, complete: set):
    """The tasks of the sources with outputs still to make, each built as it is asked for,
    with its outputs in ``finished`` (names) as ``done``."""
    for source in plan.sources:
        if source.relative in complete or not plan.count_of(source):
            continue
        # the finished outputs stay in the task: the worker draws them again (without
        # writing them) so that its duplicate redraws come out as in a whole run
        task = plan.task(source)
        yield replace(task, done=frozenset(output.relative for output in task.outputs
                                           if output.relative in finished))


def dry_run(recipe, *, input=None, output=None, seed=None, per_class=None, profile=None,
            overwrite=False) -> tuple:
    """What ``run_recipe`` would do, with the same refusals, writing nothing.

    Returns (plan, outputs already finished that a run would skip, warnings about
    variants that cannot vary).
    """
    recipe = resolve_recipe(recipe, input=input, output=output, seed=seed, per_class=per_class,
                            profile=profile)
    plan = plan_run(recipe)
    with manifest.guard(plan.output(), dry_run=True):  # refused while another run writes
        finished = _resume(plan, recipe.fingerprint, overwrite, dry_run=True,
                           settings=recipe.settings).finished
    counted = Report()
    _count_finished(plan, finished, counted)
    return plan, counted.skipped, variant_warnings(plan.recipe, plan_needs(plan))


# --- run -----------------------------------------------------------------------

@dataclass
class Report(JobReport):
    """Counts of one run; owns the exit code."""

    classes: list = field(default_factory=list)  # ClassCount per class folder, when balancing
    objects: dict = field(default_factory=dict)  # label -> (in the sources, in the output folder)
    notes: list = field(default_factory=list)  # things the user should know (a lock taken over)

    def class_lines(self) -> list:
        """One line per class folder when balancing: count before -> after."""
        return [f"{c.tag}: {c.before} -> {c.after}" if c.after > c.before else
                f"{c.tag}: {c.before} (already at or above the target, nothing added)"
                if c.after == c.before else f"{c.tag}: {c.before} -> {c.after} (some failed)"
                for c in self.classes]

    def object_lines(self) -> list:
        """With annotations: objects per label in the sources and in the output folder."""
        return [f"objects {label}: {before} -> {after}"
                for label, (before, after) in self.objects.items()]

    def to_json(self) -> dict:
        """JobReport's summary, plus per-class counts (balancing) and objects per label
        (annotations), empty without them."""
        return {**super().to_json(),
                "classes": [{"class": c.tag, "before": c.before, "after": c.after}
                            for c in self.classes],
                "objects": {label: {"sources": before, "output": after}
                            for label, (before, after) in self.objects.items()}}


def resolve_recipe(recipe, input=None, output=None, seed=None, per_class=None,
                   profile=None) -> Recipe:
    """Load a recipe (a path or a ``Recipe``) and apply the caller's overrides."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if profile is not None:
        profile = get_profile(profile).name
        conflict = profile_format_conflict(profile, recipe.format)
        if conflict:
            raise UsageError(f"--profile {profile}: the recipe's format {conflict}")
    if per_class is not None and not 1 <= per_class <= MAX_TARGET_PER_CLASS:
        raise UsageError(f"--per-class: expected an integer in [1, {MAX_TARGET_PER_CLASS:,}], "
                         f"got {per_class}")
    return recipe.with_overrides(input=_path(input), output=_path(output), seed=seed,
                                 target_per_class=per_class, profile=profile)


def run_recipe(recipe, *, input=None, output=None, seed=None, per_class=None, profile=None,
               workers=None, overwrite=False, progress=False, notify=None, cluster=None,
               client=None) -> Report:
    """Run a recipe (a path or a ``Recipe``) and return the ``Report``.

    ``input``, ``output``, ``seed``, ``per_class`` (target_per_class) and
    ``profile`` override the recipe; ``input`` and ``output`` may be folders or
    object-store URLs. ``notify`` receives one line per failed input as it
    happens. This is what ``augcli run`` calls.

    The tasks run on a local process pool of ``workers``, unless ``cluster``
    (``"local"``, a Dask scheduler address or a scheduler file) or ``client`` (any
    ``distributed.Client``) says to run them on a Dask cluster: same bytes, same
    manifest records.
    """
    started = time.perf_counter()
    recipe = resolve_recipe(recipe, input=input, output=output, seed=seed, per_class=per_class,
                            profile=profile)
    plan = plan_run(recipe)
    report = Report(ignored=plan.ignored, classes=plan.classes, notify=notify,
                    output_dir=str(plan.output_store))
    for path, reason in plan.failures:
        report.fail(path, reason)
    report.notes.extend(plan.dataset.notes if plan.dataset is not None else ())
    report.notes.extend(_backslash_notes(recipe))
    workers = workers or recipe.workers or default_workers()
    memory = budget.run_budget()  # AUGCLI_MEMORY or a share of what is free now
    store = plan.output()
    # the cluster is checked before any write; the lock is a folder's or a prefix's
    with open_executor(workers, cluster, client, memory, recipe_probe(recipe),
                       _sight(plan)) as executor, \
            manifest.guard(store, dry_run=False, note=report.notes.append):
        resume = _resume(plan, recipe.fingerprint, overwrite, settings=recipe.settings)
        finished, started_lines = resume.finished, resume.started
        complete = _count_finished(plan, finished, report)
        with _Run(plan, recipe.fingerprint, report, executor,
                  header=_header(recipe.settings)) as run:
            run.prepare(finished.values(), started_lines, complete)
            done = set(finished)  # names are enough from here on
            del finished
            with run.finishing():
                run.execute(_remaining_tasks(plan, done, complete),
                            len(plan.sources) - len(complete), progress)
    report.seconds = time.perf_counter() - started
    return report


def _backslash_notes(recipe: Recipe) -> list:
    """A Windows-style path on a system where ``\\`` is no separator names one folder with
    backslashes in its name: say so rather than let it pass silently."""
    if os.sep == "\\":
        return []
    return [f"the {key} folder {str(value)!r} has backslashes, which are part of a folder "
            f"name here, not separators: it is one folder of that name. Write / instead"
            for key, value in (("input", recipe.input), ("output", recipe.output))
            if isinstance(value, Path) and "\\" in str(value)]


def _sight(plan: Plan) -> Sight | None:
    """The first source whose size the plan's listing gave (an object store's input), for
    each worker to read back (see ``Sight``); None where there is none."""
    store = plan.input_store
    return next((Sight(store, source.relative, source.stamp["source_size"])
                 for source in plan.sources if store is not None and source.stamp
                 and source.stamp.get("source_size") is not None), None)


class _Run:
    """One run's state in the parent: the records so far (sorted as they come, in bounded
    memory), counts taken from them, and the sources handed out and not finished yet."""

    def __init__(self, plan: Plan, fingerprint: str, report: Report, executor: Executor,
                 header: dict | None = None):
        self.plan = plan
        self.fingerprint = fingerprint
        self.header = header  # the manifest's line of the recipe's settings
        self.report = report
        self.executor = executor  # where the tasks run
        self.store = plan.output()
        self.records = manifest.SortedRecords(self.store.spill_folder())
        self.per_class: dict = {}  # class folder -> outputs recorded (balancing)
        self.objects: dict = {}  # label -> objects in the outputs recorded (annotations)
        self.open: dict = {}  # source -> its "started" line, not finished yet
        self.todo: dict = {}  # source -> outputs handed out, for the bar

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.records.close()

    @property
    def signature(self) -> dict | None:
        """The workers' checked signature, recorded on a cluster run."""
        return self.executor.signature

    def _keep(self, record: dict) -> None:
        """One output record for the final manifest, and for its counts."""
        self.records.add(record)
        if self.plan.classes:
            tag = Path(record["source"]).parent.as_posix()
            self.per_class[tag] = self.per_class.get(tag, 0) + 1
        for item in record.get("boxes", ()):
            self.objects[item["label"]] = self.objects.get(item["label"], 0) + 1

    def prepare(self, finished, started_lines: list, complete: set) -> None:
        """Tidy the folder after a killed run and write the manifest as it stands: the
        records ``finished`` earlier, and the ``started`` lines of an earlier run for the
        sources still to do (not ``complete``)."""
        for record in finished:
            self._keep(record)
        named = {line["started"] for line in started_lines} - complete
        planned = {source.relative for source in self.plan.sources
                   if source.relative in named and self.plan.count_of(source)}
        self.open = {line["started"]: line for line in started_lines
                     if line["started"] in planned}
        self.store.tidy()
        manifest.rewrite(self.store, self.records, self.plan.classes,
                         list(self.open.values()), self.signature, self.header)
        try:
            if self.plan.annotations is not None:
                self.plan.annotations.prepare_output(self.plan.output())
            if self.plan.dataset is not None:
                self.plan.dataset.prepare_output(self.plan.output())
        except OSError as exc:
            raise output_error(self.plan.output_store, exc) from None

    def execute(self, tasks, count: int, progress: bool) -> None:
        """Hand the sources to workers (``tasks``: ``count`` of them, built as they go),
        within the executor's memory budget, publishing from the cores it leaves spare;
        journal each before it starts and its records as it finishes."""
        executor = self.executor
        if executor.spare_cores:
            tasks = _with_publish_threads(tasks, count, executor.workers)
        work = functools.partial(process_source, memory=executor.budget)
        bar = progress_bar(self.plan.total_outputs - self.report.skipped, enabled=progress,
                           unit="output")
        try:
            with manifest.Journal(self.store) as journal, _stopping_on_ctrl_c() as stopped:
                for result in executor.map(work, self._announced(tasks, journal),
                                           crashed=_crashed, count=count or 1,
                                           stop=lambda: bool(stopped)):
                    self._collect(result)
                    bar.update(self.todo.pop(result.relative, 0))
        finally:
            bar.close()

    def _announced(self, tasks, journal):
        """The tasks, each journalled as ``started`` just before a worker gets it."""
        for task in tasks:
            todo = [o for o in task.outputs if o.relative not in task.done]
            names = [name for name, _ in _files_written(todo, self.plan.annotations,
                                                        task.boxes)]
            line = manifest.started_line(task.relative, names, self.fingerprint)
            journal.append(line)
            self.open[task.relative] = line
            self.todo[task.relative] = len(todo)
            yield replace(task, fingerprint=self.fingerprint)

    def _collect(self, result: SourceResult) -> None:
        report = self.report
        report.images_read += result.decoded
        for record in result.records:  # journalled by the worker (see _OutputJournal)
            self._keep(record)
        self._close_started(result)
        report.written += len(result.records)
        for path, reason in result.failures:
            report.fail(path, reason)
        if result.stop is not None:
            raise OutputError(result.stop)

    def _close_started(self, result: SourceResult) -> None:
        """Drop a source's ``started`` line once records account for every file it named.
        A source that failed part-way (a worker killed after its first outputs, a write
        error) keeps a line naming the files still unaccounted for, so the rerun may
        replace them instead of refusing them as files no manifest explains."""
        line = self.open.pop(result.relative, None)
        if line is None:
            return
        recorded = {name for record in result.records
                    for name in (record.get("output"), record.get("annotation")) if name}
        left = [name for name in line["outputs"] if name not in recorded]
        if left and (result.decoded or result.crashed):  # undecoded: it wrote nothing
            self.open[result.relative] = manifest.started_line(result.relative, left,
                                                               self.fingerprint)

    @contextlib.contextmanager
    def finishing(self):
        """Whatever happens, end with the manifest rewritten whole (and the COCO file)."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(OutputError):  # the first error is the one to report
                self._finish()
            raise
        self._finish()

    def _finish(self) -> None:
        plan = self.plan
        self.report.classes = _classes_written(plan.classes, self.per_class)
        self.store.tidy()  # temp files of writes that died with their worker
        manifest.rewrite(self.store, self.records, self.report.classes,
                         list(self.open.values()), self.signature, self.header)
        if plan.annotations is not None:
            # one COCO file holds every output's boxes: it is made from the records (read
            # back in order); per-image formats need none of them
            records = self.records.records() if plan.annotations.folder_files else ()
            try:
                plan.annotations.finish_output(plan.output(), records)
            except OSError as exc:
                raise output_error(plan.output_store, exc) from None
            self.report.objects = _objects(plan, self.objects)
        if plan.soft_labels:
            self._write_labels()

    def _write_labels(self) -> None:
        """labels.csv: every output of the augmented sources that the manifest records (a
        resumed run's earlier ones too) with its class weights; an output that mixes no
        classes weighs 1 for its source's. Left as it is when it says the same."""
        plan = self.plan
        augmented = {s.relative for s in plan.sources if s.augment}
        classes = sorted({label for name in augmented if (label := plan.class_of(name))})
        rows = ((record["output"],
                 record.get("labels") or {plan.class_of(record["source"]): 1.0})
                for record in self.records.records() if record["source"] in augmented)
        data = labels_csv(rows, classes).encode("utf-8", "surrogateescape")
        try:
            if self.store.read(LABELS_NAME) == data:
                return
        except FileNotFoundError:
            pass
        try:
            self.store.publish(LABELS_NAME, data)
        except OSError as exc:
            raise output_error(self.store.name(LABELS_NAME), exc) from None


MAX_PUBLISH_THREADS = 2  # renders come one at a time: more threads would mostly wait


def publish_threads(workers: int, in_use: int) -> int:
    """Helper threads per worker process that encode and publish outputs while the next one
    renders: the cores the run was given and left idle by having fewer sources than
    ``workers`` (a handful of images with many copies each), shared out."""
    return min(workers // in_use - 1, MAX_PUBLISH_THREADS)


def _with_publish_threads(tasks, count: int, workers: int):
    """The ``count`` tasks, each with the publish threads of its worker: those of the cores
    that it and the sources after it leave idle. That is every task of a run with fewer
    sources than workers, and the last few of any run, which end alone."""
    for index, task in enumerate(tasks):
        threads = publish_threads(workers, max(1, min(workers, count - index)))
        yield replace(task, publish_threads=threads) if threads else task


@contextlib.contextmanager
def _stopping_on_ctrl_c():
    """Ctrl-C (or SIGTERM) stops handing out sources; those already running finish and are
    recorded, then the signal is raised as it would have been. A second one raises at once.
    Yields the list of signals received (empty: go on)."""
    received: list = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in signals}

    def stop(number, frame):
        if received:
            _raise_signal(previous[number], number, frame)
        received.append(number)

    for number in signals:
        signal.signal(number, stop)
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        _raise_signal(previous[received[0]], received[0], None)


def _raise_signal(handler, number: int, frame) -> None:
    """What ``handler`` (as ``signal.getsignal`` gave it) does with signal ``number``."""
    if callable(handler):
        handler(number, frame)
    raise KeyboardInterrupt


def _crashed(task: SourceTask, reason: str) -> SourceResult:
    """A worker died on this source (killed for memory, say): that source failed."""
    return SourceResult(task.relative, failures=[(task.relative, reason)], crashed=True)


def _classes_written(classes: list, written: dict) -> list:
    """Per-class counts with ``after`` as written (``written``: outputs per class folder;
    a failed source's outputs are missing)."""
    return [replace(count, after=written.get(count.tag, 0)) for count in classes]


def _objects(plan: Plan, after: dict) -> dict:
    """label -> (objects in the sources, objects in the output folder: ``after``), every
    label seen."""
    before = plan.objects_before()
    declared = plan.annotations.declared_labels if plan.annotations is not None else ()
    labels = sorted({*declared, *before, *after})
    return {label: (before.get(label, 0), after.get(label, 0)) for label in labels}


def _path(value):
    """A caller's ``input``/``output``: a URL stays text, anything else is a folder."""
    return locations.location(value if locations.is_url(value) else
                            (None if value is None else Path(value)))


