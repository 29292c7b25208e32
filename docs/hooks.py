"""MkDocs hook: fills the site's generated parts from the code, so they cannot drift.

A page says where with a marker on a line of its own:

* ``<!-- augcli:ops FAMILY -->``: every op that family registers (``augcli.ops.OPS_BY_FAMILY``),
  with what ``augcli ops NAME`` prints (summary, kind, aliases, parameters, example,
  details), its gallery picture and the recipe that drew it (``docs/gallery.py``);
* ``<!-- augcli:ops-index -->``: one line per op, linking its family page;
* ``<!-- augcli:combinators -->``: the combinators, from ``augcli.ops.combinators``;
* ``<!-- augcli:changelog -->``: CHANGELOG.md.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from augcli.ops import CATALOG, OPS_BY_FAMILY
from augcli.ops.combinators import COMBINATORS
from augcli.ops.help import _default_text, op_kind

DOCS = Path(__file__).resolve().parent
TABLE = ["| parameter | default | accepts | what it does |", "| --- | --- | --- | --- |"]
MARKER = re.compile(r"^<!-- augcli:([a-z-]+)(?: ([a-z_]+))? -->$", re.MULTILINE)


def _gallery():
    spec = importlib.util.spec_from_file_location("augcli_docs_gallery", DOCS / "gallery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def op_entry(name: str, gallery) -> str:
    """One op's reference: the registry's data, its picture and the recipe behind it."""
    op = CATALOG[name]
    lines = [f"## `{name}`", "", op.summary, "", f"**Kind:** {op_kind(op)}."]
    if op.aliases:
        lines += ["", "**Aliases:** " + ", ".join(f"`{alias}`" for alias in op.aliases)]
    if op.params:
        lines += ["", *TABLE]
        lines += [f"| `{p.name}` | `{_cell(_default_text(p))}` | {_cell(p.describe_type())} | "
                  f"{_cell(p.doc)} |" for p in op.params]
    lines += ["", "Example:", "", "```yaml", op.example, "```"]
    if op.details is not None:
        lines += ["", "??? note \"More from `augcli ops " + name + "`\"", ""]
        lines += ["    ```text"] + [f"    {line}" for line in op.details().splitlines()]
        lines += ["    ```"]
    recipe = yaml.safe_dump(gallery.recipe(name), sort_keys=False, default_flow_style=None,
                            width=100).rstrip()
    lines += ["", f"![{name} on two sample images at each strength]({name}.png)", "",
              "The picture (`python docs/gallery.py " + name + "`): each sample image, then the "
              "outputs of this recipe, with the boxes and polygons carried as `run` carries "
              "them.", "", "```yaml", recipe, "```", ""]
    return "\n".join(lines)


def ops_index() -> str:
    lines = ["| op | family | what it does |", "| --- | --- | --- |"]
    for family, names in OPS_BY_FAMILY.items():
        for name in names:
            lines.append(f"| [`{name}`]({family}.md#{name}) | {family} | "
                         f"{_cell(CATALOG[name].summary)} |")
    return "\n".join(lines)


def combinators() -> str:
    blocks = []
    for combinator in COMBINATORS.values():
        lines = [f"### `{combinator.name}`", "", combinator.summary, "", *TABLE]
        lines += [f"| `{item.name}` | {'required' if item.default is None else _cell(item.default)}"
                  f" | {_cell(item.accepts)} | {_cell(item.doc)} |" for item in combinator.fields]
        if combinator.note:
            lines += ["", combinator.note]
        lines += ["", "```yaml", combinator.example, "```", ""]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def expand(markdown: str) -> str:
    """The page with every marker replaced by what it stands for."""
    gallery = None

    def replace(match: re.Match) -> str:
        nonlocal gallery
        what, family = match.group(1), match.group(2)
        if what == "ops":
            gallery = gallery or _gallery()
            return "\n".join(op_entry(name, gallery) for name in OPS_BY_FAMILY[family])
        if what == "ops-index":
            return ops_index()
        if what == "combinators":
            return combinators()
        if what == "changelog":
            return (DOCS.parent / "CHANGELOG.md").read_text(encoding="utf-8")
        raise ValueError(f"unknown marker {match.group(0)}")

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown, page, config, files):
    return expand(markdown)
