"""Start-up benchmark: time to first output and pool start-up of ``augcli run``.

    python bench/bench_startup.py                      # workers 1,2; 3 repeats
    python bench/bench_startup.py --workers 1,2,4,8,16 --outputs 2000

Each run is a fresh ``python -m augcli run`` process (as a user starts it), on
generated 640x480 JPEGs with the standard recipe (bench_run's), timed from the
launch: the first finished output file (polled every 5 ms), and the end. It
also times ``import augcli.runner`` in a fresh interpreter. Per-worker start-up
is the time to first output at W workers less that at 1 worker (which renders
in the run's own process): what starting the pool adds before any output.
With ``PYTHONDONTWRITEBYTECODE`` set, no module is ever cached compiled and every
process (run, forkserver) compiles augcli again: the figures say which held.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import generate_inputs, write_recipe  # noqa: E402

from augcli.imagefiles import TEMP_PREFIX  # noqa: E402


def first_output_and_end(command: list[str], output_dir: Path) -> tuple[float, float]:
    """(seconds to the first output file, seconds to the end) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while process.poll() is None:
        if first is None and output_dir.is_dir() and any(
                not entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(".jpg")
                for entry in os.scandir(output_dir)):
            first = time.perf_counter() - started
        time.sleep(0.005)
    end = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"{command} failed with {process.returncode}")
    return (first if first is not None else end), end


def import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import augcli.runner"], check=True)
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--outputs", type=int, default=300, help="outputs per run (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    copies = 5
    root = Path(tempfile.mkdtemp(prefix="augcli-startup-"))
    try:
        sources = max(1, args.outputs // copies)
        generate_inputs(root / "in", sources)
        recipe = root / "recipe.yml"
        write_recipe(recipe, root / "in", root / "out", copies)
        print(f"outputs per run: {sources * copies}, cores: {os.cpu_count()}, "
              f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")
        imports = [import_seconds() for _ in range(args.repeats)]
        print(f"import augcli.runner (fresh interpreter): {statistics.median(imports):.2f} s")
        times: dict[int, list] = {w: [] for w in counts}
        for _ in range(args.repeats):
            for workers in counts:  # interleaved, as bench_run does
                output_dir = root / "out"
                shutil.rmtree(output_dir, ignore_errors=True)
                times[workers].append(first_output_and_end(
                    [sys.executable, "-m", "augcli", "run", str(recipe), "-o", str(output_dir),
                     "-w", str(workers)], output_dir))
        base = statistics.median(first for first, _ in times[counts[0]])
        print(f"{'workers':>8} {'first output s':>15} {'wall s':>8} {'first/wall':>11} "
              f"{'pool start-up s':>16}")
        for workers in counts:
            first = statistics.median(f for f, _ in times[workers])
            wall = statistics.median(w for _, w in times[workers])
            print(f"{workers:>8} {first:>15.2f} {wall:>8.2f} {first / wall:>11.2f} "
                  f"{first - base:>16.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
