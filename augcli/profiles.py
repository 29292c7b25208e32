"""Upload targets as data: the limits a hosted trainer puts on a training set.

A profile is a frozen, picklable table of numbers. ``augcli check`` compares
a folder against one; ``augcli run`` can make its outputs conform to one. A
new target is a new ``Profile`` in ``PROFILES``, not new code.

This module imports nothing heavy (no NumPy, no Pillow): anything may import it.

Limits are ``None`` when the target has none. Sizes are in pixels, file
sizes in bytes; an aspect ratio is long side / short side (``25.0`` means
25:1, either way round).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import UsageError

TASKS = ("classification", "detection")
# AutoML's names for the same tasks (``--task multiclass`` with the azureml-automl profile).
TASK_ALIASES = {"multiclass": "classification", "multilabel": "classification"}

MIB = 1024 * 1024


def check_task(task: str) -> str:
    """``task`` if it is one of ``TASKS``, else a ``UsageError`` naming the closest."""
    if task in TASKS:
        return task
    if task in TASK_ALIASES:
        return TASK_ALIASES[task]
    close = difflib.get_close_matches(str(task), TASKS, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise UsageError(f"unknown task '{task}'{hint}; choose {' or '.join(TASKS)}")


@dataclass(frozen=True)
class PerTask:
    """One number per task: ``counts.classification``, or ``counts.for_task(task)``."""

    classification: int
    detection: int

    def for_task(self, task: str) -> int:
        return getattr(self, check_task(task))


@dataclass(frozen=True)
class Profile:
    """The limits of one upload target.

    - ``formats``: accepted formats, named as ``augcli.imagefiles.format_of`` names them
      ('jpg', 'png', 'bmp', 'gif', 'tif', 'webp'), judged by a file's content,
      not its extension.
    - ``max_file_bytes``: largest accepted file.
    - ``min_side``: a smaller side is accepted but upscaled by the target, so
      ``check`` only warns; ``max_side``: a larger side is refused.
    - ``max_aspect_ratio``: long side / short side.
    - ``min_images_per_tag`` / ``recommended_per_tag``: per task; a tag below
      the minimum cannot be trained, one below the recommendation trains poorly.
    - ``max_upload_batch``: images per upload request.
    - ``source``: where the numbers come from, and the choices made reading it.
    - ``min_total_images``: usable images the whole folder needs, whatever the tags.
    - ``notice``: what every report against this target should say (a retirement).
    """

    name: str
    description: str
    formats: frozenset
    max_file_bytes: int | None
    min_side: int | None
    max_side: int | None
    max_aspect_ratio: float | None
    min_images_per_tag: PerTask
    recommended_per_tag: PerTask
    max_upload_batch: int | None
    source: str
    min_total_images: int | None = None
    notice: str | None = None

    def accepts(self, fmt: str) -> bool:
        return fmt in self.formats

    def min_images(self, task: str) -> int:
        return self.min_images_per_tag.for_task(task)

    def recommended_images(self, task: str) -> int:
        return self.recommended_per_tag.for_task(task)


CUSTOM_VISION = Profile(
    name="custom-vision",
    description="Azure AI Custom Vision, training images",
    formats=frozenset({"jpg", "png", "bmp", "gif"}),
    max_file_bytes=6 * MIB,
    min_side=256,
    max_side=10_240,
    max_aspect_ratio=25.0,
    min_images_per_tag=PerTask(classification=5, detection=15),
    recommended_per_tag=PerTask(classification=30, detection=30),
    max_upload_batch=64,
    source=(
        "Microsoft's Custom Vision 'Limits and quotas' page and its training-image guide: "
        "jpg, png, bmp, gif; at most 6 MB per training image, read here as 6 MiB "
        "(6,291,456 bytes); 256 px minimum side (smaller images are accepted and upscaled, "
        "so only a warning); 10,240 px maximum side; aspect ratio at most 25:1; at least "
        "5 images per tag for classification and 15 for object detection; the guide "
        "recommends at least 30 per tag to start (the quota table says 50+), 30 is used; "
        "64 images per upload batch. Detection counts images per tag: per folder, or with "
        "annotations, the images that hold a box of the tag."
    ),
    notice=("Custom Vision retires: full support ends on 25 Sep 2028. Its successor, Azure "
            "Machine Learning AutoML for images, reads the same folder after 'augcli export "
            "DIR --to azureml' (see 'Leaving Custom Vision' in the docs, docs/checking.md)."),
)

AZUREML_AUTOML = Profile(
    name="azureml-automl",
    description="Azure Machine Learning AutoML for images",
    formats=frozenset({"jpg", "png", "bmp", "tif"}),
    max_file_bytes=None,
    min_side=None,
    max_side=None,
    max_aspect_ratio=None,
    min_images_per_tag=PerTask(classification=1, detection=1),
    recommended_per_tag=PerTask(classification=1, detection=1),
    max_upload_batch=None,
    min_total_images=10,
    source=(
        "Azure Machine Learning's 'Set up AutoML to train computer vision models' and "
        "'Data schemas to train computer vision models': at least 10 images; formats Pillow "
        "reads (jpg, jpeg, jpe, jfif, png, bmp, tif, tiff; judged here by content, so jpg "
        "covers every JPEG name and tif every TIFF); boxes inside the image with positive "
        "area. No size, file-size or per-class limits are documented (images are resized "
        "by the model's transforms), so none is set; an upload goes to a datastore, in no "
        "batches."
    ),
)

GENERIC = Profile(
    name="generic",
    description="any trainer: every format augcli reads, no size limits, 1 image per tag",
    formats=frozenset({"jpg", "png", "bmp", "gif", "tif", "webp"}),
    max_file_bytes=None,
    min_side=None,
    max_side=None,
    max_aspect_ratio=None,
    min_images_per_tag=PerTask(classification=1, detection=1),
    recommended_per_tag=PerTask(classification=1, detection=1),
    max_upload_batch=None,
    source="augcli's own inputs: a permissive baseline that still catches unreadable "
           "files, unknown formats and duplicates.",
)

ASPECT_FITS = ("pad", "crop")


@dataclass(frozen=True)
class Conform:
    """How ``run`` brings an output within a profile's aspect-ratio limit (recipe key
    ``conform``): ``pad`` the short side with ``fill``/``cval`` (as the geometric ops
    fill), or ``crop`` the long side, centred."""

    aspect: str = "pad"
    fill: str = "constant"
    cval: float = 0.0


PROFILES = {profile.name: profile for profile in (CUSTOM_VISION, AZUREML_AUTOML, GENERIC)}

DEFAULT_PROFILE = CUSTOM_VISION.name


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a ``UsageError`` naming the closest one on a typo."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(PROFILES), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown profile '{name}'{hint}; choose one of "
                         f"{', '.join(sorted(PROFILES))}") from None

