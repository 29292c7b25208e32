"""Memory per source pixel: what one worker's peak RSS grows by, per pixel of a source.

    python bench/bench_pixel_memory.py                  # 20 MP, every recipe below
    python bench/bench_pixel_memory.py --megapixels 40 --recipes standard,elastic

Each recipe runs in a fresh process that first makes the outputs of a tiny
source (imports, code, allocator warm) and then those of one photo-like JPEG of
the given size, as a pool worker does (``process_source``, glibc thresholds of
``keep_freed_memory``). It prints the peak RSS growth (``VmHWM``) divided by
the source's pixels: the factor ``augcli.budget.BYTES_PER_PIXEL`` is set from.

Then (``--run``) it runs ``augcli run`` with 2 workers over several large
sources, once with a memory budget that fits one source at a time and once with
none, and prints the peak total RSS of the run's process tree (sampled).
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

REPO = Path(__file__).resolve().parent.parent

RECIPES = {
    "standard": """
        fliplr: {ops: [{fliplr: {p: 1}}]}
        affine: {ops: [{affine: {rotate: [-15, 15], shear: [-10, 10], scale: [0.9, 1.1]}}]}
        dropout: {ops: [{dropout: {p: 0.1}}]}
    """,
    "sample": """
        noise: {ops: [{dropout: {p: 0.4}}]}
        rotate: {ops: [{rotate: {degrees: [-20, 20]}}]}
        mixed: {ops: [{fliplr: {p: 0.5}}, {affine: {rotate: [-15, 15], shear: [-10, 10]}},
                      {gaussian_blur: {sigma: 1.5}}]}
    """,
    "elastic": """
        elastic: {ops: [{elastic: {alpha: 40, sigma: 8}}]}
    """,
    "perspective": """
        perspective: {ops: [{perspective: {scale: 0.06}}, {rotate: {degrees: 10}}]}
    """,
    "keras": """
        keras: {ops: [{keras: {rotation_range: 20, width_shift_range: 0.1,
                               height_shift_range: 0.1, shear_range: 10, zoom_range: 0.2,
                               channel_shift_range: 30, brightness_range: [0.8, 1.2],
                               horizontal_flip: true, fill_mode: nearest}}]}
    """,
    "colour": """
        colour: {ops: [{color_jitter: {}}, {gamma: {}}, {equalize: {}}]}
    """,
    "clahe": """
        clahe: {ops: [{clahe: {}}]}
    """,
    "noise": """
        noise: {ops: [{gaussian_noise: {scale: 10}}, {salt_and_pepper: {p: 0.03}}]}
    """,
    "filters": """
        filters: {ops: [{motion_blur: {k: 7}}, {sharpen: {alpha: 0.2}},
                        {gaussian_blur: {sigma: 3}}]}
    """,
    "dropout": """
        dropout: {ops: [{coarse_dropout: {}}, {cutout: {fill_mode: gaussian}}]}
    """,
    "color_jitter": """
        color-jitter: {ops: [{color_jitter: {}}]}
    """,
    "gamma": """
        gamma: {ops: [{gamma: {}}]}
    """,
    "equalize": """
        equalize: {ops: [{equalize: {}}]}
    """,
    "hue": """
        hue: {ops: [{hue: {factor: 0.1}}]}
    """,
    "saturation": """
        saturation: {ops: [{saturation: {}}]}
    """,
    "contrast": """
        contrast: {ops: [{contrast: {}}]}
    """,
    "gaussian_noise": """
        gaussian-noise: {ops: [{gaussian_noise: {scale: 10}}]}
    """,
    "salt_and_pepper": """
        salt-and-pepper: {ops: [{salt_and_pepper: {p: 0.03}}]}
    """,
    "channel_shift": """
        channel-shift: {ops: [{channel_shift: {}}]}
    """,
    "sharpen": """
        sharpen: {ops: [{sharpen: {alpha: 0.2}}]}
    """,
    "motion_blur": """
        motion-blur: {ops: [{motion_blur: {}}]}
    """,
    "cutout": """
        cutout: {ops: [{cutout: {fill_mode: gaussian}}]}
    """,
    "jpeg": """
        jpeg: {ops: [{jpeg: {}}]}
    """,
    "grayscale": """
        grayscale: {ops: [{grayscale: {}}]}
    """,
    "invert": """
        invert: {ops: [{invert: {}}]}
    """,
    "random_erasing": """
        random-erasing: {ops: [{random_erasing: {p: 1, random_fill: true}}]}
    """,
    "imgaug": """
        imgaug: {ops: [{imgaug: [{Affine: {rotate: [-10, 10]}},
                                 {AdditiveGaussianNoise: {scale: 10}}]}]}
    """,
}

_CHILD = r"""
import json, sys
from augcli.executors import keep_freed_memory
from augcli.runner import plan_run, process_source, resolve_recipe
keep_freed_memory()
recipe = resolve_recipe(sys.argv[1])
tasks = {t.relative: t for t in plan_run(recipe).tasks}
def peak():  # VmHWM: this process's own peak (ru_maxrss keeps its parent's across exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
for name in ("tiny.jpg", "tiny.jpg"):
    assert not process_source(tasks[name]).failures
before = peak()
result = process_source(tasks["big.jpg"])
assert not result.failures, result.failures
print(json.dumps({"before": before, "after": peak()}))
"""


def make_photo(path: Path, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200, y / height * 200, (x + y) % 97 * 2], axis=-1)
    base += rng.normal(0, 20, (height, width, 1)).astype(np.float32)
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, quality=90)


def per_pixel(folder: Path, name: str, body: str, pixels: int) -> float:
    recipe = folder / f"{name}.yaml"
    recipe.write_text(f"input: in\noutput: out_{name}\nformat: jpg\nvariants:\n"
                      + textwrap.indent(textwrap.dedent(body).strip(), "  ") + "\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    child = subprocess.run([sys.executable, "-c", _CHILD, str(recipe)], env=env,
                           capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(f"{name}: {child.stderr}")
    out = child.stdout
    figures = json.loads(out.strip().splitlines()[-1])
    return (figures["after"] - figures["before"]) / pixels


def tree_rss(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, in bytes."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{current}/task/{current}/children") as handle:
                todo.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return total


def peak_run(folder: Path, memory: str | None) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("AUGCLI_MEMORY", None)
    if memory is not None:
        env["AUGCLI_MEMORY"] = memory
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "augcli", "run", str(folder / "big.yaml"),
                                "-w", "2", "-q", "--overwrite"], env=env)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.02)
    assert process.returncode == 0, process.returncode
    return time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=20)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--run", action="store_true",
                        help="also measure a 2-worker run with and without a budget")
    parser.add_argument("--sources", type=int, default=4, help="large sources for --run")
    args = parser.parse_args()
    side = int((args.megapixels * 1e6) ** 0.5)
    width, height = side * 4 // 3, side * 3 // 4
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        make_photo(folder / "in" / "tiny.jpg", 64, 48)
        make_photo(folder / "in" / "big.jpg", width, height)
        print(f"source: {width} x {height} = {width * height / 1e6:.1f} MP")
        for name in args.recipes.split(","):
            factor = per_pixel(folder, name, RECIPES[name], width * height)
            print(f"{name:12s} {factor:6.1f} bytes per source pixel")
        if args.run:
            big = folder / "many"
            big.mkdir()
            for index in range(args.sources):
                os.link(folder / "in" / "big.jpg", big / f"big{index}.jpg")
            (folder / "big.yaml").write_text(
                "input: many\noutput: out_big\nformat: jpg\nvariants:\n"
                + textwrap.indent(textwrap.dedent(RECIPES["standard"]).strip(), "  ") + "\n")
            from augcli.budget import BYTES_PER_PIXEL

            one = int(width * height * BYTES_PER_PIXEL * 1.1)
            for label, memory in (("no budget", "off"), ("one at a time", str(one))):
                seconds, peak = peak_run(folder, memory)
                print(f"run, 2 workers, {args.sources} sources, {label:14s}: "
                      f"peak RSS {peak / 2**30:.2f} GiB, {seconds:.1f} s")


if __name__ == "__main__":
    main()
