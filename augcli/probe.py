"""The proof that a worker makes this machine's bytes: a fixed probe image rendered
through every op of the recipe (alone, and each variant whole), with fixed seeds.

Versions and the CPU features line (``executors.signature``) name what is known to
change bytes; the probe proves the rest — OpenCV's IPP switched off, another build
of the same version, a CPU dispatch switch nobody listed. A worker whose digests
differ from the client's is refused, naming the ops that differ.

A ``Sight`` proves that a worker reads the run's input as this machine does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .ops.multi import most_donors
from .pipeline import apply_steps, sample_steps
from .recipe import Recipe, _op_nodes
from .stores import StoreSpec
from .stores.base import FOLDER_KIND
from .targets.boxes import ImageBoxes
from .targets.polygons import Polygon

SEEDS = (1, 2, 3, 4)  # each op and variant drawn four times
PROBE_DONOR = "probe"  # the donor name of ops that take other images: the probe image
# what copy_paste cuts out of the probe image: one triangle
PROBE_TARGETS = ImageBoxes(67, 45, (Polygon("probe", ((10.0, 8.0, 41.0, 12.0, 27.0, 37.0),)),))
MAX_TREES = 8  # sweep combinations probed per variant


def probe_image() -> np.ndarray:
    """A 45x67 colour image with edges and gradients, made by integer arithmetic alone
    (no random generator): the same array everywhere. Odd sizes leave SIMD tails."""
    y, x = np.mgrid[0:45, 0:67].astype(np.int64)
    blue = (x * 7 + y * 3) % 256
    green = ((x // 8 + y // 8) % 2) * 200 + (y * 5) % 56
    red = (x * y) % 251
    return np.stack([blue, green, red], axis=-1).astype(np.uint8)


@dataclass(frozen=True)
class Probe:
    """What a worker renders to prove its bytes: ``trees`` is (name, op tree) pairs.
    ``key`` names it, for a worker to render each probe once."""

    key: str
    trees: tuple

    def __call__(self) -> dict:
        """Name -> SHA-256 of the probe image through that tree, at every seed."""
        image = probe_image()
        digests = {}
        for name, tree in self.trees:
            hashed = hashlib.sha256()
            donors = (PROBE_DONOR,) * most_donors(tree)  # ops that take donors: the image again
            for seed in SEEDS:
                steps = sample_steps(tree, np.random.default_rng(seed), image.shape,
                                     donors=donors)
                pixels = np.ascontiguousarray(apply_steps(
                    image, steps, donor=lambda _name: image,
                    donor_targets=lambda _name: PROBE_TARGETS))
                hashed.update(repr((pixels.shape, pixels.dtype.str)).encode())
                hashed.update(pixels.data)
            digests[name] = hashed.hexdigest()
        return digests


def recipe_probe(recipe: Recipe) -> Probe:
    """Every op of ``recipe`` alone (as ``variants.NAME.ops[i] (op)``), and each variant
    whole (its warps composed as the run composes them)."""
    trees: list = []
    for variant in recipe.variants:
        for number, tree in enumerate(_distinct(variant.expand())):
            if number == MAX_TREES:
                break
            sweep = f" (sweep {number + 1})" if number else ""
            trees.append((f"variants.{variant.name}{sweep}", tree))
            trees.extend((f"{path} ({node.op}){sweep}", (node,))
                         for path, node in _op_nodes(tree, f"variants.{variant.name}.ops"))
    return Probe(recipe.fingerprint, tuple(trees))


def _distinct(trees):
    seen: list = []
    for tree in trees:
        if tree not in seen:
            seen.append(tree)
            yield tree


@dataclass(frozen=True)
class Sight:
    """One listed source of the run's input (``store``, ``source``) and its ``size`` there,
    for a worker to read back (one metadata request). The store spec carries only the
    recipe's options: a worker whose environment names another endpoint or account
    (``AWS_ENDPOINT_URL``, say) would otherwise fail every source it takes as 'file not
    found'."""

    store: StoreSpec
    source: str
    size: int

    def __call__(self) -> str | None:
        """None where this process sees the source at its listed size; else why not."""
        try:
            store = self.store.open()
            size = store.stamp(self.source)["source_size"]
        except (OSError, UsageError) as exc:
            seen = f"{exc} there"
        else:
            if size == self.size:
                return None
            seen = f"{store.name(self.source)} is {size} bytes there ({self.size} here)"
        return (f"does not see the input {self.store} as this machine does: {seen}. Its "
                "environment likely names another endpoint, account or credentials "
                "(AWS_ENDPOINT_URL and the like); every worker needs the run's storage "
                "settings (see 'Beyond one machine' in the docs (docs/cluster.md))")


def sight_of(store: StoreSpec, key: str | None) -> Sight | None:
    """A ``Sight`` of ``key`` on an object-store input, as this machine sees it (one
    metadata request), for commands whose listing carries no sizes (``normalize``,
    ``ricap``); None for a folder (a worker stats its source as it reads it) or no key."""
    if key is None or store.kind == FOLDER_KIND:
        return None
    return Sight(store, key, store.open().stamp(key)["source_size"])
