"""Recipe files: YAML -> validated, frozen, picklable dataclasses.

Validation collects every problem before any work starts, and each message
names its key path (``variants.mixed.ops[2].rotate.degrees: ...``) and, for a
misspelt name, the closest valid one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from . import formats, locations
from . import ops as catalog
from .errors import RecipeError, UsageError, excerpt
from .formats import AnnotationSpec
from .geometry import FILL_MODES
from .imagefiles import DEFAULT_MAX_PIXELS
from .ops.combinators import (
    OneOf,
    OpNode,
    Sequence,
    SomeOf,
    Sometimes,
    find_sweeps,
    replace_sweeps,
)
from .ops.elsewhere import elsewhere_hint
from .ops.multi import most_donors
from .params import BOOL, COMBINATOR_N, COMBINATOR_P, Problems, parse_value
from .pipeline import OutputTooLarge, sample_steps
from .profiles import ASPECT_FITS, PROFILES, Conform
from .targets.boxes import DEFAULT_MIN_VISIBILITY
from .targets.keypoints import flip_problem, kpt_shape_problem
from .targets.masks import MAX_FILL

OUTPUT_FORMATS = ("jpg", "png", "bmp", "tif", "webp", "gif")
_FORMAT_ALIASES = {"jpeg": "jpg", "tiff": "tif"}
DEFAULT_JPEG_QUALITY = 95
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")

# Limits that keep a hostile or mistyped recipe from exhausting memory or time.
MAX_OUTPUTS_PER_SOURCE = 10_000  # all variants, copies and sweep values together
MAX_TARGET_PER_CLASS = 100_000
MAX_NESTING = 32  # combinators inside combinators
MAX_YAML_NODES = 100_000  # values in the recipe once YAML aliases are expanded
MAX_RECIPE_BYTES = 1 << 20  # a recipe file; parsing YAML takes about 3 s per MB


# Bumped whenever the same recipe and seed make different output bytes, so that a
# resumed run never mixes outputs of two versions (see CHANGELOG.md).
# 3: duplicate outputs of a source are redrawn; profile aspect limit. 4: the keras op's
# brightness keeps a 16-bit image's range.
OUTPUT_VERSION = 4


@dataclass(frozen=True)
class Variant:
    name: str
    copies: int
    ops: tuple

    def expand(self):
        """Yield one op tree per output: every sweep combination, ``copies`` times each.

        Sweeps combine as a grid in the order they appear in the recipe; the
        output index runs over the grid first, then over copies.
        """
        sweeps = list(find_sweeps(self.ops))
        for combination in itertools.product(*(s.values for s in sweeps)):
            resolved = replace_sweeps(self.ops, iter(combination))
            for _ in range(self.copies):
                yield resolved

    @property
    def outputs_per_source(self) -> int:
        count = self.copies
        for sweep in find_sweeps(self.ops):
            count *= len(sweep.values)
        return count


@dataclass(frozen=True)
class Recipe:
    variants: tuple
    input: Path | str | None = None  # a folder, or an object-store URL (see augcli.stores)
    output: Path | str | None = None
    seed: int = 0
    include_original: bool = False
    format: str | None = None
    quality: int = DEFAULT_JPEG_QUALITY
    workers: int | None = None
    target_per_class: int | None = None
    profile: str | None = None  # upload target (see augcli.profiles) whose limits outputs meet
    annotations: AnnotationSpec | None = None  # bounding boxes that follow the pixels
    splits: tuple | None = None  # dataset splits to augment (augcli.datasets); None: train
    conform: Conform | None = None  # how outputs meet a profile's aspect limit; None: pad
    # ``hard_label: majority``: soft-labelled outputs are copied into their largest class's
    # folder too (copies of outputs: no output's bytes depend on it).
    hard_label: str | None = field(default=None, compare=False)
    # Non-secret options of an object store (``storage:``): they never decide bytes.
    storage: dict = field(default_factory=dict, compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def labels_left_out(self) -> bool:
        """``annotations: none``: the recipe says to augment the images without the label
        files beside them (a run refuses to drop labels it can see otherwise)."""
        return self.raw.get("annotations") == LABELS_LEFT_OUT

    @property
    def fingerprint(self) -> str:
        """Identifies everything that decides which outputs a run makes and their bytes:
        the input folder (as an absolute path) and the recipe, not the output folder or
        the worker count. (A source's content is checked per source, by its records.)"""
        text = json.dumps(self.settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def settings(self) -> dict:
        """What ``fingerprint`` identifies, as plain data: the manifest keeps it so that a
        refusal can say what changed."""
        decisive = {key: self.raw.get(key) for key in ("variants", "format", "quality",
                                                       "include_original")}
        decisive["seed"] = self.seed
        decisive["target_per_class"] = self.target_per_class
        decisive["profile"] = self.profile
        decisive["output_version"] = OUTPUT_VERSION
        if self.annotations is not None:  # only when set: older recipes keep their fingerprint
            decisive["annotations"] = self.raw.get("annotations")
        for key in ("splits", "conform"):  # likewise
            if self.raw.get(key) is not None:
                decisive[key] = self.raw[key]
        if self.input is not None:  # a URL as it is, a folder as an absolute path
            decisive["input"] = self.input if isinstance(self.input, str) \
                else os.path.abspath(self.input)
        return decisive

    def with_overrides(self, **overrides) -> Recipe:
        """Return a copy with the non-None overrides applied (CLI flags beat the file)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return replace(self, **given)


# --- loading -----------------------------------------------------------------

_TOP_KEYS = ("input", "output", "seed", "include_original", "format", "quality", "workers",
             "target_per_class", "profile", "annotations", "storage", "variants", "splits",
             "hard_label",
             "conform")
_VARIANT_KEYS = ("copies", "ops")
_COMBINATORS = tuple(kind.keyword for kind in (Sometimes, OneOf, SomeOf, Sequence))


def load_recipe(path) -> Recipe:
    """Read and validate a recipe file; relative paths resolve against its folder."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError([(f"{path}: {path.stat().st_size:,} bytes is over the limit of "
                               f"{MAX_RECIPE_BYTES:,} bytes for a recipe")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"{path}: no such recipe file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([f"{path}: cannot read the recipe ({exc})"]) from None
    data = parse_yaml(text, str(path))
    try:
        return parse_recipe(data, base_dir=path.parent)
    except RecursionError:
        raise RecipeError([f"{path}: nested too deeply"]) from None


def parse_yaml(text: str, name: str):
    """YAML text -> Python data (safe types only), with errors that name the file and line.

    Aliases are counted before any value is built: a recipe whose aliases expand to
    more than MAX_YAML_NODES values (a "billion laughs" bomb) or refer to themselves
    is refused.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, name)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise RecipeError([_yaml_problem(exc, name)]) from None
    except yaml.YAMLError as exc:
        raise RecipeError([f"{name}: not valid YAML ({excerpt(str(exc))})"]) from None
    except RecursionError:
        raise RecipeError([f"{name}: nested too deeply"]) from None
    except ValueError as exc:  # an integer of more than 4300 digits, a bad timestamp
        reason = "a number has too many digits" if "digits" in str(exc) else str(exc)[:80]
        raise RecipeError([f"{name}: not valid YAML ({reason})"]) from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.MarkedYAMLError, name: str) -> str:
    """``recipe.yaml:3:7: not valid YAML: mapping values are not allowed here``."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
    problem = exc.problem or exc.context or "cannot parse"
    context = ""
    if exc.context and exc.problem and exc.context_mark is not None:
        context = f" ({exc.context} at line {exc.context_mark.line + 1})"
    return f"{where}: not valid YAML: {problem}{context}"


def _check_expansion(root, name: str) -> None:
    """Refuse a YAML graph that expands to more than MAX_YAML_NODES values, or has a cycle.

    Each node's expanded size is computed once (aliases share nodes), without recursion.
    """
    sizes: dict = {}
    started: set = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _yaml_children(node)
        if children_done:
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_YAML_NODES:
                raise RecipeError([(f"{name}: the recipe holds more than "
                                    f"{MAX_YAML_NODES:,} values once its YAML aliases are "
                                    "expanded; refused (an alias bomb?)")])
            continue
        if key in sizes:
            continue
        if key in started:
            raise RecipeError([(f"{name}:{node.start_mark.line + 1}: a YAML alias refers "
                                "to a value that contains it; refused")])
        started.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children)


def _yaml_children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def parse_recipe(data, base_dir: Path | None = None) -> Recipe:
    """Validate recipe data (already parsed YAML); raise RecipeError listing every problem."""
    problems = Problems()
    if not isinstance(data, dict):
        raise RecipeError([f"expected a mapping of recipe keys at the top, got {excerpt(data)}"])
    _check_keys(data, _TOP_KEYS, "", problems)

    def resolve(key):
        value = data.get(key)
        if value is None:
            return None
        if locations.is_url(value):
            try:
                return locations.location(value)
            except UsageError as exc:  # credentials in the URL
                problems.add(key, str(exc))
                return None
        folder = read_path(value, key, problems, "a folder path")
        return folder if folder is None or folder.is_absolute() or base_dir is None \
            else base_dir / folder

    recipe = Recipe(
        input=resolve("input"),
        output=resolve("output"),
        seed=_read_int(data, "seed", 0, problems, low=0),
        include_original=_read_bool(data, "include_original", False, problems),
        format=_read_format(data, problems),
        quality=_read_int(data, "quality", DEFAULT_JPEG_QUALITY, problems, low=1, high=100),
        workers=_read_int(data, "workers", None, problems, low=1),
        target_per_class=_read_int(data, "target_per_class", None, problems, low=1,
                                   high=MAX_TARGET_PER_CLASS),
        profile=_read_profile(data, problems),
        hard_label=_read_hard_label(data, problems),
        annotations=_read_annotations(data.get("annotations"), base_dir, problems),
        storage=locations.read_options(data.get("storage"), problems),
        splits=_read_splits(data.get("splits"), problems),
        conform=_read_conform(data.get("conform"), problems),
        variants=_read_variants(data.get("variants"), problems),
        raw=data,
    )
    if recipe.annotations is not None:
        _refuse_ops_boxes_cannot_follow(recipe.variants, problems)
    if not problems.messages:  # sampling needs every parameter read
        _refuse_sizes_over_the_limit(recipe.variants, problems)
    if problems.messages:
        raise RecipeError(problems.messages)
    return recipe


def read_path(value, key: str, problems: Problems, what: str = "a path") -> Path | None:
    """A path from the recipe, ``~`` expanded; None (and a problem) when it cannot be one."""
    if not isinstance(value, str) or not value:
        problems.add(key, f"expected {what}, got {excerpt(value)}")
        return None
    if "\x00" in value:
        problems.add(key, f"expected {what}, got {excerpt(value)} (it has a NUL character)")
        return None
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user for a user that does not exist
        problems.add(key, f"cannot expand {excerpt(value)}: no such user's home folder")
        return None


def _check_keys(mapping: dict, allowed, path: str, problems: Problems) -> None:
    for key in mapping:
        if key not in allowed:
            where = f"{path}.{_key(key)}" if path else _key(key)
            problems.add(where, f"unknown key{_suggest(str(key), allowed)}; "
                                f"expected one of {', '.join(allowed)}")


def _key(key) -> str:
    """A recipe key as a key path shows it: itself, or an excerpt if it is long or odd."""
    return key if isinstance(key, str) and len(key) <= 40 and key.isprintable() \
        else excerpt(key)


def _suggest(name: str, candidates) -> str:
    close = catalog.closest_names(name, candidates)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _read_int(data, key, default, problems, low=None, high=None):
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(key, f"expected an integer, got {excerpt(value)}")
        return default
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high:,}]"
        problems.add(key, f"expected an integer {bounds}, got {excerpt(value)}")
        return default
    return value


def _read_bool(data, key, default, problems):
    value = data.get(key, default)
    if not isinstance(value, bool):
        problems.add(key, f"expected true or false, got {excerpt(value)}")
        return default
    return value


def _read_format(data, problems):
    value = data.get("format")
    if value is None:
        return None
    name = _format_name(value)
    if name not in OUTPUT_FORMATS:
        problems.add("format", f"expected one of {', '.join(OUTPUT_FORMATS)} (or leave it "
                               f"out to keep each source's format), got {excerpt(value)}")
        return None
    return name


def _format_name(value) -> str:
    """``format`` as augcli names it: ``TIFF``, ``.jpeg`` -> ``tif``, ``jpg``."""
    name = str(value).lower().lstrip(".")
    return _FORMAT_ALIASES.get(name, name)


HARD_LABELS = ("majority",)


def _read_hard_label(data, problems):
    value = data.get("hard_label")
    if value is not None and value not in HARD_LABELS:
        problems.add("hard_label", f"expected {' or '.join(HARD_LABELS)} (each soft-labelled "
                                   f"output copied into its largest class's folder), got "
                                   f"{excerpt(value)}")
        return None
    return value


def _read_profile(data, problems):
    value = data.get("profile")
    if value is None:
        return None
    if not isinstance(value, str) or value not in PROFILES:
        problems.add("profile", f"unknown profile {excerpt(value)}"
                                f"{_suggest(str(value), PROFILES)}; "
                                f"expected one of {', '.join(sorted(PROFILES))}")
        return None
    fmt = data.get("format")
    conflict = profile_format_conflict(value, None if fmt is None else _format_name(fmt))
    if conflict:
        problems.add("format", conflict)
    return value


def profile_format_conflict(profile: str, fmt: str | None) -> str | None:
    """Why ``format`` cannot be written for ``profile``, or None if it can."""
    accepted = PROFILES[profile].formats
    if fmt is None or fmt not in OUTPUT_FORMATS or fmt in accepted:
        return None
    return f"{fmt} is not accepted by profile {profile} (it takes {', '.join(sorted(accepted))})"


def _read_splits(value, problems: Problems):
    """``splits: [train, ...]``: the dataset splits to augment (others are copied)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or \
            not all(isinstance(item, str) and item for item in value):
        problems.add("splits", "expected a list of split names like [train], got "
                               f"{excerpt(value)}")
        return None
    return tuple(dict.fromkeys(value))


_CONFORM_KEYS = ("aspect", "fill", "cval")


def _read_conform(value, problems: Problems):
    """``conform: {aspect: pad|crop, fill, cval}``: how a profile's aspect limit is met."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add("conform", f"expected a mapping like {{aspect: pad, fill: constant}}, "
                                f"got {excerpt(value)}")
        return None
    _check_keys(value, _CONFORM_KEYS, "conform", problems)
    default = Conform()
    aspect = value.get("aspect", default.aspect)
    if aspect not in ASPECT_FITS:
        problems.add("conform.aspect", f"expected {' or '.join(ASPECT_FITS)}, got "
                                       f"{excerpt(aspect)}")
        aspect = default.aspect
    fill = value.get("fill", default.fill)
    if fill not in FILL_MODES:
        problems.add("conform.fill", f"expected one of {', '.join(FILL_MODES)}, got "
                                     f"{excerpt(fill)}")
        fill = default.fill
    cval = value.get("cval", default.cval)
    if isinstance(cval, bool) or not isinstance(cval, (int, float)) or not 0 <= cval <= 255:
        problems.add("conform.cval", f"expected a number in [0, 255], got {excerpt(cval)}")
        cval = default.cval
    return Conform(aspect, fill, float(cval))


LABELS_LEFT_OUT = "none"  # ``annotations: none``
_ANNOTATION_KEYS = ("format", "path", "min_visibility", "task", "kpt_shape", "flip_idx",
                    "suffix", "mask_fill")
_TASKS = {"yolo": ("detect", "segment", "obb", "pose")}  # Ultralytics' tasks of its lines


def _read_annotations(value, base_dir: Path | None, problems: Problems):
    """``annotations: {format, path, min_visibility, task}`` -> AnnotationSpec (None when
    absent)."""
    if value is None or value == LABELS_LEFT_OUT:
        return None
    if not isinstance(value, dict):
        problems.add("annotations", "expected a mapping like {format: yolo}, or "
                                    f"{LABELS_LEFT_OUT} (leave the input's labels out), got "
                                    f"{excerpt(value)}")
        return None
    _check_keys(value, _ANNOTATION_KEYS, "annotations", problems)
    fmt = value.get("format")
    names = formats.names()
    if not isinstance(fmt, str) or fmt not in names:
        problems.add("annotations.format", f"expected one of {', '.join(names)}, got "
                                           f"{excerpt(fmt)}"
                                           f"{_suggest(str(fmt), names) if fmt else ''}")
        fmt = None
    path = value.get("path")
    if locations.is_url(path):  # on an object store
        path = locations.location(path)
    elif path is not None:
        path = read_path(path, "annotations.path", problems)
        path = path if path is None or path.is_absolute() or base_dir is None \
            else base_dir / path
    visibility = value.get("min_visibility", DEFAULT_MIN_VISIBILITY)
    if isinstance(visibility, bool) or not isinstance(visibility, (int, float)) \
            or not 0 <= visibility <= 1:
        problems.add("annotations.min_visibility", f"expected a number in [0, 1] (the share of "
                                                   f"a box that must stay visible), got "
                                                   f"{excerpt(visibility)}")
        visibility = DEFAULT_MIN_VISIBILITY
    task = value.get("task", "")
    if task != "" and task not in _TASKS.get(str(fmt), ()):
        known = _TASKS.get(str(fmt), ())
        problems.add("annotations.task", f"expected one of {', '.join(known)}, got "
                                         f"{excerpt(task)}" if known else
                     f"only yolo annotations have a task, not {excerpt(fmt)}")
        task = ""
    task = "" if task in ("detect", "segment") else task  # their lines say what they are
    kpt_shape = value.get("kpt_shape", ())
    problem = kpt_shape_problem(kpt_shape) if "kpt_shape" in value else None
    if problem or (kpt_shape and task != "pose"):
        problems.add("annotations.kpt_shape", problem or "only with task: pose")
        kpt_shape = ()
    flip_idx = value.get("flip_idx")
    count = kpt_shape[0] if kpt_shape else len(flip_idx) if isinstance(flip_idx, list) else 0
    problem = flip_problem(flip_idx, count) if flip_idx is not None else None
    if problem:
        problems.add("annotations.flip_idx", problem)
        flip_idx = None
    suffix, mask_fill = _read_mask_keys(value, fmt, problems)
    return AnnotationSpec(fmt, path, float(visibility), task, tuple(kpt_shape),
                          None if flip_idx is None else tuple(flip_idx), suffix,
                          mask_fill) if fmt else None


def _read_mask_keys(value: dict, fmt, problems: Problems) -> tuple:
    """(suffix, mask_fill) of mask images: how a label map's name ends (a PNG, lossless)
    and the id where the image is filled; only ``format: masks`` has them."""
    suffix, mask_fill = value.get("suffix", ""), value.get("mask_fill", 0)
    for key in ("suffix", "mask_fill"):
        if key in value and fmt != "masks":
            problems.add(f"annotations.{key}", f"only mask images (format: masks) have a "
                                               f"{key}, not {excerpt(fmt)}")
    if not isinstance(suffix, str) or (suffix and (not suffix.lower().endswith(".png")
                                                   or "/" in suffix)):
        problems.add("annotations.suffix", f"expected the end of a mask's name, a PNG like "
                                           f"_mask.png, got {excerpt(suffix)}")
        suffix = ""
    if isinstance(mask_fill, bool) or not isinstance(mask_fill, int) \
            or not 0 <= mask_fill <= MAX_FILL:
        problems.add("annotations.mask_fill", f"expected a class id in [0, {MAX_FILL}], got "
                                              f"{excerpt(mask_fill)}")
        mask_fill = 0
    return suffix, mask_fill


def refuse_mirrors(recipe: Recipe, because: str) -> None:
    """Keypoints that cannot say which is left and which right (no ``flip_idx``) refuse the
    ops that mirror the image, as Ultralytics switches its flips off for them."""
    problems = Problems()
    for variant in recipe.variants:
        for path, node in _op_nodes(variant.ops, f"variants.{variant.name}.ops"):
            if catalog.CATALOG[node.op].mirrors(node.args):
                problems.add(f"{path}.{node.op}", f"mirrors the image, but {because}; give "
                                                  "flip_idx (which keypoint is the mirror of "
                                                  "which) or leave the flip out")
    if problems.messages:
        raise RecipeError(problems.messages)


def _refuse_ops_boxes_cannot_follow(variants, problems: Problems, because: str = "") -> None:
    """With annotations, ops that move pixels in a way boxes cannot follow are errors."""
    for variant in variants:
        for path, node in _op_nodes(variant.ops, f"variants.{variant.name}.ops"):
            reason = catalog.CATALOG[node.op].refuses_boxes
            if reason:
                problems.add(f"{path}.{node.op}", f"not with annotations: {reason}"
                                                  + (f" ({because})" if because else ""))


def refuse_ops_boxes_cannot_follow(recipe: Recipe, because: str) -> None:
    """The same refusal for annotations the input implies (a dataset's labels) rather
    than the recipe's ``annotations:``; ``because`` says where they come from."""
    problems = Problems()
    _refuse_ops_boxes_cannot_follow(recipe.variants, problems, because)
    if problems.messages:
        raise RecipeError(problems.messages)


# Source sizes (height, width) a variant is sampled at to find sizes the recipe fixes: the
# smallest image, and the widest and tallest an input may be.
_SIZE_PROBES = ((1, 1), (1, DEFAULT_MAX_PIXELS), (DEFAULT_MAX_PIXELS, 1))
_SIZE_DRAWS = 16


def _refuse_sizes_over_the_limit(variants, problems: Problems) -> None:
    """A size the recipe fixes over the pixel limit (``letterbox: {width: 100000, ...}``)
    would fail every output at run time: an error now, found by sampling each variant on
    the smallest, widest and tallest inputs (no pixels are made). A size only some draws
    put over the limit is ``variety``'s warning."""
    for variant in variants:
        trees = itertools.islice(variant.expand(), 0, None, variant.copies)
        message = next(filter(None, (_too_large_for_any_input(tree) for tree in trees)), None)
        if message:
            problems.add(f"variants.{variant.name}.ops", f"{message}, whatever the input's "
                                                         "size: the outputs would fail")


def _too_large_for_any_input(tree) -> str | None:
    """The pixel-limit message when every draw fails on every probe size, else None."""
    message = None
    donors = ("",) * most_donors(tree)  # names only: no pixels are made
    for seed in np.random.default_rng(0).integers(2**63, size=_SIZE_DRAWS):
        for shape in _SIZE_PROBES:
            try:
                sample_steps(tree, np.random.default_rng(seed), shape, donors=donors)
            except OutputTooLarge as exc:
                message = message or str(exc)
            else:
                return None
    return message


def _op_nodes(nodes, path: str):
    """(key path, OpNode) for every op in a tree, paths as the parser reports them."""
    for i, node in enumerate(nodes):
        where = f"{path}[{i}]"
        if isinstance(node, OpNode):
            yield where, node
            continue
        inner = f"{where}.{node.keyword}"
        if isinstance(node, Sometimes):
            yield from _op_nodes(node.then, f"{inner}.ops")
            yield from _op_nodes(node.otherwise, f"{inner}.else")
        else:
            yield from _op_nodes(node.ops, f"{inner}.ops")


def _read_variants(value, problems: Problems) -> tuple:
    if not isinstance(value, dict) or not value:
        problems.add("variants", "expected a mapping of variant names to {copies, ops}, "
                                 f"got {excerpt(value)}")
        return ()
    variants = []
    for name, body in value.items():
        variant = _read_variant(name, body, problems)
        if variant is not None:
            variants.append(variant)
    total = sum(variant.outputs_per_source for variant in variants)
    if total > MAX_OUTPUTS_PER_SOURCE:
        problems.add("variants", f"{total:,} outputs per source image is over the limit of "
                                 f"{MAX_OUTPUTS_PER_SOURCE:,} (copies times sweep values, "
                                 "over all variants)")
    return tuple(variants)


def _read_variant(name, body, problems: Problems):
    path = f"variants.{_key(name)}"
    # a bad name is reported with every problem inside the variant, all in one pass
    bad_name = not isinstance(name, str) or not name or not set(name) <= NAME_CHARS
    if bad_name:
        problems.add(path, "a variant name becomes part of file names: use letters, digits "
                           f"and '-' only{_name_hint(name)}")
    if not isinstance(body, dict):
        problems.add(path, "expected a mapping with 'ops' (and optional 'copies'), got "
                           f"{excerpt(body)}")
        return None
    _check_keys(body, _VARIANT_KEYS, path, problems)
    copies = body.get("copies", 1)
    if isinstance(copies, bool) or not isinstance(copies, int) or not \
            1 <= copies <= MAX_OUTPUTS_PER_SOURCE:
        problems.add(f"{path}.copies", f"expected an integer in [1, "
                                       f"{MAX_OUTPUTS_PER_SOURCE:,}], got {excerpt(copies)}")
        copies = 1
    ops_value = body.get("ops")
    if not isinstance(ops_value, list) or not ops_value:
        problems.add(f"{path}.ops", f"expected a non-empty list of ops, got {excerpt(ops_value)}")
        return None
    ops = _read_op_list(ops_value, f"{path}.ops", problems, depth=0)
    return None if bad_name else Variant(name, copies, ops)


def _name_hint(name) -> str:
    """`` (e.g. 'my-rotate')``: the name with what a file name cannot take replaced."""
    fixed = "".join(c if c in NAME_CHARS else "-" for c in str(name)).strip("-")
    return f" (e.g. '{fixed}')" if fixed else ""


def _read_op_list(items, path: str, problems: Problems, depth: int) -> tuple:
    if not isinstance(items, list) or not items:
        problems.add(path, f"expected a non-empty list of ops, got {excerpt(items)}")
        return ()
    if depth > MAX_NESTING:
        problems.add(path, f"combinators nested more than {MAX_NESTING} deep")
        return ()
    nodes = (_read_op(item, f"{path}[{i}]", problems, depth) for i, item in enumerate(items))
    return tuple(node for node in nodes if node is not None)


def _read_op(item, path: str, problems: Problems, depth: int):
    """One list entry: ``name``, ``{name: {params}}`` or ``{combinator: ...}``."""
    if isinstance(item, str):
        name, body = item, None
    elif isinstance(item, dict) and len(item) == 1:
        (name, body), = item.items()
    else:
        problems.add(path, f"expected one op as 'name' or {{name: {{params}}}}, got "
                           f"{excerpt(item)}")
        return None
    name = _key(name)
    if name in _COMBINATORS:
        return _read_combinator(name, body, f"{path}.{name}", problems, depth + 1)
    op = catalog.lookup(name)
    if op is None:
        elsewhere = elsewhere_hint(name)
        hint = f" ({elsewhere})" if elsewhere else \
            _suggest(name, [*catalog.all_names(), *_COMBINATORS])
        problems.add(f"{path}", f"unknown op '{name}'{hint}; run 'augcli ops' for the list")
        return None
    if op.parse is not None:  # an op with its own syntax (the imgaug dialect)
        args = op.parse(body, f"{path}.{name}", problems)
        return None if args is None else OpNode(op.name, args)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        main = main_param(op)
        if main is None:
            problems.add(f"{path}.{name}", _bare_value_hint(name, op, body))
            return None
        body = {main: body}  # ``rotate: 10`` is ``rotate: {degrees: 10}``
    for key in sorted(body.keys() & op.refused.keys()):
        problems.add(f"{path}.{name}.{key}", op.refused[key])
    known = [p.name for p in op.params]
    _check_keys({k: v for k, v in body.items() if k not in op.refused}, known,
                f"{path}.{name}", problems)
    args = {}
    for param in op.params:
        value = body.get(param.name, param.default)
        dist = parse_value(param, value, f"{path}.{name}.{param.name}", problems)
        if dist is not None:
            args[param.name] = dist
    return OpNode(op.name, args)




def main_param(op) -> str | None:
    """The parameter a bare value sets (``rotate: 10``: degrees): the op's only one that is
    drawn per output and is not a fill or a flag; None when it has several or none."""
    drawn = [p.name for p in op.params
             if p.random and p.name not in ("fill", "cval") and p.kind != BOOL]
    return drawn[0] if len(drawn) == 1 else None


def _bare_value_hint(name: str, op, body) -> str:
    """Why ``name: body`` cannot be read, and what to write instead."""
    got = f"expected a mapping of parameters, got {excerpt(body)}"
    if not op.params:
        return f"{got}; write just '- {name}' (it has no parameters)"
    first = op.params[0].name
    listed = ", ".join(p.name for p in op.params)
    return (f"{got}; {name} has several parameters, so name one: e.g. "
            f"{{{name}: {{{first}: {excerpt(body)}}}}} (its parameters: {listed}; "
            f"'augcli ops {name}' explains them)")


def _read_combinator(name: str, body, path: str, problems: Problems, depth: int):
    if isinstance(body, list) and name in ("one_of", "sequence"):
        body = {"ops": body}
    if not isinstance(body, dict):
        problems.add(path, f"expected a mapping with 'ops', got {excerpt(body)}")
        return None
    allowed = {
        "sometimes": ("p", "ops", "else"),
        "one_of": ("ops",),
        "some_of": ("n", "ops", "random_order"),
        "sequence": ("ops", "random_order"),
    }[name]
    _check_keys(body, allowed, path, problems)
    children = _read_op_list(body.get("ops"), f"{path}.ops", problems, depth)
    random_order = body.get("random_order", False)
    if not isinstance(random_order, bool):
        problems.add(f"{path}.random_order", f"expected true or false, got {excerpt(random_order)}")
        random_order = False
    if name == "sometimes":
        p = parse_value(COMBINATOR_P, body.get("p", 0.5), f"{path}.p", problems)
        otherwise = _read_op_list(body["else"], f"{path}.else", problems, depth) \
            if "else" in body else ()
        return Sometimes(p, children, otherwise)
    if name == "one_of":
        return OneOf(children)
    if name == "some_of":
        n = parse_value(COMBINATOR_N, body.get("n", 1), f"{path}.n", problems)
        return SomeOf(n, children, random_order)
    return Sequence(children, random_order)
