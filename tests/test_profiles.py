"""profile: outputs that an upload target accepts (formats, bytes, sides)."""

import numpy as np
import pytest
from PIL import Image

from augcli.errors import RecipeError
from augcli.profiles import CUSTOM_VISION
from augcli.runner import read_manifest, run_recipe

from .conftest import invoke, photo_like, save, write_recipe

FLIP = """\
    input: in
    output: out
    profile: custom-vision
    include_original: true
    variants: {flip: {ops: [{fliplr: {p: 1}}]}}
"""


def noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_formats_the_target_refuses_are_converted(tmp_path):
    save(tmp_path / "in" / "a.webp", photo_like(seed=1), lossless=True)
    rgba = np.dstack([photo_like(seed=2), np.full((48, 64), 128, np.uint8)])
    save(tmp_path / "in" / "b.tif", rgba)
    save(tmp_path / "in" / "c.bmp", photo_like(seed=3))
    run_recipe(write_recipe(tmp_path, FLIP), workers=1)
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != "manifest.jsonl")
    assert names == ["a.jpg", "a_flip_1.jpg", "b.png", "b_flip_1.png", "c.bmp", "c_flip_1.bmp"]
    with Image.open(tmp_path / "out" / "b_flip_1.png") as picture:
        assert picture.mode == "RGBA"
    assert (tmp_path / "out" / "c.bmp").read_bytes() == (tmp_path / "in" / "c.bmp").read_bytes()


@pytest.mark.slow
def test_outputs_stay_under_the_byte_limit_and_say_how(tmp_path):
    # Noise does not compress: a 2000 x 1600 PNG is about 9.6 MB, a q95 JPEG about 4 MB.
    save(tmp_path / "in" / "big.png", noise(1600, 2000))
    save(tmp_path / "in" / "big.jpg", noise(2600, 3000, seed=1), quality=98)
    assert (tmp_path / "in" / "big.png").stat().st_size > CUSTOM_VISION.max_file_bytes
    assert (tmp_path / "in" / "big.jpg").stat().st_size > CUSTOM_VISION.max_file_bytes
    run_recipe(write_recipe(tmp_path, FLIP), workers=2)
    out = tmp_path / "out"
    for name in ("big.png", "big_flip_1.png", "big.jpg", "big_flip_1.jpg"):
        assert (out / name).stat().st_size <= CUSTOM_VISION.max_file_bytes, name
    records = {r["output"]: r for r in read_manifest(out)}
    assert records["big_flip_1.png"]["conformed"]["size"][0] < 2000
    assert records["big_flip_1.jpg"]["conformed"]["quality"] < 95
    assert records["big.jpg"]["copy"] is True and "conformed" in records["big.jpg"]


def test_sides_over_the_limit_are_scaled_down(tmp_path):
    save(tmp_path / "in" / "long.png", panorama(40, 11000))  # flat would flip to itself
    run_recipe(write_recipe(tmp_path, FLIP), workers=1)
    with Image.open(tmp_path / "out" / "long_flip_1.png") as picture:
        assert max(picture.size) <= CUSTOM_VISION.max_side


def test_format_the_profile_refuses_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="format: webp is not accepted by profile custom-vision"):
        run_recipe(write_recipe(tmp_path, FLIP + "    format: webp\n"), workers=1)
    save(tmp_path / "in" / "a.png", photo_like())
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nformat: tif\n"
                                    "variants: {a: {ops: [fliplr]}}\n", name="tif.yaml")
    result = invoke("run", str(recipe), "--profile", "custom-vision")
    assert result.exit_code == 2 and "format tif is not accepted" in result.output
    typo = invoke("run", str(recipe), "--profile", "custom-visio")
    assert typo.exit_code == 2 and "did you mean 'custom-vision'" in typo.output


def panorama(height, width, seed=0):
    """A smooth picture of any shape (compresses like a photo)."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([x % 251, y % 241, (x // 7 + y // 5) % 239], axis=-1).astype(np.int16)
    return np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("profile, conform", [
    ("custom-vision", ""), ("custom-vision", "conform: {aspect: crop}\n"),
    ("custom-vision", "conform: {aspect: pad, fill: edge}\n"), ("generic", "")])
def test_every_output_of_a_profile_run_passes_check_with_that_profile(tmp_path, profile,
                                                                      conform):
    save(tmp_path / "in" / "wide" / "pano.png", panorama(200, 6000, seed=1))  # 30:1
    save(tmp_path / "in" / "wide" / "ok.webp", photo_like(300, 400, seed=2), lossless=True)
    save(tmp_path / "in" / "tall" / "tower.jpg", panorama(5200, 160, seed=3), quality=90)
    save(tmp_path / "in" / "tall" / "ok.tif", photo_like(300, 280, seed=4))
    recipe = write_recipe(tmp_path, f"input: in\noutput: out\nprofile: {profile}\n{conform}"
                                    "include_original: true\nvariants:\n  turn:\n    copies: 4\n"
                                    "    ops: [{rotate: {degrees: [-10, 10]}}]\n")
    assert run_recipe(recipe, workers=2).exit_code == 0
    result = invoke("check", str(tmp_path / "out"), "--profile", profile,
                    "--json")
    assert result.exit_code == 0, result.output
    assert '"errors": 0' in result.output and '"images": 20' in result.output


def test_a_panorama_is_padded_or_cropped_to_the_aspect_limit_and_the_manifest_says_so(tmp_path):
    source = panorama(200, 6000, seed=5)
    save(tmp_path / "in" / "pano.png", source)
    recipe = write_recipe(tmp_path, FLIP + "    conform: {aspect: pad, cval: 255}\n")
    run_recipe(recipe, workers=1)
    padded = np.asarray(Image.open(tmp_path / "out" / "pano.png"))
    assert padded.shape == (240, 6000, 3)  # 6000 / 25 = 240 rows: 20 above, 20 below
    assert (padded[:20] == 255).all() and (padded[220:] == 255).all()
    assert np.array_equal(padded[20:220], source)
    records = {r["output"]: r for r in read_manifest(tmp_path / "out")}
    assert records["pano.png"]["conformed"] == {"aspect": {"pad": [0, 20, 0, 20]}}
    assert records["pano.png"]["copy"] is True

    recipe = write_recipe(tmp_path, FLIP + "    conform: {aspect: crop}\n", name="crop.yaml")
    run_recipe(recipe, output=tmp_path / "cropped", workers=1)
    cropped = np.asarray(Image.open(tmp_path / "cropped" / "pano_flip_1.png"))
    assert np.array_equal(cropped, source[:, ::-1][:, 500:5500])  # 200 * 25 = 5000 columns
    records = {r["output"]: r for r in read_manifest(tmp_path / "cropped")}
    assert records["pano_flip_1.png"]["conformed"] == {"aspect": {"crop": [500, 0, 5000, 200]}}


def test_conform_is_validated_with_key_paths(tmp_path):
    recipe = write_recipe(tmp_path, FLIP + "    conform: {aspect: squash, fill: blur, cval: -1}\n")
    with pytest.raises(RecipeError) as caught:
        run_recipe(recipe, workers=1)
    text = str(caught.value)
    assert "conform.aspect: expected pad or crop, got 'squash'" in text
    assert "conform.fill: expected one of constant, edge" in text
    assert "conform.cval: expected a number in [0, 255], got -1" in text
