"""Per-image speed of the in-memory transform against the same pipeline elsewhere.

Run it from the project root with the project's virtualenv:

    python bench/bench_transform.py                  # 64 images, 5 rounds, 1 OpenCV thread
    python bench/bench_transform.py --images 200 --rounds 10 --threads 0

The standard recipe (fliplr p=0.5; affine rotate +-20 deg, translate +-20 %,
shear +-15 deg; pixel dropout 0.05) on photo-like 640x480 RGB arrays already in
memory, one call per image in this one process, as a training loop's
``Dataset.__getitem__`` or ``tf.data`` map would call it. Contenders, each if
installed: augcli's ``load_transform``, albumentations, torchvision
transforms v2, and imgaug (always available to augcli). The figure is the
median over rounds of the mean time per image; the ratio is the contender's
time over augcli's (above 1: augcli is faster). The target is augcli at least
as fast as albumentations.

``--threads`` sets OpenCV's thread count for every contender (1, the default,
is what one DataLoader worker gets when there are as many workers as cores;
0 leaves OpenCV's own default). It is not a test and pytest does not collect it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from bench_run import make_photo  # the same generated photos as bench_run (bench/ is on the path)

ROOT = Path(__file__).resolve().parent.parent  # this checkout's augcli, not an installed one
WIDTH, HEIGHT = 640, 480
RECIPE = {"seed": 0, "variants": {"std": {"ops": [
    {"fliplr": {"p": 0.5}},
    {"affine": {"rotate": [-20, 20], "translate": [-0.2, 0.2], "shear": [-15, 15]}},
    {"dropout": {"p": 0.05}},
]}}}


def augcli_pipeline():
    import augcli

    transform = augcli.load_transform(augcli.parse_recipe(RECIPE), seed=0)
    return lambda image: transform(image).image


def albumentations_pipeline():
    import albumentations as A

    compose = A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(rotate=(-20, 20), translate_percent=(-0.2, 0.2), shear=(-15, 15), p=1.0),
        A.PixelDropout(dropout_prob=0.05, per_channel=False, drop_value=0, p=1.0),
    ], seed=0)
    return lambda image: compose(image=image)["image"]


def torchvision_pipeline():
    import torch
    from torchvision.transforms import v2

    torch.manual_seed(0)
    compose = v2.Compose([
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomAffine(degrees=20, translate=(0.2, 0.2), shear=(-15, 15, -15, 15)),
    ])

    def run(image):
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        out = compose(tensor)
        keep = torch.rand(out.shape[1:]) >= 0.05  # pixel dropout: v2 has none
        return (out * keep).permute(1, 2, 0).numpy()

    return run


def imgaug_pipeline():
    from augcli import engine

    iaa = engine.load()
    sequence = iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Affine(rotate=(-20, 20), translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)},
                   shear=(-15, 15)),
        iaa.Dropout(p=0.05),
    ], seed=0)
    return lambda image: sequence(image=image)


CONTENDERS = [("augcli", augcli_pipeline), ("albumentations", albumentations_pipeline),
              ("torchvision v2", torchvision_pipeline), ("imgaug", imgaug_pipeline)]


def per_image_seconds(function, images: list, rounds: int) -> float:
    """Median over rounds of the mean seconds per image (one warm-up pass first)."""
    for image in images[:4]:
        function(image)
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for image in images:
            function(image)
        means.append((time.perf_counter() - started) / len(images))
    return statistics.median(means)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images per round (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenCV threads (default 1; 0 keeps OpenCV's default)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.threads:
        cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    images = [cv2.cvtColor(make_photo(rng), cv2.COLOR_BGR2RGB) for _ in range(args.images)]
    assert images[0].shape == (HEIGHT, WIDTH, 3)
    print(f"{args.images} photo-like {WIDTH}x{HEIGHT} RGB images in memory, {args.rounds} "
          f"rounds, OpenCV threads: {cv2.getNumThreads()}")
    print("pipeline: fliplr 0.5; affine rotate +-20, translate +-20 %, shear +-15; "
          "dropout 0.05\n")
    results = {}
    for name, build in CONTENDERS:
        try:
            function = build()
        except ImportError as exc:
            print(f"{name:>15}: not installed ({exc.name})")
            continue
        results[name] = per_image_seconds(function, images, args.rounds)
    ours = results["augcli"]
    print()
    for name, seconds in results.items():
        ratio = "" if name == "augcli" else f"   {name}/augcli = {seconds / ours:.2f}x"
        print(f"{name:>15}: {seconds * 1000:7.2f} ms per image{ratio}")
    reference = next((n for n in ("albumentations", "torchvision v2", "imgaug") if n in results),
                     None)
    if reference is not None:
        met = "met" if results[reference] >= ours else "NOT met"
        print(f"\ntarget (augcli at least as fast as {reference} per image): {met}")


if __name__ == "__main__":
    main()
