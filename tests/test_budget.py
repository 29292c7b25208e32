"""The memory budget: pool workers hold at most its bytes of sources at once, a source
larger than it runs alone, a killed worker's reservation is not lost, and running out
of memory fails that source only."""

import os
import resource
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from augcli import budget as memory
from augcli.errors import UsageError
from augcli.executors import Pool
from augcli.plan import plan_run
from augcli.recipe import parse_recipe
from augcli.render import source_outputs
from augcli.runner import resolve_recipe
from augcli.worker import process_source

from .conftest import cli_env, invoke, photo_like, run_cli, save, write_recipe


@pytest.mark.parametrize("text, expected", [
    ("8G", 8 * 2**30), ("512M", 512 * 2**20), ("1.5g", 3 * 2**29), ("123456", 123456),
    ("64KiB", 64 * 1024), ("off", None)])
def test_sizes_are_read_with_binary_units(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "8X"])
def test_a_bad_size_is_refused_naming_the_variable(text):
    with pytest.raises(UsageError, match="AUGCLI_MEMORY"):
        memory.parse_size(text)


def test_the_default_is_a_share_of_what_is_available(monkeypatch):
    monkeypatch.delenv("AUGCLI_MEMORY", raising=False)
    with open("/proc/meminfo") as meminfo:
        available = next(int(line.split()[1]) * 1024 for line in meminfo
                         if line.startswith("MemAvailable"))
    limit = memory.run_budget()
    assert 0 < limit <= available * 0.75 * 1.05  # MemAvailable moves a little meanwhile
    monkeypatch.setenv("AUGCLI_MEMORY", "3G")
    assert memory.run_budget() == 3 * 2**30
    monkeypatch.setenv("AUGCLI_MEMORY", "off")
    assert memory.run_budget() is None


def test_a_source_pays_for_the_heaviest_op_any_output_may_run():
    recipe = parse_recipe({"variants": {
        "plain": {"ops": [{"fliplr": {}}]},
        "maybe": {"ops": [{"sometimes": {"p": 0.1, "ops": [
            {"one_of": {"ops": [{"rotate": {}}, {"keras": {"rotation_range": 10}}]}}]}}]}}})
    outputs = source_outputs(recipe, Path("a.jpg"))
    assert memory.source_cost(1000, outputs[:1]) == 1000 * 24
    assert memory.source_cost(1000, outputs) == 1000 * 80


@pytest.fixture
def budgets():
    """Make budgets (``budgets(limit)``) whose state files are removed after the test."""
    made = []
    yield lambda limit: made.append(memory.Budget(limit)) or made[-1]
    for budget in made:
        budget.close()


def _folder_of(tmp_path, count, size=(300, 400)):
    for index in range(count):
        save(tmp_path / "in" / f"p{index}.png", photo_like(*size, seed=index))
    return write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          turn: {copies: 2, ops: [{rotate: {degrees: [-20, 20]}}]}
        """)


def _run(recipe, workers, budget):
    tasks = plan_run(resolve_recipe(recipe)).tasks
    results = list(Pool(workers, budget).map(partial(process_source, memory=budget), tasks))
    assert [failure for result in results for failure in result.failures] == []
    return results


@pytest.mark.slow
def test_sources_costing_over_half_the_budget_never_run_at_once(tmp_path, budgets):
    recipe = _folder_of(tmp_path, 6)
    cost = 300 * 400 * memory.BYTES_PER_PIXEL
    budget = budgets(cost * 3 // 2)
    _run(recipe, 2, budget)
    assert len(list((tmp_path / "out").glob("*.png"))) == 12
    assert budget.most_at_once == 1
    assert budget.peak == cost


@pytest.mark.slow
def test_a_task_pays_for_the_donors_it_holds(tmp_path, budgets):
    # room for two plain sources at once, not for two mosaic tasks with their donors
    for index in range(6):
        save(tmp_path / "in" / f"p{index}.png", photo_like(300, 400, seed=index))
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          tiles: {copies: 2, ops: [{mosaic: {grid: [2, 2]}}]}
        """)
    plain = 300 * 400 * memory.BYTES_PER_PIXEL
    budget = budgets(plain * 5 // 2)
    _run(recipe, 2, budget)
    assert len(list((tmp_path / "out").glob("*.png"))) == 12
    assert budget.most_at_once == 1
    assert budget.peak >= plain * 3 // 2  # three donors at least, beside the source


def test_a_source_larger_than_the_whole_budget_runs_alone_and_completes(tmp_path, budgets):
    recipe = _folder_of(tmp_path, 4)
    budget = budgets(1000)  # bytes: each source costs over 2 MB
    _run(recipe, 2, budget)
    assert len(list((tmp_path / "out").glob("*.png"))) == 8
    assert (budget.most_at_once, budget.peak) == (1, 1000)


def hold_until_two(budget, path):
    """Module-level (pool workers import it): reserve a source, then wait (a few seconds at
    most) until the other worker has held one at the same time."""
    import time

    reservation = memory.Reservation(budget)
    reservation.reserve(Path(path).read_bytes(), ())
    try:
        deadline = time.monotonic() + 10
        while budget.figures()[1] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reservation.release()
    return path


@pytest.mark.slow
def test_with_room_for_two_both_workers_hold_a_source(tmp_path, budgets):
    _folder_of(tmp_path, 2)
    budget = budgets(2 * 300 * 400 * memory.BYTES_PER_PIXEL)
    paths = sorted(str(path) for path in (tmp_path / "in").glob("*.png"))
    assert sorted(Pool(2, budget).map(partial(hold_until_two, budget), paths)) == paths
    assert budget.most_at_once == 2


def reserve_or_die(budget, path):
    """Reserve the whole budget for a source; ``die.png`` then kills its worker."""
    reservation = memory.Reservation(budget)
    reservation.reserve(Path(path).read_bytes(), ())
    try:
        if path.endswith("die.png"):
            os.kill(os.getpid(), signal.SIGKILL)
    finally:
        reservation.release()
    return path


@pytest.mark.slow
def test_a_killed_worker_does_not_keep_its_reservation(tmp_path, budgets):
    for name in ("a", "b", "die", "c", "d", "e"):
        save(tmp_path / f"{name}.png", photo_like(seed=1))
    paths = [str(tmp_path / f"{name}.png") for name in ("a", "b", "die", "c", "d", "e")]
    died = []
    budget = budgets(1)  # every source takes all of it: one at a time

    def crashed(task, reason):
        died.append(task)

    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("a reservation was lost: run hung"))
    signal.alarm(120)
    try:
        done = [path for path in Pool(2, budget).map(partial(reserve_or_die, budget), paths,
                                                     crashed=crashed) if path]
    finally:
        signal.alarm(0)
    assert sorted(done) == sorted(p for p in paths if not p.endswith("die.png"))
    assert died == [paths[2]]
    assert budget.most_at_once == 1


def test_a_run_with_a_tiny_budget_writes_everything(tmp_path, monkeypatch):
    recipe = _folder_of(tmp_path, 4)
    monkeypatch.setenv("AUGCLI_MEMORY", "1K")
    result = invoke("run", str(recipe), "-w", "2", "-q")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 8


def test_a_bad_budget_is_a_usage_error(tmp_path, monkeypatch):
    recipe = _folder_of(tmp_path, 1)
    monkeypatch.setenv("AUGCLI_MEMORY", "lots")
    result = invoke("run", str(recipe), "-q")
    assert result.exit_code == 2
    assert "Error: AUGCLI_MEMORY='lots': expected a size" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("setting", [str(2**63 - 1), str(2**63), str(2**64),
                                     "99999999999999999999999999G"])
def test_a_budget_beyond_the_machine_is_the_machine_and_two_workers_finish(tmp_path, setting,
                                                                          monkeypatch):
    """Sizes past what the shared counter's 64-bit integers hold: the budget is clamped to
    the machine's memory, and a real run with two workers writes everything."""
    monkeypatch.setenv("AUGCLI_MEMORY", setting)
    with open("/proc/meminfo") as meminfo:
        total = next(int(line.split()[1]) * 1024 for line in meminfo
                     if line.startswith("MemTotal"))
    assert 0 < memory.run_budget() <= total
    recipe = _folder_of(tmp_path, 4, size=(30, 40))
    done = subprocess.run([sys.executable, "-m", "augcli", "run", str(recipe), "-w", "2", "-q"],
                          env=dict(_env(), AUGCLI_MEMORY=setting), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 8


def _address_space_at_start() -> int:
    """Bytes of address space a worker has mapped once augcli's stack is imported."""
    probe = ("import augcli.runner, numpy.random, cv2, PIL.PngImagePlugin\n"
             "print(next(l.split()[1] for l in open('/proc/self/status') "
             "if l.startswith('VmSize')))")
    out = subprocess.run([sys.executable, "-c", probe], env=_env(), check=True,
                         capture_output=True, text=True).stdout
    return int(out) * 1024


def _env():
    return cli_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", AUGCLI_MEMORY="off")


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_running_out_of_memory_fails_that_source_and_the_run_goes_on(tmp_path, workers):
    """A process limited to its start-up size + 450 MB cannot decode a 90 MP image (270 MB
    of pixels, twice while PIL hands them over) but makes the small ones."""
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.new("RGB", (10_000, 9_000), (30, 60, 90)).save(tmp_path / "in" / "big.png")
    for index in range(3):
        save(tmp_path / "in" / f"small{index}.png", photo_like(seed=index))
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          turn: {ops: [{rotate: {degrees: 10}}]}
        """)
    limit = _address_space_at_start() + 450 * 2**20

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    run = run_cli("run", recipe, "-w", workers, env=_env(), preexec_fn=limited)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    failures = [line for line in run.stderr.splitlines() if line.startswith("failed:")]
    assert failures == ["failed: big.png: not enough memory for a 10000 x 9000 image (run it "
                        "with fewer --workers, a lower AUGCLI_MEMORY, or on a machine with "
                        "more memory)"], run.stderr
    written = sorted(path.name for path in (tmp_path / "out").glob("*.png"))
    assert written == [f"small{index}_turn_1.png" for index in range(3)]
