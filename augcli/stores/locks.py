"""What both kinds of lock share: the locks this process holds, and how a lock's holder is
described to the user."""

from __future__ import annotations

import time

_HELD: set = set()  # tokens of the locks this process holds now (a folder's or a prefix's)


def hold(token: str) -> None:
    _HELD.add(token)


def release(token: str) -> None:
    _HELD.discard(token)


def holds(token) -> bool:
    """Whether this process holds the lock ``token`` names (a lock it took and still has)."""
    return token in _HELD


def who(pid, host=None, started=None, nobody: str = "another process") -> str:
    """``pid 41 on node-3 since 2024-05-01 10:00:00``, as much of it as is known."""
    if pid is None:
        return nobody
    text = f"pid {pid}"
    if host is not None:
        text += f" on {host}"
    if isinstance(started, (int, float)):
        text += time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started))
    return text


def refusal(holder: str, where, kind: str, lock_name) -> str:
    """The message of a run kept out by a live lock."""
    return (f"another augcli run ({holder}) is writing into {where}; wait for it to end or "
            f"choose another output {kind} (if no run is going on, delete {lock_name})")


ENDED = "which is no longer running"  # known only for a pid on this host


def stale_by_age(seconds: float) -> str:
    """Why a lock not rewritten for ``seconds`` is taken over: its holder may run on
    another host, where augcli cannot see whether it still runs."""
    return f"stale: not rewritten for {seconds / 60:.0f} minutes"


def took_over(lock_name, holder: str, why: str = ENDED) -> str:
    return f"took over the lock {lock_name} left by {holder}, {why}"
