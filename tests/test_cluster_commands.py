"""normalize and ricap past one machine, the object-store lock, ranged header reads and
Ctrl-C on a cluster, against real local servers (tests/servers.py).

As in test_cluster.py, every run on a store or a cluster is compared with the same
command run folder to folder by one in-process worker: same bytes, same records.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from augcli.normalize import NormalizeSettings, normalize_folder
from augcli.normalize import read_manifest as read_normalize_manifest
from augcli.ricap import RicapSettings, make_montages
from augcli.runner import read_manifest, run_recipe
from augcli.stores import StoreSpec
from augcli.stores.objects import LOCK_STALE_SECONDS

from .conftest import invoke, kill_when, output_files, photo_like, save, start_cli, write_recipe
from .test_cluster import RECIPE, assert_same_as_reference, new_bucket, store_files

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

LOCK = ".augcli.lock"


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    """Two class folders of small photos (ricap needs classes; normalize reads them too)."""
    folder = tmp_path_factory.mktemp("commands") / "in"
    for index in range(6):
        kind = "cats" if index % 2 else "dogs"
        save(folder / kind / f"p{index}.{'png' if index % 3 else 'jpg'}",
             photo_like(30 + index, 40, seed=index))
    return folder


def without_index_files(files: dict) -> dict:
    return {key: data for key, data in files.items() if not key.startswith(".")}


def azure_or_s3(servers):
    """An object-store filesystem and URL scheme: Azurite where installed, else moto S3."""
    if servers.azure_missing:
        return servers.s3(), "s3"
    import adlfs

    return adlfs.AzureBlobFileSystem(), "az"


# --- normalize ---------------------------------------------------------------------------

@pytest.mark.slow
def test_normalize_on_s3_with_the_pool_and_on_dask_gives_the_folder_bytes(
        servers, classes, client, tmp_path):
    """featurewise fits on the whole input first (a pass of its own), then writes; zca's
    parent whitens and publishes: both give the folder's bytes and manifest lines."""
    s3 = servers.s3()
    bucket = new_bucket(s3)
    s3.put(f"{classes}/", f"{bucket}/raw/", recursive=True)
    for method, size in (("featurewise", None), ("zca", (6, 5))):
        folder = tmp_path / method
        report = normalize_folder(NormalizeSettings.of(classes, folder, method=method,
                                                       size=size), workers=1)
        assert report.exit_code == 0 and report.written == 6
        expected = output_files(folder)
        header, records = read_normalize_manifest(folder)

        pool = f"s3://{bucket}/{method}-pool"
        report = normalize_folder(NormalizeSettings.of(classes, pool, method=method, size=size),
                                  workers=2)
        assert report.exit_code == 0 and report.written == 6
        assert store_files(s3, pool[5:]) == expected
        assert read_normalize_manifest(pool) == (header, records)

        dask = f"s3://{bucket}/{method}-dask"
        report = normalize_folder(NormalizeSettings.of(f"s3://{bucket}/raw", dask,
                                                       method=method, size=size), client=client)
        assert report.exit_code == 0 and report.images_read == 6
        assert store_files(s3, dask[5:]) == expected
        assert read_normalize_manifest(dask)[1] == records
        assert not s3.exists(f"{dask[5:]}/{LOCK}")

    # A rerun skips every finished object; another method into the same prefix is refused.
    again = normalize_folder(NormalizeSettings.of(f"s3://{bucket}/raw", f"s3://{bucket}/zca-dask",
                                                  method="zca", size=(6, 5)), client=client)
    assert again.written == 0 and again.skipped == 6
    result = invoke("normalize", str(classes), "-o",
                    f"s3://{bucket}/zca-dask", "-m", "tf", "-q")
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: s3://{bucket}/zca-dask holds outputs of an "
                                    "earlier normalize with other settings (method zca -> tf")


@pytest.mark.slow
def test_normalize_stats_stay_a_local_file(servers, classes, tmp_path):
    bucket = new_bucket(servers.s3())
    result = invoke("normalize", str(classes), "-m", "featurewise", "--fit-only",
                    "--stats", f"s3://{bucket}/stats.json")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line == (f"Error: --stats needs a local file, not s3://{bucket}/stats.json: the "
                    "statistics are read and saved on this machine (input and output may "
                    "be URLs)")
    # Fitted from a URL input into a local file, then applied into a prefix.
    stats = tmp_path / "stats.json"
    servers.s3().put(f"{classes}/", f"{bucket}/raw/", recursive=True)
    result = invoke("normalize", f"s3://{bucket}/raw", "-m", "featurewise",
                    "--fit-only", "--stats", str(stats), "-q")
    assert result.exit_code == 0, result.output
    local = normalize_folder(NormalizeSettings.of(classes, tmp_path / "local",
                                                  method="featurewise", stats=stats), workers=1)
    assert local.written == 6
    result = invoke("normalize", f"s3://{bucket}/raw", "-o", f"s3://{bucket}/out",
                    "-m", "featurewise", "--stats", str(stats), "-q")
    assert result.exit_code == 0, result.output
    assert store_files(servers.s3(), f"{bucket}/out") == output_files(tmp_path / "local")


# --- ricap --------------------------------------------------------------------------------

RICAP = {"count": 9, "size": (24, 20), "seed": 3, "batch_size": 4, "hard_label": "majority",
         "epochs": 2}


@pytest.mark.slow
def test_ricap_on_a_store_and_on_dask_gives_the_folder_bytes_and_resumes(
        servers, classes, client, tmp_path):
    make_montages(RicapSettings.of(classes, tmp_path / "folder", **RICAP), workers=1)
    expected = output_files(tmp_path / "folder")
    assert sum(key.endswith(".png") for key in expected) == 2 * 9 * 2  # montages and copies

    fs, scheme = azure_or_s3(servers)
    container = new_bucket(fs, "ricap")
    fs.put(f"{classes}/", f"{container}/raw/", recursive=True)
    out = f"{scheme}://{container}/montages"
    settings = RicapSettings.of(f"{scheme}://{container}/raw", out, **RICAP)
    report = make_montages(settings, client=client)
    assert report.exit_code == 0 and report.written == 18
    assert without_index_files(store_files(fs, f"{container}/montages")) == \
        {key: data for key, data in expected.items() if key != "manifest.jsonl"}

    # Montages lost (a run killed before them): the rerun makes only those, same bytes.
    copy = next(key for key in sorted(expected) if key.startswith("epoch_001/majority/"))
    for key in ("epoch_000/ricap_00002.png", copy):  # a montage, and a montage's copy
        fs.rm_file(f"{container}/montages/{key}")
    report = make_montages(settings, workers=2)
    assert report.skipped == 16 and report.written == 2
    assert without_index_files(store_files(fs, f"{container}/montages")) == \
        {key: data for key, data in expected.items() if key != "manifest.jsonl"}

    # Other settings are refused; --overwrite replaces every object of the earlier run.
    result = invoke("ricap", str(classes), "-o", out, "-n", "3", "--size",
                    "24x20", "-q")
    assert result.exit_code == 2 and "holds montages of another ricap run" in result.output
    result = invoke("ricap", str(classes), "-o", out, "-n", "3", "--size",
                    "24x20", "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    left = sorted(without_index_files(store_files(fs, f"{container}/montages")))
    assert left == ["labels.csv", "montages.jsonl", "ricap.json", "ricap_00001.png",
                    "ricap_00002.png", "ricap_00003.png"]


@pytest.mark.slow
def test_cli_cluster_local_for_normalize_and_ricap(servers, classes, tmp_path):
    """The same --cluster option as run's, on both commands, through the CLI."""
    for name, args in (("normalize", ["-m", "minmax"]),
                       ("ricap", ["-n", "5", "--size", "16x16"])):
        reference = invoke(name, str(classes), "-o", str(tmp_path / name),
                           *args, "-w", "1", "-q")
        assert reference.exit_code == 0, reference.output
        result = invoke(name, str(classes), "-o", str(tmp_path / f"{name}-dask"),
                        *args, "--cluster", "local", "-w", "2", "-q")
        assert result.exit_code == 0, result.output
        assert output_files(tmp_path / f"{name}-dask") == output_files(tmp_path / name)
    assert "--cluster local|ADDRESS|FILE" in invoke("ricap", "--help").output


# --- the object-store lock -------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_run_into_a_locked_prefix_is_refused_until_the_first_ends(
        servers, classes, tmp_path):
    """A run holds the prefix's lock (the very lock a run takes): a second run, of any
    command, is refused with one line and writes nothing; once the first lets go, it runs
    and leaves no lock behind."""
    recipe = write_recipe(tmp_path, RECIPE)
    for fs, scheme in {azure_or_s3(servers), (servers.s3(), "s3")}:
        container = new_bucket(fs, "lock")
        out = f"{scheme}://{container}/out"
        holder = StoreSpec.of(out).open().lock()
        with holder:
            body = json.loads(fs.cat_file(f"{container}/out/{LOCK}"))
            assert body["pid"] == os.getpid() and body["host"] == socket.gethostname()
            for command in (["run", str(recipe), "-i", str(classes), "-o", out],
                            ["normalize", str(classes), "-o", out, "-m", "tf"],
                            ["ricap", str(classes), "-o", out, "-n", "2", "--size", "8x8"]):
                result = invoke(*command, "-q")
                assert result.exit_code == 2, result.output
                (line,) = result.output.strip().splitlines()
                assert line.startswith(f"Error: another augcli run (pid {os.getpid()} on "
                                       f"{socket.gethostname()} since ")
                assert line.endswith(f"is writing into {out}; wait for it to end or choose "
                                     "another output prefix (if no run is going on, delete "
                                     f"{out}/{LOCK})")
            fs.invalidate_cache()
            assert [key.rsplit("/", 1)[-1] for key in fs.find(f"{container}/out")] == [LOCK]
        fs.invalidate_cache()
        assert not fs.exists(f"{container}/out/{LOCK}")
        report = run_recipe(recipe, input=classes, output=out, workers=1)
        assert report.exit_code == 0 and not report.notes
        fs.invalidate_cache()
        assert not fs.exists(f"{container}/out/{LOCK}")


def test_the_exclusive_create_refuses_a_second_lock_even_without_the_first_look(servers):
    """S3 If-None-Match: * (and Azure's overwrite=False): the create itself says no."""
    store = StoreSpec.of(f"s3://{new_bucket(servers.s3())}/out").open()
    assert store.create(LOCK, b"first") is True
    assert store.create(LOCK, b"second") is False
    assert store.read(LOCK) == b"first"


@pytest.mark.slow
def test_a_stale_lock_is_taken_over_with_a_note(servers, classes, tmp_path):
    """A lock not rewritten for over an hour (stale by its age: whether a pid on another
    host runs cannot be known), or left on this host by a pid that has ended."""
    recipe = write_recipe(tmp_path, RECIPE)
    s3 = servers.s3()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(ended.stdout)
    old = {"pid": 1, "host": "elsewhere", "started": 0.0, "token": "x",
           "time": time.time() - LOCK_STALE_SECONDS - 60}
    dead = {"pid": dead_pid, "host": socket.gethostname(), "started": time.time(),
            "time": time.time(), "token": "y"}
    for holder, who, why in ((old, "pid 1 on elsewhere", "stale: not rewritten for 61 minutes"),
                             (dead, f"pid {dead_pid} on ", "which is no longer running")):
        bucket = new_bucket(s3)
        s3.pipe_file(f"{bucket}/out/{LOCK}", json.dumps(holder).encode())
        result = invoke("run", str(recipe), "-i", str(classes), "-o",
                        f"s3://{bucket}/out", "-q")
        assert result.exit_code == 0, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"note: took over the lock s3://{bucket}/out/{LOCK} left by "
                               f"{who}") and line.endswith(why), line
        s3.invalidate_cache()
        assert not s3.exists(f"{bucket}/out/{LOCK}")
    # A fresh lock from another host is not stale: refused.
    bucket = new_bucket(s3)
    s3.pipe_file(f"{bucket}/out/{LOCK}", json.dumps({**old, "time": time.time()}).encode())
    result = invoke("run", str(recipe), "-i", str(classes), "-o",
                    f"s3://{bucket}/out", "-q")
    assert result.exit_code == 2 and "another augcli run (pid 1 on elsewhere" in result.output


def test_on_a_store_without_exclusive_create_the_lock_is_still_looked_at_first(servers):
    """The GCS emulator ignores ifGenerationMatch=0 (it overwrites): the lock is read
    before it is created, and read back after, so a held lock is still refused."""
    from augcli.errors import UsageError

    url = f"gs://gcs-data/lock-{time.time_ns()}"
    first = StoreSpec.of(url, {"token": "anon", "project": "augcli-test"}).open()
    assert first.create("probe", b"1") and first.create("probe", b"2")  # not exclusive here
    with first.lock(), pytest.raises(UsageError, match="another augcli run"), first.lock():
        pass
    assert LOCK not in first.existing([LOCK])


# --- profile planning reads only the head of each source -----------------------------------

def tiff_with_its_header_last(pixels) -> bytes:
    """An uncompressed RGB TIFF laid out as some writers do: the pixels first, the IFD
    (what says the image's size and channels) after them."""
    import struct

    height, width, _ = pixels.shape
    data = pixels.tobytes()
    bits_at = 8 + len(data)
    ifd_at = bits_at + 6
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, bits_at), (259, 3, 1, 1),
               (262, 3, 1, 2), (273, 4, 1, 8), (277, 3, 1, 3), (278, 4, 1, height),
               (279, 4, 1, len(data))]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) +
        (struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value))
        for tag, kind, count, value in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + data + struct.pack("<HHH", 8, 8, 8) + ifd


@pytest.mark.slow
def test_profile_planning_reads_only_each_sources_head(servers, tmp_path):
    """custom-vision does not take WebP or TIFF: the planner reads each such source's header
    (transparent -> png, else jpg) with one ranged GET of its first 64 KiB, and the whole
    object only when the header is not in that (a TIFF whose IFD comes last)."""
    import numpy as np
    from PIL import Image

    from augcli.plan import plan_run
    from augcli.runner import resolve_recipe
    from augcli.stores.objects import HEAD_BYTES

    folder = tmp_path / "in"
    noise = photo_like(500, 700, seed=5)
    save(folder / "big.webp", noise, lossless=True)
    clear = np.dstack([noise, np.tile((np.arange(700) % 256).astype(np.uint8), (500, 1))])
    save(folder / "clear.webp", clear, lossless=True)
    save(folder / "lossy.webp", clear, quality=80)
    Image.fromarray(noise).save(folder / "first.tif")
    (folder / "last.tif").write_bytes(tiff_with_its_header_last(noise))
    expected = {}
    for path in sorted(folder.iterdir()):  # Pillow, opening the whole file, is the reference
        assert path.stat().st_size > 2 * HEAD_BYTES
        with Image.open(path) as image:
            image.load()
            expected[path.name] = "png" if image.mode == "RGBA" else "jpg"
    assert expected == {"big.webp": "jpg", "clear.webp": "png", "first.tif": "jpg",
                        "last.tif": "jpg", "lossy.webp": "png"}
    s3 = servers.s3()
    bucket = new_bucket(s3)
    s3.put(f"{folder}/", f"{bucket}/raw/", recursive=True)
    url = f"s3://{bucket}/raw"
    store = StoreSpec.of(url).open()
    store.read_head("big.webp", 8)  # the client is made on first use
    ranges: list = []
    store.fs.s3.meta.events.register(
        "before-send.s3.GetObject",
        lambda request, **_: ranges.append((request.url.rsplit("/", 1)[-1],
                                            str(request.headers.get("Range", b"all"), "ascii"))))
    plan = plan_run(resolve_recipe(write_recipe(tmp_path, RECIPE), input=url,
                                   output=str(tmp_path / "out"), profile="custom-vision"))
    assert {task.relative: task.format for task in plan.tasks} == expected
    head = f"bytes=0-{HEAD_BYTES - 1}"
    assert sorted(ranges) == sorted([(name, head) for name in expected] + [("last.tif", "all")])


# --- Ctrl-C on a cluster ------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_on_a_local_cluster_keeps_finished_outputs_and_the_rerun_resumes(tmp_path):
    """Ctrl-C reaches the whole process group (the run and its cluster's workers), as
    from a terminal: the run cancels what is in flight, keeps what finished, exits 130
    with one line (no worker tracebacks); the rerun ends with an uninterrupted run's bytes."""
    folder = tmp_path / "in"
    for index in range(20):
        save(folder / f"big{index:02d}.png", photo_like(360, 480, seed=index))
    recipe = write_recipe(tmp_path, RECIPE)
    reference = run_recipe(recipe, input=folder, output=tmp_path / "reference", workers=1)
    assert reference.written == 60
    expected = (output_files(tmp_path / "reference"), read_manifest(tmp_path / "reference"))

    out = tmp_path / "out"
    run = start_cli("run", recipe, "-i", folder, "-o", out, "--cluster", "local", "-w", 2, "-q",
                    stderr=subprocess.PIPE, text=True)
    _, stderr = kill_when(run, lambda: out.is_dir() and bool(read_manifest(out)),  # some recorded
                          sig=signal.SIGINT)
    assert run.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["Interrupted. Finished outputs are kept; rerun the "
                                           "same command to make the rest."]
    kept = read_manifest(out)
    assert 0 < len(kept) < 60
    assert not (out / ".augcli.lock").exists()

    report = run_recipe(recipe, input=folder, output=out, workers=2)
    assert report.exit_code == 0 and report.skipped >= len(kept)
    assert report.skipped + report.written == 60
    assert_same_as_reference(output_files(out), read_manifest(out), expected)
