"""The executors: a dying worker fails only its task, workers never outlive the parent, and
the executor is chosen once from (workers, cluster)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from augcli.executors import WORKER_DIED, InProcess, Pool, open_executor

from .conftest import photo_like, save, write_recipe

REPO = Path(__file__).resolve().parent.parent


def square_or_die(task):
    """Module-level (spawned workers import it): task 13 kills its own worker process."""
    if task == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return task * task


@pytest.mark.slow
def test_a_dead_worker_fails_its_task_and_the_run_goes_on():
    died = []

    def crashed(task, reason):
        died.append((task, reason))

    results = [r for r in Pool(2).map(square_or_die, range(40), crashed=crashed)
               if r is not None]
    assert sorted(results) == [n * n for n in range(40) if n != 13]
    assert died == [(13, WORKER_DIED)]


def test_without_a_crash_handler_a_dead_worker_is_an_error():
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        list(Pool(2).map(square_or_die, range(20)))


def test_the_pool_takes_tasks_only_as_its_window_frees(tmp_path):
    """Tasks come from a generator; while the first results are taken, the pool has asked
    it for no more than its window (4 per worker) and a task per result."""
    taken = []

    def tasks():
        for n in range(10_000):
            taken.append(n)
            yield n

    results = Pool(2).map(square_or_die, tasks(), crashed=lambda task, reason: None)
    first = [next(results) for _ in range(5)]
    assert len(taken) <= 2 * 4 + 5
    results.close()  # leaving early cancels what has not started
    assert set(first) <= {n * n for n in taken}


@pytest.mark.slow  # real subprocesses: over 2 s each
def test_each_task_that_kills_its_worker_fails_alone_with_many_in_flight():
    """Tasks in flight when a worker dies are retried one at a time: only the killers
    fail, every other task gives its result once."""
    died = []
    tasks = [*range(30), 13, *range(30, 60), 13]  # 13 three times
    results = list(Pool(3).map(square_or_die, tasks,
                                 crashed=lambda task, reason: died.append(task)))
    assert sorted(r for r in results if r is not None) == \
        sorted(n * n for n in tasks if n != 13)
    assert died == [13, 13, 13]


def whose(task):
    """Module-level: the pid of the process that ran the task."""
    return os.getpid()


def test_the_executor_is_chosen_once_from_workers_and_says_what_it_supports():
    with open_executor(1, memory=2**30) as executor:
        assert isinstance(executor, InProcess)
        assert executor.budget is None and executor.spare_cores  # alone: nothing to share
        assert set(executor.map(whose, range(3))) == {os.getpid()}
    with open_executor(2, memory=2**30) as executor:
        assert isinstance(executor, Pool) and executor.spare_cores
        assert executor.budget is not None and executor.budget.limit == 2**30
        state = Path(executor.budget.path)
        assert state.exists()
        pids = set(executor.map(whose, range(8)))
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert not state.exists(), "the budget's state file outlived its executor"
    with open_executor(2) as executor:
        assert executor.budget is None


def test_a_pool_given_one_task_runs_it_in_process():
    assert list(Pool(4).map(whose, [0], count=1)) == [os.getpid()]


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
    code = ("from augcli import executors\n"
            "executors.start_worker_server('augcli.runner')\n"
            "import augcli.runner\n"
            "print(executors._worker_context('augcli.runner').get_start_method())\n")
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


# --- --cluster: what it takes, and one line for what it does not ------------------------------

def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """augcli itself, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "augcli", *args], capture_output=True,
                          text=True, timeout=180, env=dict(os.environ, **(env or {})))


def _two_sources(tmp_path) -> Path:
    for index in range(2):
        save(tmp_path / "in" / f"p{index}.png", photo_like(24, 32, seed=index))
    return write_recipe(tmp_path, """\
        input: in
        seed: 5
        variants:
          turn: {copies: 2, ops: [{rotate: {degrees: [-20, 20]}}]}
        """)


@pytest.mark.parametrize("cluster, says", [
    ("http://127.0.0.1:5555", "--cluster http://127.0.0.1:5555: a Dask scheduler address "
                              "starts with tcp:// or tls://, not http://; is that the dashboard?"),
    ("loacl", "--cluster loacl: expected 'local', a scheduler address (tcp://host:8786 or "
              "host:8786) or a scheduler file (did you mean 'local'?)"),
    ("LOCAL ", "(did you mean 'local'?)"),
    ("no-such-scheduler-file.json", "--cluster no-such-scheduler-file.json: expected 'local'"),
    ("tcp://127.0.0.1:notaport", "--cluster tcp://127.0.0.1:notaport: not a Dask scheduler "
                                 "address"),
    ("tcp://augcli:hunter2@127.0.0.1:8786", "--cluster tcp://***@127.0.0.1:8786: a scheduler "
                                            "address carries no user or password"),
])
def test_a_cluster_it_cannot_use_is_one_line_and_exit_2(tmp_path, cluster, says):
    pytest.importorskip("distributed")
    recipe = _two_sources(tmp_path)
    done = _cli("run", str(recipe), "-o", str(tmp_path / "out"), "--cluster", cluster, "-q")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert done.stderr.startswith("Error: ") and says in done.stderr
    assert "hunter2" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow  # real subprocesses: over 2 s each
def test_a_scheduler_address_without_a_scheme_is_taken_as_dask_takes_it(tmp_path):
    """``--cluster 127.0.0.1:PORT`` reaches a real ``dask scheduler`` as tcp:// does, and
    its worker makes the bytes one local worker makes."""
    pytest.importorskip("distributed")
    from .servers import dask_process, free_port, stop_process, wait_for_port

    recipe = _two_sources(tmp_path)
    done = _cli("run", str(recipe), "-o", str(tmp_path / "here"), "-w", "1", "-q")
    assert done.returncode == 0, done.stderr
    port = free_port()
    scheduler = dask_process("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                             "--no-dashboard")
    worker = None
    try:
        wait_for_port(port, scheduler)
        worker = dask_process("dask_worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                              "--no-dashboard")
        done = _cli("run", str(recipe), "-o", str(tmp_path / "there"), "-q",
                    "--cluster", f"127.0.0.1:{port}")
    finally:
        for process in (worker, scheduler):
            if process is not None:
                stop_process(process)
    assert done.returncode == 0, done.stderr
    made = sorted(path.name for path in (tmp_path / "here").glob("*.png"))
    assert len(made) == 4
    for name in made:
        assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()
