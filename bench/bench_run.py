"""Throughput benchmark: augcli vs. a plain imgaug loop vs. a decode+encode floor.

Run it from the project root with the project's virtualenv:

    python bench/bench_run.py                      # 200 images, 5 copies, workers 1,2, 3 repeats
    python bench/bench_run.py --quick              # 60 images, no imgaug: a few minutes
    python bench/bench_run.py --images 400 --workers 1,2,4,8,16 --sizes 640x480,1920x1080

For each size it generates N photo-like JPEGs (fixed seed) in a temporary folder
and writes the "standard recipe" (fliplr + affine + dropout, 5 copies, JPEG q90).
Then, for each worker count W, it times three ways of producing the same
N * copies JPEG outputs from the same files:

* augcli       ``augcli.run_recipe(...)`` as a library call.
* imgaug loop  the script people write today: a ``multiprocessing.Pool(W)``
               mapping over files; each file is read with OpenCV, augmented
               ``copies`` times by an ``iaa.Sequential`` and written with OpenCV
               (skipped when imgaug is not installed).
* floor        decode once + encode ``copies`` times with OpenCV, no
               augmentation: a clean image encodes about twice as fast as
               augcli's resampled, speckled one, so no augmenter reaches it.
* limit        the same-bytes limit: per source, read and decode once and pad
               to 4 channels once; per output, one ``warpAffine`` through
               OpenCV's 4-channel path (the output's own matrix), the JPEG
               encode of the exact pixels augcli wrote, and the write. The
               pixels are rendered beforehand with ``augcli.load_transform``
               and the seeds of augcli's manifest, and the encoded bytes are
               checked equal to augcli's files; that rendering (and the check)
               is timed apart and taken out: wall - untimed / W. Nothing that
               writes these bytes can do less.

Timing is wall clock (``time.perf_counter``) around the whole call, so it
includes process-pool start-up for all of them. With W == 1 they run in this
process, and module imports are done before timing. Each contender runs
``--repeats`` times (default 3), interleaved (augcli, limit, floor, imgaug, at
each worker count, then again), and the table shows medians; the ratios
augcli/limit and augcli/floor are medians of the per-repeat ratios, with
their spread (lowest-highest) beside them.

Then it prints where augcli's time goes: CPU milliseconds per output for each
stage (decode, sample, warp, pixel ops, digest, encode, write), measured in-process on
the same files ("digest" is the key ``run`` takes of the source and of every output
to tell them apart), what the 1-worker run spent per output beyond those stages
(Python glue: planning, records, the manifest), and the parent's CPU per output.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

# Keep module-level imports light: spawned pool workers (augcli's too) re-import
# this file, so anything heavy here would be charged to every contender.

SEED = 0
WIDTH, HEIGHT = 640, 480  # the default source size
JPEG_QUALITY = 90


# --- input images --------------------------------------------------------------

def make_photo(rng: np.random.Generator, size: tuple[int, int] = (WIDTH, HEIGHT)) -> np.ndarray:
    """A photo-like BGR image: smooth gradient, soft blurred shapes and mild noise."""
    image = _gradient(rng, size)
    for _ in range(rng.integers(4, 10)):
        image = _blend_blurred_shape(image, rng)
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _gradient(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Bilinear blend of four random corner colours, plus low-frequency shading."""
    corners = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    image = cv2.resize(corners, size, interpolation=cv2.INTER_LINEAR)
    shading = rng.normal(0, 20, (6, 8)).astype(np.float32)
    shading = cv2.resize(shading, size, interpolation=cv2.INTER_CUBIC)
    return image + shading[..., None]


def _blend_blurred_shape(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one filled circle, ellipse or rectangle, blur its mask and blend it in."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.float32)
    centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
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


def generate_inputs(folder: Path, count: int,
                    size: tuple[int, int] = (WIDTH, HEIGHT)) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    paths = []
    for index in range(count):
        path = folder / f"img_{index:04d}.jpg"
        cv2.imwrite(str(path), make_photo(rng, size), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
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
    """Read one file, augment it ``copies`` times with imgaug, write each as JPEG."""
    source, output_dir, copies = job
    image = cv2.cvtColor(cv2.imread(source), cv2.COLOR_BGR2RGB)
    stem = Path(source).stem
    for index in range(1, copies + 1):
        augmented = cv2.cvtColor(_sequence(image=image), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(Path(output_dir) / f"{stem}_std_{index}.jpg"), augmented,
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


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


_transform = None  # augcli's in-memory transform of the recipe, for the limit's pixels
_untimed = 0.0  # seconds this worker spent on the limit's set-up, not charged to it


def init_limit_worker(recipe: str) -> None:
    global _transform, _untimed
    started = time.perf_counter()
    import augcli

    _transform = augcli.load_transform(recipe, "std")
    _untimed += time.perf_counter() - started


def limit_one(job: tuple) -> float:
    """The same-bytes limit for one source; returns the seconds that are not the limit's.

    Untimed: augcli's pixels of each output (``load_transform`` with the manifest's
    seed), as BGR, and each output's matrix. Timed: read, decode, one 3 -> 4 channel
    pad, then per output one 4-channel ``warpAffine``, the encode of augcli's pixels and
    the write. Untimed again: the encoded bytes must be augcli's file's."""
    global _untimed
    from augcli import imagefiles
    from augcli.pipeline import Step, steps_matrix

    source, output_dir, reference_dir, outputs = job
    started = time.perf_counter()
    image = imagefiles.read_image(Path(source))
    rendered = []
    for relative, seed, index in outputs:
        result = _transform(image, seed=seed, index=index)
        steps = [Step(op, params) for record in result.params for op, params in record.items()]
        rendered.append((relative, cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR),
                         steps_matrix(steps, image.shape)[:2]))
    untimed = time.perf_counter() - started + _untimed
    _untimed = 0.0

    bgr = cv2.imdecode(np.frombuffer(Path(source).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    height, width = bgr.shape[:2]
    padded = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    written = []
    for relative, pixels, matrix in rendered:
        cv2.warpAffine(padded, matrix, (width, height), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"cannot encode {relative}")
        data = encoded.tobytes()
        (Path(output_dir) / relative).write_bytes(data)
        written.append((relative, data))

    started = time.perf_counter()
    for relative, data in written:
        if data != (Path(reference_dir) / relative).read_bytes():
            raise RuntimeError(f"the limit's {relative} is not augcli's bytes")
    return untimed + time.perf_counter() - started


def run_jobs(worker, jobs: list, workers: int, initializer=None, initargs=()) -> list:
    """In-process for one worker (like augcli --workers 1), else a spawn Pool."""
    if workers == 1:
        if initializer is not None:
            initializer(*initargs)
        return [worker(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        return pool.map(worker, jobs)


# --- measurements --------------------------------------------------------------

def time_augcli(recipe: Path, output_dir: Path, workers: int, expected: int) -> tuple:
    """(seconds, parent CPU seconds) of one ``run_recipe`` call."""
    import augcli

    cpu_before = time.process_time()
    started = time.perf_counter()
    report = augcli.run_recipe(recipe, output=output_dir, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    parent_cpu = time.process_time() - cpu_before
    if report.failures:
        raise RuntimeError(f"augcli reported failures: {report.failures[:5]}")
    if report.written != expected:
        raise RuntimeError(f"augcli wrote {report.written} outputs, expected {expected}")
    return seconds, parent_cpu


def time_script(worker, sources: list[Path], output_dir: Path, copies: int, workers: int,
                initializer=None) -> float:
    output_dir.mkdir(parents=True)
    jobs = [(str(source), str(output_dir), copies) for source in sources]
    started = time.perf_counter()
    run_jobs(worker, jobs, workers, initializer)
    seconds = time.perf_counter() - started
    _check_written(output_dir, len(sources) * copies)
    return seconds


def time_limit(recipe: Path, reference_dir: Path, output_dir: Path, workers: int) -> float:
    """Seconds of the same-bytes limit for the outputs augcli wrote to ``reference_dir``."""
    by_source: dict = {}
    with (reference_dir / "manifest.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("variant") is not None:
                by_source.setdefault(record["source"], []).append(
                    (record["output"], record["seed"], record["index"]))
    input_dir = recipe.parent / "input"
    output_dir.mkdir(parents=True)
    jobs = [(str(input_dir / source), str(output_dir), str(reference_dir), outputs)
            for source, outputs in sorted(by_source.items())]
    started = time.perf_counter()
    untimed = run_jobs(limit_one, jobs, workers, init_limit_worker, (str(recipe),))
    seconds = time.perf_counter() - started - sum(untimed) / workers
    _check_written(output_dir, sum(len(outputs) for outputs in by_source.values()))
    return seconds


def _check_written(output_dir: Path, expected: int) -> None:
    written = len(list(output_dir.glob("*.jpg")))
    if written != expected:
        raise RuntimeError(f"{output_dir} holds {written} outputs, expected {expected}")


def measure(workers: int, sources: list[Path], recipe: Path, out_root: Path, copies: int,
            with_imgaug: bool) -> dict:
    """Outputs per second of each contender at one worker count (and augcli's parent CPU)."""
    total = len(sources) * copies
    shutil.rmtree(out_root, ignore_errors=True)  # the repeat before this one's outputs
    augcli_dir = out_root / f"augcli-w{workers}"
    augcli_seconds, parent_cpu = time_augcli(recipe, augcli_dir, workers, total)
    rates = {"augcli": total / augcli_seconds,
             "limit": total / time_limit(recipe, augcli_dir, out_root / f"limit-w{workers}",
                                         workers),
             "floor": total / time_script(floor_one, sources, out_root / f"floor-w{workers}",
                                          copies, workers)}
    if with_imgaug:
        rates["imgaug"] = total / time_script(imgaug_one, sources,
                                              out_root / f"imgaug-w{workers}", copies, workers,
                                              initializer=init_imgaug_worker)
    rates["parent_ms"] = parent_cpu / total * 1000
    return rates


def measure_repeats(args, sources: list[Path], recipe: Path, out_root: Path,
                    with_imgaug: bool) -> dict:
    """{workers: [rates of each repeat]}, the worker counts interleaved within each repeat."""
    runs: dict = {workers: [] for workers in args.worker_counts}
    for _ in range(args.repeats):
        for workers in args.worker_counts:
            runs[workers].append(measure(workers, sources, recipe, out_root, args.copies,
                                         with_imgaug))
    return runs


def stage_costs(recipe: Path, limit: int = 40) -> dict:
    """CPU milliseconds per output of each stage, in this process, on up to ``limit`` sources.

    The stages call the same functions ``run`` does; geometric and pixel steps are
    applied apart (geometric first, as in the standard recipe) to split their cost.
    """
    from augcli import imagefiles
    from augcli.executors import keep_freed_memory
    from augcli.geometry import with_spare_channel
    from augcli.ops import CATALOG
    from augcli.pipeline import apply_steps, sample_steps
    from augcli.recipe import load_recipe
    from augcli.render import digest
    from augcli.runner import plan_run

    cv2.setNumThreads(1)  # as in a pool worker
    keep_freed_memory()
    plan = plan_run(load_recipe(recipe))
    costs = dict.fromkeys(("decode", "sample", "warp", "pixel ops", "digest", "encode", "write",
                           "floor decode", "floor encode"), 0.0)
    outputs = 0
    scratch = Path(tempfile.mkdtemp(prefix="augcli-stages-"))
    try:
        for task in plan.tasks[:limit]:
            source = Path(plan.input_dir) / task.relative  # the bench's input is a folder
            clock = time.process_time()
            image = imagefiles.read_image(source)
            costs["decode"] += time.process_time() - clock
            clock = time.process_time()
            digest(image)
            padded = with_spare_channel(image)  # once per source, as run does
            costs["digest"] += time.process_time() - clock
            for output in task.outputs:
                clock = time.process_time()
                steps = sample_steps(output.ops, np.random.default_rng(output.seed), image.shape)
                costs["sample"] += time.process_time() - clock
                clock = time.process_time()
                warped = apply_steps(image, [s for s in steps if CATALOG[s.op].geometric], padded)
                costs["warp"] += time.process_time() - clock
                clock = time.process_time()
                pixels = apply_steps(warped, [s for s in steps if not CATALOG[s.op].geometric])
                costs["pixel ops"] += time.process_time() - clock
                clock = time.process_time()
                digest(pixels)  # run tells each output apart from its source and siblings
                costs["digest"] += time.process_time() - clock
                clock = time.process_time()
                data = imagefiles.encode(pixels, "jpg", JPEG_QUALITY)
                costs["encode"] += time.process_time() - clock
                clock = time.process_time()
                imagefiles.write_atomic(scratch / output.relative, data)
                costs["write"] += time.process_time() - clock
                outputs += 1
            clock = time.process_time()
            bgr = cv2.imdecode(np.frombuffer(source.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            costs["floor decode"] += time.process_time() - clock
            clock = time.process_time()
            for _ in task.outputs:
                cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            costs["floor encode"] += time.process_time() - clock
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {stage: seconds / outputs * 1000 for stage, seconds in costs.items()}


# --- report --------------------------------------------------------------------

def imgaug_available() -> bool:
    try:
        from augcli import engine

        engine.load()
    except ImportError:
        return False
    return True


def warm_imports(with_imgaug: bool) -> None:
    """Import augcli's runner (and imgaug) here, so W == 1 timings exclude import cost."""
    import augcli.runner  # noqa: F401

    if with_imgaug:
        from augcli import engine

        engine.load()


def print_header(args, with_imgaug: bool) -> None:
    import augcli

    imgaug_version = "not installed"
    if with_imgaug:
        import imgaug

        imgaug_version = imgaug.__version__
    print(f"images: {args.images} JPEG q{JPEG_QUALITY} per size, copies: {args.copies}, "
          f"outputs per run: {args.images * args.copies}, workers: {args.worker_counts}, "
          f"cores: {os.cpu_count()}")
    print(f"python {sys.version.split()[0]}, augcli {augcli.__version__}, numpy {np.__version__}, "
          f"cv2 {cv2.__version__}, imgaug {imgaug_version}")
    print("timing: wall clock of the whole call, including process-pool start-up")


def print_table(size: tuple, runs: dict[int, list]) -> None:
    """Median outputs per second by worker count, as rows; the last column is the speed-up.
    Then augcli/limit and augcli/floor: the median of the per-repeat ratios (lowest-highest)."""
    counts = list(runs)
    first, last = counts[0], counts[-1]
    results = {w: {name: statistics.median(run[name] for run in runs[w]) for name in runs[w][0]}
               for w in counts}
    names = [name for name in ("floor", "limit", "augcli", "imgaug") if name in results[first]]
    repeats = len(runs[first])
    print(f"\n{size[0]}x{size[1]}: outputs per second (median of {repeats} repeat"
          f"{'s' if repeats > 1 else ''})")
    print(f"{'workers':>14}" + "".join(f"{w:>15}" for w in counts) + f"{f'{last}/{first}':>9}")
    for name in names:
        rates = [results[w][name] for w in counts]
        print(f"{name:>14}" + "".join(f"{r:>15.0f}" for r in rates)
              + f"{rates[-1] / rates[0]:>8.1f}x")
    for bound in ("limit", "floor"):
        cells = []
        for w in counts:
            ratios = [run["augcli"] / run[bound] for run in runs[w]]
            cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
        print(f"{'augcli/' + bound:>14}" + "".join(f"{cell:>15}" for cell in cells))
    print(f"{'augcli vs ' + str(first):>14}" + "".join(
        f"{results[w]['augcli'] / results[first]['augcli']:>14.2f}x" for w in counts)
        + f"   (speed-up over {first} worker{'s' if first > 1 else ''}; "
        f"{os.cpu_count()} cores here)")
    if len(counts) > 1:
        scaling = (results[last]["augcli"] / results[first]["augcli"]) / \
            (results[last]["floor"] / results[first]["floor"])
        print(f"augcli's speed-up {first}->{last} workers is {scaling:.2f}x the floor's own")
    print(f"{'parent ms/out':>14}" + "".join(f"{results[w]['parent_ms']:>15.3f}" for w in counts))


def print_stages(costs: dict, one_worker_rate: float | None = None) -> None:
    """Stage costs; with the 1-worker run's rate, also what that run spent beyond them."""
    floor = {stage: costs.pop(stage) for stage in ("floor decode", "floor encode")}
    print("CPU ms per output, in-process (decode is per source / copies):")
    print("  augcli: " + ", ".join(f"{stage} {ms:.2f}" for stage, ms in costs.items())
          + f"; total {sum(costs.values()):.2f}")
    if one_worker_rate is not None:
        whole = 1000 / one_worker_rate
        print(f"  the 1-worker run took {whole:.2f} ms (wall) per output: "
              f"{whole - sum(costs.values()):.2f} beyond these stages (glue, records, manifest)")
    print("  floor:  " + ", ".join(f"{stage[6:]} {ms:.2f}" for stage, ms in floor.items())
          + f", write {costs['write']:.2f}; total {sum(floor.values()) + costs['write']:.2f}")


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="source images (default 200)")
    parser.add_argument("--copies", type=int, default=5, help="outputs per image (default 5)")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--sizes", default="640x480",
                        help="comma-separated WxH source sizes (default 640x480)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats; the table shows medians (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a run of a few minutes: 60 images, no imgaug, stages on 20 sources")
    parser.add_argument("--no-imgaug", action="store_true", help="skip the imgaug script")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.images = min(args.images, 60)
        args.no_imgaug = True
    if args.images < 1 or args.copies < 1 or args.repeats < 1:
        parser.error("--images, --copies and --repeats must be >= 1")
    try:
        args.worker_counts = [int(part) for part in args.workers.split(",")]
        args.size_list = [parse_size(part) for part in args.sizes.split(",")]
    except ValueError:
        parser.error("--workers expects integers like 1,2 and --sizes WxH like 640x480")
    if min(args.worker_counts) < 1:
        parser.error("--workers counts must be >= 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    with_imgaug = not args.no_imgaug and imgaug_available()
    root = Path(tempfile.mkdtemp(prefix="augcli-bench-"))
    try:
        warm_imports(with_imgaug)
        print_header(args, with_imgaug)
        for size in args.size_list:
            folder = root / f"{size[0]}x{size[1]}"
            sources = generate_inputs(folder / "input", args.images, size)
            recipe = folder / "recipe.yaml"
            write_recipe(recipe, folder / "input", folder / "output", args.copies)
            runs = measure_repeats(args, sources, recipe, folder / "output", with_imgaug)
            print_table(size, runs)
            one_worker = statistics.median(run["augcli"] for run in runs[1]) if 1 in runs else None
            print_stages(stage_costs(recipe, 20 if args.quick else 40), one_worker)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
