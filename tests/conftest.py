"""Fixtures and the helpers every test file shares: real image files of many formats,
made on the fly, and the CLI run in this process or as a real one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from augcli import engine
from augcli.cli import main
from augcli.pipeline import Step, apply_steps, sample_steps
from augcli.recipe import parse_recipe


def photo_like(height=48, width=64, seed=0) -> np.ndarray:
    """A smooth RGB image with texture: gradients plus blurred noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 200, y / height * 200, (x + y) % 97 * 2.0], axis=-1)
    noise = rng.normal(0, 25, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def smooth(height=60, width=80, seed=5, sigma=2) -> np.ndarray:
    """``photo_like`` blurred: no pixel-to-pixel noise, so resampling differs little."""
    return cv2.GaussianBlur(photo_like(height, width, seed=seed), (0, 0), sigma)


def save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def folder_files(folder: Path, pattern: str = "*", skip=()) -> dict:
    """Relative path -> bytes of every file under ``folder`` matching ``pattern``, but those
    named in ``skip``: two output folders are byte-identical when these are equal."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob(pattern)) if path.is_file() and path.name not in skip}


def output_files(folder: Path) -> dict:
    """``folder_files`` of an output folder but its manifest, whose records carry times."""
    return folder_files(folder, skip=("manifest.jsonl",))


def write_recipe(folder: Path, body: str, name="recipe.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


# --- the CLI: in this process (click's runner) or as a real process --------------------------

REPO = Path(__file__).resolve().parent.parent


def invoke(*args, **kwargs) -> Result:
    """``augcli ARGS...`` in this process; an exception the CLI does not turn into an exit
    code is raised, not hidden in the result. ``kwargs`` go to ``CliRunner.invoke``."""
    kwargs.setdefault("catch_exceptions", False)
    return CliRunner().invoke(main, [str(arg) for arg in args], **kwargs)


def cli_command(*args) -> list[str]:
    """The command line of ``augcli ARGS...``: the installed console script, as a user runs
    it, or ``python -m augcli`` where there is none; with ``cli_env`` it imports this tree."""
    script = Path(sys.executable).with_name("augcli")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "augcli"]
    return [*command, *map(str, args)]


def cli_env(**variables) -> dict:
    """This environment with this checkout first on the path (so processes it starts
    import this tree) and ``variables`` set."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8", **variables}


def run_cli(*args, cwd=None, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """``augcli ARGS...`` as a real process, to its end; output captured as text."""
    return subprocess.run(cli_command(*args), cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def start_cli(*args, cwd=None, env=None, **kwargs) -> subprocess.Popen:
    """``augcli ARGS...`` started as a real process in a session of its own (its workers
    with it), for ``kill_when``."""
    return subprocess.Popen(cli_command(*args), cwd=cwd, env=env or cli_env(),
                            start_new_session=True, **kwargs)


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout=120,
              sig=signal.SIGKILL) -> tuple:
    """Send ``sig`` to the process's whole group once ``ready()`` holds (polled), or at
    ``timeout``, or not at all if it ends first; return what ``communicate`` returns."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    if process.poll() is None:
        os.killpg(process.pid, sig)
    return process.communicate(timeout=timeout)


@pytest.fixture
def image():
    return photo_like()


@pytest.fixture
def dataset(tmp_path):
    """An input folder with two class subfolders and several formats.

    Returns the input folder; ``tmp_path`` is free for recipes and outputs.
    """
    folder = tmp_path / "in"
    save(folder / "cats" / "tom.jpg", photo_like(seed=1), quality=95)
    save(folder / "cats" / "felix.png", photo_like(seed=2))
    save(folder / "dogs" / "rex.bmp", photo_like(seed=3))
    save(folder / "dogs" / "fido.webp", photo_like(seed=4), lossless=True)
    return folder


SIMPLE_RECIPE = """\
    input: in
    output: out
    seed: 7
    variants:
      noise:
        ops:
          - dropout: {p: {sweep: [0.1, 0.2]}}
      mixed:
        copies: 2
        ops:
          - fliplr: {p: 0.5}
          - affine: {rotate: [-15, 15], shear: [-5, 5], translate: [-0.1, 0.1]}
          - sometimes: {p: 0.5, ops: [{gaussian_blur: {sigma: [0, 1]}}]}
"""


@pytest.fixture
def simple_recipe(tmp_path, dataset):
    return write_recipe(tmp_path, SIMPLE_RECIPE)


# --- the cluster and object-store servers (tests/servers.py), shared by their test files ---

@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """moto S3, a fake GCS and Azurite, started once for the session."""
    from .servers import Servers

    started = Servers(tmp_path_factory.mktemp("servers"))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def client(servers):
    """A Dask LocalCluster of two worker processes (they inherit the servers' environment)."""
    distributed = pytest.importorskip("distributed")
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR)
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a small tmpfs on ``folder`` (a real full or read-only file system); False where
    that is not possible (not root, no mount). Unmount with ``unmount``."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


# --- helpers of the op tests (tests/test_ops_*.py) ---------------------------------------

# Every image layout an op must handle: grey, grey + alpha, RGB, RGBA and 16-bit grey.
LAYOUTS = [((30, 40), np.uint8), ((30, 40, 2), np.uint8), ((30, 40, 3), np.uint8),
           ((30, 40, 4), np.uint8), ((30, 40), np.uint16)]
FILL = {"fill": "constant", "cval": 0}


def imgaug_or_skip():
    """imgaug.augmenters, the reference the native ops are checked against; skip without it."""
    try:
        return engine.load()
    except ImportError as exc:
        pytest.skip(f"imgaug is not installed ({exc}); pip install '.[test]' to check ops "
                    "against it")


@pytest.fixture(scope="module")
def iaa():
    return imgaug_or_skip()


def ops_of(text: str):
    return parse_recipe(yaml.safe_load(f"variants: {{a: {{ops: {text}}}}}")).variants[0].ops


def sample(text: str, seed=0, shape=(48, 64, 3)):
    return sample_steps(ops_of(text), np.random.default_rng(seed), shape)


def run(image, op, **params):
    return apply_steps(image, [Step(op, params)])


def random_image(shape, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype,
                                                endpoint=True)


def diff(a, b):
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return d.mean(), d.max()
