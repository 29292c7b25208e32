"""augcli.load_transform: the recipe as an in-memory transform for training loops.

The reference for pixels, parameters and boxes is a real ``augcli run`` of the
same recipe (``format: png``, so the files hold the exact pixels); for seeds,
an independent BLAKE2b of the documented key and a pinned literal.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import textwrap
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import augcli
from augcli.annotations import AnnotationSource
from augcli.errors import UsageError
from augcli.recipe import load_recipe
from augcli.targets.boxes import Box

from .conftest import REPO, invoke, photo_like, run_cli, save, write_recipe
from .test_multi_image import DOTS, SIZES, paint_instances, paint_sources
from .test_targets_masks import write_label_maps
from .test_targets_polygons import HEIGHT, NAMES, WIDTH, painted_sources, recipe_for

# The site pages whose Python examples these tests run.
DOCS = "\n".join((REPO / "docs" / page).read_text(encoding="utf-8")
                 for page in ("training.md", "ricap.md"))

RECIPE = """\
    input: in
    output: out
    seed: 11
    format: png
    variants:
      noise:
        copies: 2
        ops:
          - dropout: {p: {sweep: [0.1, 0.3]}}
      geo:
        copies: 3
        ops:
          - fliplr: {p: 0.5}
          - affine: {rotate: [-20, 20], translate: [-0.2, 0.2], shear: [-15, 15]}
          - sometimes: {p: 0.5, ops: [{gaussian_blur: {sigma: [0, 1.5]}}]}
      pick:
        ops:
          - one_of: [{rot90: {k: [1, 3]}}, {crop: {percent: [0, 0.2]}}, {flipud: {p: 1}}]
          - dropout: {p: 0.05}
"""


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture)


@pytest.fixture
def sources(tmp_path):
    """RGB, RGBA, grey and 16-bit grey PNGs in class folders."""
    folder = tmp_path / "in"
    rgb = photo_like(40, 56, seed=1)
    rgba = np.dstack([photo_like(36, 30, seed=2), np.arange(36 * 30).reshape(36, 30) % 256])
    save(folder / "cats" / "tom.png", rgb)
    save(folder / "cats" / "rgba.png", rgba.astype(np.uint8))
    save(folder / "dogs" / "grey.png", photo_like(30, 44, seed=3)[..., 0])
    grey16 = (np.arange(32 * 24).reshape(32, 24) * 83).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "dogs" / "deep16.png")
    return folder


# --- the same pixels as run -------------------------------------------------------------

def test_seeded_calls_return_exactly_the_pixels_and_params_run_writes(tmp_path, sources):
    recipe_path = write_recipe(tmp_path, RECIPE)
    done = run_cli("run", recipe_path, "-w", 1, "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in
               (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
               if '"output"' in line]
    assert len(records) == 4 * (4 + 3 + 1)
    recipe = augcli.load_recipe(recipe_path)
    transforms = {name: augcli.load_transform(recipe, variant=name)
                  for name in ("noise", "geo", "pick")}
    for record in records:
        source = sources / record["source"]
        with Image.open(source) as picture:
            image = np.asarray(picture)
        seed = augcli.output_seed(11, record["source"], record["variant"], record["index"])
        assert seed == record["seed"]
        result = transforms[record["variant"]](image, seed=seed, index=record["index"])
        expected = read_png(tmp_path / "out" / record["output"])
        assert result.image.dtype == expected.dtype
        np.testing.assert_array_equal(result.image, expected, err_msg=record["output"])
        assert json.loads(json.dumps(result.params)) == record["ops"]
        assert (result.variant, result.index, result.seed) == \
            (record["variant"], record["index"], seed)


def test_output_seed_is_blake2b_of_the_documented_key_and_pinned():
    key = b"0\x1fcats/tom.jpg\x1fnoise\x1f1"
    independent = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1
    assert augcli.output_seed(0, "cats/tom.jpg", "noise", 1) == independent
    assert augcli.output_seed(0, "cats/tom.jpg", "noise", 1) == 4514289749284647794
    assert augcli.output_seed(0, Path("cats") / "tom.jpg", "noise", 1) == independent
    assert augcli.output_seed(1, "cats/tom.jpg", "noise", 1) != independent


@pytest.mark.parametrize("args, error, text", [
    ((float("nan"), "a.jpg", "noise", 1), ValueError, "recipe_seed must be an integer >= 0"),
    ((1.7, "a.jpg", "noise", 1), ValueError, "recipe_seed must be an integer >= 0, got 1.7"),
    ((True, "a.jpg", "noise", 1), ValueError, "recipe_seed must be an integer >= 0, got True"),
    ((-1, "a.jpg", "noise", 1), ValueError, "recipe_seed must be an integer >= 0, got -1"),
    (("1", "a.jpg", "noise", 1), ValueError, "recipe_seed must be an integer >= 0, got '1'"),
    ((0, "a.jpg", "noise", 0), ValueError, "index must be an integer >= 1"),
    ((0, "a.jpg", "noise", -3), ValueError, "index must be an integer >= 1"),
    ((0, "a.jpg", "noise", 1.0), ValueError, "index must be an integer >= 1"),
    ((0, "a.jpg", 3, 1), TypeError, "a variant name (str)"),
    ((0, b"a.jpg", "noise", 1), TypeError, "a relative path (str or Path)"),
])
def test_output_seed_refuses_what_the_transform_refuses(args, error, text):
    with pytest.raises(error) as caught:
        augcli.output_seed(*args)
    assert text in str(caught.value)
    if error is ValueError:  # the transform says the same of the same seed or index
        transform = augcli.load_transform(REPO / "recipe.yaml")
        seed, index = (args[0], 1) if "recipe_seed" in text else (1, args[3])
        with pytest.raises(ValueError) as same:
            transform(photo_like(8, 8), seed=seed, index=index)
        assert str(same.value) == str(caught.value).replace("recipe_seed", "seed")


def test_output_seed_takes_numpy_integers_as_the_same_numbers():
    assert augcli.output_seed(np.int64(0), "cats/tom.jpg", "noise", np.int32(1)) == \
        4514289749284647794


@pytest.mark.parametrize("shape", [(0, 0, 3), (10, 0), (0, 10, 3), (0, 0)])
def test_an_image_without_pixels_is_a_value_error(shape):
    transform = augcli.load_transform(REPO / "recipe.yaml")
    with pytest.raises(ValueError, match=r"at least 1 x 1 pixels, got shape \(" + str(shape[0])):
        transform(np.zeros(shape, np.uint8))
    if len(shape) == 3:  # a PIL image of that size says the same
        with pytest.raises(ValueError, match="at least 1 x 1 pixels"):
            transform(Image.new("RGB", shape[1::-1]))


@pytest.mark.parametrize("edges", [[[1, 1, float("nan"), 4]],
                                   [[1, 1, 4, 4], [1, float("inf"), 4, 4]],
                                   [[float("-inf"), 1, 4, 4]]])
def test_a_box_with_a_nan_or_infinite_edge_is_a_value_error(edges):
    transform = augcli.load_transform(REPO / "recipe.yaml")
    bad = len(edges) - 1
    with pytest.raises(ValueError, match=f"box {bad} has an edge that is not a finite number"):
        transform(photo_like(8, 8), np.array(edges), seed=1)
    with pytest.raises(ValueError, match=f"box {bad} has an edge that is not a finite number"):
        transform(photo_like(8, 8), [Box("c", *row) for row in edges], seed=1)


def test_boxes_follow_as_run_writes_them(tmp_path):
    folder = tmp_path / "in"
    save(folder / "a.png", photo_like(60, 80, seed=4))
    (folder / "a.txt").write_text("0 0.5 0.5 0.5 0.4\n1 0.1 0.1 0.12 0.1\n2 0.9 0.5 0.2 0.9\n")
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        seed: 3
        format: png
        annotations: {format: yolo, min_visibility: 0.4}
        variants:
          geo:
            copies: 8
            ops:
              - fliplr: {p: 0.5}
              - affine: {rotate: [-30, 30], translate: [-0.3, 0.3], scale: [0.8, 1.3]}
    """)
    result = invoke("run", str(recipe), "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    transform = augcli.load_transform(recipe, variant="geo")
    assert transform.min_visibility == 0.4
    image = read_png(folder / "a.png")
    boxes = np.array([[20, 18, 60, 42], [3.2, 3.0, 12.8, 9.0], [64, 3, 80, 57]])
    dropped_some = False
    for record in (json.loads(line) for line in
                   (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
                   if '"output"' in line):
        out = transform(image, boxes, seed=record["seed"], index=record["index"])
        expected = np.array([item["box"] for item in record["boxes"]]).reshape(-1, 4)
        np.testing.assert_allclose(out.boxes, expected, atol=1e-6)
        assert [str(i) for i in out.kept] == [item["label"] for item in record["boxes"]]
        dropped_some |= len(out.kept) < 3
        labelled = transform(image, [Box(str(i), *row) for i, row in enumerate(boxes)],
                             seed=record["seed"])
        assert [b.label for b in labelled.boxes] == [item["label"] for item in record["boxes"]]
    assert dropped_some


def test_boxes_through_flips_match_hand_computed_edges():
    recipe = augcli.parse_recipe({"variants": {"flip": {"ops": [{"fliplr": {"p": 1}},
                                                                 {"flipud": {"p": 1}}]}}})
    transform = augcli.load_transform(recipe)
    image = photo_like(30, 50)
    out = transform(image, np.array([[2, 3, 12, 10]]), seed=0)
    np.testing.assert_allclose(out.boxes, [[50 - 12, 30 - 10, 50 - 2, 30 - 3]], atol=1e-9)
    np.testing.assert_array_equal(out.image, image[::-1, ::-1])
    empty = transform(image, np.zeros((0, 4)), seed=0)
    assert empty.boxes.shape == (0, 4) and empty.kept.shape == (0,)


# --- inputs and outputs ----------------------------------------------------------------------

def test_pil_in_pil_out_with_the_same_pixels_as_the_array():
    transform = augcli.load_transform(REPO / "recipe.yaml", variant="mixed")
    for mode, array in [("RGB", photo_like(24, 32)), ("L", photo_like(24, 32)[..., 0]),
                        ("RGBA", np.dstack([photo_like(24, 32), photo_like(24, 32)[..., :1]]))]:
        picture = Image.fromarray(array)
        assert picture.mode == mode
        from_pil = transform(picture, seed=5)
        assert isinstance(from_pil.image, Image.Image) and from_pil.image.mode == mode
        np.testing.assert_array_equal(np.asarray(from_pil.image), transform(array, seed=5).image)


def test_uint16_and_single_channel_arrays_keep_their_layout():
    transform = augcli.load_transform(REPO / "recipe.yaml", variant="rotate")
    deep = (photo_like(20, 24)[..., 0].astype(np.uint16) * 257)
    out = transform(deep, seed=1).image
    assert out.dtype == np.uint16 and out.shape == (20, 24)
    single = photo_like(20, 24)[..., :1]
    out = transform(single, seed=1).image
    assert out.shape == (20, 24, 1)
    np.testing.assert_array_equal(out[..., 0], transform(single[..., 0], seed=1).image)


@pytest.mark.parametrize("image, error, text", [
    (np.zeros((8, 8, 3), np.float32), TypeError, "uint8 or uint16"),
    (np.zeros((3, 16, 16), np.uint8), ValueError, "transpose(1, 2, 0)"),
    (np.zeros((8, 8, 3, 1), np.uint8), ValueError, "H x W x C"),
])
def test_inputs_it_cannot_take_are_refused_with_a_reason(image, error, text):
    transform = augcli.load_transform(REPO / "recipe.yaml")
    with pytest.raises(error, match=None) as caught:
        transform(image)
    assert text in str(caught.value)


def test_bad_arguments_are_named():
    with pytest.raises(UsageError, match="no variant 'nope'.*noise, rotate, mixed"):
        augcli.load_transform(REPO / "recipe.yaml", variant="nope")
    transform = augcli.load_transform(REPO / "recipe.yaml")
    with pytest.raises(ValueError, match="seed must be an integer"):
        transform(photo_like(8, 8), seed=-1)
    with pytest.raises(ValueError, match="index must be an integer >= 1"):
        transform(photo_like(8, 8), seed=1, index=0)
    elastic = augcli.parse_recipe({"variants": {"e": {"ops": [{"elastic": {}}]}}})
    with pytest.raises(ValueError, match="elastic, which boxes cannot follow"):
        augcli.load_transform(elastic)(photo_like(8, 8), np.array([[0, 0, 4, 4]]))
    assert augcli.load_transform(elastic)(photo_like(8, 8), seed=1).image.shape == (8, 8, 3)


# --- randomness: its own generator, variants as one_of picks them ---------------------------

def test_no_variant_picks_each_variant_about_equally_and_replays_from_the_seed():
    transform = augcli.load_transform(REPO / "recipe.yaml", seed=2)
    image = photo_like(12, 16)
    results = [transform(image) for _ in range(600)]
    counts = {name: sum(r.variant == name for r in results) for name in ("noise", "rotate",
                                                                         "mixed")}
    assert all(150 < count < 250 for count in counts.values()), counts
    noise_p = {r.params[0]["dropout"]["p"] for r in results if r.variant == "noise"}
    assert noise_p == {0.3, 0.4, 0.5}  # the sweep's values, drawn when no index is given
    for result in results[:20]:
        again = transform(image, seed=result.seed)
        assert (again.variant, again.index, again.params) == \
            (result.variant, result.index, result.params)
        np.testing.assert_array_equal(again.image, result.image)


def test_own_generator_seeded_once_and_numpy_global_state_untouched():
    image = photo_like(12, 16)
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    first = [augcli.load_transform(REPO / "recipe.yaml", seed=7)(image).seed for _ in range(1)]
    transform = augcli.load_transform(REPO / "recipe.yaml", seed=7)
    seeds = [transform(image).seed for _ in range(5)]
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.random.seed(123)  # the global state has no say
    transform.manual_seed(7)
    assert [transform(image).seed for _ in range(5)] == seeds
    assert seeds[0] == first[0] and len(set(seeds)) == 5
    fresh = [augcli.load_transform(REPO / "recipe.yaml")(image).seed for _ in range(2)]
    assert fresh[0] != fresh[1]


def test_safe_from_several_threads():
    transform = augcli.load_transform(REPO / "recipe.yaml", seed=3)
    image = photo_like(48, 64)
    serial = [transform(image, seed=seed).image for seed in range(24)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        threaded = list(pool.map(lambda seed: transform(image, seed=seed).image, range(24)))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
    # unseeded calls from threads draw each of the generator's seeds exactly once
    transform.manual_seed(9)
    with ThreadPoolExecutor(max_workers=6) as pool:
        drawn = list(pool.map(lambda _: transform(image).seed, range(60)))
    reference = augcli.load_transform(REPO / "recipe.yaml", seed=9)
    assert sorted(drawn) == sorted(reference(image).seed for _ in range(60))


# --- pickling and processes ---------------------------------------------------------------

def draw_in_worker(transform):
    """Runs in a spawned process: seeds of three unseeded calls, and one seeded result."""
    image = photo_like(12, 16)
    return os.getpid(), [transform(image).seed for _ in range(3)], transform(image, seed=4).image


@pytest.mark.slow
def test_pickles_and_worker_processes_draw_streams_of_their_own():
    transform = augcli.load_transform(REPO / "recipe.yaml", seed=1)
    copy = pickle.loads(pickle.dumps(transform))
    image = photo_like(12, 16)
    np.testing.assert_array_equal(copy(image, seed=4).image, transform(image, seed=4).image)
    assert copy(image).seed == transform(image).seed  # a copy in this process: the same stream
    context = multiprocessing.get_context("spawn")
    outcomes = []
    for _ in range(2):
        with context.Pool(1) as pool:
            outcomes.append(pool.apply(draw_in_worker, (transform,)))
    (pid_a, seeds_a, image_a), (pid_b, seeds_b, image_b) = outcomes
    assert pid_a != pid_b != os.getpid()
    parent = [transform(image).seed for _ in range(3)]
    assert len({*seeds_a, *seeds_b, *parent}) == 9  # nobody repeats anybody's augmentations
    np.testing.assert_array_equal(image_a, transform(image, seed=4).image)
    np.testing.assert_array_equal(image_b, image_a)


def test_construction_and_pickling_import_no_imgaug_or_framework(tmp_path):
    recipe = write_recipe(tmp_path, """\
        variants:
          blur:
            ops: [{gaussian_blur: {sigma: [0, 2]}}, {fliplr: {}}]
    """)
    code = textwrap.dedent(f"""
        import pickle, sys
        import augcli
        transform = augcli.load_transform({str(recipe)!r})
        pickle.loads(pickle.dumps(transform))
        heavy = sorted(name for name in ("imgaug", "torch", "tensorflow", "keras", "scipy",
                                         "skimage") if name in sys.modules)
        print(heavy)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_loading_and_calling_a_transform_imports_no_pool_cluster_or_store(tmp_path):
    """A training loop gets the kernel only: no process pool, Dask, fsspec or stores,
    even for a recipe that names an object-store output and its options."""
    recipe = write_recipe(tmp_path, """\
        input: images
        output: s3://bucket/out
        storage: {endpoint_url: "http://127.0.0.1:9"}
        variants:
          mixed:
            ops: [{sometimes: {p: 0.5, ops: [fliplr]}}, {rotate: {degrees: 10}}]
          mosaic:
            ops: [{mosaic: {scale: [0.5, 2]}}]
    """)
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import augcli
        transform = augcli.load_transform({str(recipe)!r}, variant="mixed")
        transform(np.zeros((8, 8, 3), np.uint8), seed=1)
        mosaic = augcli.load_transform({str(recipe)!r}, variant="mosaic")
        mosaic(np.zeros((8, 8, 3), np.uint8), [[1, 1, 5, 5]], seed=1,
               donors=[(np.ones((6, 9, 3), np.uint8), [[0, 0, 3, 3]])] * 3)
        banned = ("concurrent.futures.process", "multiprocessing.pool", "distributed", "dask",
                  "fsspec", "augcli.storage", "augcli.stores", "augcli.jobs", "augcli.runner",
                  "augcli.plan", "augcli.worker",
                  "augcli.manifest")
        print(sorted(name for name in sys.modules
                     if any(name == b or name.startswith(b + ".") for b in banned)))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

# --- the docs' training-loop code runs ---------------------------------------------------
# The frameworks are not installed here (torch and tensorflow weigh gigabytes). Each is
# stood in for by the few names the docs use, behaving as documented: a DataLoader
# worker gets a pickled copy of the dataset and its worker_init_fn, tf.data maps on a
# thread pool and numpy_function hands strings over as bytes.

def stand_in_torch():
    torch = types.ModuleType("torch")
    torch.utils = types.ModuleType("torch.utils")
    data = torch.utils.data = types.ModuleType("torch.utils.data")
    current = {}

    class Dataset:
        pass

    class DataLoader:
        def __init__(self, dataset, batch_size, shuffle=False, num_workers=0,
                     worker_init_fn=None):
            self.dataset, self.batch_size, self.init = dataset, batch_size, worker_init_fn

        def __iter__(self):
            copy = pickle.loads(pickle.dumps(self.dataset))  # as sent to a spawned worker
            current["info"] = types.SimpleNamespace(id=0, seed=2**63 + 17, dataset=copy)
            self.init(0)
            items = [copy[i] for i in range(min(self.batch_size, len(copy)))]
            del current["info"]
            yield tuple(np.stack(column) for column in zip(*items))

    data.Dataset, data.DataLoader = Dataset, DataLoader
    data.get_worker_info = lambda: current.get("info")
    return {"torch": torch, "torch.utils": torch.utils, "torch.utils.data": data}


def stand_in_keras():
    keras = types.ModuleType("keras")
    keras.utils = types.ModuleType("keras.utils")

    class PyDataset:
        def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
            self.workers = workers

    keras.utils.PyDataset = PyDataset
    return {"keras": keras, "keras.utils": keras.utils}


def stand_in_tensorflow():
    tf = types.ModuleType("tensorflow")
    tf.uint8 = np.uint8

    class Tensor(np.ndarray):
        def set_shape(self, shape):
            assert self.shape == tuple(shape), (self.shape, shape)

    def numpy_function(function, inputs, dtype):
        given = [value.encode() if isinstance(value, str) else value for value in inputs]
        result = np.asarray(function(*given))
        assert result.dtype == dtype
        return result.view(Tensor)

    class Data:
        AUTOTUNE = -1

        class Dataset:
            def __init__(self, items):
                self.items = list(items)

            @classmethod
            def from_tensor_slices(cls, columns):
                return cls(zip(*columns))

            def map(self, function, num_parallel_calls=None):
                with ThreadPoolExecutor(max_workers=4) as pool:
                    return type(self)(pool.map(lambda item: function(*item), self.items))

            def batch(self, size):
                return type(self)(tuple(np.stack(column) for column in zip(*self.items[i:i + size]))
                                  for i in range(0, len(self.items), size))

            def __iter__(self):
                return iter(self.items)

    tf.numpy_function, tf.data = numpy_function, Data
    return {"tensorflow": tf}


def readme_python(heading: str) -> list:
    section = DOCS.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_readme_training_code_runs(monkeypatch, capsys):
    for name, module in {**stand_in_torch(), **stand_in_keras(), **stand_in_tensorflow()}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.chdir(REPO)
    blocks = readme_python("# Augmenting while training")
    assert len(blocks) == 4
    module = types.ModuleType("readme")  # so that pickle finds the docs' classes
    monkeypatch.setitem(sys.modules, "readme", module)
    namespace = module.__dict__
    for block in blocks:
        exec(compile(block, "docs", "exec"), namespace)  # noqa: S102 - the docs' own code
    assert namespace["result"].image.shape == namespace["image"].shape
    assert namespace["images"].shape == (2, 3, 224, 224)
    assert namespace["images"].dtype == np.float32
    assert namespace["x"].shape == (2, 224, 224, 3) and list(namespace["y"]) == [0, 1]
    (batch, labels), = list(namespace["dataset"])
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.uint8 and len(labels) == 2
    expected = augcli.load_transform(REPO / "recipe.yaml", variant="rotate")(
        namespace["image"], seed=augcli.output_seed(0, "cat/chelsea.jpg", "rotate", 2)).image
    np.testing.assert_array_equal(namespace["pixels"], expected)


def test_readme_ricap_batch_code_runs():
    blocks = readme_python("### RICAP in memory, while training")
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "docs", "exec"), namespace)  # noqa: S102 - the docs' own code
    assert namespace["mixed"].shape == (32, 10)


def test_polygons_keypoints_and_masks_match_a_run(tmp_path):
    """The other targets come out as ``run`` writes them for the same seed: COCO polygons
    with keypoints (left/right named, so flips swap them) and mask images."""
    shapes = painted_sources(tmp_path / "in", images=2)
    images, annotations = [], []
    for image_id, (name, objects) in enumerate(shapes.items(), start=1):
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
        for label, ring in objects:
            points = [ring[0], ring[1], 2, ring[4], ring[5], 2]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": NAMES.index(label) + 1, "segmentation": [ring],
                                "keypoints": points, "num_keypoints": 2, "bbox": [0, 0, 1, 1],
                                "area": 1, "iscrowd": 0})
    categories = [{"id": i + 1, "name": label, "keypoints": ["left_tip", "right_tip"]}
                  for i, label in enumerate(NAMES)]
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    recipe = recipe_for(tmp_path, f"{{format: coco, path: {coco}, min_visibility: 0}}")
    assert augcli.run_recipe(recipe, workers=1).exit_code == 0
    write_label_maps(tmp_path / "in", shapes)  # after: the COCO run would take them as sources
    masks = write_recipe(tmp_path, recipe.read_text().replace("output: out", "output: masks")
                         .replace(f"{{format: coco, path: {coco}, min_visibility: 0}}",
                                  "{format: masks, mask_fill: 7}"), "masks.yaml")
    assert augcli.run_recipe(masks, workers=1).exit_code == 0
    # keypoints given as arrays take the recipe's flip_idx
    pose = write_recipe(tmp_path, recipe.read_text().replace(
        "min_visibility: 0}", "min_visibility: 0, flip_idx: [1, 0]}"), "pose.yaml")
    source = AnnotationSource(load_recipe(recipe).annotations, tmp_path / "in")
    transforms: dict = {}
    plain_transforms: dict = {}
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text()
               .splitlines()]
    for record in (record for record in records if "output" in record):  # not the header
        transform = transforms.setdefault(record["variant"], augcli.load_transform(
            masks, variant=record["variant"]))
        objects = source.read(record["source"]).boxes
        rings = [np.asarray(item.shape.rings[0]).reshape(-1, 2) for item in objects]
        labels = read_png(tmp_path / "in" / record["source"].replace(".png", "_mask.png"))
        out = transform(read_png(tmp_path / "in" / record["source"]), seed=record["seed"],
                        index=record["index"], keypoints=list(objects),
                        polygons=[item.shape for item in objects], masks=labels)
        assert [item.to_record() for item in out.keypoints] == record["boxes"]
        assert [item.to_record() for item in out.polygons] == [
            {key: item[key] for key in ("label", "box", "polygon")} for item in record["boxes"]]
        written = read_png(tmp_path / "masks" / record["output"].replace(".png", "_mask.png"))
        assert out.masks.dtype == written.dtype and (out.masks == written).all()
        plain = plain_transforms.setdefault(record["variant"], augcli.load_transform(
            pose, variant=record["variant"]))(
                read_png(tmp_path / "in" / record["source"]), seed=record["seed"],
                index=record["index"], polygons=rings, masks=[labels == 1],
                keypoints=np.array([np.reshape(item.points, (-1, 3)) for item in objects]))
        assert plain.kept_polygons.tolist() == list(range(len(objects)))
        for rings_out, item in zip(plain.polygons, record["boxes"], strict=True):
            np.testing.assert_allclose(np.concatenate(rings_out).ravel(),
                                       np.concatenate(item["polygon"]), atol=1e-6)
        np.testing.assert_allclose(plain.keypoints.reshape(len(objects), -1),
                                   [item["keypoints"] for item in record["boxes"]], atol=1e-6)
        assert (plain.masks[0] == (written == 1)).all()


# --- donors: the ops that take other images ------------------------------------------------

DONOR_RECIPE = """\
    input: in
    output: out
    seed: 7
    format: png
    annotations: {format: yolo, min_visibility: 0.2}
    variants:
      mosaic:
        copies: 2
        ops:
          - mosaic: {grid: [2, 2], size: [128, 112]}
          - affine: {rotate: [-10, 10], scale: [0.9, 1.1]}
      mosaic9: {ops: [{mosaic: {grid: [3, 3], size: [150, 150], scale: [0.5, 1.5]}}]}
      cutmix: {copies: 2, ops: [{cutmix: {area: [0.2, 0.5]}}, {fliplr: {p: 0.5}}]}
      mixup: {ops: [{mixup: {ratio: [0.3, 0.7]}}]}
"""


def test_donors_give_the_pixels_and_boxes_run_writes(tmp_path):
    """A run's record names each step's donors; the transform given those images and boxes
    and the record's seed makes the file's pixels and the record's boxes."""
    paint_sources(tmp_path / "in", 6)
    recipe = write_recipe(tmp_path, DONOR_RECIPE)
    result = invoke("run", str(recipe), "-w", "2", "-q")
    assert result.exit_code == 0, result.output
    source = AnnotationSource(load_recipe(recipe).annotations, tmp_path / "in")
    transforms = {name: augcli.load_transform(recipe, variant=name)
                  for name in ("mosaic", "mosaic9", "cutmix", "mixup")}
    records = [json.loads(line) for line in
               (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
               if '"variant": "' in line]
    assert len(records) == 6 * 6
    for record in records:
        names = [name for step in record["ops"] for params in step.values()
                 for name in params.get("donors", ())]
        assert names == [donor["source"] for donor in record["donors"]]
        assert len(names) == {"mosaic": 3, "mosaic9": 8}.get(record["variant"], 1)
        image = read_png(tmp_path / "in" / record["source"])
        boxes = source.read(record["source"]).boxes
        donors = [(read_png(tmp_path / "in" / name), source.read(name).boxes)
                  for name in names]
        out = transforms[record["variant"]](image, boxes, donors=donors, seed=record["seed"],
                                            index=record["index"])
        np.testing.assert_array_equal(out.image, read_png(tmp_path / "out" / record["output"]),
                                      err_msg=record["output"])
        assert [box.to_record() for box in out.boxes] == record["boxes"]
        assert json.loads(json.dumps(out.params))[0].keys() == record["ops"][0].keys()
        # the same boxes as arrays: kept indexes the image's boxes, then each donor's
        labels = [box.label for box in boxes] + [box.label for _, each in donors
                                                 for box in each]
        edges = [[[b.x0, b.y0, b.x1, b.y1] for b in each] for each in [boxes] +
                 [each for _, each in donors]]
        arrays = transforms[record["variant"]](
            image, np.array(edges[0]).reshape(-1, 4), seed=record["seed"],
            index=record["index"], donors=[(pixels, np.array(edge).reshape(-1, 4))
                                           for (pixels, _), edge in zip(donors, edges[1:],
                                                                        strict=True)])
        assert [labels[i] for i in arrays.kept] == [item["label"] for item in record["boxes"]]
        np.testing.assert_allclose(arrays.boxes, np.array(
            [item["box"] for item in record["boxes"]]).reshape(-1, 4), atol=1e-6)


def replayed(tmp_path, recipe: Path, targets_of):
    """Run ``recipe``, then replay each output with the transform: the source, its record's
    donors and seed, and each image's targets as ``targets_of(name)`` gives them (the
    donors as ``(image, targets)``). Yields (record, the transform's result)."""
    assert augcli.run_recipe(recipe, workers=1).exit_code == 0
    transforms: dict = {}
    for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "output" not in record:  # the header
            continue
        names = [donor["source"] for donor in record["donors"]]
        assert names == [name for step in record["ops"] for params in step.values()
                         for name in params.get("donors", ())]
        transform = transforms.setdefault(record["variant"], augcli.load_transform(
            recipe, variant=record["variant"]))
        out = transform(read_png(tmp_path / "in" / record["source"]), seed=record["seed"],
                        index=record["index"], **targets_of(record["source"]),
                        donors=[(read_png(tmp_path / "in" / name), targets_of(name))
                                for name in names])
        np.testing.assert_array_equal(out.image, read_png(tmp_path / "out" / record["output"]),
                                      err_msg=record["output"])
        yield record, out


def test_donors_give_the_polygons_run_writes(tmp_path):
    """YOLO-seg polygons through mosaic (then an affine), cutmix and mixup: as objects, the
    record's polygons; as arrays, the same rings, ``kept_polygons`` naming whose."""
    paint_instances(tmp_path / "in", 6)
    recipe = write_recipe(tmp_path, DONOR_RECIPE)
    source = AnnotationSource(load_recipe(recipe).annotations, tmp_path / "in")
    seen = set()
    for record, out in replayed(tmp_path, recipe,
                                lambda name: {"polygons": source.read(name).boxes}):
        assert [item.to_record() for item in out.polygons] == record["boxes"]
        seen.add(record["variant"])
    # as arrays: each image's rings, indexed on through the donors
    rings = {name: [np.reshape(item.rings[0], (-1, 2)) for item in source.read(name).boxes]
             for name in sorted(p.name for p in (tmp_path / "in").glob("*.png"))}
    labels = {name: [item.label for item in source.read(name).boxes] for name in rings}
    donated = 0
    for record, out in replayed(tmp_path, recipe, lambda name: {"polygons": rings[name]}):
        donated += int((out.kept_polygons >= len(labels[record["source"]])).sum())
        order = [label for name in [record["source"]] + [d["source"] for d in record["donors"]]
                 for label in labels[name]]
        assert [order[i] for i in out.kept_polygons] == [item["label"]
                                                         for item in record["boxes"]]
        for polygon, item in zip(out.polygons, record["boxes"], strict=True):
            np.testing.assert_allclose(np.concatenate(polygon).ravel(),
                                       np.concatenate(item["polygon"]), atol=1e-6)
    assert seen == {"mosaic", "mosaic9", "cutmix", "mixup"} and donated > 6 * 6


def test_donors_give_the_keypoints_run_writes(tmp_path):
    """YOLO-pose keypoints through mosaic and mixup (cutmix carries none: refused)."""
    rng = np.random.default_rng(8)
    for index, (width, height) in enumerate(SIZES[:5]):
        points = []
        for _ in DOTS:
            points += [float(rng.integers(3, width - 3)) / width,
                       float(rng.integers(3, height - 3)) / height, 2]
        save(tmp_path / "in" / f"p{index}.png", photo_like(height, width, seed=index))
        (tmp_path / "in" / f"p{index}.txt").write_text(
            "0 0.5 0.5 1 1 " + " ".join(map(str, points)) + "\n")
    recipe = write_recipe(tmp_path, DONOR_RECIPE.replace(
        "{format: yolo, min_visibility: 0.2}",
        "{format: yolo, task: pose, kpt_shape: [3, 3], min_visibility: 0}").replace(
        "      cutmix: {copies: 2, ops: [{cutmix: {area: [0.2, 0.5]}}, {fliplr: {p: 0.5}}]}\n",
        ""))
    source = AnnotationSource(load_recipe(recipe).annotations, tmp_path / "in")
    for record, out in replayed(tmp_path, recipe,
                                lambda name: {"keypoints": source.read(name).boxes}):
        assert [item.to_record() for item in out.keypoints] == record["boxes"]
    # as arrays: every object's points, 0 0 0 where they left (none is dropped here)
    arrays = {name: np.array([np.reshape(item.points, (-1, 3)) for item in
                              source.read(name).boxes]) for name in
              (f"p{index}.png" for index in range(5))}
    for record, out in replayed(tmp_path, recipe, lambda name: {"keypoints": arrays[name]}):
        written = np.array([item["keypoints"] for item in record["boxes"]])
        assert len(written) == 1 + len(record["donors"])  # one object an image
        assert out.keypoints.shape == (len(written), 3, 3)
        np.testing.assert_allclose(sorted(out.keypoints.reshape(len(written), -1).tolist()),
                                   sorted(written.tolist()), atol=1e-6)
    with pytest.raises(ValueError, match="uses cutmix, which carries boxes, polygons, masks "
                                         "only, not keypoints"):
        augcli.load_transform(augcli.parse_recipe({"variants": {"c": {"ops": [
            {"cutmix": {}}]}}}))(photo_like(), keypoints=arrays["p0.png"],
                                 donors=[(photo_like(), {"keypoints": arrays["p1.png"]})])


def test_donors_give_the_mask_images_run_writes(tmp_path):
    """Label maps through mosaic and cutmix: each donor's own map pasted by the same pieces,
    the file run writes beside the output; mixup carries none (refused)."""
    shapes = painted_sources(tmp_path / "in", images=4)
    write_label_maps(tmp_path / "in", shapes, wide="s3.png")
    recipe = write_recipe(tmp_path, DONOR_RECIPE.replace(
        "{format: yolo, min_visibility: 0.2}", "{format: masks, mask_fill: 7}").replace(
        "      mixup: {ops: [{mixup: {ratio: [0.3, 0.7]}}]}\n", ""))
    maps = {name: read_png(tmp_path / "in" / name.replace(".png", "_mask.png"))
            for name in shapes}
    count = 0
    for record, out in replayed(tmp_path, recipe, lambda name: {"masks": maps[name]}):
        written = read_png(tmp_path / "out" / record["output"].replace(".png", "_mask.png"))
        assert out.masks.dtype == written.dtype and (out.masks == written).all(), \
            record["output"]
        count += 1
    assert count == 4 * 5
    image = read_png(tmp_path / "in" / "s0.png")
    with pytest.raises(ValueError, match="uses mixup, which carries no masks"):
        augcli.load_transform(augcli.parse_recipe({"variants": {"m": {"ops": [
            {"mixup": {}}]}}}))(image, masks=maps["s0.png"],
                                donors=[(image, {"masks": maps["s1.png"]})])


def test_too_few_donors_name_the_op_and_how_many_it_takes(tmp_path):
    recipe = augcli.parse_recipe({"variants": {
        "mosaic": {"ops": [{"mosaic": {"grid": [3, 3]}}]},
        "both": {"ops": [{"cutmix": {}}, {"mixup": {}}]},
        "paste": {"ops": [{"copy_paste": {}}]}}})
    image = photo_like(seed=1)
    with pytest.raises(ValueError, match=r"mosaic takes 8 donor image\(s\).*0 of the 0 given "
                                         r"are left.*donors=\[\(image, boxes\)"):
        augcli.load_transform(recipe, "mosaic")(image, seed=3)
    with pytest.raises(ValueError, match=r"mixup takes 1 donor image\(s\).*0 of the 1 given"):
        augcli.load_transform(recipe, "both")(image, donors=[(image, None)], seed=3)
    assert augcli.load_transform(recipe, "both")(
        image, donors=[(image, None), (photo_like(seed=2), None)], seed=3).image.shape == \
        image.shape
    with pytest.raises(ValueError, match="donor 1 has no boxes while the image has"):
        augcli.load_transform(recipe, "both")(image, [[1, 1, 9, 9]], seed=3,
                                              donors=[(image, []), (image, None)])
    with pytest.raises(ValueError, match="uses cutmix, which carries boxes, polygons, masks "
                                         "only, not keypoints"):
        augcli.load_transform(recipe, "both")(image, keypoints=[[[1, 1]]],
                                              donors=[(image, {"keypoints": [[[2, 2]]]})] * 2,
                                              seed=3)
    with pytest.raises(ValueError, match=r"uses mixup, which carries no masks \(label maps\)"):
        augcli.load_transform(recipe, "both")(image, masks=image[..., 0],
                                              donors=[(image, {"masks": image[..., 0]})] * 2,
                                              seed=3)
    with pytest.raises(ValueError, match="donor 0 has no polygons while the image has"):
        augcli.load_transform(recipe, "both")(image, polygons=[[[1, 1], [9, 1], [9, 9]]],
                                              donors=[(image, [])] * 2, seed=3)
    with pytest.raises(ValueError, match="donor 0's targets take boxes, polygons, keypoints, "
                                         "masks, not 'labels'"):
        augcli.load_transform(recipe, "both")(image, donors=[(image, {"labels": []})] * 2,
                                              seed=3)
    with pytest.raises(ValueError, match="copy_paste.*augcli run does"):
        augcli.load_transform(recipe, "paste")(image, donors=[(image, [])], seed=3)
