"""Real local servers for the cluster and object-storage tests, on 127.0.0.1 and free ports.

moto's S3 server, a fake GCS server and Azurite (Azure Blob) run for the whole
test session; credentials reach augcli the way they reach it in production, through
the environment (``AWS_*``, ``AZURE_STORAGE_CONNECTION_STRING``,
``STORAGE_EMULATOR_HOST``), set before any Dask worker starts so that workers
inherit them. Each server is stopped by its own handle.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

# The well-known development account every Azurite has (public, in Microsoft's docs).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
SECRET = "s3cr3t-only-in-the-environment"  # the S3 secret key: must never be in a task
GCS_OPTIONS = {"token": "anon", "project": "augcli-test"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, seconds=30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def azurite_command() -> list | None:
    """How to start Azurite's blob service, or None where it is not installed."""
    configured = os.environ.get("AUGCLI_AZURITE")
    if configured and Path(configured).is_file():
        return [configured]
    local = Path(__file__).resolve().parents[1] / ".ci" / "node_modules" / ".bin" / "azurite-blob"
    if local.is_file():
        return [str(local)]
    found = shutil.which("azurite-blob")
    return [found] if found else None


class Servers:
    """The session's storage servers; ``stop`` ends each one it started."""

    def __init__(self, tmp: Path):
        self.stops = []
        self.env_before = dict(os.environ)
        self.azure_missing = None
        self._start_s3()
        self._start_gcs()
        self._start_azurite(tmp)

    def _start_s3(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.s3_port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.s3_port, verbose=False)
        server.start()
        self.s3_server = server
        self.stops.append(server.stop)
        os.environ.update(AWS_ACCESS_KEY_ID="augcli-test", AWS_SECRET_ACCESS_KEY=SECRET,
                          AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.s3_port}")

    def _start_gcs(self) -> None:
        from gcp_storage_emulator.server import create_server

        port = free_port()
        server = create_server("127.0.0.1", port, in_memory=True, default_bucket="gcs-data")
        server.start()
        self.stops.append(server.stop)
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        # gcsfs stalls against emulators unless told their buckets are plain ones.
        os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

    def _start_azurite(self, tmp: Path) -> None:
        command = azurite_command()
        if command is None:
            self.azure_missing = ("Azurite is not installed (npm install azurite@3.35.0, "
                                  "then set AUGCLI_AZURITE to its azurite-blob)")
            return
        port = free_port()
        process = subprocess.Popen(
            [*command, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent",
             "--skipApiVersionCheck", "--inMemoryPersistence", "--disableTelemetry"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.stops.append(lambda: (process.terminate(), process.wait(10)))
        wait_for_port(port, process)
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")

    def s3(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()
        os.environ.clear()
        os.environ.update(self.env_before)


def dask_process(module: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``dask scheduler`` / ``dask worker`` as a subprocess (the same programs, by module)."""
    return subprocess.Popen([sys.executable, "-m", f"distributed.cli.{module}", *args],
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
