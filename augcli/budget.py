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

import io
import os
import re
from pathlib import Path

from .errors import UsageError

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
    figures = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    figures.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    left = _cgroup_left()
    if left is not None:
        figures.append(left)
    return min(figures) if figures else None


def _cgroup_left() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2, or v1's names)."""
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
            return max(0, int(limit) - usage)
    return None


def run_budget() -> Budget | None:
    """The budget of a run starting now (see the module's docstring); None: no budget."""
    setting = os.environ.get(ENVIRONMENT)
    if setting is not None and setting.strip():
        limit = parse_size(setting)
    else:
        available = available_memory()
        limit = None if available is None else int(available * SHARE)
    return None if limit is None else Budget(limit)


def source_cost(pixels: int, outputs) -> int:
    """Bytes a worker is expected to need for a source of ``pixels`` and its outputs."""
    from .ops.combinators import op_names  # here: jobs imports this module, and must stay light

    names = op_names(output.ops for output in outputs)
    factor = max([BYTES_PER_PIXEL] + [HEAVY_OPS[name] for name in names if name in HEAVY_OPS])
    return pixels * factor


class Budget:
    """The run's side: ``limit`` bytes for all the workers of its pools together.

    Each pool gets a fresh shared state (``for_pool``): when a worker is killed the
    pool is rebuilt, and the dead worker's reservation, and any lock it held, go
    with the old state. ``peak`` and ``most_at_once`` say how much was reserved at
    most and how many sources held reservations at once, over all pools.
    """

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._pools: list = []

    def for_pool(self, context) -> SharedBudget:
        shared = SharedBudget(self.limit, context)
        self._pools.append(shared)
        return shared

    @property
    def peak(self) -> int:
        return max((pool.figures()[0] for pool in self._pools), default=0)

    @property
    def most_at_once(self) -> int:
        return max((pool.figures()[1] for pool in self._pools), default=0)


_FREE, _NEXT, _SERVING, _HOLDERS, _PEAK, _MOST = range(6)


class SharedBudget:
    """One pool's budget: a Condition and a few shared integers, handed to each worker
    by the pool's initializer (``install``)."""

    def __init__(self, limit: int, context):
        self.limit = limit
        self._condition = context.Condition(context.Lock())
        self._state = context.Array("q", [limit, 0, 0, 0, 0, 0], lock=False)

    def install(self) -> None:
        """In a pool worker: make ``reserve``/``release`` use this budget."""
        global _POOL_BUDGET
        _POOL_BUDGET = self

    def acquire(self, cost: int) -> int:
        """Wait for ``cost`` bytes (the whole budget at most), first come first served;
        return what was taken."""
        cost = min(max(0, cost), self.limit)
        state = self._state
        with self._condition:
            ticket = state[_NEXT]
            state[_NEXT] += 1
            self._condition.wait_for(lambda: state[_SERVING] == ticket and state[_FREE] >= cost)
            state[_SERVING] += 1
            state[_FREE] -= cost
            state[_HOLDERS] += 1
            state[_PEAK] = max(state[_PEAK], self.limit - state[_FREE])
            state[_MOST] = max(state[_MOST], state[_HOLDERS])
            self._condition.notify_all()
        return cost

    def give_back(self, cost: int) -> None:
        with self._condition:
            self._state[_FREE] += cost
            self._state[_HOLDERS] -= 1
            self._condition.notify_all()

    def figures(self) -> tuple[int, int, int]:
        """(peak bytes reserved, most sources at once, sources holding now)."""
        with self._condition:
            return self._state[_PEAK], self._state[_MOST], self._state[_HOLDERS]


_POOL_BUDGET: SharedBudget | None = None  # set in pool workers by SharedBudget.install
_HELD: list = []  # this process's reservation, while it has one


def reserve(data: bytes, outputs) -> tuple[int, int] | None:
    """Before decoding a source: wait for its share of the budget (a no-op outside a pool
    with a budget). Returns the (width, height) its header gives, or None when unreadable
    (decoding then says why)."""
    from . import imagefiles
    from .errors import ImageReadError

    try:
        size = imagefiles.image_size(io.BytesIO(data))
    except ImageReadError:
        return None
    if _POOL_BUDGET is not None and not _HELD:
        _HELD.append(_POOL_BUDGET.acquire(source_cost(size[0] * size[1], outputs)))
    return size


def release() -> None:
    """After a source: give its reservation back (a no-op when it holds none)."""
    if _POOL_BUDGET is not None and _HELD:
        _POOL_BUDGET.give_back(_HELD.pop())


def out_of_memory(size: tuple[int, int] | None, what: str = "") -> str:
    """The reason a source failed with a MemoryError."""
    image = f"a {size[0]} x {size[1]} image" if size else "this image"
    return (f"not enough memory for {image}{what} (run it with fewer --workers, a lower "
            f"{ENVIRONMENT}, or on a machine with more memory)")
