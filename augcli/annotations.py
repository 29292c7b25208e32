"""Annotations of an input: where they are, reading them in the parent, writing the output's.

Boxes (``augcli.targets.boxes``) follow the pixels; each format
(``augcli.formats``: yolo, voc, coco, regions) says how its files are named,
read and written. ``annotations: {format: ..., path: ..., min_visibility: ...}``
in a recipe is an ``AnnotationSpec``. A dataset with splits
(``augcli.datasets``) passes a ``Layout``: class names from its data.yaml,
labels in a ``labels`` folder beside ``images``, or a per-folder format's
file in each split.

The parent process reads (``AnnotationSource``), so a malformed file is
reported with its path and line before any work starts; workers receive plain
``ImageBoxes`` and an ``AnnotationFormat``, transform the boxes with the
output's sampled steps (``transform_boxes``) and write the per-image file
(``encode_boxes``); the parent writes a per-folder file (COCO's) from the
manifest records.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from . import formats, imagefiles, locations
from .errors import UsageError
from .formats.base import AnnotationError, AnnotationSpec, parse_classes
from .stores import StoreSpec, open_store
from .targets.boxes import DEFAULT_MIN_VISIBILITY, ImageBoxes


@dataclass(frozen=True)
class Layout:
    """Where a dataset keeps its annotations, when it is more than one folder of images.

    Made by ``augcli.datasets`` from a data.yaml or from split folders; the
    default is the plain layout (files beside the images, the format's classes
    file, one file for a per-folder format).
    """

    classes: tuple | None = None  # yolo: class names from data.yaml (no classes.txt)
    classes_from: str = ""  # where the class names come from, for messages (default: the
    # format's classes file)
    labels_folder: bool = False  # yolo: train/images/a.jpg -> train/labels/a.txt
    folder_files: tuple = ()  # (split folder, file name) pairs: a per-folder format's file
    # in each split (COCO)
    held_out: tuple = ()  # split folders copied unchanged: their per-folder file is copied


@dataclass(frozen=True)
class AnnotationFormat:
    """What a worker needs to write one image's annotation file: plain, picklable data."""

    name: str
    min_visibility: float = DEFAULT_MIN_VISIBILITY
    classes: tuple = ()  # yolo: names by class index (classes.txt); empty: labels are indices
    labels_folder: bool = False  # yolo: labels in the 'labels' folder beside 'images'
    classes_from: str = ""
    task: str = ""  # yolo: 'obb'
    suffix: str = ""  # masks: how a label map's name ends (default: the format's)
    mask_fill: int = 0  # masks: the id where the image is filled

    def file_for(self, image_relative: str) -> str | None:
        """``cats/tom_rotate_1.jpg`` -> ``cats/tom_rotate_1.txt``; None for a per-folder format.

        With ``labels_folder`` (Ultralytics' rule): the last ``images`` folder of the
        path becomes ``labels``: ``train/images/a.jpg`` -> ``train/labels/a.txt``,
        ``images/train/a.jpg`` -> ``labels/train/a.txt``.
        """
        record = formats.lookup(self.name)
        if not record.per_image:
            return None
        path = PurePosixPath(image_relative)
        if self.labels_folder:
            path = labels_path(path)
        if record.label_image:  # cats/tom.jpg -> cats/tom_mask.png
            return path.with_name(path.stem + (self.suffix or record.extension)).as_posix()
        return path.with_suffix(record.extension).as_posix()

    def output_file(self, output_relative: str, image: ImageBoxes | None) -> str | None:
        """The annotation file an output of a source with annotations ``image`` gets: the
        format's, except that a source without a label map gives its outputs none."""
        if formats.lookup(self.name).label_image and (image is None or image.mask is None):
            return None
        return self.file_for(output_relative)

    def is_label_image(self, relative: str) -> bool:
        """Whether an input file is a label map of this format (never a source)."""
        record = formats.lookup(self.name)
        return record.label_image and relative.endswith(self.suffix or record.extension)


def read_options(spec: AnnotationSpec) -> dict:
    """What a format's reader is told beyond the file, only what the recipe or dataset says:
    YOLO's ``task`` and ``kpt_shape``, the keypoints' ``flip_idx``."""
    options: dict = {"task": spec.task} if spec.task else {}
    if spec.kpt_shape:
        options["kpt_shape"] = spec.kpt_shape
    if spec.flip_idx is not None:
        options["flip_idx"] = spec.flip_idx
    return options


def labels_path(image: PurePosixPath) -> PurePosixPath:
    """Ultralytics' images -> labels rule on a relative path (unchanged without an
    ``images`` folder in it)."""
    parts = image.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            return PurePosixPath(*parts[:index], "labels", *parts[index + 1:])
    return image


class AnnotationSource:
    """The annotations of one input folder, opened in the parent process.

    Per-image formats read each file when asked; a per-folder format (coco)
    reads its file (or, in a dataset with splits, one file per split) here, so
    a broken file stops the run before any work (``UsageError``). Files are
    read through the store of the annotation folder (a folder or a URL prefix),
    image headers through the input's, and the output's files are published
    through the output's store. ``options``: the recipe's storage options.
    """

    def __init__(self, spec: AnnotationSpec, input_dir: Path | str, layout: Layout | None = None,
                 options: dict | None = None):
        self.spec = spec
        self.layout = layout = layout or Layout()
        self.root = locations.location(spec.path if spec.path is not None else input_dir)
        self.images = open_store(input_dir, options)
        self.record = record = formats.lookup(spec.format)
        if spec.task == "pose" and not spec.kpt_shape:
            raise UsageError("annotations.kpt_shape: required with task: pose (keypoints per "
                             "line, 2 or 3 values each), as a pose data.yaml gives it")
        if not record.per_image and spec.path is None and not layout.folder_files:
            raise UsageError(f"annotations.path: required for {record.name}: "
                             f"{record.path_help} (or, in a dataset with split folders, "
                             f"one {record.title} file in each)")
        # the folder the annotation files are in (the one file's folder when path names it)
        single = not record.per_image and not layout.folder_files
        self.folder, name = locations.split(self.root) if single else (self.root, "")
        self.folder_spec = StoreSpec.of(self.folder, options)
        self.store = self.folder_spec.open()
        classes, classes_from = layout.classes, layout.classes_from or record.classes_file
        if classes is None:
            classes = self._classes(record.classes_file) if record.classes_file else ()
        self.format = AnnotationFormat(spec.format, spec.min_visibility, classes,
                                       layout.labels_folder, classes_from or "", spec.task,
                                       spec.suffix, spec.mask_fill)
        self.options = read_options(spec)
        self.folder_keys: dict = {}  # split folder ('' for the one file) -> its file's key
        self.folder_files: dict = {}  # split folder -> its loaded file
        if not record.per_image:
            self.folder_keys = {folder: f"{folder}/{name}" for folder, name in layout.folder_files}
            self.folder_keys = self.folder_keys or {"": name}
            self.folder_files = {folder: self._load(key) for folder, key in
                                 self.folder_keys.items()}
        self.found = 0  # images read so far that had an annotation file (or COCO entry)
        self.looked_for: str | None = None  # the first place looked, for "none found"

    @property
    def declared_labels(self) -> tuple:
        """Labels the dataset declares even if no box uses them (classes.txt, categories)."""
        if self.folder_files:
            return tuple(dict.fromkeys(name for loaded in self.folder_files.values()
                                       for name in loaded.names.values()))
        return self.format.classes

    def skeletons(self) -> dict:
        """label -> the keypoints' skeleton as 0-based index pairs, where the file names one
        (COCO categories' ``skeleton``, 1-based there), for drawing."""
        found: dict = {}
        for loaded in self.folder_files.values():
            for category in getattr(loaded, "document", {}).get("categories", ()):
                pairs = category.get("skeleton")
                label = loaded.names.get(category.get("id"))
                if label is not None and isinstance(pairs, list):
                    found[label] = tuple((a - 1, b - 1) for a, b in (
                        pair for pair in pairs if isinstance(pair, list) and len(pair) == 2
                        and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)))
        return found

    def _folder_file_for(self, relative: str) -> tuple:
        """(split folder, the per-folder file holding ``relative``, its name there)."""
        for folder, loaded in self.folder_files.items():
            if not folder:
                return folder, loaded, relative
            if relative.startswith(folder + "/"):
                return folder, loaded, relative[len(folder) + 1:]
        return None, None, relative

    def _text(self, key: str) -> str | None:
        """A file of the annotation folder as text, newlines as ``Path.read_text`` reads
        them; None when there is none. Raises ``OSError`` or ``UnicodeDecodeError``."""
        try:
            data = self.store.read(key)
        except FileNotFoundError:
            return None
        return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")

    def _classes(self, key: str) -> tuple:
        """Class names by index from the format's classes file (empty when there is none)."""
        path = self.store.name(key)
        try:
            text = self._text(key)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the class names ({exc})") from None
        return () if text is None else parse_classes(text, path)

    def _load(self, key: str):
        """A per-folder format's file, loaded (``UsageError`` when it cannot be)."""
        path = self.store.name(key)
        try:
            text = self._text(key)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the {self.record.title} file ({exc})") \
                from None
        if text is None:
            raise UsageError(f"{path}: cannot read the {self.record.title} file (no such file)")
        return self.record.read(text, path, **self.options)

    def file_for(self, relative: str) -> tuple:
        """The annotation file of an image (input folder ``relative``): (the spec of the
        store that holds it, its key there), for a worker to read."""
        return self.folder_spec, self._key_for(relative)

    def _key_for(self, relative: str) -> str:
        """The annotation file of an image, relative to the annotation folder."""
        if self.folder_files:
            folder, loaded, _ = self._folder_file_for(relative)
            return self.folder_keys[folder] if loaded is not None else ""
        per_image = self.format.file_for(relative)
        assert per_image is not None  # only per-folder formats have none, handled above
        return per_image

    def read(self, relative: str, image_path: Path | None = None) -> ImageBoxes:
        """Boxes of one image (no file or an empty file: no boxes); its size from the
        header of ``image_path``, or of ``relative`` in the input's store.

        Raises ``AnnotationError`` naming the file and line (or key path), or
        ``ImageReadError`` when the image header cannot be read.
        """
        if image_path is None:
            width, height = imagefiles.read_source(
                partial(self.images.header, relative, imagefiles.image_size),
                self.images.name(relative))
        else:
            width, height = imagefiles.image_size(image_path)
        if self.folder_files:
            _, loaded, name = self._folder_file_for(relative)
            if loaded is None:
                return ImageBoxes(width, height, ())
            self.found += name in loaded.by_file
            self.looked_for = self.looked_for or f"'{name}' in {loaded.path}"
            boxes = loaded.boxes(name, (width, height))
        elif self.record.label_image:
            return ImageBoxes(width, height, (), self._label_image(self._key_for(relative)))
        else:
            boxes = self._read_file(self._key_for(relative), (width, height))
        return ImageBoxes(width, height, boxes)

    def require_some(self, images: int) -> None:
        """Refuse a run where not one of ``images`` images has annotations: almost surely
        a wrong ``path`` (or COCO ``file_name`` values not relative to the input folder),
        which would otherwise quietly give images without objects."""
        if images and not self.found:
            raise UsageError(f"no annotations found for any of the {images} images (looked "
                             f"for {self.looked_for}, ...); check annotations.path (COCO: "
                             "file_name is the path relative to the input folder)")

    def _label_image(self, key: str) -> tuple | None:
        """(the spec of the store holding an image's label map, its key), or None when the
        image has none; the worker reads it."""
        self.looked_for = self.looked_for or str(self.store.name(key))
        if not self.store.exists(key):
            return None
        self.found += 1
        return self.folder_spec, key

    def _read_file(self, key: str, size) -> tuple:
        path = self.store.name(key)
        self.looked_for = self.looked_for or str(path)
        try:
            text = self._text(key)
        except UnicodeDecodeError:
            raise AnnotationError(path, None, "not UTF-8 text") from None
        except OSError as exc:
            raise AnnotationError(path, None, f"cannot read ({exc.strerror or exc})") from None
        if text is None:
            return ()
        self.found += 1
        if not text.strip():
            return ()
        return self.record.read(text, path, size, self.format.classes, self.format.classes_from,
                                **self.options)

    def output_files(self) -> list:
        """The files ``prepare_output`` and ``finish_output`` write, relative to the output."""
        if self.folder_files:
            return list(self.folder_keys.values())
        return [self._classes_output] if self._classes_output else []

    @property
    def _classes_output(self) -> str | None:
        """The output's own classes file (YOLO's classes.txt), when the names were read
        from one (a data.yaml dataset's names stay in its data.yaml)."""
        if self.format.classes and self.layout.classes is None:
            return self.record.classes_file
        return None

    def prepare_output(self, output) -> None:
        """Files the output (a store) needs before any image: YOLO's classes.txt."""
        if self._classes_output:
            text = "".join(f"{name}\n" for name in self.format.classes)
            output.publish(self._classes_output, text.encode("utf-8"))

    def finish_output(self, output, records) -> None:
        """Files made from every output's record at the end, published to ``output`` (a
        store): a per-folder format's file(s) (COCO's).

        A held-out split whose images were all copied as they are gets its
        file copied byte for byte.
        """
        records = list(records)
        for folder, loaded in self.folder_files.items():
            prefix = f"{folder}/" if folder else ""
            mine = [{**r, "output": r["output"][len(prefix):]} for r in records
                    if r["output"].startswith(prefix)]
            key = self.folder_keys[folder]  # the same name in the output
            copied = {r["output"] for r in mine if r.get("copy") and "conformed" not in r
                      and r["output"] == r["source"][len(prefix):]}
            if folder in self.layout.held_out and set(loaded.by_file) <= copied:
                output.publish(key, self.store.read(key))
            else:
                output.publish(key, self.record.write(loaded, mine).encode("utf-8"))


def encode_boxes(fmt: AnnotationFormat, image: ImageBoxes, filename: str, depth: int) -> bytes:
    """One image's annotation file (per-image formats) in ``fmt``."""
    return formats.lookup(fmt.name).write(image, filename, depth, fmt.classes).encode("utf-8")
