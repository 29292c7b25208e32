"""The manifest of an output folder: a journal of what a run wrote, and the folder's lock.

``manifest.jsonl`` holds one JSON object per line:

* ``{"class": ..., "before": n, "after": m}``: per-class counts (balancing), first;
* ``{"output": ..., "source": ..., "recipe": ..., ...}``: one finished output;
* ``{"started": source, "outputs": [...], "recipe": ...}``: a source handed to a
  worker, journalled *before* any of its outputs is written, so that the next
  run knows whose files those are even if it was killed before they were recorded.

During a run the parent appends lines (the only writer) and flushes them per
source; at the start and the end it rewrites the file whole (atomically): class
lines, then the output records sorted by name; ``started`` lines of sources
that are not finished are kept, finished ones are dropped. A torn or corrupt
line (a run killed mid-append, a full disk, an edited file) is skipped when
reading and dropped by the next rewrite.

Paths a manifest names are trusted only inside the output folder: a name that
is absolute, has ``..``, or leads through a symbolic link out of the folder is
refused, so a tampered or foreign manifest can make augcli neither delete nor
write anything elsewhere.

The lock (``.augcli.lock``) keeps two runs out of one output: in a folder it holds
the pid (``OutputLock``); under an object-store prefix it is a JSON object with the
run's pid, host, start and a token, rewritten while the run goes on
(``storage.ObjectLock``).

On an object store (``augcli.storage``) there is no append and no rename: the
journal goes out as part objects (``storage.PartJournal``), a rewrite publishes
the manifest whole and then deletes the parts, and reading takes the manifest
plus any parts a killed run left. Every function here takes the output folder
(a ``Path``) or an open object store.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import imagefiles
from .errors import UsageError, excerpt, output_error
from .locations import is_url

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".augcli.lock"


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


def _output(output):
    """A folder stays a ``Path``; a URL or a ``StoreSpec`` becomes its open store."""
    from .storage import StoreSpec

    if isinstance(output, StoreSpec):
        return output.open() if output.is_url else Path(output.location)
    if is_url(output):
        return StoreSpec.of(output).open()
    return Path(output) if isinstance(output, str) else output


def where(store):
    """What the functions here take for an open store: a folder's path, or the object
    store itself."""
    return store.root if store.is_local else store


def read_lines(output) -> list:
    """Every well-formed line of the manifest, as dicts; torn or corrupt lines are skipped."""
    output = _output(output)
    if isinstance(output, Path):
        path = output / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UsageError(f"cannot read {path} ({exc.strerror or exc})") from None
    else:
        try:
            data = output.read_journal(MANIFEST_NAME)
        except OSError as exc:
            raise UsageError(f"cannot read {output.name(MANIFEST_NAME)} ({exc})") from None
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


def _is_started(line: dict) -> bool:
    return isinstance(line.get("started"), str) and isinstance(line.get("outputs"), list) \
        and all(isinstance(name, str) for name in line["outputs"])


def read_manifest(output) -> list:
    """Output records of earlier runs (class lines, ``started`` lines, the signature line
    and torn lines skipped). ``output``: a folder, a URL or a ``StoreSpec``."""
    return [line for line in read_lines(output) if _is_output(line)]


def class_line(count) -> dict:
    return {"class": count.tag, "before": count.before, "after": count.after}


def started_line(source: str, outputs, fingerprint: str) -> dict:
    return {"started": source, "outputs": list(outputs), "recipe": fingerprint}


def rewrite(output, records: SortedRecords, classes=(), started=(), signature=None) -> None:
    """Rewrite the manifest whole: the workers' signature (a cluster run), class counts,
    then outputs by name, then ``started`` lines still open. ``records``: a
    ``SortedRecords`` (already in order, streamed to the folder). Raises OutputError
    when the folder (or store) cannot be written."""
    head = [{"signature": signature}] if signature else []
    head += [class_line(count) for count in classes]
    write(output, itertools.chain(map(encode_line, head), records.lines(),
                                  map(encode_line, started)))


def write(output, chunks) -> None:
    """Replace the manifest with ``chunks`` (encoded lines), all or nothing: streamed to
    a folder's file; on an object store published whole, from memory, and then the
    journal's parts (which it now holds) deleted. Raises OutputError when the folder
    (or store) cannot be written."""
    if isinstance(output, Path):
        path = output / MANIFEST_NAME
        try:
            imagefiles.write_atomic(path, chunks)
        except OSError as exc:
            raise output_error(path, exc) from None
        return
    try:
        output.publish(MANIFEST_NAME, b"".join(chunks))
        output.clear_journal(MANIFEST_NAME)
    except OSError as exc:
        raise output_error(output.name(MANIFEST_NAME), exc) from None


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
    """The manifest opened for appending: each ``append`` reaches the file before it returns
    (flushed, not fsynced; see the README on power loss)."""

    def __init__(self, output):
        if not isinstance(output, Path):  # an object store: part objects
            self.path = output.name(MANIFEST_NAME)
            self._file = output.journal(MANIFEST_NAME)
            return
        self.path = output / MANIFEST_NAME
        try:
            _end_with_newline(self.path)
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
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


def _end_with_newline(path: Path) -> None:
    """Cut a torn last line (a run killed or a disk full mid-append) so appends start clean."""
    try:
        with open(path, "rb+") as file:
            end = file.seek(0, os.SEEK_END)
            position = end
            while position > 0:
                start = max(0, position - (1 << 16))
                file.seek(start)
                chunk = file.read(position - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                position = start
            else:
                keep = 0
            if keep != end:
                file.truncate(keep)
    except FileNotFoundError:
        return


# --- what earlier runs left ------------------------------------------------------

@dataclass
class Earlier:
    """What a manifest says earlier runs wrote into an output folder."""

    records: list = field(default_factory=list)  # output records
    started: list = field(default_factory=list)  # "started" lines

    @property
    def fingerprints(self) -> set:
        return {line.get("recipe") for line in (*self.records, *self.started)}

    def names(self) -> set:
        """Every file these lines say a run wrote (or may have written)."""
        names = set()
        for record in self.records:
            names.add(record["output"])
            if isinstance(record.get("annotation"), str):
                names.add(record["annotation"])
        for line in self.started:
            names.update(line["outputs"])
        return names


def load(output_dir) -> Earlier:
    """Read the manifest and refuse one that names a path outside the output folder (or
    object-store prefix)."""
    lines = read_lines(output_dir)
    earlier = Earlier([line for line in lines if _is_output(line)],
                      [line for line in lines if _is_started(line)])
    folders: dict = {}
    for name in sorted(earlier.names()):
        if is_inside(output_dir, name, folders):
            continue
        if not isinstance(output_dir, Path):
            raise UsageError(f"{output_dir.name(MANIFEST_NAME)} names {excerpt(name)}, which "
                             "is not inside the output prefix: augcli did not write that "
                             "manifest there. Move it away (or choose another output prefix)")
        raise UsageError(f"{output_dir / MANIFEST_NAME} names {excerpt(name)}, which is "
                         "not inside the output folder: augcli did not write that manifest "
                         "for this folder. Move it away (or choose another output folder)")
    return earlier


def inside(output_dir: Path, name: str, folders: dict | None = None) -> Path | None:
    """``output_dir / name`` if that is inside the output folder (no absolute path, no
    ``..``, no symbolic link on the way out of it); None otherwise. ``folders`` caches
    the answer per folder across calls."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return None
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        return None
    folders = {} if folders is None else folders
    if relative.parent not in folders:
        root = output_dir.resolve()
        parent = (output_dir / relative.parent).resolve()
        folders[relative.parent] = parent == root or root in parent.parents
    return output_dir / relative if folders[relative.parent] else None


def is_inside(output, name: str, folders: dict | None = None) -> bool:
    """Whether a manifest's name is inside the output: the folder (``inside``) or the
    object-store prefix (``_plain_key``)."""
    if isinstance(output, Path):
        return inside(output, name, folders) is not None
    return _plain_key(name)


def _plain_key(name) -> bool:
    """A relative key with no ``..``: inside an object-store prefix (there are no links)."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return False
    relative = PurePosixPath(name)
    return not relative.is_absolute() and ".." not in relative.parts


def check_inside(output_dir, names) -> None:
    """Refuse to write where a symbolic link in the output folder leads out of it."""
    if not isinstance(output_dir, Path):
        return  # an object store has no links
    folders = {PurePosixPath(name).parent for name in names}
    for folder in sorted(folders):
        if inside(output_dir, (folder / "x").as_posix(), {}) is None:
            raise UsageError(f"{output_dir / folder} leads out of the output folder (a symbolic "
                             "link?); augcli writes only inside the output folder")


def remove(output_dir, names) -> None:
    """Delete files an earlier run wrote (names already checked by ``load``); a symbolic
    link is removed itself, never what it points to."""
    if not isinstance(output_dir, Path):
        for name in sorted(names):
            try:
                output_dir.delete(name)
            except OSError as exc:
                raise output_error(output_dir.name(name), exc) from None
        return
    folders: dict = {}
    for name in sorted(names):
        path = inside(output_dir, name, folders)
        if path is None:  # pragma: no cover - load refused such a manifest already
            continue
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            continue
        except OSError as exc:
            raise output_error(path, exc) from None


# --- the lock --------------------------------------------------------------------

class OutputLock:
    """Keeps other augcli runs out of an output folder while this one writes into it.

    ``.augcli.lock`` is created exclusively and holds the pid. Where the OS has
    ``flock`` (Linux, macOS) the file is also locked, so a lock left by a run
    that died is told from a live one for certain: the kernel drops the lock
    with the process. Without it, a lock whose pid no longer runs is stale. A
    stale lock is taken over, and ``note`` is told.
    """

    def __init__(self, output_dir: Path, note=None):
        self.path = output_dir / LOCK_NAME
        self.note = note
        self._fd: int | None = None

    def __enter__(self):
        for _ in range(100):
            if self._try_take():
                return self
        raise UsageError(f"cannot take the lock {self.path}: it keeps changing")  # pragma: no cover

    def _try_take(self) -> bool:
        try:
            fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                fd, created = os.open(self.path, os.O_RDWR), False
            except FileNotFoundError:  # released meanwhile: try again
                return False
            except OSError as exc:
                raise output_error(self.path, exc) from None
        except OSError as exc:
            raise output_error(self.path, exc) from None
        locked = _flock(fd)
        holder = None if created else _read_pid(fd)
        if locked is False or (locked is None and holder is not None and _alive(holder)):
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise UsageError(f"another augcli run ({who}) is writing into "
                             f"{self.path.parent}; wait for it to end or choose another "
                             f"output folder (if no run is going on, delete {self.path})")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and deleted) it as we opened it: start again
            os.close(fd)
            return False
        if not created and self.note is not None:
            who = f"pid {holder}" if holder else "a run"
            self.note(f"took over the lock {self.path} left by {who}, which is no longer "
                      "running")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)
            raise output_error(self.path, exc) from None
        self._fd = fd
        return True

    def __exit__(self, *exc_info):
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def _flock(fd: int) -> bool | None:
    """Lock without waiting: True taken, False held by another process, None no flock here."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # pragma: no cover - a filesystem without flock
        return None
    return True


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii").strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
