"""Throughput benchmark: augcli vs. a plain imgaug loop vs. a decode+encode floor.

Run it from the project root with the project's virtualenv:

    python bench/bench_run.py                      # 200 images, 5 copies, 1 and 2 workers
    python bench/bench_run.py --images 40 --workers 1,2,4 --keep

It generates N photo-like 640x480 JPEGs (fixed seed) in a temporary folder and
writes the "standard recipe" (fliplr + affine + dropout, 5 copies, JPEG q90).
Then, for each worker count W, it times three ways of producing the same
N * copies JPEG outputs from the same files:

* augcli       ``augcli.run_recipe(...)`` as a library call.
* imgaug loop  the script people write today: a ``multiprocessing.Pool(W)``
               mapping over files; each file is read with imageio, augmented
               ``copies`` times by an ``iaa.Sequential`` and written with imageio.
* floor        decode once + encode ``copies`` times with OpenCV, no
               augmentation: roughly the best any augmenter could do.

Timing is wall clock (``time.perf_counter``) around the whole call, so it
includes process-pool start-up (spawn) for all three. With W == 1 all three
run in this process, and module imports are done before timing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

# Keep module-level imports light: spawned pool workers (augcli's too) re-import
# this file, so anything heavy here would be charged to every contender.

WIDTH, HEIGHT = 640, 480
SEED = 0
JPEG_QUALITY = 90
TARGET_RATIO = 1.5


# --- input images --------------------------------------------------------------

def make_photo(rng: np.random.Generator) -> np.ndarray:
    """A photo-like BGR image: smooth gradient, soft blurred shapes and mild noise."""
    image = _gradient(rng)
    for _ in range(rng.integers(4, 10)):
        image = _blend_blurred_shape(image, rng)
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    """Bilinear blend of four random corner colours, plus low-frequency shading."""
    corners = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    image = cv2.resize(corners, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
    shading = rng.normal(0, 20, (6, 8)).astype(np.float32)
    shading = cv2.resize(shading, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    return image + shading[..., None]


def _blend_blurred_shape(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one filled circle, ellipse or rectangle, blur its mask and blend it in."""
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    centre = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
    kind = rng.integers(0, 3)
    if kind == 0:
        cv2.circle(mask, centre, int(rng.integers(20, 120)), 1.0, -1)
    elif kind == 1:
        axes = (int(rng.integers(20, 160)), int(rng.integers(10, 100)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    else:
        corner = (centre[0] + int(rng.integers(30, 200)), centre[1] + int(rng.integers(30, 150)))
        cv2.rectangle(mask, centre, corner, 1.0, -1)
    sigma = float(rng.uniform(2, 12))
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None]
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    return image * (1 - mask) + colour * mask


def generate_inputs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    paths = []
    for index in range(count):
        path = folder / f"img_{index:04d}.jpg"
        cv2.imwrite(str(path), make_photo(rng), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        paths.append(path)
    return paths


def write_recipe(path: Path, input_dir: Path, output_dir: Path, copies: int) -> None:
    """The standard recipe; run_recipe's ``output=`` overrides the output folder each run."""
    path.write_text(f"""\
input: {input_dir}
output: {output_dir}
format: jpg
quality: {JPEG_QUALITY}
seed: 0
variants:
  std:
    copies: {copies}
    ops:
      - fliplr: {{p: 0.5}}
      - affine: {{rotate: [-20, 20], translate: [-0.2, 0.2], shear: [-15, 15]}}
      - dropout: {{p: 0.05}}
""", encoding="utf-8")


# --- pool workers (module level so the spawn context can pickle them) ----------

_sequence = None  # the imgaug pipeline, built once per worker process


def init_imgaug_worker() -> None:
    global _sequence
    # imgaug 0.4.0 does not import on NumPy 2 by itself (it uses np.sctypes, which
    # NumPy 2 removed); augcli.engine.load() restores that name and imports it.
    from augcli import engine

    iaa = engine.load()
    _sequence = iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Affine(rotate=(-20, 20), translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)},
                   shear=(-15, 15)),
        iaa.Dropout(p=0.05),
    ])


def imgaug_one(job: tuple[str, str, int]) -> None:
    """Read one file with imageio, augment it ``copies`` times, write each as JPEG."""
    import imageio.v3 as iio

    source, output_dir, copies = job
    image = iio.imread(source)
    stem = Path(source).stem
    for index in range(1, copies + 1):
        augmented = _sequence(image=image)
        iio.imwrite(Path(output_dir) / f"{stem}_std_{index}.jpg", augmented,
                    quality=JPEG_QUALITY)


def floor_one(job: tuple[str, str, int]) -> None:
    """Decode one file once, then encode and write it ``copies`` times (no augmentation)."""
    source, output_dir, copies = job
    data = np.frombuffer(Path(source).read_bytes(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    stem = Path(source).stem
    for index in range(1, copies + 1):
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"cannot encode {source}")
        (Path(output_dir) / f"{stem}_std_{index}.jpg").write_bytes(encoded.tobytes())


def run_jobs(worker, jobs: list, workers: int, initializer=None) -> None:
    """In-process for one worker (like augcli --workers 1), else a spawn Pool."""
    if workers == 1:
        if initializer is not None:
            initializer()
        for job in jobs:
            worker(job)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=initializer) as pool:
        pool.map(worker, jobs)


# --- measurements --------------------------------------------------------------

def time_augcli(recipe: Path, output_dir: Path, workers: int, expected: int) -> float:
    import augcli

    started = time.perf_counter()
    report = augcli.run_recipe(recipe, output=output_dir, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    if report.failures:
        raise RuntimeError(f"augcli reported failures: {report.failures[:5]}")
    if report.written != expected:
        raise RuntimeError(f"augcli wrote {report.written} outputs, expected {expected}")
    return seconds


def time_script(worker, sources: list[Path], output_dir: Path, copies: int, workers: int,
                initializer=None) -> float:
    output_dir.mkdir(parents=True)
    jobs = [(str(source), str(output_dir), copies) for source in sources]
    started = time.perf_counter()
    run_jobs(worker, jobs, workers, initializer)
    seconds = time.perf_counter() - started
    written = len(list(output_dir.glob("*.jpg")))
    if written != len(sources) * copies:
        raise RuntimeError(f"{output_dir} holds {written} outputs, expected "
                           f"{len(sources) * copies}")
    return seconds


def measure(workers: int, sources: list[Path], recipe: Path, out_root: Path,
            copies: int) -> dict:
    """Outputs per second of each contender at one worker count."""
    total = len(sources) * copies
    seconds = {
        "augcli": time_augcli(recipe, out_root / f"augcli-w{workers}", workers, total),
        "imgaug": time_script(imgaug_one, sources, out_root / f"imgaug-w{workers}", copies,
                              workers, initializer=init_imgaug_worker),
        "floor": time_script(floor_one, sources, out_root / f"floor-w{workers}", copies,
                             workers),
    }
    return {name: total / value for name, value in seconds.items()}


# --- report --------------------------------------------------------------------

def warm_imports() -> None:
    """Import augcli's runner and imgaug here, so W == 1 timings exclude import cost."""
    import augcli.runner  # noqa: F401
    from augcli import engine

    engine.load()


def print_header(args, workers: list[int]) -> None:
    import imageio
    import imgaug

    import augcli

    print(f"images: {args.images} x {WIDTH}x{HEIGHT} JPEG q{JPEG_QUALITY}, copies: {args.copies}, "
          f"outputs per run: {args.images * args.copies}, workers: {workers}")
    print(f"python {sys.version.split()[0]}, augcli {augcli.__version__}, numpy {np.__version__}, "
          f"cv2 {cv2.__version__}, imgaug {imgaug.__version__}, imageio {imageio.__version__}")
    print("timing: wall clock of the whole call, including process-pool start-up (spawn)")


def print_table(results: dict[int, dict]) -> None:
    header = (f"{'workers':>7}  {'augcli/s':>9}  {'imgaug loop/s':>13}  {'floor/s':>8}  "
              f"{'augcli/imgaug':>13}  {'augcli/floor':>12}  target")
    print()
    print(header)
    print("-" * len(header))
    for workers, rate in results.items():
        vs_imgaug = rate["augcli"] / rate["imgaug"]
        vs_floor = rate["augcli"] / rate["floor"]
        verdict = "met" if vs_imgaug >= TARGET_RATIO else "MISSED"
        print(f"{workers:>7}  {rate['augcli']:>9.1f}  {rate['imgaug']:>13.1f}  "
              f"{rate['floor']:>8.1f}  {vs_imgaug:>12.2f}x  {vs_floor:>11.2f}x  {verdict}")
    print()
    print(f"target: augcli >= {TARGET_RATIO}x imgaug loop outputs/s at every worker count "
          "(rates are outputs per second)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="source images (default 200)")
    parser.add_argument("--copies", type=int, default=5, help="outputs per image (default 5)")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.images < 1 or args.copies < 1:
        parser.error("--images and --copies must be >= 1")
    try:
        args.worker_counts = [int(part) for part in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers expects integers like 1,2 (got {args.workers!r})")
    if min(args.worker_counts) < 1:
        parser.error("--workers counts must be >= 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="augcli-bench-"))
    try:
        sources = generate_inputs(root / "input", args.images)
        recipe = root / "recipe.yaml"
        write_recipe(recipe, root / "input", root / "output", args.copies)
        warm_imports()
        print_header(args, args.worker_counts)
        results = {}
        for workers in args.worker_counts:
            results[workers] = measure(workers, sources, recipe, root / "output", args.copies)
        print_table(results)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
