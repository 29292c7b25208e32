"""augcli normalize against independent float64 computations of Keras' formulas.

Every expected value below is computed here, from the images' own pixels, with
the formula Keras uses (ImageDataGenerator.fit/standardize of current Keras,
keras.applications preprocess_input); never from what augcli produced.
Inputs are real PNG files (lossless, so the pixels read back are the ones we
wrote), driven through the CLI with Click's CliRunner.
"""

from __future__ import annotations

import dataclasses
import json
import os
from functools import partial
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from augcli import normalize
from augcli.cli import main

from .conftest import folder_files, invoke, kill_when, photo_like, run_cli, save, start_cli

RTOL = 1e-5  # float32 output vs a float64 reference
ATOL = 1e-6  # for values that are (almost) zero, where a relative bound means nothing
KERAS_EPSILON = 1e-6
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])


# --- helpers -------------------------------------------------------------------------------

normalize_cli = partial(invoke, "normalize")  # augcli normalize ARGS...


def make_folder(folder: Path, images: list) -> list:
    """Save each array as folder/img_NNN.png; return the arrays as float64."""
    for index, image in enumerate(images):
        save(folder / f"img_{index:03d}.png", image)
    return [image.astype(np.float64) for image in images]


def correlated_images(count: int, size: int = 8, seed: int = 0) -> list:
    """Small RGB images whose neighbouring pixels and channels are correlated, as in photos."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (3, 3, 3)).astype(np.float32)
        smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
        noisy = smooth + rng.normal(0, 12, smooth.shape)
        images.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    return images


def load_output(folder: Path, index: int) -> np.ndarray:
    return np.load(folder / f"img_{index:03d}.npy")


def assert_matches(actual: np.ndarray, expected: np.ndarray):
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


# Keras' formulas, written out independently in float64 ----------------------------------

def keras_minmax(x, per_channel=False):
    axes = (0, 1) if per_channel else None
    low, high = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
    return (x - low) / (high - low) * 255.0


def keras_samplewise(x):
    x = x - np.mean(x, keepdims=True)
    return x / (np.std(x, keepdims=True) + KERAS_EPSILON)


def keras_caffe(x):
    return x[..., ::-1] - CAFFE_MEAN_BGR


def keras_tf(x):
    return x / 127.5 - 1.0


def keras_torch(x):
    return (x / 255.0 - TORCH_MEAN) / TORCH_STD


def keras_featurewise_fit(batch):
    """ImageDataGenerator(featurewise_center, featurewise_std_normalization).fit(batch)."""
    mean = np.mean(batch, axis=(0, 1, 2))
    std = np.std(batch - mean, axis=(0, 1, 2))
    return mean, std


def keras_zca_fit(batch, epsilon=1e-6):
    """ImageDataGenerator(zca_whitening=True).fit(batch): featurewise centring, then SVD of Xᵀ."""
    mean = np.mean(batch, axis=(0, 1, 2))
    flat_x = (batch - mean).reshape(len(batch), -1)
    u, s, _ = np.linalg.svd(flat_x.T, full_matrices=False)
    s_inv = np.sqrt(len(batch)) / (s + epsilon)
    return mean, (u * s_inv).dot(u.T)


def keras_zca_apply(batch, mean, matrix):
    return ((batch - mean).reshape(len(batch), -1) @ matrix).reshape(batch.shape)


# --- per-image methods ---------------------------------------------------------------------

PER_IMAGE = {"samplewise": keras_samplewise, "caffe": keras_caffe, "tf": keras_tf,
             "torch": keras_torch, "minmax": keras_minmax}


@pytest.mark.parametrize("method", sorted(PER_IMAGE))
def test_per_image_methods_match_keras(tmp_path, method):
    originals = make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", method, "--format", "npy",
                           "-w", 1)
    assert result.exit_code == 0, result.output
    for index, original in enumerate(originals):
        assert_matches(load_output(tmp_path / "out", index), PER_IMAGE[method](original))


def test_minmax_per_channel_matches_the_formula(tmp_path):
    image = photo_like(seed=5)
    image[..., 2] = np.clip(image[..., 2], 40, 90)  # a channel with a narrow range
    (original,) = make_folder(tmp_path / "in", [image])
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "minmax", "--per-channel",
                           "--format", "npy", "-w", 1)
    assert result.exit_code == 0, result.output
    assert_matches(load_output(tmp_path / "out", 0), keras_minmax(original, per_channel=True))


def test_minmax_writes_png_by_default_rounded_from_the_formula(tmp_path):
    (original,) = make_folder(tmp_path / "in", [photo_like(seed=6)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "minmax", "-w",
                         1).exit_code == 0
    written = np.asarray(Image.open(tmp_path / "out" / "img_000.png"))
    expected = np.floor(keras_minmax(original) + 0.5)  # no .5 ties: 255 * k / span never is
    np.testing.assert_array_equal(written, expected.astype(np.uint8))


def test_minmax_flat_image_stays_flat_without_dividing_by_zero(tmp_path):
    flat = np.full((10, 12, 3), 77, np.uint8)
    one_flat_channel = photo_like(10, 12, seed=1)
    one_flat_channel[..., 1] = 200
    make_folder(tmp_path / "in", [flat, one_flat_channel])
    with np.errstate(all="raise"):
        result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "minmax",
                               "--per-channel", "--format", "npy", "-w", 1)
    assert result.exit_code == 0, result.output
    assert np.all(load_output(tmp_path / "out", 0) == 0)
    second = load_output(tmp_path / "out", 1)
    assert np.all(second[..., 1] == 0)
    assert second[..., 0].max() == 255 and second[..., 2].max() == 255


def test_caffe_puts_channels_in_bgr_order(tmp_path):
    red = np.zeros((4, 5, 3), np.uint8)
    red[..., 0] = 255
    make_folder(tmp_path / "in", [red])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "caffe", "-w",
                         1).exit_code == 0
    pixel = load_output(tmp_path / "out", 0)[0, 0]
    np.testing.assert_allclose(pixel, [0 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)


def test_png_of_a_float_method_is_its_result_stretched_to_0_255_in_rgb_order(tmp_path):
    (original,) = make_folder(tmp_path / "in", [photo_like(seed=8)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "caffe", "--format", "png",
                         "-w", 1).exit_code == 0
    written = np.asarray(Image.open(tmp_path / "out" / "img_000.png")).astype(int)
    expected = keras_minmax(keras_caffe(original))[..., ::-1]  # back to RGB for viewing
    assert np.abs(written - expected).max() <= 0.5 + 1e-9


# --- featurewise ---------------------------------------------------------------------------

def test_featurewise_matches_keras_fit_on_the_whole_folder(tmp_path):
    originals = make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(6)])
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "featurewise", "-w", 1)
    assert result.exit_code == 0, result.output
    mean, std = keras_featurewise_fit(np.stack(originals))
    for index, original in enumerate(originals):
        assert_matches(load_output(tmp_path / "out", index),
                       (original - mean) / (std + KERAS_EPSILON))


def low_contrast(seed: int) -> np.ndarray:
    """Almost flat: std about 0.01, where Keras' + 1e-6 in the denominator shows."""
    image = np.full((48, 64, 3), 100, np.uint8)
    image.reshape(-1)[np.random.default_rng(seed).integers(0, image.size)] = 101
    return image


def test_low_contrast_images_show_keras_epsilon(tmp_path):
    originals = make_folder(tmp_path / "in", [low_contrast(seed) for seed in range(3)])
    for method in ("samplewise", "featurewise"):
        result = normalize_cli(tmp_path / "in", "-o", tmp_path / method, "-m", method, "-w", 1)
        assert result.exit_code == 0, result.output
    mean, std = keras_featurewise_fit(np.stack(originals))
    for index, original in enumerate(originals):
        assert_matches(load_output(tmp_path / "samplewise", index), keras_samplewise(original))
        assert_matches(load_output(tmp_path / "featurewise", index),
                       (original - mean) / (std + KERAS_EPSILON))


@pytest.mark.parametrize("dtype, offset", [(np.uint8, 0), (np.uint16, 60_000)])
def test_channel_moments_streamed_in_chunks_equal_all_at_once(dtype, offset):
    rng = np.random.default_rng(3)
    # 16 bit: a large offset with a small spread, where sum-of-squares formulas lose digits
    pixels = (offset + rng.integers(0, 4 if offset else 256, (10_000, 3))).astype(dtype)
    bounds = [0, 1, 7, 500, 501, 3_333, 9_999, 10_000]
    chunks = [normalize.ChannelMoments.of(pixels[a:b], scale=0.5) for a, b in pairwise(bounds)]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged.merge(chunk)
    reference = pixels.astype(np.float64) * 0.5
    assert merged.count == len(pixels)
    np.testing.assert_allclose(merged.mean, reference.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(merged.std, reference.std(axis=0), rtol=1e-10)


def test_featurewise_stats_saved_then_applied_elsewhere_equal_keras_fit_there(tmp_path):
    train = make_folder(tmp_path / "train", [photo_like(seed=s) for s in range(4)])
    test = make_folder(tmp_path / "test", [photo_like(seed=s) for s in range(10, 13)])
    stats = tmp_path / "stats.json"
    fit = normalize_cli(tmp_path / "train", "-m", "featurewise", "--fit-only", "--stats", stats,
                        "-w", 1)
    assert fit.exit_code == 0, fit.output
    assert f"4 images read, 0 files written, statistics saved to {stats}" in fit.output
    assert not (tmp_path / "out").exists()
    mean, std = keras_featurewise_fit(np.stack(train))
    saved = json.loads(stats.read_text())
    np.testing.assert_allclose(saved["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(saved["std"], std, rtol=1e-12)

    result = normalize_cli(tmp_path / "test", "-o", tmp_path / "out", "-m", "featurewise",
                           "--stats", stats, "-w", 1)
    assert result.exit_code == 0, result.output
    for index, original in enumerate(test):
        assert_matches(load_output(tmp_path / "out", index),
                       (original - mean) / (std + KERAS_EPSILON))


def test_featurewise_output_bytes_do_not_depend_on_the_number_of_workers(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(8)])
    for workers in (1, 2):
        result = normalize_cli(tmp_path / "in", "-o", tmp_path / f"w{workers}", "-m", "featurewise",
                               "-w", workers)
        assert result.exit_code == 0, result.output
    for index in range(8):
        name = f"img_{index:03d}.npy"
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def test_results_are_summed_in_input_order_whatever_order_they_finish_in():
    class Done:
        def __init__(self, index):
            self.index = index

    finished = [Done(i) for i in (2, 0, 1, 5, 3, 4, 6)]
    assert [r.index for r in normalize._in_input_order(finished)] == list(range(7))


# --- zca -----------------------------------------------------------------------------------

def run_zca(tmp_path, images, *extra):
    originals = make_folder(tmp_path / "in", images)
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size", "8x8",
                           "-w", 1, *extra)
    assert result.exit_code == 0, result.output
    outputs = np.stack([load_output(tmp_path / "out", i) for i in range(len(images))])
    return np.stack(originals), outputs


def test_zca_matches_keras_and_whitens_the_second_moment_to_identity(tmp_path):
    batch, outputs = run_zca(tmp_path, correlated_images(300))  # 300 images > 192 values each
    mean, matrix = keras_zca_fit(batch)
    expected = keras_zca_apply(batch, mean, matrix)
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=1e-5 * np.abs(expected).max())

    raw = (batch - mean).reshape(len(batch), -1)
    assert np.abs(raw.T @ raw / len(raw) - np.eye(raw.shape[1])).max() > 100  # far from white
    flat = outputs.reshape(len(outputs), -1).astype(np.float64)
    np.testing.assert_allclose(flat.T @ flat / len(flat), np.eye(flat.shape[1]), atol=1e-4)


def test_zca_with_fewer_images_than_values_keeps_only_their_span_like_keras(tmp_path):
    """Keras' svd(Xᵀ, full_matrices=False) has n < D vectors: other directions map to 0."""
    train = np.stack(make_folder(tmp_path / "train", correlated_images(40, seed=3)))
    test = np.stack(make_folder(tmp_path / "test", correlated_images(4, seed=4)))
    stats = tmp_path / "zca.npz"
    assert normalize_cli(tmp_path / "train", "-m", "zca", "--size", "8x8", "--zca-epsilon", "0.01",
                         "--fit-only", "--stats", stats, "-w", 1).exit_code == 0
    result = normalize_cli(tmp_path / "test", "-o", tmp_path / "out", "-m", "zca", "--stats", stats,
                           "-w", 1)
    assert result.exit_code == 0, result.output
    expected = keras_zca_apply(test, *keras_zca_fit(train, epsilon=0.01))
    outputs = np.stack([load_output(tmp_path / "out", i) for i in range(len(test))])
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=1e-5 * np.abs(expected).max())


def test_zca_stats_saved_then_applied_elsewhere_equal_keras_fit_on_the_first(tmp_path):
    train = np.stack(make_folder(tmp_path / "train", correlated_images(250, seed=1)))
    test = np.stack(make_folder(tmp_path / "test", correlated_images(5, seed=2)))
    stats = tmp_path / "zca.npz"
    fit = normalize_cli(tmp_path / "train", "-m", "zca", "--size", "8x8", "--fit-only", "--stats",
                        stats, "-w", 1)
    assert fit.exit_code == 0, fit.output
    result = normalize_cli(tmp_path / "test", "-o", tmp_path / "out", "-m", "zca", "--stats", stats,
                           "-w", 1)
    assert result.exit_code == 0, result.output
    expected = keras_zca_apply(test, *keras_zca_fit(train))
    outputs = np.stack([load_output(tmp_path / "out", i) for i in range(len(test))])
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=1e-5 * np.abs(expected).max())


def test_gram_streamed_in_batches_equals_the_centred_product_all_at_once():
    rng = np.random.default_rng(5)
    rows = 60_000 + rng.normal(0, 0.5, (200, 12))  # 2x2 RGB images, far from 0: cancellation
    accumulator = normalize.GramAccumulator(channels=3)
    bounds = [0, 3, 50, 51, 199, 200]
    for start, stop in pairwise(bounds):
        accumulator.add(rows[start:stop])
    mean = rows.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(accumulator.channel_mean(), mean, rtol=1e-13)
    centred = rows - np.tile(mean, 4)
    np.testing.assert_allclose(accumulator.centred_gram(mean), centred.T @ centred, rtol=1e-9)


def test_zca_refuses_a_size_whose_matrix_would_not_fit_in_memory(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=1)])
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size",
                           "4000x4000")
    assert result.exit_code == 2
    assert "Error: --size 4000x4000 is too large for ZCA" in result.output
    assert "48,000,000 x 48,000,000 float64 matrix" in result.output
    assert "the largest square size that fits is" in result.output
    assert not (tmp_path / "out").exists()


def test_zca_memory_check_names_the_numbers_against_the_budget():
    preparation = normalize.Preparation("rgb", (64, 64))
    with pytest.raises(normalize.UsageError) as refused:
        normalize.check_zca_memory(preparation, matrices=5, budget=10**9)
    message = str(refused.value)
    assert "12,288 x 12,288 float64 matrix of 1.2 GB" in message  # 64*64*3 values, 8 bytes each
    assert "holds 5 of them at once (6.0 GB), over the budget of 1.0 GB" in message
    assert "largest square size that fits is 40x40" in message  # 3*40*40 = 4800 < 5000 < 3*41*41
    normalize.check_zca_memory(normalize.Preparation("rgb", (40, 40)), matrices=5, budget=10**9)


# --- preparation: size, colour, alpha, bit depth -------------------------------------------

def test_size_stretches_with_area_when_shrinking(tmp_path):
    image = photo_like(48, 64, seed=2)
    make_folder(tmp_path / "in", [image])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--size", "16x12",
                         "-w", 1).exit_code == 0
    expected = keras_tf(cv2.resize(image, (16, 12), interpolation=cv2.INTER_AREA).astype(float))
    assert_matches(load_output(tmp_path / "out", 0), expected)


def test_letterbox_keeps_the_aspect_ratio_on_black_bars(tmp_path):
    image = np.full((10, 40, 3), 255, np.uint8)  # 4:1
    make_folder(tmp_path / "in", [image])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--size", "20x20",
                         "--resize", "letterbox", "-w", 1).exit_code == 0
    output = load_output(tmp_path / "out", 0)
    assert output.shape == (20, 20, 3)
    rows = output[:, :, 0].mean(axis=1)
    np.testing.assert_array_equal(rows, [-1] * 7 + [1] * 5 + [-1] * 8)  # 20x5 image, centred


def test_grey_inputs_become_three_equal_channels_in_rgb_mode(tmp_path):
    grey = photo_like(seed=3)[..., 0]
    (original,) = make_folder(tmp_path / "in", [grey])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "-w",
                         1).exit_code == 0
    expected = keras_tf(np.repeat(original[..., None], 3, axis=2))
    assert_matches(load_output(tmp_path / "out", 0), expected)


def test_grey_mode_converts_colour_with_pillows_luminance(tmp_path):
    image = photo_like(seed=4)
    make_folder(tmp_path / "in", [image])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--color", "grey",
                         "-w", 1).exit_code == 0
    r, g, b = (image[..., i].astype(int) for i in range(3))
    luminance = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # ITU-R 601-2, as Pillow's L
    assert_matches(load_output(tmp_path / "out", 0), keras_tf(luminance[..., None].astype(float)))


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.dstack([photo_like(seed=5), np.full((48, 64), 10, np.uint8)])
    make_folder(tmp_path / "in", [rgba])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "-w",
                         1).exit_code == 0
    assert_matches(load_output(tmp_path / "out", 0), keras_tf(rgba[..., :3].astype(float)))


def test_sixteen_bit_images_are_brought_to_the_8_bit_scale(tmp_path):
    deep = np.array([[0, 257 * 100, 65535]], np.uint16)
    save(tmp_path / "in" / "img_000.png", deep)
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--color", "grey",
                         "-w", 1).exit_code == 0
    assert_matches(load_output(tmp_path / "out", 0), keras_tf(np.array([[[0.0], [100], [255]]])))


# --- failures and usage errors -------------------------------------------------------------

@pytest.mark.parametrize("method", ["tf", "featurewise"])
def test_a_corrupt_file_is_reported_once_skipped_and_exits_1(tmp_path, method):
    originals = make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", method, "-w", 1)
    assert result.exit_code == 1
    assert result.output.count("failed: broken.png: ") == 1
    assert "3 images read, 3 files written, 0 skipped (already done), 1 failed" in result.output
    assert not (tmp_path / "out" / "broken.npy").exists()
    if method == "tf":
        for index, original in enumerate(originals):
            assert_matches(load_output(tmp_path / "out", index), keras_tf(original))


def test_an_output_that_cannot_be_written_is_reported_and_the_rest_written(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    (tmp_path / "out" / "img_001.npy").mkdir(parents=True)  # a folder where a file must go
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size", "4x4",
                           "-w", 1)
    assert result.exit_code == 1
    assert "failed: img_001.png: cannot write" in result.output
    assert "3 images read, 2 files written, 0 skipped (already done), 1 failed" in result.output
    assert (tmp_path / "out" / "img_000.npy").is_file()
    assert (tmp_path / "out" / "img_002.npy").is_file()


@pytest.mark.parametrize("args, message", [
    (["-m", "samplewise", "--per-channel"], "--per-channel only applies to --method minmax"),
    (["-m", "zca", "--resize", "letterbox"], "--resize letterbox needs --size"),
    (["-m", "caffe", "--color", "grey"], "--method caffe subtracts a mean per RGB channel"),
    (["-m", "tf", "--stats", "s.json"], "--stats and --fit-only only apply to"),
    (["-m", "tf", "--size", "12x"], "--size expects WIDTHxHEIGHT"),
    (["-m", "featurewise", "--stats", "missing.json"], "make it first with --fit-only"),
    (["-m", "tf", "--zca-epsilon", "0.1"], "--zca-epsilon only applies to --method zca"),
])
def test_impossible_flag_combinations_exit_2_before_writing(tmp_path, args, message):
    make_folder(tmp_path / "in", [photo_like(seed=1)])
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_settings_are_checked_when_built_before_any_folder_is_read(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(normalize.UsageError, match="no output folder: pass -o/--output"):
        normalize.NormalizeSettings.of(missing, method="tf")
    with pytest.raises(normalize.UsageError, match="--zca-epsilon must be > 0"):
        normalize.NormalizeSettings.of(missing, tmp_path / "out", method="zca", zca_epsilon=0)
    with pytest.raises(normalize.UsageError, match="--size expects WIDTHxHEIGHT"):
        normalize.NormalizeSettings.of(missing, tmp_path / "out", method="tf", size="8x")
    settings = normalize.NormalizeSettings.of(str(missing), "gs://bucket/out/", method="minmax",
                                              size="12x8", resize="letterbox")
    assert (settings.input, settings.output) == (missing, "gs://bucket/out")
    assert (settings.fmt, settings.size, settings.color) == ("png", (12, 8), None)
    fit = normalize.NormalizeSettings.of(missing, method="zca", fit_only=True,
                                         stats=str(tmp_path / "zca.npz"))
    assert (fit.fmt, fit.output, fit.stats) == ("npy", None, tmp_path / "zca.npz")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.method = "tf"
    assert not missing.exists() and not (tmp_path / "out").exists()


def test_statistics_of_another_method_are_refused(tmp_path):
    make_folder(tmp_path / "in", correlated_images(3))
    stats = tmp_path / "stats.json"
    normalize_cli(tmp_path / "in", "-m", "featurewise", "--fit-only", "--stats", stats, "-w", 1)
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--stats", stats)
    assert result.exit_code == 2
    assert "holds featurewise statistics, not zca" in result.output


def test_output_inside_input_is_refused(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=1)])
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "in" / "out", "-m", "tf")
    assert result.exit_code == 2
    assert "is inside the input folder" in result.output


def test_two_sources_with_one_stem_are_refused(tmp_path):
    save(tmp_path / "in" / "a.png", photo_like(seed=1))
    save(tmp_path / "in" / "a.bmp", photo_like(seed=2))
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf")
    assert result.exit_code == 2
    assert "would both write a.npy" in result.output


def test_the_cli_offers_exactly_the_library_methods():
    options = {param.name: param for param in main.commands["normalize"].params}
    assert tuple(options["method"].type.choices) == normalize.METHODS


# --- zca: the n x n solve, its default size and its progress line ---------------------------

@pytest.mark.parametrize("copies", [0, 2])
def test_zca_from_the_rows_equals_keras_svd_and_the_d_by_d_eigendecomposition(copies):
    """n < D: the n x n problem gives Keras' W on the images' span; copies (rank < n) too."""
    rng = np.random.default_rng(7)
    rows = rng.normal(100, 40, (9, 48))
    rows = np.concatenate([rows, rows[:copies]])  # repeated images span no new direction
    centred = rows - np.tile(rows.reshape(-1, 3).mean(axis=0), 16)
    from_rows = normalize.zca_components_from_rows(centred.copy(), 1e-6)
    batch = rows.reshape(len(rows), 4, 4, 3)
    mean, keras = keras_zca_fit(batch)
    # Keras keeps the copies' null directions with s ~ 1e-13, weighted √n / (s + ε) ~ 3e6:
    # rounding noise of about 1e-7 in its results, which the float32 outputs cannot hold.
    expected = keras_zca_apply(batch, mean, keras)
    np.testing.assert_allclose(keras_zca_apply(batch, mean, from_rows), expected,
                               rtol=1e-7 if copies == 0 else RTOL, atol=1e-6)
    if copies == 0:  # full rank: the same matrix, whichever way it is computed
        np.testing.assert_allclose(from_rows, keras, rtol=1e-7, atol=1e-9)
        gram = normalize.zca_components(centred.T @ centred, len(rows), 1e-6)
        np.testing.assert_allclose(from_rows, gram, rtol=1e-6, atol=1e-8)


def test_zca_accumulator_holds_rows_below_d_and_folds_them_into_the_gram_at_d():
    rng = np.random.default_rng(8)
    rows = rng.normal(50, 20, (30, 12))  # 2x2 RGB: D = 12
    small = normalize.ZcaAccumulator(channels=3, features=12)
    small.add(rows[:5])
    small.add(rows[5:11])
    assert small.gram is None and small.solve_text == "11 x 11 eigendecomposition"
    large = normalize.ZcaAccumulator(channels=3, features=12)
    for start in range(0, 30, 7):
        large.add(rows[start:start + 7])
    assert large.gram is not None and large.batches == []
    assert large.solve_text == "12 x 12 eigendecomposition"
    mean, matrix = large.solve(1e-6)
    keras_mean, keras = keras_zca_fit(rows.reshape(30, 2, 2, 3))
    np.testing.assert_allclose(mean, keras_mean, rtol=1e-12)
    np.testing.assert_allclose(matrix, keras, rtol=1e-7, atol=1e-9)


def test_zca_on_the_readme_sample_photos_defaults_to_32x32_and_matches_keras(tmp_path):
    """The README's four photos: no --size gives 32x32 (INTER_AREA: every photo shrinks)."""
    sample = Path(__file__).resolve().parent.parent / "sample_images"
    result = normalize_cli(sample, "-o", tmp_path / "out", "-m", "zca", "-w", 1)
    assert result.exit_code == 0, result.output
    names = ["cat/chelsea", "cat/chelsea_face", "cup/coffee", "cup/coffee_saucer"]
    suffix = {"cat/chelsea_face": ".png"}
    batch = np.stack([
        cv2.resize(np.asarray(Image.open(sample / f"{name}{suffix.get(name, '.jpg')}")
                              .convert("RGB")), (32, 32), interpolation=cv2.INTER_AREA)
        for name in names]).astype(np.float64)
    expected = keras_zca_apply(batch, *keras_zca_fit(batch))
    outputs = np.stack([np.load(tmp_path / "out" / f"{name}.npy") for name in names])
    assert outputs.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=1e-5 * np.abs(expected).max())


def test_the_solve_shows_a_line_with_its_size_and_elapsed_time_on_a_terminal(monkeypatch):
    import io
    import time

    from augcli.report import elapsed_spinner

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    with elapsed_spinner("solve (3,072 x 3,072 eigendecomposition)", enabled=True):
        time.sleep(1.2)
    frames = screen.getvalue().replace("\r", "\n").splitlines()
    assert "solve (3,072 x 3,072 eigendecomposition): 00:01" in frames
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    with elapsed_spinner("solve", enabled=False):
        pass
    assert quiet.getvalue() == ""


# --- manifest, refusal and resume ----------------------------------------------------------

def manifest(folder: Path) -> list:
    return [json.loads(line) for line in
            (folder / normalize.MANIFEST_NAME).read_text(encoding="utf-8").splitlines()]


def test_the_manifest_names_each_output_its_source_method_and_fingerprints(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "featurewise", "-w",
                         1).exit_code == 0
    header, *records = manifest(tmp_path / "out")
    assert header["normalize"] == {"method": "featurewise", "format": "npy", "color": "rgb",
                                   "size": None, "resize": "stretch", "per_channel": False}
    assert [(r["source"], r["output"], r["method"]) for r in records] == [
        (f"img_{i:03d}.png", f"img_{i:03d}.npy", "featurewise") for i in range(3)]
    assert {r["settings"] for r in records} == {header["settings"]}
    assert {r["stats"] for r in records} == {header["stats"]} and len(header["stats"]) == 16

    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "tf", "-m", "tf", "-w", 1).exit_code == 0
    tf_header, *tf_records = manifest(tmp_path / "tf")
    assert tf_header["stats"] is None and tf_header["settings"] != header["settings"]
    assert {r["stats"] for r in tf_records} == {None}


@pytest.mark.slow
def test_a_rerun_skips_every_finished_file_and_changes_nothing(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m",
                         "featurewise").exit_code == 0
    before = folder_files(tmp_path / "out", "*.npy")
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").glob("*.npy")}
    again = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "featurewise")
    assert again.exit_code == 0
    assert "0 files written, 3 skipped (already done), 0 failed" in again.output
    assert folder_files(tmp_path / "out", "*.npy") == before
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


@pytest.mark.parametrize("args, message", [
    (["-m", "torch"], "with other settings (method tf -> torch)"),
    (["-m", "tf", "--size", "16x12"], "with other settings (size none -> 16x12)"),
    (["-m", "tf", "--color", "grey"], "with other settings (color rgb -> grey)"),
])
def test_outputs_of_other_settings_are_refused_before_anything_is_written(tmp_path, args,
                                                                          message):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(2)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "-w",
                         1).exit_code == 0
    before = (tmp_path / "out" / normalize.MANIFEST_NAME).read_bytes(), \
        folder_files(tmp_path / "out", "*.npy")
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.output and "--overwrite" in result.output
    assert ((tmp_path / "out" / normalize.MANIFEST_NAME).read_bytes(),
            folder_files(tmp_path / "out", "*.npy")) == before


def test_outputs_of_other_statistics_are_refused_and_overwrite_replaces_them(tmp_path):
    originals = make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "featurewise", "-w",
                         1).exit_code == 0
    before = folder_files(tmp_path / "out", "*.npy")
    originals += make_folder(tmp_path / "more", [photo_like(seed=9)])
    (tmp_path / "more" / "img_000.png").rename(tmp_path / "in" / "img_003.png")
    refused = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "featurewise", "-w", 1)
    assert refused.exit_code == 2
    assert "featurewise outputs made with other statistics" in refused.output
    assert folder_files(tmp_path / "out", "*.npy") == before and \
        not (tmp_path / "out" / "img_003.npy").exists()

    replaced = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "featurewise", "-w", 1,
                             "--overwrite")
    assert replaced.exit_code == 0 and "4 files written, 0 skipped" in replaced.output
    stack = np.stack(originals)
    mean, std = stack.mean(axis=(0, 1, 2)), stack.std(axis=(0, 1, 2))
    for index, original in enumerate(originals):
        assert_matches(load_output(tmp_path / "out", index),
                       (original - mean) / (std + KERAS_EPSILON))


def test_overwrite_removes_the_earlier_outputs_the_new_settings_do_not_make(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(2)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--format", "png",
                         "-w", 1).exit_code == 0
    (tmp_path / "out" / "notes.txt").write_text("mine")
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "-w", 1,
                           "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "img_000.npy", "img_001.npy", normalize.MANIFEST_NAME, "notes.txt"]


def test_files_no_manifest_accounts_for_are_refused_where_outputs_would_go(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(2)])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")  # not in the way: allowed
    (tmp_path / "out" / "img_001.npy").write_bytes(b"someone else's")
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf")
    assert result.exit_code == 2
    assert "already holds 1 file(s) this run would write (e.g. img_001.npy)" in \
        result.output
    assert (tmp_path / "out" / "img_001.npy").read_bytes() == b"someone else's"
    assert not (tmp_path / "out" / "img_000.npy").exists()
    assert not (tmp_path / "out" / normalize.MANIFEST_NAME).exists()


def test_an_augcli_run_folder_is_refused(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=1)])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / normalize.MANIFEST_NAME).write_text(
        '{"output": "img_000_a_1.png", "source": "img_000.png", "recipe": "abc"}\n')
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf")
    assert result.exit_code == 2
    assert "is not one augcli normalize wrote" in result.output


@pytest.mark.slow
def test_zca_resumed_after_an_interruption_is_byte_identical(tmp_path, monkeypatch):
    """Rows are whitened in blocks fixed by input position, so a resumed run that has only
    some rows of a block left computes each of them exactly as an uninterrupted run."""
    make_folder(tmp_path / "in", correlated_images(23, seed=5))
    monkeypatch.setattr(normalize, "ROW_BATCH_BYTES", 5 * 192 * 8)  # blocks of 5 images
    clean = normalize_cli(tmp_path / "in", "-o", tmp_path / "clean", "-m", "zca", "--size", "8x8",
                          "-w", 1)
    assert clean.exit_code == 0, clean.output

    real_write, calls = normalize._write, []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 8:  # the 8th image, in the middle of the second block
            raise KeyboardInterrupt
        return real_write(*args)

    monkeypatch.setattr(normalize, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        normalize.normalize_folder(normalize.NormalizeSettings.of(
            tmp_path / "in", tmp_path / "out", method="zca", size=(8, 8)), workers=1)
    assert len(list((tmp_path / "out").glob("*.npy"))) == 7
    assert len(manifest(tmp_path / "out")) == 1 + 7
    monkeypatch.setattr(normalize, "_write", real_write)
    resumed = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size", "8x8",
                            "-w", 2)
    assert resumed.exit_code == 0, resumed.output
    assert "16 files written, 7 skipped (already done)" in resumed.output
    assert folder_files(tmp_path / "out", "*.npy") == folder_files(tmp_path / "clean", "*.npy")
    assert len(manifest(tmp_path / "out")) == 1 + 23


@pytest.mark.slow
def test_a_killed_normalize_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path):
    """SIGKILL a real process half-way through writing: every file under a final name is
    whole, and rerunning the command gives exactly an uninterrupted run's files."""
    make_folder(tmp_path / "in", [photo_like(240, 320, seed=s) for s in range(80)])
    args = ["normalize", tmp_path / "in", "-m", "featurewise", "-w", 1, "-q"]
    kill_when(start_cli(*args, "-o", tmp_path / "out", cwd=tmp_path),
              lambda: len(list((tmp_path / "out").glob("*.npy"))) >= 10)
    written = list((tmp_path / "out").glob("*.npy"))
    assert 10 <= len(written) < 80, "the run was not interrupted half-way"
    for path in written:
        assert np.load(path).shape == (240, 320, 3)  # raises on a truncated file

    rerun = run_cli(*args, "-o", tmp_path / "out", "--json", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] >= 10 and summary["skipped"] + summary["written"] == 80
    clean = run_cli(*args, "-o", tmp_path / "clean", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert folder_files(tmp_path / "out", "*.npy") == folder_files(tmp_path / "clean", "*.npy")
    assert len(folder_files(tmp_path / "clean", "*.npy")) == 80
    assert len(manifest(tmp_path / "out")) == 1 + 80
    assert not list((tmp_path / "out").glob(".augcli-*"))


def test_a_file_written_before_its_record_is_redone_not_refused(tmp_path):
    # the window a kill can hit: the file is published, its record not yet appended; the
    # started line written before the image was handed out says whose the file is
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf").exit_code == 0
    lines = manifest(tmp_path / "out")
    whole = (tmp_path / "out" / "img_001.npy").read_bytes()
    torn = [line for line in lines if line.get("output") != "img_001.npy"]
    (tmp_path / "out" / "img_001.npy").write_bytes(whole[:100])  # as if cut off, too
    (tmp_path / "out" / normalize.MANIFEST_NAME).write_text("".join(
        json.dumps(line) + "\n" for line in torn), encoding="utf-8")
    refused = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf")
    assert refused.exit_code == 2 and "no manifest says where they came from" in refused.output
    started = {"started": "img_001.png", "outputs": ["img_001.npy"],
               "recipe": lines[0]["settings"]}
    with open(tmp_path / "out" / normalize.MANIFEST_NAME, "a", encoding="utf-8") as file:
        file.write(json.dumps(started) + "\n")
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "img_001.npy").read_bytes() == whole
    assert [line.get("output") for line in manifest(tmp_path / "out")][1:] == [
        "img_000.npy", "img_001.npy", "img_002.npy"]


# --- dry run and the summary for scripts ---------------------------------------------------

def test_dry_run_lists_each_output_marks_finished_ones_and_writes_nothing(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "img_000.png -> img_000.npy\n" in result.output
    assert "fit: zca statistics over the 3 images first, then applied" in result.output
    assert "total: 3 images (zca, npy, 32x32) -> 3 files to write, 0 already done" in \
        result.output
    assert not (tmp_path / "out").exists()

    assert normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf").exit_code == 0
    (tmp_path / "out" / "img_001.npy").unlink()
    again = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--dry-run")
    assert "img_000.png -> img_000.npy (done)" in again.output
    assert "img_001.png -> img_001.npy\n" in again.output
    assert "-> 1 files to write, 2 already done" in again.output
    other = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "torch", "--dry-run")
    assert other.exit_code == 2 and "method tf -> torch" in other.output


def test_json_prints_one_object_with_counts_failures_and_the_output_folder(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(2)])
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "in" / "notes.txt").write_text("hi")
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "-w", 1, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["failures"] == [{"path": "broken.png", "reason": summary["failures"][0]
                                    ["reason"]}] and summary["failures"][0]["reason"]
    assert {key: summary[key] for key in ("output", "images_read", "written", "skipped",
                                          "failed", "ignored", "exit_code", "method",
                                          "stats_file")} == {
        "output": str(tmp_path / "out"), "images_read": 2, "written": 2, "skipped": 0,
        "failed": 1, "ignored": ["notes.txt"], "exit_code": 1, "method": "tf",
        "stats_file": None}
    assert isinstance(summary["seconds"], float)
    assert "images read" not in result.stderr  # the human summary is replaced

    stats = tmp_path / "s.json"
    fit = normalize_cli(tmp_path / "in", "-m", "featurewise", "--fit-only", "--stats", stats, "-w",
                        1, "--json")
    fitted = json.loads(fit.stdout)
    assert fitted["output"] is None and fitted["stats_file"] == str(stats)
    planned = normalize_cli(tmp_path / "in", "-o", tmp_path / "x", "-m", "tf", "--json",
                            "--dry-run")
    assert planned.exit_code == 0 and json.loads(planned.stdout)["dry_run"] is True


def test_overwrite_never_deletes_what_a_tampered_manifest_names_outside_the_folder(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=1)])
    (tmp_path / "out").mkdir()
    (tmp_path / "outside.npy").write_bytes(b"keep me")
    (tmp_path / "out" / "img_000_a_1.png").write_bytes(b"an augcli run output")
    (tmp_path / "out" / normalize.MANIFEST_NAME).write_text(
        '{"output": "img_000_a_1.png", "source": "img_000.png", "recipe": "abc"}\n'
        '{"output": "../outside.npy", "source": "x.png", "method": "tf", "settings": "1"}\n')
    result = normalize_cli(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--overwrite")
    # refused as run refuses it: a manifest naming a path outside its folder is not augcli's
    assert result.exit_code == 2
    assert "names '../outside.npy', which is not inside the output folder" in result.output
    assert (tmp_path / "outside.npy").read_bytes() == b"keep me"
    assert (tmp_path / "out" / "img_000_a_1.png").read_bytes() == b"an augcli run output"


# --- the output folder: links, file names, one run at a time, a full disk -------------------

def test_an_output_folder_that_links_out_of_the_output_folder_is_refused(tmp_path):
    save(tmp_path / "in" / "sub" / "a.png", correlated_images(1)[0])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    result = normalize_cli(tmp_path / "in", "-o", out, "--method", "tf", "--workers", 1)
    assert result.exit_code == 2
    assert "Error:" in result.output and "leads out of the output folder" in result.output
    assert list(elsewhere.iterdir()) == []


def test_overwrite_removes_a_linked_stale_output_not_what_it_points_to(tmp_path):
    make_folder(tmp_path / "in", correlated_images(1))
    out = tmp_path / "out"
    assert normalize_cli(tmp_path / "in", "-o", out, "--method", "tf", "--workers",
                         1).exit_code == 0
    outside = tmp_path / "keep.npy"
    outside.write_bytes(b"not ours")
    (out / "img_000.npy").unlink()
    (out / "img_000.npy").symlink_to(outside)
    result = normalize_cli(tmp_path / "in", "-o", out, "--method", "minmax", "--overwrite",
                           "--workers", 1)
    assert result.exit_code == 0, result.output
    assert outside.read_bytes() == b"not ours"
    assert not (out / "img_000.npy").exists() and not (out / "img_000.npy").is_symlink()
    assert (out / "img_000.png").is_file()


def test_a_file_name_that_is_not_utf8_is_written_and_resumed(tmp_path):
    source = tmp_path / "in" / os.fsdecode(b"caf\xe9.png")
    save(source, correlated_images(1)[0])
    out = tmp_path / "out"
    result = normalize_cli(tmp_path / "in", "-o", out, "--method", "tf", "--workers", 1)
    assert result.exit_code == 0, result.output
    written = out / os.fsdecode(b"caf\xe9.npy")
    assert written.is_file()
    data = (out / normalize.MANIFEST_NAME).read_bytes()
    data.decode("utf-8")  # the manifest stays UTF-8
    records = [json.loads(line) for line in data.splitlines()]
    assert [r["source"] for r in records[1:]] == [os.fsdecode(b"caf\xe9.png")]
    again = normalize_cli(tmp_path / "in", "-o", out, "--method", "tf", "--workers", 1, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["skipped"] == 1


def test_a_second_run_into_a_locked_output_folder_is_refused(tmp_path):
    from augcli.stores import LOCK_NAME, FolderStore

    make_folder(tmp_path / "in", correlated_images(1))
    out = tmp_path / "out"
    out.mkdir()
    with FolderStore(out).lock():
        result = normalize_cli(tmp_path / "in", "-o", out, "--method", "tf", "--workers", 1)
    assert result.exit_code == 2
    assert "another augcli run" in result.output
    assert list(out.iterdir()) == []
    assert normalize_cli(tmp_path / "in", "-o", out, "--method", "tf", "--workers",
                         1).exit_code == 0
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tf", "zca"])
def test_a_full_disk_stops_the_run_with_one_error_and_no_traceback(tmp_path, method):
    from .test_manifest import augcli

    make_folder(tmp_path / "in", correlated_images(4, size=64))
    # 64x64x3 float32 (zca: 32x32x3) is 48 KB (12 KB): the first .npy is over the limit.
    run = augcli("normalize", "in", "-o", "out", "--method", method, "--workers", 2,
                 cwd=tmp_path, limit_bytes=8000)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: cannot write ")
    assert "img_0" not in run.stderr.replace(errors[0], "")  # no file reported failed
    lines = (tmp_path / "out" / normalize.MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 1 and "normalize" in json.loads(lines[0])
