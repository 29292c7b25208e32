"""The output folder holds only what the run accounts for; --dry-run tells the truth."""

import json

from click.testing import CliRunner

from augcli.cli import main
from augcli.runner import MANIFEST_NAME, read_manifest

from .conftest import photo_like, save, write_recipe

UPLOAD = """\
    input: in
    output: upload
    seed: 0
    target_per_class: 4
    variants:
      turn: {ops: [{rotate: {degrees: [-20, 20]}}]}
"""


def make_input(tmp_path):
    for tag in ("cat", "cup"):
        save(tmp_path / "in" / tag / f"{tag}.png", photo_like(seed=len(tag) + ord(tag[1])))
    return write_recipe(tmp_path, UPLOAD)


def tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_a_stray_photo_in_the_output_folder_stops_the_run(tmp_path):
    recipe = make_input(tmp_path)
    stray = tmp_path / "upload" / "cat" / "holiday.jpg"
    save(stray, photo_like(seed=99), quality=90)
    (tmp_path / "upload" / "cat" / ".DS_Store").write_bytes(b"finder")  # hidden: not counted
    result = invoke("run", recipe, "-w", "1")
    assert result.exit_code == 2
    assert "holds 1 file(s) that no manifest says where they came from (cat/holiday.jpg)" \
        in result.output
    assert sorted(tree(tmp_path / "upload")) == ["cat/.DS_Store", "cat/holiday.jpg"]
    # --overwrite goes ahead and never deletes a file augcli did not write
    assert invoke("run", recipe, "-w", "1", "--overwrite").exit_code == 0
    assert stray.exists() and len(read_manifest(tmp_path / "upload")) == 8


def test_a_file_added_after_a_run_stops_the_rerun(tmp_path):
    recipe = make_input(tmp_path)
    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 0
    before = tree(tmp_path / "upload")
    (tmp_path / "upload" / "cup" / "notes.txt").write_text("to do")
    save(tmp_path / "upload" / "extra" / "x.png", photo_like(seed=5))
    result = invoke("run", recipe, "-w", "1")
    assert result.exit_code == 2 and "(cup/notes.txt, extra/x.png)" in result.output
    (tmp_path / "upload" / "cup" / "notes.txt").unlink()
    (tmp_path / "upload" / "extra" / "x.png").unlink()
    assert invoke("run", recipe, "-w", "1").exit_code == 0
    assert tree(tmp_path / "upload") == before


def test_a_killed_run_is_resumed_even_with_an_unrecorded_output(tmp_path):
    recipe = make_input(tmp_path)
    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 0
    complete = tree(tmp_path / "upload")
    manifest = tmp_path / "upload" / MANIFEST_NAME
    records = read_manifest(tmp_path / "upload")
    cup = [r for r in records if r["source"] == "cup/cup.png"]
    # killed after a worker wrote cup's outputs but before the parent recorded them: the
    # journal holds the line saying cup.png was handed to a worker and what it writes
    started = {"started": "cup/cup.png", "outputs": [r["output"] for r in cup],
               "recipe": cup[0]["recipe"]}
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records if r not in cup) +
                        json.dumps(started) + "\n")
    result = invoke("run", recipe, "-w", "1")
    assert result.exit_code == 0 and "4 outputs written, 4 skipped" in result.output
    assert tree(tmp_path / "upload") == complete


def test_dry_run_reports_what_is_done_and_refuses_what_the_run_refuses(tmp_path):
    recipe = make_input(tmp_path)
    fresh = invoke("run", recipe, "--dry-run")
    assert fresh.exit_code == 0 and "already done" not in fresh.output
    assert "total: 2 sources -> 8 outputs" in fresh.output
    assert not (tmp_path / "upload").exists()

    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 0
    records = read_manifest(tmp_path / "upload")
    manifest = tmp_path / "upload" / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records[:5]))
    for record in records[5:]:  # not made yet
        (tmp_path / "upload" / record["output"]).unlink()
    before = tree(tmp_path / "upload")
    partial = invoke("run", recipe, "--dry-run")
    assert partial.exit_code == 0
    assert "upload, 5 already done (a run skips them)" in partial.output

    other_seed = invoke("run", recipe, "--dry-run", "--seed", "4")
    assert other_seed.exit_code == 2 and "different recipe, seed or input folder" in \
        other_seed.output
    assert invoke("run", recipe, "--dry-run", "--seed", "4", "--overwrite").exit_code == 0

    save(tmp_path / "upload" / "cat" / "stray.png", photo_like(seed=8))
    stray = invoke("run", recipe, "--dry-run")
    assert stray.exit_code == 2 and "cat/stray.png" in stray.output
    (tmp_path / "upload" / "cat" / "stray.png").unlink()
    assert tree(tmp_path / "upload") == before  # a dry run writes and deletes nothing


def test_dry_run_exit_code_is_1_when_inputs_would_fail(tmp_path):
    recipe = make_input(tmp_path)
    recipe.write_text(recipe.read_text() + "annotations: {format: regions}\n")
    (tmp_path / "in" / "cat" / "cat.json").write_text('{"regions": [{"tagName": "cat"}]}')
    (tmp_path / "in" / "cup" / "cup.json").write_text('{"regions": []}')
    result = invoke("run", recipe, "--dry-run")
    assert result.exit_code == 1 and "failed: " in result.output
    assert invoke("run", recipe, "-w", "1", "-q").exit_code == 1
