"""Plan a run: scan the input (a folder, a prefix, a dataset), read its annotations,
and plan each source (a small ``PlannedSource``); its outputs, their names, seeds and
donors follow from the plan and are built only when asked for (``Plan.task``).

Everything a recipe's input would lose or mislabel is refused here, before any work:
label files a run would leave behind, ops a target kind cannot follow, donors across
classes without soft labels, two outputs of one name.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from . import datasets, formats, imagefiles, locations, stores
from .annotations import AnnotationFormat, AnnotationSource
from .errors import (
    ImageReadError,
    UsageError,
)
from .formats import AnnotationError, yolo
from .manifest import MANIFEST_NAME, read_manifest  # noqa: F401 - part of this module's API
from .ops.base import CATALOG
from .ops.multi import donor_names, donor_ops, most_donors
from .profiles import Conform, Profile, get_profile
from .recipe import (
    Recipe,
    refuse_mirrors,
    refuse_ops_boxes_cannot_follow,
)
from .render import (
    augmented_output,
    original_output,
    source_outputs,
)
from .stores import StoreSpec
from .targets import KIND_NAMES
from .targets.boxes import ImageBoxes, count_labels
from .targets.polygons import Polygon
from .tiles import majority_class


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
            yield from output_files(self.outputs_of(source), self.annotations, source.boxes)

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

    def majority_copy(self, record: dict) -> str | None:
        """Where ``hard_label: majority`` copies an output with soft labels: into the folder
        of its largest class, beside the class folders it was taken out of
        (``cats_tom_mosaic_1.jpg`` of mostly cups -> ``cups/cats_tom_mosaic_1.jpg``); None
        for an output without soft labels."""
        weights = record.get("labels")
        if not isinstance(weights, dict) or not weights:
            return None
        output = record["output"]
        folder = self._split_folder(output)
        return f"{folder}{majority_class(weights)}/{output[len(folder):]}"

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
                     if (stamp := self.sources_by_name[name].stamp) is not None)

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
        return tuple((name, self.sources_by_name[name].boxes) for name in names)

    @functools.cached_property
    def sources_by_name(self) -> dict:
        """Relative path -> PlannedSource: a donor's stamp and boxes, by the name drawn."""
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
    if not found.mirrored:
        raise UsageError(f"{locations.join(where, found.shown_by)} looks like {found.format} "
                         "labels of the images, which the outputs would be written without, "
                         "laid out in a way augcli cannot read (a label file beside its image, "
                         "or under annotations.path in the same subfolders as the images): "
                         "lay them out so, or give the recipe 'annotations: none' to augment "
                         "the images alone")
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
    if plan.recipe.hard_label and not plan.soft_labels:
        raise UsageError("hard_label: majority copies the soft-labelled outputs of mosaic, "
                         "cutmix and mixup on class folders into their largest class's "
                         "folder, and this recipe makes none: remove the line")
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
    (``DonorKernels.carries``), and mask images where they paste label maps
    (``DonorKernels.labels``): anything else would be left behind its pixels, so it is
    refused."""
    assert plan.annotations is not None  # the caller's
    ops = sorted(plan.donor_ops - {"copy_paste"})
    if formats.lookup(plan.annotations.format.name).label_image:
        blends = [name for name in ops
                  if (donor := CATALOG[name].donor) is None or donor.labels is None]
        if blends:
            raise UsageError(f"{', '.join(blends)} {'carry' if len(blends) > 1 else 'carries'} "
                             "no mask images "
                             f"(annotations: {{format: {plan.annotations.format.name}}}): a "
                             "blend of two maps' class ids names no class; leave "
                             f"{'them' if len(blends) > 1 else 'it'} out of this recipe")
        return
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


def output_files(outputs, source: AnnotationSource | None, boxes: ImageBoxes | None = None):
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
        written = output_files(plan.outputs_of(plan.sources[index]), plan.annotations,
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
        for name in map(PurePosixPath, copy_files(plan, source)):
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


def one_file_per_folder(plan: Plan):
    """A file the plan writes in each folder it writes to (what ``check_inside`` needs):
    every file of a source goes beside its copy or that copy's annotation file."""
    for source in plan.sources:
        yield from copy_files(plan, source)


def copy_files(plan: Plan, source: PlannedSource):
    """The names of a source's copy and of its annotation file (when it has one): every
    other file the source makes is named after one of them, in the same folder."""
    original = original_output(Path(source.relative), source.format)
    names = [name for name, _ in output_files([original], plan.annotations, source.boxes)]
    return names + [plan.mixed_name(original.relative)] if plan.soft_labels else names
