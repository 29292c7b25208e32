"""Execute a run on a process pool (or a Dask cluster), and report what happened.

Data flows one way: scan -> plan (``augcli.plan``: a small ``PlannedSource`` per
source) -> tasks (one frozen ``SourceTask`` per source, one ``OutputPlan`` per output,
each with its own seed, built as a worker takes the source) -> workers
(``augcli.worker``: decode once, sample, apply, encode, atomic write) -> parent
(progress, manifest, report). Workers receive plain data and return plain data; only
the parent writes the manifest and counts.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import budget, locations, manifest
from .errors import (
    OutputError,
    UsageError,
    output_error,
)
from .executors import Executor, default_workers, open_executor
from .manifest import MANIFEST_NAME, read_manifest  # noqa: F401 - part of this module's API
from .plan import (
    Plan,
    PlannedSource,
    SourceTask,
    one_file_per_folder,
    output_files,
    plan_run,
)
from .probe import Sight, recipe_probe
from .profiles import get_profile
from .recipe import (
    MAX_TARGET_PER_CLASS,
    Recipe,
    load_recipe,
    profile_format_conflict,
)
from .report import JobReport, progress_bar
from .tiles import LABELS_NAME, labels_csv
from .variety import plan_needs, variant_warnings
from .worker import SourceResult, process_source

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
    store.check_inside(one_file_per_folder(plan))
    own = [MANIFEST_NAME]
    if plan.annotations is not None:
        own += plan.annotations.output_files()
    if plan.dataset is not None:
        own += plan.dataset.output_files()
    if plan.soft_labels:
        own.append(LABELS_NAME)
    lines = manifest.read_lines(store)
    earlier = manifest.check_names(store, manifest.Earlier.of_lines(lines))
    if plan.soft_labels:  # hard_label's copies, named by their records: an earlier run's
        present = store.sizes()
        earlier.files |= {copy for record in earlier.records
                          if (copy := plan.majority_copy(record)) in present}
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


def _unchanged(stamp: dict | None, records: list) -> bool:
    """Whether a source (its ``stamp``; None: it cannot be read) is the very file its
    earlier outputs were made from."""
    return stamp is not None and all(record.get(key) == value for record in records
                                     for key, value in stamp.items())


def _donors_unchanged(plan: Plan, stamp, record: dict) -> bool:
    """Whether every donor an earlier output took is still in the plan and the very file it
    took (its stamp, as the record's ``donor_stamps`` has it)."""
    sources = plan.sources_by_name
    return all(name in sources and _unchanged(stamp(sources[name]), [taken])
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
            names = [name for name, _ in output_files(todo, self.plan.annotations,
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
        if plan.recipe.hard_label:
            self._copy_to_majority()

    def _copy_to_majority(self) -> None:
        """``hard_label: majority``: each output with soft labels, copied byte for byte into
        the folder of its largest class (``Plan.majority_copy``), from the records once
        every output is written, so a killed run leaves no copy its manifest does not name;
        a copy already there with the output's size is kept."""
        copies = {copy: record for record in self.records.records()
                  if (copy := self.plan.majority_copy(record)) is not None}
        for name, _ in self.plan.files_written():  # an output of that name is never replaced
            if copies.pop(name, None) is not None:
                self.report.notes.append(f"hard_label: {name} is an output of this run, so "
                                         "the majority copy of that name is not made")
        present = self.store.sizes()
        for copy, record in copies.items():
            if present.get(copy) == record.get("bytes"):
                continue
            try:
                self.store.publish(copy, self.store.read(record["output"]))
            except OSError as exc:
                raise output_error(self.store.name(copy), exc) from None

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



