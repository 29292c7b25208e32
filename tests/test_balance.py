"""target_per_class: top up every class folder to exactly N, spreading work evenly."""

import json
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from augcli.cli import main
from augcli.runner import MANIFEST_NAME, read_manifest, run_recipe

from .conftest import photo_like, save, write_recipe

BALANCE = """\
    input: in
    output: out
    target_per_class: 8
    variants:
      flip: {ops: [{fliplr: {p: 1}}]}
      spin: {copies: 2, ops: [{rotate: {degrees: 30}}]}
"""


def make_classes(root: Path, sizes: dict) -> None:
    for tag, count in sizes.items():
        for i in range(count):
            save(root / "in" / tag / f"{tag}{i}.png", photo_like(24, 32, seed=hash(tag) % 99 + i))


def images_in(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".png")


def test_classes_below_target_reach_it_exactly_and_others_are_untouched(tmp_path):
    make_classes(tmp_path, {"cats": 3, "dogs": 1, "birds": 9})
    report = run_recipe(write_recipe(tmp_path, BALANCE), workers=1)
    out = tmp_path / "out"
    assert len(images_in(out / "cats")) == 8
    assert len(images_in(out / "dogs")) == 8
    assert images_in(out / "birds") == images_in(tmp_path / "in" / "birds")  # originals only
    for name in images_in(tmp_path / "in" / "cats"):
        assert (out / "cats" / name).read_bytes() == (tmp_path / "in" / "cats" / name).read_bytes()
    assert [(c.tag, c.before, c.after) for c in report.classes] == [
        ("birds", 9, 9), ("cats", 3, 8), ("dogs", 1, 8)]


def test_every_source_is_used_once_before_any_is_used_twice(tmp_path):
    make_classes(tmp_path, {"cats": 3})
    run_recipe(write_recipe(tmp_path, BALANCE), workers=1)
    extras = [r for r in read_manifest(tmp_path / "out") if r["variant"] is not None]
    per_source = Counter(r["source"] for r in extras)
    assert sum(per_source.values()) == 5
    assert per_source == {"cats/cats0.png": 2, "cats/cats1.png": 2, "cats/cats2.png": 1}
    # A source used twice gets both variants, not the same one again.
    for source in ("cats/cats0.png", "cats/cats1.png"):
        assert {r["variant"] for r in extras if r["source"] == source} == {"flip", "spin"}


def test_balancing_is_deterministic(tmp_path):
    make_classes(tmp_path, {"cats": 2, "dogs": 3})
    recipe = write_recipe(tmp_path, BALANCE)
    run_recipe(recipe, output=tmp_path / "a", workers=1)
    run_recipe(recipe, output=tmp_path / "b", workers=2)
    for tag in ("cats", "dogs"):
        names = images_in(tmp_path / "a" / tag)
        assert names == images_in(tmp_path / "b" / tag)
        for name in names:
            assert (tmp_path / "a" / tag / name).read_bytes() == \
                (tmp_path / "b" / tag / name).read_bytes()


def test_manifest_and_cli_show_per_class_counts(tmp_path):
    make_classes(tmp_path, {"cats": 2, "dogs": 10})
    recipe = write_recipe(tmp_path, BALANCE)
    dry = CliRunner().invoke(main, ["run", str(recipe), "--dry-run", "--per-class", "5"])
    assert "class cats: 2 -> 5" in dry.output and "class dogs: 10 -> 10" in dry.output
    result = CliRunner().invoke(main, ["run", str(recipe), "-w", "1", "--per-class", "5"])
    assert result.exit_code == 0, result.output
    assert "cats: 2 -> 5" in result.output
    assert "dogs: 10 (already at or above the target, nothing added)" in result.output
    lines = [json.loads(line) for line in
             (tmp_path / "out" / MANIFEST_NAME).read_text("utf-8").splitlines()]
    assert {"class": "cats", "before": 2, "after": 5} in lines
    assert len(images_in(tmp_path / "out" / "cats")) == 5


def test_changing_the_target_is_a_different_recipe(tmp_path):
    make_classes(tmp_path, {"cats": 2})
    recipe = write_recipe(tmp_path, BALANCE)
    run_recipe(recipe, workers=1)
    result = CliRunner().invoke(main, ["run", str(recipe), "--per-class", "4"])
    assert result.exit_code == 2 and "different recipe" in result.output
