"""Text for ``augcli ops`` and ``augcli ops NAME``, rendered from the registry."""

from __future__ import annotations

from ..params import NUMBER_OR_LIST, Param
from .base import CATALOG, lookup


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
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def op_help(name: str) -> str | None:
    """Full help for one op (by name or alias), or None if there is no such op."""
    op = lookup(name)
    if op is None:
        return None
    if op.fusable:
        kind = "geometric (moves pixels; composed with neighbouring geometric ops)"
    elif op.geometric:
        kind = "geometric (moves pixels; resamples on its own, boxes follow its matrix)"
    elif op.refuses_boxes:
        kind = "geometric (moves pixels with no matrix: refused in recipes with annotations)"
    else:
        kind = "pixel (boxes stay where they are)"
    if op.output_shape is not None:
        kind += "; changes the image size"
    lines = [f"{op.name}: {op.summary}", f"kind: {kind}"]
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
    lines += ["example:", f"  {op.example}"]
    if op.details is not None:
        lines.append(op.details())
    return "\n".join(lines)
