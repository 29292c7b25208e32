"""Every output worth uploading: the outputs of one source differ in pixels.

Hosted trainers (Custom Vision, Roboflow) drop duplicate images, so an output
that equals its source or another output of the same source is wasted. A
variant whose ops fire with p < 1 (or draw from a few choices) can make one.

``Distinct`` renders a source's outputs in plan order and remembers a digest
of every image seen (the source, then each output). An output whose pixels
match one of them is drawn again from a seed derived from its own
(``redraw_seed``), up to ``MAX_DRAWS`` draws in all, so reruns and worker
counts still give the same bytes; after that the output is reported, not
written. Only outputs that were duplicates change.

``variant_warnings`` finds, before any work, variants that cannot vary: none
of their ops changes an image, or they make fewer different images than the
outputs asked of them (``fliplr`` alone with 5 copies). It samples each
variant on a small synthetic image with fixed seeds, through the same code
``run`` uses.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import replace

import numpy as np

MAX_DRAWS = 10  # draws per output: the first and up to 9 redraws
SAMPLE_SHAPE = (48, 64, 3)  # the synthetic image variants are tried on
MIN_SAMPLES = 64  # draws tried per variant before saying it cannot vary


class DuplicateOutput(ValueError):
    """Every draw of an output equalled the source or an earlier output."""


def redraw_seed(seed: int, attempt: int) -> int:
    """The seed of an output's ``attempt``-th redraw: stable, 63 bits, from its first seed."""
    key = f"{seed}\x1fredraw\x1f{attempt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def digest(pixels: np.ndarray) -> tuple:
    """A key of an image's pixels: equal images always get equal keys.

    Shape, type and a CRC-32 of each half of the bytes (64 bits in all): about
    a sixteenth of the time of a JPEG encode, where a cryptographic hash costs a
    third. Two different images sharing a key (about 1 in 2**64) only cost one
    needless redraw, the same one on every run."""
    data = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
    half = data.size // 2
    return (pixels.shape, pixels.dtype.str, zlib.crc32(data[:half].data),
            zlib.crc32(data[half:].data))


class Distinct:
    """The images one source has given so far, to keep its outputs apart."""

    def __init__(self, source: np.ndarray, name: str):
        self.seen = {digest(source): name}

    def draw(self, image: np.ndarray, output, render) -> tuple:
        """(pixels, steps, seed, redraws) of ``output``, different from every image seen.

        ``render(image, output)`` makes the pixels and steps for an output's seed.
        Raises ``DuplicateOutput`` when all ``MAX_DRAWS`` draws repeat an image.
        """
        seed = output.seed
        for attempt in range(MAX_DRAWS):
            if attempt:
                seed = redraw_seed(output.seed, attempt)
            pixels, steps = render(image, replace(output, seed=seed) if attempt else output)
            key = digest(pixels)
            if key not in self.seen:
                self.seen[key] = output.relative
                return pixels, steps, seed, attempt
            twin = self.seen[key]
        raise DuplicateOutput(
            f"identical to {twin} in all {MAX_DRAWS} draws: variant '{output.variant}' cannot "
            "make this many different images from one source (see augcli validate)")


def variant_warnings(recipe, needed: dict | None = None) -> list:
    """One line per variant that cannot vary enough, e.g. ``variants.flip: ...``.

    ``needed``: variant name -> outputs asked of it per source and sweep value
    (default: its ``copies``; a balancing plan may ask for more).
    """
    from .runner import OutputPlan, derive_seed, render

    image = np.random.default_rng(0).integers(0, 256, SAMPLE_SHAPE, dtype=np.uint8)
    warnings = []
    for variant in recipe.variants:
        want = max(1, (needed or {}).get(variant.name, variant.copies))
        trees = list(_unique(variant.expand()))
        for tree_index, tree in enumerate(trees):
            distinct = Distinct(image, "the source")
            made = 0
            for draw in range(max(MIN_SAMPLES, 8 * want)):
                output = OutputPlan("", variant.name, draw, derive_seed(0, "", variant.name,
                                                                      draw), tree)
                pixels, _ = render(image, output)
                key = digest(pixels)
                made += key not in distinct.seen
                distinct.seen.setdefault(key, "")
                if made >= want:
                    break
            if made >= want:
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
