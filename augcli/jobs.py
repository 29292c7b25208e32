"""What every folder command shares: folder checks, the worker pool, progress, counts.

``run``, ``normalize`` and ``ricap`` all read a folder, fan tasks out to worker
processes and report. This module holds those pieces and imports nothing of
the augmentation stack, so each command loads only what it needs.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
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
    output_dir: str | None = None  # where the outputs went (None: nothing to write, e.g. a fit)
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
        return {"output": self.output_dir, "images_read": self.images_read,
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
    # spawn: workers start clean (no inherited threads or locks) on every platform.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
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


def _init_worker() -> None:
    """Pool workers: one OpenCV thread each (the pool already uses every core), and
    Ctrl-C is left to the parent, which stops the pool and keeps finished files."""
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


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
