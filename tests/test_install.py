"""What `pip install augcli` brings: a lean, headless core; imgaug only as an extra.

The environment checks (one OpenCV wheel, no libGL) run strictly in CI
(`.ci/run` sets AUGCLI_CHECK_INSTALL=1 after keeping only the headless wheel);
elsewhere they skip when the environment holds the GUI wheel that imgaug asks for.
"""

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from .conftest import REPO

STRICT = os.environ.get("AUGCLI_CHECK_INSTALL") == "1"


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0] \
        .strip().lower()


def test_the_core_needs_no_imgaug_and_no_gui_opencv():
    project = _project()
    core = {_name(r) for r in project["project"]["dependencies"]}
    assert core == {"click", "numpy", "opencv-python-headless", "pillow", "pyyaml", "tqdm"}
    extras = project["project"]["optional-dependencies"]
    assert "imgaug==0.4.0" in extras["imgaug"]
    assert {"pytest", "imgaug", "keras-preprocessing", "scipy", "ruff", "mypy"} <= {
        _name(r) for r in extras["test"]}
    requires = project["build-system"]["requires"]
    assert requires == ["setuptools>=77"]  # the first to read license = "MIT" (PEP 639)
    assert project["project"]["license"] == "MIT"
    assert "MIT License" in (REPO / "LICENSE").read_text("utf-8")


def _imports(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_engine_imports_imgaug_and_nothing_imports_imageio():
    importers = {path.relative_to(REPO).as_posix(): _imports(path)
                 for path in (REPO / "augcli").rglob("*.py")}
    assert [p for p, names in importers.items() if "imgaug" in names] == ["augcli/engine.py"]
    assert not [p for p, names in importers.items() if "imageio" in names]


_WITHOUT_IMGAUG = """
import sys
class NoImgaug:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'imgaug':
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, NoImgaug())
from augcli.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_every_op_and_the_sample_recipe_work_without_imgaug(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def augcli(*args):
        return subprocess.run([sys.executable, "-c", _WITHOUT_IMGAUG, *map(str, args)],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300, check=False)

    result = augcli("run", REPO / "recipe.yaml", "-o", tmp_path / "out", "-w", "2", "-q")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").rglob("*_*_*.*"))) == 44
    listing = augcli("ops")
    assert listing.returncode == 0 and "gaussian_blur" in listing.stdout
    recipe = tmp_path / "ia.yaml"
    recipe.write_text("input: in\nvariants:\n  a: {ops: [{imgaug: {Dropout: {p: 0.3}}}]}\n")
    (tmp_path / "in").mkdir()
    refused = augcli("validate", recipe)
    assert refused.returncode == 2
    # this checkout's own path: the command works from any folder
    assert f"pip install -e '{Path(__file__).resolve().parent.parent}[imgaug]'" in \
        refused.stderr + refused.stdout


def _opencv_wheels() -> list:
    return sorted({dist.metadata["Name"].lower() for dist in metadata.distributions()
                   if (dist.metadata["Name"] or "").lower().startswith("opencv")})


def _strict_or_skip():
    if not STRICT and "opencv-python" in _opencv_wheels():
        pytest.skip("opencv-python (the GUI wheel imgaug asks for) is installed here beside "
                    "the headless one; .ci/run removes it and checks this strictly")


def test_exactly_one_opencv_wheel_the_headless_one():
    _strict_or_skip()
    assert _opencv_wheels() == ["opencv-python-headless"]


def test_the_installed_cv2_does_not_link_libgl():
    _strict_or_skip()
    if shutil.which("ldd") is None:
        pytest.skip("no ldd on this machine")
    import cv2

    folder = Path(cv2.__file__).parent
    libraries = [*folder.rglob("*.so*"), *folder.parent.glob("opencv*.libs/*.so*")]
    assert libraries
    for library in libraries:
        linked = subprocess.run(["ldd", str(library)], capture_output=True, text=True,
                                check=False).stdout
        assert "libGL" not in linked, library
