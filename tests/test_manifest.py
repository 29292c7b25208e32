"""The manifest and the output folder's lock, against killed runs, full disks, tampered
manifests and concurrent runs: real processes, real files."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from augcli import manifest
from augcli.errors import UsageError
from augcli.manifest import LOCK_NAME, MANIFEST_NAME, read_manifest
from augcli.runner import run_recipe
from augcli.stores import FolderStore

from .conftest import mount_tmpfs, photo_like, save, unmount, write_recipe

REPO = Path(__file__).resolve().parent.parent


def augcli(*args, cwd, limit_bytes=None, timeout=300):
    """``augcli ARGS`` as a real process; ``limit_bytes``: RLIMIT_FSIZE, as a full disk."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "augcli.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)},
                          preexec_fn=limit if limit_bytes else None)


def images_under(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST_NAME, LOCK_NAME)}


def small_dataset(folder: Path, count=20, side=16) -> Path:
    for i in range(count):
        save(folder / f"c{i % 2}" / f"é{i:02d}.png", photo_like(side, side, seed=i))
    return folder


# --- reading: torn and corrupt lines ------------------------------------------------------

def test_a_torn_last_line_inside_a_utf8_sequence_is_skipped_and_repaired(tmp_path,
                                                                       simple_recipe):
    run_recipe(simple_recipe, workers=1)
    out = tmp_path / "out"
    whole = (out / MANIFEST_NAME).read_bytes()
    (out / "cats/tom_mixed_1.jpg").unlink()
    with open(out / MANIFEST_NAME, "ab") as file:
        file.write('{"output": "cats/caf\u00e9'.encode()[:-1])  # cut inside "é"
    assert len(read_manifest(out)) == 16
    report = run_recipe(simple_recipe, workers=1)
    assert (report.written, report.skipped) == (1, 15)
    assert (out / MANIFEST_NAME).read_bytes() == whole


def test_corrupt_lines_are_skipped(tmp_path):
    (tmp_path / MANIFEST_NAME).write_bytes(
        b'[1, 2]\n"text"\n{"output": 5}\n\xff\xfe\n' + b"[" * 100_000 + b"\n"
        + b'{"output": "a.png", "n": 1' + b"0" * 5000 + b"}\n"
        + b'{"output": "ok.png", "source": "ok.png"}\n{"output": "torn')
    assert read_manifest(tmp_path) == [{"output": "ok.png", "source": "ok.png"}]


def test_file_names_that_are_not_utf8_round_trip(tmp_path):
    if sys.platform == "darwin":  # pragma: no cover - APFS refuses such names
        pytest.skip("the file system refuses names that are not UTF-8")
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    save(tmp_path / "in" / name, photo_like())
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants: {a: {ops: [fliplr]}}\n")
    result = augcli("run", recipe, "-w", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "out" / MANIFEST_NAME).read_bytes()
    data.decode("utf-8")  # the manifest stays UTF-8
    (record,) = read_manifest(tmp_path / "out")
    assert record["source"] == name and (tmp_path / "out" / record["output"]).exists()
    again = augcli("run", recipe, "-w", 1, cwd=tmp_path)
    assert again.returncode == 0 and "0 outputs written, 1 skipped" in again.stderr


# --- item 1: --overwrite deletes only inside the output folder -------------------------------

@pytest.mark.parametrize("name", ["../victim.txt", "{victim}", "link/victim.txt"])
def test_a_manifest_naming_paths_outside_the_folder_is_refused(tmp_path, simple_recipe, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    name = name.format(victim=victim)
    (out / MANIFEST_NAME).write_text(json.dumps({"output": name, "source": "x.png",
                                                 "recipe": "0"}) + "\n", encoding="utf-8")
    result = augcli("run", simple_recipe, "--overwrite", "-w", 1, cwd=tmp_path)
    assert result.returncode == 2
    assert "not inside the output folder" in result.stderr and "Traceback" not in result.stderr
    assert victim.read_text(encoding="utf-8") == "keep me"


def test_outputs_are_never_written_through_a_link_out_of_the_folder(tmp_path, simple_recipe):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cats").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="leads out of the output folder"):
        run_recipe(simple_recipe, workers=1)
    assert not list(elsewhere.iterdir())


# --- item 4: a run killed before its first source finished can be resumed ---------------------

@pytest.mark.slow
def test_a_run_killed_before_any_source_finished_resumes(tmp_path):
    save(tmp_path / "in" / "big.png", photo_like(480, 640))
    save(tmp_path / "in" / "next.png", photo_like(480, 640, seed=1))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n  a:\n    copies: 40\n"
                                    "    ops: [{affine: {rotate: 20}}, {dropout: {p: 0.1}}]\n")
    process = subprocess.Popen([sys.executable, "-m", "augcli.cli", "run", str(recipe), "-w", "1",
                                "-q"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    out = tmp_path / "out"
    deadline = time.monotonic() + 120
    while len(list(out.glob("big_a_*.png"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    on_disk = {path.name for path in out.glob("big_a_*.png")}
    recorded = {record["output"] for record in read_manifest(out)}
    assert 3 <= len(on_disk) < 40
    # each output is journalled as it is published (one caught by the kill in between may
    # not be); the rerun keeps what is recorded and replaces the rest
    assert recorded <= on_disk and len(recorded) >= len(on_disk) - 1
    result = augcli("run", recipe, "-w", 1, "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert augcli("run", recipe, "-o", tmp_path / "clean", "-w", 1, "-q",
                  cwd=tmp_path).returncode == 0
    assert images_under(out) == images_under(tmp_path / "clean")
    assert len(read_manifest(out)) == 80
    assert "started" not in (out / MANIFEST_NAME).read_text(encoding="utf-8")


# --- item 5: a full disk is one clear error, and the next run finishes -----------------------

@pytest.mark.slow  # real subprocesses: over 2 s each
def test_a_full_disk_while_appending_is_one_error_and_the_rerun_finishes(tmp_path):
    small_dataset(tmp_path / "in")
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants: {a: {copies: 3, "
                                    "ops: [{dropout: {p: 0.1}}]}}\n")
    full = augcli("run", recipe, "-w", 1, cwd=tmp_path, limit_bytes=12_000)
    assert full.returncode == 2, full.stderr
    assert "Error: cannot write" in full.stderr and "File too large" in full.stderr
    assert "Traceback" not in full.stderr
    out = tmp_path / "out"
    assert 0 < len(read_manifest(out)) < 60
    rerun = augcli("run", recipe, "-w", 2, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert augcli("run", recipe, "-o", tmp_path / "clean", "-w", 1, cwd=tmp_path).returncode == 0
    assert images_under(out) == images_under(tmp_path / "clean")
    clean = read_manifest(tmp_path / "clean")
    assert sorted(map(json.dumps, read_manifest(out))) == sorted(map(json.dumps, clean))


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB file system (tmpfs): needs root, else the test is skipped."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not mount_tmpfs(mount, "size=256k"):
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    unmount(mount)


def test_a_really_full_disk_is_one_error(tmp_path, tiny_disk):
    small_dataset(tmp_path / "in", count=40, side=64)
    recipe = write_recipe(tmp_path, "input: in\nvariants: {a: {copies: 4, "
                                    "ops: [{dropout: {p: 0.1}}]}}\n")
    full = augcli("run", recipe, "-o", tiny_disk / "out", "-w", 2, cwd=tmp_path)
    assert full.returncode == 2, full.stderr
    assert "Error: cannot write" in full.stderr and "No space left on device" in full.stderr
    assert "Traceback" not in full.stderr and full.stderr.count("Error:") == 1
    # Whatever the manifest says is done is whole and readable.
    for record in read_manifest(tiny_disk / "out"):
        assert (tiny_disk / "out" / record["output"]).stat().st_size > 0


# --- item 6: one run at a time per output folder ---------------------------------------------

@pytest.mark.slow  # real subprocesses: over 2 s each
def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    for i in range(6):
        save(tmp_path / "in" / f"img{i}.png", photo_like(480, 640, seed=i))
    recipe = write_recipe(tmp_path, "input: in\noutput: out\nvariants:\n  a:\n    copies: 10\n"
                                    "    ops: [{affine: {rotate: 20}}]\n")
    first = subprocess.Popen([sys.executable, "-m", "augcli.cli", "run", str(recipe), "-w", "1",
                              "-q"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not (tmp_path / "out" / LOCK_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = augcli("run", recipe, "-w", 1, "-q", cwd=tmp_path)
    assert first.wait(timeout=300) == 0
    assert second.returncode == 2
    assert f"another augcli run (pid {first.pid}) is writing into" in second.stderr
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    assert len(read_manifest(tmp_path / "out")) == 60


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_note(tmp_path, simple_recipe):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_NAME).write_text(f"{pid}\n", encoding="ascii")
    result = augcli("run", simple_recipe, "-w", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"note: took over the lock {tmp_path / 'out' / LOCK_NAME} left by pid {pid}" in \
        result.stderr
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with FolderStore(tmp_path).lock():
        assert (tmp_path / LOCK_NAME).read_text(encoding="ascii") == f"{os.getpid()}\n"
        with pytest.raises(UsageError, match="another augcli run"), FolderStore(tmp_path).lock():
            pass
    assert not (tmp_path / LOCK_NAME).exists()


# --- item 7: a changed source or input folder is not "already done" --------------------------

def test_a_changed_source_is_redone(tmp_path, simple_recipe, dataset):
    run_recipe(simple_recipe, workers=1)
    out = tmp_path / "out"
    before = images_under(out)
    save(dataset / "cats" / "felix.png", photo_like(seed=99))  # new content, same name
    report = run_recipe(simple_recipe, workers=1)
    assert (report.written, report.skipped) == (4, 12)
    after = images_under(out)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {f"cats/felix_{v}_{i}.png" for v in ("noise", "mixed") for i in (1, 2)}
    status = (dataset / "cats" / "felix.png").stat()
    for record in read_manifest(out):
        if record["source"] == "cats/felix.png":
            assert (record["source_size"], record["source_mtime_ns"]) == \
                (status.st_size, status.st_mtime_ns)


def test_another_input_folder_is_another_recipe(tmp_path, simple_recipe, dataset):
    run_recipe(simple_recipe, workers=1)
    other = tmp_path / "other"
    save(other / "cats" / "tom.jpg", photo_like(seed=5), quality=95)
    with pytest.raises(UsageError, match=r"other settings \(input .*in -> .*other\)"):
        run_recipe(simple_recipe, input=other, workers=1)


def test_journal_lines_in_the_middle_of_a_run_name_started_sources(tmp_path):
    journal = manifest.Journal(FolderStore(tmp_path))
    journal.append(manifest.started_line("a.png", ["a_x_1.png"], "f"))
    journal.close()
    earlier = manifest.load(FolderStore(tmp_path))
    assert earlier.names() == {"a_x_1.png"} and earlier.fingerprints == {"f"}


def test_an_output_left_empty_by_a_crash_of_the_machine_is_made_again(tmp_path, simple_recipe):
    """Writes are not fsynced: after a power loss a renamed file can be empty on disk."""
    run_recipe(simple_recipe, workers=1)
    out = tmp_path / "out"
    whole = images_under(out)
    (out / "dogs/rex_mixed_2.bmp").write_bytes(b"")
    report = run_recipe(simple_recipe, workers=1)
    assert (report.written, report.skipped) == (1, 15)
    assert images_under(out) == whole
    sizes = {r["output"]: r["bytes"] for r in read_manifest(out)}
    assert sizes == {name: len(data) for name, data in whole.items()}


# --- the final manifest is sorted in bounded memory ------------------------------------------

@pytest.mark.parametrize("spill_bytes, merge_runs", [(1 << 30, 64), (150, 2), (1, 3)])
def test_records_arriving_in_any_order_are_written_by_name(tmp_path, monkeypatch, spill_bytes,
                                                           merge_runs):
    """In memory, spilled to sorted runs, or merged runs of runs: the manifest holds the
    records sorted by output name (Python's string order), the later of two records for
    one output kept, and no temporary file is left."""
    import random

    monkeypatch.setattr(manifest, "SPILL_BYTES", spill_bytes)
    monkeypatch.setattr(manifest, "MERGE_RUNS", merge_runs)
    names = [f"c{i % 3}/p{i}_a_{j}.png" for i in range(12) for j in (1, 2, 10)] + \
        ["é.png", "Z.png", "z\t.png", os.fsdecode(b"caf\xe9.png"), "日本.png"]
    records = [{"output": name, "n": index} for index, name in enumerate(names)]
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    again = {"output": "Z.png", "n": "later"}
    expected = sorted([r for r in records if r["output"] != "Z.png"] + [again],
                      key=lambda r: r["output"])
    with manifest.SortedRecords(tmp_path) as kept:
        for record in [*shuffled, again]:
            kept.add(record)
        assert bool(kept.runs) == (spill_bytes < 1000)  # spilled to disk
        manifest.rewrite(FolderStore(tmp_path), kept, started=[{"started": "x.png", "outputs": [],
                                                   "recipe": "r"}])
        assert list(kept.records()) == expected  # read again, as the COCO writer does
    lines = [json.dumps(r, ensure_ascii=False) for r in expected]
    lines = [json.dumps(r) if "\udce9" in r["output"] else line
             for r, line in zip(expected, lines)]  # not UTF-8: written as JSON escapes
    assert (tmp_path / MANIFEST_NAME).read_bytes() == \
        ("\n".join(lines) + '\n{"started": "x.png", "outputs": [], "recipe": "r"}\n').encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]
