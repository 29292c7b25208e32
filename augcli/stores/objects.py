"""An object-store prefix as a store (s3://, az://, gs://, through fsspec).

There is no append and no rename: a publish is one whole-object write (fsspec's
``pipe_file``: a single PUT, or a multipart upload that is aborted on error), the
journal goes out as numbered part objects (``PartJournal``), and the lock is created
exclusively and read back (``ObjectLock``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from functools import partial
from pathlib import PurePosixPath

from ..errors import UsageError
from ..processes import running
from . import locks
from .base import LOCK_NAME, SCHEMES, StorageError, Store, is_hidden, require_extra, scheme

JOURNAL_DIR = ".augcli-journal"  # manifest part objects of a run on an object store
PART_LINES = 1000  # an object-store journal publishes a part every this many lines...
PART_SECONDS = 10.0  # ...or this many seconds after its oldest unpublished line
HEAD_BYTES = 64 * 1024  # a ranged read of an image's first bytes: its header, almost always
LOCK_REFRESH_SECONDS = 300.0  # a run rewrites its object-store lock this often...
LOCK_STALE_SECONDS = 3600.0  # ...so one not rewritten for this long was left by a dead run


class ObjectStore(Store, kind="objects"):
    """An fsspec filesystem under a URL prefix (s3://, az://, gs://)."""

    noun = "prefix"
    journal_lags = True

    @classmethod
    def open(cls, location: str, options: dict) -> ObjectStore:
        return cls(location, options)

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
        self._read_options = {"max_concurrency": 1} if SCHEMES[scheme(url)][1] == "s3" else {}
        self._not_found = _not_found_errors(url)

    def name(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _full(self, key: str) -> str:
        return f"{self.root}/{key}"

    def keys(self, hidden: bool = False) -> list:
        """Every object under the prefix, relative, sorted; one listing (paged by the
        library), never a request per object."""
        return sorted(key for key in self._listing() if hidden or not is_hidden(key))

    def sizes(self) -> dict:
        """Key -> size of every object under the prefix but hidden ones, from one listing."""
        return {key: info.get("size") for key, info in self._listing().items()
                if not is_hidden(key)}

    def _listing(self) -> dict:
        """Key -> the library's details of every object under the prefix: one listing
        (paged by the library), never a request per object."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:  # s3fs and gcsfs: the bucket is not there
            self._check_bucket()
            return {}
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"{self.url}: cannot list ({_reason(exc)})") from None
        listing = {}
        for path, info in found.items():
            path = path.rstrip("/")
            key = path[len(self.root) + 1:]
            if path.startswith(self.root + "/") and key and info.get("type") != "directory":
                if "" in key.split("/"):
                    raise UsageError(f"{self.name(key)}: an object key with an empty part (//) "
                                     "has no name in an output folder or a manifest; rename "
                                     "the object or move it out of the prefix")
                listing[key] = info
        if not listing and SCHEMES[scheme(self.url)][1] == "azure":
            self._check_bucket()  # adlfs lists a missing container as empty
        return listing

    def _check_bucket(self) -> None:
        """Refuse (``UsageError``, one line) a prefix whose bucket or container does not
        exist, where it would otherwise read as "no images" or fail at the first write.
        Asked only where the library said "not found" or listed nothing: a prefix-scoped
        permission may not allow asking about the bucket itself."""
        bucket = self.root.split("/", 1)[0]
        try:
            there = self.fs.exists(bucket)
        except Exception as exc:  # noqa: BLE001 - any library error becomes one message
            raise UsageError(f"{self.url}: cannot list ({_reason(exc)})") from None
        if not there:
            noun = "container" if SCHEMES[scheme(self.url)][1] == "azure" else "bucket"
            raise UsageError(f"{self.url}: the {noun} {bucket!r} does not exist")

    def scan(self, unreadable: list | None = None) -> tuple[list, list]:
        """(images, other objects) under the prefix, as ``imagefiles.scan`` splits a folder."""
        from .. import imagefiles

        return imagefiles.split_images(self.keys())

    def stamp(self, key: str) -> dict:
        """Size and modification time of an object (one metadata request)."""
        return _stamp(self._call(key, self.fs.info, self._full(key)))

    def stamps(self) -> dict:
        """Key -> ``stamp`` of every object under the prefix but hidden ones, from one
        listing: a run plans its sources from it and sends each its stamp, never one
        request per source."""
        return {key: _stamp(info) for key, info in self._listing().items()
                if not is_hidden(key)}

    def scan_with_stamps(self, unreadable: list | None = None) -> tuple[list, list, dict]:
        """(images, other objects, every one's stamp) from one listing: the tasks carry
        the stamps, so a worker asks for nothing but the image itself."""
        from .. import imagefiles

        stamps = self.stamps()
        return (*imagefiles.split_images(sorted(stamps)), stamps)

    def read(self, key: str) -> bytes:
        return self._call(key, partial(self.fs.cat_file, **self._read_options), self._full(key))

    def read_head(self, key: str, size: int = HEAD_BYTES) -> bytes:
        """The first ``size`` bytes of an object (all of it when shorter): one ranged GET."""
        return self._call(key, partial(self.fs.cat_file, start=0, end=size), self._full(key))

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

    def exists(self, key: str) -> bool:
        return self._exists(key)

    def existing(self, names) -> set:
        """Those of ``names`` that are objects under the prefix, hidden ones included (one
        listing, never a request per name)."""
        return set(names) & self._listing().keys()

    def publish(self, key: str, data) -> None:
        data = data if isinstance(data, (bytes, bytearray, memoryview)) else b"".join(data)
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
        except self._not_found:  # no bucket (or container) to create it in
            self._check_bucket()
            raise StorageError(f"{self.name(key)}: not found") from None
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
    it: ``folder.FolderLock``'s interface, for a prefix.

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
                if not (why := self._stale(holder)):
                    self._refuse(holder)
                self.store.delete(self.key)
                if self.note is not None:
                    self.note(locks.took_over(self.path, _who(holder), why))
            if not self.store.create(self.key, self._body(started)):
                continue  # another run made it since we looked: look again
            holder = self._holder()
            if holder.get("token") != self.token:
                self._refuse(holder)  # another run wrote over ours: the create was not exclusive
            locks.hold(self.token)
            self._refresher = threading.Thread(target=self._refresh, args=(started,),
                                               daemon=True, name="augcli-lock")
            self._refresher.start()
            return self
        raise UsageError(f"cannot take the lock {self.path}: it keeps changing")

    def check(self) -> None:
        """Refuse (``UsageError``) while another live run holds the lock, taking nothing and
        writing nothing: what a dry run asks."""
        holder = self._holder()
        if holder and not self._stale(holder):
            self._refuse(holder)

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

    def _stale(self, holder: dict) -> str | None:
        """Why the lock is stale, or None: not rewritten for ``LOCK_STALE_SECONDS`` (by
        the holder's clock: it rewrites the lock far more often than that, so clocks a
        little apart do not matter), or left on this host by a pid that no longer runs.
        (Whether a pid on another host runs cannot be known here: only the age says.)"""
        import socket

        written = holder.get("time")
        if isinstance(written, (int, float)) and time.time() - written > LOCK_STALE_SECONDS:
            return locks.stale_by_age(time.time() - written)
        pid = holder.get("pid")
        if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
            return None
        if pid == os.getpid():  # a run of this process: stale once it has ended
            return None if locks.holds(holder.get("token")) else locks.ENDED
        return None if running(pid) else locks.ENDED

    def _refuse(self, holder: dict):
        raise UsageError(locks.refusal(_who(holder), self.store.url, "prefix", self.path))

    def _refresh(self, started: float) -> None:
        """Rewrite the lock now and then, so that a long run's lock never looks stale."""
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            with contextlib.suppress(OSError):
                if self._holder().get("token") != self.token:
                    return  # taken over: leave it to its new holder
                self.store.publish(self.key, self._body(started))

    def __exit__(self, *exc_info):
        locks.release(self.token)  # even if the lock cannot be deleted (the store is down)
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        with contextlib.suppress(OSError):
            if self._holder().get("token") == self.token:
                self.store.delete(self.key)


def _who(holder: dict) -> str:
    return locks.who(holder.get("pid"), holder.get("host", "an unknown host"),
                     holder.get("started"))


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


def _not_found_errors(url: str) -> tuple:
    """What the library raises for a missing object or bucket: FileNotFoundError, and
    Azure's own error where adlfs passes it on (a write into a missing container)."""
    if SCHEMES[scheme(url)][1] != "azure":
        return (FileNotFoundError,)
    from azure.core.exceptions import ResourceNotFoundError

    return (FileNotFoundError, ResourceNotFoundError)


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
