"""Every output worth uploading: variants that can make the outputs asked of them.

Hosted trainers (Custom Vision, Roboflow) drop duplicate images, so an output
that equals its source or another output of the same source is wasted. A
variant whose ops fire with p < 1 (or draw from a few choices) can make one;
``render.Distinct`` redraws such an output while a run renders it.

``variant_warnings`` finds, before any work, variants that cannot vary: none
of their ops changes an image, or they make fewer different images than the
outputs asked of them (``fliplr`` alone with 5 copies). It samples each
variant on a small synthetic image with fixed seeds, through the same kernel
``run`` uses (``augcli.render``).
"""

from __future__ import annotations

import numpy as np

from .ops.multi import most_donors
from .pipeline import OutputTooLarge
from .render import Distinct, OutputPlan, derive_seed, render

SAMPLE_SHAPE = (48, 64, 3)  # the synthetic image variants are tried on
MIN_SAMPLES = 64  # draws tried per variant before saying it cannot vary


def variant_warnings(recipe, needed: dict | None = None) -> list:
    """One line per variant that cannot vary enough, e.g. ``variants.flip: ...``.

    ``needed``: variant name -> outputs asked of it per source and sweep value
    (default: its ``copies``; a balancing plan may ask for more).
    """
    image = np.random.default_rng(0).integers(0, 256, SAMPLE_SHAPE, dtype=np.uint8)
    warnings = []
    for variant in recipe.variants:
        too_large = ""
        want = max(1, (needed or {}).get(variant.name, variant.copies))
        trees = list(_unique(variant.expand()))
        for tree_index, tree in enumerate(trees):
            if most_donors(tree):  # pastes other images of the split: varies with them
                continue
            distinct = Distinct(image, "the source")
            made = 0
            for draw in range(max(MIN_SAMPLES, 8 * want)):
                output = OutputPlan("", variant.name, draw, derive_seed(0, "", variant.name,
                                                                      draw), tree)
                try:
                    pixels, _ = render(image, output)
                except OutputTooLarge as exc:  # a drawn size over the limit: that output fails
                    too_large = too_large or f"variants.{variant.name}: {exc} in some draws; " \
                                             "those outputs fail"
                    continue
                made += distinct.add(image, pixels, "", output) is None
                if made >= want:
                    break
            if made >= want or (made == 0 and too_large):
                continue
            where = f"variants.{variant.name}" + (f" (sweep value {tree_index + 1})"
                                                  if len(trees) > 1 else "")
            if made == 0:
                warnings.append(f"{where}: none of its ops changes an image; every output "
                                "would equal its source and cannot be written")
            else:
                warnings.append(f"{where}: makes only {made} different image(s) from a source "
                                f"(in {draw + 1} tries) but {want} are asked of it; the outputs "
                                "it cannot make different are reported and not written")
            break
        if too_large:
            warnings.append(too_large)
    return warnings


def plan_needs(plan) -> dict:
    """Variant name -> the most outputs a plan asks of it from one source, per sweep value
    (more than ``copies`` when balancing uses a variant again)."""
    most: dict = {}
    for source in plan.sources:
        counts: dict = {}
        for output in plan.outputs_of(source):
            if output.variant is not None:
                counts[output.variant] = counts.get(output.variant, 0) + 1
        for name, count in counts.items():
            most[name] = max(most.get(name, 0), count)
    sweeps = {v.name: len(list(_unique(v.expand()))) for v in plan.recipe.variants}
    return {name: -(-count // sweeps[name]) for name, count in most.items()}


def _unique(trees):
    """Op trees as a variant expands them, each sweep combination once (in order)."""
    previous = object()
    for tree in trees:
        if tree is not previous:
            yield tree
        previous = tree
