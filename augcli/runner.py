"""Plan a run, execute it on a process pool, and report what happened.

Data flows one way: scan -> plan (one frozen ``SourceTask`` per source, one
``OutputPlan`` per output, each with its own seed) -> workers (decode once,
sample, apply, encode, atomic write) -> parent (progress, manifest, report).
Workers receive plain data and return plain data; only the parent writes the
manifest and counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import geometry, imagefiles, storage
from .annotations import (
    AnnotationError,
    AnnotationFormat,
    AnnotationSource,
    Box,
    ImageBoxes,
    count_labels,
    encode_boxes,
    transform_boxes,
)
from .errors import ImageReadError, UsageError
from .jobs import (
    JobReport,
    default_workers,
    map_in_workers,
    open_cluster,
    progress_bar,
)
from .pipeline import apply_steps, sample_steps, steps_matrix
from .profiles import Profile, get_profile
from .recipe import Recipe, load_recipe, profile_format_conflict
from .storage import StoreSpec

MANIFEST_NAME = "manifest.jsonl"


# --- plan ----------------------------------------------------------------------

@dataclass(frozen=True)
class OutputPlan:
    """One file to write. ``variant`` is None for a copy of the original."""

    relative: str
    variant: str | None
    index: int
    seed: int
    ops: tuple = ()


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


@dataclass
class Plan:
    recipe: Recipe
    input_dir: Path | str  # a folder, or a URL
    output_dir: Path | str
    tasks: list
    ignored: list  # files in the input folder that are not images
    classes: list = field(default_factory=list)  # ClassCount per class folder, when balancing
    failures: list = field(default_factory=list)  # (path, reason): sources skipped when planning
    annotations: AnnotationSource | None = None
    output_store: StoreSpec | None = None

    def objects_before(self) -> dict:
        """Objects per label in the planned sources (empty without annotations)."""
        return count_labels(box for task in self.tasks if task.boxes is not None
                            for box in task.boxes.boxes)

    @property
    def total_outputs(self) -> int:
        return sum(len(task.outputs) for task in self.tasks)


@dataclass(frozen=True)
class ClassCount:
    """Images of one class folder before the run and after it (balancing)."""

    tag: str
    before: int
    after: int


def derive_seed(recipe_seed: int, relative: str, variant: str, index: int) -> int:
    """A stable 63-bit seed per output: the same on every machine, run and worker."""
    key = f"{recipe_seed}\x1f{relative}\x1f{variant}\x1f{index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def output_name(relative: Path, variant: str, index: int, fmt: str | None) -> str:
    """``cats/tom.jpg`` -> ``cats/tom_noise_1.jpg`` (extension kept unless ``fmt`` is set)."""
    suffix = f".{fmt}" if fmt else relative.suffix
    return (relative.parent / f"{relative.stem}_{variant}_{index}{suffix}").as_posix()


def _original(relative: Path, fmt: str | None) -> OutputPlan:
    """The copy of a source itself (converted when ``fmt`` is set)."""
    name = relative.with_suffix(f".{fmt}") if fmt else relative
    return OutputPlan(name.as_posix(), None, 0, 0)


def _augmented(recipe: Recipe, relative: Path, variant, index: int, tree, fmt) -> OutputPlan:
    return OutputPlan(output_name(relative, variant.name, index, fmt), variant.name,
                      index, derive_seed(recipe.seed, relative.as_posix(), variant.name, index),
                      tree)


def source_outputs(recipe: Recipe, relative: Path, fmt: str | None = None) -> list:
    """Every output the recipe makes from one source, in order, each with its seed.

    ``fmt``: the output format for this source (default: the recipe's).
    """
    fmt = fmt or recipe.format
    outputs = [_original(relative, fmt)] if recipe.include_original else []
    for variant in recipe.variants:
        for index, tree in enumerate(variant.expand(), start=1):
            outputs.append(_augmented(recipe, relative, variant, index, tree, fmt))
    return outputs


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
    header = store.path(key) if store.is_local else io.BytesIO(store.read(key))
    return "png" if imagefiles.has_alpha(header) else "jpg"


def balanced_outputs(recipe: Recipe, sources: list, formats: dict | None = None) -> dict:
    """Outputs that bring one class folder up to ``recipe.target_per_class``, per source.

    Originals are always copied (the output folder is the upload-ready set).
    Extra outputs go round-robin over the sources in sorted order, so every
    source is used once before any is used twice; source i's r-th extra output
    comes from variant (i + r) mod V, so variants alternate within and across
    rounds. A variant used again on the same source takes its next index (and
    its next sweep value, if it sweeps).
    """
    formats = formats or {}
    fmt = {relative: formats.get(relative) or recipe.format for relative in sources}
    outputs = {relative: [_original(relative, fmt[relative])] for relative in sources}
    trees = {variant.name: list(variant.expand()) for variant in recipe.variants}
    uses: dict = {}
    for extra in range(max(0, recipe.target_per_class - len(sources))):
        position, round_ = extra % len(sources), extra // len(sources)
        relative = sources[position]
        variant = recipe.variants[(position + round_) % len(recipe.variants)]
        index = uses[relative, variant.name] = uses.get((relative, variant.name), 0) + 1
        tree = trees[variant.name][(index - 1) % len(trees[variant.name])]
        outputs[relative].append(_augmented(recipe, relative, variant, index, tree,
                                            fmt[relative]))
    return outputs


def plan_run(recipe: Recipe) -> Plan:
    """List the input (a folder or a URL) and decide every output, its name and its seed."""
    needs_folders = "annotations" if recipe.annotations is not None else None
    input_spec, output_spec = storage.open_pair(recipe.input, recipe.output, recipe.storage,
                                                needs_folders)
    input_dir, output_dir = recipe.input, recipe.output
    input_store = input_spec.open()
    images, others = imagefiles.split_images(input_store.list())
    imagefiles.require_images(images, input_dir)
    source = AnnotationSource(recipe.annotations, input_dir) if recipe.annotations else None
    boxes, failures = _read_boxes(source, input_dir, images)
    images = [relative for relative in images if relative.as_posix() not in failures]
    formats = {relative: output_format(recipe, relative, input_store) for relative in images}
    planned, classes = _plan_outputs(recipe, images, formats)
    profile = get_profile(recipe.profile) if recipe.profile else None
    tasks, claimed = [], {}
    for relative in images:
        rel = relative.as_posix()
        outputs = planned[relative]
        for written, hint in _files_written(outputs, source):
            if written in claimed:
                raise UsageError(f"{claimed[written]} and {rel} would both write "
                                 f"{written}; rename one of them{hint}")
            claimed[written] = rel
        tasks.append(SourceTask(input_spec, rel, output_spec, tuple(outputs),
                                formats[relative], recipe.quality, profile=profile,
                                boxes=boxes.get(rel),
                                annotation_format=source.format if source else None))
    return Plan(recipe, input_dir, output_dir, tasks, others, classes,
                list(failures.values()), source, output_spec)


def _read_boxes(source: AnnotationSource | None, input_dir: Path, images: list):
    """Boxes per source (relative path -> ImageBoxes), and the sources whose annotations
    cannot be read (relative path -> (path, reason)): those are skipped, the rest go on.

    A malformed annotation is reported where it is (``in/cats/tom.txt:3``). An
    image whose header cannot be read is left to the worker, which reports it as
    it reports any unreadable image."""
    boxes, failures = {}, {}
    if source is None:
        return boxes, failures
    for relative in images:
        rel = relative.as_posix()
        try:
            boxes[rel] = source.read(rel, input_dir / relative)
        except AnnotationError as exc:
            failures[rel] = (exc.location, f"{exc.reason} ({rel} skipped)")
        except ImageReadError:
            continue
    source.require_some(len(images))
    return boxes, failures


def _files_written(outputs, source: AnnotationSource | None):
    """Every file a source's outputs make (the images and their annotation files), each
    with a hint for when two sources would make the same one."""
    for output in outputs:
        yield output.relative, " or drop 'format:'"
        annotation = source.format.file_for(output.relative) if source is not None else None
        if annotation is not None:
            yield annotation, " (images that differ only in extension share annotation files)"


def _plan_outputs(recipe: Recipe, images: list, formats: dict) -> tuple[dict, list]:
    """Outputs per source, and per-class counts when the recipe balances classes."""
    if recipe.target_per_class is None:
        return {relative: source_outputs(recipe, relative, formats[relative])
                for relative in images}, []
    by_class: dict = {}
    for relative in images:
        by_class.setdefault(relative.parent.as_posix(), []).append(relative)
    planned, classes = {}, []
    for tag, sources in by_class.items():
        outputs = balanced_outputs(recipe, sources, formats)
        planned.update(outputs)
        classes.append(ClassCount(tag, len(sources), sum(map(len, outputs.values()))))
    return planned, classes


# --- worker --------------------------------------------------------------------

@dataclass
class SourceResult:
    relative: str
    records: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (path, reason)
    decoded: bool = False


def render(image: np.ndarray, output: OutputPlan):
    """Pixels and sampled steps of one augmented output: what run writes, preview shows."""
    steps = sample_steps(output.ops, np.random.default_rng(output.seed), image.shape)
    return apply_steps(image, steps), steps


def _fits(profile: Profile | None, size: int, image: np.ndarray) -> bool:
    """Whether a source file of ``size`` bytes can be copied as it is under the profile's
    limits."""
    if profile is None:
        return True
    small_enough = profile.max_file_bytes is None or size <= profile.max_file_bytes
    return small_enough and (profile.max_side is None or max(image.shape[:2]) <= profile.max_side)


def _encode(image: np.ndarray, fmt: str, task: SourceTask) -> tuple[bytes, dict]:
    if task.profile is None:
        return imagefiles.encode(image, fmt, task.quality), {}
    return imagefiles.encode_within(image, fmt, task.quality, task.profile.max_file_bytes,
                            task.profile.max_side)


def process_source(task: SourceTask) -> SourceResult:
    """Decode one source once and publish all of its planned outputs (and their boxes)."""
    result = SourceResult(task.relative)
    source, destination = task.input.open(), task.output.open()
    try:
        data = source.read(task.relative)
        image = imagefiles.decode_image(data, source.name(task.relative), task.max_pixels)
    except ImageReadError as exc:
        result.failures.append((task.relative, exc.reason))
        return result
    except FileNotFoundError:
        result.failures.append((task.relative, "file not found (was it moved or deleted "
                                               "during the run?)"))
        return result
    except OSError as exc:
        result.failures.append((task.relative, f"cannot read ({exc.strerror or exc})"))
        return result
    result.decoded = True
    if task.boxes is not None and (task.boxes.height, task.boxes.width) != image.shape[:2]:
        reason = (f"decodes as {image.shape[1]} x {image.shape[0]} but its header said "
                  f"{task.boxes.width} x {task.boxes.height}")
        result.failures.append((task.relative, reason))
        return result
    source_format = imagefiles.format_of(Path(task.relative))
    for output in task.outputs:
        fmt = task.format or source_format
        record = {"output": output.relative, "source": task.relative,
                  "variant": output.variant, "index": output.index}
        try:
            if output.variant is None:
                record["copy"] = True
                if fmt == source_format and _fits(task.profile, len(data), image):
                    _write_boxes(task, output, (), image, {}, record)
                    destination.publish(output.relative, data)
                    result.records.append(record)
                    continue
                pixels, steps = image, ()
            else:
                pixels, steps = render(image, output)
                record["seed"] = output.seed
                record["ops"] = [step.as_record() for step in steps]
            encoded, adjustments = _encode(pixels, fmt, task)
            _write_boxes(task, output, steps, pixels, adjustments, record)
            destination.publish(output.relative, encoded)
            if adjustments:
                record["conformed"] = adjustments
        except (OSError, ValueError) as exc:
            result.failures.append((output.relative, f"cannot write ({exc})"))
            continue
        result.records.append(record)
    return result


def _write_boxes(task: SourceTask, output: OutputPlan, steps, pixels: np.ndarray,
                 adjustments: dict, record: dict) -> None:
    """Carry the source's boxes to one output, write its annotation file, note it in the record.

    The boxes go through the same sampled steps as the pixels, then through the
    downscale a profile may have forced on the encoded file. Written before the
    image, so an image on disk always has its annotation beside it.
    """
    if task.boxes is None:
        return
    fmt = task.annotation_format
    matrix = steps_matrix(steps, (task.boxes.height, task.boxes.width))
    size = pixels.shape[:2]
    if "size" in adjustments:
        width, height = adjustments["size"]
        matrix = geometry.resize_matrix(size, (height, width)) @ matrix
        size = (height, width)
    kept, dropped = transform_boxes(task.boxes.boxes, matrix, size, fmt.min_visibility)
    record["size"] = [size[1], size[0]]
    record["boxes"] = [box.to_record() for box in kept]
    record["dropped_boxes"] = [item.to_record() for item in dropped]
    name = fmt.file_for(output.relative)
    if name is not None:
        depth = 1 if pixels.ndim == 2 or pixels.shape[2] <= 2 else 3
        text = encode_boxes(fmt, ImageBoxes(size[1], size[0], kept), Path(output.relative).name,
                            depth)
        task.output.open().publish(name, text)
        record["annotation"] = name


# --- manifest ------------------------------------------------------------------

def read_manifest(output) -> list:
    """Output records of an earlier run; a torn last line (killed run) is ignored.

    ``output``: a folder, a URL or an open store. On an object store the parts of
    a run that did not finish are read too. Per-class count lines (balancing) and
    the cluster signature line are not output records and are skipped.
    """
    records = []
    for line in _output_store(output).read_journal(MANIFEST_NAME).decode("utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "output" in record:
            records.append(record)
    return records


def _output_store(output):
    if hasattr(output, "read_journal"):
        return output
    if isinstance(output, StoreSpec):
        return output.open()
    return StoreSpec.of(storage.location(str(output))).open()


def _manifest_line(line: dict) -> bytes:
    return (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")


def _write_manifest(store, records, classes=(), workers=None) -> None:
    """Rewrite the manifest whole: the workers' signature (on a cluster), per-class counts
    (if balancing), then outputs by name; then drop the journal parts it now holds."""
    lines = [{"signature": workers}] if workers else []
    lines += [{"class": c.tag, "before": c.before, "after": c.after} for c in classes]
    lines += sorted(records, key=lambda record: record["output"])
    store.publish(MANIFEST_NAME, b"".join(map(_manifest_line, lines)))
    store.clear_journal(MANIFEST_NAME)


def _previous_outputs(plan: Plan, fingerprint: str, overwrite: bool) -> dict:
    """Records of outputs already finished by an earlier run of this same recipe.

    Refuses to mix: outputs of a different recipe or seed, or files the plan
    would overwrite that no manifest accounts for, need ``--overwrite``. The
    output is listed once, never asked about one output at a time.
    """
    store = plan.output_store.open()
    records = read_manifest(store)
    if overwrite:
        planned = {output.relative for task in plan.tasks for output in task.outputs}
        for record in records:  # outputs of the old recipe that the new one won't rewrite
            if record.get("output") not in planned:
                store.delete(record["output"])
                if record.get("annotation"):
                    store.delete(record["annotation"])
        return {}
    foreign = {r.get("recipe") for r in records} - {fingerprint}
    if foreign:
        raise UsageError(f"{plan.output_dir} holds outputs of a different recipe or seed; "
                         "rerun with --overwrite to replace them, or choose another output folder")
    present = set(store.list())
    finished = {record["output"]: record for record in records if record["output"] in present}
    if not records:
        clashes = [output.relative for task in plan.tasks for output in task.outputs
                   if output.relative in present]
        if clashes:
            raise UsageError(f"{plan.output_dir} already holds {len(clashes)} file(s) this run "
                             f"would write (e.g. {clashes[0]}) and no manifest says where they "
                             "came from; rerun with --overwrite to replace them")
    return finished


# --- run -----------------------------------------------------------------------

@dataclass
class Report(JobReport):
    """Counts of one run; owns the exit code."""

    classes: list = field(default_factory=list)  # ClassCount per class folder, when balancing
    objects: dict = field(default_factory=dict)  # label -> (in the sources, in the output folder)

    def class_lines(self) -> list:
        """One line per class folder when balancing: count before -> after."""
        return [f"{c.tag}: {c.before} -> {c.after}" if c.after > c.before else
                f"{c.tag}: {c.before} (already at or above the target, nothing added)"
                for c in self.classes]

    def object_lines(self) -> list:
        """With annotations: objects per label in the sources and in the output folder."""
        return [f"objects {label}: {before} -> {after}"
                for label, (before, after) in self.objects.items()]



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
    fingerprint = recipe.fingerprint
    finished = _previous_outputs(plan, fingerprint, overwrite)
    report = Report(ignored=plan.ignored, classes=plan.classes, notify=notify)
    for path, reason in plan.failures:
        report.fail(path, reason)

    tasks = []
    for task in plan.tasks:
        todo = tuple(o for o in task.outputs if o.relative not in finished)
        report.skipped += len(task.outputs) - len(todo)
        if todo:
            tasks.append(replace(task, outputs=todo))
    records = dict(finished)
    workers = max(1, min(workers or recipe.workers or default_workers(), len(tasks) or 1))
    with open_cluster(cluster, client, workers) as dask:
        try:
            _run_tasks(plan, tasks, records, report, workers, dask, progress)
        except storage.StorageError as exc:  # the manifest, not an output: stop the run
            raise _manifest_error(plan, exc) from None
    if plan.annotations is not None:
        report.objects = _objects(plan, records.values())
    report.seconds = time.perf_counter() - started
    return report


def _run_tasks(plan: Plan, tasks: list, records: dict, report: Report, workers: int, dask,
               progress: bool) -> None:
    """Run the tasks on the executor; journal each record as it comes; rewrite the
    manifest at the start and at the end (also when interrupted)."""
    store = plan.output_store.open()
    fingerprint = plan.recipe.fingerprint
    checked = dask.signature if dask is not None else None
    store.prepare()
    _write_manifest(store, records.values(), plan.classes, checked)
    if plan.annotations is not None:
        plan.annotations.prepare_output(plan.output_dir)
    bar = progress_bar(sum(len(t.outputs) for t in tasks), enabled=progress)
    journal = store.journal(MANIFEST_NAME)
    try:
        for result in map_in_workers(process_source, tasks, workers, dask, _lost):
            report.images_read += result.decoded
            for record in result.records:
                record["recipe"] = fingerprint
                records[record["output"]] = record
                journal.write(_manifest_line(record))
            journal.flush()
            report.written += len(result.records)
            for path, reason in result.failures:
                report.fail(path, reason)
            bar.update(len(result.records) + len(result.failures))
    finally:
        bar.close()
        journal.close()
        store.tidy()
        _write_manifest(store, records.values(), plan.classes, checked)
        if plan.annotations is not None:
            plan.annotations.finish_output(plan.output_dir, records.values())


def _manifest_error(plan: Plan, exc: OSError) -> UsageError:
    return UsageError(f"cannot write the manifest in {plan.output_dir} ({exc}); the outputs "
                      "it lists are kept: rerun the same command to make the rest")


def _lost(task: SourceTask, reason: str) -> SourceResult:
    """The result of a source whose task kept killing the workers that ran it."""
    return SourceResult(task.relative, failures=[(task.relative, reason)])


def _objects(plan: Plan, records) -> dict:
    """label -> (objects in the sources, objects in the output folder), every label seen."""
    before = plan.objects_before()
    after = count_labels(Box.from_record(item)
                         for record in records for item in record.get("boxes", ()))
    labels = sorted({*plan.annotations.declared_labels, *before, *after})
    return {label: (before.get(label, 0), after.get(label, 0)) for label in labels}


def _path(value):
    return storage.location(value if storage.is_url(value) else
                            (None if value is None else Path(value)))


