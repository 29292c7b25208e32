"""Is a folder ready to upload? Compare it with a profile's limits.

Tags are class folders: every folder that directly holds images is one tag,
named by its path relative to the checked folder ('cats', 'pets/dogs');
images directly in the checked folder form the tag ``'.'``. Each image is
opened once: its header gives the format (by content, not extension) and
size, then its pixels are fully decoded to catch truncated and corrupt files.
Its bytes are hashed (SHA-256) to find copies within a tag.

A tag is measured by its *usable* images: those without an error that are
not a byte-for-byte copy of an earlier image of the same tag. The folder is
ready when no file has an error and every tag has at least the profile's
minimum of usable images; warnings (small images, copies, tags under the
recommended count, misnamed extensions) do not block.

For object detection with annotations (``annotations=AnnotationSpec(...)``,
``--annotations FORMAT`` on the command line) the tags are the object labels
instead: each label's images are the usable images holding at least one of
its boxes (what Custom Vision's per-tag minimum counts), and its objects are
its boxes in them. Without annotations, detection counts images per folder.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import datasets, imagefiles
from .annotations import AnnotationSource
from .errors import EXIT_OK, EXIT_SOME_FAILED, ImageReadError, UsageError
from .executors import default_workers, open_executor
from .formats import AnnotationError, AnnotationSpec
from .profiles import DEFAULT_PROFILE, MIB, Profile, check_task, get_profile
from .report import progress_bar
from .targets.masks import LabelMapError, decode_labels, regions

EXIT_NOT_READY = EXIT_SOME_FAILED  # 1, as a run with failed inputs

ROOT_TAG = "."

ERROR = "error"
WARNING = "warning"

# Finding kinds.
UNREADABLE = "unreadable"
UNSUPPORTED_FORMAT = "unsupported-format"
FILE_TOO_LARGE = "file-too-large"
SIDE_TOO_SMALL = "side-too-small"
SIDE_TOO_LARGE = "side-too-large"
ASPECT_RATIO = "aspect-ratio"
DUPLICATE = "duplicate"
EXTENSION_MISMATCH = "extension-mismatch"
NOT_DECODED = "not-decoded"
BAD_ANNOTATION = "bad-annotation"
NO_OBJECTS = "no-objects"

# Tag statuses.
OK = "ok"
BELOW_RECOMMENDED = "below-recommended"
TOO_FEW = "too-few"

# A worker process costs a start-up (about a second) that a few files do not repay.
FILES_PER_WORKER = 16
# In the text report, a kind of finding in more files than this is shown once, with examples.
GROUP_OVER = 3

# Pillow's format names -> augcli's (imagefiles.format_of); MPO is a camera JPEG with extra frames.
_FORMAT_NAMES = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "BMP": "bmp", "DIB": "bmp",
                 "GIF": "gif", "TIFF": "tif", "WEBP": "webp"}


@dataclass(frozen=True)
class Finding:
    """One problem with one file: ``path`` is relative to the checked folder."""

    path: str
    kind: str
    severity: str  # ERROR or WARNING
    message: str

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "severity": self.severity,
                "message": self.message}


@dataclass(frozen=True)
class TagRow:
    """One tag's image count against the profile's minimum and recommendation.

    ``objects``: with annotations, the tag's boxes in its usable images.
    """

    tag: str
    images: int
    usable: int
    minimum: int
    recommended: int
    status: str  # OK, BELOW_RECOMMENDED or TOO_FEW
    objects: int | None = None

    def to_json(self) -> dict:
        counts = {} if self.objects is None else {"objects": self.objects}
        return {"tag": self.tag, "images": self.images, "usable": self.usable, **counts,
                "minimum": self.minimum, "recommended": self.recommended,
                "status": self.status}


@dataclass
class CheckReport:
    """What ``check_folder`` found; owns the verdict and the exit code."""

    folder: Path
    profile: Profile
    task: str
    tags: list = field(default_factory=list)       # TagRow, root first, then sorted
    findings: list = field(default_factory=list)   # Finding, by path then as found
    ignored: list = field(default_factory=list)    # relative paths of non-image files
    images: int = 0                                # image files checked
    usable: int = 0                                # of them, without errors and not copies
    annotations: str | None = None                 # format the objects were counted from

    @property
    def errors(self) -> list:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def tags_too_few(self) -> list:
        return [row for row in self.tags if row.status == TOO_FEW]

    @property
    def too_few_images(self) -> bool:
        """Fewer usable images than the target needs in all (AutoML: 10)."""
        return self.profile.min_total_images is not None and \
            self.usable < self.profile.min_total_images

    @property
    def ready(self) -> bool:
        return bool(self.tags) and not self.errors and not self.tags_too_few and \
            not self.too_few_images

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ready else EXIT_NOT_READY

    @property
    def upload_batches(self) -> int | None:
        """Upload requests the usable images need, or None when the target has no limit."""
        batch = self.profile.max_upload_batch
        return math.ceil(self.usable / batch) if batch else None

    def to_json(self) -> dict:
        return {
            "folder": str(self.folder),
            "profile": self.profile.name,
            "task": self.task,
            "annotations": self.annotations,
            "ready": self.ready,
            "images": self.images,
            "usable": self.usable,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "max_upload_batch": self.profile.max_upload_batch,
            "upload_batches": self.upload_batches,
            "tags": [row.to_json() for row in self.tags],
            "findings": [finding.to_json() for finding in self.findings],
            "ignored": list(self.ignored),
        }


def check_folder(folder, profile=DEFAULT_PROFILE, task: str = "classification",
                 annotations: AnnotationSpec | None = None, *, workers: int | None = None,
                 progress: bool = False) -> CheckReport:
    """Check every image under ``folder`` against ``profile`` (a name or a ``Profile``).

    ``annotations`` (detection only): count objects per label from them; the
    labels become the tags. Raises ``UsageError`` for a missing folder, an
    unknown profile or task, or an unreadable COCO file; every problem with the
    images themselves, or one image's annotations, is a finding in the report.
    Files are inspected by ``workers`` processes (default: every core; at most
    one per ``FILES_PER_WORKER`` files), behind a progress bar if ``progress``.
    """
    profile = get_profile(profile)
    task = check_task(task)
    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"no folder {folder}")
    if not folder.is_dir():
        raise UsageError(f"{folder} is a file; give the folder that holds the tag folders")
    if annotations is not None and task != "detection":
        raise UsageError("annotations count objects per tag for object detection: add "
                         "--task detection")
    source = _annotation_source(folder, annotations)
    images, others = imagefiles.scan(folder)
    if source is not None:  # label maps beside the images are their annotations
        images = [r for r in images if not source.format.is_label_image(r.as_posix())]
    report = CheckReport(folder, profile, task, ignored=[p.as_posix() for p in others],
                         images=len(images),
                         annotations=annotations.format if annotations is not None else None)
    inspected = _inspect_all(folder, images, profile, workers or default_workers(), progress)
    folders = _inspect_folders(images, inspected, report)
    minimum, recommended = profile.min_images(task), profile.recommended_images(task)
    usable = {relative for _, good in folders.values() for relative in good}
    if source is None:
        report.tags = [TagRow(tag, len(every), len(good), minimum, recommended,
                              _status(len(good), minimum, recommended))
                       for tag, (every, good) in folders.items()]
    else:
        report.tags = _label_rows(source, folder, images, usable, report, minimum,
                                  recommended)
    report.usable = len(usable)
    return report


@dataclass(frozen=True)
class FileTask:
    """One file for a worker to inspect: plain, picklable data."""

    index: int
    path: Path
    relative: str
    profile: Profile


def inspect_task(task: FileTask) -> tuple[int, list, str | None]:
    """Worker: ``inspect_file`` for one file, with its position in the folder."""
    return (task.index, *inspect_file(task.path, task.relative, task.profile))


def _inspect_all(folder: Path, images: list, profile: Profile, workers: int,
                 progress: bool) -> dict:
    """relative path -> (findings, digest) of every image, inspected in worker processes."""
    tasks = [FileTask(index, folder / relative, relative.as_posix(), profile)
             for index, relative in enumerate(images)]
    workers = max(1, min(workers, -(-len(tasks) // FILES_PER_WORKER)))
    inspected = {}
    bar = progress_bar(len(tasks), progress)
    bar.set_description("check")
    try:
        with open_executor(workers) as executor:
            for index, findings, digest in executor.map(inspect_task, tasks):
                inspected[images[index]] = (findings, digest)
                bar.update(1)
    finally:
        bar.close()
    return inspected


def _inspect_folders(images: list, inspected: dict, report) -> dict:
    """Add every image's findings to the report, with copies within a tag; per folder tag
    (root first), (every image, the usable ones)."""
    by_tag: dict[str, list[Path]] = {}
    for relative in images:
        by_tag.setdefault(relative.parent.as_posix(), []).append(relative)
    folders = {}
    for tag in sorted(by_tag, key=lambda name: (name != ROOT_TAG, name)):
        first_with_digest: dict[str, Path] = {}
        good = []
        for relative in by_tag[tag]:
            findings, digest = inspected[relative]
            copy_of = first_with_digest.setdefault(digest, relative) if digest else relative
            if copy_of != relative:
                findings.append(Finding(relative.as_posix(), DUPLICATE, WARNING,
                                        f"same bytes as {copy_of.as_posix()}: the copy adds "
                                        "nothing to training and is not counted"))
            elif not any(finding.severity == ERROR for finding in findings):
                good.append(relative)
            report.findings.extend(findings)
        folders[tag] = (by_tag[tag], good)
    return folders


def _annotation_source(folder: Path, spec: AnnotationSpec | None) -> AnnotationSource | None:
    """Where each image's boxes are. In a YOLO dataset (a data.yaml, as ``run`` writes
    one), labels follow the images -> labels rule and class names come from the data.yaml."""
    if spec is None:
        return None
    dataset = datasets.open_dataset(folder)
    if dataset is not None and dataset.yaml_file is not None:
        spec, layout = dataset.annotations(spec)
        return AnnotationSource(spec, folder, layout)
    return AnnotationSource(spec, folder)


def _label_rows(source: AnnotationSource, folder: Path, images: list, usable: set, report,
                minimum: int, recommended: int) -> list:
    """One row per object label: images holding it, usable ones, and their objects.

    An image whose annotations are malformed gets an error and stops being
    usable (``usable`` is updated); a usable image without objects, a warning.
    Labels the dataset declares (classes.txt, COCO categories) appear even
    with no objects, so a class nobody labelled shows as too few.
    """
    images_with: dict[str, set[Path]] = {}
    usable_with: dict[str, set[Path]] = {}
    objects: dict[str, int] = {}
    for relative in images:
        try:
            labels = _object_labels(source, relative.as_posix(), folder / relative)
        except ImageReadError:
            continue  # already reported as unreadable
        except (AnnotationError, LabelMapError) as exc:
            report.findings.append(Finding(relative.as_posix(), BAD_ANNOTATION, ERROR, str(exc)))
            usable.discard(relative)
            continue
        if relative in usable and not labels:
            report.findings.append(Finding(relative.as_posix(), NO_OBJECTS, WARNING,
                                           "no labelled objects: it counts for no tag"))
        for label in labels:
            images_with.setdefault(label, set()).add(relative)
            if relative in usable:
                usable_with.setdefault(label, set()).add(relative)
                objects[label] = objects.get(label, 0) + 1
    source.require_some(len(images))
    labels = sorted({*source.declared_labels, *images_with})
    return [TagRow(label, len(images_with.get(label, ())), len(usable_with.get(label, ())),
                   minimum, recommended,
                   _status(len(usable_with.get(label, ())), minimum, recommended),
                   objects.get(label, 0))
            for label in labels]


def _object_labels(source: AnnotationSource, relative: str, path: Path) -> list:
    """The label of each object of one image: its targets', or for a label map (masks)
    one per separate region of each class id (the background id, ``mask_fill``, is none)."""
    image = source.read(relative, path)
    if image.mask is None:
        return [target.label for target in image.boxes]
    spec, key = image.mask
    try:
        labels = decode_labels(spec.open().read(key), (image.width, image.height))
    except LabelMapError as exc:
        raise LabelMapError(f"{key}: {exc}") from None
    return [str(class_id) for class_id, count in
            regions(labels, source.spec.mask_fill).items() for _ in range(count)]


def _status(usable: int, minimum: int, recommended: int) -> str:
    if usable < minimum:
        return TOO_FEW
    return BELOW_RECOMMENDED if usable < recommended else OK


def inspect_file(path: Path, relative: str, profile: Profile,
                 max_pixels: int = imagefiles.DEFAULT_MAX_PIXELS) -> tuple[list, str | None]:
    """Findings for one file, and the SHA-256 of its bytes (None if it cannot be read).

    The header gives the format and size; then the first frame is fully
    decoded, unless the header claims more than ``max_pixels`` (augcli's
    decompression-bomb limit), which is only a warning here.
    """
    findings = []

    def add(kind, severity, message):
        findings.append(Finding(relative, kind, severity, message))

    try:
        size = path.stat().st_size
        digest = _sha256(path) if size else None
    except OSError as exc:
        add(UNREADABLE, ERROR, f"cannot read the file ({exc.strerror or exc})")
        return findings, None
    if profile.max_file_bytes is not None and size > profile.max_file_bytes:
        add(FILE_TOO_LARGE, ERROR, f"{_mib(size)} ({size:,} bytes) is over the limit of "
                                   f"{_mib(profile.max_file_bytes)} "
                                   f"({profile.max_file_bytes:,} bytes)")
    if size == 0:
        add(UNREADABLE, ERROR, "file is empty")
        return findings, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                pil_format = str(image.format)
                fmt = _FORMAT_NAMES.get(pil_format, pil_format.lower())
                width, height = image.size
                _check_format(fmt, path, profile, add)
                _check_sides(width, height, profile, add)
                if width * height > max_pixels:
                    add(NOT_DECODED, WARNING,
                        f"{width} x {height} px is over augcli's limit of {max_pixels:,} "
                        "pixels: only the header was checked, and 'augcli run' refuses it")
                else:
                    image.load()
    except Image.DecompressionBombError:
        add(UNREADABLE, ERROR, "too many pixels: refused as a decompression bomb")
    except Image.UnidentifiedImageError:
        add(UNREADABLE, ERROR, "not an image file, or a format Pillow cannot read")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        add(UNREADABLE, ERROR, f"cannot decode ({exc})")
    return findings, digest


def _check_format(fmt: str, path: Path, profile: Profile, add) -> None:
    if not profile.accepts(fmt):
        add(UNSUPPORTED_FORMAT, ERROR,
            f"{fmt} is not accepted by {profile.name} "
            f"(accepted: {', '.join(sorted(profile.formats))}); convert it")
    named = imagefiles.format_of(path)
    if named != fmt:
        add(EXTENSION_MISMATCH, WARNING,
            f"named {path.suffix} but holds a {fmt} image; rename it to .{fmt}")


def _check_sides(width: int, height: int, profile: Profile, add) -> None:
    short, long = sorted((width, height))
    dims = f"{width} x {height} px"
    if profile.max_side is not None and long > profile.max_side:
        add(SIDE_TOO_LARGE, ERROR, f"{dims}: a side is over the maximum of "
                                   f"{profile.max_side:,} px")
    if profile.min_side is not None and short < profile.min_side:
        add(SIDE_TOO_SMALL, WARNING, f"{dims}: a side is under {profile.min_side} px; "
                                     f"{profile.name} accepts it but upscales it")
    ratio = long / short if short else math.inf
    if profile.max_aspect_ratio is not None and ratio > profile.max_aspect_ratio:
        add(ASPECT_RATIO, ERROR, f"{dims}: aspect ratio {ratio:.1f}:1 is over "
                                 f"{profile.max_aspect_ratio:g}:1")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _mib(size: int) -> str:
    """6,300,054 -> '6.01 MiB'; 6,291,456 -> '6 MiB'."""
    return f"{size / MIB:.2f}".rstrip("0").rstrip(".") + " MiB"


# --- text for people -------------------------------------------------------------

def format_report(report: CheckReport, verbose: bool = False) -> str:
    """The report as a table of tags, then the findings grouped by file, then the verdict.

    A kind of finding in more than ``GROUP_OVER`` files is shown once, with the
    number of files and a few examples, unless ``verbose``.
    """
    profile = report.profile
    lines = [(f"{report.folder}: checked against {profile.name} ({profile.description}), "
              f"task {report.task}")]
    if report.task == "detection" and report.annotations:
        lines.append(f"(detection: tags are the object labels in the {report.annotations} "
                     "annotations; images holding each, and its objects)")
    elif report.task == "detection":
        lines.append("(detection: counting images per tag folder; objects are not counted "
                     "yet: add --annotations FORMAT to count them)")
    lines.append("")
    if not report.tags and report.images:
        lines.append(f"no labelled objects found in the {report.annotations} annotations")
    elif not report.tags:
        lines.append(f"no images found ({imagefiles.looked_for()})")
    else:
        lines.extend(_tag_table(report.tags))
    lines.extend(_finding_lines(report, verbose))
    if report.ignored:
        lines.append("")
        lines.append(f"ignored {len(report.ignored)} file(s) that are not images by name "
                     f"(e.g. {report.ignored[0]})")
    if profile.notice:  # before the verdict, which stays the last line
        lines += ["", f"note: {profile.notice}"]
    lines.append("")
    lines.append(_verdict(report))
    return "\n".join(lines)


def _finding_lines(report: CheckReport, verbose: bool) -> list:
    """Findings by file; kinds found in many files once each, with examples."""
    files_per_kind: dict[str, list[Finding]] = {}
    for finding in report.findings:
        files_per_kind.setdefault(finding.kind, []).append(finding)
    repeated = {} if verbose else {kind: found for kind, found in files_per_kind.items()
                                   if len(found) > GROUP_OVER}
    lines = []
    by_file: dict[str, list[Finding]] = {}
    for finding in report.findings:
        if finding.kind not in repeated:
            by_file.setdefault(finding.path, []).append(finding)
    if by_file:
        lines.append("")
        width = max(len(finding.kind) for found in by_file.values() for finding in found)
        for path, findings in by_file.items():
            lines.append(path)
            for finding in findings:
                lines.append(f"  {finding.severity:<7}  {finding.kind:<{width}}  "
                             f"{finding.message}")
    for kind, found in repeated.items():
        lines.append("")
        lines.append(f"{found[0].severity}  {kind}: {len(found)} files, e.g.")
        width = max(len(finding.path) for finding in found[:GROUP_OVER])
        lines += [f"  {finding.path:<{width}}  {finding.message}" for finding in found[:GROUP_OVER]]
        lines.append(f"  and {len(found) - GROUP_OVER} more (--verbose lists each)")
    return lines


def _tag_table(rows) -> list:
    with_objects = any(row.objects is not None for row in rows)
    header = ("tag", "images", "usable", *(("objects",) if with_objects else ()), "minimum",
              "recommended", "status")
    cells = [header] + [(row.tag, str(row.images), str(row.usable),
                         *((str(row.objects),) if with_objects else ()), str(row.minimum),
                         str(row.recommended), _status_text(row)) for row in rows]
    widths = [max(len(cell[i]) for cell in cells) for i in range(len(header) - 1)]
    lines = []
    for cell in cells:
        parts = [cell[0].ljust(widths[0])]
        parts += [value.rjust(widths[i]) for i, value in enumerate(cell[1:-1], start=1)]
        lines.append("  ".join(parts + [cell[-1]]))
    return lines


def _status_text(row: TagRow) -> str:
    if row.status == TOO_FEW:
        return f"{TOO_FEW}: {row.minimum - row.usable} more needed"
    if row.status == BELOW_RECOMMENDED:
        return f"{BELOW_RECOMMENDED}: {row.recommended - row.usable} more recommended"
    return OK


def _verdict(report: CheckReport) -> str:
    counts = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
    if report.ready:
        line = (f"Ready for {report.profile.name}: {report.usable} images in "
                f"{len(report.tags)} tag(s); {counts}.")
    else:
        reasons = [counts]
        if report.tags_too_few:
            reasons.append(f"{len(report.tags_too_few)} tag(s) under the minimum of "
                           f"{report.profile.min_images(report.task)} usable images")
        if not report.tags:
            reasons.append("no labelled objects" if report.images else "no images")
        if report.tags and report.too_few_images:
            reasons.append(f"{report.usable} usable images, under the minimum of "
                           f"{report.profile.min_total_images}")
        line = f"Not ready for {report.profile.name}: {'; '.join(reasons)}."
    if report.upload_batches:
        line += (f"\nUpload {report.usable} images in {report.upload_batches} batch(es) of "
                 f"at most {report.profile.max_upload_batch}.")
    return line
