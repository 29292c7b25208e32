"""How far each "as X does" op is from X itself, in levels (0-255) per pixel.

Runs each op with fixed parameters next to the library it names and prints,
per op: the largest and the mean absolute difference and the share of pixel
values within one level. References: imgaug (shear, perspective, jpeg),
keras-preprocessing 1.1.2 (the keras op, each fill mode), Pillow's bilinear
resize (what torchvision's RandomResizedCrop does to PIL images) and, only when
torch and torchvision are installed, torchvision on tensors (antialias=True).
torch is optional and never needed by the tests.

    python bench/compare_references.py [IMAGE]

IMAGE defaults to sample_images/cat/chelsea.jpg. It is not a test and pytest
does not collect it.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from augcli import engine, imagefiles
from augcli.ops import keras as keras_dialect
from augcli.pipeline import Step, apply_steps

ROOT = Path(__file__).resolve().parents[1]
FILL = {"fill": "constant", "cval": 0}


def stats(ours, theirs) -> str:
    gap = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))
    return f"{gap.max():7.2f} {gap.mean():8.3f} {100 * (gap <= 1).mean():9.3f}%"


def shear_rows(iaa, image):
    for x, y in ((15, 12), (-20, 30), (10, 0), (0, 12)):
        theirs = iaa.Affine(shear={"x": x, "y": y}, order=1, mode="constant", cval=0)(image=image)
        ours = apply_steps(image, [Step("shear", {"x": float(x), "y": float(y), **FILL})])
        yield f"shear x={x} y={y} vs imgaug Affine", stats(ours, theirs)


def keras_rows(image):
    from keras_preprocessing.image import ImageDataGenerator

    neutral = {"theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.0,
               "flip_horizontal": False, "flip_vertical": False,
               "channel_shift_intensity": None, "brightness": None}
    transform = {**neutral, "theta": -15.0, "tx": 3.0, "ty": 5.0, "shear": 8.0, "zx": 0.9,
                 "zy": 1.1}
    for mode in ("constant", "nearest", "reflect", "wrap"):
        generator = ImageDataGenerator(fill_mode=mode, cval=77.0)
        theirs = generator.apply_transform(image.astype(np.float32), transform)
        ours = keras_dialect.apply(image, {**transform, "fill_mode": mode, "cval": 77.0})
        yield f"keras fill_mode={mode} vs keras-preprocessing", stats(ours, theirs)


def perspective_rows(iaa, image):
    import imgaug.parameters as iap

    class Fixed(iap.StochasticParameter):
        def __init__(self, values):
            super().__init__()
            self.values = values

        def _draw_samples(self, size, random_state):
            return self.values.reshape(size)

    for jitter in ([[0.05, -0.03], [0.08, 0.02], [-0.04, 0.06], [0.01, -0.07]],
                   [[0.02, 0.01], [0.03, -0.02], [0.01, 0.02], [-0.02, 0.03]]):
        jitter = np.array(jitter)
        corners = np.abs(jitter)
        corners[1, 0], corners[2], corners[3, 1] = (1 - corners[1, 0], 1 - corners[2],
                                                    1 - corners[3, 1])
        augmenter = iaa.PerspectiveTransform(scale=0.05, keep_size=True)
        augmenter.jitter = Fixed(jitter)
        theirs = augmenter(image=image)
        ours = apply_steps(image, [Step("perspective", {"scale": 0.05,
                                                        "corners": corners.tolist(), **FILL})])
        inner = (slice(5, -5), slice(5, -5))
        yield (f"perspective |jitter|<={np.abs(jitter).max():.2f} vs imgaug (inside)",
               stats(ours[inner], theirs[inner]))


def resized_crop_rows(image):
    height, width = image.shape[:2]
    window = {"x": width // 8, "y": height // 8, "crop_width": width // 2,
              "crop_height": height // 2}
    for size in ((32, 32), (64, 64), (224, 224), (width, height)):
        params = {**window, "width": size[0], "height": size[1]}
        ours = apply_steps(image, [Step("random_resized_crop", params)])
        crop = Image.fromarray(image).crop((window["x"], window["y"],
                                            window["x"] + window["crop_width"],
                                            window["y"] + window["crop_height"]))
        theirs = np.asarray(crop.resize(size, Image.BILINEAR))
        yield f"random_resized_crop -> {size[0]}x{size[1]} vs PIL bilinear", stats(ours, theirs)
        try:
            import torch
            from torchvision.transforms import functional
        except ImportError:
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        out = functional.resized_crop(tensor, window["y"], window["x"], window["crop_height"],
                                      window["crop_width"], [size[1], size[0]],
                                      antialias=True)
        yield (f"random_resized_crop -> {size[0]}x{size[1]} vs torchvision tensor",
               stats(ours, out.permute(1, 2, 0).numpy()))


def jpeg_rows(iaa, image):
    for compression in (0, 30, 50, 70, 90, 99):
        theirs = iaa.JpegCompression(compression=compression)(image=image)
        quality = round(1 + 99 * (1 - compression / 101))
        exact = apply_steps(image, [Step("jpeg", {"quality": quality})])
        naive = apply_steps(image, [Step("jpeg", {"quality": max(1, 100 - compression)})])
        yield f"jpeg c={compression}: quality {quality} vs imgaug", stats(exact, theirs)
        if quality != 100 - compression:
            yield f"jpeg c={compression}: quality {100 - compression} vs imgaug", \
                stats(naive, theirs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path,
                        default=ROOT / "sample_images/cat/chelsea.jpg",
                        help="an RGB photo (default: the sample cat)")
    path = parser.parse_args(argv).image
    image = imagefiles.to_rgb8(imagefiles.read_image(path))  # as run decodes it (EXIF too)
    iaa = engine.load()
    warnings.simplefilter("ignore")
    print(f"{path.name} {image.shape[1]}x{image.shape[0]}")
    print(f"{'op vs reference':58} {'max':>7} {'mean':>8} {'within 1':>10}")
    sections = [shear_rows(iaa, image), perspective_rows(iaa, image),
                resized_crop_rows(image), jpeg_rows(iaa, image)]
    try:
        import keras_preprocessing  # noqa: F401
        sections.insert(1, keras_rows(image))
    except ImportError:
        print("(keras-preprocessing not installed: keras rows skipped)")
    for section in sections:
        for name, row in section:
            print(f"{name:58} {row}")


if __name__ == "__main__":
    main()
