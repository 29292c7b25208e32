"""ZCA fit time on the README's four sample photos: the D x D solve against the n x n one.

Run it from the project root with the project's virtualenv:

    python bench/bench_zca.py                   # --size 16x16, 32x32, 48x48
    python bench/bench_zca.py --sizes 32,64

With n images of D = W x H x 3 values, Keras' ZCA needs the n largest
eigenpairs of the D x D matrix XᵀX. augcli 0.1 eigendecomposed that D x D
matrix whatever n was: O(D³), 3,072² at 32x32, which is what made ZCA on 4
photos take tens of seconds. With n < D augcli now takes the same eigenpairs
from the n x n matrix XXᵀ (and U = Xᵀ V / s): O(n²·D + n·D²). It prints, per
size, both solve times (the images are prepared once, outside the timing),
their ratio, and how far apart the two matrices are (relative to the largest
entry). With n ≥ D the D x D solve is the only one, so its time is the cost of
fitting a large dataset at that size. It is not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def sample_rows(side: int) -> np.ndarray:
    from augcli import imagefiles
    from augcli.normalize import Preparation

    preparation = Preparation("rgb", (side, side))
    images, _ = imagefiles.scan_images(SAMPLES)
    return np.stack([preparation.apply(imagefiles.read_image(SAMPLES / relative)).reshape(-1)
                     for relative in images])


def solve_d_by_d(rows: np.ndarray) -> np.ndarray:
    from augcli.normalize import DEFAULT_ZCA_EPSILON, GramAccumulator, zca_components

    accumulator = GramAccumulator(channels=3)
    accumulator.add(rows)
    mean = accumulator.channel_mean()
    return zca_components(accumulator.centred_gram(mean), len(rows), DEFAULT_ZCA_EPSILON)


def solve_now(rows: np.ndarray) -> np.ndarray:
    from augcli.normalize import DEFAULT_ZCA_EPSILON, ZcaAccumulator

    accumulator = ZcaAccumulator(channels=3, features=rows.shape[1])
    accumulator.add(rows.copy())
    return accumulator.solve(DEFAULT_ZCA_EPSILON)[1]


def timed(function, rows):
    started = time.perf_counter()
    result = function(rows)
    return time.perf_counter() - started, result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,32,48", help="square sizes (default 16,32,48)")
    args = parser.parse_args(argv)
    print(f"{'size':>6}  {'n':>2}  {'D':>6}  {'D x D s':>8}  {'n x n s':>8}  {'ratio':>7}  "
          f"{'max |ΔW| / max |W|':>18}")
    for side in (int(part) for part in args.sizes.split(",")):
        rows = sample_rows(side)
        slow, old = timed(solve_d_by_d, rows)
        fast, new = timed(solve_now, rows)
        gap = np.abs(old - new).max() / np.abs(old).max()
        print(f"{side:>3}x{side:<2}  {len(rows):>2}  {rows.shape[1]:>6,}  {slow:>8.2f}  "
              f"{fast:>8.3f}  {slow / fast:>6.0f}x  {gap:>18.1e}")


if __name__ == "__main__":
    main()
