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
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
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

    One worker runs in-process (easy to debug and profile); more use a process
    pool. ``function`` must be a module-level function and tasks picklable.
    At most a few tasks per worker are in flight, so memory does not grow with
    the number of tasks, and a finished result is dropped once yielded.

    A worker that dies (the OOM killer, a crash in native code) breaks the pool.
    With ``crashed``, the pool is then rebuilt, the tasks that were in flight
    are rerun one at a time to find the one that kills its worker, and for that
    task ``crashed(task, reason)`` is yielded instead of a result; the rest go
    on. Without it, the error is raised.
    """
    if workers == 1:
        yield from map(function, tasks)
        return
    pending, suspects = iter(tasks), []
    while True:
        suspects = yield from _run_pool(function, pending, workers, suspects, crashed)
        if suspects is None:
            return


def _run_pool(function, pending, workers: int, suspects: list, crashed):
    """Run ``suspects`` one by one, then the pending tasks, on one pool; return None when
    all are done, or the tasks still to retry when a worker died and broke the pool."""
    # spawn: workers start clean (no inherited threads or locks) on every platform.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
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


def _init_worker(parent: int) -> None:
    """Pool workers: one OpenCV thread each (the pool already uses every core); Ctrl-C is
    left to the parent, which stops the pool and keeps finished files; and a worker ends
    when its parent does, however the parent ended (even SIGKILL)."""
    import cv2

    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


def _die_with(parent: int) -> None:
    """End this process when ``parent`` ends: PR_SET_PDEATHSIG on Linux, a watching thread
    elsewhere."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0))
    else:  # pragma: no cover - not Linux
        import threading
        import time

        def watch():
            while os.getppid() == parent:
                time.sleep(1)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent ended before the line above took effect
        os._exit(1)


def progress_bar(total: int, enabled: bool):
    """A tqdm bar on stderr, shown only when enabled and stderr is a terminal."""
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True,
                disable=not enabled or not sys.stderr.isatty())
