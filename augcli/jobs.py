"""What every folder command shares: folder checks, the worker pool, progress, counts.

``run``, ``normalize`` and ``ricap`` all read a folder, fan tasks out to worker
processes and report. This module holds those pieces and imports nothing of
the augmentation stack, so each command loads only what it needs.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
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
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"output path {output_dir} exists and is not a folder")
    return input_dir, output_dir


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_TASKS_PER_WORKER = 4  # queued per worker: enough to keep it busy, few enough to bound memory


def map_in_workers(function, tasks, workers: int):
    """Yield ``function(task)`` for each task, in completion order.

    One worker runs in-process (easy to debug and profile); more use a process
    pool. ``function`` must be a module-level function and tasks picklable.
    At most a few tasks per worker are in flight, so memory does not grow with
    the number of tasks, and a finished result is dropped once yielded.
    """
    if workers == 1:
        yield from map(function, tasks)
        return
    pending_tasks = iter(tasks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(function),
                             initializer=_init_worker) as pool:
        in_flight = {pool.submit(function, task)
                     for task in itertools.islice(pending_tasks, workers * _TASKS_PER_WORKER)}
        try:
            while in_flight:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for task in itertools.islice(pending_tasks, len(done)):
                    in_flight.add(pool.submit(function, task))
                for future in done:
                    yield future.result()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


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


def _keep_freed_memory() -> None:
    """Let glibc reuse freed image buffers instead of unmapping them after every output.

    By default a buffer of an image's size is mmap'ed and returned to the OS when
    freed, so every output faults its pages back in (about 130 faults an output).
    Raising the mmap and trim thresholds keeps them in the heap: memory stays at the
    worker's peak, which is reached on the first source anyway.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's largest allowed value
    libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)


def _init_worker() -> None:
    """Pool workers: one OpenCV thread each (the pool already uses every core), and
    Ctrl-C is left to the parent, which stops the pool and keeps finished files."""
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    _keep_freed_memory()


def progress_bar(total: int, enabled: bool):
    """A tqdm bar on stderr, shown only when enabled and stderr is a terminal."""
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True,
                disable=not enabled or not sys.stderr.isatty())
