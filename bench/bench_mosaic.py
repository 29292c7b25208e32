"""Throughput benchmark: a mosaic recipe against the plain recipe, on the same images.

Run it from the project root with the project's virtualenv:

    python bench/bench_mosaic.py                      # 100 images, 4 copies, 1 and 2 workers
    python bench/bench_mosaic.py --images 200 --workers 1,2,4 --grid 3

A mosaic output reads its source and 3 (2 x 2) or 8 (3 x 3) donors; the task
decodes each donor once for all of its outputs. Both recipes end with the same
affine and write 640x480 JPEGs at q90, so the ratio (mosaic outputs/s over
plain outputs/s) is the price of the donor reads and the tiling. Timing is wall
clock around ``run_recipe``, pool start-up included. It is not a test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_run import HEIGHT, JPEG_QUALITY, WIDTH, generate_inputs

AFFINE = "{affine: {rotate: [-10, 10], scale: [0.8, 1.2]}}"


def recipe_text(input_dir: Path, output_dir: Path, copies: int, grid: int | None) -> str:
    mosaic = f"{{mosaic: {{grid: [{grid}, {grid}], size: [{WIDTH}, {HEIGHT}]}}}}, " \
        if grid else ""
    return textwrap.dedent(f"""\
        input: {input_dir}
        output: {output_dir}
        format: jpg
        quality: {JPEG_QUALITY}
        variants:
          v:
            copies: {copies}
            ops: [{mosaic}{AFFINE}]
        """)


def time_run(folder: Path, name: str, input_dir: Path, copies: int, grid: int | None,
             workers: int, expected: int) -> float:
    from augcli.runner import run_recipe

    recipe = folder / f"{name}.yaml"
    output = folder / name
    recipe.write_text(recipe_text(input_dir, output, copies, grid))
    started = time.perf_counter()
    report = run_recipe(recipe, workers=workers)
    seconds = time.perf_counter() - started
    if report.failures or report.written != expected:
        raise RuntimeError(f"{name}: wrote {report.written} of {expected}, "
                           f"failures {report.failures[:3]}")
    shutil.rmtree(output)
    return seconds


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="source images (default 100)")
    parser.add_argument("--copies", type=int, default=4, help="outputs per source (default 4)")
    parser.add_argument("--grid", type=int, choices=(2, 3), default=2,
                        help="mosaic grid: 2 (2 x 2) or 3 (3 x 3); default 2")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (default 1,2)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    workers = [int(value) for value in args.workers.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="augcli-bench-mosaic-"))
    try:
        input_dir = folder / "in"
        generate_inputs(input_dir, args.images)
        expected = args.images * args.copies
        print(f"{args.images} images {WIDTH}x{HEIGHT}, {args.copies} copies, "
              f"mosaic {args.grid}x{args.grid} then affine vs affine alone")
        print(f"{'workers':>8} {'plain/s':>10} {'mosaic/s':>10} {'mosaic/plain':>13}")
        for count in workers:
            plain = time_run(folder, "plain", input_dir, args.copies, None, count, expected)
            mosaic = time_run(folder, "mosaic", input_dir, args.copies, args.grid, count,
                              expected)
            print(f"{count:>8} {expected / plain:>10.1f} {expected / mosaic:>10.1f} "
                  f"{plain / mosaic:>13.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
