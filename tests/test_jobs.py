"""The worker pool: a dying worker fails only its task, and workers never outlive the parent."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from augcli.errors import UsageError
from augcli.jobs import WORKER_DIED, map_in_workers
from augcli.stores import check_folders

from .conftest import photo_like, save, write_recipe

REPO = Path(__file__).resolve().parent.parent


def square_or_die(task):
    """Module-level (spawned workers import it): task 13 kills its own worker process."""
    if task == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return task * task


def test_a_dead_worker_fails_its_task_and_the_run_goes_on():
    died = []

    def crashed(task, reason):
        died.append((task, reason))

    results = [r for r in map_in_workers(square_or_die, range(40), 2, crashed=crashed)
               if r is not None]
    assert sorted(results) == [n * n for n in range(40) if n != 13]
    assert died == [(13, WORKER_DIED)]


def test_without_a_crash_handler_a_dead_worker_is_an_error():
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        list(map_in_workers(square_or_die, range(20), 2))


def test_the_pool_takes_tasks_only_as_its_window_frees(tmp_path):
    """Tasks come from a generator; while the first results are taken, the pool has asked
    it for no more than its window (4 per worker) and a task per result."""
    taken = []

    def tasks():
        for n in range(10_000):
            taken.append(n)
            yield n

    results = map_in_workers(square_or_die, tasks(), 2, crashed=lambda task, reason: None)
    first = [next(results) for _ in range(5)]
    assert len(taken) <= 2 * 4 + 5
    results.close()  # leaving early cancels what has not started
    assert set(first) <= {n * n for n in taken}


def test_each_task_that_kills_its_worker_fails_alone_with_many_in_flight():
    """Tasks in flight when a worker dies are retried one at a time: only the killers
    fail, every other task gives its result once."""
    died = []
    tasks = [*range(30), 13, *range(30, 60), 13]  # 13 three times
    results = list(map_in_workers(square_or_die, tasks, 3,
                                  crashed=lambda task, reason: died.append(task)))
    assert sorted(r for r in results if r is not None) == \
        sorted(n * n for n in tasks if n != 13)
    assert died == [13, 13, 13]


def test_input_inside_output_is_refused(tmp_path):
    (tmp_path / "out" / "in").mkdir(parents=True)
    with pytest.raises(UsageError, match="input folder .* is inside the output folder"):
        check_folders(tmp_path / "out" / "in", tmp_path / "out")


def _descendants(pid: int) -> set:
    """Pids of every process under ``pid`` (workers are children of a fork server, itself a
    child of the run), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_their_parent(tmp_path, how):
    for i in range(12):
        save(tmp_path / "in" / f"img{i:02d}.png", photo_like(480, 640, seed=i))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n  a:\n    copies: 30\n"
                                    "    ops: [{affine: {rotate: 20}}, {elastic: {alpha: 30}}]\n")
    parent = subprocess.Popen([sys.executable, "-m", "augcli.cli", "run", str(recipe), "-w", "2",
                               "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("*_a_*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _descendants(parent.pid)
    assert len(workers) >= 3 and parent.poll() is None, "the run ended before the test"
    parent.send_signal(how)
    # stdout is closed once every process holding it is gone: no hang for a `| tee`.
    _, err = parent.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers)), "a worker (or the fork server) outlived the run"
    if how == signal.SIGTERM:
        assert parent.returncode == 143
        assert b"Interrupted. Finished outputs are kept" in err and b"Traceback" not in err
    assert not (tmp_path / "out" / ".augcli.lock").exists() or how == signal.SIGKILL


def test_a_worker_server_started_before_the_imports_still_serves_the_pool():
    """`run` starts the worker server before importing its own modules. Those imports
    change os.environ (OpenCV's adds to it); the pool must still fork its workers from
    that server, not fall back to spawning them (which re-imports everything per worker)."""
    code = ("from augcli import jobs\n"
            "jobs.start_worker_server('augcli.runner')\n"
            "import augcli.runner\n"
            "print(jobs._worker_context('augcli.runner').get_start_method())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "forkserver"


@pytest.mark.parametrize("module", ["augcli.runner", "augcli.normalize", "augcli.ricap"])
def test_the_module_workers_are_forked_with_leaves_out_the_progress_bar(module):
    """The worker server imports the workers' module before forking each: tqdm, which
    only the parent draws with, is not part of that import."""
    code = f"import sys, {module}; print('tqdm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
