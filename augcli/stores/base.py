"""The one interface of a store: where images come from and go to.

A store is rooted at a folder (``data/in``) or a URL prefix (``s3://bucket/raw``,
``az://container/prefix``, ``gs://bucket/prefix``); local disk is just another
filesystem (fsspec's idea). Every caller works through ``Store``'s methods and never
asks which kind it has. The policy that makes augcli's object-store use sound lives
on the interface, so each store keeps it:

* ``publish`` writes a key whole or not at all (a folder: temp file + rename; an
  object store: one whole-object write). Nothing is written through an open handle,
  which publishes a truncated object when an exception is raised half-way.
* workers get a ``StoreSpec`` (the location and non-secret options, plain text),
  never a filesystem object, which can carry credentials when pickled; each process
  opens a spec once. Credentials come from the storage library's own environment.
* ``lock`` keeps a second run out: created exclusively, and read back where the
  service may ignore the exclusive create.

A new store is one subclass of ``Store`` (``kind="..."``) and one line in ``SCHEMES``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from ..errors import UsageError, install_hint, output_error
from ..locations import is_url, scheme

MANIFEST_NAME = "manifest.jsonl"  # the journal of what runs wrote into an output
LOCK_NAME = ".augcli.lock"  # held by the run writing into an output

# URL scheme -> (the kind of store, the extra that installs its library, that module)
SCHEMES = {"s3": ("objects", "s3", "s3fs"), "s3a": ("objects", "s3", "s3fs"),
           "az": ("objects", "azure", "adlfs"), "abfs": ("objects", "azure", "adlfs"),
           "abfss": ("objects", "azure", "adlfs"),
           "gs": ("objects", "gcs", "gcsfs"), "gcs": ("objects", "gcs", "gcsfs")}
FOLDER_KIND = "folder"  # a location that is no URL

_KINDS: dict = {}  # kind -> its Store subclass (registered by the subclass itself)


class StorageError(OSError):
    """A storage request failed after the storage library's own retries."""


class Store:
    """A folder or an object-store prefix. Keys are relative POSIX paths (``cats/a.jpg``);
    a key with a leading dot anywhere in it is hidden (augcli's lock, temp files and
    journal parts)."""

    kind = ""
    noun = "folder"  # what the user calls the output's root, in messages
    # Whether a flushed journal line may not be in the store yet (an object store sends
    # parts now and then): a killed run's last "started" lines can be missing.
    journal_lags = False

    def __init_subclass__(cls, kind: str = "", **kwargs):
        super().__init_subclass__(**kwargs)
        if kind:
            cls.kind = kind
            _KINDS[kind] = cls

    @classmethod
    def open(cls, location: str, options: dict) -> Store:
        """The store at ``location`` (an absolute folder, or a URL of its kind)."""
        raise NotImplementedError

    # --- names and listings
    def name(self, key: str) -> str:
        """The key as the user knows it (a path, or a URL), for messages."""
        raise NotImplementedError

    def keys(self, hidden: bool = False) -> list:
        """Every key under the root, relative, sorted by POSIX path (the same on every
        machine); hidden ones only when asked."""
        raise NotImplementedError

    def scan(self, unreadable: list | None = None) -> tuple[list, list]:
        """(images, other files) under the root as ``Path``\\ s, as ``imagefiles.scan``
        splits a folder."""
        raise NotImplementedError

    def sizes(self) -> dict:
        """Key -> size of every key but hidden ones, from one listing."""
        raise NotImplementedError

    def stamps(self) -> dict:
        """Key -> ``stamp`` of every key but hidden ones, from one listing."""
        raise NotImplementedError

    def scan_with_stamps(self, unreadable: list | None = None) -> tuple[list, list, dict]:
        """``scan`` and the stamps its listing gives for free, for a plan to send with its
        tasks: an object store's (one request for all, never one per source); none from
        a folder, where a worker stats its source as it reads it."""
        return (*self.scan(unreadable), {})

    def stamp(self, key: str) -> dict:
        """What tells a changed source from the one an output was made from: its size
        and modification time."""
        raise NotImplementedError

    # --- reading
    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def read_image(self, key: str):
        """Read and decode one image (ImageReadError naming it and why, when it cannot be)."""
        from .. import imagefiles

        name = self.name(key)
        return imagefiles.decode_image(imagefiles.read_source(partial(self.read, key), name), name)

    def header(self, key: str, parse):
        """``parse`` (a function of a path or a binary file) applied to the image's first
        bytes: it reads the header it needs, and as little more as the store allows."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def existing(self, names) -> set:
        """Those of ``names`` that the store holds, hidden ones included (an object store
        answers from one listing, never a request per name)."""
        return set(filter(self.exists, names))

    # --- writing
    def publish(self, key: str, data) -> None:
        """Write ``key`` whole or not at all. ``data``: bytes, or an iterable of byte chunks
        (streamed to a folder's file; joined in memory for one whole-object write)."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove ``key`` (a link itself, never what it points to); no error if absent."""
        raise NotImplementedError

    def tidy(self) -> None:
        """Remove what writes that died with their worker left (a folder's temp files)."""

    def prune(self, names) -> None:
        """Remove the folders that deleting ``names`` left empty (never the root, never
        through a link); an object store has no folders."""

    def spill_folder(self) -> Path | None:
        """Where a run's sorted temporary files go: beside the outputs (same disk), or
        the system's temporary folder (None) for an object store."""
        return None

    # --- the journal (the manifest)
    def journal(self, name: str):
        """``name`` opened for appending: ``write(bytes)``, ``flush()``, ``close()``; a
        flushed line is in the store (a folder appends; an object store publishes part
        objects, as it has no append)."""
        raise NotImplementedError

    def read_journal(self, name: str) -> bytes:
        """``name`` and whatever journals appended to it since it was last published
        whole, every chunk ending with a newline (b"" when there is none)."""
        raise NotImplementedError

    def clear_journal(self, name: str) -> None:
        """Drop what journals appended once ``name`` was published whole with it."""

    # --- the lock
    def lock(self, note=None):
        """A context manager that keeps other runs out while this one writes (``UsageError``
        while another live run holds it); a stale lock is taken over and ``note`` told.
        Its ``check()`` refuses the same way without taking it (a dry run)."""
        raise NotImplementedError

    # --- names read from a manifest: trusted only inside the store
    def is_inside(self, name, folders: dict | None = None) -> bool:
        """Whether ``name`` is a plain relative key (not absolute, no ``..``, no NUL or
        backslash); a folder also refuses one that leads through a symbolic link out of
        it. ``folders`` caches answers per folder across calls."""
        return _plain_key(name)

    def check_inside(self, names) -> None:
        """Refuse to write where a folder of ``names`` leads out of the store."""
        cache: dict = {}
        for folder in sorted({PurePosixPath(name).parent for name in names}):
            if not self.is_inside((folder / "x").as_posix(), cache):
                raise UsageError(f"{self.name(folder.as_posix())} leads out of the output "
                                 "folder (a symbolic link?); augcli writes only inside the output "
                                 "folder")

    def remove(self, names) -> None:
        """Delete files an earlier run wrote (those inside the store only); raises
        OutputError naming the one that cannot be deleted."""
        folders: dict = {}
        for name in sorted(names):
            if not self.is_inside(name, folders):
                continue
            try:
                self.delete(name)
            except OSError as exc:
                raise output_error(self.name(name), exc) from None


def _plain_key(name) -> bool:
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return False
    relative = PurePosixPath(name)
    return not relative.is_absolute() and ".." not in relative.parts


def is_hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


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
    def kind(self) -> str:
        return kind_of(self.location)

    def open(self) -> Store:
        """This process's store for the spec (opened once, then reused)."""
        with _OPEN_LOCK:
            store = _OPEN.get(self)
            if store is None:
                store = _OPEN[self] = _KINDS[self.kind].open(self.location,
                                                              json.loads(self.options))
            return store

    def __str__(self) -> str:
        return self.location


def kind_of(location: str) -> str:
    """The kind of store a location names: ``FOLDER_KIND`` for a folder. Refuses a URL
    whose scheme augcli does not know, or whose extra is not installed."""
    if not is_url(location):
        return FOLDER_KIND
    require_extra(location)
    return SCHEMES[scheme(location)][0]


def require_extra(url: str) -> None:
    """Refuse a URL whose scheme augcli does not know, or whose extra is not installed."""
    found = scheme(url)
    if found not in SCHEMES:
        known = ", ".join(f"{name}://" for name in ("s3", "az", "gs"))
        raise UsageError(f"{url}: augcli reads and writes folders and {known} URLs, "
                         f"not {found}://")
    _, extra, module = SCHEMES[found]
    try:
        __import__(module)
    except ImportError:
        raise UsageError(f"{url} needs the {extra} extra: {install_hint(extra)}") from None


_OPEN: dict = {}  # StoreSpec -> this process's open store
_OPEN_LOCK = threading.Lock()
