"""Finding, decoding, encoding and safely writing image files.

Decoding goes through Pillow: it reads every input format augcli accepts,
applies EXIF orientation, expands palettes, and lets us refuse absurd pixel
counts from the header, before any pixel memory is allocated. Ordinary JPEGs
(the common input) are decoded by OpenCV instead, to the same bytes and
faster; Pillow still reads their header. Encoding goes
through OpenCV where it can (JPEG about 1.5x and PNG about 10x faster than
Pillow here) and through Pillow for what OpenCV cannot write (GIF,
grey+alpha).

Arrays are H x W (grey, 8 or 16 bit), H x W x 2 (grey + alpha), H x W x 3
(RGB) or H x W x 4 (RGBA), in RGB order.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image, ImageOps

from . import geometry
from .errors import ImageReadError, UsageError
from .pixels import to_uint8

INPUT_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
TEMP_PREFIX = ".augcli-"
DEFAULT_MAX_PIXELS = 100_000_000  # 10,000 x 10,000: larger is treated as a decompression bomb

_FORMAT_OF_EXTENSION = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".bmp": "bmp",
                        ".gif": "gif", ".tif": "tif", ".tiff": "tif", ".webp": "webp"}
_PILLOW_FORMAT = {"jpg": "JPEG", "png": "PNG", "bmp": "BMP", "gif": "GIF", "tif": "TIFF",
                  "webp": "WEBP"}
_OPENCV_CHANNELS = {"jpg": (1, 3), "png": (1, 3, 4), "bmp": (1, 3), "tif": (1, 3, 4),
                    "webp": (3, 4)}


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in INPUT_EXTENSIONS


def format_of(path: Path) -> str:
    """Output format name ('jpg', 'png', ...) for a file name with an image extension."""
    return _FORMAT_OF_EXTENSION[path.suffix.lower()]


def scan(folder: Path, unreadable: list | None = None) -> tuple[list, list]:
    """Return (image paths, other files), relative to ``folder``, sorted.

    Hidden files and folders (leading dot) are skipped. Symbolic links to folders
    are followed, except one that leads back to a folder already walked (no loops,
    no file twice). Entries that are not regular files (FIFOs, sockets, broken
    links) count as other files: opening one could block. A subfolder that cannot
    be read is added to ``unreadable`` as (path, reason), or raises UsageError when
    no list is given. Sorting is by the POSIX path string, so the order is the same
    on every machine.
    """
    images: list = []
    others: list = []
    walked: set = set()
    pending = [Path()]
    while pending:
        relative_dir = pending.pop()
        entries = _folder_entries(folder, relative_dir, walked, unreadable)
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = relative_dir / entry.name
            if _is(entry.is_dir):
                folders.append(relative)
            elif _is(entry.is_file) and is_image_name(relative):
                images.append(relative)
            else:
                others.append(relative)
        pending.extend(reversed(folders))  # walk in sorted order: a link's target is stable
    key = Path.as_posix
    return sorted(images, key=key), sorted(others, key=key)


def split_images(keys) -> tuple[list, list]:
    """Sorted relative keys of an object store (``cats/tom.jpg``) -> (image paths, other
    keys), as ``scan`` splits a folder's files."""
    images: list = []
    others: list = []
    for key in keys:
        relative = Path(key)
        (images if is_image_name(relative) else others).append(relative)
    return images, others


def _is(test) -> bool:
    try:
        return test()
    except OSError:
        return False


def _folder_entries(folder: Path, relative_dir: Path, walked: set, unreadable) -> list:
    """The sorted entries of one folder, or [] if it was walked already or cannot be read."""
    path = folder / relative_dir
    try:
        status = path.stat()
        if (status.st_dev, status.st_ino) in walked:
            return []
        walked.add((status.st_dev, status.st_ino))
        with os.scandir(path) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as exc:
        reason = f"cannot read this folder ({exc.strerror or exc}); its images were skipped"
        if unreadable is None:
            raise UsageError(f"{path}: {reason}") from None
        unreadable.append((relative_dir.as_posix() + "/", reason))
        return []


def looked_for() -> str:
    """What a scan counts as an image, for "no images found" messages."""
    return f"looked for {', '.join(sorted(INPUT_EXTENSIONS))}"


def scan_images(folder: Path, unreadable: list | None = None) -> tuple[list, list]:
    """``scan`` for commands that need at least one image: refuse a folder with none."""
    images, others = scan(folder, unreadable)
    require_images(images, folder)
    return images, others


def require_images(images: list, where) -> None:
    if not images:
        raise UsageError(f"no images found in {where} ({looked_for()})")


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image (first frame), EXIF-oriented, as an RGB-order array.

    Raises ImageReadError naming the file and the reason; never allocates the
    pixels of an image whose header claims more than ``max_pixels``.
    """
    path = Path(path)
    return decode_image(read_source(path.read_bytes, path), path, max_pixels)


_Got = TypeVar("_Got")


def read_source(read: Callable[[], _Got], name) -> _Got:
    """What ``read()`` gets of a source image (its bytes, or its size and time), from a
    folder or an object store; a missing or unreadable one is an ImageReadError naming it
    (``name``), worded the same whichever store it is in."""
    try:
        return read()
    except FileNotFoundError:
        raise ImageReadError(name, "file not found (was it moved or deleted during the run?)") \
            from None
    except OSError as exc:
        raise ImageReadError(name, f"cannot read ({exc.strerror or exc})") from None


def decode_image(data: bytes, name, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``read_image`` for bytes already read (from a folder or an object store);
    ``name`` is what an error message calls them."""
    try:
        if not data:
            raise ImageReadError(name, "file is empty")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(name, _too_large(width, height, max_pixels))
                fast = _decode_jpeg_opencv(image, data)
                if fast is not None:
                    return fast
                image.seek(0)
                image.load()
                # In place: an upright image (the usual case) is not copied once more.
                ImageOps.exif_transpose(image, in_place=True)
                return _to_array(image, name)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(name, _too_large(None, None, max_pixels)) from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(name, "not an image file, or a format augcli cannot read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(name, f"cannot decode ({exc})") from None


# OpenCV >= 4.10 decodes straight to RGB order; older ones decode BGR, swapped after.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_JPEG_FRAMES = (0xC0, 0xC1, 0xC2)  # Huffman-coded baseline, extended and progressive DCT
_TURN: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0), 5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)}  # Pillow's exif_transpose


def _decode_jpeg_opencv(image: Image.Image, data: bytes) -> np.ndarray | None:
    """The pixels Pillow decodes from an ordinary JPEG, decoded by OpenCV (about 25%
    faster, 30% on 1080p), or None where that is not known to give the same bytes.

    Both decode with libjpeg-turbo's defaults (accurate integer IDCT, smooth chroma
    upsampling). Taken only for a whole 8-bit Huffman-coded file (baseline,
    extended or progressive; any subsampling, restart markers, ICC profile) of one
    (grey) or three (YCbCr) components without an Adobe marker, ending at its EOI
    marker: Pillow reports a truncated file as an error where OpenCV pads it, so
    anything else (CMYK, YCCK, Adobe RGB, arithmetic coding, trailing data, MPO)
    goes through Pillow. The EXIF (or XMP) orientation is the one Pillow reads
    and is applied with the same exact transposes."""
    if image.format != "JPEG" or image.mode not in ("L", "RGB") or "adobe" in image.info \
            or not data.endswith(b"\xff\xd9") or _jpeg_frame_marker(data) not in _JPEG_FRAMES:
        return None
    grey = image.mode == "L"
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (
        cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None or array.shape[:2] != (image.height, image.width):
        return None
    if not grey and _IMREAD_RGB is None:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    turn = _TURN.get(image.getexif().get(0x0112, 1))
    return array if turn is None else turn(array)


def _jpeg_frame_marker(data: bytes) -> int | None:
    """The start-of-frame marker (0xC0 to 0xCF) of a JPEG whose segments before it are
    well formed, else None."""
    position, end = 2, len(data) - 4
    while position <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        elif marker in (0xD8, 0xD9, 0xDA) or 0xD0 <= marker <= 0xD7 or marker in (0x00, 0x01):
            return None  # no frame header before the image data: not a file we take
        else:
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return None


_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by a quarter


def image_size(path: Path | io.BytesIO) -> tuple[int, int]:
    """(width, height) as ``read_image`` will decode it (EXIF orientation applied), from
    the header only; raises ImageReadError when the header cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except Image.DecompressionBombError:
        raise ImageReadError(path, "too many pixels (refused as a decompression bomb)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, f"cannot read the image header ({exc})") from None
    return (height, width) if orientation in _SWAPS_SIDES else (width, height)


def _too_large(width, height, max_pixels) -> str:
    size = f"{width} x {height} pixels" if width else "too many pixels"
    return f"{size} is over the limit of {max_pixels:,} (refused as a decompression bomb)"


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image already in memory -> the array layout ``read_image`` returns
    (no EXIF turn: the image is taken as it is given)."""
    return _to_array(image, "<PIL image>")


def _to_array(image: Image.Image, path: Path | str) -> np.ndarray:
    """Convert Pillow's many modes to the few array layouts augcli works on."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        image = image.convert("RGB")
    elif mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    elif mode == "I":
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise ImageReadError(path, "32-bit integer pixels outside 0-65535 are not supported")
        return array.astype(np.uint16)
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert(mode + "A")  # a colour key (PNG tRNS) becomes real alpha
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(path, f"pixel mode {mode} is not supported")
    return np.asarray(image)


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


def flatten_alpha(image: np.ndarray) -> np.ndarray:
    """Composite grey+alpha or RGBA onto white, for formats without transparency."""
    channels = _channels(image)
    if channels not in (2, 4):
        return image
    colour = image[..., :channels - 1].astype(np.float32)
    alpha = image[..., channels - 1:].astype(np.float32) / 255.0
    flat = colour * alpha + 255.0 * (1.0 - alpha)
    flat = np.round(flat).astype(np.uint8)
    return flat[..., 0] if channels == 2 else flat


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any layout ``read_image`` returns -> H x W x 3 uint8; alpha is composited onto white
    (as for JPEG outputs), grey is repeated into three channels."""
    image = flatten_alpha(to_uint8(image))
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image


def encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    """Encode an RGB-order array as ``fmt`` ('jpg', 'png', ...)."""
    if fmt in ("jpg", "bmp"):  # no transparency in these: composite onto white
        image = flatten_alpha(to_uint8(image))  # flatten_alpha works on the 0-255 scale
    if fmt not in ("png", "tif"):
        image = to_uint8(image)
    if _channels(image) in _OPENCV_CHANNELS.get(fmt, ()):
        return _encode_opencv(image, fmt, quality)
    return _encode_pillow(image, fmt, quality)


def has_alpha(path, name=None) -> bool:
    """Whether an image file (a path, or a binary file object called ``name``) has
    transparency, from its header (no pixel decoding); raises ImageReadError when the
    header cannot be read."""
    name = path if name is None else name
    try:
        webp = _webp_alpha(_first_bytes(path, 30))
        if webp is not None:  # Pillow would decode the whole file to say
            return webp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    except Image.DecompressionBombError:
        raise ImageReadError(name, "too many pixels (refused as a decompression bomb)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(name, f"cannot read the image header ({exc})") from None


def _first_bytes(path, size: int) -> bytes:
    """The first bytes of a file (a path, or a binary file object left where it was)."""
    if hasattr(path, "read"):
        position = path.tell()
        head = path.read(size)
        path.seek(position)
        return head
    with open(path, "rb") as file:
        return file.read(size)


def _webp_alpha(head: bytes) -> bool | None:
    """Whether a WebP has alpha, from its first 30 bytes, as libwebp (and so Pillow) tells
    it: the extended format's alpha flag, the lossless format's alpha-is-used bit; the
    simple lossy format has none. None: not a WebP header this knows."""
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        return bool(head[20] & 0x10)
    if chunk == b"VP8L" and head[20] == 0x2F:
        return bool(int.from_bytes(head[21:25], "little") >> 28 & 1)
    if chunk == b"VP8 ":
        return False
    return None


def encode_within(image: np.ndarray, fmt: str, quality: int, max_bytes: int | None,
                  max_side: int | None, max_aspect: float | None = None) -> tuple[bytes, dict]:
    """Encode so that the file meets an upload target's limits; say what was changed.

    A side over ``max_side`` is scaled down first. Then, while the file is over
    ``max_bytes``, JPEG/WebP quality steps down by 10 to 50, after which the
    image is scaled down by the square root of the size ratio (with a margin).
    Returns the bytes and ``{"quality": q, "size": [w, h]}`` for what changed.
    Scaling never takes an image within ``max_aspect`` (long / short) over it.
    """
    original_size = image.shape[:2]
    adjustments: dict[str, int | list[int]] = {}
    if max_side is not None and max(original_size) > max_side:
        image = _scaled(image, max_side / max(original_size), max_aspect)
    data = encode(image, fmt, quality)
    while max_bytes is not None and len(data) > max_bytes:
        if fmt in ("jpg", "webp") and quality > 50:
            quality = max(50, quality - 10)
            adjustments["quality"] = quality
        else:
            image = _scaled(image, 0.95 * (max_bytes / len(data)) ** 0.5, max_aspect)
        data = encode(image, fmt, quality)
    if image.shape[:2] != original_size:
        adjustments["size"] = [image.shape[1], image.shape[0]]
    return data, adjustments


def _scaled(image: np.ndarray, factor: float, max_aspect: float | None = None) -> np.ndarray:
    height, width = image.shape[:2]
    new_width, new_height = max(1, int(width * factor)), max(1, int(height * factor))
    if max_aspect is not None and max(width, height) / min(width, height) <= max_aspect:
        # rounding a short side down must not push the ratio over the limit
        if new_width / new_height > max_aspect:
            new_height = min(height, math.ceil(new_width / max_aspect))
        elif new_height / new_width > max_aspect:
            new_width = min(width, math.ceil(new_height / max_aspect))
    return geometry.resize(image, new_width, new_height)


def _encode_opencv(image: np.ndarray, fmt: str, quality: int) -> bytes:
    channels = _channels(image)
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    flags = {"jpg": [cv2.IMWRITE_JPEG_QUALITY, quality],
             "webp": [cv2.IMWRITE_WEBP_QUALITY, quality]}.get(fmt, [])
    ok, buffer = cv2.imencode("." + fmt, image, flags)
    if not ok:  # pragma: no cover - OpenCV fails only on layouts we route to Pillow
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buffer.tobytes()


def _encode_pillow(image: np.ndarray, fmt: str, quality: int) -> bytes:
    picture = Image.fromarray(image)
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("jpg", "webp") else {}
    picture.save(buffer, _PILLOW_FORMAT[fmt], **options)
    return buffer.getvalue()


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_TEMP_ATTEMPTS = 10_000  # as tempfile's TMP_MAX
_temp_numbers = itertools.count()


def _create_temp(folder: Path) -> tuple[int, str]:
    """(descriptor, name) of a new hidden temp file in ``folder``, created for writing.

    Named after the process and a counter, and created with O_EXCL: a name held by
    anything else (another host's process on a shared folder, a leftover) is never
    opened, the next number is tried. Created with the usual mode (0666 less the
    umask) in one call; ``folder`` (and its parents) is made only when it is missing,
    so the common case costs one system call.
    """
    prefix = f"{folder}{os.sep}{TEMP_PREFIX}{os.getpid()}-"
    made_folder = False
    for _ in range(_TEMP_ATTEMPTS):
        name = f"{prefix}{next(_temp_numbers)}.tmp"
        try:
            return os.open(name, _TEMP_FLAGS, 0o666), name
        except FileExistsError:
            continue
        except FileNotFoundError:
            if made_folder:
                raise
            folder.mkdir(parents=True, exist_ok=True)
            made_folder = True
    raise FileExistsError(f"no free temporary file name in {folder}")


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temp files a killed run left behind (only augcli's own, by name)."""
    stale = list(folder.rglob(f"{TEMP_PREFIX}*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_atomic(path: Path, data) -> None:
    """Write ``data`` (bytes, or an iterable of byte chunks, written as they come) to
    ``path``, all or nothing, in plain system calls (open, write, close, rename): no file
    object, no extra stat or chmod on the way of every output."""
    path = Path(path)
    chunks = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
    handle, temp_name = _create_temp(path.parent)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(handle, view):]
        finally:
            os.close(handle)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def copy_atomic(source: Path, destination: Path) -> None:
    """Copy a file byte for byte, all or nothing."""
    with open(source, "rb") as original:
        write_atomic(destination, iter(partial(original.read, 1024 * 1024), b""))
