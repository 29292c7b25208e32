"""``augcli init FOLDER``: a commented starter recipe for the folder a user already has.

The layout is read as ``run`` reads it (``datasets.open_dataset``, ``datasets.labels_beside``,
the format registry), so the recipe it writes names the labels a run would carry:

* a dataset (a data.yaml, or train/valid/test split folders): its splits, and the
  ``annotations:`` its label files show (yolo, coco, voc), or none for class folders;
* a plain folder with label files: YOLO ``images``/``labels`` folders, a COCO file, or a
  file per image (YOLO .txt, VOC .xml, regions .json) beside it -> ``annotations:``;
* class folders (classification), or a flat folder of images (plain).

The variants use only ops every annotation follows, so the recipe runs as written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from . import datasets, formats, imagefiles
from .errors import UsageError
from .formats import yolo
from .locations import is_url, join
from .stores import open_store

RECIPE_NAME = "recipe.yaml"


@dataclass(frozen=True)
class Starter:
    """What ``init`` found in a folder and the recipe it writes for it."""

    kind: str  # classification, detection, dataset, plain
    found: str  # one line: what the folder is, as the user should read it
    text: str  # the commented recipe
    example: str  # an image of the input, for the preview command it suggests


def starter_recipe(folder, recipe_path) -> Starter:
    """The starter recipe for ``folder`` (a folder, or an object-store prefix read through
    its store as ``run`` reads it), with a folder's paths relative to ``recipe_path``'s
    folder (as a recipe's paths resolve); a URL is written as it is."""
    if not is_url(folder):
        folder = Path(folder)
        if not folder.exists():
            raise UsageError(f"{folder}: no such folder")
        if not folder.is_dir():
            raise UsageError(f"{folder}: is a file; give the folder of images (or of a dataset)")
    images, others = open_store(folder).scan()
    imagefiles.require_images(images, folder)
    keys = frozenset(path.as_posix() for path in images + others)
    base = Path(recipe_path).resolve().parent
    dataset = datasets.open_dataset(folder, listing=keys)
    if dataset is not None:
        return _dataset_starter(folder, dataset, images, base)
    return _folder_starter(folder, images, others, base)


def _dataset_starter(folder: Path, dataset, images: list, base: Path) -> Starter:
    spec, _ = dataset.annotations(None)
    names = ", ".join(split.name for split in dataset.splits)
    if dataset.yaml_file is not None:
        found = f"a YOLO dataset ({dataset.yaml_name}; splits {names})"
    elif spec is not None:
        found = f"a dataset with {spec.format} labels (splits {names})"
    else:
        found = f"a classification dataset (splits {names}, class folders in each)"
    lines = _header(found, folder, base, originals=False)
    lines += [
        "# The dataset keeps its layout: the splits named here are augmented (originals",
        "# included), the others are copied unchanged, so a validation image never lands in",
        "# training. Names as the dataset has them (train, val/valid, test).",
        "splits: [train]",
    ]
    if spec is not None:
        lines += _annotations_lines(spec.format, None, base, dataset=True)
    example = next((image for image in images if dataset.augments(image.as_posix())), images[0])
    # Keypoints without a flip_idx cannot say which is left after a mirror: no flip then.
    mirror = spec is None or spec.task != yolo.POSE or spec.flip_idx is not None
    return Starter("dataset", found, _recipe(lines, spec is not None, mirror),
                   str(join(folder, example.as_posix())))


def _folder_starter(folder, images: list, others: list, base: Path) -> Starter:
    fmt, path, where, image_folder = _plain_labels(folder, images, others)
    classes = sorted({image.parts[0] for image in images if len(image.parts) > 1})
    input_folder = folder
    if fmt is not None:
        found = f"a detection folder ({fmt} labels: {where})"
        kind = "detection"
        if image_folder is not None:  # images/ beside labels/ (VOC's JPEGImages/ beside
            input_folder = join(folder, image_folder)  # Annotations/): read the images' folder
            images = [image.relative_to(image_folder) for image in images
                      if image.is_relative_to(image_folder)]
    elif classes and all(len(image.parts) > 1 for image in images):
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        found = f"a classification folder ({len(classes)} class folders: {shown})"
        kind = "classification"
    else:
        found = f"a folder of {len(images)} images"
        kind = "plain"
    lines = _header(found, input_folder, base, output_of=folder)
    if fmt is not None:
        lines += _annotations_lines(fmt, path, base)
    return Starter(kind, found, _recipe(lines, fmt is not None),
                   str(join(input_folder, images[0].as_posix())))


def _plain_labels(folder, images: list, others: list) -> tuple:
    """(format, annotations.path or None, where it showed, the images' folder or None) of
    the label files of a plain folder, or Nones without any: those ``run`` refuses to
    leave behind (``datasets.labels_beside``), or a COCO file of another name at the top."""
    store = open_store(folder)
    found = datasets.labels_beside(store, images, others)
    if found is not None and not found.mirrored:
        raise UsageError(f"{join(folder, found.shown_by)} looks like {found.format} labels "
                         "laid out in a way augcli cannot read (a label file beside its "
                         "image, or under annotations.path in the same subfolders as the "
                         "images); lay them out so, then run init again")
    if found is not None:
        path = join(folder, found.path) if found.path is not None else None
        return found.format, path, found.shown_by, found.images
    coco = formats.lookup("coco")
    for key in sorted(path.as_posix() for path in others):
        if "/" not in key and key.endswith(coco.extension):
            try:
                coco.read(store.read(key).decode("utf-8"), join(folder, key))
            except (UsageError, OSError, UnicodeDecodeError):
                continue
            return coco.name, join(folder, key), key, None
    return None, None, None, None


def _relative(path, base: Path) -> str:
    """``path`` as the recipe writes it: a folder relative to the recipe's folder (POSIX),
    a URL as it is."""
    if isinstance(path, str):
        return path
    return PurePosixPath(Path(os.path.relpath(path.resolve(), base))).as_posix()


def _scalar(value: str) -> str:
    """A string as YAML writes it on one line (quoted only where it must be)."""
    return yaml.safe_dump(value, default_flow_style=True).splitlines()[0]


def _commented(line: str, comment: str) -> str:
    """A recipe line with its comment, lined up with the others'."""
    return f"{line.ljust(28)} # {comment}"


def _header(found: str, folder: Path, base: Path, output_of: Path | None = None,
            originals: bool = True) -> list:
    """The recipe's top keys; ``originals``: a plain folder's choice to copy its sources
    (a dataset's augmented splits always keep theirs)."""
    source = output_of or folder
    output = f"{source.rstrip('/')}_aug" if isinstance(source, str) else \
        source.resolve().parent / f"{source.resolve().name}_aug"
    lines = [
        f"# A starter recipe, written by 'augcli init' for {found}.",
        "# Edit it, look with 'augcli preview', then run it with 'augcli run'.",
        "# Paths are relative to this file. Every key: docs/recipes.md.",
        "",
        _commented(f"input: {_scalar(_relative(folder, base))}",
                   "the images (walked recursively)"),
        _commented(f"output: {_scalar(_relative(output, base))}",
                   "a new folder, never inside the input"),
        "seed: 0                      # same seed, same recipe -> the same output bytes",
    ]
    if originals:
        lines.append("include_original: false      # true: copy each source next to its variants")
    return lines


def _annotations_lines(fmt: str, path: Path | None, base: Path, dataset: bool = False) -> list:
    record = formats.lookup(fmt)
    where = "found by the dataset's layout" if dataset and path is None else \
        f"in {_relative(path, base)}" if path is not None else "beside each image"
    value = f"{{format: {fmt}}}" if path is None else \
        f"{{format: {fmt}, path: {_scalar(_relative(path, base))}}}"
    return [
        f"# The labels ({record.title}, {where}) follow the pixels: every output gets its own.",
        "# Ops that labels cannot follow (elastic, imgaug) are refused with them.",
        f"annotations: {value}",
    ]


def _recipe(lines: list, labelled: bool, mirror: bool = True) -> str:
    follow = " (the labels follow each one)" if labelled else ""
    flip = [
        "  flip:",
        "    ops:",
        "      - fliplr: {p: 1}         # mirror left-right",
    ] if mirror else []
    variants = [
        "",
        "# Each variant makes suffixed copies of every image: photo.jpg ->",
        f"# {'photo_flip_1.jpg, ' if mirror else ''}photo_geometry_1.jpg .. _3, "
        "photo_colour_1.jpg, photo_colour_2.jpg.",
        "# A value [lo, hi] is drawn anew for each copy; {sweep: [a, b]} makes one copy per value.",
        f"# More ops{follow}: rotate, translate, zoom, crop, perspective, gamma, saturation, hue,",
        "# gaussian_noise, motion_blur, cutout, jpeg. 'augcli ops' lists them all, with their",
        "# parameters; 'augcli ops NAME' shows one in full.",
        "variants:",
        *flip,
        "  geometry:",
        "    copies: 3                # three copies, each sampled afresh",
        "    ops:",
        "      - affine: {rotate: [-10, 10], scale: [0.9, 1.1], translate: [-0.05, 0.05]}",
        "  colour:",
        "    copies: 2",
        "    ops:",
        "      - brightness: {factor: [0.8, 1.2]}",
        "      - contrast: {factor: [0.8, 1.2]}",
        "      - sometimes: {p: 0.5, ops: [{gaussian_blur: {sigma: [0, 1]}}]}   # half of them",
    ]
    return "\n".join(lines + variants) + "\n"


def write_starter(folder, recipe_path=RECIPE_NAME, force: bool = False) -> Starter:
    """Write the starter recipe of ``folder`` to ``recipe_path``; an existing file is
    refused unless ``force`` (a recipe someone edited is not lost to a typo)."""
    recipe_path = Path(recipe_path)
    if recipe_path.is_dir():
        raise UsageError(f"{recipe_path}: is a folder; give the recipe file to write (-o)")
    starter = starter_recipe(folder, recipe_path)  # a bad folder is named first
    if recipe_path.exists() and not force:
        raise UsageError(f"{recipe_path} exists; pass --force to replace it, or -o another file")
    recipe_path.write_text(starter.text, encoding="utf-8")
    return starter
