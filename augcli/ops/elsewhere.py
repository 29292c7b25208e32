"""Names users bring from albumentations and torchvision, and the augcli op that does the
same: the did-you-mean of a recipe's unknown op and of ``augcli ops NAME`` quotes it, so
a recipe ported from a training script needs no lookup by hand."""

from __future__ import annotations

# (library, its name) -> what to write in an augcli recipe
_ALBUMENTATIONS = {
    "ShiftScaleRotate": "- affine: {translate: [-0.0625, 0.0625], scale: [0.9, 1.1], "
                        "rotate: [-45, 45]}",
    "Affine": "- affine: {rotate: [-15, 15], scale: [0.9, 1.1]}",
    "HorizontalFlip": "- fliplr",
    "VerticalFlip": "- flipud",
    "RandomRotate90": "- rot90: {k: [0, 3]}",
    "Rotate": "- rotate: {degrees: 90}",
    "SafeRotate": "- rotate: {degrees: 90}",
    "RandomBrightnessContrast": "- color_jitter: {brightness: 0.2, contrast: 0.2, "
                                "saturation: 0, hue: 0}",
    "ColorJitter": "- color_jitter: {brightness: 0.2, contrast: 0.2, saturation: 0.2, "
                   "hue: 0.1}",
    "HueSaturationValue": "- color_jitter: {brightness: 0, contrast: 0, saturation: 0.3, "
                          "hue: 0.05}",
    "CLAHE": "- clahe: {clip_limit: [1, 4]}",
    "RandomGamma": "- gamma: {gamma: [0.8, 1.2]}",
    "GaussianBlur": "- gaussian_blur: {sigma: [0.5, 1.5]}",
    "GaussNoise": "- gaussian_noise: {scale: [0, 10]}",
    "MotionBlur": "- motion_blur",
    "ImageCompression": "- jpeg: {quality: [70, 95]}",
    "JpegCompression": "- jpeg: {quality: [70, 95]}",
    "CoarseDropout": "- coarse_dropout",
    "RandomResizedCrop": "- random_resized_crop: {size: 224}",
    "RandomCrop": "- crop: {width: 224, height: 224}",
    "Resize": "- resize: {width: 640, height: 640}",
    "LongestMaxSize": "- letterbox: {width: 640, height: 640}",
    "PadIfNeeded": "- letterbox: {width: 640, height: 640, upscale: false}",
    "Perspective": "- perspective",
    "ElasticTransform": "- elastic",
    "ToGray": "- grayscale",
    "InvertImg": "- invert",
    "Equalize": "- equalize",
    "Sharpen": "- sharpen",
    "Mosaic": None,
    "ChannelShuffle": None,
}
_TORCHVISION = {
    "RandomHorizontalFlip": "- fliplr",
    "RandomVerticalFlip": "- flipud",
    "RandomRotation": "- rotate: {degrees: 30}",
    "RandomAffine": "- affine: {rotate: [-15, 15], translate: [-0.1, 0.1]}",
    "ColorJitter": _ALBUMENTATIONS["ColorJitter"],
    "RandomResizedCrop": "- random_resized_crop: {size: 224}",
    "RandomCrop": "- crop: {width: 224, height: 224}",
    "Resize": "- resize: {width: 224, height: 224}",
    "Grayscale": "- grayscale: {p: 1}",
    "RandomGrayscale": "- grayscale",
    "GaussianBlur": "- gaussian_blur: {sigma: [0.1, 2.0]}",
    "RandomPerspective": "- perspective",
    "RandomErasing": "- random_erasing",
    "RandomInvert": "- invert",
    "RandomEqualize": "- equalize",
    "RandomAdjustSharpness": "- sharpen",
    "ElasticTransform": "- elastic",
    "Pad": "- pad: {px: 4}",
    "JPEG": "- jpeg: {quality: [70, 95]}",
}
_NO_EQUIVALENT = {
    "Mosaic": "augcli has no mosaic op; 'augcli ricap' makes four-image montages "
              "(RICAP) with their labels",
    "ChannelShuffle": "augcli has no channel shuffle",
}


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


_KNOWN: dict = {}
for _library, _table in (("albumentations", _ALBUMENTATIONS), ("torchvision", _TORCHVISION)):
    for _name, _snippet in _table.items():
        _KNOWN.setdefault(_key(_name), []).append((_library, _name, _snippet))


def elsewhere_hint(name: str) -> str | None:
    """`` (albumentations' ShiftScaleRotate is augcli's affine: - affine: {...})`` for a
    name another library uses, else None."""
    found = _KNOWN.get(_key(name))
    if not found:
        return None
    libraries = " and ".join(f"{library}'" if library.endswith("s") else f"{library}'s"
                             for library, _, _ in found)
    original, snippet = found[0][1], found[0][2]
    if snippet is None:
        return f"{libraries} {original}: {_NO_EQUIVALENT[original]}"
    op = snippet[2:].split(":")[0]
    return f"{libraries} {original} is augcli's {op}: {snippet}"
