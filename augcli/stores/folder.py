"""A local folder as a store: publish is temp file + rename, the journal appends to a file,
the lock is a pid file held with ``flock``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath

from .. import imagefiles
from ..errors import UsageError, output_error
from ..processes import running
from . import locks
from .base import LOCK_NAME, Store


class FolderStore(Store, kind="folder"):
    """A local folder: publish is temp file + rename, so a file is whole or absent."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def open(cls, location: str, options: dict) -> FolderStore:
        return cls(Path(location))

    def name(self, key: str) -> str:
        return str(self.root / key)

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
        return imagefiles.scan(self.root, unreadable)

    def sizes(self) -> dict:
        """Key -> size of every file but hidden ones (as ``scan`` walks the folder), None
        for one that cannot be stat'ed (a broken link)."""
        if not self.root.is_dir():
            return {}
        images, others = imagefiles.scan(self.root)
        sizes = {}
        for path in sorted(images + others):
            try:
                sizes[path.as_posix()] = (self.root / path).stat().st_size
            except OSError:
                sizes[path.as_posix()] = None
        return sizes

    def stamps(self) -> dict:
        return {key: self.stamp(key) for key in self.keys()}

    def stamp(self, key: str) -> dict:
        status = (self.root / key).stat()
        return {"source_size": status.st_size, "source_mtime_ns": status.st_mtime_ns}

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def header(self, key: str, parse):
        """``parse`` applied to the file's path: it reads the header it needs, no more."""
        return parse(self.root / key)

    def exists(self, key: str) -> bool:
        """Whether the folder holds ``key`` (False for a name the file system cannot even
        hold: too long)."""
        try:
            return (self.root / key).exists()
        except OSError:
            return False

    def publish(self, key: str, data) -> None:
        imagefiles.write_atomic(self.root / key, data)

    def delete(self, key: str) -> None:
        try:
            (self.root / key).unlink(missing_ok=True)
        except IsADirectoryError:
            return

    def tidy(self) -> None:
        """Remove the temp files of writes that died with their worker."""
        imagefiles.remove_stale_temp_files(self.root)

    def prune(self, names) -> None:
        folders = {parent for name in names for parent in PurePosixPath(name).parents
                   if parent != PurePosixPath()}
        for folder in sorted(folders, key=lambda f: (-len(f.parts), f)):
            path = self.root / folder
            try:
                if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                    path.rmdir()
            except OSError as exc:
                raise output_error(path, exc) from None

    def spill_folder(self) -> Path:
        return self.root

    def journal(self, name: str) -> FolderJournal:
        return FolderJournal(self.root / name)

    def read_journal(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return b""

    def lock(self, note=None) -> FolderLock:
        """Keep other runs out while this one writes (``FolderLock``)."""
        return FolderLock(self.root, note=note)

    def is_inside(self, name, folders: dict | None = None) -> bool:
        """A plain relative key that leads through no symbolic link out of the folder."""
        if not super().is_inside(name):
            return False
        relative = PurePosixPath(name)
        folders = {} if folders is None else folders
        if relative.parent not in folders:
            root = self.root.resolve()
            parent = (self.root / relative.parent).resolve()
            folders[relative.parent] = parent == root or root in parent.parents
        return folders[relative.parent]


class FolderJournal:
    """A file opened for appending; what is flushed has reached the file (not fsynced:
    see 'Guarantees' in the docs on power loss). A torn last line is cut first."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _end_with_newline(path)
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


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


class FolderLock:
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
        try:  # the output folder is made here, as the lock file needs it
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(self.path.parent, exc) from None
        for _ in range(100):
            if self._try_take():
                locks.hold(str(self.path))
                return self
        raise UsageError(f"cannot take the lock {self.path}: it keeps changing")  # pragma: no cover

    def check(self) -> None:
        """Refuse (``UsageError``) while another live run holds the lock, taking nothing and
        writing nothing: what a dry run asks."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise output_error(self.path, exc) from None
        try:
            locked = _flock(fd, shared=True)
            holder = _read_pid(fd)
        finally:
            os.close(fd)  # drops the shared lock too
        if locked is False or (locked is None and holder is not None and running(holder)):
            raise UsageError(locks.refusal(locks.who(holder or None), self.path.parent,
                                           "folder", self.path))

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
        if locked is False or (locked is None and holder is not None and running(holder)):
            os.close(fd)
            raise UsageError(locks.refusal(locks.who(holder or None), self.path.parent,
                                           "folder", self.path))
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and deleted) it as we opened it: start again
            os.close(fd)
            return False
        if not created and self.note is not None:
            self.note(locks.took_over(self.path, locks.who(holder or None, nobody="a run")))
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
        locks.release(str(self.path))
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _flock(fd: int, shared: bool = False) -> bool | None:
    """Lock without waiting: True taken, False held by another process, None no flock here."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
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
