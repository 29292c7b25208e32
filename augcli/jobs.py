"""What every folder command shares: folder checks, the worker pool, progress, counts.

``run``, ``normalize`` and ``ricap`` all read a folder, fan tasks out to worker
processes and report. This module holds those pieces and imports nothing of
the augmentation stack, so each command loads only what it needs.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from tqdm import tqdm

from .errors import EXIT_OK, EXIT_SOME_FAILED, UsageError


@dataclass
class JobReport:
    """Counts of one command over a folder; owns the exit code."""

    images_read: int = 0
    written: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)  # (path, reason)
    ignored: list = field(default_factory=list)  # files that are not images
    seconds: float = 0.0
    output_dir: str | Path | None = None  # where outputs went (None: none, e.g. a fit)
    # Told one line per failure as it happens (the CLI prints it above the progress bar).
    notify: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def fail(self, path, reason: str) -> None:
        """Record that ``path`` failed and why, and tell ``notify`` at once."""
        self.failures.append((path, reason))
        if self.notify is not None:
            self.notify(f"{path}: {reason}")

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failures else EXIT_OK

    def summary(self) -> str:
        return (f"{self.images_read} images read, {self.written} outputs written, "
                f"{self.skipped} skipped (already done), {len(self.failures)} failed, "
                f"{self.seconds:.1f} s")

    def to_json(self) -> dict:
        """The report as one JSON object for scripts (``--json``); subclasses add their keys."""
        output = None if self.output_dir is None else _posix(self.output_dir)
        return {"output": output, "images_read": self.images_read,
                "written": self.written, "skipped": self.skipped, "failed": len(self.failures),
                "failures": [{"path": _posix(path), "reason": reason}
                             for path, reason in self.failures],
                "ignored": [_posix(path) for path in self.ignored],
                "seconds": round(self.seconds, 3), "exit_code": self.exit_code}


def _posix(path) -> str:
    return path.as_posix() if isinstance(path, Path) else str(path)


def check_folders(input_dir: Path | None, output_dir: Path | None) -> tuple[Path, Path]:
    if input_dir is None:
        raise UsageError("no input folder: set 'input:' in the recipe or pass --input")
    if output_dir is None:
        raise UsageError("no output folder: set 'output:' in the recipe or pass --output")
    if not input_dir.is_dir():
        raise UsageError(f"input folder {input_dir} does not exist or is not a folder")
    resolved_in, resolved_out = input_dir.resolve(), output_dir.resolve()
    if resolved_out == resolved_in or resolved_in in resolved_out.parents:
        raise UsageError(f"output folder {output_dir} is inside the input folder {input_dir}; "
                         "choose a folder outside it so outputs never mix with sources")
    if resolved_out in resolved_in.parents:
        raise UsageError(f"input folder {input_dir} is inside the output folder {output_dir}; "
                         "choose an output folder apart from it so outputs never mix with "
                         "sources")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"output path {output_dir} exists and is not a folder")
    return input_dir, output_dir


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_TASKS_PER_WORKER = 4  # queued per worker: enough to keep it busy, few enough to bound memory

WORKER_DIED = "its worker process died (killed, perhaps for lack of memory)"


def map_in_workers(function, tasks, workers: int, crashed=None):
    """Yield ``function(task)`` for each task, in completion order.

    One worker runs in-process (easy to debug and profile; this process then keeps
    freed image buffers as a pool worker does, see ``keep_freed_memory``); more use a
    process pool. ``function`` must be a module-level function and tasks picklable.
    At most a few tasks per worker are in flight, so memory does not grow with
    the number of tasks, and a finished result is dropped once yielded.

    A worker that dies (the OOM killer, a crash in native code) breaks the pool.
    With ``crashed``, the pool is then rebuilt, the tasks that were in flight
    are rerun one at a time to find the one that kills its worker, and for that
    task ``crashed(task, reason)`` is yielded instead of a result; the rest go
    on. Without it, the error is raised.
    """
    if workers == 1:
        keep_freed_memory()
        yield from map(function, tasks)
        return
    pending = iter(tasks)
    suspects: list | None = []
    while suspects is not None:
        suspects = yield from _run_pool(function, pending, workers, suspects, crashed)


def _run_pool(function, pending, workers: int, suspects: list, crashed):
    """Run ``suspects`` one by one, then the pending tasks, on one pool; return None when
    all are done, or the tasks still to retry when a worker died and broke the pool."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(function),
                             initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        for position, task in enumerate(suspects):
            try:
                result = pool.submit(function, task).result()
            except BrokenProcessPool:
                if crashed is None:
                    raise
                yield crashed(task, WORKER_DIED)
                return suspects[position + 1:]
            yield result
        in_flight = {pool.submit(function, task): task
                     for task in itertools.islice(pending, workers * _TASKS_PER_WORKER)}
        try:
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                if any(isinstance(future.exception(), BrokenProcessPool) for future in done):
                    if crashed is None:
                        raise BrokenProcessPool(WORKER_DIED)
                    finished = [f for f in done if f.exception() is None]
                    for future in finished:
                        yield future.result()
                    return [task for future, task in in_flight.items()
                            if future not in finished]
                for future in done:
                    del in_flight[future]
                for task in itertools.islice(pending, len(done)):
                    in_flight[pool.submit(function, task)] = task
                for future in done:
                    yield future.result()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    return None


def _worker_context(function):
    """How pool workers start: forked from a clean server process that has already
    imported ``function``'s module (about 10 ms a worker instead of a 0.3-0.9 s import).

    The server is started fresh (not forked from this process), so workers inherit no
    threads or locks of the caller: forking the caller itself hangs OpenCV once it has
    started its thread pool. Where there is no forkserver (Windows), workers spawn.
    """
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([function.__module__])
    return context


def keep_freed_memory() -> None:
    """Let glibc reuse freed image buffers instead of unmapping them after every output.

    By default a buffer of an image's size is mmap'ed and returned to the OS when
    freed, so every output faults its pages back in (about 130 faults an output).
    Raising the mmap and trim thresholds keeps them in the heap: memory stays at the
    worker's peak, which is reached on the first source anyway. (It also makes the
    spare-channel warp in ``geometry.warp`` pay off: its extra buffers cost page faults
    otherwise.) Idempotent.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's largest allowed value
    libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)


def _init_worker(run: int) -> None:
    """Pool workers: one OpenCV thread each (the pool already uses every core); Ctrl-C is
    left to the parent, which stops the pool and keeps finished files; and a worker ends
    when the run does, however the run ended (even SIGKILL)."""
    import cv2

    _die_with_parent(run)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    keep_freed_memory()


def _die_with_parent(run: int) -> None:
    """End this worker when the run (process ``run``) ends, however it ends (even SIGKILL).

    Workers are children of a fork server, which lives as long as any worker does: so
    each worker watches the run itself, from a thread blocked on a pidfd of the run
    (polling once a second where there is none). ``PR_SET_PDEATHSIG`` also ends it at
    once when its direct parent dies (the run, where workers are spawned)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0))
    threading.Thread(target=_exit_when_ended, args=(run,), daemon=True,
                     name="augcli-watch-run").start()


def _exit_when_ended(run: int) -> None:
    try:
        handle = os.pidfd_open(run)
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+), or the run has ended
        handle = None
    if handle is not None:
        select.select([handle], [], [])
    else:
        while _running(run):
            time.sleep(1)
    os._exit(1)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process of the same pid
        return True
    return True


def progress_bar(total: int, enabled: bool):
    """A tqdm bar on stderr, shown only when enabled and stderr is a terminal."""
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True,
                disable=not enabled or not sys.stderr.isatty())


@contextmanager
def elapsed_spinner(label: str, enabled: bool):
    """``label: 00:12`` on stderr, ticking while a long step with no steps of its own (a
    matrix solve) runs; shown only when enabled and stderr is a terminal, as progress_bar."""
    bar = tqdm(desc=label, bar_format="{desc}: {elapsed}", file=sys.stderr,
               disable=not enabled or not sys.stderr.isatty())
    stop = threading.Event()
    ticker = threading.Thread(target=lambda: _tick(bar, stop), daemon=True)
    if not bar.disable:
        ticker.start()
    try:
        yield
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        bar.close()


def _tick(bar, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        bar.refresh()
