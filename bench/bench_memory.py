"""Parent memory of a run as the dataset grows: peak RSS at N and 10 N sources.

Run it from the project root with the project's virtualenv:

    python bench/bench_memory.py                        # 40 and 400 sources, 50 copies each
    python bench/bench_memory.py --sources 100 --copies 100 --workers 2

It generates small photo-like PNGs (32 x 32, fixed seed, so outputs are many and
cheap), then runs ``augcli.run_recipe`` once per dataset size in a fresh Python
process and reads that process's peak RSS (``getrusage(RUSAGE_SELF)``: the
parent only; pool workers are other processes and are not counted). It prints
the peak at N and at 10 N sources and the growth per 1,000 outputs between
them: flat means the parent does not hold a plan or records per output. It also
prints the parent's CPU time per output (imports included), steadier than wall
time on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 0
SIDE = 32

RECIPE = """\
seed: 1
variants:
  speckle:
    copies: {copies}
    ops:
      - dropout: {{p: [0.05, 0.2]}}
"""

CHILD = """\
import json, resource, sys, time
from augcli import run_recipe
started = time.perf_counter()
report = run_recipe(sys.argv[1], input=sys.argv[2], output=sys.argv[3], workers=int(sys.argv[4]))
usage = resource.getrusage(resource.RUSAGE_SELF)  # this process only: not its workers
print(json.dumps({"written": report.written, "failed": len(report.failures),
                  "peak_kib": usage.ru_maxrss,  # KiB on Linux
                  "cpu": usage.ru_utime + usage.ru_stime,
                  "seconds": time.perf_counter() - started}))
"""


def make_sources(folder: Path, count: int) -> None:
    rng = np.random.default_rng(SEED)
    for index in range(count):
        pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        path = folder / f"c{index % 4}" / f"s{index:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)


def measure(root: Path, sources: int, copies: int, workers: int) -> dict:
    folder = root / f"in{sources}"
    make_sources(folder, sources)
    recipe = root / f"recipe{sources}.yaml"
    recipe.write_text(textwrap.dedent(RECIPE.format(copies=copies)), encoding="utf-8")
    project = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(project)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(recipe), str(folder),
                           str(root / f"out{sources}"), str(workers)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=40, help="N (then 10 N) [40]")
    parser.add_argument("--copies", type=int, default=50, help="outputs per source [50]")
    parser.add_argument("--workers", type=int, default=2, help="pool workers [2]")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="augcli-bench-memory-") as tmp:
        for sources in (args.sources, 10 * args.sources):
            started = time.perf_counter()
            result = measure(Path(tmp), sources, args.copies, args.workers)
            outputs = sources * args.copies
            if result["written"] != outputs:
                sys.exit(f"expected {outputs} outputs, got {result}")
            rows.append((sources, outputs, result["peak_kib"], result["cpu"],
                         time.perf_counter() - started))
    print(f"{'sources':>8} {'outputs':>9} {'parent peak RSS':>16} {'parent CPU ms/output':>21} "
          f"{'wall s':>7}")
    for sources, outputs, peak, cpu, seconds in rows:
        print(f"{sources:>8} {outputs:>9} {peak / 1024:>12.1f} MiB {cpu / outputs * 1000:>21.3f} "
              f"{seconds:>7.1f}")
    (_, small, small_peak, _, _), (_, large, large_peak, _, _) = rows
    growth = (large_peak - small_peak) / (large - small) * 1000
    print(f"growth: {growth:.1f} KiB per 1,000 outputs; peak at 10 N / peak at N: "
          f"{large_peak / small_peak:.2f}")


if __name__ == "__main__":
    main()
