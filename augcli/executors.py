"""Where a command's tasks run: in this process, on a local process pool or on a Dask
cluster, decided once at start-up by ``open_executor``.

Every executor has the same ``map`` (results in completion order, a bounded window
of tasks in flight, so memory does not grow with their number) and says what it
supports, instead of its callers asking which one they have:

- ``budget``: the memory budget its workers share (``augcli.budget``), handed to
  the worker function as an argument; None where there is none to share.
- ``spare_cores``: whether the cores of ``workers`` that the tasks leave idle are
  this machine's, for a command to use (``run`` publishes outputs from them).

A Dask cluster supports neither, by decision: its workers manage their own memory
(they spill, pause and restart a worker near its limit; a source that keeps
killing workers fails), and the scheduler fills every thread of every worker, so
no core is known to be spare. One worker runs in-process: alone, it needs no budget.

This module imports nothing of the augmentation stack, so each command loads only
what it needs.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import difflib
import functools
import itertools
import os
import re
import select
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial
from multiprocessing import forkserver, get_all_start_methods, get_context
from pathlib import Path

from . import __version__, locations
from .budget import Budget
from .errors import ClusterLost, UsageError, install_hint
from .processes import running

LOCAL_CLUSTER = "local"
DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")  # what a Client connects through
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}")
SOURCES_PER_TASK = 4  # tasks of a cluster carry a few sources each: less scheduler overhead
_TASKS_PER_WORKER = 4  # queued per worker: enough to keep it busy, few enough to bound memory

WORKER_DIED = "its worker process died (killed, perhaps for lack of memory)"


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1



class Executor:
    """Runs a module-level function over picklable tasks; see the module's docstring."""

    budget: Budget | None = None
    spare_cores = False
    signature: dict | None = None  # what the workers were checked to make bytes with

    def __init__(self, workers: int):
        self.workers = workers

    @property
    def slots(self) -> int:
        """Tasks it runs at once."""
        return self.workers

    def map(self, function, tasks, crashed=None, count: int | None = None, stop=None):
        """Yield ``function(task)`` for each task, in completion order.

        ``count``, when known, is how many tasks there are (no more workers than
        that are started). A worker that dies (the OOM killer, a crash in native
        code) fails only the task that killed it: ``crashed(task, reason)`` is
        yielded for it instead of a result; without ``crashed`` the error is raised.
        Once ``stop()`` is true, no task is taken or started: the results of those
        running are yielded, and the map ends.
        """
        raise NotImplementedError


class InProcess(Executor):
    """The tasks run here, one after another: easy to debug and profile. This process then
    keeps freed image buffers as a pool worker does (``keep_freed_memory``); a task that
    kills it ends the command."""

    spare_cores = True

    def __init__(self) -> None:
        super().__init__(1)

    def map(self, function, tasks, crashed=None, count: int | None = None, stop=None):
        keep_freed_memory()
        return map(function, tasks if stop is None else _while(lambda: not stop(), tasks))


class Pool(Executor):
    """A local process pool of ``workers``, sharing ``budget``. Tasks that fit one worker
    run in-process, with no process to start.

    A dead worker breaks the pool: it is then rebuilt (the budget ``reset``), the tasks
    that were in flight are rerun one at a time to find the one that kills its worker,
    and the rest go on."""

    spare_cores = True

    def __init__(self, workers: int, budget: Budget | None = None):
        super().__init__(workers)
        self.budget = budget

    def map(self, function, tasks, crashed=None, count: int | None = None, stop=None):
        size = self.workers if count is None else max(1, min(self.workers, count))
        if size == 1:
            yield from InProcess().map(function, tasks, stop=stop)
            return
        pending = iter(tasks)
        suspects: list | None = []
        while suspects is not None:
            suspects = yield from self._run_pool(function, pending, size, suspects, crashed,
                                                 stop)

    def _run_pool(self, function, pending, size: int, suspects: list, crashed, stop=None):
        """Run ``suspects`` one by one, then the pending tasks through the bounded window,
        on one pool; return None when all are done, or the tasks still to retry when a
        worker died and broke the pool (once it is broken, no more tasks are taken from
        ``pending``, and the window is drained: results that came in are yielded, the
        rest retried)."""
        if self.budget is not None:
            self.budget.reset()  # what a worker of a broken pool held goes with it
        context = _worker_context(getattr(function, "func", function).__module__)
        with ProcessPoolExecutor(max_workers=size, mp_context=context,
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
            broken: list = []
            tasks = _while(lambda: not broken, pending)
            window = _in_window(partial(_submit, pool, function), tasks,
                                size * _TASKS_PER_WORKER, stop)
            with contextlib.closing(window):  # leaving early cancels what has not started
                for task, future in window:
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        if crashed is None:
                            raise
                        broken.append(task)
                        continue
                    yield result
        return broken or None


class Dask(Executor):
    """A Dask client, checked to be a cluster whose workers all make the same bytes as
    this machine: the same versions and CPU features (``signature``), and, given a
    ``probe`` (a callable of no arguments returning digests, ``augcli.probe``), the
    same digests of it, computed on each worker when it runs its first task (a worker
    that joins later is checked too). Given a ``sight`` (a callable of no arguments
    returning None, or why the worker does not see the run's input as this machine does,
    ``augcli.probe.Sight``), each worker is checked the same way to see the input.
    Tasks go in batches of ``SOURCES_PER_TASK``."""

    def __init__(self, client, name: str, probe=None, sight=None):
        super().__init__(1)
        self.client = client
        self.name = name
        self.signature = ours = signature()
        self.probe = probe
        self.sight = sight
        self.proof: dict = probe() if probe is not None else {}
        self._check_workers(ours)

    @property
    def slots(self) -> int:
        """The threads of all its workers."""
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        return max(1, sum(worker.get("nthreads", 1) for worker in workers.values()))

    def _check_workers(self, ours: dict) -> None:
        try:
            self.client.wait_for_workers(1, timeout=30)
        except TimeoutError:
            raise UsageError(f"the Dask scheduler at {self.name} has no workers; start some "
                             "with: dask worker " + self.name) from None
        for address, theirs in sorted(self.client.run(signature).items()):
            _refuse_mismatch(ours, theirs, f"worker {address}")
        if self.probe is not None:
            for address, proof in sorted(self.client.run(_proof, self.probe).items()):
                _refuse_other_bytes(self.proof, proof, f"worker {address}")
        if self.sight is not None:
            for address, blind in sorted(self.client.run(_blindness, self.sight).items()):
                _refuse_blind(blind, f"worker {address}")

    def map(self, function, tasks, crashed=None, count: int | None = None, stop=None):
        """Dask reruns a task whose worker died; a batch that killed
        ``distributed.scheduler.allowed-failures`` workers is split into single tasks,
        and a task that still kills its worker becomes ``crashed(task, reason)``."""
        distributed = _require_distributed()
        executor = self.client.get_executor(pure=False)
        batches = _RetriesFirst(_batched(tasks, SOURCES_PER_TASK))
        submit = partial(executor.submit, _run_batch, function,
                         (self.signature, self.probe, self.proof, self.sight))
        for batch, future in _in_window(submit, batches, self.slots * _TASKS_PER_WORKER,
                                        stop):
            try:
                results = future.result()
            except CancelledError:
                raise ClusterLost(f"the Dask cluster at {self.name} went away mid-run (its "
                                  "scheduler stopped or cannot be reached); what finished "
                                  "is kept: rerun on a running cluster to make the rest") \
                    from None
            except distributed.KilledWorker as exc:
                if len(batch) > 1:
                    batches.retries.extend((task,) for task in batch)
                    continue
                if crashed is None:
                    raise
                results = [crashed(batch[0], f"every worker that ran it died ({exc})")]
            yield from results


@contextmanager
def open_executor(workers: int, cluster=None, client=None, memory: int | None = None,
                  probe=None, sight=None):
    """The executor a command uses, decided here once.

    ``client``: any ``distributed.Client`` (Kubernetes, gateway, Coiled), used as it is
    and left open. ``cluster``: ``"local"`` (a LocalCluster of ``workers`` processes on
    this machine), a scheduler address (``tcp://host:8786``, ``tls://...``) or a
    scheduler file; opened here and closed afterwards. Neither: ``workers`` processes
    here (one: in-process), sharing a budget of ``memory`` bytes when given.
    ``probe``: what a cluster's workers render to prove their bytes; ``sight``: what they
    read to prove they see the input (see ``Dask``).
    """
    if client is not None:
        yield Dask(client, str(getattr(client, "scheduler", None) and
                               client.scheduler.address), probe, sight)
    elif cluster is not None:
        with _cluster_client(cluster, workers) as client:
            yield Dask(client, cluster if cluster != LOCAL_CLUSTER else "a local cluster",
                       probe, sight)
    elif workers == 1:
        yield InProcess()
    elif memory is None:
        yield Pool(workers)
    else:
        budget = Budget(memory)
        try:
            yield Pool(workers, budget)
        finally:
            budget.close()


CLOSE_SECONDS = 20  # the most a run waits for its Dask client and local cluster to close


@contextmanager
def _cluster_client(cluster: str, workers: int):
    """A client of ``cluster`` (see ``open_executor``), closed afterwards with the local
    cluster it started."""
    distributed = _require_distributed()
    local = None
    try:
        if cluster == LOCAL_CLUSTER:
            import logging

            import dask

            # A task is sent to a worker only when a thread is free there: a source that
            # kills its worker takes no task queued behind it along.
            with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}), \
                    _workers_ignore_ctrl_c():
                local = distributed.LocalCluster(
                    n_workers=workers or default_workers(), threads_per_worker=1,
                    processes=True, host="127.0.0.1", dashboard_address=None,
                    # a cluster we start and stop is ours to watch: its own errors (a
                    # heartbeat lost while it shuts down after Ctrl-C) are not the user's;
                    # what fails a source comes back through its task
                    silence_logs=logging.CRITICAL,
                    # its health routes on a free port: no warning when 8787 is taken
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            client = distributed.Client(local)
        elif (address := scheduler_address(cluster)) is not None:
            try:
                client = distributed.Client(address, timeout="10s")
            except ValueError as exc:  # distributed could not parse the address
                raise UsageError(f"--cluster {cluster}: not a Dask scheduler address ({exc})") \
                    from None
        else:
            client = distributed.Client(scheduler_file=cluster, timeout="10s")
    except (OSError, TimeoutError) as exc:
        if local is not None:
            local.close()
        raise UsageError(f"cannot reach the Dask scheduler at {cluster} ({exc})") from None
    with _quiet_client():
        try:
            yield client
        finally:
            # bounded: a run stopped by Ctrl-C (or a lost scheduler) exits, whatever state
            # its workers are in; a local cluster's processes go with it
            with contextlib.suppress(TimeoutError, OSError):
                client.close(timeout=CLOSE_SECONDS)
            if local is not None:
                with contextlib.suppress(TimeoutError, OSError):
                    local.close(timeout=CLOSE_SECONDS)


@contextmanager
def _quiet_client():
    """No log line from the client when it loses its scheduler: the run says so itself,
    in one line (``ClusterLost``), from the tasks it was waiting for."""
    import logging

    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def scheduler_address(cluster: str) -> str | None:
    """``--cluster``'s scheduler address (``host:port`` made ``tcp://host:port``, as Dask
    does), or None for an existing scheduler file; anything else is one line saying what
    was expected, never repeating credentials."""
    if locations.has_user_info(cluster):
        raise UsageError(f"--cluster {locations.redact(cluster)}: a scheduler address "
                         "carries no user or password (TLS certificates go in Dask's "
                         "configuration)")
    if "://" in cluster:
        scheme = locations.scheme(cluster)
        if scheme not in DASK_SCHEMES:
            hint = "; is that the dashboard? the scheduler listens on tcp://HOST:8786" \
                if scheme in ("http", "https") else ""
            raise UsageError(f"--cluster {cluster}: a Dask scheduler address starts with "
                             f"tcp:// or tls://, not {scheme}://{hint}")
        return cluster
    if _HOST_PORT.fullmatch(cluster):
        return f"tcp://{cluster}"
    if Path(cluster).is_file():
        return None
    close = difflib.get_close_matches(cluster.lower(), [LOCAL_CLUSTER], n=1, cutoff=0.6)
    hint = f" (did you mean '{LOCAL_CLUSTER}'?)" if close else ""
    raise UsageError(f"--cluster {cluster}: expected 'local', a scheduler address "
                     f"(tcp://host:8786 or host:8786) or a scheduler file{hint}")


# --- the bounded window --------------------------------------------------------------

def _submit(pool: ProcessPoolExecutor, function, task) -> Future:
    """``pool.submit``; a pool that broke since the last result gives a future that says
    so, and the task is retried with the others in flight."""
    try:
        return pool.submit(function, task)
    except BrokenProcessPool as exc:
        future: Future = Future()
        future.set_exception(exc)
        return future


def _while(condition, items):
    """Items from the iterator ``items`` while ``condition()`` holds: none is taken from it
    once it does not."""
    while condition():
        try:
            yield next(items)
        except StopIteration:
            return


def _in_window(submit, items, size: int, stop=None):
    """Submit ``items`` keeping at most ``size`` in flight; yield (item, future) as each
    finishes. Items may be added to ``items`` (a retry) while the caller holds a result.
    Leaving early (an error, Ctrl-C) cancels what has not started; so does ``stop()``
    turning true, after which the items that were running are still yielded."""
    in_flight: dict = {}
    withdrawn: set = set()  # futures this loop cancelled on stop(): not yielded
    try:
        while True:
            stopping = stop is not None and stop()
            if stopping:
                for future in in_flight:
                    if future.cancel():
                        withdrawn.add(future)
            else:
                for item in itertools.islice(items, size - len(in_flight)):
                    in_flight[submit(item)] = item
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED, timeout=0.5)
            for future in done:
                item = in_flight.pop(future)
                # one cancelled by something else (a Dask cluster that went away) is yielded:
                # its result() raises, and the caller says so
                if future not in withdrawn:
                    yield item, future
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise



# --- pool workers --------------------------------------------------------------------

def start_worker_server(module: str) -> None:
    """Start the server that pool workers are forked from (see ``_worker_context``) now,
    preloading ``module``, rather than when the first task is submitted.

    Its import of ``module`` (about 0.4 s) then runs beside the caller's own imports
    and planning instead of after them. A command calls this first thing when it will
    likely use a pool; if it ends up running in-process, the server only idles.
    Where workers spawn, there is nothing to start.

    OpenCV is imported first: its import adds to ``os.environ``, and workers are
    forked from the server only while the caller's environment is still the one the
    server started with.
    """
    import cv2  # noqa: F401

    if _worker_context(module).get_start_method() == "forkserver":
        forkserver.ensure_running()


def _worker_context(module: str):
    """How pool workers start: forked from a clean server process that has already
    imported ``module`` (about 10 ms a worker instead of a 0.3-0.9 s import).

    The server is started fresh (not forked from this process), so workers inherit no
    threads or locks of the caller: forking the caller itself hangs OpenCV once it has
    started its thread pool. Where there is no forkserver (Windows), workers spawn.
    """
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    # Its workers have the environment the server started with: when the caller's has
    # changed since (new storage credentials, say), spawn workers that see it.
    environment = dict(os.environ)
    if _FORKSERVER_ENVIRONMENT.setdefault("started", environment) != environment:
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([module])
    return context


_FORKSERVER_ENVIRONMENT: dict = {}


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
        while running(run):
            time.sleep(1)
    os._exit(1)


def signature() -> dict:
    """What decides output bytes besides the recipe: versions and CPU dispatch level.

    Warp kernels differ by OpenCV's CPU dispatch (an SSE4-only OpenCV turns and
    shears to other bytes than an AVX2 one), so the features line is part of it.
    """
    import platform

    import cv2
    import numpy
    import PIL

    return {"augcli": __version__, "numpy": numpy.__version__, "opencv": cv2.__version__,
            "pillow": PIL.__version__, "machine": platform.machine(),
            "cpu": cv2.getCPUFeaturesLine()}



_own_signature = functools.cache(signature)  # a worker's, computed once


def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise UsageError("running on a Dask cluster needs the distributed extra: "
                         f"{install_hint('distributed')}") from None
    return distributed


def _batched(tasks, size: int):
    tasks = iter(tasks)
    while batch := tuple(itertools.islice(tasks, size)):
        yield batch


class _RetriesFirst:
    """An iterator over ``items`` that first gives back what was put in ``retries``, even
    after it once ran dry (a retry can come from the last batch in flight)."""

    def __init__(self, items):
        self.retries: collections.deque = collections.deque()
        self.items = iter(items)

    def __iter__(self):
        return self

    def __next__(self):
        if self.retries:
            return self.retries.popleft()
        return next(self.items)


def _run_batch(function, expected: tuple, tasks) -> list:
    """On a worker: refuse to make bytes that differ from the client's, or to read an input
    it does not see as the client does (``expected``: its signature, probe, the probe's
    digests and sight); run each task."""
    ours, probe, proof, sight = expected
    theirs = _own_signature()
    if theirs != ours:
        import socket

        _refuse_mismatch(ours, theirs, f"a worker on {socket.gethostname()}")
    if probe is not None and (mine := _proof(probe)) != proof:
        import socket

        _refuse_other_bytes(proof, mine, f"a worker on {socket.gethostname()}")
    if sight is not None and (blind := _blindness(sight)) is not None:
        import socket

        _refuse_blind(blind, f"a worker on {socket.gethostname()}")
    _init_cluster_worker()
    return [function(task) for task in tasks]


def _refuse_mismatch(ours: dict, theirs: dict, who: str) -> None:
    differ = [f"{key} {theirs.get(key)!r} (here {ours.get(key)!r})" for key in ours
              if theirs.get(key) != ours.get(key)]
    if differ:
        raise UsageError(f"{who} would make other bytes than this machine: "
                         f"{'; '.join(differ)}. Every worker needs the same augcli, NumPy, "
                         "OpenCV and Pillow versions and the same CPU family (see 'Beyond "
                         "one machine' in the docs (docs/cluster.md))")


_proofs: dict = {}  # a worker's digests of each probe it was given, by the probe's key


def _proof(probe) -> dict:
    """This worker's digests of ``probe``, rendered once per worker process."""
    if probe.key not in _proofs:
        _proofs[probe.key] = probe()
    return _proofs[probe.key]


def _refuse_other_bytes(ours: dict, theirs: dict, who: str) -> None:
    differ = sorted(name for name in ours.keys() | theirs.keys()
                    if ours.get(name) != theirs.get(name))
    if differ:
        shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6
                                         else "")
        raise UsageError(f"{who} would make other bytes than this machine: the probe "
                         f"image through {shown} differs. Its OpenCV is built or set up "
                         "otherwise (IPP, OPENCV_CPU_DISABLE, another build of the same "
                         "version); see 'Beyond one machine' in the docs (docs/cluster.md)")


_sights: set = set()  # the sights this worker passed: read once per worker process


def _blindness(sight) -> str | None:
    """None where this worker sees the input as ``sight`` says; else why not (asked again
    next time: what failed may have been fixed)."""
    if sight in _sights:
        return None
    blind = sight()
    if blind is None:
        _sights.add(sight)
    return blind


def _refuse_blind(blind: str | None, who: str) -> None:
    if blind is not None:
        raise UsageError(f"{who} {blind}")


@functools.cache
def _init_cluster_worker() -> None:
    """One OpenCV thread per task thread (Dask already runs one task per core), once per
    worker process."""
    import cv2

    cv2.setNumThreads(1)
    keep_freed_memory()


@contextmanager
def _workers_ignore_ctrl_c():
    """Processes started meanwhile (a local cluster's workers) ignore Ctrl-C, as pool
    workers do: the run handles it, cancels what is in flight and closes the cluster,
    without a traceback from every worker. (A Ctrl-C while they start is lost.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
