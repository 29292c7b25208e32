"""Whether a process runs: the one check the locks (is a lock's holder alive?) and the
worker processes (has the run that started them ended?) share."""

from __future__ import annotations

import os


def running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (this process always does; a pid of
    another user's process, or one too large to be a pid, is taken as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
