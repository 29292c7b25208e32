"""The ``imgaug`` op: imgaug augmenters in a recipe, for scripts that used imgaug.

A step names augmenters as in ``imgaug.augmenters``, with their keyword
arguments::

    - imgaug: {Dropout: {p: 0.3}}
    - imgaug: [{Fliplr: {p: 0.5}}, {Affine: {rotate: [-20, 20]}}, Grayscale]

YAML has no tuples, so values are read as augcli reads its own parameters:
a list becomes a tuple (imgaug's ``(lo, hi)`` range, or a size), and
``{choice: [a, b]}`` becomes a list (imgaug's "pick one of"). Mappings (such
as Affine's ``scale: {x: ..., y: ...}``) are read the same way inside.

Names and keyword arguments are checked when the recipe is read: unknown
names get a did-you-mean against the augmenters that work, keywords are
checked against the augmenter's signature, and the augmenter is built once so
imgaug's own checks run before any work. ``seed`` is augcli's: each output
draws one in ``sample`` and the manifest records it with the augmenters, so an
output replays exactly and does not depend on the worker that made it.

Boxes cannot follow an imgaug step (augcli does not know where an augmenter
moved the pixels), so a recipe with annotations refuses it, as it refuses
``elastic``. imgaug itself is an extra: without it a recipe with this op is a
recipe error naming ``pip install 'augcli[imgaug]'``.
"""

from __future__ import annotations

import difflib
import inspect
import warnings

import numpy as np
import yaml

from .. import engine
from .base import Op, op_seed, register

# Augmenters that work on today's NumPy and OpenCV, each with the arguments of its example
# (tests/test_ops_imgaug.py runs every one of them on an image). A list is a range, as above.
WORKING = {
    # arithmetic
    "Add": {"value": [-40, 40]},
    "AddElementwise": {"value": [-40, 40]},
    "AdditiveGaussianNoise": {"scale": [0, 25]},
    "AdditiveLaplaceNoise": {"scale": [0, 25]},
    "AdditivePoissonNoise": {"lam": [0, 16]},
    "Multiply": {"mul": [0.5, 1.5]},
    "MultiplyElementwise": {"mul": [0.5, 1.5]},
    "Cutout": {"nb_iterations": 2, "size": 0.2},
    "Dropout": {"p": 0.3},
    "CoarseDropout": {"p": 0.1, "size_percent": 0.1},
    "Dropout2d": {"p": 0.5},
    "TotalDropout": {"p": 0.2},
    "ReplaceElementwise": {"mask": 0.1, "replacement": 255},
    "ImpulseNoise": {"p": 0.05},
    "SaltAndPepper": {"p": 0.05},
    "CoarseSaltAndPepper": {"p": 0.05, "size_percent": 0.1},
    "Salt": {"p": 0.05},
    "CoarseSalt": {"p": 0.05, "size_percent": 0.1},
    "Pepper": {"p": 0.05},
    "CoarsePepper": {"p": 0.05, "size_percent": 0.1},
    "Invert": {"p": 0.5},
    "Solarize": {"p": 0.5, "threshold": [32, 128]},
    "JpegCompression": {"compression": [70, 99]},
    # artistic
    "Cartoon": {},
    # blur
    "GaussianBlur": {"sigma": [0, 3]},
    "AverageBlur": {"k": [2, 7]},
    "MedianBlur": {"k": [3, 7]},
    "BilateralBlur": {"d": [3, 10]},
    "MotionBlur": {"k": 7},
    "MeanShiftBlur": {},
    # colour
    "MultiplyAndAddToBrightness": {"mul": [0.5, 1.5], "add": [-30, 30]},
    "MultiplyBrightness": {"mul": [0.7, 1.3]},
    "AddToBrightness": {"add": [-30, 30]},
    "MultiplyHueAndSaturation": {"mul": [0.5, 1.5]},
    "MultiplyHue": {"mul": [-1, 1]},
    "MultiplySaturation": {"mul": [0, 2]},
    "RemoveSaturation": {"mul": 0.8},
    "AddToHueAndSaturation": {"value": [-30, 30]},
    "AddToHue": {"value": [-50, 50]},
    "AddToSaturation": {"value": [-50, 50]},
    "ChangeColorspace": {"to_colorspace": "HSV"},
    "Grayscale": {"alpha": [0, 1]},
    "ChangeColorTemperature": {"kelvin": [3000, 9000]},
    "KMeansColorQuantization": {"n_colors": [4, 16]},
    "UniformColorQuantization": {"n_colors": [4, 16]},
    "UniformColorQuantizationToNBits": {"nb_bits": [2, 6]},
    "Posterize": {"nb_bits": [2, 6]},
    "ChannelShuffle": {"p": 1.0},
    # contrast
    "GammaContrast": {"gamma": [0.5, 2.0]},
    "SigmoidContrast": {"gain": [3, 10], "cutoff": [0.4, 0.6]},
    "LogContrast": {"gain": [0.6, 1.4]},
    "LinearContrast": {"alpha": [0.6, 1.4]},
    "AllChannelsCLAHE": {"clip_limit": [1, 10]},
    "CLAHE": {"clip_limit": [1, 10]},
    "AllChannelsHistogramEqualization": {},
    "HistogramEqualization": {},
    # convolutional
    "Sharpen": {"alpha": [0, 1], "lightness": [0.75, 1.5]},
    "Emboss": {"alpha": [0, 1], "strength": [0.5, 1.5]},
    "EdgeDetect": {"alpha": [0, 0.7]},
    "DirectedEdgeDetect": {"alpha": [0, 0.7], "direction": [0, 1]},
    # edges
    "Canny": {"alpha": [0, 0.5]},
    # flip
    "Fliplr": {"p": 0.5},
    "Flipud": {"p": 0.5},
    # geometric
    "Affine": {"scale": [0.8, 1.2], "rotate": [-25, 25], "shear": [-8, 8]},
    "ScaleX": {"scale": [0.5, 1.5]},
    "ScaleY": {"scale": [0.5, 1.5]},
    "TranslateX": {"percent": [-0.2, 0.2]},
    "TranslateY": {"percent": [-0.2, 0.2]},
    "Rotate": {"rotate": [-30, 30]},
    "ShearX": {"shear": [-20, 20]},
    "ShearY": {"shear": [-20, 20]},
    "PiecewiseAffine": {"scale": [0.01, 0.05]},
    "PerspectiveTransform": {"scale": [0.01, 0.15]},
    "ElasticTransformation": {"alpha": [0, 40], "sigma": [4, 6]},
    "Rot90": {"k": [0, 3]},
    "Jigsaw": {"nb_rows": 4, "nb_cols": 4},
    # identity
    "Identity": {},
    # imgcorruptlike needs the imagecorruptions package: not listed.
    # pooling
    "AveragePooling": {"kernel_size": [2, 4]},
    "MaxPooling": {"kernel_size": [2, 4]},
    "MinPooling": {"kernel_size": [2, 4]},
    "MedianPooling": {"kernel_size": [2, 4]},
    # segmentation
    "Superpixels": {"p_replace": [0, 1], "n_segments": [20, 100]},
    "UniformVoronoi": {"n_points": [50, 200]},
    "RegularGridVoronoi": {"n_rows": [5, 10], "n_cols": [5, 10]},
    "RelativeRegularGridVoronoi": {"n_rows_frac": [0.05, 0.15], "n_cols_frac": [0.05, 0.15]},
    # size
    "Resize": {"size": {"height": 24, "width": 40}},
    "CropAndPad": {"percent": [-0.2, 0.2]},
    "Crop": {"percent": [0, 0.2]},
    "Pad": {"percent": [0, 0.2]},
    "PadToFixedSize": {"width": 64, "height": 64},
    "CenterPadToFixedSize": {"width": 64, "height": 64},
    "CropToFixedSize": {"width": 24, "height": 24},
    "CenterCropToFixedSize": {"width": 24, "height": 24},
    "CropToMultiplesOf": {"width_multiple": 16, "height_multiple": 16},
    "CenterCropToMultiplesOf": {"width_multiple": 16, "height_multiple": 16},
    "PadToMultiplesOf": {"width_multiple": 32, "height_multiple": 32},
    "CenterPadToMultiplesOf": {"width_multiple": 32, "height_multiple": 32},
    "CropToPowersOf": {"width_base": 2, "height_base": 2},
    "CenterCropToPowersOf": {"width_base": 2, "height_base": 2},
    "PadToPowersOf": {"width_base": 2, "height_base": 2},
    "CenterPadToPowersOf": {"width_base": 2, "height_base": 2},
    "CropToAspectRatio": {"aspect_ratio": 1.5},
    "CenterCropToAspectRatio": {"aspect_ratio": 1.5},
    "PadToAspectRatio": {"aspect_ratio": 2.0},
    "CenterPadToAspectRatio": {"aspect_ratio": 2.0},
    "CropToSquare": {},
    "CenterCropToSquare": {},
    "PadToSquare": {},
    "CenterPadToSquare": {},
    # weather
    "FastSnowyLandscape": {"lightness_threshold": [100, 255], "lightness_multiplier": [1, 4]},
    "Snowflakes": {"flake_size": [0.1, 0.4], "speed": [0.01, 0.05]},
    "Rain": {"speed": [0.1, 0.3]},
    # collections
    "RandAugment": {"n": 2, "m": [6, 12]},
}

_CHILDREN = ("takes other augmenters: put imgaug steps inside augcli's own sometimes, one_of, "
             "some_of and sequence instead")
_BLEND = "blends the results of other augmenters, which a recipe cannot give it"
_OBJECTS = "takes Python functions or objects, which a recipe cannot give it"
_BOXES = "changes bounding boxes only, and imgaug steps refuse annotations"
_NUMPY2 = "fails on NumPy 2 (imgaug 0.4 uses np.complex, removed from NumPy)"
_LAYER = "a building block of {}: use that augmenter"
_DEPRECATED = "deprecated in imgaug 0.4: use {}"

# Every other augmenter of imgaug.augmenters, and why a recipe cannot use it.
REFUSED = {
    "Augmenter": "the abstract base class of all augmenters",
    "Sequential": _CHILDREN, "SomeOf": _CHILDREN, "OneOf": _CHILDREN,
    "Sometimes": _CHILDREN, "WithChannels": _CHILDREN, "WithColorspace": _CHILDREN,
    "WithBrightnessChannels": _CHILDREN, "WithHueAndSaturation": _CHILDREN,
    "WithPolarWarping": _CHILDREN, "KeepSizeByResize": _CHILDREN,
    **dict.fromkeys((
        "BlendAlpha", "BlendAlphaMask", "BlendAlphaElementwise", "BlendAlphaSimplexNoise",
        "BlendAlphaFrequencyNoise", "BlendAlphaSomeColors", "BlendAlphaHorizontalLinearGradient",
        "BlendAlphaVerticalLinearGradient", "BlendAlphaRegularGrid", "BlendAlphaCheckerboard",
        "BlendAlphaSegMapClassIds", "BlendAlphaBoundingBoxes"), _BLEND),
    "Lambda": _OBJECTS, "AssertLambda": _OBJECTS, "AssertShape": _OBJECTS,
    "Convolve": _OBJECTS, "Voronoi": _OBJECTS,
    "ClipCBAsToImagePlanes": _BOXES, "RemoveCBAsByOutOfImageFraction": _BOXES,
    "SaveDebugImageEveryNBatches": "writes debug images to a folder of its own; augcli "
                                   "writes only into the output folder",
    "Fog": _NUMPY2, "Clouds": _NUMPY2, "CloudLayer": _NUMPY2,
    "RainLayer": _LAYER.format("Rain"), "SnowflakesLayer": _LAYER.format("Snowflakes"),
    "Noop": _DEPRECATED.format("Identity"), "AffineCv2": _DEPRECATED.format("Affine"),
}

# Keywords a recipe may not set: augcli owns seeding, and names and modes are imgaug plumbing.
_OWN_KEYWORDS = {
    "seed": "augcli seeds every output itself (from the recipe's seed); leave it out",
    "random_state": "augcli seeds every output itself (from the recipe's seed); leave it out",
    "deterministic": "augcli seeds every output itself; leave it out",
    "name": "not needed in a recipe; leave it out",
}

# Augmenters whose output size can differ from the input's: the next steps sample against
# the size they really get (see _output_shape).
RESIZING = frozenset({
    "Resize", "CropAndPad", "Crop", "Pad", "Jigsaw", "Rot90",
    *(name for name in WORKING if "To" in name and ("Crop" in name or "Pad" in name)),
})

_MISSING = f"imgaug steps need imgaug, an optional extra: {engine.INSTALL_HINT}"


def _to_imgaug(value):
    """A recipe value as imgaug wants it: lists -> tuples, {choice: [...]} -> a list."""
    if isinstance(value, list):
        return tuple(_to_imgaug(v) for v in value)
    if isinstance(value, dict):
        if set(value) == {"choice"} and isinstance(value["choice"], list):
            return [_to_imgaug(v) for v in value["choice"]]
        return {key: _to_imgaug(v) for key, v in value.items()}
    return value


def _build(iaa, name: str, kwargs: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # imgaug warns about its own deprecations
        return getattr(iaa, name)(**{k: _to_imgaug(v) for k, v in kwargs.items()})


def _chain(augmenters, seed: int):
    """The step's augmenters as one imgaug Sequential, every child seeded from ``seed``."""
    iaa = engine.load()
    # Some augmenters keep generators that seed_() does not reach (MultiplyAndAddToBrightness
    # picks its colour space with one): they are derived from imgaug's global generator while
    # the chain is built, so that is seeded too, first.
    engine.seed_global(seed)
    children = [_build(iaa, name, kwargs) for spec in augmenters
                for name, kwargs in spec.items()]
    chain = iaa.Sequential(children)
    chain.seed_(seed)
    return chain


def _run(chain, image: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return chain(image=np.ascontiguousarray(image))


def _apply(image: np.ndarray, params) -> np.ndarray:
    names = ", ".join(name for spec in params["augmenters"] for name in spec)
    try:
        return _run(_chain(params["augmenters"], params["seed"]), image)
    except Exception as exc:  # imgaug's own asserts: this input fails, the run goes on
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"imgaug {names} failed on this {image.dtype} image of shape "
                         f"{image.shape}: {message}") from None


def _output_shape(params, size):
    """(height, width) after the step: augmenters that resize run once on a blank image
    with the same seed (their crop and pad amounts depend only on the size)."""
    if not any(name in RESIZING for spec in params["augmenters"] for name in spec):
        return size
    blank = np.zeros((*size, 3), np.uint8)
    return _run(_chain(params["augmenters"], params["seed"]), blank).shape[:2]


def _sample(draw, rng, size):
    return {"augmenters": draw("augmenters"), "seed": op_seed(rng)}


# --- recipe-time checks ----------------------------------------------------------------

def _specs(body, path: str, problems):
    """(path, name, kwargs) of each augmenter in a step body, or None if the form is wrong."""
    items = body if isinstance(body, list) else [body]
    if body is None or body == {} or body == []:
        problems.add(path, "expected an imgaug augmenter like {Dropout: {p: 0.3}}, or a list "
                           "of them")
        return None
    specs: list[tuple[str, str, dict]] = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]" if isinstance(body, list) else path
        if isinstance(item, str):
            specs.append((where, item, {}))
        elif isinstance(item, dict) and item:
            for name, kwargs in item.items():
                specs.append((where, str(name), {} if kwargs is None else kwargs))
        else:
            problems.add(where, f"expected an augmenter name or {{Name: {{arguments}}}}, got "
                                f"{item!r}")
    return specs


def _check_keywords(cls, name: str, kwargs: dict, where: str, problems) -> bool:
    if not isinstance(kwargs, dict):
        problems.add(where, f"expected a mapping of {name}'s keyword arguments, got {kwargs!r}")
        return False
    signature = inspect.signature(cls.__init__)
    accepted = [p for p in signature.parameters if p != "self" and p not in _OWN_KEYWORDS]
    good = True
    for key in kwargs:
        if key in _OWN_KEYWORDS:
            problems.add(f"{where}.{key}", _OWN_KEYWORDS[key])
            good = False
        elif key not in accepted:
            close = difflib.get_close_matches(str(key), accepted, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.add(f"{where}.{key}", f"{name} has no argument '{key}'{hint}; it takes "
                                           f"{', '.join(accepted) or 'no arguments'}")
            good = False
    missing = [p.name for p in signature.parameters.values() if p.name != "self"
               and p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
    if missing:
        problems.add(where, f"{name} needs {', '.join(missing)}")
        good = False
    return good


def parse(body, path: str, problems):
    """A step body -> the op's arguments, or None (every problem added to ``problems``)."""
    from ..params import Const

    specs = _specs(body, path, problems)
    if specs is None:
        return None
    try:
        iaa = engine.load()
    except ImportError:
        problems.add(path, _MISSING)
        return None
    augmenters, good = [], len(specs) > 0
    for where, name, kwargs in specs:
        if name in REFUSED:
            problems.add(f"{where}.{name}", f"not available in recipes: {REFUSED[name]}")
            good = False
            continue
        if name not in WORKING:
            close = difflib.get_close_matches(name, list(WORKING), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.add(f"{where}.{name}", f"no working imgaug augmenter named '{name}'{hint}; "
                                            "run 'augcli ops imgaug' for the list")
            good = False
            continue
        if not _check_keywords(getattr(iaa, name), name, kwargs, f"{where}.{name}", problems):
            good = False
            continue
        try:
            _build(iaa, name, kwargs)
        except Exception as exc:  # imgaug checks its arguments with asserts and raises
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            problems.add(f"{where}.{name}", f"imgaug refuses these arguments: {message[:200]}")
            good = False
            continue
        augmenters.append({name: kwargs})
    return {"augmenters": Const(augmenters)} if good else None


def details() -> str:
    """The rest of ``augcli ops imgaug``: the augmenters that work, and those refused."""

    lines = ["augmenters that work (with an example's arguments):"]
    for name in sorted(WORKING):
        example = yaml.safe_dump(WORKING[name], default_flow_style=True, width=200).strip()
        lines.append(f"  {name}: {example}")
    lines.append("refused:")
    lines += [f"  {name}: {REFUSED[name]}" for name in sorted(REFUSED)]
    if not engine.available():
        lines.append(f"imgaug is not installed here: {_MISSING.split(': ', 1)[1]}")
    return "\n".join(lines)


register(Op(
    name="imgaug",
    summary="imgaug augmenters by name with their keyword arguments (needs the imgaug "
            "extra); a list is a range, {choice: [...]} a pick.",
    params=(),
    example="- imgaug: [{Fliplr: {p: 0.5}}, {Affine: {rotate: [-20, 20]}}, "
            "{Dropout: {p: 0.1}}]",
    sample=_sample,
    apply=_apply,
    output_shape=_output_shape,
    refuses_boxes="augcli cannot tell where an imgaug augmenter moved the pixels; use "
                  "augcli's own ops (augcli ops) in recipes with annotations",
    parse=parse,
    details=details,
))
