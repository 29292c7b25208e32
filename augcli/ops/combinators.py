"""The combinators: nodes of a variant's op tree that hold other ops.

A variant's ``ops`` are a tree of ``OpNode`` leaves (one registered op and its
parameter distributions) and the four combinators (``sometimes``, ``one_of``,
``some_of``, ``sequence``). Each combinator says which of its ops run for one
output (``choose``, drawing from that output's generator), and its help
(``COMBINATORS``) is what ``augcli ops`` lists. ``augcli.recipe`` reads them
from YAML; the tests hold this help against what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..params import COMBINATOR_N, COMBINATOR_P, Const, Distribution, Sweep


@dataclass(frozen=True)
class OpNode:
    """One op with its parameter distributions (``args``: name -> distribution)."""

    op: str
    args: dict


@dataclass(frozen=True)
class Sometimes:
    keyword: ClassVar[str] = "sometimes"
    p: Distribution
    then: tuple
    otherwise: tuple = ()

    def choose(self, rng) -> tuple:
        return self.then if rng.random() < self.p.sample(rng) else self.otherwise


@dataclass(frozen=True)
class OneOf:
    keyword: ClassVar[str] = "one_of"
    ops: tuple

    def choose(self, rng) -> list:
        return [self.ops[int(rng.integers(len(self.ops)))]]


@dataclass(frozen=True)
class SomeOf:
    keyword: ClassVar[str] = "some_of"
    n: Distribution
    ops: tuple
    random_order: bool = False

    def choose(self, rng) -> list:
        count = min(int(self.n.sample(rng)), len(self.ops))
        picked = rng.choice(len(self.ops), size=count, replace=False)
        order = picked if self.random_order else np.sort(picked)
        return [self.ops[i] for i in order]


@dataclass(frozen=True)
class Sequence:
    keyword: ClassVar[str] = "sequence"
    ops: tuple
    random_order: bool = False

    def choose(self, rng) -> list:
        count = len(self.ops)
        order = rng.permutation(count) if self.random_order else range(count)
        return [self.ops[i] for i in order]


def children(node) -> tuple:
    """The nodes a combinator holds, every branch included (none for an op)."""
    if isinstance(node, Sometimes):
        return (*node.then, *node.otherwise)
    if isinstance(node, (OneOf, SomeOf, Sequence)):
        return node.ops
    return ()


def op_names(trees) -> set:
    """Names of every op the trees (each a tuple of nodes) may run, the branches of
    combinators included."""
    names: set[str] = set()

    def walk(nodes) -> None:
        for node in nodes:
            if isinstance(node, OpNode):
                names.add(node.op)
            walk(children(node))

    for nodes in trees:
        walk(nodes)
    return names


# --- sweeps --------------------------------------------------------------------

def find_sweeps(nodes):
    """Every ``sweep`` in a tree, in the order ``replace_sweeps`` sets them."""
    for node in nodes:
        if isinstance(node, OpNode):
            yield from (dist for dist in node.args.values() if isinstance(dist, Sweep))
        for dist in (getattr(node, "p", None), getattr(node, "n", None)):
            if isinstance(dist, Sweep):
                yield dist
        yield from find_sweeps(children(node))


def _resolve(dist, chosen):
    return Const(next(chosen)) if isinstance(dist, Sweep) else dist


def replace_sweeps(nodes, chosen) -> tuple:
    """Copy of the tree with each sweep (in ``find_sweeps`` order) set to its chosen value."""
    result = []
    for node in nodes:
        if isinstance(node, OpNode):
            node = OpNode(node.op, {k: _resolve(v, chosen) for k, v in node.args.items()})
        elif isinstance(node, Sometimes):
            p = _resolve(node.p, chosen)
            node = Sometimes(p, replace_sweeps(node.then, chosen),
                             replace_sweeps(node.otherwise, chosen))
        elif isinstance(node, SomeOf):
            n = _resolve(node.n, chosen)
            node = SomeOf(n, replace_sweeps(node.ops, chosen), node.random_order)
        elif isinstance(node, OneOf):
            node = OneOf(replace_sweeps(node.ops, chosen))
        elif isinstance(node, Sequence):
            node = Sequence(replace_sweeps(node.ops, chosen), node.random_order)
        result.append(node)
    return tuple(result)


# --- help ----------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One key of a combinator: what it accepts, its default (None: required), what it does."""

    name: str
    accepts: str
    default: str | None
    doc: str


@dataclass(frozen=True)
class Combinator:
    name: str
    summary: str
    fields: tuple
    example: str
    note: str = ""


_OPS = "list of ops (plain ops or combinators)"
_RANDOM_ORDER = Field("random_order", "true|false", "false",
                      "true: apply them in a random order, drawn for each output; false: in "
                      "the order listed.")
# Typed as the parser reads them (recipe._read_combinator), so the types print alike.

COMBINATORS = {
    "sometimes": Combinator(
        "sometimes", "Apply its ops with probability p, otherwise its 'else' ops (if any).",
        (Field("p", COMBINATOR_P.describe_type(), "0.5",
               "Chance that 'ops' run, drawn for each output: exactly when random() < p."),
         Field("ops", _OPS, None, "What runs with probability p."),
         Field("else", _OPS, "none", "What runs otherwise (the other 1 - p).")),
        "- sometimes: {p: 0.3, ops: [{gaussian_blur: {sigma: [0.5, 1.5]}}], else: [sharpen]}"),
    "one_of": Combinator(
        "one_of", "Apply exactly one of its ops, picked uniformly for each output.",
        (Field("ops", _OPS, None, "The candidates."),),
        "- one_of: [{rotate: {degrees: 20}}, {shear: {x: 10}}, {zoom: {factor: [0.8, 1.2]}}]",
        "The list can also be given directly, as in the example: one_of: [a, b, c]."),
    "some_of": Combinator(
        "some_of", "Apply n of its ops, different ones, picked for each output.",
        (Field("n", COMBINATOR_N.describe_type(), "1",
               "How many to apply; all of them when n is more than there are."),
         Field("ops", _OPS, None, "The candidates."),
         _RANDOM_ORDER),
        "- some_of: {n: [1, 2], ops: [fliplr, {gaussian_blur: {sigma: 1}}, "
        "{dropout: {p: 0.05}}], random_order: true}"),
    "sequence": Combinator(
        "sequence", "Apply all of its ops: a group, in order or shuffled for each output.",
        (Field("ops", _OPS, None, "The ops, in order."),
         _RANDOM_ORDER),
        "- sequence: {ops: [{rotate: {degrees: 10}}, {brightness: {factor: [0.8, 1.2]}}], "
        "random_order: true}",
        "The list can also be given directly: sequence: [a, b, c] (random_order false)."),
}
