"""A memory budget shared by a run's pool workers: the bytes of the sources in flight.

A 100 MP source takes a worker 1.5 to 7 GB (decoded pixels, each output's
copies, float buffers of the heavier ops), so a few large sources at once can
exhaust the machine and have workers killed. Before a pool worker decodes a
source it reserves the source's cost (pixels from the header, cheap to read,
times the bytes per pixel its ops were measured to take, see
``bench/bench_pixel_memory.py``) and it waits while the reservations of the others
leave too little; the reservation is released when the source is done. A source
that costs more than the whole budget waits until nothing else is in flight and
runs alone instead of failing. Waiting is first come, first served, so a large
source is not overtaken forever by small ones.

The budget is ``AUGCLI_MEMORY`` (``8G``, ``512M``, bytes; ``off`` for none) or
else three quarters of the memory available when the run starts: the lower of
``MemAvailable`` and what the cgroup (a container's memory limit) leaves.

Only the local process pool uses it: one worker runs in-process, alone anyway,
and Dask workers have their own memory management (they spill, pause and restart
a worker near its memory limit; a source that keeps killing workers fails).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import tempfile
import time
from pathlib import Path

from .errors import ImageReadError, UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: workers share no budget (see run_budget)
    fcntl = None  # type: ignore[assignment]

ENVIRONMENT = "AUGCLI_MEMORY"
SHARE = 0.75  # of the memory available at the start of a run, by default

# Peak RSS growth of a worker per source pixel (bench/bench_pixel_memory.py, 10-20 MP JPEG
# sources, rounded up): 15-18 for the standard recipe (flips, one warp, dropout), 19 with
# perspective, at most 19 for the other native ops but those below.
BYTES_PER_PIXEL = 24
# Ops measured to need more (float copies of the image); a source pays for the heaviest
# op any of its outputs may run. imgaug's augmenters are not measured one by one.
HEAVY_OPS = {"keras": 80,  # 72.5 measured
             "elastic": 48, "imgaug": 48,  # 42.5, 37.5 (Affine + AdditiveGaussianNoise)
             "color_jitter": 48, "hue": 48, "saturation": 48, "grayscale": 48,  # 46.5
             "gaussian_noise": 40,  # 34.5
             "contrast": 32}  # 26.5

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int | None:
    """``8G`` -> bytes (K, M, G, T are powers of 1024); ``off`` -> None."""
    value = text.strip()
    if value.lower() in ("off", "none", "no"):
        return None
    match = _SIZE.fullmatch(value)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{ENVIRONMENT}={text!r}: expected a size such as 8G, 512M or a "
                         "number of bytes, or 'off' for no memory budget")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def available_memory() -> int | None:
    """Bytes this process may still use: the lower of the kernel's ``MemAvailable`` and
    what its cgroup's limit leaves (None when neither can be read)."""
    cgroup = _cgroup_memory()
    figures = [_meminfo("MemAvailable"), None if cgroup is None else max(0, cgroup[0] - cgroup[1])]
    known = [figure for figure in figures if figure is not None]
    return min(known) if known else None


def machine_memory() -> int | None:
    """Bytes of memory this process could ever have: the lower of the kernel's
    ``MemTotal`` and its cgroup's limit (None when neither can be read)."""
    cgroup = _cgroup_memory()
    known = [figure for figure in (_meminfo("MemTotal"), None if cgroup is None else cgroup[0])
             if figure is not None]
    return min(known) if known else None


def _meminfo(field: str) -> int | None:
    """A ``/proc/meminfo`` figure in bytes (None where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_memory() -> tuple[int, int] | None:
    """(memory.max, memory.current) of this process's cgroup (v2, or v1's names); None
    without a limit."""
    root = Path("/sys/fs/cgroup")
    folders = [root, root / "memory"]
    try:
        for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers in ("", "memory"):
                base = root if controllers == "" else root / "memory"
                folders.insert(0, base / path.lstrip("/"))
    except (OSError, ValueError):
        pass
    for folder in folders:
        for limit_name, usage_name in (("memory.max", "memory.current"),
                                       ("memory.limit_in_bytes", "memory.usage_in_bytes")):
            try:
                limit = (folder / limit_name).read_text(encoding="ascii").strip()
                usage = int((folder / usage_name).read_text(encoding="ascii"))
            except (OSError, ValueError):
                continue
            if limit == "max" or int(limit) >= 2**60:  # no limit (v1 writes a huge number)
                return None
            return int(limit), usage
    return None


def run_budget() -> int | None:
    """The budget of a run starting now, in bytes (see the module's docstring); None: no
    budget, also where workers cannot share one (no ``flock``: Windows)."""
    setting = os.environ.get(ENVIRONMENT)
    if setting is not None and setting.strip():
        limit = parse_size(setting)
        machine = machine_memory()
        if limit is not None and machine is not None:
            limit = min(limit, machine)  # more than the machine has: the machine's
    else:
        available = available_memory()
        limit = None if available is None else int(available * SHARE)
    return None if fcntl is None else limit


# A donor image a task holds decoded (mosaic, cutmix, mixup): up to 4 bytes a pixel (8-bit
# RGBA), and as much again for the copy brought to the source's layout or a tile's scale.
# Its header is not read before the reservation: it is reckoned at the source's size.
DONOR_BYTES_PER_PIXEL = 8


def source_cost(pixels: int, outputs) -> int:
    """Bytes a worker is expected to need for a source of ``pixels`` and its outputs, with
    the donors its outputs take that it holds at once."""
    from .ops.combinators import op_names  # here, for start-up: the executors import this module

    names = op_names(output.ops for output in outputs)
    factor = max([BYTES_PER_PIXEL] + [HEAVY_OPS[name] for name in names if name in HEAVY_OPS])
    return pixels * (factor + DONOR_BYTES_PER_PIXEL * donors_held_at_once(outputs))


def donors_held_at_once(outputs) -> int:
    """The most donor images a task holds at once: a worker decodes each for the first of
    its outputs that takes it and lets it go after the last (``worker._Donors``)."""
    first: dict = {}
    last: dict = {}
    for index, output in enumerate(outputs):
        for name in output.donors:
            first.setdefault(name, index)
            last[name] = index
    return max((sum(first[name] <= index <= last[name] for name in first)
                for index in range(len(outputs))), default=0)


_STATE = struct.Struct("6q")  # free, next ticket, ticket served, holders, peak, most at once
_FREE, _NEXT, _SERVING, _HOLDERS, _PEAK, _MOST = range(6)
_MOST_BYTES = 2**62  # a budget the state's 64-bit integers hold with room to add to it
_POLL = 0.005  # seconds between looks while waiting: sources take far longer


class Budget:
    """``limit`` bytes for the sources a local pool's workers hold at once.

    Plain, picklable data: the limit and the path of a small state file (six
    integers, read and written under ``flock``). The pool hands it to the worker
    function as an argument with each task; nothing is installed in the workers.
    The kernel drops the lock of a worker killed while holding it, and ``reset``
    (the pool calls it when it starts a pool again after a worker died) gives back
    the reservation the dead worker held. ``peak`` and ``most_at_once`` say how much
    was reserved at most and how many sources held reservations at once.
    """

    def __init__(self, limit: int):
        self.limit = min(max(1, int(limit)), _MOST_BYTES)
        handle, self.path = tempfile.mkstemp(prefix="augcli-budget-")
        with os.fdopen(handle, "wb") as file:
            file.write(_STATE.pack(self.limit, 0, 0, 0, 0, 0))

    def close(self) -> None:
        """Remove the state file (the run's side, once its pools are done)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    @contextlib.contextmanager
    def _state(self):
        """The state as a list, under the lock; written back unless the body raised."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = list(_STATE.unpack(os.pread(fd, _STATE.size, 0)))
            yield state
            os.pwrite(fd, _STATE.pack(*state), 0)
        finally:
            os.close(fd)  # and with it the lock

    def acquire(self, cost: int) -> int:
        """Wait for ``cost`` bytes (the whole budget at most), first come first served;
        return what was taken."""
        cost = min(max(0, cost), self.limit)
        with self._state() as state:
            ticket = state[_NEXT]
            state[_NEXT] += 1
        while True:
            with self._state() as state:
                if state[_SERVING] == ticket and state[_FREE] >= cost:
                    state[_SERVING] += 1
                    state[_FREE] -= cost
                    state[_HOLDERS] += 1
                    state[_PEAK] = max(state[_PEAK], self.limit - state[_FREE])
                    state[_MOST] = max(state[_MOST], state[_HOLDERS])
                    return cost
            time.sleep(_POLL)

    def give_back(self, cost: int) -> None:
        with self._state() as state:
            state[_FREE] += cost
            state[_HOLDERS] -= 1

    def reset(self) -> None:
        """Nothing held, nobody waiting: for a new pool, once the old one's workers are gone."""
        with self._state() as state:
            state[_FREE], state[_HOLDERS], state[_SERVING] = self.limit, 0, state[_NEXT]

    def figures(self) -> tuple[int, int, int]:
        """(peak bytes reserved, most sources at once, sources holding now)."""
        with self._state() as state:
            return state[_PEAK], state[_MOST], state[_HOLDERS]

    @property
    def peak(self) -> int:
        return self.figures()[0]

    @property
    def most_at_once(self) -> int:
        return self.figures()[1]


class Reservation:
    """One source's share of ``budget`` (nothing to share without one): ``reserve``
    before decoding, ``release`` when the source is done."""

    def __init__(self, budget: Budget | None):
        self.budget = budget
        self.held: int | None = None

    def reserve(self, data: bytes, outputs) -> tuple[int, int] | None:
        """Wait for the source's share of the budget. Returns the (width, height) its
        header gives, or None when unreadable (decoding then says why)."""
        from . import imagefiles  # here, for start-up: the executors import this module

        try:
            size = imagefiles.image_size(io.BytesIO(data))
        except ImageReadError:
            return None
        if self.budget is not None and self.held is None:
            self.held = self.budget.acquire(source_cost(size[0] * size[1], outputs))
        return size

    def release(self) -> None:
        """Give the reservation back (nothing when none is held)."""
        if self.budget is not None and self.held is not None:
            self.budget.give_back(self.held)
            self.held = None


def out_of_memory(size: tuple[int, int] | None, what: str = "") -> str:
    """The reason a source failed with a MemoryError."""
    image = f"a {size[0]} x {size[1]} image" if size else "this image"
    return (f"not enough memory for {image}{what} (run it with fewer --workers, a lower "
            f"{ENVIRONMENT}, or on a machine with more memory)")
