"""The manifest of an output folder: a journal of what a run wrote, and the folder's lock.

``manifest.jsonl`` holds one JSON object per line:

* ``{"class": ..., "before": n, "after": m}``: per-class counts (balancing), first;
* ``{"output": ..., "source": ..., "recipe": ..., ...}``: one finished output;
* ``{"started": source, "outputs": [...], "recipe": ...}``: a source handed to a
  worker, journalled *before* any of its outputs is written, so that the next
  run knows whose files those are even if it was killed before they were recorded.

During a run the parent appends ``started`` lines and each worker appends an output's
record as soon as the output is published (``worker._OutputJournal``: one line per
write, flushed; on an object store each its own part objects); at the start and the
end the parent rewrites the file whole (atomically): class
lines, then the output records sorted by name; ``started`` lines of sources
that are not finished are kept, finished ones are dropped. A torn or corrupt
line (a run killed mid-append, a full disk, an edited file) is skipped when
reading and dropped by the next rewrite.

Paths a manifest names are trusted only inside the output folder: a name that
is absolute, has ``..``, or leads through a symbolic link out of the folder is
refused, so a tampered or foreign manifest can make augcli neither delete nor
write anything elsewhere.

Every function here takes the output's ``Store`` (``augcli.stores``): a folder
appends to the file; an object store has no append and no rename, so the journal
goes out as part objects, a rewrite publishes the manifest whole and then deletes
the parts, and reading takes the manifest plus any parts a killed run left. The
lock (``.augcli.lock``) that keeps two runs out of one output is the store's
(``Store.lock``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import imagefiles
from .errors import EXCERPT_CHARS, UsageError, excerpt, output_error
from .stores import LOCK_NAME, MANIFEST_NAME, Store, open_store

__all__ = ["LOCK_NAME", "MANIFEST_NAME"]  # defined by the stores, named here too


# --- lines ---------------------------------------------------------------------

def encode_line(line: dict) -> bytes:
    """One manifest line as UTF-8 bytes. File names that are not valid UTF-8 (kept by
    Python as lone surrogates) are written as JSON escapes, so the file stays UTF-8
    and reading it back gives the very same names."""
    text = json.dumps(line, ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(line, ensure_ascii=True) + "\n").encode("ascii")


def read_lines(output) -> list:
    """Every well-formed line of the manifest, as dicts; torn or corrupt lines are skipped.
    ``output``: a ``Store``, a folder, a URL or a ``StoreSpec``."""
    store = open_store(output)
    try:
        data = store.read_journal(MANIFEST_NAME)
    except OSError as exc:
        raise UsageError(f"cannot read {store.name(MANIFEST_NAME)} "
                         f"({exc.strerror or exc})") from None
    lines = []
    for raw in data.split(b"\n"):
        try:
            line = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def _is_output(line: dict) -> bool:
    return isinstance(line.get("output"), str)


def is_started(line: dict) -> bool:
    return isinstance(line.get("started"), str) and isinstance(line.get("outputs"), list) \
        and all(isinstance(name, str) for name in line["outputs"])


def read_manifest(output) -> list:
    """Output records of earlier runs (class lines, ``started`` lines, the signature line
    and torn lines skipped). ``output``: a ``Store``, a folder, a URL or a ``StoreSpec``."""
    return [line for line in read_lines(output) if _is_output(line)]


def class_line(count) -> dict:
    return {"class": count.tag, "before": count.before, "after": count.after}


def started_line(source: str, outputs, fingerprint: str) -> dict:
    return {"started": source, "outputs": list(outputs), "recipe": fingerprint}


def rewrite(store: Store, records: SortedRecords, classes=(), started=(), signature=None,
            header: dict | None = None) -> None:
    """Rewrite the manifest whole: the command's ``header`` (its settings), the workers'
    signature (a cluster run), class counts, then outputs by name, then ``started`` lines
    still open. ``records``: a ``SortedRecords`` (already in order, streamed to the
    folder). Raises OutputError when the folder (or store) cannot be written."""
    head = [header] if header else []
    head += [{"signature": signature}] if signature else []
    head += [class_line(count) for count in classes]
    write(store, itertools.chain(map(encode_line, head), records.lines(),
                                  map(encode_line, started)))


def write(store: Store, chunks) -> None:
    """Replace the manifest with ``chunks`` (encoded lines), all or nothing (streamed to a
    folder's file; on an object store published whole, from memory), then drop the
    journal's parts, which it now holds. Raises OutputError when the store cannot be
    written."""
    try:
        store.publish(MANIFEST_NAME, chunks)
        store.clear_journal(MANIFEST_NAME)
    except OSError as exc:
        raise output_error(store.name(MANIFEST_NAME), exc) from None


SPILL_BYTES = 4 << 20  # encoded records held in memory before a sorted run goes to disk
MERGE_RUNS = 64  # this many runs of one size are merged into one (open files stay few)


class SortedRecords:
    """Output records for the final manifest, by output name, in bounded memory.

    Records are held encoded (the manifest's own lines) up to ``SPILL_BYTES``; then
    they are sorted and written to an anonymous temporary file (in ``folder``, the
    output folder, or the system's temporary folder for an object store), and
    ``lines`` merges those runs. Of two records for one output, the later one is
    kept, as a dict keyed by name would. ``close`` drops the files.
    """

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self.buffer: list = []  # (output name, encoded line)
        self.held = 0  # bytes in buffer
        self.runs: list = []  # (merges it took, temporary file), oldest first

    def add(self, record: dict) -> None:
        line = encode_line(record)
        self.buffer.append((record["output"], line))
        self.held += len(line)
        if self.held >= SPILL_BYTES:
            self._spill()

    def _spill(self) -> None:
        self.buffer.sort(key=_name)  # stable: the later of two equal names stays later
        self.runs.append((0, self._write(self.buffer)))
        self.buffer, self.held = [], 0
        while len(self.runs) >= MERGE_RUNS and \
                len({level for level, _ in self.runs[-MERGE_RUNS:]}) == 1:
            level, tail = self.runs[-1][0], self.runs[-MERGE_RUNS:]
            merged = self._write(heapq.merge(*(_read_run(file) for _, file in tail), key=_name))
            for _, file in tail:
                file.close()
            self.runs[-MERGE_RUNS:] = [(level + 1, merged)]

    def _write(self, items):
        file = tempfile.TemporaryFile(  # noqa: SIM115 - closed by close()
            prefix=imagefiles.TEMP_PREFIX, suffix=".tmp", dir=self.folder)
        try:
            file.writelines(json.dumps(name).encode("ascii") + b"\t" + line
                            for name, line in items)
        except BaseException:
            file.close()
            raise
        return file

    def lines(self):
        """The encoded records, sorted by output name (may be read more than once)."""
        runs = [_read_run(file) for _, file in self.runs]
        merged = heapq.merge(*runs, sorted(self.buffer, key=_name), key=_name)
        for _, same in itertools.groupby(merged, key=_name):
            *_, (_, line) = same
            yield line

    def records(self):
        """The records as dicts, sorted by output name."""
        return (json.loads(line) for line in self.lines())

    def close(self) -> None:
        for _, file in self.runs:
            file.close()
        self.runs, self.buffer, self.held = [], [], 0

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _name(item: tuple) -> str:
    return item[0]


def _read_run(file):
    """(name, line) pairs of a spilled run, from its start."""
    file.seek(0)
    for raw in file:
        name, _, line = raw.partition(b"\t")
        yield json.loads(name), line


class Journal:
    """The manifest opened for appending (``Store.journal``): each ``append`` is in the
    store before it returns (flushed, not fsynced; see 'Guarantees' in the docs on power loss)."""

    def __init__(self, store: Store):
        self.path = store.name(MANIFEST_NAME)
        try:
            self._file = store.journal(MANIFEST_NAME)
        except OSError as exc:
            raise output_error(self.path, exc) from None

    def append(self, *lines: dict) -> None:
        try:
            self._file.write(b"".join(map(encode_line, lines)))
            self._file.flush()
        except OSError as exc:
            raise output_error(self.path, exc) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a failed flush was already reported by append
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# --- what earlier runs left ------------------------------------------------------

@dataclass
class Earlier:
    """What an output says earlier runs wrote into it: the records and ``started`` lines of
    its manifest (``run``, ``normalize``), or a command's own index (``ricap``)."""

    records: list = field(default_factory=list)  # output records (each has "output")
    started: list = field(default_factory=list)  # "started" lines
    # the settings fingerprint of each earlier run (None: files whose settings no readable
    # record says); empty on a fresh output
    fingerprints: set = field(default_factory=set)
    files: set = field(default_factory=set)  # more files the earlier runs wrote

    @classmethod
    def of_lines(cls, lines: list) -> Earlier:
        """What the lines of ``run``'s manifest say (each names its recipe's fingerprint)."""
        records = [line for line in lines if _is_output(line)]
        started = [line for line in lines if is_started(line)]
        return cls(records, started, {line.get("recipe") for line in (*records, *started)})

    def names(self) -> set:
        """Every file these lines say a run wrote (or may have written)."""
        names = set(self.files)
        for record in self.records:
            names.add(record["output"])
            if isinstance(record.get("annotation"), str):
                names.add(record["annotation"])
        for line in self.started:
            names.update(line["outputs"])
        return names


def load(store: Store) -> Earlier:
    """Read the manifest and refuse one that names a path outside the output
    (``Store.is_inside``)."""
    return check_names(store, Earlier.of_lines(read_lines(store)))


def changes(before, after, path: str = "", limit: int = 5) -> list:
    """What differs between two settings (plain JSON data), as ``key old -> new`` lines,
    the key paths as a recipe writes them (``seed 1 -> 2``, ``variants.a.ops[0].rotate.
    degrees [-10, 10] -> [-20, 20]``), at most ``limit`` of them."""
    found: list = []
    _changes(before, after, path, found)
    return found[:limit] + ([f"and {len(found) - limit} more"] if len(found) > limit else [])


def _changes(before, after, path: str, found: list) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(key for key in after if key not in before)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in after:
                found.append(f"{where} {_setting(before[key])} -> (removed)")
            elif key not in before:
                found.append(f"{where} (none) -> {_setting(after[key])}")
            else:
                _changes(before[key], after[key], where, found)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after) \
            and any(isinstance(item, (dict, list)) for item in before):
        for index, (old, new) in enumerate(zip(before, after)):
            _changes(old, new, f"{path}[{index}]", found)
    elif before != after:
        found.append(f"{path} {_setting(before)} -> {_setting(after)}")


def _setting(value) -> str:
    return json.dumps(value, ensure_ascii=False).replace('"', "") if value is not None \
        else "(none)"


def check_names(store: Store, earlier: Earlier) -> Earlier:
    """Refuse an ``earlier`` that names a path outside the output (``Store.is_inside``): a
    tampered or foreign manifest makes augcli neither delete nor write elsewhere."""
    folders: dict = {}
    for name in sorted(earlier.names()):
        if not store.is_inside(name, folders):
            raise UsageError(f"{store.name(MANIFEST_NAME)} names {excerpt(name)}, which is not "
                             f"inside the output {store.noun}: augcli did not write that "
                             f"manifest for this {store.noun}. Move it away (or choose another "
                             f"output {store.noun})")
    return earlier


# --- one reconcile for every command ------------------------------------------------

@dataclass
class Resume:
    """What a command may keep of an output: ``finished`` outputs (name -> record) that are
    there and whole, and the ``started`` lines of sources an earlier run did not finish."""

    finished: dict = field(default_factory=dict)
    started: list = field(default_factory=list)
    removed: list = field(default_factory=list)  # overwrite: earlier files this run does not make


def guard(store: Store, dry_run: bool, note=None):
    """The output's lock for a run; for a dry run, the same refusal while another run holds
    it, without taking it or writing anything."""
    lock = store.lock(note=note)
    if not dry_run:
        return lock
    lock.check()
    return contextlib.nullcontext()


def reconcile(store: Store, earlier: Earlier, *, fingerprint, planned, own=(),
              overwrite: bool = False, dry_run: bool = False, other_run=None) -> Resume:
    """Earlier records x planned outputs x what the output holds (one listing): what a
    rerun keeps, or a refusal. ``run``, ``normalize`` and ``ricap`` all come here, so they
    refuse the same things and resume the same way.

    ``planned()`` yields every file this run may write (called at most twice, never held
    whole); ``own`` names the index files the command rewrites (its manifest). Refused
    (``UsageError``, exit 2) without ``overwrite``: outputs of other settings
    (``other_run()`` says which changed), and files no record accounts for where they
    would be overwritten or mixed with the outputs. ``overwrite`` deletes what earlier
    runs wrote that this one will not (not in a dry run); files augcli did not write are
    never removed.
    """
    if overwrite:
        removed = sorted(_not_planned(earlier.names(), planned))
        if not dry_run:
            store.remove(removed)
        return Resume(removed=removed)
    if earlier.fingerprints - {fingerprint}:
        raise UsageError(other_run() if other_run else
                         f"{where(store)} holds outputs of other settings; rerun with "
                         "--overwrite to replace them, or choose another output "
                         f"{store.noun}")
    present = store.sizes()
    accounted = earlier.names() | set(own)
    unaccounted = {name for name in present if name not in accounted}
    if unaccounted:
        _refuse_unaccounted(store, unaccounted, planned,
                            # a journal that lags (an object store's parts) may have lost the
                            # "started" lines of a killed run's last sources: when the manifest
                            # says the output is this run's, its planned files are its own
                            ours=store.journal_lags and earlier.fingerprints == {fingerprint})
    finished = {record["output"]: record for record in earlier.records
                if _intact(present.get(record["output"]), record)}
    return Resume(finished, earlier.started)


def where(store: Store) -> str:
    """The output as the user named it, for messages."""
    return store.name("").rstrip("/")


def _refuse_unaccounted(store: Store, unaccounted: set, planned, ours: bool) -> None:
    clashes = [name for name in planned() if name in unaccounted]
    if clashes and not ours:
        raise UsageError(f"{where(store)} already holds {len(clashes)} file(s) this run would "
                         f"write (e.g. {_short(clashes[0])}) and no manifest says where they "
                         "came from; rerun with --overwrite to replace them, or choose another "
                         f"output {store.noun}")
    strays = sorted(unaccounted.difference(clashes))
    if strays:
        listed = ", ".join(_short(name) for name in strays[:5]) + \
            (", ..." if len(strays) > 5 else "")
        raise UsageError(f"{where(store)} holds {len(strays)} file(s) that no manifest says "
                         f"where they came from ({listed}); they would be mixed with the outputs. "
                         f"Move them out or choose another output {store.noun} (--overwrite "
                         "goes ahead, replacing those this run writes and keeping the others)")


def _short(name: str) -> str:
    """A file name as a message quotes it: whole, or its first ``EXCERPT_CHARS``."""
    return name if len(name) <= EXCERPT_CHARS else name[:EXCERPT_CHARS] + "..."


def _not_planned(names: set, planned) -> set:
    """Those of ``names`` that this run does not write."""
    left = set(names)
    for name in planned():
        if not left:
            break
        left.discard(name)
    return left


def _intact(size, record: dict) -> bool:
    """Whether an output is there with the size its record says (writes are not fsynced:
    after a power loss a file can be left empty, and is then made again)."""
    return size is not None and record.get("bytes", size) == size
