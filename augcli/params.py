"""Typed op parameters: how a recipe value is read, validated and sampled.

A recipe value becomes one of four small, picklable distributions:

* a number                 -> ``Const``   (or ``Uniform(-d, d)`` for symmetric params)
* ``[lo, hi]``             -> ``Uniform`` (integers for ``int`` params)
* ``{choice: [a, b, ...]}`` -> ``Choice``  (one picked at random per output)
* ``{sweep: [a, b, ...]}``  -> ``Sweep``   (one output per value, in order;
  the planner replaces it by a ``Const`` before sampling)

Parsing never raises on the first problem: it appends messages that name the
key path, so a recipe with five mistakes reports five lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import excerpt


class Distribution(Protocol):
    """What the four distributions below have in common: one value per call."""

    def sample(self, rng) -> Any: ...


@dataclass(frozen=True)
class Const:
    value: Any

    def sample(self, rng):
        return self.value


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    integer: bool = False

    def sample(self, rng):
        if self.integer:
            return int(rng.integers(self.low, self.high + 1))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class Choice:
    values: tuple

    def sample(self, rng):
        return self.values[int(rng.integers(len(self.values)))]


@dataclass(frozen=True)
class Sweep:
    values: tuple

    def sample(self, rng):  # pragma: no cover - the planner resolves sweeps first
        raise RuntimeError("a sweep must be resolved to a constant before sampling")


NUMBER = "number"
INT = "int"
PROBABILITY = "probability"
BOOL = "bool"
ENUM = "enum"
NUMBER_OR_LIST = "number or list"


@dataclass(frozen=True)
class Param:
    """One parameter of an op: its type, allowed range, default and docs.

    ``symmetric``: a bare number ``d`` means the range ``[-d, d]`` (rotation
    degrees, shift fractions): the shorthand Keras and torchvision users know.
    ``magnitude``: number-or-list params whose bare number ``d`` the op reads as
    ``[-d, d]`` itself (``hue``): a bare number must be >= 0.
    """

    name: str
    kind: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    symmetric: bool = False
    choices: tuple = ()
    lengths: tuple = ()  # number-or-list params: the list lengths allowed (empty: any)
    ordered: bool = False  # number-or-list params: a two-number list is a [lo, hi] range
    random: bool = True  # False: only a fixed value makes sense (fill mode, flags)
    magnitude: bool = False  # number-or-list params: a bare number d means [-d, d]
    keep_int: bool = False  # number-or-list params: a bare integer stays an int (Keras' shifts)

    def describe_type(self) -> str:
        if self.kind == ENUM:
            return "|".join(self.choices)
        if self.kind == BOOL:
            return "true|false"
        if self.kind == NUMBER_OR_LIST:
            counts = " or ".join(str(n) for n in self.lengths) if self.lengths else "any"
            bounds = ""
            if self.low is not None or self.high is not None:
                low = "-inf" if self.low is None else _fmt(self.low)
                high = "inf" if self.high is None else _fmt(self.high)
                bounds = f", each in [{low}, {high}]"
            return f"number or list of {counts} numbers{bounds}"
        bounds = ""
        if self.low is not None or self.high is not None:
            low = "-inf" if self.low is None else _fmt(self.low)
            high = "inf" if self.high is None else _fmt(self.high)
            bounds = f" in [{low}, {high}]"
        noun = {INT: "integer", PROBABILITY: "probability"}.get(self.kind, "number")
        if self.random and self.symmetric:
            return f"{noun}{bounds}, d means [-d, d]"
        return noun + bounds


def _fmt(number) -> str:
    return f"{number:g}"


@dataclass
class Problems:
    """Collects validation messages, each prefixed with its key path."""

    messages: list = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.messages.append(f"{path}: {message}")


def _is_number(value) -> bool:
    """A real, finite number: NaN and infinity are never valid, nor a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _not_a_number(value) -> str:
    """What was wrong with a value that is not a usable number, for a message."""
    if isinstance(value, float) and math.isnan(value):
        return "got NaN (.nan), which is never a valid value"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"got {excerpt(value)}, which is not a finite number"
    return f"got {excerpt(value)}"


def _check_scalar(param: Param, value, path: str, problems: Problems) -> bool:
    """Check one concrete value against the param's type and bounds."""
    if param.kind == BOOL:
        if not isinstance(value, bool):
            problems.add(path, f"expected true or false, got {excerpt(value)}")
            return False
        return True
    if param.kind == ENUM:
        if not isinstance(value, str) or value not in param.choices:
            problems.add(path, f"expected one of {', '.join(param.choices)}, got "
                               f"{excerpt(value)}")
            return False
        return True
    if param.kind == NUMBER_OR_LIST:
        items = value if isinstance(value, list) else [value]
        not_numbers = [item for item in items if not _is_number(item)]
        if not items or not_numbers:  # (a null item is one of them, so no None sentinel)
            bad = not_numbers[0] if not_numbers else value
            problems.add(path, f"expected a number or a list of numbers, {_not_a_number(bad)}")
            return False
        if isinstance(value, list) and param.lengths and len(value) not in param.lengths:
            counts = " or ".join(str(n) for n in param.lengths)
            problems.add(path, f"expected a number or a list of {counts} numbers, got "
                               f"{excerpt(value)}")
            return False
        if param.ordered and len(items) == 2 and items[0] > items[1]:
            problems.add(path, f"expected lo <= hi, got {excerpt(value)}")
            return False
        if param.magnitude and not isinstance(value, list) and value < 0:
            problems.add(path, f"a single number d means [-d, d], so it must be >= 0, got "
                               f"{excerpt(value)} (write [lo, hi] for any other range)")
            return False
        return all(_check_bounds(param, item, path, problems) for item in items)
    if not _is_number(value):
        problems.add(path, f"expected {param.describe_type()}, {_not_a_number(value)}")
        return False
    if param.kind == INT and not float(value).is_integer():
        problems.add(path, f"expected an integer, got {excerpt(value)}")
        return False
    return _check_bounds(param, value, path, problems)


def _check_bounds(param: Param, value, path: str, problems: Problems) -> bool:
    if param.low is not None and value < param.low or param.high is not None and value > param.high:
        low = "-inf" if param.low is None else _fmt(param.low)
        high = "inf" if param.high is None else _fmt(param.high)
        problems.add(path, f"{excerpt(value)} is out of range [{low}, {high}]")
        return False
    return True


def _normalize(param: Param, value):
    if param.kind == INT:
        return int(value)
    if param.kind in (NUMBER, PROBABILITY):
        return float(value)
    if param.kind == NUMBER_OR_LIST and isinstance(value, list):
        return tuple(float(item) for item in value)
    if param.kind == NUMBER_OR_LIST:
        return value if param.keep_int and isinstance(value, int) else float(value)
    return value


def parse_value(param: Param, value, path: str, problems: Problems):
    """Turn a recipe value into a distribution, or record why it cannot be one (None)."""
    if isinstance(value, dict):
        return _parse_choice_or_sweep(param, value, path, problems)
    if isinstance(value, list) and param.kind != NUMBER_OR_LIST:
        return _parse_range(param, value, path, problems)
    return _parse_fixed(param, value, path, problems)


def _parse_choice_or_sweep(param: Param, value: dict, path: str, problems: Problems):
    """``{choice: [a, b]}`` -> Choice, ``{sweep: [a, b]}`` -> Sweep: each item checked."""
    if len(value) != 1 or next(iter(value)) not in ("choice", "sweep"):
        problems.add(path, "expected a value, [lo, hi], {choice: [...]} or {sweep: [...]}, "
                           f"got {excerpt(value)}")
        return None
    (form, items), = value.items()
    if not isinstance(items, list) or not items:
        problems.add(f"{path}.{form}", f"expected a non-empty list of values, got "
                                       f"{excerpt(items)}")
        return None
    good = all(_check_scalar(param, item, f"{path}.{form}[{i}]", problems)
               for i, item in enumerate(items))
    if not good:
        return None
    normalized = tuple(_normalize(param, item) for item in items)
    return Sweep(normalized) if form == "sweep" else Choice(normalized)


def _parse_range(param: Param, value: list, path: str, problems: Problems):
    """``[lo, hi]`` -> Uniform (integers for int params), for params that may be random."""
    if not param.random or param.kind in (BOOL, ENUM):
        problems.add(path, f"expected {param.describe_type()}, got a list {excerpt(value)}")
        return None
    if len(value) != 2:
        problems.add(path, f"expected [lo, hi] (two numbers), got {excerpt(value)}")
        return None
    if not all(_check_scalar(param, item, path, problems) for item in value):
        return None
    low, high = value
    if low > high:
        problems.add(path, f"expected lo <= hi, got [{low}, {high}]")
        return None
    return Uniform(_normalize(param, low), _normalize(param, high), integer=param.kind == INT)


def _parse_fixed(param: Param, value, path: str, problems: Problems):
    """A single value -> Const, or ``Uniform(-d, d)`` for a symmetric param."""
    if not _check_scalar(param, value, path, problems):
        return None
    if param.symmetric and param.random:
        magnitude = abs(_normalize(param, value))
        if not _check_scalar(param, -magnitude, path, problems):
            return None
        return Uniform(-magnitude, magnitude, integer=param.kind == INT)
    return Const(_normalize(param, value))


# The combinators' own numbers (sometimes' p, some_of's n): read by the recipe parser,
# shown by `augcli ops` (one definition, so the help cannot drift from the parser).
COMBINATOR_P = Param("p", PROBABILITY, 0.5, "Probability.", low=0, high=1)
COMBINATOR_N = Param("n", INT, 1, "How many.", low=0)
