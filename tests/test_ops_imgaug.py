"""The imgaug dialect op: every augmenter it lists runs, seeded like every other op.

Checked against imgaug itself (the same augmenter built by hand and seeded with
the recorded seed), through the recipe parser, and through real runs.
"""

import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from augcli import engine
from augcli.errors import RecipeError
from augcli.ops import CATALOG
from augcli.ops import imgaug as dialect
from augcli.pipeline import apply_steps, sample_steps
from augcli.recipe import parse_recipe
from augcli.runner import MANIFEST_NAME

from .conftest import invoke, ops_of, photo_like, random_image, write_recipe


def by_hand(iaa, augmenters, seed):
    """What a script would do to get augcli's pixels for a recorded seed."""
    import imgaug.random

    imgaug.random.seed(seed)
    chain = iaa.Sequential(augmenters)
    chain.seed_(seed)
    return chain


def steps_for(body, seed=0, shape=(32, 48, 3)):
    return sample_steps(ops_of(json.dumps([{"imgaug": body}])), np.random.default_rng(seed),
                        shape)


@pytest.mark.parametrize("name", sorted(dialect.WORKING))
def test_every_listed_augmenter_runs_and_is_seeded_by_augcli(iaa, name):
    """Each augmenter `augcli ops imgaug` lists, with its example, on a small RGB image:
    the size it reports, uint8 kept, the same pixels for the same seed, and the same
    pixels as imgaug's own augmenter seeded with the recorded seed."""
    image = random_image((32, 48, 3), seed=2)
    example = dialect.WORKING[name]
    for seed in range(2):
        steps = steps_for({name: example}, seed)
        (step,) = steps
        assert step.params["augmenters"] == [{name: example}]
        out = apply_steps(image, steps)
        assert out.dtype == np.uint8 and out.shape[2] == 3
        assert out.shape[:2] == CATALOG["imgaug"].size_after(step.params, (32, 48))
        iaa.Dropout(0.1)(image=image)  # imgaug's global generator moves on: no matter
        assert np.array_equal(apply_steps(image, steps_for({name: example}, seed)), out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hand = by_hand(iaa, [getattr(iaa, name)(**dialect._to_imgaug(example))],
                           step.params["seed"])
            assert np.array_equal(hand(image=image), out)


def test_every_imgaug_augmenter_is_listed_or_refused_with_a_reason(iaa):
    from imgaug.augmenters.meta import Augmenter

    everything = {name for name, value in vars(iaa).items()
                  if inspect.isclass(value) and issubclass(value, Augmenter)}
    assert set(dialect.WORKING) | set(dialect.REFUSED) == everything
    assert not set(dialect.WORKING) & set(dialect.REFUSED)
    assert all(reason for reason in dialect.REFUSED.values())


@pytest.mark.parametrize("name", ["Fog", "Clouds"])
def test_the_augmenters_refused_for_numpy_2_really_fail_on_it(iaa, name):
    with pytest.raises(AttributeError, match="complex"):
        getattr(iaa, name)(seed=1)(image=random_image((32, 48, 3)))


def test_lists_are_ranges_and_choice_is_a_pick(iaa):
    image = photo_like(40, 56, seed=1)
    angles = set()
    for seed in range(6):
        (step,) = steps_for({"Affine": {"rotate": {"choice": [0, 90]}}}, seed, image.shape)
        out = apply_steps(image, [step])
        for angle in (0, 90):
            if np.array_equal(iaa.Affine(rotate=angle)(image=image), out):
                angles.add(angle)
    assert angles == {0, 90}  # imgaug's list: one of the values, never in between
    (step,) = steps_for({"Affine": {"rotate": [-20, 20]}}, 3, image.shape)
    hand = by_hand(iaa, [iaa.Affine(rotate=(-20, 20))], step.params["seed"])
    assert np.array_equal(hand(image=image), apply_steps(image, [step]))


def test_a_list_of_augmenters_runs_in_order_and_names_may_be_bare(iaa):
    image = photo_like(30, 40, seed=4)
    body = [{"Fliplr": {"p": 1.0}}, "Grayscale", {"Multiply": {"mul": 0.5}}]
    (step,) = steps_for(body, 1, image.shape)
    assert step.params["augmenters"] == [{"Fliplr": {"p": 1.0}}, {"Grayscale": {}},
                                         {"Multiply": {"mul": 0.5}}]
    grey = iaa.Grayscale(alpha=1.0)(image=image[:, ::-1])
    expected = iaa.Multiply(0.5)(image=grey)
    assert np.array_equal(apply_steps(image, [step]), expected)


def test_different_outputs_get_different_draws(iaa):
    image = random_image((32, 48, 3))
    outs = {apply_steps(image, steps_for({"Dropout": {"p": 0.3}}, seed)).tobytes()
            for seed in range(5)}
    assert len(outs) == 5


def test_resizing_augmenters_hand_their_size_to_the_next_step(iaa):
    image = random_image((30, 40, 3))
    ops = ops_of('[{imgaug: {CropToFixedSize: {width: 20, height: 10}}}, '
                 '{crop: {percent: 0.1}}]')
    steps = sample_steps(ops, np.random.default_rng(0), image.shape)
    assert apply_steps(image, steps[:1]).shape == (10, 20, 3)
    assert apply_steps(image, steps).shape == (8, 16, 3)  # 10% of 10 x 20 cut from each side


def check(body, **recipe):
    return parse_recipe({"variants": {"a": {"ops": [{"imgaug": body}]}}, **recipe})


@pytest.mark.parametrize("body, message", [
    ({"Dropuot": {"p": 0.1}}, r"ops\[0\].imgaug.Dropuot: no working imgaug augmenter named "
                              r"'Dropuot' \(did you mean 'Dropout'\?\); run 'augcli ops imgaug'"),
    ({"Fog": {}}, r"imgaug.Fog: not available in recipes: fails on NumPy 2"),
    ({"Sequential": {}}, r"Sequential: not available in recipes: takes other augmenters: put "
                         r"imgaug steps inside augcli's own sometimes"),
    ({"Dropout": {"pp": 0.1}}, r"imgaug.Dropout.pp: Dropout has no argument 'pp' \(did you "
                               r"mean 'p'\?\); it takes p, per_channel"),
    ({"Dropout": {"seed": 3}}, r"imgaug.Dropout.seed: augcli seeds every output itself"),
    ({"Dropout": {"p": "lots"}}, r"imgaug.Dropout: imgaug refuses these arguments: "),
    ({"Resize": {}}, r"imgaug.Resize: Resize needs size"),
    ([{"Fliplr": {}}, 3], r"imgaug\[1\]: expected an augmenter name or"),
    ({"Dropout": [0.1]}, r"imgaug.Dropout: expected a mapping of Dropout's keyword arguments"),
    ({}, r"imgaug: expected an imgaug augmenter like \{Dropout: \{p: 0.3\}\}"),
])
def test_recipe_errors_name_the_key_and_suggest(iaa, body, message):
    with pytest.raises(RecipeError, match=message):
        check(body)


def test_imgaug_steps_are_refused_with_annotations(iaa):
    with pytest.raises(RecipeError, match=r"ops\[0\].imgaug: not with annotations: augcli "
                                          "cannot tell where an imgaug augmenter moved"):
        check({"Fliplr": {}}, annotations={"format": "yolo"})


def test_without_imgaug_a_recipe_using_it_names_the_extra(tmp_path, dataset, monkeypatch):
    def missing():
        raise ImportError("No module named 'imgaug'")

    monkeypatch.setattr(engine, "load", missing)
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        variants:
          drop: {ops: [{imgaug: {Dropout: {p: 0.3}}}]}
    """)
    result = invoke("run", str(recipe))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "variants.drop.ops[0].imgaug: imgaug steps need imgaug, an optional extra: " \
           f"pip install -e '{Path(__file__).resolve().parent.parent}[imgaug]'" in result.output
    assert not (tmp_path / "out").exists()
    listing = invoke("ops", "imgaug")
    assert listing.exit_code == 0 and "imgaug is not installed here" in listing.output


def test_ops_imgaug_lists_each_working_augmenter_and_each_refusal(iaa):
    listing = invoke("ops", "imgaug").output
    assert listing.startswith("imgaug:")
    for name, example in dialect.WORKING.items():
        line = f"  {name}: " + yaml.safe_dump(example, default_flow_style=True).strip()
        assert line in listing
    assert "  Fog: fails on NumPy 2" in listing and "not installed" not in listing


@pytest.mark.slow
def test_a_run_records_augmenters_and_seed_and_does_not_depend_on_workers(tmp_path, dataset,
                                                                           iaa):
    recipe = write_recipe(tmp_path, """\
        input: in
        seed: 3
        variants:
          ia:
            copies: 2
            ops:
              - fliplr: {p: 0.5}
              - imgaug: [{Affine: {rotate: [-20, 20]}}, {AdditiveGaussianNoise: {scale: 10}}]
    """)
    results = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        result = invoke("run", str(recipe), "-o", str(out), "-w", workers,
                        "-q")
        assert result.exit_code == 0, result.output
        results[workers] = {p.name: p.read_bytes() for p in out.rglob("*_ia_*")}
        records = [json.loads(line) for line in
                   (out / MANIFEST_NAME).read_text("utf-8").splitlines()]
    assert len(results["1"]) == 8 and results["1"] == results["2"]
    steps = [step for record in records if "ops" in record for step in record["ops"]]
    recorded = [step["imgaug"] for step in steps if "imgaug" in step]
    assert len(recorded) == 8 and len({step["seed"] for step in recorded}) == 8
    assert recorded[0]["augmenters"] == [{"Affine": {"rotate": [-20, 20]}},
                                         {"AdditiveGaussianNoise": {"scale": 10}}]
