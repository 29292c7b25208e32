"""Past one machine: Dask executors and object stores against real local servers.

Every run here is compared with the same recipe run on a folder by one in-process
worker: same output bytes, same manifest records, whichever executor (local pool,
Dask LocalCluster, an external ``dask scheduler``) and store (folder, S3, Azure
Blob, GCS) made them.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest

from augcli.errors import RecipeError
from augcli.plan import plan_run
from augcli.runner import MANIFEST_NAME, read_manifest, resolve_recipe, run_recipe
from augcli.stores.objects import JOURNAL_DIR

from .conftest import (
    REPO,
    invoke,
    kill_when,
    output_files,
    photo_like,
    save,
    start_cli,
    write_recipe,
)
from .servers import (
    GCS_OPTIONS,
    SECRET,
    dask_process,
    free_port,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

RECIPE = """\
    seed: 11
    variants:
      turn:
        copies: 2
        ops:
          - fliplr: {p: 0.5}
          - affine: {rotate: [-20, 20], shear: [-5, 5], scale: [0.9, 1.1]}
      noise:
        ops:
          - dropout: {p: 0.1}
"""
SOURCES = 6  # x 3 outputs each


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster") / "in"
    for index in range(SOURCES):
        kind = "cats" if index % 2 else "dogs"
        save(folder / kind / f"p{index}.{'png' if index % 3 else 'jpg'}",
             photo_like(60, 80, seed=index))
    return folder


@pytest.fixture(scope="session")
def recipe(dataset):
    return write_recipe(dataset.parent, RECIPE)


@pytest.fixture(scope="session")
def reference(dataset, recipe):
    """Output bytes and manifest records of the plain run: a folder, one worker."""
    out = dataset.parent / "reference"
    report = run_recipe(recipe, input=dataset, output=out, workers=1)
    assert report.exit_code == 0 and report.written == SOURCES * 3
    return output_files(out), read_manifest(out)


def store_files(fs, root: str) -> dict:
    """Key -> bytes under a prefix, read with the storage library itself."""
    fs.invalidate_cache()
    return {path[len(root) + 1:]: fs.cat_file(path) for path in sorted(fs.find(root))
            if not path.endswith("/" + MANIFEST_NAME)}


def new_bucket(fs, prefix="b") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    return name


def assert_same_as_reference(files: dict, records: list, reference) -> None:
    expected_files, expected_records = reference
    assert sorted(files) == sorted(expected_files)
    assert files == expected_files
    assert len({record["recipe"] for record in records}) == 1
    assert comparable(records) == comparable(expected_records)


def comparable(records: list) -> list:
    """Records less what names where the sources are: the fingerprint (it includes the
    input location) and the source's modification time (a copy of the sources in a
    bucket was modified when it was uploaded; its size is the same, and is compared)."""
    return [{key: value for key, value in record.items()
             if key not in ("recipe", "source_mtime_ns")} for record in records]


# --- same bytes everywhere ----------------------------------------------------------

@pytest.mark.slow
def test_s3_with_the_local_pool_and_with_a_dask_cluster_gives_the_folder_bytes(
        servers, dataset, recipe, reference, client, tmp_path):
    s3 = servers.s3()
    bucket = new_bucket(s3)
    s3.put(f"{dataset}/", f"{bucket}/raw/", recursive=True)

    # A folder into S3, on the local pool of two processes.
    report = run_recipe(recipe, input=dataset, output=f"s3://{bucket}/pool", workers=2)
    assert report.exit_code == 0
    assert_same_as_reference(store_files(s3, f"{bucket}/pool"),
                             read_manifest(f"s3://{bucket}/pool"), reference)

    # S3 into S3, on Dask.
    report = run_recipe(recipe, input=f"s3://{bucket}/raw", output=f"s3://{bucket}/dask",
                        client=client)
    assert report.exit_code == 0 and report.images_read == SOURCES
    assert_same_as_reference(store_files(s3, f"{bucket}/dask"),
                             read_manifest(f"s3://{bucket}/dask"), reference)
    assert not [key for key in store_files(s3, bucket) if JOURNAL_DIR in key]

    # A folder into a folder, on Dask; the manifest records the workers' signature.
    report = run_recipe(recipe, input=dataset, output=tmp_path / "out", client=client)
    assert report.exit_code == 0
    assert_same_as_reference(output_files(tmp_path / "out"), read_manifest(tmp_path / "out"),
                             reference)
    lines = (tmp_path / "out" / MANIFEST_NAME).read_text("utf-8").splitlines()
    import json

    import cv2
    signature = next(json.loads(line)["signature"] for line in lines if '"signature"' in line)
    assert signature["cpu"] == cv2.getCPUFeaturesLine()


def test_gcs_gives_the_folder_bytes(servers, dataset, recipe, reference, tmp_path):
    import gcsfs

    body = RECIPE + "    storage: {token: anon, project: augcli-test}\n"
    gcs_recipe = write_recipe(tmp_path, body)
    fs = gcsfs.GCSFileSystem(**GCS_OPTIONS)
    fs.put(f"{dataset}/", "gcs-data/raw/", recursive=True)
    report = run_recipe(gcs_recipe, input="gs://gcs-data/raw", output="gs://gcs-data/out",
                        workers=1)
    assert report.exit_code == 0
    assert_same_as_reference(store_files(fs, "gcs-data/out"),
                             read_manifest(fs_spec("gs://gcs-data/out", GCS_OPTIONS)), reference)


def fs_spec(url, options):
    from augcli.stores import StoreSpec

    return StoreSpec.of(url, options)


@pytest.mark.slow
def test_azure_blob_gives_the_folder_bytes(servers, dataset, recipe, reference, client):
    if servers.azure_missing:
        pytest.skip(servers.azure_missing)
    import adlfs

    fs = adlfs.AzureBlobFileSystem()
    container = new_bucket(fs, "az")
    fs.put(f"{dataset}/", f"{container}/raw/", recursive=True)
    report = run_recipe(recipe, input=f"az://{container}/raw", output=f"az://{container}/v3",
                        client=client)
    assert report.exit_code == 0
    assert_same_as_reference(store_files(fs, f"{container}/v3"),
                             read_manifest(f"az://{container}/v3"), reference)


@pytest.mark.slow
def test_cli_cluster_local_and_an_external_scheduler_give_the_same_bytes(
        servers, dataset, recipe, reference, tmp_path):
    result = invoke("run", str(recipe), "-i", str(dataset), "-o",
                    str(tmp_path / "local"), "--cluster", "local", "-w", "2", "-q")
    assert result.exit_code == 0, result.output
    assert_same_as_reference(output_files(tmp_path / "local"),
                             read_manifest(tmp_path / "local"), reference)

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = dask_process("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                             "--no-dashboard")
    workers = []
    try:
        wait_for_port(port, scheduler)
        workers.append(dask_process("dask_worker", address, "--nworkers", "2", "--nthreads",
                                    "1", "--no-dashboard"))
        s3 = servers.s3()
        bucket = new_bucket(s3)
        result = invoke("run", str(recipe), "-i", str(dataset), "-o",
                        f"s3://{bucket}/tcp", "--cluster", address, "-q")
        assert result.exit_code == 0, result.output
        assert_same_as_reference(store_files(s3, f"{bucket}/tcp"),
                                 read_manifest(f"s3://{bucket}/tcp"), reference)

        # A worker whose OpenCV dispatches to other CPU features makes other warp bytes:
        # the run is refused before anything is written.
        import cv2
        if "*AVX2" not in cv2.getCPUFeaturesLine():
            pytest.skip("this CPU has no AVX2 for OpenCV to turn off")
        workers.append(dask_process("dask_worker", address, "--nthreads", "1",
                                    "--no-dashboard", env={"OPENCV_CPU_DISABLE": "AVX2,AVX"}))
        import distributed
        with distributed.Client(address) as dask_client:
            dask_client.wait_for_workers(3, timeout=60)
        result = invoke("run", str(recipe), "-i", str(dataset), "-o",
                        str(tmp_path / "mixed"), "--cluster", address, "-q")
        assert result.exit_code == 2
        assert "would make other bytes than this machine: cpu" in result.output
        assert "AVX2?" in result.output and not (tmp_path / "mixed").exists()
    finally:
        for process in (*workers, scheduler):
            stop_process(process)


# --- failures --------------------------------------------------------------------------

@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_the_bytes_are_the_same(
        dataset, recipe, reference, client, tmp_path):
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))

    def kill_when_work_started():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(out.rglob("*.png")):
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_work_started)
    killer.start()
    report = run_recipe(recipe, input=dataset, output=out, client=client)
    killer.join()
    assert report.exit_code == 0, report.failures
    assert_same_as_reference(output_files(out), read_manifest(out), reference)
    assert victim not in client.run(os.getpid).values()  # it really died (and was replaced)


@pytest.mark.slow
def test_a_source_that_keeps_killing_workers_fails_alone(servers, tmp_path):
    """A decompression bomb under the pixel limit: every worker that decodes it runs out of
    its memory limit and is killed by its nanny. It becomes one failure line; the rest of
    the run finishes."""
    distributed = pytest.importorskip("distributed")
    import logging

    import dask

    folder = tmp_path / "in"
    for index in range(3):
        save(folder / f"ok{index}.png", photo_like(seed=index))
    from PIL import Image
    Image.new("RGB", (9000, 9000)).save(folder / "bomb.png")  # 243 MB of pixels, 240 kB file
    recipe = write_recipe(tmp_path, RECIPE)
    # No retry of a task that killed its worker (the default retries three times), and no
    # task queued on a worker behind the one running (the poison would take it along).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           memory_limit="400MB", silence_logs=logging.CRITICAL)
        try:
            with distributed.Client(cluster) as dask_client:
                lines = []
                report = run_recipe(recipe, input=folder, output=tmp_path / "out",
                                    client=dask_client, notify=lines.append)
        finally:
            cluster.close()
    assert report.exit_code == 1
    assert len(lines) == 1 and lines[0].startswith("bomb.png: every worker that ran it died")
    assert report.written == 3 * 3
    assert not list((tmp_path / "out").glob("bomb*"))


@pytest.mark.slow
def test_killed_client_on_s3_resumes_to_the_same_bytes(servers, recipe, tmp_path):
    """The client is killed once the journal holds some records; the rerun skips them,
    makes the rest, and ends with the bytes of an uninterrupted run."""
    folder = tmp_path / "in"
    for index in range(12):
        save(folder / f"big{index:02d}.png", photo_like(360, 480, seed=index))
    reference = run_recipe(recipe, input=folder, output=tmp_path / "reference", workers=1)
    assert reference.written == 36
    expected = (output_files(tmp_path / "reference"), read_manifest(tmp_path / "reference"))

    s3 = servers.s3()
    out = f"{new_bucket(s3)}/v1"

    def recorded() -> bool:
        s3.invalidate_cache()
        parts = [key for key in s3.find(out) if JOURNAL_DIR in key]
        return any(b'"output"' in s3.cat_file(part) for part in parts)

    client = start_cli("run", recipe, "-i", folder, "-o", f"s3://{out}", "-w", 1, "-q")
    kill_when(client, recorded, timeout=60)
    done_before = [key for key in store_files(s3, out) if JOURNAL_DIR not in key]
    assert 0 < len(done_before) < 36

    report = run_recipe(recipe, input=folder, output=f"s3://{out}", workers=1)
    assert report.exit_code == 0 and report.skipped > 0
    assert report.skipped + report.written == 36
    assert_same_as_reference(store_files(s3, out), read_manifest(f"s3://{out}"), expected)
    assert not [key for key in s3.find(out) if JOURNAL_DIR in key]


@pytest.mark.slow
def test_an_outage_mid_run_leaves_only_whole_objects_and_the_rerun_finishes(
        servers, dataset, recipe, reference, tmp_path):
    """The S3 endpoint goes away mid-run: uploads and the manifest fail (a clear error,
    exit 2), no object is partial; once it is back, the rerun completes."""
    from moto.server import ThreadedMotoServer

    s3 = servers.s3()
    bucket = new_bucket(s3)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"  # a second endpoint onto the same moto backend
    body = RECIPE + (f"    storage: {{endpoint_url: '{endpoint}', "
                     "config_kwargs: {retries: {max_attempts: 1}}}\n")
    outage_recipe = write_recipe(tmp_path, body)
    endpoint_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    endpoint_server.start()

    def outage():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(s3.find(f"{bucket}/out")) < 6:
            s3.invalidate_cache()
            time.sleep(0.01)
        endpoint_server.stop()

    cutter = threading.Thread(target=outage)
    cutter.start()
    result = invoke("run", str(outage_recipe), "-i", str(dataset), "-o",
                    f"s3://{bucket}/out", "-w", "1", "-q")
    cutter.join()
    assert result.exit_code == 2, result.output
    # The journal cannot be written either: the run stops there, with one clear line
    # (uploads that failed before that are reported as failed outputs).
    assert f"Error: cannot write s3://{bucket}/out/manifest.jsonl" in result.output

    expected_files, _ = reference
    left = {key: data for key, data in store_files(s3, f"{bucket}/out").items()
            if JOURNAL_DIR not in key and key != ".augcli.lock"}  # the lock: not deleted either
    assert left and all(data == expected_files[key] for key, data in left.items())

    endpoint_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    endpoint_server.start()
    try:
        report = run_recipe(outage_recipe, input=dataset, output=f"s3://{bucket}/out",
                            workers=1)
    finally:
        endpoint_server.stop()
    assert report.exit_code == 0
    assert report.notes[0].startswith(f"took over the lock s3://{bucket}/out/.augcli.lock")
    assert_same_as_reference(store_files(s3, f"{bucket}/out"),
                             read_manifest(f"s3://{bucket}/out"), reference)


# --- credentials and extras -----------------------------------------------------------------

def test_secret_looking_storage_options_are_a_recipe_error(tmp_path, dataset):
    body = RECIPE + ("    storage:\n      account_name: contoso\n      account_key: abc\n"
                     "      client_kwargs: {aws_secret_access_key: xyz}\n")
    with pytest.raises(RecipeError) as caught:
        resolve_recipe(write_recipe(tmp_path, body))
    message = str(caught.value)
    assert "storage.account_key: looks like a secret" in message
    assert "storage.client_kwargs.aws_secret_access_key: looks like a secret" in message
    assert "account_name" not in message

    result = invoke("validate", str(write_recipe(tmp_path, body)))
    assert result.exit_code == 2 and "looks like a secret" in result.output


class _Classes(pickle.Unpickler):
    """Unpickles while noting every class a pickle names."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.modules = set()

    def find_class(self, module, name):
        self.modules.add(module)
        return super().find_class(module, name)


def test_tasks_carry_a_store_spec_never_a_filesystem_or_credentials(servers, dataset, recipe):
    s3 = servers.s3()
    bucket = new_bucket(s3)
    s3.put(f"{dataset}/", f"{bucket}/raw/", recursive=True)
    plan = plan_run(resolve_recipe(recipe, input=f"s3://{bucket}/raw",
                                   output=f"s3://{bucket}/out"))
    plan.output_store.open()  # the client's filesystem is open: tasks must not carry it
    assert len(plan.tasks) == SOURCES
    for task in plan.tasks:
        for data in (pickle.dumps(task), cloudpickle.dumps(task)):
            assert SECRET.encode() not in data and b"augcli-test" not in data
            unpickler = _Classes(data)
            unpickler.load()
            foreign = {m for m in unpickler.modules
                       if m.split(".")[0] in ("s3fs", "fsspec", "botocore", "aiobotocore")}
            assert not foreign
        pickletools.dis(pickle.dumps(task), out=io.StringIO())  # a well-formed pickle


def _count_s3_requests(monkeypatch) -> list:
    """(operation, key or prefix) of every S3 request this process makes from now on, until
    ``monkeypatch`` is undone."""
    from aiobotocore.client import AioBaseClient

    calls: list = []
    api_call = AioBaseClient._make_api_call

    async def counted(client, operation, params):
        calls.append((operation, params.get("Prefix", params.get("Key"))))
        return await api_call(client, operation, params)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", counted)
    return calls


@pytest.mark.slow
def test_resume_on_s3_lists_the_input_once_and_asks_about_no_source(servers, dataset, recipe,
                                                                    reference, monkeypatch):
    """A rerun over finished outputs checks that its sources are unchanged from one listing
    of the input prefix (not a HEAD request per source), and still redoes a changed one."""
    s3 = servers.s3()
    bucket = new_bucket(s3)
    s3.put(f"{dataset}/", f"{bucket}/raw/", recursive=True)
    source, output = f"s3://{bucket}/raw", f"s3://{bucket}/out"
    assert run_recipe(recipe, input=source, output=output, workers=2).written == SOURCES * 3

    calls = _count_s3_requests(monkeypatch)
    report = run_recipe(recipe, input=source, output=output, workers=2)
    assert (report.written, report.skipped, report.exit_code) == (0, SOURCES * 3, 0)
    assert not [key for operation, key in calls if operation in ("HeadObject", "GetObject")
                and key.startswith("raw/")]
    listings = [prefix for operation, prefix in calls if operation.startswith("ListObjects")
                and prefix and prefix.startswith("raw")]
    assert len(listings) == 1  # planning lists the input; resume checks that listing's stamps

    s3.pipe_file(f"{bucket}/raw/cats/p1.png", s3.cat_file(f"{bucket}/raw/cats/p1.png") + b"\0")
    monkeypatch.undo()
    report = run_recipe(recipe, input=source, output=output, workers=2)
    assert (report.written, report.skipped) == (3, (SOURCES - 1) * 3)
    assert_same_as_reference(store_files(s3, f"{bucket}/out"), read_manifest(output),
                             (reference[0], [{**record, "source_size": record["source_size"] + 1}
                                             if record["source"] == "cats/p1.png" else record
                                             for record in reference[1]]))


def test_a_run_from_s3_reads_each_source_with_one_get_and_asks_nothing_else(
        servers, dataset, recipe, reference, monkeypatch):
    """Each source's size and time (recorded in the manifest) come from the listing that
    planned the run: no HEAD per source. Counted in-process (one worker)."""
    s3 = servers.s3()
    bucket = new_bucket(s3)
    s3.put(f"{dataset}/", f"{bucket}/raw/", recursive=True)
    calls = _count_s3_requests(monkeypatch)
    output = f"s3://{bucket}/out"
    report = run_recipe(recipe, input=f"s3://{bucket}/raw", output=output, workers=1)
    monkeypatch.undo()
    assert (report.written, report.exit_code) == (SOURCES * 3, 0)
    on_sources = [(operation, key) for operation, key in calls
                  if key and key.startswith("raw/") and not operation.startswith("List")]
    assert [operation for operation, _ in on_sources] == ["GetObject"] * SOURCES, on_sources
    assert len({key for _, key in on_sources}) == SOURCES
    assert_same_as_reference(store_files(s3, f"{bucket}/out"), read_manifest(output), reference)


@pytest.mark.slow
def test_idle_cores_publish_to_s3_from_helper_threads_with_the_same_objects(
        servers, dataset, recipe, reference):
    """Twice as many workers as sources: each worker process publishes through a helper
    thread while it renders, so the storage library is called from two threads at once.
    The objects and records are the plain run's."""
    s3 = servers.s3()
    bucket = new_bucket(s3)
    output = f"s3://{bucket}/out"
    report = run_recipe(recipe, input=dataset, output=output, workers=2 * SOURCES)
    assert (report.written, report.exit_code) == (SOURCES * 3, 0)
    assert_same_as_reference(store_files(s3, f"{bucket}/out"), read_manifest(output), reference)


@pytest.mark.parametrize("module,args,install", [
    ("s3fs", ["-o", "s3://bucket/out"], f"pip install -e '{REPO}[s3]'"),
    ("adlfs", ["-i", "az://container/raw"], f"pip install -e '{REPO}[azure]'"),
    ("distributed", ["--cluster", "local"], f"pip install -e '{REPO}[distributed]'"),
])
def test_a_missing_extra_is_one_line_naming_the_install(tmp_path, recipe, dataset, module,
                                                        args, install):
    """In a Python where the extra's module cannot be imported."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from augcli.cli import main; main()")
    argv = ["run", str(recipe), "-i", str(dataset), "-o", str(tmp_path / "out"), *args]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())}, timeout=120)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: ") and line.endswith(install)
    assert not (tmp_path / "out").exists()


# --- what stays on folders; what object stores share with them ----------------------------

def test_a_stray_object_in_the_output_prefix_is_refused(servers, dataset, recipe):
    s3 = servers.s3()
    bucket = new_bucket(s3)

    def refused(*args, recipe_file=recipe) -> str:
        result = invoke("run", str(recipe_file), *args)
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith("Error: ")
        return line

    # An object no manifest accounts for, in the output prefix: refused as in a folder.
    s3.pipe_file(f"{bucket}/mixed/notes/readme.txt", b"mine")
    line = refused("-i", str(dataset), "-o", f"s3://{bucket}/mixed")
    assert "holds 1 file(s) that no manifest says where they came from" in line
    assert "notes/readme.txt" in line
    assert sorted(store_files(s3, f"{bucket}/mixed")) == ["notes/readme.txt"]


@pytest.mark.slow
def test_a_worker_whose_opencv_makes_other_bytes_is_refused_by_the_probe(
        dataset, recipe, tmp_path):
    """Versions and CPU features agree, but IPP is off on one worker: its warps differ.
    The probe (the recipe's ops on a fixed image, fixed seeds) proves it, when the run
    starts and when such a worker takes its first task; nothing is written. With IPP
    off, CPU dispatch turned down changes the bytes again: the probe tells them apart."""
    import cv2
    import distributed

    from augcli.errors import UsageError
    from augcli.executors import _run_batch, signature
    from augcli.probe import recipe_probe

    probe = recipe_probe(resolve_recipe(recipe))
    ours = probe()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = dask_process("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                             "--no-dashboard")
    workers = []
    try:
        wait_for_port(port, scheduler)
        workers.append(dask_process("dask_worker", address, "--nthreads", "1",
                                    "--no-dashboard", env={"OPENCV_IPP": "disabled"}))
        with distributed.Client(address) as dask_client:
            dask_client.wait_for_workers(1, timeout=60)
            (ipp_off,) = dask_client.scheduler_info()["workers"]
            # the check a worker makes before its first task, for one that joins later
            joined = dask_client.submit(_run_batch, str, (signature(), probe, ours, None), (),
                                        workers=[ipp_off], pure=False)
            with pytest.raises(UsageError, match="the probe image through variants.turn"):
                joined.result(timeout=60)
        result = invoke("run", str(recipe), "-i", str(dataset), "-o", str(tmp_path / "out"),
                        "--cluster", address, "-q")
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"Error: worker {ipp_off} would make other bytes than this "
                               "machine: the probe image through variants.turn")
        assert "(affine)" in line and "variants.noise" not in line  # dropout: no warp
        assert not (tmp_path / "out").exists()

        # With IPP off, OpenCV's own kernels run, and they follow its CPU dispatch: a worker
        # with AVX2 turned off as well makes other bytes again, and the probe tells them apart
        # (with IPP on, IPP dispatches by itself; the signature refuses such a worker anyway).
        if "*AVX2" not in cv2.getCPUFeaturesLine():
            pytest.skip("this CPU has no AVX2 for OpenCV to turn off")
        workers.append(dask_process("dask_worker", address, "--nthreads", "1",
                                    "--no-dashboard", env={"OPENCV_IPP": "disabled",
                                                           "OPENCV_CPU_DISABLE": "AVX2,AVX"}))
        with distributed.Client(address) as dask_client:
            dask_client.wait_for_workers(2, timeout=60)
            proofs = dask_client.run(probe)
        assert len(proofs) == 2
        first, second = proofs.values()
        assert first.keys() == second.keys() == ours.keys()
        assert {name for name in ours if first[name] != second[name]} == {
            "variants.turn", "variants.turn.ops[1] (affine)"}
    finally:
        for process in (*workers, scheduler):
            stop_process(process)


@pytest.mark.slow
def test_the_scheduler_killed_mid_run_is_one_error_line_and_a_new_one_resumes(
        recipe, tmp_path):
    """The scheduler dies mid-run: one ``Error:`` line, exit 2, what finished is kept. A new
    scheduler (same address) with new workers resumes to the bytes of an uninterrupted run,
    and the runs after it on that scheduler read every source (none "not found")."""
    folder = tmp_path / "in"
    for index in range(24):
        save(folder / f"big{index:02d}.png", photo_like(240, 320, seed=index))
    expected = run_recipe(recipe, input=folder, output=tmp_path / "reference", workers=1)
    assert expected.written == 72
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    out = tmp_path / "out"

    def cluster() -> list:
        scheduler = dask_process("dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-dashboard")
        wait_for_port(port, scheduler)
        return [scheduler, dask_process("dask_worker", address, "--nthreads", "1",
                                        "--no-dashboard")]

    processes = cluster()
    try:
        run = start_cli("run", recipe, "-i", folder, "-o", out, "--cluster", address, "-q",
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while run.poll() is None and len(list(out.glob("*.png"))) < 6 \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        processes[0].kill()  # the scheduler
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 2, output
        assert len(output.strip().splitlines()) == 1, output
        (line,) = output.strip().splitlines()
        assert line.startswith(f"Error: the Dask cluster at {address} went away mid-run")
        kept = {path.name for path in out.glob("*.png")}
        assert 0 < len(kept) < 72
        for process in processes:
            stop_process(process)

        processes = cluster()
        for _ in range(2):
            result = invoke("run", str(recipe), "-i", str(folder), "-o", str(out),
                            "--cluster", address, "-q")
            assert result.exit_code == 0, result.output
        assert output_files(out) == output_files(tmp_path / "reference")
    finally:
        for process in processes:
            stop_process(process)
