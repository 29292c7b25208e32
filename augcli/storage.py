"""Where images come from and go to: a local folder, or an object-store URL through fsspec.

A *store* is rooted at a folder (``data/in``) or a URL prefix (``s3://bucket/raw``,
``az://container/prefix``, ``gs://bucket/prefix``). Everything augcli does with one
is in five calls: list the keys under it (relative, sorted, the same on every
machine), read one key's bytes, publish one key's bytes whole, delete one, and keep
a journal (the manifest). A folder publishes by temp file + rename; an object store
by one whole-object write (fsspec's ``pipe_file``: a single PUT, or a multipart
upload that is aborted on error). Nothing is ever written through an open handle,
which publishes a truncated object when an exception is raised half-way.

Worker processes get a ``StoreSpec`` (the location and non-secret options, plain
text), never a filesystem object: a pickled filesystem can carry credentials.
Each process opens the spec once; credentials come from the storage library's own
environment, config files or machine identity (``AWS_*``, ``AZURE_STORAGE_*``,
``GOOGLE_APPLICATION_CREDENTIALS``), never from the recipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from . import locations
from .errors import UsageError
from .locations import is_url

# URL scheme -> (extra, the module that extra installs)
SCHEMES = {"s3": ("s3", "s3fs"), "s3a": ("s3", "s3fs"),
           "az": ("azure", "adlfs"), "abfs": ("azure", "adlfs"), "abfss": ("azure", "adlfs"),
           "gs": ("gcs", "gcsfs"), "gcs": ("gcs", "gcsfs")}
JOURNAL_DIR = ".augcli-journal"  # manifest part objects of a run on an object store
PART_LINES = 1000  # an object-store journal publishes a part every this many lines...
PART_SECONDS = 10.0  # ...or this many seconds after its oldest unpublished line
HEAD_BYTES = 64 * 1024  # a ranged read of an image's first bytes: its header, almost always
LOCK_REFRESH_SECONDS = 300.0  # a run rewrites its object-store lock this often...
LOCK_STALE_SECONDS = 3600.0  # ...so one not rewritten for this long was left by a dead run

# --- locations -----------------------------------------------------------------

def require_extra(url: str) -> None:
    """Refuse a URL whose scheme augcli does not know, or whose extra is not installed."""
    scheme = locations.scheme(url)
    if scheme not in SCHEMES:
        known = ", ".join(f"{name}://" for name in ("s3", "az", "gs"))
        raise UsageError(f"{url}: augcli reads and writes folders and {known} URLs, "
                         f"not {scheme}://")
    extra, module = SCHEMES[scheme]
    try:
        __import__(module)
    except ImportError:
        raise UsageError(f"{url} needs the {extra} extra: pip install 'augcli[{extra}]'") \
            from None


def open_pair(input, output, options: dict | None = None,
              local_only: str | None = None) -> tuple[StoreSpec, StoreSpec]:
    """Check an input and an output location (folders or URLs) and return their specs.

    Refuses what cannot work: a missing location, an input folder that is not
    there, an output inside the input, a URL without its extra; with
    ``local_only`` (what needs folders, e.g. "annotations"), any URL.
    """
    from .jobs import check_folders

    if not is_url(input) and not is_url(output):
        input, output = check_folders(input, output)
        return StoreSpec.of(input), StoreSpec.of(output)
    if input is None or output is None:
        check_folders(input, output)  # says which one is missing
    if local_only:
        raise UsageError(f"{local_only} need local folders for the input and output, not "
                         f"{input if is_url(input) else output}")
    for where in (input, output):
        if is_url(where):
            require_extra(where)
    if not is_url(input) and not input.is_dir():
        raise UsageError(f"input folder {input} does not exist or is not a folder")
    if not is_url(output) and output.exists() and not output.is_dir():
        raise UsageError(f"output path {output} exists and is not a folder")
    if is_url(input) and is_url(output) and locations.within(output, input):
        raise UsageError(f"output {output} is inside the input {input}; choose a prefix outside "
                         "it so outputs never mix with sources")
    return StoreSpec.of(input, options), StoreSpec.of(output, options)


# --- specs: what workers get --------------------------------------------------------

@dataclass(frozen=True)
class StoreSpec:
    """A store as plain text: its location (an absolute folder or a URL) and non-secret
    options (JSON). Picklable and safe to send to any worker."""

    location: str
    options: str = "{}"

    @classmethod
    def of(cls, where, options: dict | None = None) -> StoreSpec:
        if isinstance(where, Path):
            return cls(str(where.resolve()))
        return cls(where, json.dumps(options or {}, sort_keys=True))

    @property
    def is_url(self) -> bool:
        return is_url(self.location)

    def open(self):
        """This process's store for the spec (opened once, then reused)."""
        with _OPEN_LOCK:
            store = _OPEN.get(self)
            if store is None:
                store = _OPEN[self] = (ObjectStore(self.location, json.loads(self.options))
                                       if self.is_url else FolderStore(Path(self.location)))
            return store

    def __str__(self) -> str:
        return self.location


_OPEN: dict = {}
_OPEN_LOCK = threading.Lock()


class StorageError(OSError):
    """A storage request failed after the storage library's own retries."""


def _hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


# --- a folder ---------------------------------------------------------------------

class FolderStore:
    """A local folder: publish is temp file + rename, so a file is whole or absent."""

    is_local = True

    def __init__(self, root: Path):
        self.root = root

    def name(self, key: str) -> str:
        return str(self.root / key)

    def path(self, key: str) -> Path:
        return self.root / key

    def keys(self, hidden: bool = False) -> list:
        """Every file under the folder, relative, sorted by POSIX path; hidden ones
        (a leading dot anywhere in the path) only when asked."""
        keys = []
        for top, dirs, files in os.walk(self.root):
            relative = Path(top).relative_to(self.root)
            if not hidden:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            keys += [(relative / name).as_posix() for name in files
                     if hidden or not name.startswith(".")]
        return sorted(keys)

    def scan(self, unreadable: list | None = None) -> tuple[list, list]:
        """(images, other files) under the folder, as ``imagefiles.scan`` walks it."""
        from . import imagefiles

        return imagefiles.scan(self.root, unreadable)

    def stamp(self, key: str) -> dict:
        """What tells a changed source from the one an output was made from."""
        status = (self.root / key).stat()
        return {"source_size": status.st_size, "source_mtime_ns": status.st_mtime_ns}

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def read_image(self, key: str):
        """Read and decode one image (ImageReadError naming it and why, when it cannot be)."""
        from . import imagefiles

        name = self.name(key)
        return imagefiles.decode_image(imagefiles.read_source(partial(self.read, key), name), name)

    def header(self, key: str, parse):
        """``parse`` (a function of a path or a binary file) applied to the image's file:
        it reads the header it needs, and nothing more."""
        return parse(self.root / key)

    def exists(self, key: str) -> bool:
        """Whether the folder holds ``key`` (False for a name the file system cannot even
        hold: too long)."""
        try:
            return (self.root / key).exists()
        except OSError:
            return False

    def existing(self, names) -> set:
        """Those of ``names`` that are in the folder (asked name by name: cheap here)."""
        return set(filter(self.exists, names))

    def publish(self, key: str, data: bytes) -> None:
        from . import imagefiles

        imagefiles.write_atomic(self.root / key, data)

    def lock(self, note=None):
        """Keep other runs out while this one writes (``manifest.OutputLock``); the output
        folder is made here, as the lock file needs it."""
        from .errors import output_error
        from .manifest import OutputLock

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(self.root, exc) from None
        return OutputLock(self.root, note=note)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def tidy(self) -> None:
        """Remove the temp files of writes that died with their worker."""
        from . import imagefiles

        imagefiles.remove_stale_temp_files(self.root)


# --- an object store ------------------------------------------------------------------

class ObjectStore:
    """An fsspec filesystem under a URL prefix (s3://, az://, gs://)."""

    is_local = False

    def __init__(self, url: str, options: dict):
        require_extra(url)
        import fsspec

        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url, **options)
        except Exception as exc:  # noqa: BLE001 - any library error becomes one message
            raise UsageError(f"{url}: cannot open ({_reason(exc)})") from None
        self.root = self.root.rstrip("/")
        # s3fs asks for an object's size (a HEAD) before each read, to read big ones in
        # parallel ranges; images are small: one GET each.
        self._read_options = {"max_concurrency": 1} \
            if SCHEMES[locations.scheme(url)][0] == "s3" else {}

    def name(self, key: str) -> str:
        return f"{self.url}/{key}"

    def path(self, key: str) -> None:
        return None

    def _full(self, key: str) -> str:
        return f"{self.root}/{key}"

    def keys(self, hidden: bool = False) -> list:
        """Every object under the prefix, relative, sorted; one listing (paged by the
        library), never a request per object."""
        return sorted(self.sizes(hidden))

    def sizes(self, hidden: bool = False) -> dict:
        """Key -> size of every object under the prefix, from one listing."""
        return {key: info.get("size") for key, info in self._listing().items()
                if hidden or not _hidden(key)}

    def _listing(self) -> dict:
        """Key -> the library's details of every object under the prefix: one listing
        (paged by the library), never a request per object."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"{self.url}: cannot list ({_reason(exc)})") from None
        listing = {}
        for path, info in found.items():
            path = path.rstrip("/")
            key = path[len(self.root) + 1:]
            if path.startswith(self.root + "/") and key and info.get("type") != "directory":
                listing[key] = info
        return listing

    def scan(self, unreadable: list | None = None) -> tuple[list, list]:
        """(images, other objects) under the prefix, as ``imagefiles.scan`` splits a folder."""
        from . import imagefiles

        return imagefiles.split_images(self.keys())

    def stamp(self, key: str) -> dict:
        """Size and modification time of an object (one metadata request)."""
        return _stamp(self._call(key, self.fs.info, self._full(key)))

    def stamps(self) -> dict:
        """Key -> ``stamp`` of every object under the prefix but hidden ones, from one
        listing: a run plans its sources from it and sends each its stamp, never one
        request per source."""
        return {key: _stamp(info) for key, info in self._listing().items()
                if not _hidden(key)}

    def read(self, key: str) -> bytes:
        return self._call(key, partial(self.fs.cat_file, **self._read_options), self._full(key))

    def read_head(self, key: str, size: int = HEAD_BYTES) -> bytes:
        """The first ``size`` bytes of an object (all of it when shorter): one ranged GET."""
        return self._call(key, partial(self.fs.cat_file, start=0, end=size), self._full(key))

    def read_image(self, key: str):
        """Read and decode one image (ImageReadError naming it and why, when it cannot be)."""
        from . import imagefiles

        name = self.name(key)
        return imagefiles.decode_image(imagefiles.read_source(partial(self.read, key), name), name)

    def header(self, key: str, parse):
        """``parse`` (a function of a binary file) applied to the object's first
        ``HEAD_BYTES`` (one ranged GET, not the whole image); when that is not enough
        (a header behind a large EXIF or ICC block), to the whole object."""
        import io

        head = self.read_head(key)
        try:
            return parse(io.BytesIO(head))
        except Exception:  # noqa: BLE001 - the header may go on past the head: read it all
            if len(head) < HEAD_BYTES:  # that was the whole object
                raise
            return parse(io.BytesIO(self.read(key)))

    def existing(self, names) -> set:
        """Those of ``names`` that are objects under the prefix, hidden ones included (one
        listing, never a request per name)."""
        return set(names) & self._listing().keys()

    def publish(self, key: str, data: bytes) -> None:
        self._call(key, self.fs.pipe_file, self._full(key), bytes(data))

    def create(self, key: str, data: bytes) -> bool:
        """Publish ``key`` only if no object has that name: True when this call made it.

        An exclusive create where the service has one (S3 ``If-None-Match: *``, Azure
        ``overwrite=False``, GCS ``ifGenerationMatch=0``, asked for through fsspec's
        ``mode="create"``); a service or emulator that ignores it overwrites instead,
        which is why ``ObjectLock`` reads its lock back.
        """
        try:
            self.fs.pipe_file(self._full(key), bytes(data), mode="create")
        except FileExistsError:
            return False
        except Exception as exc:  # noqa: BLE001 - a refused condition, or a failed request
            if self._exists(key):
                return False
            raise StorageError(f"{self.name(key)}: {_reason(exc)}") from None
        return True

    def lock(self, note=None) -> ObjectLock:
        """Keep other runs out of the prefix while this one writes (``ObjectLock``)."""
        return ObjectLock(self, note=note)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call(key, self.fs.rm_file, self._full(key))

    def _exists(self, key: str) -> bool:
        self.fs.invalidate_cache()
        try:
            return bool(self.fs.exists(self._full(key)))
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"{self.name(key)}: {_reason(exc)}") from None

    def _call(self, key: str, function, *args):
        try:
            return function(*args)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.name(key)}: not found") from None
        except Exception as exc:  # noqa: BLE001 - the library already retried
            raise StorageError(f"{self.name(key)}: {_reason(exc)}") from None

    def tidy(self) -> None:
        """Nothing to remove: an object is published whole or not at all."""

    def _parts(self, name: str) -> list:
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self._full(JOURNAL_DIR), detail=False)
        except FileNotFoundError:
            return []
        prefix = PurePosixPath(self.root, JOURNAL_DIR).as_posix() + "/" + name + "."
        return sorted(path for path in found if path.startswith(prefix))

    def read_journal(self, name: str) -> bytes:
        """The manifest, then the parts of runs that did not finish, in order."""
        chunks = []
        with contextlib.suppress(FileNotFoundError):
            chunks.append(self.read(name))
        for part in self._parts(name):
            try:
                chunks.append(self.fs.cat_file(part))
            except FileNotFoundError:
                continue
        return b"".join(chunk if chunk.endswith(b"\n") or not chunk else chunk + b"\n"
                        for chunk in chunks)

    def journal(self, name: str) -> PartJournal:
        return PartJournal(self, name)

    def clear_journal(self, name: str) -> None:
        """Delete the parts once the manifest holds their lines."""
        for part in self._parts(name):
            try:
                self.fs.rm_file(part)
            except FileNotFoundError:
                continue


class ObjectLock:
    """Keeps other augcli runs out of an object-store prefix while this one writes into
    it: ``manifest.OutputLock``'s interface, for a prefix.

    ``.augcli.lock`` under the prefix is created exclusively (``ObjectStore.create``)
    and holds the run's pid, host, start and a random token; the run rewrites it
    every ``LOCK_REFRESH_SECONDS`` and deletes it at the end. It is then read back:
    where the service or an emulator ignores the exclusive create, the last of two
    racing writers wins and the other sees a token not its own and stops, which
    narrows the race to the moment between one run's check and the other's write
    but cannot close it. A lock not rewritten for ``LOCK_STALE_SECONDS``, or left
    on this host by a pid that no longer runs, is stale: it is taken over, and
    ``note`` is told.
    """

    def __init__(self, store: ObjectStore, note=None):
        from .manifest import LOCK_NAME

        self.store = store
        self.key = LOCK_NAME
        self.path = store.name(LOCK_NAME)
        self.note = note
        self.token = ""
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _body(self, started: float) -> bytes:
        import socket

        return (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": started, "time": time.time(), "token": self.token})
                + "\n").encode()

    def __enter__(self):
        import secrets

        self.token = secrets.token_hex(16)
        started = time.time()
        for _ in range(5):
            holder = self._holder()  # asked first: some emulators ignore an exclusive create
            if holder:
                if not self._stale(holder):
                    self._refuse(holder)
                self.store.delete(self.key)
                if self.note is not None:
                    self.note(f"took over the lock {self.path} left by {_who(holder)}, which "
                              "is no longer running")
            if not self.store.create(self.key, self._body(started)):
                continue  # another run made it since we looked: look again
            holder = self._holder()
            if holder.get("token") != self.token:
                self._refuse(holder)  # another run wrote over ours: the create was not exclusive
            _HELD.add(self.token)
            self._refresher = threading.Thread(target=self._refresh, args=(started,),
                                               daemon=True, name="augcli-lock")
            self._refresher.start()
            return self
        raise UsageError(f"cannot take the lock {self.path}: it keeps changing")

    def _holder(self) -> dict:
        try:
            data = self.store.read(self.key)
        except FileNotFoundError:
            return {}
        try:
            holder = json.loads(data.decode("utf-8"))
        except ValueError:
            holder = None
        return holder if isinstance(holder, dict) else {"token": None}  # not augcli's text

    def _stale(self, holder: dict) -> bool:
        """Not rewritten for ``LOCK_STALE_SECONDS`` (by the holder's clock: it rewrites
        the lock far more often than that, so clocks a little apart do not matter), or
        left on this host by a pid that no longer runs."""
        import socket

        from .manifest import _alive

        written = holder.get("time")
        if isinstance(written, (int, float)) and time.time() - written > LOCK_STALE_SECONDS:
            return True
        pid = holder.get("pid")
        if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
            return False
        if pid == os.getpid():  # a run of this process: stale once it has ended
            return holder.get("token") not in _HELD
        return not _alive(pid)

    def _refuse(self, holder: dict):
        raise UsageError(f"another augcli run ({_who(holder)}) is writing into "
                         f"{self.store.url}; wait for it to end or choose another output "
                         f"prefix (if no run is going on, delete {self.path})")

    def _refresh(self, started: float) -> None:
        """Rewrite the lock now and then, so that a long run's lock never looks stale."""
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            with contextlib.suppress(OSError):
                if self._holder().get("token") != self.token:
                    return  # taken over: leave it to its new holder
                self.store.publish(self.key, self._body(started))

    def __exit__(self, *exc_info):
        _HELD.discard(self.token)  # even if the lock cannot be deleted (the store is down)
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        with contextlib.suppress(OSError):
            if self._holder().get("token") == self.token:
                self.store.delete(self.key)


_HELD: set = set()  # tokens of the locks this process holds now


def _who(holder: dict) -> str:
    if holder.get("pid") is None:
        return "another process"
    since = ""
    if isinstance(holder.get("started"), (int, float)):
        since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(holder["started"]))
    return f"pid {holder['pid']} on {holder.get('host', 'an unknown host')}{since}"


class PartJournal:
    """An object store has no append: lines go out as numbered part objects, the first
    at once, then more and more seldom up to every ``PART_LINES`` lines or
    ``PART_SECONDS`` seconds, and at close."""

    def __init__(self, store: ObjectStore, name: str):
        self.store = store
        self.prefix = f"{JOURNAL_DIR}/{name}.{time.time_ns():020d}-"
        self.buffer: list = []
        self.lines = 0
        self.since: float | None = None
        self.parts = 0

    def write(self, data: bytes) -> None:
        if self.since is None:
            self.since = time.monotonic()
        self.buffer.append(data)
        self.lines += data.count(b"\n")

    def flush(self, force: bool = False) -> None:
        if not self.buffer:
            return
        # The first part goes out at once (from then on the prefix says whose outputs are
        # in it), the next ones after 0.25, 0.5, 1, ... seconds, then every PART_SECONDS:
        # a run killed early loses little, a long run makes few requests.
        wait = min(PART_SECONDS, 0.25 * 2 ** (self.parts - 1)) if self.parts else 0.0
        assert self.since is not None  # set by the write that filled the buffer
        if force or self.lines >= PART_LINES or time.monotonic() - self.since >= wait:
            self.parts += 1
            self.store.publish(f"{self.prefix}{self.parts:06d}", b"".join(self.buffer))
            self.buffer, self.lines, self.since = [], 0, None

    def close(self) -> None:
        self.flush(force=True)


def _stamp(info: dict) -> dict:
    modified = next((info[name] for name in ("LastModified", "last_modified", "mtime",
                                              "updated") if info.get(name)), None)
    return {"source_size": info.get("size"), "source_mtime_ns": _nanoseconds(modified)}


def _nanoseconds(moment) -> int | None:
    """A library's modification time (a datetime, or ISO text) as integer nanoseconds."""
    import datetime

    if isinstance(moment, str):
        try:
            moment = datetime.datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(moment, datetime.datetime):
        return int(moment.timestamp() * 1_000_000) * 1000
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
