"""augcli.imagefiles against real files: decoding, scanning, encoding, atomic writes."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import resource
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augcli import imagefiles
from augcli.errors import ImageReadError, UsageError

from .conftest import photo_like, save

# --- helpers -------------------------------------------------------------------


def gradients(height=48, width=64) -> np.ndarray:
    """An RGB image of plain gradients: JPEG/WebP reproduce it closely."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (height + width)],
                    axis=-1).astype(np.uint8)


FOUR_COLOURS = np.array([[255, 0, 0], [0, 200, 0], [0, 0, 255], [250, 250, 20]], np.uint8)


def four_colour(height=24, width=32) -> np.ndarray:
    """An RGB image of four colours in vertical bands: exact through a palette."""
    bands = (np.arange(width) * 4 // width)[None, :].repeat(height, axis=0)
    return FOUR_COLOURS[bands]


def mean_abs_diff(a, b) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def decode(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


def temp_leftovers(folder: Path) -> list:
    return sorted(folder.glob(f"{imagefiles.TEMP_PREFIX}*.tmp"))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose valid IHDR claims width x height 8-bit grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


@contextlib.contextmanager
def memory_cap(extra_bytes: int):
    """Let the process grow by at most ``extra_bytes`` of address space (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("address-space limit needs /proc (Linux)")
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = in_use + extra_bytes
    if hard != resource.RLIM_INFINITY and hard < cap:
        pytest.skip("hard address-space limit too low")
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def read_error(path: Path, **options) -> ImageReadError:
    with pytest.raises(ImageReadError) as caught:
        imagefiles.read_image(path, **options)
    assert caught.value.path == str(path)
    return caught.value


# --- read_image: formats and names ---------------------------------------------

LOSSLESS = [("photo.png", {}), ("photo.bmp", {}), ("photo.tif", {}), ("photo.tiff", {}),
            ("photo.webp", {"lossless": True}), ("chat noir é.png", {}), ("PHOTO.PNG", {})]


@pytest.mark.parametrize("name, options", LOSSLESS, ids=[name for name, _ in LOSSLESS])
def test_read_lossless_formats_round_trip_exactly(tmp_path, name, options):
    array = photo_like()
    result = imagefiles.read_image(save(tmp_path / name, array, **options))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("name", ["photo.jpg", "photo.jpeg", "PHOTO.JPG", "chat noir é.jpg"])
def test_read_jpeg_is_close(tmp_path, name):
    array = gradients()
    result = imagefiles.read_image(save(tmp_path / name, array, quality=95))
    assert result.shape == array.shape and result.dtype == np.uint8
    assert mean_abs_diff(result, array) < 2


def test_read_gif_gives_its_colours(tmp_path):
    array = four_colour()
    result = imagefiles.read_image(save(tmp_path / "bands.gif", array))
    np.testing.assert_array_equal(result, array)


# --- read_image: EXIF orientation ------------------------------------------------


def marked(height=30, width=50) -> np.ndarray:
    """Dark grey, with a white 6x6 marker in the top-left corner."""
    array = np.full((height, width, 3), 40, np.uint8)
    array[:6, :6] = 255
    return array


def save_with_orientation(path: Path, array: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(path, array, quality=95, exif=exif)


# orientation -> (how a viewer turns the stored pixels, corner where the marker shows)
ORIENTATIONS = {
    3: (lambda a: np.rot90(a, 2), "bottom-right"),
    6: (lambda a: np.rot90(a, -1), "top-right"),   # turn 90 degrees clockwise
    8: (lambda a: np.rot90(a, 1), "bottom-left"),  # turn 90 degrees anticlockwise
}


def corner(array: np.ndarray, where: str) -> np.ndarray:
    rows = slice(None, 6) if where.startswith("top") else slice(-6, None)
    cols = slice(None, 6) if where.endswith("left") else slice(-6, None)
    return array[rows, cols]


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_read_applies_exif_orientation(tmp_path, orientation):
    stored = marked()
    turned = save_with_orientation(tmp_path / "turned.jpg", stored, orientation)
    result = imagefiles.read_image(turned)
    turn, where = ORIENTATIONS[orientation]
    assert result.shape == turn(stored).shape
    assert corner(result, where).min() > 200
    assert corner(result, "top-left").max() < 80
    assert mean_abs_diff(result, turn(stored)) < 3


def test_read_without_orientation_keeps_stored_layout(tmp_path):
    stored = marked()
    result = imagefiles.read_image(save(tmp_path / "plain.jpg", stored, quality=95))
    assert result.shape == stored.shape
    assert corner(result, "top-left").min() > 200


# --- read_image: pixel modes ----------------------------------------------------


def test_read_grey_stays_2d_uint8(tmp_path):
    grey = photo_like()[..., 0]
    result = imagefiles.read_image(save(tmp_path / "grey.png", grey))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, grey)


def test_read_16_bit_grey_keeps_values(tmp_path):
    deep = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85)  # up to 65195
    deep[0, 0], deep[0, 1] = 0, 65535
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)
    assert Image.open(path).mode.startswith("I")
    result = imagefiles.read_image(path)
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result, deep)


def test_read_grey_alpha_keeps_both_channels(tmp_path):
    la = np.stack([photo_like()[..., 1], photo_like(seed=5)[..., 2]], axis=-1)
    result = imagefiles.read_image(save(tmp_path / "la.png", la))
    assert result.shape == la.shape
    np.testing.assert_array_equal(result, la)


def test_read_rgba_keeps_alpha(tmp_path):
    rgba = np.dstack([photo_like(), photo_like(seed=9)[..., 0]])
    result = imagefiles.read_image(save(tmp_path / "rgba.png", rgba))
    np.testing.assert_array_equal(result, rgba)


def palette_image(indices: np.ndarray) -> Image.Image:
    picture = Image.fromarray(indices.astype(np.uint8), mode="P")
    picture.putpalette(FOUR_COLOURS.ravel().tolist())
    return picture


INDICES = np.arange(20 * 16).reshape(20, 16) % 4


def test_read_palette_becomes_rgb(tmp_path):
    path = tmp_path / "palette.png"
    palette_image(INDICES).save(path)
    result = imagefiles.read_image(path)
    np.testing.assert_array_equal(result, FOUR_COLOURS[INDICES])


def test_read_palette_with_transparency_becomes_rgba(tmp_path):
    path = tmp_path / "palette.png"
    palette_image(INDICES).save(path, transparency=2)
    result = imagefiles.read_image(path)
    assert result.shape == INDICES.shape + (4,)
    np.testing.assert_array_equal(result[..., 3], np.where(INDICES == 2, 0, 255))
    opaque = INDICES != 2
    np.testing.assert_array_equal(result[..., :3][opaque], FOUR_COLOURS[INDICES][opaque])


def test_read_animated_gif_gives_first_frame(tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 2] = 255
    path = tmp_path / "anim.gif"
    Image.fromarray(red).save(path, save_all=True, append_images=[Image.fromarray(blue)],
                              duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    np.testing.assert_array_equal(imagefiles.read_image(path), red)


def test_read_bilevel_becomes_grey_0_or_255(tmp_path):
    bits = (np.arange(12 * 20).reshape(12, 20) % 3) == 0
    path = tmp_path / "bits.png"
    Image.fromarray(bits).save(path)
    assert Image.open(path).mode == "1"
    result = imagefiles.read_image(path)
    assert result.dtype == np.uint8 and result.ndim == 2
    np.testing.assert_array_equal(result, np.where(bits, 255, 0))


# --- read_image: errors ---------------------------------------------------------


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty" in read_error(path).reason


def test_truncated_jpeg_is_refused(tmp_path):
    whole = save(tmp_path / "whole.jpg", photo_like(), quality=95).read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(whole[:len(whole) // 2])
    assert "decode" in read_error(path).reason


def test_text_named_png_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n", encoding="utf-8")
    assert "not an image" in read_error(path).reason


def test_more_pixels_than_max_pixels_is_refused(tmp_path):
    path = save(tmp_path / "small.png", photo_like(20, 20))
    reason = read_error(path, max_pixels=100).reason
    assert "decompression bomb" in reason and "20 x 20" in reason
    assert imagefiles.read_image(path, max_pixels=400).shape == (20, 20, 3)


@pytest.mark.parametrize("side", [60_000, 12_000])  # over Pillow's own limit / only over ours
def test_header_claiming_huge_size_is_refused_without_allocating(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(side, side))
    with memory_cap(512 * 1024 * 1024):
        error = read_error(path)
    assert "decompression bomb" in error.reason


# --- scan -----------------------------------------------------------------------


def make_tree(folder: Path) -> None:
    for name in ["b.png", "A.JPG", "a/z.gif", "a b/c.webp", "a-b/d.tiff", "a/readme.txt",
                 "notes.md", ".hidden.png", "a/.secret.jpg", ".cache/e.png", "a/.git/f.png",
                 "out/g.png", "out/log.txt"]:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def posix(paths) -> list:
    return [path.as_posix() for path in paths]


def test_scan_is_recursive_sorted_and_skips_hidden(tmp_path):
    make_tree(tmp_path)
    images, others = imagefiles.scan(tmp_path)
    # POSIX string order: "a b/" and "a-b/" sort before "a/" (space and '-' < '/')
    assert posix(images) == ["A.JPG", "a b/c.webp", "a-b/d.tiff", "a/z.gif", "b.png",
                             "out/g.png"]
    assert posix(others) == ["a/readme.txt", "notes.md", "out/log.txt"]
    assert all(not path.is_absolute() for path in images + others)
    assert not any(part.startswith(".") for path in images + others for part in path.parts)


def test_scan_images_refuses_a_folder_without_images(tmp_path):
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(UsageError, match=r"no images found in .*looked for \.bmp"):
        imagefiles.scan_images(tmp_path)


# --- encode ---------------------------------------------------------------------

FORMATS = ["jpg", "png", "bmp", "tif", "webp", "gif"]
LAYOUTS = {
    "grey": photo_like()[..., 0],
    "grey16": photo_like()[..., 0].astype(np.uint16) * 257,
    "grey+alpha": photo_like()[..., :2],
    "rgb": photo_like(),
    "rgba": np.dstack([photo_like(), photo_like(seed=3)[..., 0]]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_gives_a_decodable_image_of_the_same_size(fmt, layout):
    array = LAYOUTS[layout]
    picture = decode(imagefiles.encode(array, fmt, 90))
    assert picture.format == imagefiles._PILLOW_FORMAT[fmt]
    assert picture.size == (array.shape[1], array.shape[0])


@pytest.mark.parametrize("fmt, tolerance", [("png", 0), ("bmp", 0), ("tif", 0),
                                            ("jpg", 2), ("webp", 2)])
def test_encode_rgb_keeps_colours_in_rgb_order(fmt, tolerance):
    array = gradients() if tolerance else photo_like()
    result = np.asarray(decode(imagefiles.encode(array, fmt, 95)).convert("RGB"))
    assert mean_abs_diff(result, array) <= tolerance


def test_encode_rgba_png_keeps_alpha():
    rgba = LAYOUTS["rgba"]
    picture = decode(imagefiles.encode(rgba, "png", 90))
    assert picture.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(picture), rgba)


def half_transparent(height=32, width=32) -> np.ndarray:
    """Opaque red on the left half, fully transparent black on the right half."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[:, : width // 2] = (255, 0, 0, 255)
    return rgba


def test_encode_rgba_jpg_is_composited_on_white():
    result = np.asarray(decode(imagefiles.encode(half_transparent(), "jpg", 95)).convert("RGB"))
    assert result.shape == (32, 32, 3)
    # away from the edge, where JPEG rings
    assert np.abs(result[:, 20:].astype(int) - 255).max() <= 3
    assert np.abs(result[:, :12].astype(int) - (255, 0, 0)).max() <= 8


def test_encode_rgba_bmp_is_composited_on_white():
    rgba = half_transparent()
    rgba[:4, :4] = (0, 0, 0, 128)  # half-transparent black: mid grey on white
    result = np.asarray(decode(imagefiles.encode(rgba, "bmp", 90)).convert("RGB"))
    expected = np.zeros((32, 32, 3), np.uint8)
    expected[:, :16] = (255, 0, 0)
    expected[:, 16:] = 255
    expected[:4, :4] = 127
    np.testing.assert_array_equal(result, expected)


def test_encode_grey_alpha_png_keeps_two_channels():
    la = LAYOUTS["grey+alpha"]
    picture = decode(imagefiles.encode(la, "png", 90))
    assert picture.mode == "LA"
    np.testing.assert_array_equal(np.asarray(picture), la)


def test_encode_grey_alpha_bmp_is_composited_on_white():
    la = np.zeros((8, 8, 2), np.uint8)
    la[:, :4] = (50, 255)   # opaque dark grey
    la[:, 4:] = (0, 0)      # transparent
    picture = decode(imagefiles.encode(la, "bmp", 90))
    assert picture.mode == "L"
    np.testing.assert_array_equal(np.asarray(picture), np.where(np.arange(8) < 4, 50, 255)
                                  [None, :].repeat(8, axis=0))


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_encode_16_bit_grey_stays_16_bit(fmt):
    deep = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85
    picture = decode(imagefiles.encode(deep, fmt, 90))
    assert picture.mode.startswith("I;16")
    np.testing.assert_array_equal(np.asarray(picture).astype(np.uint16), deep)


def test_encode_gif_keeps_four_colours_exactly():
    array = four_colour()
    picture = decode(imagefiles.encode(array, "gif", 90))
    np.testing.assert_array_equal(np.asarray(picture.convert("RGB")), array)


def test_encoded_png_reads_back_through_read_image(tmp_path):
    path = tmp_path / "round.png"
    imagefiles.write_atomic(path, imagefiles.encode(LAYOUTS["rgba"], "png", 90))
    np.testing.assert_array_equal(imagefiles.read_image(path), LAYOUTS["rgba"])


# --- write_atomic / copy_atomic -------------------------------------------------


def test_write_atomic_creates_folders_and_writes_the_bytes(tmp_path):
    path = tmp_path / "deep" / "er" / "out.bin"
    imagefiles.write_atomic(path, b"\x00\x01 hello")
    assert path.read_bytes() == b"\x00\x01 hello"
    assert temp_leftovers(path.parent) == []


def test_write_atomic_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old content that is longer")
    imagefiles.write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert temp_leftovers(tmp_path) == []


def test_copy_atomic_copies_byte_for_byte_over_an_existing_file(tmp_path):
    source = save(tmp_path / "src.jpg", photo_like(), quality=90)
    destination = tmp_path / "out" / "dst.jpg"
    destination.parent.mkdir()
    destination.write_bytes(b"stale")
    imagefiles.copy_atomic(source, destination)
    assert destination.read_bytes() == source.read_bytes()
    assert temp_leftovers(destination.parent) == []


def _half_then(error):
    """Chunks for write_atomic that fail after the first: a write dying half-way."""
    yield b"half of the new"
    raise error


def test_failure_half_way_through_a_write_leaves_the_destination_untouched(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"original")
    with pytest.raises(RuntimeError, match="disk on fire"):
        imagefiles.write_atomic(path, _half_then(RuntimeError("disk on fire")))
    assert path.read_bytes() == b"original"
    assert temp_leftovers(tmp_path) == []


def test_failure_half_way_through_a_write_creates_nothing(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt):
        imagefiles.write_atomic(path, _half_then(KeyboardInterrupt()))
    assert list(tmp_path.iterdir()) == []


def test_copy_atomic_of_a_missing_source_leaves_the_destination_untouched(tmp_path):
    destination = tmp_path / "dst.png"
    destination.write_bytes(b"original")
    with pytest.raises(FileNotFoundError):
        imagefiles.copy_atomic(tmp_path / "missing.png", destination)
    assert destination.read_bytes() == b"original"
    assert temp_leftovers(tmp_path) == []


def test_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    target = tmp_path / "out.bin"
    imagefiles.write_atomic(target, b"x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_written_files_get_the_usual_permissions_under_another_umask(tmp_path):
    old = os.umask(0o027)
    try:
        imagefiles.write_atomic(tmp_path / "a.bin", b"x")
        (tmp_path / "source.bin").write_bytes(b"y")
        imagefiles.copy_atomic(tmp_path / "source.bin", tmp_path / "b.bin")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640


def test_write_atomic_never_opens_a_temp_name_something_else_holds(tmp_path, monkeypatch):
    # The next two temp names are taken: a file of another process and a symbolic link
    # to a file outside. Both are left alone; the write goes through a third name.
    monkeypatch.setattr(imagefiles, "_temp_numbers", itertools.count(7))
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not yours")
    folder = tmp_path / "out"
    folder.mkdir()
    taken = folder / f"{imagefiles.TEMP_PREFIX}{os.getpid()}-7.tmp"
    taken.write_bytes(b"someone else's")
    (folder / f"{imagefiles.TEMP_PREFIX}{os.getpid()}-8.tmp").symlink_to(outside)
    imagefiles.write_atomic(folder / "img.jpg", b"image bytes")
    assert (folder / "img.jpg").read_bytes() == b"image bytes"
    assert taken.read_bytes() == b"someone else's" and outside.read_bytes() == b"not yours"
    assert len(temp_leftovers(folder)) == 2  # only the two that were there


def test_write_atomic_that_fails_leaves_no_temp_file_and_the_old_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"original")
    with pytest.raises(TypeError):
        imagefiles.write_atomic(path, "text is not bytes")
    assert path.read_bytes() == b"original"
    assert temp_leftovers(tmp_path) == []


def test_write_atomic_into_a_folder_that_is_a_file_fails_cleanly(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        imagefiles.write_atomic(tmp_path / "file" / "out.jpg", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_write_atomic_writes_large_data_whole(tmp_path):
    data = np.random.default_rng(3).integers(0, 256, 5_000_000, dtype=np.uint8).tobytes()
    imagefiles.write_atomic(tmp_path / "big.bin", data)
    assert (tmp_path / "big.bin").read_bytes() == data


def test_colour_key_transparency_becomes_alpha(tmp_path):
    grey = np.array([[0, 128], [128, 255]], np.uint8)
    path = tmp_path / "keyed.png"
    Image.fromarray(grey).save(path, transparency=128)
    array = imagefiles.read_image(path)
    assert array.shape == (2, 2, 2)
    assert array[..., 1].tolist() == [[255, 0], [0, 255]]


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        imagefiles.read_image(tmp_path / "gone.jpg")


def test_a_16_bit_image_with_alpha_flattens_on_the_8_bit_scale():
    # Opaque 16-bit RGBA at 30000: as JPEG it is 30000 >> 8 = 117, not a wrapped value.
    image = np.zeros((8, 8, 4), np.uint16)
    image[..., :3], image[..., 3] = 30000, 65535
    decoded = np.asarray(Image.open(io.BytesIO(imagefiles.encode(image, "jpg", 100))))
    assert abs(int(decoded.mean()) - 117) <= 1
