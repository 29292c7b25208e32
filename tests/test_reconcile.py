"""One reconcile for every command: run, normalize and ricap refuse the same things, resume
the same way, and a dry run answers as the real run would, a live lock included."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from augcli.cli import main

from .conftest import photo_like, save, write_recipe

# A real process holding an output's lock, as another augcli run would.
HOLD_LOCK = """
import sys, time
from augcli.stores import StoreSpec
with StoreSpec.of(sys.argv[1]).open().lock():
    print("held", flush=True)
    time.sleep(60)
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def make_classes(folder: Path) -> Path:
    """Two class folders of two photos each: an input all three commands read."""
    for number, name in enumerate(["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png"]):
        save(folder / name, photo_like(32, 32, seed=number))
    return folder


def command(name: str, tmp_path: Path, *extra) -> list:
    """The command line of ``name`` from ``tmp_path/in`` into ``tmp_path/out``."""
    source, output = tmp_path / "in", tmp_path / "out"
    if name == "run":
        recipe = write_recipe(tmp_path, """\
            input: in
            output: out
            seed: 1
            variants:
              flip:
                ops:
                  - fliplr: {p: 1}
            """)
        return ["run", recipe, "-w", 1, *extra]
    if name == "normalize":
        return ["normalize", source, "-o", output, "-m", "tf", "-w", 1, *extra]
    return ["ricap", source, "-o", output, "-n", 4, "--size", "16x16", "-w", 1, *extra]


COMMANDS = ["run", "normalize", "ricap"]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_stray_file_in_the_output_is_refused_by_every_command(tmp_path, name):
    make_classes(tmp_path / "in")
    stray = tmp_path / "out" / "keep.npy"
    stray.parent.mkdir()
    stray.write_bytes(b"not augcli's")
    for extra in ((), ("--dry-run",)):
        result = invoke(*command(name, tmp_path, *extra))
        assert result.exit_code == 2, result.output
        assert "holds 1 file(s) that no manifest says where they came from (keep.npy)" in \
            result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.npy"]
    assert stray.read_bytes() == b"not augcli's"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_resumes_what_it_finished_and_makes_the_rest(tmp_path, name):
    make_classes(tmp_path / "in")
    first = invoke(*command(name, tmp_path))
    assert first.exit_code == 0, first.output
    made = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    victim = sorted(p for p in made if p.suffix in (".png", ".npy"))[0]
    victim.unlink()
    again = invoke(*command(name, tmp_path))
    assert again.exit_code == 0, again.output
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == made


@pytest.mark.parametrize("name", COMMANDS)
def test_a_dry_run_is_refused_while_another_run_holds_the_output(tmp_path, name):
    make_classes(tmp_path / "in")
    (tmp_path / "out").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_LOCK),
                               str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in (("--dry-run",), ()):
            result = invoke(*command(name, tmp_path, *extra))
            assert result.exit_code == 2, result.output
            assert f"another augcli run (pid {holder.pid}" in result.output
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".augcli.lock"]
    finally:
        holder.kill()
        holder.wait()
    # the holder gone (its lock left behind), a dry run goes ahead and writes nothing
    assert invoke(*command(name, tmp_path, "--dry-run")).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".augcli.lock"]


def test_a_dry_run_leaves_no_output_folder_behind(tmp_path):
    make_classes(tmp_path / "in")
    for name in COMMANDS:
        assert invoke(*command(name, tmp_path, "--dry-run")).exit_code == 0
        assert not (tmp_path / "out").exists()
