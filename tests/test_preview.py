"""Preview shows exactly what run writes."""

import numpy as np
from PIL import Image

from augcli.imagefiles import read_image
from augcli.preview import TILE_WIDTH, make_preview, pick_outputs
from augcli.recipe import load_recipe
from augcli.runner import run_recipe

from .conftest import invoke, photo_like, save, write_recipe

RECIPE = """\
    input: in
    output: out
    format: png
    variants:
      spin: {copies: 3, ops: [{rotate: {degrees: 40}}]}
      flip: {copies: 2, ops: [{fliplr: {p: 1}}]}
"""


def test_preview_tiles_are_the_files_run_writes(tmp_path):
    # The tile width equals the image width, so tiles are unscaled copies.
    save(tmp_path / "in" / "cats" / "tom.png", photo_like(48, TILE_WIDTH, seed=1))
    recipe_path = write_recipe(tmp_path, RECIPE)
    run_recipe(recipe_path, workers=1)
    sheet_path = make_preview(load_recipe(recipe_path), tmp_path / "in" / "cats" / "tom.png",
                              variant="spin", count=3, output=tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(sheet_path))
    tiles = [sheet[22:70, i * TILE_WIDTH:(i + 1) * TILE_WIDTH] for i in range(4)]
    assert np.array_equal(tiles[0], read_image(tmp_path / "in" / "cats" / "tom.png"))
    for index in (1, 2, 3):
        written = read_image(tmp_path / "out" / "cats" / f"tom_spin_{index}.png")
        assert np.array_equal(tiles[index], written)


def test_without_variant_all_variants_take_turns(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, RECIPE))
    picked = pick_outputs(recipe, tmp_path / "x.png", None, 4)
    assert [(o.variant, o.index) for o in picked] == [("spin", 1), ("flip", 1), ("spin", 2),
                                                      ("flip", 2)]


def test_preview_command(tmp_path):
    save(tmp_path / "in" / "a.jpg", photo_like(seed=2))
    recipe = write_recipe(tmp_path, RECIPE)
    result = invoke("preview", str(recipe), str(tmp_path / "in" / "a.jpg"),
                    "-n", "5", "-o", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "p.png") as sheet:
        assert sheet.size[0] == 4 * TILE_WIDTH  # six tiles: two rows of four
    bad = invoke("preview", str(recipe), str(tmp_path / "in" / "a.jpg"),
                 "--variant", "spun")
    assert bad.exit_code == 2 and "no variant 'spun'" in bad.output
    (tmp_path / "junk.png").write_text("no", encoding="utf-8")
    junk = invoke("preview", str(recipe), str(tmp_path / "junk.png"))
    assert junk.exit_code == 2 and "junk.png" in junk.output


def test_preview_never_replaces_the_image_nor_writes_into_the_input(tmp_path):
    source = save(tmp_path / "in" / "cats" / "tom.png", photo_like())
    original = source.read_bytes()
    recipe = write_recipe(tmp_path, RECIPE)
    for output, message in [(source, "is the image itself"),
                            (tmp_path / "in" / "cats" / ".." / "cats" / "tom.png",
                             "is the image itself"),
                            (tmp_path / "in" / "sheet.png", "is inside the input folder")]:
        result = invoke("preview", str(recipe), str(source), "-o",
                        str(output))
        assert result.exit_code == 2 and message in result.output, result.output
    assert source.read_bytes() == original
    assert sorted(p.name for p in (tmp_path / "in").rglob("*")) == ["cats", "tom.png"]


def test_preview_of_an_image_whose_name_is_not_utf8(tmp_path):
    import os

    name = os.fsdecode(b"t\xf6m.png")  # Latin-1: not valid UTF-8
    source = save(tmp_path / "in" / name, photo_like())
    result = invoke("preview", str(write_recipe(tmp_path, RECIPE)),
                    str(source), "-o", str(tmp_path / "sheet.png"))
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width == 4 * TILE_WIDTH
