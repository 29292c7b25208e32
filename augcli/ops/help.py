"""Text for ``augcli ops`` and ``augcli ops NAME``, rendered from the registry and,
for the combinators (not registered as ops), from ``combinators.COMBINATORS``.
"""

from __future__ import annotations

from ..params import NUMBER_OR_LIST, Param
from .base import CATALOG, lookup
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


def op_help(name: str) -> str | None:
    """Full help for one op (by name or alias) or combinator, or None if there is no such."""
    op = lookup(name)
    if op is None:
        return combinator_help(name)
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
