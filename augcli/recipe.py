"""Recipe files: YAML -> validated, frozen, picklable dataclasses.

Validation collects every problem before any work starts, and each message
names its key path (``variants.mixed.ops[2].rotate.degrees: ...``) and, for a
misspelt name, the closest valid one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from . import ops as catalog
from . import storage
from .annotations import DEFAULT_MIN_VISIBILITY, FORMATS, AnnotationSpec
from .errors import RecipeError
from .params import INT, PROBABILITY, Const, Param, Problems, Sweep, parse_value

OUTPUT_FORMATS = ("jpg", "png", "bmp", "tif", "webp", "gif")
_FORMAT_ALIASES = {"jpeg": "jpg", "tiff": "tif"}
DEFAULT_JPEG_QUALITY = 95
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


# Bumped whenever the same recipe and seed make different output bytes, so that a
# resumed run never mixes outputs of two versions (see CHANGELOG.md).
OUTPUT_VERSION = 2


@dataclass(frozen=True)
class OpNode:
    """One op with its parameter distributions (``args``: name -> distribution)."""

    op: str
    args: dict


@dataclass(frozen=True)
class Sometimes:
    p: object
    then: tuple
    otherwise: tuple = ()


@dataclass(frozen=True)
class OneOf:
    ops: tuple


@dataclass(frozen=True)
class SomeOf:
    n: object
    ops: tuple
    random_order: bool = False


@dataclass(frozen=True)
class Sequence:
    ops: tuple
    random_order: bool = False


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
        sweeps = list(_find_sweeps(self.ops))
        for combination in itertools.product(*(s.values for s in sweeps)):
            resolved = _replace_sweeps(self.ops, iter(combination))
            for _ in range(self.copies):
                yield resolved

    @property
    def outputs_per_source(self) -> int:
        count = self.copies
        for sweep in _find_sweeps(self.ops):
            count *= len(sweep.values)
        return count


@dataclass(frozen=True)
class Recipe:
    variants: tuple
    input: Path | str | None = None  # a folder, or an object-store URL (see augcli.storage)
    output: Path | str | None = None
    seed: int = 0
    include_original: bool = False
    format: str | None = None
    quality: int = DEFAULT_JPEG_QUALITY
    workers: int | None = None
    target_per_class: int | None = None
    profile: str | None = None  # upload target (see augcli.profiles) whose limits outputs meet
    annotations: AnnotationSpec | None = None  # bounding boxes that follow the pixels
    # Non-secret options of an object store (``storage:``): they never decide bytes.
    storage: dict = field(default_factory=dict, compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """Identifies everything that decides output bytes (not paths or worker count)."""
        decisive = {key: self.raw.get(key) for key in ("variants", "format", "quality",
                                                       "include_original")}
        decisive["seed"] = self.seed
        decisive["target_per_class"] = self.target_per_class
        decisive["profile"] = self.profile
        decisive["output_version"] = OUTPUT_VERSION
        if self.annotations is not None:  # only when set: older recipes keep their fingerprint
            decisive["annotations"] = self.raw.get("annotations")
        text = json.dumps(decisive, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(self, **overrides) -> Recipe:
        """Return a copy with the non-None overrides applied (CLI flags beat the file)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return replace(self, **given)


# --- loading -----------------------------------------------------------------

_TOP_KEYS = ("input", "output", "seed", "include_original", "format", "quality", "workers",
             "target_per_class", "profile", "annotations", "storage", "variants")
_VARIANT_KEYS = ("copies", "ops")
_COMBINATORS = ("sometimes", "one_of", "some_of", "sequence")


def load_recipe(path) -> Recipe:
    """Read and validate a recipe file; relative paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"{path}: no such recipe file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([f"{path}: cannot read the recipe ({exc})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError([f"{path}: not valid YAML ({exc})"]) from None
    return parse_recipe(data, base_dir=path.parent)


def parse_recipe(data, base_dir: Path | None = None) -> Recipe:
    """Validate recipe data (already parsed YAML); raise RecipeError listing every problem."""
    problems = Problems()
    if not isinstance(data, dict):
        raise RecipeError([f"expected a mapping of recipe keys at the top, got {data!r}"])
    _check_keys(data, _TOP_KEYS, "", problems)

    def resolve(key):
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            problems.add(key, f"expected a folder path or a storage URL, got {value!r}")
            return None
        return storage.location(value, base_dir)

    recipe = Recipe(
        input=resolve("input"),
        output=resolve("output"),
        seed=_read_int(data, "seed", 0, problems, low=0),
        include_original=_read_bool(data, "include_original", False, problems),
        format=_read_format(data, problems),
        quality=_read_int(data, "quality", DEFAULT_JPEG_QUALITY, problems, low=1, high=100),
        workers=_read_int(data, "workers", None, problems, low=1),
        target_per_class=_read_int(data, "target_per_class", None, problems, low=1),
        profile=_read_profile(data, problems),
        annotations=_read_annotations(data.get("annotations"), base_dir, problems),
        storage=storage.read_options(data.get("storage"), problems),
        variants=_read_variants(data.get("variants"), problems),
        raw=data,
    )
    if recipe.annotations is not None:
        _refuse_ops_boxes_cannot_follow(recipe.variants, problems)
    if problems.messages:
        raise RecipeError(problems.messages)
    return recipe


def _check_keys(mapping: dict, allowed, path: str, problems: Problems) -> None:
    for key in mapping:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            problems.add(where, f"unknown key{_suggest(str(key), allowed)}; "
                                f"expected one of {', '.join(allowed)}")


def _suggest(name: str, candidates) -> str:
    close = catalog.closest_names(name, candidates)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _read_int(data, key, default, problems, low=None, high=None):
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(key, f"expected an integer, got {value!r}")
        return default
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        problems.add(key, f"expected an integer {bounds}, got {value}")
        return default
    return value


def _read_bool(data, key, default, problems):
    value = data.get(key, default)
    if not isinstance(value, bool):
        problems.add(key, f"expected true or false, got {value!r}")
        return default
    return value


def _read_format(data, problems):
    value = data.get("format")
    if value is None:
        return None
    name = _FORMAT_ALIASES.get(str(value).lower().lstrip("."), str(value).lower().lstrip("."))
    if name not in OUTPUT_FORMATS:
        problems.add("format", f"expected one of {', '.join(OUTPUT_FORMATS)} "
                               f"(or leave it out to keep each source's format), got {value!r}")
        return None
    return name


def _read_profile(data, problems):
    from .profiles import PROFILES

    value = data.get("profile")
    if value is None:
        return None
    if value not in PROFILES:
        problems.add("profile", f"unknown profile {value!r}{_suggest(str(value), PROFILES)}; "
                                f"expected one of {', '.join(sorted(PROFILES))}")
        return None
    fmt = _FORMAT_ALIASES.get(str(data.get("format")), data.get("format"))
    conflict = profile_format_conflict(value, fmt)
    if conflict:
        problems.add("format", conflict)
    return value


def profile_format_conflict(profile: str, fmt: str | None) -> str | None:
    """Why ``format`` cannot be written for ``profile``, or None if it can."""
    from .profiles import PROFILES

    accepted = PROFILES[profile].formats
    if fmt is None or fmt not in OUTPUT_FORMATS or fmt in accepted:
        return None
    return f"{fmt} is not accepted by profile {profile} (it takes {', '.join(sorted(accepted))})"


_ANNOTATION_KEYS = ("format", "path", "min_visibility")


def _read_annotations(value, base_dir: Path | None, problems: Problems):
    """``annotations: {format, path, min_visibility}`` -> AnnotationSpec (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add("annotations", f"expected a mapping like {{format: yolo}}, got {value!r}")
        return None
    _check_keys(value, _ANNOTATION_KEYS, "annotations", problems)
    fmt = value.get("format")
    if fmt not in FORMATS:
        problems.add("annotations.format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}"
                                           f"{_suggest(str(fmt), FORMATS) if fmt else ''}")
        fmt = None
    path = value.get("path")
    if path is not None and (not isinstance(path, str) or not path):
        problems.add("annotations.path", f"expected a path, got {path!r}")
        path = None
    elif path is not None:
        path = Path(path).expanduser()
        path = path if path.is_absolute() or base_dir is None else base_dir / path
    elif fmt == "coco":
        problems.add("annotations.path", "required for coco: the JSON file that lists every "
                                         "image's boxes")
    visibility = value.get("min_visibility", DEFAULT_MIN_VISIBILITY)
    if isinstance(visibility, bool) or not isinstance(visibility, (int, float)) \
            or not 0 <= visibility <= 1:
        problems.add("annotations.min_visibility", f"expected a number in [0, 1] (the share of "
                                                   f"a box that must stay visible), got "
                                                   f"{visibility!r}")
        visibility = DEFAULT_MIN_VISIBILITY
    return AnnotationSpec(fmt, path, float(visibility)) if fmt else None


_COMBINATOR_NAMES = {"Sometimes": "sometimes", "OneOf": "one_of", "SomeOf": "some_of",
                     "Sequence": "sequence"}


def _refuse_ops_boxes_cannot_follow(variants, problems: Problems) -> None:
    """With annotations, ops that move pixels in a way boxes cannot follow are errors."""
    for variant in variants:
        for path, node in _op_nodes(variant.ops, f"variants.{variant.name}.ops"):
            reason = catalog.CATALOG[node.op].refuses_boxes
            if reason:
                problems.add(f"{path}.{node.op}", f"not with annotations: {reason}")


def _op_nodes(nodes, path: str):
    """(key path, OpNode) for every op in a tree, paths as the parser reports them."""
    for i, node in enumerate(nodes):
        where = f"{path}[{i}]"
        if isinstance(node, OpNode):
            yield where, node
            continue
        inner = f"{where}.{_COMBINATOR_NAMES[type(node).__name__]}"
        if isinstance(node, Sometimes):
            yield from _op_nodes(node.then, f"{inner}.ops")
            yield from _op_nodes(node.otherwise, f"{inner}.else")
        else:
            yield from _op_nodes(node.ops, f"{inner}.ops")


def _read_variants(value, problems: Problems) -> tuple:
    if not isinstance(value, dict) or not value:
        problems.add("variants", "expected a mapping of variant names to {copies, ops}, "
                                 f"got {value!r}")
        return ()
    variants = []
    for name, body in value.items():
        path = f"variants.{name}"
        if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS:
            problems.add(path, "a variant name becomes part of file names: use letters, digits "
                               "and '-' only")
            continue
        if not isinstance(body, dict):
            problems.add(path, f"expected a mapping with 'ops' (and optional 'copies'), got {body!r}")
            continue
        _check_keys(body, _VARIANT_KEYS, path, problems)
        copies = body.get("copies", 1)
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            problems.add(f"{path}.copies", f"expected an integer >= 1, got {copies!r}")
            copies = 1
        ops_value = body.get("ops")
        if not isinstance(ops_value, list) or not ops_value:
            problems.add(f"{path}.ops", f"expected a non-empty list of ops, got {ops_value!r}")
            continue
        variants.append(Variant(name, copies, _read_op_list(ops_value, f"{path}.ops", problems)))
    return tuple(variants)


def _read_op_list(items, path: str, problems: Problems) -> tuple:
    if not isinstance(items, list) or not items:
        problems.add(path, f"expected a non-empty list of ops, got {items!r}")
        return ()
    nodes = (_read_op(item, f"{path}[{i}]", problems) for i, item in enumerate(items))
    return tuple(node for node in nodes if node is not None)


def _read_op(item, path: str, problems: Problems):
    """One list entry: ``name``, ``{name: {params}}`` or ``{combinator: ...}``."""
    if isinstance(item, str):
        name, body = item, None
    elif isinstance(item, dict) and len(item) == 1:
        (name, body), = item.items()
    else:
        problems.add(path, f"expected one op as 'name' or {{name: {{params}}}}, got {item!r}")
        return None
    name = str(name)
    if name in _COMBINATORS:
        return _read_combinator(name, body, f"{path}.{name}", problems)
    op = catalog.lookup(name)
    if op is None:
        problems.add(f"{path}", f"unknown op '{name}'"
                                f"{_suggest(name, [*catalog.all_names(), *_COMBINATORS])}; "
                                "run 'augcli ops' for the list")
        return None
    if op.parse is not None:  # an op with its own syntax (the imgaug dialect)
        args = op.parse(body, f"{path}.{name}", problems)
        return None if args is None else OpNode(op.name, args)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        problems.add(f"{path}.{name}", f"expected a mapping of parameters, got {body!r}")
        return None
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


_P_PARAM = Param("p", PROBABILITY, 0.5, "Probability.", low=0, high=1)
_N_PARAM = Param("n", INT, 1, "How many.", low=0)


def _read_combinator(name: str, body, path: str, problems: Problems):
    if isinstance(body, list) and name in ("one_of", "sequence"):
        body = {"ops": body}
    if not isinstance(body, dict):
        problems.add(path, f"expected a mapping with 'ops', got {body!r}")
        return None
    allowed = {
        "sometimes": ("p", "ops", "else"),
        "one_of": ("ops",),
        "some_of": ("n", "ops", "random_order"),
        "sequence": ("ops", "random_order"),
    }[name]
    _check_keys(body, allowed, path, problems)
    children = _read_op_list(body.get("ops"), f"{path}.ops", problems)
    random_order = body.get("random_order", False)
    if not isinstance(random_order, bool):
        problems.add(f"{path}.random_order", f"expected true or false, got {random_order!r}")
        random_order = False
    if name == "sometimes":
        p = parse_value(_P_PARAM, body.get("p", 0.5), f"{path}.p", problems)
        otherwise = _read_op_list(body["else"], f"{path}.else", problems) if "else" in body else ()
        return Sometimes(p, children, otherwise)
    if name == "one_of":
        return OneOf(children)
    if name == "some_of":
        n = parse_value(_N_PARAM, body.get("n", 1), f"{path}.n", problems)
        return SomeOf(n, children, random_order)
    return Sequence(children, random_order)


# --- sweeps --------------------------------------------------------------------

def _children(node):
    if isinstance(node, Sometimes):
        return (*node.then, *node.otherwise)
    if isinstance(node, (OneOf, SomeOf, Sequence)):
        return node.ops
    return ()


def _find_sweeps(nodes):
    for node in nodes:
        if isinstance(node, OpNode):
            yield from (dist for dist in node.args.values() if isinstance(dist, Sweep))
        for dist in (getattr(node, "p", None), getattr(node, "n", None)):
            if isinstance(dist, Sweep):
                yield dist
        yield from _find_sweeps(_children(node))


def _resolve(dist, chosen):
    return Const(next(chosen)) if isinstance(dist, Sweep) else dist


def _replace_sweeps(nodes, chosen) -> tuple:
    """Copy of the tree with each sweep (in ``_find_sweeps`` order) set to its chosen value."""
    result = []
    for node in nodes:
        if isinstance(node, OpNode):
            node = OpNode(node.op, {k: _resolve(v, chosen) for k, v in node.args.items()})
        elif isinstance(node, Sometimes):
            p = _resolve(node.p, chosen)
            node = Sometimes(p, _replace_sweeps(node.then, chosen),
                             _replace_sweeps(node.otherwise, chosen))
        elif isinstance(node, SomeOf):
            n = _resolve(node.n, chosen)
            node = SomeOf(n, _replace_sweeps(node.ops, chosen), node.random_order)
        elif isinstance(node, OneOf):
            node = OneOf(_replace_sweeps(node.ops, chosen))
        elif isinstance(node, Sequence):
            node = Sequence(_replace_sweeps(node.ops, chosen), node.random_order)
        result.append(node)
    return tuple(result)
