"""Seed -> sampled steps -> pixels: the kernel ``run``, ``preview``, the variety check
and the training-time transform share.

Every output is planned as an ``OutputPlan``: its name (``output_name``), its
variant and index, its op tree, and a seed derived from (recipe seed, the
source's relative path, variant, index) alone (``derive_seed``), so it is the
same on every machine, run and worker. ``render`` samples the tree from that
seed and applies the steps.

``Distinct`` keeps a source's outputs apart: it renders them in plan order and
remembers a key of every image seen (the source, then each output) and how to
render it again; an image whose key is seen is compared in full with the image
that has it. An output whose pixels match one of them is drawn again from a seed derived from
its own (``redraw_seed``), up to ``MAX_DRAWS`` draws in all, so reruns and
worker counts still give the same bytes; after that the output is reported,
not written. Only outputs that were duplicates change.

This module imports no pool, cluster or store: ``augcli.load_transform`` stays light.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import geometry
from .pipeline import apply_steps, sample_steps
from .recipe import Recipe

MAX_DRAWS = 10  # draws per output: the first and up to 9 redraws


@dataclass(frozen=True)
class OutputPlan:
    """One file to write. ``variant`` is None for a copy of the original."""

    relative: str
    variant: str | None
    index: int
    seed: int
    ops: tuple = ()
    donors: tuple = ()  # names of other sources of its split its donor ops take, in order


def derive_seed(recipe_seed: int, relative: str, variant: str, index: int) -> int:
    """A stable 63-bit seed per output: the same on every machine, run and worker."""
    # surrogateescape: a file name that is not UTF-8 is hashed as its own bytes.
    key = f"{recipe_seed}\x1f{relative}\x1f{variant}\x1f{index}".encode("utf-8",
                                                                           "surrogateescape")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def output_name(relative: Path, variant: str, index: int, fmt: str | None) -> str:
    """``cats/tom.jpg`` -> ``cats/tom_noise_1.jpg`` (extension kept unless ``fmt`` is set)."""
    suffix = f".{fmt}" if fmt else relative.suffix
    return (relative.parent / f"{relative.stem}_{variant}_{index}{suffix}").as_posix()


def original_output(relative: Path, fmt: str | None) -> OutputPlan:
    """The copy of a source itself (converted when ``fmt`` is set)."""
    name = relative.with_suffix(f".{fmt}") if fmt else relative
    return OutputPlan(name.as_posix(), None, 0, 0)


def augmented_output(recipe: Recipe, relative: Path, variant, index: int, tree,
                     fmt) -> OutputPlan:
    return OutputPlan(output_name(relative, variant.name, index, fmt), variant.name,
                      index, derive_seed(recipe.seed, relative.as_posix(), variant.name, index),
                      tree)


def source_outputs(recipe: Recipe, relative: Path, fmt: str | None = None) -> list:
    """Every output the recipe makes from one source, in order, each with its seed.

    ``fmt``: the output format for this source (default: the recipe's).
    """
    fmt = fmt or recipe.format
    outputs = [original_output(relative, fmt)] if recipe.include_original else []
    for variant in recipe.variants:
        for index, tree in enumerate(variant.expand(), start=1):
            outputs.append(augmented_output(recipe, relative, variant, index, tree, fmt))
    return outputs


def render(image: np.ndarray, output: OutputPlan, padded: np.ndarray | None = None,
           donor=None, donor_targets=None):
    """Pixels and sampled steps of one augmented output: what run writes, preview shows.

    ``padded``: ``geometry.with_spare_channel(image)``, kept across a source's outputs;
    ``donor``: name -> image, for ops that take the output's ``donors`` (``donor_targets``:
    name -> ImageBoxes, for those that cut objects out of them)."""
    steps = sample_steps(output.ops, np.random.default_rng(output.seed), image.shape,
                         donors=output.donors)
    return apply_steps(image, steps, padded=padded, donor=donor,
                       donor_targets=donor_targets), steps


# --- outputs that differ -------------------------------------------------------

class DuplicateOutput(ValueError):
    """Every draw of an output equalled the source or an earlier output."""


def redraw_seed(seed: int, attempt: int) -> int:
    """The seed of an output's ``attempt``-th redraw: stable, 63 bits, from its first seed."""
    key = f"{seed}\x1fredraw\x1f{attempt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


DIGEST_SAMPLES = 4096  # values a key hashes: enough to tell augmented images apart


def digest(pixels: np.ndarray) -> tuple:
    """A key of an image's pixels: equal images always get equal keys.

    Shape, type and a CRC-32 of about ``DIGEST_SAMPLES`` values spread over the
    whole image, with a stride that is no multiple of 2 or 3 so that it walks
    every channel: hashing every value cost a tenth of a JPEG encode per output.
    Different images can share a key (a change no sample falls on), so a key
    only finds candidates: ``Distinct`` compares them in full."""
    flat = pixels.reshape(-1)
    stride = max(1, flat.size // DIGEST_SAMPLES) | 1
    if stride % 3 == 0:
        stride += 2
    sample = np.ascontiguousarray(flat[stride // 2::stride]).view(np.uint8)
    return pixels.shape, pixels.dtype.str, zlib.crc32(sample.data)


class Distinct:
    """The images one source has given so far, to keep its outputs apart.

    Only keys and plans are kept, not pixels: an image whose key was seen is
    told apart by rendering the earlier image with that key again, which only
    duplicates (and the rare shared key) pay for."""

    def __init__(self, source: np.ndarray, name: str):
        self.source = source
        self.padded = geometry.with_spare_channel(source)  # once, not per output's warp
        self.seen: dict = {digest(source): [(name, None)]}  # key -> [(name, its plan)]

    def add(self, image: np.ndarray, pixels: np.ndarray, name: str,
            output: OutputPlan, donor=None, donor_targets=None) -> str | None:
        """Keep ``pixels`` (``output`` rendered from ``image``, with ``donor`` images) if they
        are new; else return the name of the earlier image that equals them."""
        key = digest(pixels)
        earlier = self.seen.setdefault(key, [])
        for twin, plan in earlier:
            twin_pixels = self.source if plan is None else \
                render(image, plan, donor=donor, donor_targets=donor_targets)[0]
            if np.array_equal(twin_pixels, pixels):
                return twin
        earlier.append((name, output))
        return None

    def draw(self, image: np.ndarray, output: OutputPlan, donor=None,
             donor_targets=None) -> tuple:
        """(pixels, steps, seed, redraws) of ``output``, different from every image seen.

        Raises ``DuplicateOutput`` when all ``MAX_DRAWS`` draws repeat an image. A redraw
        keeps the output's donors (``donor``: name -> image; ``donor_targets``: name ->
        ImageBoxes).
        """
        seed = output.seed
        for attempt in range(MAX_DRAWS):
            if attempt:
                seed = redraw_seed(output.seed, attempt)
            plan = replace(output, seed=seed) if attempt else output
            pixels, steps = render(image, plan, self.padded if image is self.source else None,
                                   donor, donor_targets)
            twin = self.add(image, pixels, output.relative, plan, donor, donor_targets)
            if twin is None:
                return pixels, steps, seed, attempt
        raise DuplicateOutput(
            f"identical to {twin} in all {MAX_DRAWS} draws: variant '{output.variant}' cannot "
            "make this many different images from one source (see augcli validate)")
