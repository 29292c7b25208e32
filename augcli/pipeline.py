"""Sample an op tree into concrete steps, then apply the steps to an image.

``sample_steps`` is the only place randomness is drawn for an output, from the
one generator seeded for that output. ``apply_steps`` is deterministic: the
same steps on the same image always give the same pixels. Consecutive
geometric steps that share a fill are composed into one matrix and resampled
once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import geometry
from . import ops as catalog
from .recipe import OneOf, OpNode, Sequence, SomeOf, Sometimes


@dataclass(frozen=True)
class Step:
    """One op with concrete parameters: what the manifest records."""

    op: str
    params: dict

    def as_record(self) -> dict:
        return {self.op: self.params}


def sample_steps(nodes, rng: np.random.Generator, shape) -> list:
    """Walk the op tree, draw every random choice, and return the steps that fire."""
    steps: list = []
    _sample_into(nodes, rng, shape, steps)
    return steps


def _sample_into(nodes, rng, shape, steps) -> None:
    for node in nodes:
        if isinstance(node, OpNode):
            op = catalog.CATALOG[node.op]
            params = op.sample_params(_drawer(node.args, rng), rng, shape)
            if params is not None:
                steps.append(Step(node.op, params))
        elif isinstance(node, Sometimes):
            chosen = node.then if rng.random() < node.p.sample(rng) else node.otherwise
            _sample_into(chosen, rng, shape, steps)
        elif isinstance(node, OneOf):
            _sample_into([node.ops[int(rng.integers(len(node.ops)))]], rng, shape, steps)
        elif isinstance(node, SomeOf):
            count = min(int(node.n.sample(rng)), len(node.ops))
            picked = rng.choice(len(node.ops), size=count, replace=False)
            order = picked if node.random_order else np.sort(picked)
            _sample_into([node.ops[i] for i in order], rng, shape, steps)
        elif isinstance(node, Sequence):
            order = rng.permutation(len(node.ops)) if node.random_order else range(len(node.ops))
            _sample_into([node.ops[i] for i in order], rng, shape, steps)
        else:  # pragma: no cover - the recipe parser builds only the types above
            raise TypeError(f"unknown op node {node!r}")


def _drawer(args: dict, rng):
    """A function that draws a fresh value of the named parameter on every call."""

    def draw(name):
        return _plain(args[name].sample(rng))

    return draw


def _plain(value):
    """NumPy scalars -> Python numbers, so params serialise to JSON as they read."""
    return value.item() if isinstance(value, np.generic) else value


def apply_steps(image: np.ndarray, steps) -> np.ndarray:
    """Apply sampled steps in order; runs of geometric steps become one warp.

    Steps without a fill (flips: exact mirrors) join any run; steps whose fill
    differs from the run's start a new run.
    """
    matrix, fill = None, None  # the geometric run not yet resampled
    for step in steps:
        op = catalog.CATALOG[step.op]
        step_fill = (step.params["fill"], step.params["cval"]) if "fill" in step.params else None
        if matrix is not None and (not op.geometric or (fill and step_fill and fill != step_fill)):
            image = geometry.warp(image, matrix, *(fill or ("constant", 0)))
            matrix, fill = None, None
        if op.geometric:
            step_matrix = op.matrix(step.params, image.shape)
            matrix = step_matrix if matrix is None else step_matrix @ matrix
            fill = fill or step_fill
        else:
            image = op.apply(image, step.params)
    if matrix is not None:
        image = geometry.warp(image, matrix, *(fill or ("constant", 0)))
    return image
