"""JPEG sources decoded by OpenCV give exactly the pixels Pillow decodes.

``read_image`` takes ordinary JPEGs through OpenCV (faster) and everything
else through Pillow. The reference here is Pillow itself, used directly the
way augcli always decoded: open, load, ``ImageOps.exif_transpose``, CMYK to
RGB. Every variant a JPEG writer can make (Pillow's and OpenCV's options:
subsampling, progressive, optimized tables, restart markers, ICC, EXIF and
XMP orientation, grey, CMYK, Adobe RGB, odd sizes, trailing data, damage)
must decode to the same bytes, and the ordinary ones must take the fast path.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from augcli import imagefiles
from augcli.errors import ImageReadError

from .conftest import photo_like


def pillow_reference(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        upright = ImageOps.exif_transpose(opened)
    if upright.mode == "CMYK":
        upright = upright.convert("RGB")
    return np.asarray(upright)


def took_opencv(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as opened:
        return imagefiles._decode_jpeg_opencv(opened, data) is not None


def pillow_jpeg(array: np.ndarray, mode: str | None = None, **options) -> bytes:
    picture = Image.fromarray(array)
    if mode is not None:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def opencv_jpeg(array: np.ndarray, *flags) -> bytes:
    bgr = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, list(flags))
    assert ok
    return encoded.tobytes()


def exif_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def xmp_orientation(orientation: int) -> bytes:
    return (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
            b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="'
            + str(orientation).encode() + b'"/></rdf:RDF></x:xmpmeta>')


PHOTO = photo_like(75, 101, seed=3)  # odd sides: partial MCUs on both edges
BIG = photo_like(1080, 1920, seed=4)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

# name -> JPEG bytes that OpenCV must decode exactly as Pillow does
ORDINARY = {
    **{f"pillow q{q}": pillow_jpeg(PHOTO, quality=q) for q in (1, 10, 50, 75, 90, 95, 100)},
    **{f"pillow subsampling {s}": pillow_jpeg(PHOTO, quality=90, subsampling=s)
       for s in ("4:4:4", "4:2:2", "4:2:0")},
    **{f"pillow progressive {s}": pillow_jpeg(PHOTO, quality=85, progressive=True, subsampling=s)
       for s in ("4:4:4", "4:2:2", "4:2:0")},
    "pillow optimized": pillow_jpeg(PHOTO, quality=90, optimize=True),
    "pillow restart every block": pillow_jpeg(PHOTO, quality=90, restart_marker_blocks=1),
    "pillow restart every row": pillow_jpeg(PHOTO, quality=90, restart_marker_rows=1),
    "pillow progressive restarts": pillow_jpeg(PHOTO, progressive=True, restart_marker_rows=2),
    "pillow icc profile": pillow_jpeg(PHOTO, quality=90, icc_profile=SRGB),
    "pillow comment and dpi": pillow_jpeg(PHOTO, comment=b"hello", dpi=(300, 300)),
    "pillow grey": pillow_jpeg(PHOTO, mode="L", quality=90),
    "pillow grey progressive": pillow_jpeg(PHOTO, mode="L", progressive=True),
    "pillow grey restarts": pillow_jpeg(PHOTO, mode="L", restart_marker_blocks=3),
    **{f"pillow exif orientation {o}": pillow_jpeg(PHOTO, exif=exif_orientation(o))
       for o in range(1, 9)},
    **{f"pillow grey exif orientation {o}": pillow_jpeg(PHOTO, mode="L", exif=exif_orientation(o))
       for o in (5, 6, 7, 8)},
    **{f"pillow xmp orientation {o}": pillow_jpeg(PHOTO, xmp=xmp_orientation(o))
       for o in (3, 6, 8)},
    "pillow exif orientation 9 (invalid)": pillow_jpeg(PHOTO, exif=exif_orientation(9)),
    **{f"pillow {w}x{h}": pillow_jpeg(photo_like(h, w, seed=w), quality=90)
       for w, h in ((1, 1), (2, 3), (7, 1), (1, 9), (15, 17), (16, 16), (33, 8))},
    "pillow 1920x1080 4:2:0": pillow_jpeg(BIG, quality=90),
    "pillow 1920x1080 progressive 4:4:4": pillow_jpeg(BIG, progressive=True, subsampling=0),
    **{f"opencv sampling {name}": opencv_jpeg(PHOTO, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor)
       for name, factor in (("4:1:1", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411),
                            ("4:2:0", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
                            ("4:2:2", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
                            ("4:4:0", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440),
                            ("4:4:4", cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444))},
    "opencv restart interval": opencv_jpeg(PHOTO, cv2.IMWRITE_JPEG_RST_INTERVAL, 2),
    "opencv progressive": opencv_jpeg(PHOTO, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "opencv optimized": opencv_jpeg(PHOTO, cv2.IMWRITE_JPEG_OPTIMIZE, 1),
    "opencv luma/chroma quality": opencv_jpeg(PHOTO, cv2.IMWRITE_JPEG_LUMA_QUALITY, 30,
                                              cv2.IMWRITE_JPEG_CHROMA_QUALITY, 95),
    "opencv grey": opencv_jpeg(cv2.cvtColor(PHOTO, cv2.COLOR_RGB2GRAY)),
    "opencv 1920x1080": opencv_jpeg(BIG, cv2.IMWRITE_JPEG_QUALITY, 90),
}

# name -> JPEG bytes that must go through Pillow (and still decode as Pillow does)
FALLBACK = {
    "pillow cmyk": pillow_jpeg(PHOTO, mode="CMYK", quality=90),
    "pillow cmyk exif orientation 6": pillow_jpeg(PHOTO, mode="CMYK",
                                                  exif=exif_orientation(6)),
    "pillow rgb with adobe marker (keep_rgb)": pillow_jpeg(PHOTO, keep_rgb=True),
    "trailing data after the image": pillow_jpeg(PHOTO) + b"camera maker's notes",
    "padded with zeros after the image": pillow_jpeg(PHOTO) + bytes(64),
}


@pytest.mark.parametrize("name", list(ORDINARY))
def test_ordinary_jpegs_take_opencv_and_decode_as_pillow_does(name):
    data = ORDINARY[name]
    assert took_opencv(data)
    ours = imagefiles.decode_image(data, name)
    theirs = pillow_reference(data)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("name", list(FALLBACK))
def test_other_jpegs_go_through_pillow_with_the_same_pixels(name):
    data = FALLBACK[name]
    assert not took_opencv(data)
    assert np.array_equal(imagefiles.decode_image(data, name), pillow_reference(data))


def test_orientation_turns_the_picture_as_the_exif_standard_says():
    # Hand-made expectations on a 2 x 3 picture (values = 10 * row + column): each
    # orientation says how the stored pixels must be turned to stand upright.
    stored = np.array([[0, 1, 2], [10, 11, 12]], np.uint8) * 20
    upright = {
        1: [[0, 1, 2], [10, 11, 12]],
        2: [[2, 1, 0], [12, 11, 10]],     # mirrored left-right
        3: [[12, 11, 10], [2, 1, 0]],     # turned 180
        4: [[10, 11, 12], [0, 1, 2]],     # mirrored top-bottom
        5: [[0, 10], [1, 11], [2, 12]],   # transposed
        6: [[10, 0], [11, 1], [12, 2]],   # turned 90 clockwise
        7: [[12, 2], [11, 1], [10, 0]],   # transversed
        8: [[2, 12], [1, 11], [0, 10]],   # turned 90 counter-clockwise
    }
    for orientation, expected in upright.items():
        turn = imagefiles._TURN.get(orientation, lambda a: a)
        assert np.array_equal(turn(stored), np.array(expected, np.uint8) * 20), orientation


def test_a_truncated_jpeg_is_still_an_error_naming_the_file():
    data = ORDINARY["pillow q90"]
    with pytest.raises(ImageReadError, match="cut.jpg.*truncated"):
        imagefiles.decode_image(data[: len(data) // 2], "cut.jpg")


@pytest.mark.parametrize("name", ["pillow q90", "pillow progressive 4:2:0",
                                  "pillow restart every row", "opencv sampling 4:4:0"])
def test_a_damaged_jpeg_that_still_ends_on_its_end_marker_decodes_as_pillow_does(name):
    # Pillow decodes what is there (libjpeg pads the rest); so does OpenCV, identically.
    data = ORDINARY[name]
    for kept in (0.3, 0.7):
        damaged = data[: int(len(data) * kept)] + b"\xff\xd9"
        assert np.array_equal(imagefiles.decode_image(damaged, name), pillow_reference(damaged))


def test_frame_marker_is_found_past_the_app_segments():
    assert imagefiles._jpeg_frame_marker(ORDINARY["pillow q90"]) == 0xC0
    assert imagefiles._jpeg_frame_marker(ORDINARY["pillow progressive 4:2:0"]) == 0xC2
    assert imagefiles._jpeg_frame_marker(ORDINARY["pillow icc profile"]) == 0xC0
    assert imagefiles._jpeg_frame_marker(b"\xff\xd8\xff\xda\x00\x02") is None
    assert imagefiles._jpeg_frame_marker(b"\xff\xd8junk") is None
    assert imagefiles._jpeg_frame_marker(b"\xff\xd8\xff\xe0\x00") is None


def test_arithmetic_coded_frames_go_through_pillow():
    # Rewrite a baseline frame's marker as arithmetic-coded (SOF9): OpenCV is not asked.
    data = bytearray(ORDINARY["pillow q90"])
    index = data.index(b"\xff\xc0")
    data[index + 1] = 0xC9
    assert imagefiles._jpeg_frame_marker(bytes(data)) == 0xC9
    assert not took_opencv(bytes(data))


@pytest.mark.parametrize("name", ["pillow q90", "pillow exif orientation 6", "pillow grey"])
def test_opencv_without_rgb_decoding_swaps_to_rgb_itself(name, monkeypatch):
    # OpenCV before 4.10 has no IMREAD_COLOR_RGB: decode BGR, then swap.
    monkeypatch.setattr(imagefiles, "_IMREAD_RGB", None)
    data = ORDINARY[name]
    assert took_opencv(data)
    assert np.array_equal(imagefiles.decode_image(data, name), pillow_reference(data))
