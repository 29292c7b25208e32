"""Per-op images per second: augcli against albumentations, torchvision v2 and Pillow.

The methodology of albumentations' public benchmark: decoded RGB images already in
memory, one thread (OpenCV and torch), one process, every output forced contiguous,
several runs over the same images; images per second as mean +- sd of the runs.

    python bench/bench_ops.py                      # 32 images 640x480, 5 runs
    python bench/bench_ops.py --images 100 --runs 10 --ops fliplr,affine,dropout

augcli runs each op as a one-op variant through ``render`` (sampling + apply, what
``run`` and ``load_transform`` do per output), with a new seed per image. The others
run their nearest transform with the same ranges, drawn per call; a library without
the op shows "-". albumentations is in the ``bench`` extra; torchvision and Pillow
are used when installed. The last column is augcli / the fastest of all.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_run import make_photo  # noqa: E402  (the same photo-like images)


def augcli_ops() -> dict:
    """op name -> its one-op recipe entry, with the ranges the others get too."""
    return {
        "fliplr": {"p": 1.0}, "flipud": {"p": 1.0}, "rot90": {"k": 1},
        "rotate": {"degrees": 20},
        "affine": {"rotate": [-20, 20], "translate": [-0.2, 0.2], "shear": [-15, 15]},
        "resize": {"width": 320, "height": 240},
        "random_resized_crop": {"size": 224},
        "perspective": {"scale": [0.05, 0.1]},
        "elastic": {"alpha": [30, 40], "sigma": [4, 5]},
        "gaussian_blur": {"sigma": [0.5, 2.0]}, "motion_blur": {"k": [3, 7]},
        "dropout": {"p": 0.05}, "coarse_dropout": {"p": 0.05, "size_percent": 0.05},
        "salt_and_pepper": {"p": 0.03}, "gaussian_noise": {"scale": [5, 15]},
        "brightness": {"factor": [0.8, 1.2]}, "contrast": {"factor": [0.8, 1.2]},
        "saturation": {"factor": [0.8, 1.2]}, "hue": {"factor": 0.05},
        "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
        "gamma": {"gamma": [0.7, 1.5]}, "grayscale": {"p": 1.0}, "invert": {"p": 1.0},
        "equalize": {"p": 1.0}, "clahe": {"clip_limit": [1, 4], "tile_grid_size": 8},
        "sharpen": {"alpha": [0.2, 0.5], "lightness": [0.8, 1.2]},
        "jpeg": {"quality": [50, 95]},
    }


def albumentations_ops() -> dict:
    import albumentations as A

    return {
        "fliplr": A.HorizontalFlip(p=1), "flipud": A.VerticalFlip(p=1),
        "rot90": A.RandomRotate90(p=1), "rotate": A.Rotate(limit=20, p=1),
        "affine": A.Affine(rotate=(-20, 20), translate_percent=(-0.2, 0.2), shear=(-15, 15),
                           p=1),
        "resize": A.Resize(240, 320, p=1),
        "random_resized_crop": A.RandomResizedCrop(size=(224, 224), p=1),
        "perspective": A.Perspective(scale=(0.05, 0.1), p=1),
        "elastic": A.ElasticTransform(alpha=35, sigma=4.5, p=1),
        "gaussian_blur": A.GaussianBlur(sigma_limit=(0.5, 2.0), blur_limit=0, p=1),
        "motion_blur": A.MotionBlur(blur_limit=(3, 7), p=1),
        "dropout": A.PixelDropout(dropout_prob=0.05, p=1),
        "coarse_dropout": A.CoarseDropout(p=1),
        "salt_and_pepper": A.SaltAndPepper(amount=(0.03, 0.03), p=1),
        "gaussian_noise": A.GaussNoise(std_range=(0.02, 0.06), p=1),
        "brightness": A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0, p=1),
        "contrast": A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.2, p=1),
        "saturation": A.ColorJitter(brightness=0, contrast=0, saturation=0.2, hue=0, p=1),
        "hue": A.ColorJitter(brightness=0, contrast=0, saturation=0, hue=0.05, p=1),
        "color_jitter": A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                                      p=1),
        "gamma": A.RandomGamma(gamma_limit=(70, 150), p=1), "grayscale": A.ToGray(p=1),
        "invert": A.InvertImg(p=1), "equalize": A.Equalize(p=1),
        "clahe": A.CLAHE(clip_limit=(1, 4), tile_grid_size=(8, 8), p=1),
        "sharpen": A.Sharpen(alpha=(0.2, 0.5), lightness=(0.8, 1.2), p=1),
        "jpeg": A.ImageCompression(quality_range=(50, 95), p=1),
    }


def torchvision_ops() -> dict:
    from torchvision.transforms import v2

    return {
        "fliplr": v2.RandomHorizontalFlip(p=1), "flipud": v2.RandomVerticalFlip(p=1),
        "rotate": v2.RandomRotation(20, interpolation=v2.InterpolationMode.BILINEAR),
        "affine": v2.RandomAffine(20, translate=(0.2, 0.2), shear=15,
                                  interpolation=v2.InterpolationMode.BILINEAR),
        "resize": v2.Resize((240, 320), antialias=False),
        "random_resized_crop": v2.RandomResizedCrop(224, antialias=False),
        "perspective": v2.RandomPerspective(0.2, p=1),
        "elastic": v2.ElasticTransform(alpha=35.0, sigma=4.5),
        "gaussian_blur": v2.GaussianBlur(kernel_size=13, sigma=(0.5, 2.0)),
        "brightness": v2.ColorJitter(brightness=0.2), "contrast": v2.ColorJitter(contrast=0.2),
        "saturation": v2.ColorJitter(saturation=0.2), "hue": v2.ColorJitter(hue=0.05),
        "color_jitter": v2.ColorJitter(0.4, 0.4, 0.4, 0.1),
        "grayscale": v2.Grayscale(3), "invert": v2.RandomInvert(p=1),
        "equalize": v2.RandomEqualize(p=1), "jpeg": v2.JPEG((50, 95)),
    }


def pillow_ops(rng: np.random.Generator) -> dict:
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    def jpeg(image):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(50, 96)))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    def enhance(kind):
        return lambda image: kind(image).enhance(rng.uniform(0.8, 1.2))

    return {
        "fliplr": lambda image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "flipud": lambda image: image.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        "rot90": lambda image: image.transpose(Image.Transpose.ROTATE_270),
        "rotate": lambda image: image.rotate(rng.uniform(-20, 20), Image.Resampling.BILINEAR),
        "resize": lambda image: image.resize((320, 240), Image.Resampling.BILINEAR),
        "gaussian_blur": lambda image: image.filter(ImageFilter.GaussianBlur(
            rng.uniform(0.5, 2.0))),
        "brightness": enhance(ImageEnhance.Brightness),
        "contrast": enhance(ImageEnhance.Contrast),
        "saturation": enhance(ImageEnhance.Color),
        "grayscale": lambda image: image.convert("L").convert("RGB"),
        "invert": ImageOps.invert, "equalize": ImageOps.equalize,
        "sharpen": lambda image: image.filter(ImageFilter.SHARPEN), "jpeg": jpeg,
    }


def augcli_runner(op: str, args: dict):
    from augcli.recipe import parse_recipe
    from augcli.render import OutputPlan, render

    recipe = parse_recipe({"input": ".", "output": "out",
                           "variants": {"v": {"copies": 1, "ops": [{op: args}]}}})
    tree = next(iter(recipe.variants[0].expand()))
    seeds = iter(range(10**9))
    return lambda image: np.ascontiguousarray(
        render(image, OutputPlan("", "v", 1, next(seeds), tree))[0])


def time_runs(apply, images: list, runs: int) -> tuple:
    """(mean, sd) images per second over ``runs`` passes, after one warm-up image."""
    apply(images[0])
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for image in images:
            apply(image)
        rates.append(len(images) / (time.perf_counter() - started))
    return statistics.mean(rates), statistics.stdev(rates) if runs > 1 else 0.0


def contenders(op: str, args: dict, libraries: dict) -> dict:
    """library -> (apply on one image, that library's image of each input) for one op."""
    found = {"augcli": (augcli_runner(op, args), "numpy")}
    if op in libraries.get("albumentations", {}):
        album = libraries["albumentations"][op]
        found["albumentations"] = (
            lambda image: np.ascontiguousarray(album(image=image)["image"]), "numpy")
    if op in libraries.get("torchvision", {}):
        vision = libraries["torchvision"][op]
        found["torchvision"] = (lambda image: vision(image).contiguous(), "torch")
    if op in libraries.get("pillow", {}):
        found["pillow"] = (libraries["pillow"][op], "pil")
    return found


def load_libraries() -> dict:
    libraries = {}
    try:
        libraries["albumentations"] = albumentations_ops()
    except ImportError:
        print("albumentations not installed: pip install -e '.[bench]'")
    try:
        import torch

        torch.set_num_threads(1)
        libraries["torchvision"] = torchvision_ops()
    except ImportError:
        print("torchvision not installed: its column is empty")
    libraries["pillow"] = pillow_ops(np.random.default_rng(0))
    return libraries


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--ops", default="", help="comma-separated ops (default: all)")
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    rgb = [cv2.cvtColor(make_photo(rng, (int(width), int(height))), cv2.COLOR_BGR2RGB)
           for _ in range(args.images)]
    inputs = {"numpy": rgb}
    libraries = load_libraries()
    if "torchvision" in libraries:
        import torch

        inputs["torch"] = [torch.from_numpy(image).permute(2, 0, 1).contiguous()
                           for image in rgb]
    from PIL import Image

    inputs["pil"] = [Image.fromarray(image) for image in rgb]
    names = ["augcli", "albumentations", "torchvision", "pillow"]
    print(f"{args.images} images {args.size}, {args.runs} runs, 1 thread; img/s mean +- sd")
    print(f"| op | {' | '.join(names)} | augcli / fastest |")
    print("|---|" + "---:|" * (len(names) + 1))
    wanted = [op for op in args.ops.split(",") if op]
    for op, op_args in augcli_ops().items():
        if wanted and op not in wanted:
            continue
        rates = {library: time_runs(apply, inputs[kind], args.runs)
                 for library, (apply, kind) in contenders(op, op_args, libraries).items()}
        fastest = max(mean for mean, _ in rates.values())
        cells = [f"{rates[name][0]:.0f} +- {rates[name][1]:.0f}" if name in rates else "-"
                 for name in names]
        print(f"| {op} | {' | '.join(cells)} | {rates['augcli'][0] / fastest:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
