"""Text for ``augcli ops`` and ``augcli ops NAME``, rendered from the registry and,
for the combinators (not registered as ops), from ``combinators.COMBINATORS``.
"""

from __future__ import annotations

from types import SimpleNamespace

from ..params import NUMBER_OR_LIST, Param
from .base import CATALOG, Op, lookup
from .combinators import COMBINATORS, Field


def _default_text(param: Param) -> str:
    return str(param.default).lower() if isinstance(param.default, bool) else str(param.default)


def catalog_listing() -> str:
    """One block per op: name, aliases, summary and a line per parameter."""
    blocks = []
    for name in sorted(CATALOG):
        op = CATALOG[name]
        aliases = f" (also: {', '.join(op.aliases)})" if op.aliases else ""
        lines = [f"{name}{aliases}: {op.summary}"]
        lines += [f"    {p.name} = {_default_text(p)}  [{p.describe_type()}]" for p in op.params]
        lines.append(f"    annotations: {_targets_summary(op)}")
        blocks.append("\n".join(lines))
    blocks.append("\ncombinators: nest ops inside a variant's ops list ('augcli ops NAME' "
                  "for one in full)")
    for combinator in COMBINATORS.values():
        lines = [f"{combinator.name}: {combinator.summary}"]
        lines += [f"    {item.name} = {_field_default(item)}  [{item.accepts}]"
                  for item in combinator.fields]
        lines.append(f"    example: {combinator.example}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


TARGET_KINDS = ("boxes", "polygons", "keypoints", "oriented boxes", "masks")

# What the ops that take donors do to each kind they carry (``DonorKernels.carries``).
_DONOR_EFFECTS = {
    "boxes": "each tile's or patch's clipped (min_visibility), the donors' beside them",
    "polygons": "clipped to their tile or patch (min_visibility), the donors' beside them",
    "keypoints": "moved with their tile; a point outside it becomes 0 0 0",
    "oriented boxes": "clipped to their tile (min_visibility), the donors' beside them",
    "masks": "RLE clipped to their tile (min_visibility); mask images: each tile the crop "
             "of its image's map (nearest neighbour when scaled), mask_fill where no tile "
             "reaches",
    ("cutmix", "boxes"): "the image's kept or dropped by the area the patch leaves "
                         "(min_visibility), the donor's clipped to the patch",
    ("cutmix", "polygons"): "the image's cut by the patch, the donor's clipped to it "
                            "(min_visibility)",
    ("mixup", "boxes"): "both images', the donor's stretched with it",
    ("mixup", "polygons"): "both images', the donor's stretched with it",
    ("mixup", "keypoints"): "both images', the donor's stretched with it",
    ("mixup", "oriented boxes"): "both images', the donor's stretched with it",
    ("mixup", "masks"): "RLE: both images', the donor's stretched with it; mask images "
                        "refused (a blend of class ids names no class)",
    ("cutmix", "masks"): "RLE: the image's cut by the patch, the donor's clipped to it "
                         "(min_visibility); mask images: the donor's map pasted with its patch",
}

# Pixel ops that hide part of the image: the objects are still there under the patch.
_ERASING = ("cutout", "random_erasing", "coarse_dropout", "dropout")


def may_mirror(op: Op) -> bool:
    """Whether some arguments make the op mirror the image (``Op.mirrors``): asked with
    every setting switched on, as a recipe could."""
    switched_on = SimpleNamespace(values=(True,), value=True)
    return bool(op.mirrors({param.name: switched_on for param in op.params}))


def target_effects(op: Op) -> dict:
    """Target kind (``TARGET_KINDS``) -> what the op does to it, from what the op declares:
    its matrix, ``refuses_boxes`` and ``mirrors``."""
    if op.refuses_boxes:
        return dict.fromkeys(TARGET_KINDS, "refused with annotations")
    if op.donor is not None and op.donor.targets:  # _refuse_copy_paste_without_polygons
        return {kind: "the donors' pasted with theirs; those covered cut to what shows "
                      "(min_visibility)" if kind == "polygons" else "refused (polygons only)"
                for kind in TARGET_KINDS}
    if op.donor is not None:  # DonorKernels.carries; the runner refuses the others
        only = f"refused ({', '.join(op.donor.carries)} only)"
        return {kind: _DONOR_EFFECTS.get((op.name, kind), _DONOR_EFFECTS[kind])
                if kind in op.donor.carries else only for kind in TARGET_KINDS}
    if not op.geometric:
        same = "unchanged (the object is still there under the patch)" \
            if op.name in _ERASING else "unchanged"
        return dict.fromkeys(TARGET_KINDS, same)
    swap = "; a mirror swaps left and right (flip_idx)" if may_mirror(op) else ""
    return {
        "boxes": "hull of the moved corners, clipped (exact unless it turns, shears or "
                 "tilts)",
        "polygons": "every vertex moved, clipped to the image (a cut ring may become "
                    "several); box tight around them",
        "keypoints": f"moved; a point that leaves the image becomes 0 0 0{swap}",
        "oriented boxes": "corners moved; the minimum-area rectangle after a shear or "
                          "perspective",
        "masks": "resampled with nearest neighbour (no blended ids); mask_fill where the "
                 "image is filled",
    }


def _targets_summary(op: Op) -> str:
    """One line for the listing: what the op does to annotations."""
    if op.refuses_boxes:
        return "refused (no matrix describes how it moves the pixels)"
    if op.donor is not None and op.donor.targets:
        return "polygons pasted with their objects, those covered cut; others refused"
    if op.donor is not None:
        return (f"{', '.join(op.donor.carries)} clipped to each tile or patch, the donors' "
                "beside them; others refused")
    if not op.geometric:
        return "unchanged"
    return "follow the pixels" + ("; mirrors (left and right keypoints swap)"
                                  if may_mirror(op) else "")


def targets_table() -> str:
    """The docs' table (docs/annotations.md): ops with the same effects on one row, a column
    per target kind."""
    rows: dict = {}
    for name in sorted(CATALOG):
        effects = target_effects(CATALOG[name])
        rows.setdefault(tuple(effects.values()), []).append(name)
    lines = ["| ops | " + " | ".join(TARGET_KINDS) + " |",
             "| --- |" + " --- |" * len(TARGET_KINDS)]
    for effects, names in rows.items():
        lines.append("| " + ", ".join(f"`{name}`" for name in names) + " | "
                     + " | ".join(effects) + " |")
    return "\n".join(lines) + "\n"
def catalog_json() -> dict:
    """The catalog as ``augcli ops --json`` prints it: every op and combinator, with what
    the listing shows (defaults as a recipe writes them)."""
    ops = [{"name": name, "aliases": list(CATALOG[name].aliases),
            "summary": CATALOG[name].summary, "example": CATALOG[name].example,
            "geometric": CATALOG[name].geometric,
            "params": [{"name": p.name, "type": p.describe_type(), "default": p.default,
                        "doc": p.doc} for p in CATALOG[name].params]}
           for name in sorted(CATALOG)]
    combinators = [{"name": c.name, "summary": c.summary, "example": c.example,
                    "fields": [{"name": item.name, "type": item.accepts,
                                "default": item.default, "doc": item.doc}
                               for item in c.fields]}
                   for c in COMBINATORS.values()]
    return {"ops": ops, "combinators": combinators}


def _field_default(item: Field) -> str:
    return "(required)" if item.default is None else item.default


def combinator_help(name: str) -> str | None:
    """Full help for one combinator, or None if ``name`` is not one."""
    combinator = COMBINATORS.get(name)
    if combinator is None:
        return None
    lines = [f"{combinator.name}: {combinator.summary}",
             "kind: combinator (holds other ops; any of them may be a combinator too)",
             "parameters:"]
    for item in combinator.fields:
        default = "required" if item.default is None else f"default {item.default}"
        lines += [f"  {item.name} ({default})", f"      {item.doc}",
                  f"      accepts: {item.accepts}"]
    if combinator.note:
        lines.append(combinator.note)
    if any(item.name in ("p", "n") for item in combinator.fields):
        lines.append("Numbers also take [lo, hi] (uniform), {choice: [...]} or {sweep: [...]}.")
    lines += ["example:", f"  {combinator.example}"]
    return "\n".join(lines)


def op_kind(op) -> str:
    """What the op does to pixels and to the targets that travel with them."""
    if op.fusable:
        kind = "geometric (moves pixels; composed with neighbouring geometric ops)"
    elif op.geometric:
        kind = "geometric (moves pixels; resamples on its own, boxes follow its matrix)"
    elif op.refuses_boxes:
        kind = "geometric (moves pixels with no matrix: refused in recipes with annotations)"
    elif op.donor is not None:
        most = op.donor.most
        kind = (f"takes donors (up to {most} other image{'s' if most > 1 else ''} of the "
                "source's split; boxes come from every image, clipped to its piece)")
    else:
        kind = "pixel (boxes stay where they are)"
    if op.output_shape is not None:
        kind += "; changes the image size"
    return kind


def op_help(name: str) -> str | None:
    """Full help for one op (by name or alias) or combinator, or None if there is no such."""
    op = lookup(name)
    if op is None:
        return combinator_help(name)
    lines = [f"{op.name}: {op.summary}", f"kind: {op_kind(op)}"]
    if op.aliases:
        lines.append(f"aliases: {', '.join(op.aliases)}")
    if op.params:
        lines.append("parameters:")
    for param in op.params:
        lines.append(f"  {param.name} (default {_default_text(param)})")
        lines.append(f"      {param.doc}")
        lines.append(f"      accepts: {param.describe_type()}")
    if op.params:
        lines.append("Numbers also take [lo, hi] (uniform), {choice: [...]} or {sweep: [...]}.")
    if any(param.kind == NUMBER_OR_LIST for param in op.params):
        lines.append("A list given to a 'number or list' parameter is one value (a pair, a "
                     "size, a colour), not a range.")
    lines.append("annotations:")
    lines += [f"  {kind}: {effect}" for kind, effect in target_effects(op).items()]
    lines += ["example:", f"  {op.example}"]
    if op.details is not None:
        lines.append(op.details())
    return "\n".join(lines)
