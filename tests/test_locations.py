"""Locations and storage options as the CLI takes them, against real local servers (moto
S3, Azurite, a fake GCS; tests/servers.py): one place however its URL is spelled,
no credentials in a URL or a recipe, and never a secret repeated in a message."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from .conftest import photo_like, save, write_recipe
from .servers import GCS_OPTIONS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::ResourceWarning")

RECIPE = """\
    seed: 3
    variants:
      flip:
        ops:
          - fliplr: {p: 1}
"""
LEAK = "hunter2-do-not-print"  # a password written into URLs: no message may repeat it


def augcli(*args: str) -> subprocess.CompletedProcess:
    """The real command line, in a process of its own (the servers' environment)."""
    return subprocess.run([sys.executable, "-m", "augcli", *args], capture_output=True,
                          text=True, timeout=180, env=dict(os.environ, AUGCLI_MEMORY="off"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("locations") / "in"
    for index in range(2):
        save(folder / f"p{index}.png", photo_like(24, 32, seed=index))
    return folder


def _store(servers, kind: str):
    """(filesystem, a new bucket or container, the recipe's storage options) of one store."""
    if kind == "s3":
        fs, options = servers.s3(), {}
    elif kind == "az":
        if servers.azure_missing:
            pytest.skip(servers.azure_missing)
        import adlfs

        fs, options = adlfs.AzureBlobFileSystem(), {}
    else:
        import gcsfs

        fs, options = gcsfs.GCSFileSystem(**GCS_OPTIONS), GCS_OPTIONS
    bucket = f"{kind}-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    return fs, bucket, options


def _recipe(folder, options: dict, name="recipe.yaml"):
    """RECIPE with ``options`` as its ``storage:`` (the fake GCS needs two)."""
    pairs = ", ".join(f"{key}: {value}" for key, value in options.items())
    return write_recipe(folder, RECIPE + (f"    storage: {{{pairs}}}\n" if pairs else ""), name)


# --- scheme aliases: one place, however spelled (item: output inside input) ----------------

ALIASES = [
    ("s3", "s3://{b}/small", "s3a://{b}/small/out"),
    ("s3", "s3a://{b}/small", "s3://{b}/small/out"),
    ("s3", "s3://{b}/small", "S3A://{b}/small"),
    ("s3", "s3://{b}/small", "s3n://{b}/small/out"),
    ("az", "az://{b}/small", "abfs://{b}/small/out"),
    ("az", "az://{b}/small", "abfss://{b}/small/out"),
    ("az", "abfs://{b}/small", "az://{b}/small/out"),
    ("az", "abfss://{b}/small", "abfs://{b}/small/out"),
    ("az", "az://{b}/small", "abfs://{b}@devstoreaccount1.dfs.core.windows.net/small/out"),
    ("gs", "gs://{b}/small", "gcs://{b}/small/out"),
    ("gs", "gcs://{b}/small", "gs://{b}/small/out"),
]


@pytest.mark.slow  # real CLI subprocesses against the storage servers
@pytest.mark.parametrize("kind, input, output", ALIASES)
def test_an_output_inside_the_input_is_refused_under_every_alias(servers, sources, tmp_path,
                                                                 kind, input, output):
    fs, bucket, options = _store(servers, kind)
    fs.put(f"{sources}/", f"{bucket}/small/", recursive=True)
    before = sorted(fs.find(bucket))
    done = augcli("run", str(_recipe(tmp_path, options)), "-i", input.format(b=bucket),
                  "-o", output.format(b=bucket), "-q")
    assert done.returncode == 2, done.stderr
    assert "is inside the input" in done.stderr or "not s3n://" in done.stderr
    assert "Traceback" not in done.stderr
    fs.invalidate_cache()
    assert sorted(fs.find(bucket)) == before  # nothing written among the sources


@pytest.mark.slow  # real CLI subprocesses against the storage servers
def test_an_alias_outside_the_input_is_the_same_store_and_writes(servers, sources, tmp_path):
    fs, bucket, _ = _store(servers, "s3")
    fs.put(f"{sources}/", f"{bucket}/small/", recursive=True)
    done = augcli("run", str(_recipe(tmp_path, {})), "-i", f"s3://{bucket}/small",
                  "-o", f"s3a://{bucket}/augmented", "-q")
    assert done.returncode == 0, done.stderr
    fs.invalidate_cache()
    written = {path.rsplit("/", 1)[1] for path in fs.find(f"{bucket}/augmented")}
    assert {"p0_flip_1.png", "p1_flip_1.png"} <= written


# --- credentials in a URL: refused, never repeated ------------------------------------------

@pytest.mark.slow  # real CLI subprocesses against the storage servers
@pytest.mark.parametrize("command", [
    ["run", "{recipe}", "-i", "s3://augcli:{leak}@bucket/x", "-o", "{out}"],
    ["run", "{recipe}", "-i", "{src}", "-o", "s3://augcli:{leak}@bucket/out"],
    ["run", "{recipe}", "-i", "abfs://augcli:{leak}@acct.dfs.core.windows.net/x", "-o", "{out}"],
    ["run", "{recipe}", "-i", "gs://augcli:{leak}@bucket/x", "-o", "{out}"],
    ["normalize", "s3://augcli:{leak}@bucket/x", "-o", "{out}", "-m", "minmax"],
    ["ricap", "s3://augcli:{leak}@bucket/x", "-o", "{out}", "-n", "1", "--size", "8x8"],
    ["normalize", "{src}", "-o", "{out}", "-m", "featurewise", "--stats",
     "s3://augcli:{leak}@bucket/stats.npz"],
    ["run", "{recipe}", "-i", "{src}", "-o", "{out}", "--cluster",
     "tcp://augcli:{leak}@127.0.0.1:8786"],
])
def test_a_url_with_credentials_is_one_line_that_does_not_repeat_them(sources, tmp_path,
                                                                       command):
    fill = {"recipe": str(_recipe(tmp_path, {})), "leak": LEAK, "out": str(tmp_path / "out"),
            "src": str(sources)}
    done = augcli(*[part.format(**fill) for part in command])
    assert done.returncode == 2, done.stderr
    assert LEAK not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "://***@" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # real CLI subprocesses against the storage servers
def test_credentials_in_the_recipe_input_or_an_endpoint_url_are_recipe_errors(servers, sources,
                                                                              tmp_path):
    """Found by ``validate`` and by ``run`` before anything is read or sent to a worker:
    the endpoint with user-info is moto's own, which would have taken it."""
    fs, bucket, _ = _store(servers, "s3")
    fs.put(f"{sources}/", f"{bucket}/small/", recursive=True)
    endpoint = os.environ["AWS_ENDPOINT_URL"].replace("http://", f"http://augcli:{LEAK}@")
    body = RECIPE + textwrap.indent(textwrap.dedent(f"""\
        input: s3://augcli:{LEAK}@{bucket}/small
        storage:
          endpoint_url: {endpoint}
          config_kwargs: {{proxies: [{{https: "http://augcli:{LEAK}@127.0.0.1:3128"}}]}}
        """), "    ")
    recipe = write_recipe(tmp_path, body)
    for command in (["validate", str(recipe)],
                    ["run", str(recipe), "-i", f"s3://{bucket}/small", "-o",
                     f"s3://{bucket}/out", "-q"]):
        done = augcli(*command)
        assert done.returncode == 2, done.stderr
        output = done.stdout + done.stderr
        assert LEAK not in output and "Traceback" not in output
        assert "storage.endpoint_url: a URL must not carry credentials" in output
        assert "storage.config_kwargs.proxies[0].https: a URL must not carry credentials" \
            in output
        assert f"input: s3://***@{bucket}/small: a URL must not carry credentials" in output
    fs.invalidate_cache()
    assert not fs.find(f"{bucket}/out")


# --- secret-looking option names ---------------------------------------------------------------

SECRET_NAMES = ["apikey", "api_key", "apiKey", "api_keys", "accesskey", "AccessKey", "secretkey",
                "passphrase", "pwd", "password", "passwords", "creds", "credentials", "bearer",
                "bearer_token", "tokens", "secrets", "sas_token", "connection_string",
                "client_secret", "account_key", "sse_customer_key"]


def test_secret_names_are_refused_at_any_depth_in_mappings_and_lists(tmp_path):
    options = "\n".join(f"      {name}: x" for name in SECRET_NAMES)
    body = RECIPE + "    storage:\n" + options + "\n" + textwrap.indent(textwrap.dedent("""\
        config_kwargs:
          extras:
            - {region_name: eu-west-1}
            - {aws_secret_access_key: abc}
        client_kwargs: {headers: [[x, y], {Authorization: Bearer abc}]}
        gcs: {token: {type: service_account, private_key: abc}}
        """), "      ")
    done = augcli("validate", str(write_recipe(tmp_path, body)))
    assert done.returncode == 2, done.stderr
    output = done.stdout + done.stderr
    for name in SECRET_NAMES:
        assert f"storage.{name}: looks like a secret" in output
    assert "storage.config_kwargs.extras[1].aws_secret_access_key: looks like a secret" in output
    assert "storage.client_kwargs.headers[1].Authorization: looks like a secret" in output
    assert "storage.gcs.token: looks like a secret" in output
    assert "region_name" not in output and "Traceback" not in output


@pytest.mark.slow  # real CLI subprocesses against the storage servers
def test_settings_that_only_sound_like_secrets_reach_the_store(servers, sources, tmp_path):
    """botocore's ``signature_version`` and ``max_pool_connections``, adlfs's
    ``connection_timeout``, gcsfs's ``check_connection`` and ``access``: settings, not
    secrets. A run on moto with botocore's takes them; ``validate`` takes the others."""
    fs, bucket, _ = _store(servers, "s3")
    fs.put(f"{sources}/", f"{bucket}/small/", recursive=True)
    body = RECIPE + textwrap.indent(textwrap.dedent("""\
        storage:
          config_kwargs: {signature_version: s3v4, max_pool_connections: 4, connect_timeout: 5}
        """), "    ")
    recipe = write_recipe(tmp_path, body)
    done = augcli("run", str(recipe), "-i", f"s3://{bucket}/small", "-o", f"s3://{bucket}/out",
                  "-q")
    assert done.returncode == 0, done.stderr
    fs.invalidate_cache()
    assert len([path for path in fs.find(f"{bucket}/out") if path.endswith(".png")]) == 2
    others = RECIPE + textwrap.indent(textwrap.dedent("""\
        storage:
          connection_timeout: 10
          check_connection: false
          access: read_write
          token: anon
          s3_additional_kwargs: {ServerSideEncryption: "aws:kms", SSEKMSKeyId: alias/x}
        """), "    ")
    done = augcli("validate", str(write_recipe(tmp_path, others, "others.yaml")))
    assert done.returncode == 0, done.stdout + done.stderr

