"""Object-store locations that cannot work, refused up front with one line: a bucket that
is not there, keys and URLs with an empty part (``//``). Against real local servers."""

from __future__ import annotations

import uuid

import pytest

from .conftest import invoke, photo_like, save, write_recipe
from .test_cluster import new_bucket

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

RECIPE = """\
    seed: 3
    variants:
      f:
        ops:
          - fliplr: {p: 1}
"""
GCS_RECIPE = RECIPE + "    storage: {token: anon, project: augcli-test}\n"


@pytest.fixture
def sources(tmp_path):
    save(tmp_path / "in" / "a.png", photo_like(seed=1))
    return tmp_path / "in"


def refused(*args) -> str:
    """``augcli run ARGS -q``: exit 2 and one ``Error:`` line, returned."""
    result = invoke("run", *args, "-q", catch_exceptions=False)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ")
    return line


@pytest.mark.parametrize("scheme", ["s3", "gs", "az"])
def test_a_bucket_that_does_not_exist_is_one_line_naming_it(servers, sources, tmp_path, scheme):
    if scheme == "az" and servers.azure_missing:
        pytest.skip(servers.azure_missing)
    recipe = write_recipe(tmp_path, GCS_RECIPE if scheme == "gs" else RECIPE)
    missing = f"nosuch-{uuid.uuid4().hex[:10]}"
    noun = "container" if scheme == "az" else "bucket"

    line = refused(recipe, "-i", sources, "-o", f"{scheme}://{missing}/out")
    assert f"the {noun} '{missing}' does not exist" in line
    line = refused(recipe, "-i", f"{scheme}://{missing}/in", "-o", tmp_path / "out")
    assert f"the {noun} '{missing}' does not exist" in line
    assert not (tmp_path / "out").exists()


def test_an_input_key_with_an_empty_part_is_refused_up_front_naming_it(servers, sources,
                                                                        tmp_path):
    """``a//dbl.png`` under ``s3://b/a`` is the key ``/dbl.png``: no output name, manifest
    line or folder can hold it. The run is refused before anything is written, into a prefix
    and into a folder alike, and the same again on a rerun."""
    s3 = servers.s3()
    bucket = new_bucket(s3)
    data = (sources / "a.png").read_bytes()
    s3.pipe_file(f"{bucket}/a//dbl.png", data)
    s3.pipe_file(f"{bucket}/a/one.png", data)
    recipe = write_recipe(tmp_path, RECIPE)
    for output in (f"s3://{bucket}/out", f"s3://{bucket}/out", tmp_path / "out"):
        line = refused(recipe, "-i", f"s3://{bucket}/a", "-o", output)
        assert f"s3://{bucket}/a//dbl.png: an object key with an empty part (//)" in line
    s3.invalidate_cache()
    assert sorted(s3.find(bucket)) == [f"{bucket}/a//dbl.png", f"{bucket}/a/one.png"]
    assert not (tmp_path / "out").exists()


def test_a_url_with_an_empty_part_is_refused_with_the_single_slash_spelling(servers, sources,
                                                                             tmp_path):
    """``s3://b//small/out`` names keys beginning with ``/`` (not those under
    ``s3://b/small/out``): refused, as input or output, before anything is written."""
    s3 = servers.s3()
    bucket = new_bucket(s3)
    s3.pipe_file(f"{bucket}/src/a.png", (sources / "a.png").read_bytes())
    recipe = write_recipe(tmp_path, RECIPE)
    for args in (("-i", f"s3://{bucket}/src", "-o", f"s3://{bucket}//small/out"),
                 ("-i", f"s3://{bucket}/src", "-o", f"s3://{bucket}/small//out/"),
                 ("-i", f"s3://{bucket}//src", "-o", tmp_path / "out")):
        line = refused(recipe, *args)
        assert "a location must not have an empty part (//)" in line
        assert f"did you mean s3://{bucket}/" in line
    s3.invalidate_cache()
    assert s3.find(bucket) == [f"{bucket}/src/a.png"]
    assert not (tmp_path / "out").exists()

    on_recipe = write_recipe(tmp_path, f"    output: s3://{bucket}//small/out\n" + RECIPE,
                             name="on.yaml")
    result = invoke("run", on_recipe, "-i", sources, "-q")
    assert result.exit_code == 2 and "output" in result.output
    assert "a location must not have an empty part (//)" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("other_holds", [False, True], ids=["bucket-missing", "other-bytes"])
def test_a_worker_that_reaches_another_storage_endpoint_is_refused_naming_it(servers, sources,
                                                                             tmp_path,
                                                                             other_holds):
    """The cause of "file not found" for sources that exist, with no GET in the S3 log: a
    worker started with another environment (here ``AWS_ENDPOINT_URL`` naming a second S3
    server) asks another service; the store spec carries only the recipe's options. Such a
    worker must be refused before anything is read, with one line, not fail every source
    it takes; also where the other service holds the same keys with other bytes."""
    import subprocess
    import sys

    import distributed
    import s3fs

    from augcli.errors import UsageError
    from augcli.executors import _run_batch, signature
    from augcli.probe import Sight
    from augcli.stores import StoreSpec

    from .servers import dask_process, free_port, stop_process, wait_for_port

    s3 = servers.s3()
    bucket = new_bucket(s3)
    for index in range(4):
        s3.pipe_file(f"{bucket}/in/p{index}.png", (sources / "a.png").read_bytes())
    recipe = write_recipe(tmp_path, RECIPE)
    other_port, port = free_port(), free_port()
    other = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                              str(other_port)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # its own process: its own buckets
    address = f"tcp://127.0.0.1:{port}"
    processes = [other]
    try:
        wait_for_port(other_port, other)
        if other_holds:
            elsewhere = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={
                "endpoint_url": f"http://127.0.0.1:{other_port}"})
            elsewhere.mkdir(bucket)
            for index in range(4):
                elsewhere.pipe_file(f"{bucket}/in/p{index}.png", b"other bytes")
        processes.append(dask_process("dask_scheduler", "--host", "127.0.0.1", "--port",
                                      str(port), "--no-dashboard"))
        wait_for_port(port, processes[-1])
        processes.append(dask_process("dask_worker", address, "--nthreads", "1",
                                      "--no-dashboard",
                                      env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{other_port}"}))
        size = (sources / "a.png").stat().st_size
        with distributed.Client(address) as dask_client:
            dask_client.wait_for_workers(1, timeout=60)
            # the check a worker makes before its first task, for one that joins later
            sight = Sight(StoreSpec.of(f"s3://{bucket}/in"), "p1.png", size)
            joined = dask_client.submit(_run_batch, str, (signature(), None, {}, sight), (),
                                        pure=False)
            with pytest.raises(UsageError, match="does not see the input"):
                joined.result(timeout=60)
        line = refused(recipe, "-i", f"s3://{bucket}/in", "-o", tmp_path / "out", "--cluster",
                       address)
        assert f"s3://{bucket}/in" in line and "worker" in line
        assert ("is 11 bytes there" if other_holds else "not found there") in line
        assert not (tmp_path / "out").exists()
        # normalize and ricap check their workers the same way
        for index in range(4):
            s3.pipe_file(f"{bucket}/classes/c{index % 2}/p{index}.png",
                         (sources / "a.png").read_bytes())
        for command in (["normalize", f"s3://{bucket}/in", "-m", "tf"],
                        ["ricap", f"s3://{bucket}/classes", "-n", "2", "--size", "16x16"]):
            result = invoke(*command, "-o", str(tmp_path / command[0]), "--cluster", address,
                            "-q", catch_exceptions=False)
            assert result.exit_code == 2, (command[0], result.output)
            assert "does not see the input" in result.output, (command[0], result.output)
            assert not (tmp_path / command[0]).exists()
    finally:
        for process in reversed(processes):
            stop_process(process)
