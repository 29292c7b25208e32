"""augcli normalize against independent float64 computations of Keras' formulas.

Every expected value below is computed here, from the images' own pixels, with
the formula Keras uses (ImageDataGenerator.fit/standardize of current Keras,
keras.applications preprocess_input); never from what augcli produced.
Inputs are real PNG files (lossless, so the pixels read back are the ones we
wrote), driven through the CLI with Click's CliRunner.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augcli import normalize
from augcli.cli import main

from .conftest import photo_like, save

RTOL = 1e-5  # float32 output vs a float64 reference
ATOL = 1e-6  # for values that are (almost) zero, where a relative bound means nothing
KERAS_EPSILON = 1e-6
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])


# --- helpers -------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(main, ["normalize", *map(str, args)], catch_exceptions=False)


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
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", method, "--format", "npy",
                    "-w", 1)
    assert result.exit_code == 0, result.output
    for index, original in enumerate(originals):
        assert_matches(load_output(tmp_path / "out", index), PER_IMAGE[method](original))


def test_minmax_per_channel_matches_the_formula(tmp_path):
    image = photo_like(seed=5)
    image[..., 2] = np.clip(image[..., 2], 40, 90)  # a channel with a narrow range
    (original,) = make_folder(tmp_path / "in", [image])
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "minmax", "--per-channel",
                    "--format", "npy", "-w", 1)
    assert result.exit_code == 0, result.output
    assert_matches(load_output(tmp_path / "out", 0), keras_minmax(original, per_channel=True))


def test_minmax_writes_png_by_default_rounded_from_the_formula(tmp_path):
    (original,) = make_folder(tmp_path / "in", [photo_like(seed=6)])
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "minmax", "-w", 1).exit_code == 0
    written = np.asarray(Image.open(tmp_path / "out" / "img_000.png"))
    expected = np.floor(keras_minmax(original) + 0.5)  # no .5 ties: 255 * k / span never is
    np.testing.assert_array_equal(written, expected.astype(np.uint8))


def test_minmax_flat_image_stays_flat_without_dividing_by_zero(tmp_path):
    flat = np.full((10, 12, 3), 77, np.uint8)
    one_flat_channel = photo_like(10, 12, seed=1)
    one_flat_channel[..., 1] = 200
    make_folder(tmp_path / "in", [flat, one_flat_channel])
    with np.errstate(all="raise"):
        result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "minmax", "--per-channel",
                        "--format", "npy", "-w", 1)
    assert result.exit_code == 0, result.output
    assert np.all(load_output(tmp_path / "out", 0) == 0)
    second = load_output(tmp_path / "out", 1)
    assert np.all(second[..., 1] == 0)
    assert second[..., 0].max() == 255 and second[..., 2].max() == 255


def test_caffe_puts_channels_in_bgr_order(tmp_path):
    red = np.zeros((4, 5, 3), np.uint8)
    red[..., 0] = 255
    make_folder(tmp_path / "in", [red])
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "caffe", "-w", 1).exit_code == 0
    pixel = load_output(tmp_path / "out", 0)[0, 0]
    np.testing.assert_allclose(pixel, [0 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)


def test_png_of_a_float_method_is_its_result_stretched_to_0_255_in_rgb_order(tmp_path):
    (original,) = make_folder(tmp_path / "in", [photo_like(seed=8)])
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "caffe", "--format", "png",
                  "-w", 1).exit_code == 0
    written = np.asarray(Image.open(tmp_path / "out" / "img_000.png")).astype(int)
    expected = keras_minmax(keras_caffe(original))[..., ::-1]  # back to RGB for viewing
    assert np.abs(written - expected).max() <= 0.5 + 1e-9


# --- featurewise ---------------------------------------------------------------------------

def test_featurewise_matches_keras_fit_on_the_whole_folder(tmp_path):
    originals = make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(6)])
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "featurewise", "-w", 1)
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
        result = invoke(tmp_path / "in", "-o", tmp_path / method, "-m", method, "-w", 1)
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
    fit = invoke(tmp_path / "train", "-m", "featurewise", "--fit-only", "--stats", stats, "-w", 1)
    assert fit.exit_code == 0, fit.output
    assert f"4 images read, 0 files written, statistics saved to {stats}" in fit.output
    assert not (tmp_path / "out").exists()
    mean, std = keras_featurewise_fit(np.stack(train))
    saved = json.loads(stats.read_text())
    np.testing.assert_allclose(saved["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(saved["std"], std, rtol=1e-12)

    result = invoke(tmp_path / "test", "-o", tmp_path / "out", "-m", "featurewise", "--stats",
                    stats, "-w", 1)
    assert result.exit_code == 0, result.output
    for index, original in enumerate(test):
        assert_matches(load_output(tmp_path / "out", index),
                       (original - mean) / (std + KERAS_EPSILON))


def test_featurewise_output_bytes_do_not_depend_on_the_number_of_workers(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(8)])
    for workers in (1, 2):
        result = invoke(tmp_path / "in", "-o", tmp_path / f"w{workers}", "-m", "featurewise",
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
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size", "8x8",
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
    assert invoke(tmp_path / "train", "-m", "zca", "--size", "8x8", "--zca-epsilon", "0.01",
                  "--fit-only", "--stats", stats, "-w", 1).exit_code == 0
    result = invoke(tmp_path / "test", "-o", tmp_path / "out", "-m", "zca", "--stats", stats,
                    "-w", 1)
    assert result.exit_code == 0, result.output
    expected = keras_zca_apply(test, *keras_zca_fit(train, epsilon=0.01))
    outputs = np.stack([load_output(tmp_path / "out", i) for i in range(len(test))])
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=1e-5 * np.abs(expected).max())


def test_zca_stats_saved_then_applied_elsewhere_equal_keras_fit_on_the_first(tmp_path):
    train = np.stack(make_folder(tmp_path / "train", correlated_images(250, seed=1)))
    test = np.stack(make_folder(tmp_path / "test", correlated_images(5, seed=2)))
    stats = tmp_path / "zca.npz"
    fit = invoke(tmp_path / "train", "-m", "zca", "--size", "8x8", "--fit-only", "--stats", stats,
                 "-w", 1)
    assert fit.exit_code == 0, fit.output
    result = invoke(tmp_path / "test", "-o", tmp_path / "out", "-m", "zca", "--stats", stats,
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
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size", "4000x4000")
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
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--size", "16x12",
                  "-w", 1).exit_code == 0
    expected = keras_tf(cv2.resize(image, (16, 12), interpolation=cv2.INTER_AREA).astype(float))
    assert_matches(load_output(tmp_path / "out", 0), expected)


def test_letterbox_keeps_the_aspect_ratio_on_black_bars(tmp_path):
    image = np.full((10, 40, 3), 255, np.uint8)  # 4:1
    make_folder(tmp_path / "in", [image])
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--size", "20x20",
                  "--resize", "letterbox", "-w", 1).exit_code == 0
    output = load_output(tmp_path / "out", 0)
    assert output.shape == (20, 20, 3)
    rows = output[:, :, 0].mean(axis=1)
    np.testing.assert_array_equal(rows, [-1] * 7 + [1] * 5 + [-1] * 8)  # 20x5 image, centred


def test_grey_inputs_become_three_equal_channels_in_rgb_mode(tmp_path):
    grey = photo_like(seed=3)[..., 0]
    (original,) = make_folder(tmp_path / "in", [grey])
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "-w", 1).exit_code == 0
    expected = keras_tf(np.repeat(original[..., None], 3, axis=2))
    assert_matches(load_output(tmp_path / "out", 0), expected)


def test_grey_mode_converts_colour_with_pillows_luminance(tmp_path):
    image = photo_like(seed=4)
    make_folder(tmp_path / "in", [image])
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--color", "grey",
                  "-w", 1).exit_code == 0
    r, g, b = (image[..., i].astype(int) for i in range(3))
    luminance = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # ITU-R 601-2, as Pillow's L
    assert_matches(load_output(tmp_path / "out", 0), keras_tf(luminance[..., None].astype(float)))


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.dstack([photo_like(seed=5), np.full((48, 64), 10, np.uint8)])
    make_folder(tmp_path / "in", [rgba])
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "-w", 1).exit_code == 0
    assert_matches(load_output(tmp_path / "out", 0), keras_tf(rgba[..., :3].astype(float)))


def test_sixteen_bit_images_are_brought_to_the_8_bit_scale(tmp_path):
    deep = np.array([[0, 257 * 100, 65535]], np.uint16)
    save(tmp_path / "in" / "img_000.png", deep)
    assert invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf", "--color", "grey",
                  "-w", 1).exit_code == 0
    assert_matches(load_output(tmp_path / "out", 0), keras_tf(np.array([[[0.0], [100], [255]]])))


# --- failures and usage errors -------------------------------------------------------------

@pytest.mark.parametrize("method", ["tf", "featurewise"])
def test_a_corrupt_file_is_reported_once_skipped_and_exits_1(tmp_path, method):
    originals = make_folder(tmp_path / "in", [photo_like(seed=s) for s in range(3)])
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", method, "-w", 1)
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
    refused = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size", "4x4")
    assert refused.exit_code == 2 and "already holds 1 file(s)" in refused.output
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--size", "4x4",
                    "-w", 1, "--overwrite")
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
    (["-m", "tf", "--size", "12"], "--size expects WIDTHxHEIGHT"),
    (["-m", "featurewise", "--stats", "missing.json"], "make it first with --fit-only"),
    (["-m", "tf", "--zca-epsilon", "0.1"], "--zca-epsilon only applies to --method zca"),
])
def test_impossible_flag_combinations_exit_2_before_writing(tmp_path, args, message):
    make_folder(tmp_path / "in", [photo_like(seed=1)])
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_statistics_of_another_method_are_refused(tmp_path):
    make_folder(tmp_path / "in", correlated_images(3))
    stats = tmp_path / "stats.json"
    invoke(tmp_path / "in", "-m", "featurewise", "--fit-only", "--stats", stats, "-w", 1)
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "zca", "--stats", stats)
    assert result.exit_code == 2
    assert "holds featurewise statistics, not zca" in result.output


def test_output_inside_input_is_refused(tmp_path):
    make_folder(tmp_path / "in", [photo_like(seed=1)])
    result = invoke(tmp_path / "in", "-o", tmp_path / "in" / "out", "-m", "tf")
    assert result.exit_code == 2
    assert "is inside the input folder" in result.output


def test_two_sources_with_one_stem_are_refused(tmp_path):
    save(tmp_path / "in" / "a.png", photo_like(seed=1))
    save(tmp_path / "in" / "a.bmp", photo_like(seed=2))
    result = invoke(tmp_path / "in", "-o", tmp_path / "out", "-m", "tf")
    assert result.exit_code == 2
    assert "would both write a.npy" in result.output


def test_the_cli_offers_exactly_the_library_methods():
    options = {param.name: param for param in main.commands["normalize"].params}
    assert tuple(options["method"].type.choices) == normalize.METHODS
