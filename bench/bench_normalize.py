"""Throughput benchmark: ``augcli normalize`` on generated photo-like 640x480 JPEGs.

Run it from the project root with the project's virtualenv:

    python bench/bench_normalize.py                          # featurewise, 200 images, 1,2 workers
    python bench/bench_normalize.py --methods featurewise,tf --images 50 --workers 1,2,4

featurewise reads every image twice (one pass to fit the per-channel mean and
std, one to apply them), so it is compared with tf, which reads each image
once and does similar arithmetic: the gap is the price of the fit pass. Each
run writes one float32 .npy per image (640x480x3 = 3.7 MB), so the disk is
part of what is measured. Timing is wall clock around ``normalize_folder``,
including process-pool start-up (spawn: one pool per pass). It is not a test.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_run import HEIGHT, JPEG_QUALITY, WIDTH, generate_inputs


def time_normalize(method: str, input_dir: Path, output_dir: Path, workers: int,
                   expected: int) -> float:
    from augcli.normalize import NormalizeSettings, normalize_folder

    started = time.perf_counter()
    report = normalize_folder(NormalizeSettings.of(input_dir, output_dir, method=method),
                              workers=workers)
    seconds = time.perf_counter() - started
    if report.failures or report.written != expected:
        raise RuntimeError(f"{method}: wrote {report.written} of {expected}, "
                           f"failures {report.failures[:3]}")
    return seconds


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="source images (default 200)")
    parser.add_argument("--methods", default="featurewise,tf",
                        help="comma-separated methods (default featurewise,tf)")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be >= 1")
    args.method_list = args.methods.split(",")
    try:
        args.worker_counts = [int(part) for part in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers expects integers like 1,2 (got {args.workers!r})")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    import augcli.normalize  # noqa: F401  - import cost stays out of the timings

    root = Path(tempfile.mkdtemp(prefix="augcli-bench-normalize-"))
    try:
        generate_inputs(root / "input", args.images)
        print(f"images: {args.images} x {WIDTH}x{HEIGHT} JPEG q{JPEG_QUALITY}; output: one "
              f"float32 .npy each; python {sys.version.split()[0]}")
        print(f"{'method':>12}  {'workers':>7}  {'seconds':>8}  {'images/s':>8}")
        for method in args.method_list:
            for workers in args.worker_counts:
                output = root / f"{method}-w{workers}"
                seconds = time_normalize(method, root / "input", output, workers, args.images)
                print(f"{method:>12}  {workers:>7}  {seconds:>8.2f}  "
                      f"{args.images / seconds:>8.1f}")
                shutil.rmtree(output)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory of this (parent) process: {peak:.0f} MB")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
