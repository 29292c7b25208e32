"""Datasets as people have them: a data.yaml (Ultralytics, Roboflow) or split folders.

``input:`` in a recipe may be

* a folder holding a ``data.yaml``, or a data.yaml itself (any name ending in
  .yaml/.yml): an Ultralytics/Roboflow YOLO dataset. ``path`` (the dataset
  root; default the data.yaml's folder, a relative one resolves against it),
  ``train``/``val``/``test`` (a folder or a list of folders under the root; a
  Roboflow ``../train/images`` that does not exist is read as
  ``train/images``, as Ultralytics does; a ``test`` folder that does not exist
  is left out with a note, as Ultralytics needs only train and val) and ``names`` (a list, or an
  id -> name map with ids 0..n-1) with an optional ``nc``. Each image's labels
  are found by Ultralytics' rule: the last ``images`` folder of its path
  becomes ``labels`` (``train/images/a.jpg`` -> ``train/labels/a.txt``,
  ``images/train/a.jpg`` -> ``labels/train/a.txt``);
* a folder whose top-level folders are splits (``train`` and at least one of
  ``val``/``valid``/``validation``/``test``), as Roboflow exports COCO (one
  COCO file per split folder, e.g. ``train/_annotations.coco.json``) and VOC
  (XML beside each image), or a classification set (``train/cat``, ``val/cat``).

Labels the layout shows travel without ``annotations:`` in the recipe (yolo for
a data.yaml or ``images``/``labels`` split folders, coco for a Roboflow COCO
file, voc for XML beside the images), so ops they cannot follow are refused as
with it; split folders with labels of two formats are refused, naming the
``annotations:`` line that picks one.

Only the augmented splits (``splits:`` in the recipe, default ``[train]``) get
variants; every other split is copied as it is (images and annotation files
byte for byte), so the output folder is a complete dataset in the same layout,
with its own data.yaml, without ``path``: its folder is the root (Ultralytics'
rule), wherever it is moved. Two splits that share a folder are refused: a
validation image must never end up in training.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import yaml

from . import formats, imagefiles, locations
from .annotations import Layout
from .errors import UsageError, excerpt
from .formats import yolo
from .formats.base import AnnotationSpec, check_class_names
from .locations import is_url, join, location
from .stores import open_store
from .targets.keypoints import flip_problem, kpt_shape_problem
from .targets.masks import DEFAULT_SUFFIX as MASK_SUFFIX

DATA_YAML = "data.yaml"
YAML_SPLITS = ("train", "val", "test")  # data.yaml keys, in the order they are written
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}
DEFAULT_SPLITS = ("train",)


@dataclass(frozen=True)
class Split:
    """One split: its name as the dataset says it, and its folders under the root."""

    name: str  # 'train', 'val', 'test' (data.yaml key) or the folder name ('valid')
    folders: tuple  # POSIX paths relative to the dataset root
    augment: bool
    listed: bool = False  # data.yaml gave a list of folders (written back as a list)

    @property
    def kind(self) -> str:
        """train, val or test, whatever the dataset calls it."""
        return SPLIT_NAMES.get(self.name.lower(), self.name)


@dataclass(frozen=True)
class Dataset:
    """A dataset with splits, found from a recipe's ``input``: in a folder or under an
    object-store prefix, its layout read from one listing of its store."""

    root: Path | str  # a folder, or a URL prefix
    splits: tuple
    yaml_file: Path | str | None = None  # the data.yaml, as the user named it (None: splits
    # are top-level folders)
    document: dict = field(default_factory=dict, compare=False)  # the data.yaml as read
    classes: tuple = ()  # names by class id, from the data.yaml
    notes: tuple = ()  # what the user should know: a test folder that does not exist
    keys: frozenset = field(default_factory=frozenset, compare=False)  # files under the root
    options: dict = field(default_factory=dict, compare=False)  # the recipe's storage options

    @property
    def where(self) -> str:
        return str(self.yaml_file or self.root)

    @property
    def yaml_name(self) -> str:
        """The data.yaml's file name, which the output's own data.yaml takes."""
        return locations.split(self.yaml_file)[1] if self.yaml_file is not None else ""

    @property
    def store(self):
        """The store of the dataset's root, opened in this process."""
        return open_store(self.root, self.options)

    @property
    def held_out(self) -> tuple:
        """Folders of the splits copied unchanged."""
        return tuple(folder for split in self.splits if not split.augment
                     for folder in split.folders)

    def split_of(self, relative: str) -> Split | None:
        """The split an image (relative to the root) belongs to."""
        for split in self.splits:
            if any(relative.startswith(folder + "/") for folder in split.folders):
                return split
        return None

    def augments(self, relative: str) -> bool:
        split = self.split_of(relative)
        return split is not None and split.augment

    def select(self, images: list, others: list,
               unreadable: list | None = None) -> tuple[list, list]:
        """Those of the root's (images, other files) that are in a split, from one listing
        of its store; only the split folders' entries stay in ``unreadable`` (folders that
        could not be read, as ``imagefiles.scan`` lists them)."""
        if unreadable is not None:
            unreadable[:] = [(path, reason) for path, reason in unreadable
                             if self.split_of(path) is not None]
        images = [path for path in images if self.split_of(path.as_posix()) is not None]
        imagefiles.require_images(images, f"the splits of {self.where}")
        return images, [path for path in others if self.split_of(path.as_posix()) is not None]

    def annotations(self, spec: AnnotationSpec | None) -> tuple:
        """(AnnotationSpec, Layout) for this dataset given the recipe's ``annotations``;
        without them, the labels its layout shows (``implied_format``): a dataset whose
        label files are right there is never augmented into one without them."""
        if self.yaml_file is not None:
            if spec is not None and spec.format != yolo.NAME:
                raise UsageError(f"annotations.format: {self.yaml_file} describes a YOLO "
                                 f"dataset; its labels are yolo, not {spec.format}")
            if spec is not None and spec.path is not None:
                raise UsageError(f"annotations.path: the labels of {self.yaml_file} are found "
                                 "by the images -> labels rule; remove annotations.path")
            spec = spec or AnnotationSpec(yolo.NAME)
            if self.document.get("task") == "obb":  # Ultralytics' data.yaml says so
                spec = replace(spec, task="obb")
            if "kpt_shape" in self.document:  # a pose dataset (Ultralytics' data.yaml keys)
                spec = replace(spec, task=yolo.POSE, kpt_shape=self._kpt_shape(),
                               flip_idx=spec.flip_idx if spec.flip_idx is not None
                               else self._flip_idx())
            return spec, Layout(classes=self.classes, classes_from=self.yaml_name,
                                labels_folder=True, held_out=self.held_out)
        if spec is None:
            implied = self.implied_format()
            if implied is None:
                return None, None
            spec = AnnotationSpec(implied)
        record = formats.lookup(spec.format)
        folder_files: tuple = ()
        if not record.per_image and spec.path is None:
            folder_files = tuple((folder, self._folder_file(folder, record))
                                 for split in self.splits for folder in split.folders)
        labels_folder = spec.format == yolo.NAME and spec.path is None and self._labels_folders()
        return spec, Layout(folder_files=folder_files, labels_folder=labels_folder,
                            held_out=self.held_out)

    def _kpt_shape(self) -> tuple:
        problem = kpt_shape_problem(self.document["kpt_shape"])
        if problem:
            raise UsageError(f"{self.yaml_file}: kpt_shape: {problem}")
        return tuple(self.document["kpt_shape"])

    def _flip_idx(self) -> tuple | None:
        """The data.yaml's ``flip_idx`` (None without one: mirroring ops are refused)."""
        flip = self.document.get("flip_idx")
        if flip is None:
            return None
        problem = flip_problem(flip, self.document["kpt_shape"][0])
        if problem:
            raise UsageError(f"{self.yaml_file}: flip_idx: {problem}")
        return tuple(flip)

    def implied_format(self) -> str | None:
        """The annotation format the layout shows, without ``annotations:`` in the recipe:
        yolo for a data.yaml or ``images``/``labels`` in the split folders (as Roboflow
        exports YOLO), coco for a Roboflow COCO file in a split folder, voc for XML files
        beside a split's images, and what ``labels_beside`` finds beside them (YOLO .txt,
        mask images); None for splits without label files (classes)."""
        if self.yaml_file is not None:
            return yolo.NAME
        found: dict = {}  # format -> the first label file or folder that shows it
        for split in self.splits:
            for folder in split.folders:
                shown = labels_shown(self.keys, folder) or self._labels_beside(folder)
                for fmt, where in shown.items():
                    found.setdefault(fmt, where)
        if len(found) > 1:
            seen = "; ".join(f"{fmt} ({where})" for fmt, where in found.items())
            raise UsageError(f"the splits of {self.root} hold labels of more than one format: "
                             f"{seen}; say which to carry, e.g. add the line "
                             f"'{annotations_line(next(iter(found)))}' to the recipe")
        return next(iter(found), None)

    def _labels_beside(self, folder: str) -> dict:
        """format -> the file that shows it, for label files beside a split's images (YOLO
        .txt, regions .json, mask images), as a plain folder's are found
        (``labels_beside``)."""
        keys = [Path(key) for key in self.keys if key.startswith(folder + "/")]
        found = labels_beside(self.store, [key for key in keys if imagefiles.is_image_name(key)],
                              [key for key in keys if not imagefiles.is_image_name(key)])
        return {} if found is None else {found.format: found.shown_by}

    def _labels_folders(self) -> bool:
        """yolo labels by Ultralytics' images -> labels rule: a split folder has ``images``
        and ``labels`` (``train/images/a.jpg`` -> ``train/labels/a.txt``; a path without an
        ``images`` folder keeps its labels beside its images)."""
        return any(_has_labels_folder(self.keys, folder)
                   for split in self.splits for folder in split.folders)

    def labels_reason(self, spec: AnnotationSpec) -> str:
        """Why a recipe without ``annotations:`` carries labels here, for its refusals."""
        if self.yaml_file is not None:
            return f"{self.yaml_file} is a YOLO dataset: its labels travel with the images"
        return (f"the splits of {self.root} hold {spec.format} labels, which travel with "
                f"the images ('{annotations_line(spec.format)}' is implied)")

    def _folder_file(self, folder: str, record: formats.Format) -> str:
        """A per-folder format's file in a split folder (COCO's): its usual name there
        (Roboflow's), else the one file with its extension."""
        usual = record.split_file
        if usual and f"{folder}/{usual}" in self.keys:
            return usual
        found = _files_in(self.keys, folder, record.extension)
        if len(found) != 1:
            what = f"no {record.extension} file" if not found else \
                f"{len(found)} {record.extension} files"
            raise UsageError(f"split folder {join(self.root, folder)} holds {what}; with "
                             f"annotations: {{format: {record.name}}} each split needs its one "
                             f"{record.title} file ({usual}), or set annotations.path")
        return found[0]

    def output_files(self) -> list:
        """Files the dataset itself adds to the output folder (relative names)."""
        return [self.yaml_name] if self.yaml_file is not None else []

    def prepare_output(self, output) -> None:
        """The output's own data.yaml, published to ``output`` (a store): the same keys
        without ``path``. Ultralytics takes a data.yaml's folder as the root when it has no
        ``path`` (``path: .`` would be the working folder), so the output dataset loads
        wherever it is moved or unzipped."""
        if self.yaml_file is None:
            return
        document = {key: value for key, value in self.document.items() if key != "path"}
        for split in self.splits:
            document[split.name] = list(split.folders) if split.listed else split.folders[0]
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        output.publish(self.yaml_name, text.encode("utf-8"))

    def summary(self) -> str:
        """``train (augmented), valid, test (copied)``: for --dry-run."""
        augmented = [s.name for s in self.splits if s.augment]
        copied = [s.name for s in self.splits if not s.augment]
        parts = [f"{', '.join(augmented)} augmented"] if augmented else []
        parts += [f"{', '.join(copied)} copied unchanged"] if copied else []
        return f"dataset {self.where}: splits {'; '.join(parts)}"


def annotations_line(fmt: str) -> str:
    """The recipe line that names an annotation format, as messages quote it."""
    return f"annotations: {{format: {fmt}}}"


# How many files beside the images ``labels_beside`` reads, at most, to tell labels from
# captions or notes: a few suffice, and a folder of a million images stays quick.
_LABEL_SAMPLES = 8
_COCO_NAMES = ("_annotations.coco.json", "annotations.json", "instances.json")


@dataclass(frozen=True)
class LabelsFound:
    """Label files a plain folder shows: their format, the file or folder that shows it,
    and the ``annotations.path`` a recipe names for them (None: beside the images)."""

    format: str
    shown_by: str
    path: str | None = None
    images: str | None = None  # the folder a recipe's input names (``images``), if not the top
    mirrored: bool = True  # False: laid out in no way a recipe can name (see labels_beside)


def labels_beside(store, images: list, others: list) -> LabelsFound | None:
    """The label files of a plain folder, or None: ``images``/``labels`` at its top
    (Ultralytics' layout), a COCO file by its usual name, mask images (``a_mask.png``
    beside ``a.jpg``), a file per image named as the image (YOLO ``.txt``, VOC ``.xml``,
    regions ``.json``) beside it, or in a folder of
    its own that mirrors the images' (VOC's ``JPEGImages``/``Annotations``). A run without
    ``annotations:`` would write outputs without them, so it is refused, naming the lines
    that carry them (``annotations: none`` leaves them on purpose); ``augcli init``
    writes those lines. A few per-image files are read, so captions beside images
    (text-to-image sets) are not taken for labels."""
    keys = frozenset(_posix(path) for path in [*images, *others])
    if _has_labels_folder(keys, ""):
        return LabelsFound(yolo.NAME, "labels", "labels", images="images")
    names = sorted(_posix(path) for path in others)
    coco = next((name for name in names if posixpath.basename(name) in _COCO_NAMES), None)
    if coco is not None:
        return LabelsFound("coco", coco, coco)
    stems = {posixpath.splitext(_posix(path))[0] for path in images}
    maps = next((_posix(path) for path in images if _posix(path).endswith(MASK_SUFFIX)
                 and _posix(path)[:-len(MASK_SUFFIX)] in stems), None)
    if maps is not None:  # Roboflow's semantic masks: a.jpg beside a_mask.png
        return LabelsFound("masks", maps)
    by_base: dict = {}  # a file name's stem -> one image of that stem, for labels elsewhere
    for path in images:
        by_base.setdefault(posixpath.splitext(posixpath.basename(_posix(path)))[0],
                           _posix(path))
    for record in formats.FORMATS.values():
        looks_like = _LOOKS_LIKE.get(record.name)
        if looks_like is None or not record.per_image:
            continue
        ours = [name for name in names if name.endswith(record.extension)]
        beside = [name for name in ours if name[:-len(record.extension)] in stems]
        shown = _sniffed(store, beside, looks_like)
        if shown:
            return LabelsFound(record.name, shown)
        elsewhere = [name for name in ours if name not in beside and
                     posixpath.basename(name)[:-len(record.extension)] in by_base]
        shown = _sniffed(store, elsewhere, looks_like)
        if shown:  # the labels' folder mirrors the images': name both in the recipe
            image = by_base[posixpath.basename(shown)[:-len(record.extension)]]
            label_folder, image_folder = posixpath.dirname(shown), posixpath.dirname(image)
            if label_folder and image_folder and \
                    shown[len(label_folder):-len(record.extension)] == \
                    posixpath.splitext(image[len(image_folder):])[0] and \
                    all(_posix(path).startswith(image_folder + "/") for path in images):
                return LabelsFound(record.name, shown, label_folder, images=image_folder)
            return LabelsFound(record.name, shown, mirrored=False)
    return None


def _sniffed(store, names: list, looks_like) -> str | None:
    """The first of a few ``names`` whose text ``looks_like`` a label file, or None."""
    for name in names[:_LABEL_SAMPLES]:
        try:
            text = store.read(name)[:4096].decode("utf-8", "replace")
        except OSError:
            continue
        if looks_like(text):
            return name
    return None


def _looks_like_yolo(text: str) -> bool:
    """Whether a .txt file holds YOLO label lines (a class id, then numbers)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines:
        return False
    try:
        return all(len(line) >= 5 and int(line[0]) >= 0 and
                   all(0 <= float(value) <= 2 for value in line[1:]) for line in lines[:20])
    except ValueError:
        return False


# What tells a per-image file of each format from other text beside an image.
_LOOKS_LIKE = {
    yolo.NAME: _looks_like_yolo,
    "voc": lambda text: "<annotation" in text,
    "regions": lambda text: '"regions"' in text,
}


def labels_shown(keys: frozenset, folder: str = "") -> dict:
    """format -> the first label file or folder that shows it in ``folder`` of a listing
    (a POSIX path under its root; "" is the root itself): a per-folder format's file by
    its usual name (Roboflow's ``_annotations.coco.json``), ``images`` beside ``labels``
    (yolo, as Roboflow exports it) or XML files (voc)."""
    prefix = f"{folder}/" if folder else ""
    found: dict = {}
    for record in formats.FORMATS.values():
        if record.split_file and prefix + record.split_file in keys:
            found.setdefault(record.name, prefix + record.split_file)
    if _has_labels_folder(keys, folder):
        found.setdefault(yolo.NAME, prefix + "labels")
    xml = _files_in(keys, folder, ".xml")
    if xml:
        found.setdefault("voc", prefix + xml[0])
    return found


def _has_labels_folder(keys: frozenset, folder: str) -> bool:
    """Whether a folder of a listing ("" the root) holds both ``images`` and ``labels``."""
    prefix = f"{folder}/" if folder else ""
    folders = _folders(keys)
    return f"{prefix}images" in folders and f"{prefix}labels" in folders


def _files_in(keys: frozenset, folder: str, extension: str) -> list:
    """Names of the files directly in a folder of a listing ("" the root) that end with
    ``extension``."""
    prefix = f"{folder}/" if folder else ""
    return sorted(key[len(prefix):] for key in keys
                  if key.startswith(prefix) and "/" not in key[len(prefix):]
                  and key.endswith(extension))


def open_dataset(where, splits=None, options: dict | None = None,
                 listing=None) -> Dataset | None:
    """The dataset ``where`` names, or None for a plain folder (or prefix) of images.

    ``where``: a folder or a URL prefix (holding a data.yaml, or split folders), or
    a data.yaml itself (a path or a URL). ``splits``: the recipe's ``splits`` (names
    of the splits to augment; default ``train``). ``options``: the recipe's storage
    options. ``listing``: the files under ``where`` (relative paths), when the caller
    has listed its store already: one listing serves both.
    """
    if where is None:
        return None
    dataset = None
    if str(where).lower().endswith((".yaml", ".yml")):
        parent, name = locations.split(where)
        text = _read_yaml(open_store(parent, options), name, where)
        if text is not None:
            dataset = _from_yaml(where, text, options)
    if dataset is None and (is_url(where) or Path(where).is_dir()):
        store = open_store(where, options)
        keys = _keys(store) if listing is None else frozenset(map(_posix, listing))
        if DATA_YAML in keys:
            path = join(where, DATA_YAML)
            dataset = _from_yaml(path, _read_yaml(store, DATA_YAML, path), options, keys)
        else:
            dataset = _from_folders(where, keys, options)
    if dataset is None:
        if splits is not None:
            raise UsageError(f"splits: {where} has no splits (no {DATA_YAML}, and no "
                             "top-level train folder beside a val/valid/test folder)")
        return None
    return _choose(dataset, splits)


def _posix(path) -> str:
    return PurePosixPath(path).as_posix()


def _keys(store) -> frozenset:
    """Every file under a store's root (as its scan sees them: hidden ones left out)."""
    images, others = store.scan([])
    return frozenset(map(_posix, images + others))


def _folders(keys) -> frozenset:
    """Every folder that holds one of ``keys``, at any depth."""
    return frozenset(parent.as_posix() for key in keys for parent in PurePosixPath(key).parents
                     if parent != PurePosixPath())


def _read_yaml(store, key: str, path) -> str | None:
    """A data.yaml's text (None when there is no such file)."""
    try:
        data = store.read(key)
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the dataset file ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: cannot read the dataset file ({exc})") from None


def _choose(dataset: Dataset, wanted) -> Dataset:
    """Mark the splits to augment; refuse names the dataset does not have."""
    wanted = DEFAULT_SPLITS if wanted is None else tuple(wanted)
    known = {split.kind: split for split in dataset.splits}
    chosen = set()
    for name in wanted:
        kind = SPLIT_NAMES.get(str(name).lower(), str(name))
        if kind not in known:
            raise UsageError(f"splits: no split '{name}' in {dataset.where}; it has "
                             f"{', '.join(split.name for split in dataset.splits)}")
        chosen.add(kind)
    splits = tuple(Split(s.name, s.folders, s.kind in chosen, s.listed) for s in dataset.splits)
    return replace(dataset, splits=splits)


def _from_folders(where, keys: frozenset, options: dict | None) -> Dataset | None:
    """Top-level split folders: ``train`` beside ``val``/``valid``/``test``."""
    found: dict = {}
    for name in sorted({key.split("/")[0] for key in keys if "/" in key}):
        kind = SPLIT_NAMES.get(name.lower())
        if kind:
            if kind in found:
                raise UsageError(f"{where} has two {kind} folders ({found[kind]} and "
                                 f"{name}); keep one")
            found[kind] = name
    if "train" not in found or len(found) < 2:
        return None
    splits = tuple(Split(found[kind], (found[kind],), False)
                   for kind in YAML_SPLITS if kind in found)
    return Dataset(where, splits, keys=keys, options=options or {})


def _from_yaml(path, text: str | None, options: dict | None,
               keys: frozenset | None = None) -> Dataset:
    """The dataset a data.yaml describes; ``keys``: the files under the data.yaml's folder,
    when listed already."""
    if text is None:
        raise UsageError(f"{path}: cannot read the dataset file (no such file)")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise UsageError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(document, dict):
        raise UsageError(f"{path}: expected a mapping with train, val and names (an "
                         "Ultralytics/Roboflow data.yaml)")
    parent = locations.split(path)[0]
    root = _root(path, parent, document.get("path"))
    if keys is None or root != parent:
        keys = _keys(open_store(root, options))
    if not keys and root != parent:
        raise UsageError(f"{path}: path: {document.get('path')} is not a folder (looked for "
                         f"{root})")
    folders = _folders(keys)
    classes = _names(path, document.get("names"), document.get("nc"))
    splits, notes = [], []
    for key in YAML_SPLITS:
        value = document.get(key)
        if value is None or value == "" or value == []:
            continue
        values = value if isinstance(value, list) else [value]
        found = [_split_folder(path, root, folders, key, item, optional=key == "test")
                 for item in values]
        missing = [str(item) for item, folder in zip(values, found, strict=True) if folder is None]
        if missing:  # Ultralytics trains without a test split; so does the output
            notes.append(f"{path}: test: {', '.join(missing)} does not exist (looked in "
                         f"{root}); it is left out, only the splits that exist are written")
        folders_ = tuple(dict.fromkeys(folder for folder in found if folder is not None))
        if folders_:
            splits.append(Split(key, folders_, False, isinstance(value, list)))
    if not any(split.name == "train" for split in splits):
        raise UsageError(f"{path}: train: missing; name the folder of training images")
    _refuse_shared_folders(path, splits)
    return Dataset(root, tuple(splits), path, document, classes, tuple(notes), keys,
                   options or {})


def _root(path, parent, value):
    """The dataset root a data.yaml's ``path`` names: its own folder without one; a
    relative one against that folder."""
    if value is None or value == "":
        return parent
    if not isinstance(value, str):
        raise UsageError(f"{path}: path: expected the dataset folder, got {excerpt(value)}")
    if is_url(value):
        return location(value)
    if isinstance(parent, Path):
        root = Path(value).expanduser()
        return root if root.is_absolute() else parent / root
    if value.startswith(("/", "~")):
        raise UsageError(f"{path}: path: {value} is a local folder; a data.yaml in an object "
                         "store names its root relative to itself, or as a URL")
    scheme, _, rest = parent.partition("://")
    return f"{scheme}://{posixpath.normpath(posixpath.join('/' + rest, value)).strip('/')}"


def _relative(root, value: str) -> str | None:
    """``value`` (a split folder) relative to the root, POSIX; None when it leads out of
    it (a folder's symbolic links are followed)."""
    if isinstance(root, Path):
        resolved, base = (root / value).resolve(), root.resolve()
        return resolved.relative_to(base).as_posix() if base in resolved.parents else None
    key = posixpath.normpath(value)
    return None if key.startswith(("../", "/")) or key in ("..", ".") else key


def _split_folder(path, root, folders: frozenset, key: str, value,
                  optional: bool = False) -> str | None:
    """A split's folder relative to the root (POSIX); refused when outside it. One that
    does not exist is refused too, unless ``optional`` (then None)."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{path}: {key}: expected a folder, got {excerpt(value)}")
    if value.lower().endswith(".txt"):
        raise UsageError(f"{path}: {key}: lists of image files ({value}) are not supported; "
                         "point it at a folder of images")
    relative, looked = _relative(root, value), value
    if relative not in folders and value.startswith("../"):  # Roboflow's exports say
        relative, looked = _relative(root, value[3:]), value[3:]  # ../train/images
    if relative is not None and relative in folders:
        return relative
    if optional:
        return None
    if relative is None:
        raise UsageError(f"{path}: {key}: {value} is not a folder inside the dataset folder "
                         f"{root}; the output mirrors the dataset, so every split must be under it")
    raise UsageError(f"{path}: {key}: {value} is not a folder (looked for "
                     f"{join(root, looked)})")


def _refuse_shared_folders(path, splits) -> None:
    """Two splits whose folders are the same or nested would leak images between them."""
    for i, first in enumerate(splits):
        for second in splits[i + 1:]:
            for a in first.folders:
                for b in second.folders:
                    if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
                        raise UsageError(
                            f"{path}: {first.name} ({a}) and {second.name} ({b}) share "
                            "images; a validation or test image would leak into another "
                            "split. Give each split its own folder")


def _names(path, names, nc) -> tuple:
    """Class names by id from ``names`` (a list or an id -> name map) and ``nc``."""
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 0):
        raise UsageError(f"{path}: nc: expected the number of classes, got {excerpt(nc)}")
    if names is None:
        if nc is None:
            raise UsageError(f"{path}: names: missing; list the class names by id")
        return tuple(f"class_{i}" for i in range(nc))  # as Ultralytics names them
    if isinstance(names, dict):
        ids = {}
        for key, name in names.items():
            index = key if isinstance(key, int) and not isinstance(key, bool) else \
                int(key) if isinstance(key, str) and key.isdigit() else None
            if index is None:
                raise UsageError(f"{path}: names: class id {excerpt(key)} is not a whole number")
            ids[index] = name
        if sorted(ids) != list(range(len(ids))):
            raise UsageError(f"{path}: names: class ids must be 0 to {len(ids) - 1}, got "
                             f"{', '.join(map(str, sorted(ids)))}")
        names = [ids[i] for i in range(len(ids))]
    if not isinstance(names, list):
        raise UsageError(f"{path}: names: expected a list of class names or an id -> name "
                         f"map, got {excerpt(names)}")
    names = [str(name) for name in names]
    check_class_names(names, lambda index: f"{path}: names[{index}]")
    if nc is not None and nc != len(names):
        raise UsageError(f"{path}: nc is {nc} but names lists {len(names)} classes")
    return tuple(names)
