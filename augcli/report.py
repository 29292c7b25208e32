"""What every command over many files shares in the parent: counts, exit code, progress.

``JobReport`` owns the counting and the exit code (as black's ``Report``); the
progress bar and the spinner draw on stderr only when it is a terminal.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EXIT_OK, EXIT_SOME_FAILED


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

    written_noun = "outputs"  # what a summary says was written ("files" for normalize)

    def summary(self) -> str:
        return (f"{self.images_read} images read, {self.written} {self.written_noun} written, "
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



def progress_bar(total: int, enabled: bool, unit: str = "img"):
    """A tqdm bar on stderr, shown only when enabled and stderr is a terminal; ``unit`` is
    what it counts (``output``: a run's rate is outputs a second, not images read).

    tqdm is imported here, not with the module: a command's workers never draw a bar."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=not enabled or not sys.stderr.isatty())


@contextmanager
def elapsed_spinner(label: str, enabled: bool):
    """``label: 00:12`` on stderr, ticking while a long step with no steps of its own (a
    matrix solve) runs; shown only when enabled and stderr is a terminal, as progress_bar."""
    from tqdm import tqdm

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
