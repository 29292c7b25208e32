"""Malformed annotation files: every one reads cleanly or is refused with a clear error.

A few hundred mutations (fixed seeds) of valid YOLO, VOC, regions and COCO files go
through ``AnnotationSource`` as a run reads them. Each must give boxes inside the image
or raise ``AnnotationError`` naming the file (and line or key), or for the one COCO file
of a folder, a ``UsageError`` naming it (the run stops before any work) -- never any
other exception. The files that crashed the reader before are pinned by name below.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from augcli.annotations import AnnotationSource
from augcli.errors import UsageError
from augcli.formats import AnnotationError, AnnotationSpec

from .conftest import invoke, photo_like, save, write_recipe

WIDTH, HEIGHT = 64, 48

VALID = {
    "yolo": "0 0.5 0.5 0.25 0.5\n1 0.25 0.25 0.1 0.1\n",
    "voc": ("<annotation><filename>a.png</filename><size><width>64</width>"
            "<height>48</height><depth>3</depth></size><object><name>cat</name>"
            "<difficult>0</difficult><bndbox><xmin>4</xmin><ymin>5</ymin><xmax>30</xmax>"
            "<ymax>40</ymax></bndbox></object><object><name>dog</name><bndbox><xmin>1</xmin>"
            "<ymin>2</ymin><xmax>60</xmax><ymax>44</ymax></bndbox></object></annotation>\n"),
    "regions": json.dumps({"regions": [
        {"tagName": "cat", "left": 0.1, "top": 0.1, "width": 0.5, "height": 0.4},
        {"tagName": "dog", "left": 0.5, "top": 0.5, "width": 0.2, "height": 0.2}]}),
    "coco": json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 20, 30],
                         "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [1, 2, 50, 40]}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}),
}

# Values dropped into the files in place of a number, a name or a whole value.
ODD_TEXT = ["nan", "inf", "-inf", "1e400", "-1e400", "1e308", "-0", "0", "-5", "1" * 5000,
            "²", "١", "0x10", "1_0", "", " ", "\x00", "\x1b[31m", "caf\u00e9", "\ud800",
            "9" * 30, "1.5", "true", "null", "\u2028", "\x85"]
ODD_JSON = [None, True, False, [], {}, [1, 2], {"a": 1}, "1", "", float("nan"), float("inf"),
            10**400, -(10**30), 0, -1, 1e308, "\x07", "a\nb", [[[[1]]]], 1.0, 2**63]


def mutations(text: str, rng: random.Random) -> bytes:
    """One malformed variant of a file's bytes."""
    data = text.encode("utf-8")
    kind = rng.randrange(12)
    if kind == 0:
        return data[:rng.randrange(len(data) + 1)]  # truncated
    if kind == 1:  # bit flips
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(flipped))
            flipped[position] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    if kind == 2:
        return b""
    if kind == 3:
        return b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")  # BOM, CRLF
    if kind == 4:
        return data + bytes([rng.randrange(128, 256) for _ in range(3)])  # not UTF-8
    if kind == 5:
        return b"\xff\xfe" + text.encode("utf-16-le")  # UTF-16 with its BOM
    if kind == 6:  # a number, name or value swapped for an odd one (text level)
        tokens = [t for t in _tokens(text) if t]
        token = rng.choice(tokens)
        return text.replace(token, rng.choice(ODD_TEXT), 1).encode("utf-8", "surrogatepass")
    if kind == 7:
        return data * rng.randint(2, 3)  # repeated: duplicate ids, names
    if kind == 8:  # deep nesting
        depth = rng.choice([50, 5000, 100_000])
        return (("[" * depth + "]" * depth) if rng.random() < 0.5 else
                ("<a>" * depth + "</a>" * depth)).encode()
    if kind == 9:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if kind == 10:  # an extra column / element / key
        return (text.replace("\n", " 0.3\n", 1) if "\n" in text[:-1] else text + " 7").encode()
    return data.replace(b"0.", b"-0.", 1).replace(b">4<", b">40<", 1)  # flipped boxes


def _tokens(text: str) -> list:
    import re

    return re.findall(r"[A-Za-z_]+|-?\d+(?:\.\d+)?", text)


def json_mutation(document, rng: random.Random):
    """A JSON document with one value (anywhere) replaced, or one key removed."""
    document = json.loads(json.dumps(document))
    paths = list(_json_paths(document, ()))
    path = rng.choice(paths)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(ODD_JSON)
    return document


def _json_paths(value, path):
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _json_paths(item, (*path, index))


def _cases(fmt: str, count: int, seed: int):
    rng = random.Random(seed)
    for number in range(count):
        if fmt in ("regions", "coco") and number % 2:
            document = json_mutation(json.loads(VALID[fmt]), rng)
            yield json.dumps(document, allow_nan=True).encode()
        else:
            yield mutations(VALID[fmt], rng)


def read(tmp_path, fmt: str, data: bytes, classes: bytes | None = b"cat\ndog\n"):
    """Boxes of ``a.png`` with ``data`` as its annotation file, as a run reads them."""
    image = tmp_path / "a.png"
    if not image.exists():
        save(image, photo_like(HEIGHT, WIDTH))
    if fmt == "coco":
        (tmp_path / "coco.json").write_bytes(data)
        source = AnnotationSource(AnnotationSpec("coco", tmp_path / "coco.json"), tmp_path)
    else:
        if fmt == "yolo" and classes is not None:
            (tmp_path / "classes.txt").write_bytes(classes)
        (tmp_path / f"a{_EXT[fmt]}").write_bytes(data)
        source = AnnotationSource(AnnotationSpec(fmt), tmp_path)
    return source.read("a.png", image)


_EXT = {"yolo": ".txt", "voc": ".xml", "regions": ".json"}


def _check(tmp_path, fmt: str, data: bytes) -> str:
    """'ok' or 'refused'; fails the test on any other outcome."""
    try:
        boxes = read(tmp_path, fmt, data)
    except AnnotationError as exc:
        assert exc.path.endswith(("a.txt", "a.xml", "a.json", "coco.json")), exc
        assert exc.reason and "Traceback" not in str(exc)
        return "refused"
    except UsageError as exc:
        assert fmt in ("coco", "yolo") and ("coco.json" in str(exc) or "classes.txt" in str(exc))
        return "refused"
    for box in boxes.boxes:
        assert all(math.isfinite(v) for v in (box.x0, box.y0, box.x1, box.y1))
        assert 0 <= box.x0 < box.x1 <= WIDTH and 0 <= box.y0 < box.y1 <= HEIGHT
        assert box.label and box.label.isprintable()
    return "ok"


@pytest.mark.parametrize("fmt, seed", [("yolo", 1), ("voc", 2), ("regions", 3), ("coco", 4)])
def test_mutated_files_read_cleanly_or_are_refused_clearly(tmp_path, fmt, seed):
    outcomes = [_check(tmp_path, fmt, data) for data in _cases(fmt, 120, seed)]
    assert "refused" in outcomes and "ok" in outcomes  # the mutations reach both outcomes


# The malformed files that crashed the reader (a traceback instead of an error naming the
# file), each pinned as found by the fuzzing above.
CRASHERS = {
    "yolo class in superscript digits": ("yolo", "² 0.5 0.5 0.2 0.2\n", "class must be"),
    "yolo class of 5000 digits": ("yolo", "1" * 5000 + " 0.5 0.5 0.2 0.2\n", "class "),
    "regions nested 100,000 deep": ("regions", "[" * 100_000 + "]" * 100_000, "nested"),
    "coco nested 100,000 deep": ("coco", "[" * 100_000 + "]" * 100_000, "nested"),
    "regions left of 400 digits": (
        "regions", VALID["regions"].replace("0.1,", "1" + "0" * 400 + ",", 1), "left"),
    "coco bbox of 400 digits": ("coco", VALID["coco"].replace("[4, 5", "[4" + "0" * 400 + ", 5"),
                                "bbox"),
    "regions number of 5000 digits": (
        "regions", VALID["regions"].replace("0.1,", "1" * 5000 + ",", 1), "digits"),
    "coco category_id a list": ("coco", VALID["coco"].replace('"category_id": 1',
                                                              '"category_id": [1]'),
                                "category_id"),
    "coco category_id an object": ("coco", VALID["coco"].replace('"category_id": 2',
                                                                 '"category_id": {"a": 1}'),
                                   "category_id"),
    "regions tagName with a control character": (
        "regions", VALID["regions"].replace('"cat"', '"c\\u001bat"'), "tagName"),
    "coco category name with a control character": (
        "coco", VALID["coco"].replace('"name": "cat"', '"name": "ca\\nt"'), "name"),
}


@pytest.mark.parametrize("case", list(CRASHERS))
def test_a_file_that_crashed_the_reader_is_refused_naming_it(tmp_path, case):
    fmt, text, words = CRASHERS[case]
    with pytest.raises((AnnotationError, UsageError), match=words) as caught:
        read(tmp_path, fmt, text.encode("utf-8"))
    assert ("coco.json" if fmt == "coco" else f"a{_EXT[fmt]}") in str(caught.value)


# VOC flags that crashed the reader: not 0/1, so they are carried as the text they are.
VOC_FLAG_CRASHERS = {
    "voc difficult in superscript digits": ("<difficult>²</difficult>", ("difficult", "²")),
    "voc truncated of 5000 digits": (f"<truncated>{'1' * 5000}</truncated>",
                                     ("truncated", "1" * 5000)),
}


@pytest.mark.parametrize("case", list(VOC_FLAG_CRASHERS))
def test_a_voc_flag_that_crashed_the_reader_is_carried_as_text(tmp_path, case):
    element, extra = VOC_FLAG_CRASHERS[case]
    text = VALID["voc"].replace("<difficult>0</difficult>", element)
    boxes = read(tmp_path, "voc", text.encode("utf-8")).boxes
    assert [box.extra for box in boxes] == [(extra,), ()]


def test_a_run_with_some_malformed_files_fails_those_and_writes_the_rest(tmp_path):
    folder = tmp_path / "in"
    good = {"g1": "0 0.5 0.5 0.4 0.4\n", "g2": "1 0.3 0.3 0.2 0.2\n", "g3": ""}
    bad = {"b1": "² 0.5 0.5 0.2 0.2\n", "b2": "0 nan 0.5 0.2 0.2\n",
           "b3": "0 0.5 0.5 0.2\n", "b4": "0 5 5 0.2 0.2\n"}
    for index, (stem, text) in enumerate({**good, **bad}.items()):
        save(folder / f"{stem}.png", photo_like(HEIGHT, WIDTH, seed=index))
        (folder / f"{stem}.txt").write_text(text, encoding="utf-8")
    (folder / "b5.png").write_bytes((folder / "g1.png").read_bytes())
    (folder / "b5.txt").write_bytes(b"\xff\xfe0 0.5 0.5 0.2 0.2\n")
    (folder / "classes.txt").write_text("cat\ndog\n", encoding="utf-8")
    recipe = write_recipe(tmp_path, """\
        input: in
        output: out
        annotations: {format: yolo}
        variants:
          flip: {ops: [{fliplr: {p: 1}}]}
        """)
    result = invoke("run", str(recipe), "-w", "1", "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    failed = sorted(line for line in result.output.splitlines() if line.startswith("failed:"))
    assert [line.split()[1].rsplit("/", 1)[-1] for line in failed] == [
        "b1.txt:1:", "b2.txt:1:", "b3.txt:1:", "b4.txt:1:", "b5.txt:"], failed
    written = sorted(path.name for path in (tmp_path / "out").glob("*_flip_1.*"))
    assert written == [f"{stem}_flip_1.{ext}" for stem in good for ext in ("png", "txt")]
