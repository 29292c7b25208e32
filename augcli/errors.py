"""Errors augcli raises on purpose.

Every error a user can cause is an ``AugcliError``; the CLI turns it into
``Error: <message>`` and the exit code below, never a traceback.
"""

import errno
import reprlib
from pathlib import Path

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

EXCERPT_CHARS = 80  # the most of a bad value a message quotes


class AugcliError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""

    exit_code = EXIT_USAGE


class RecipeError(AugcliError):
    """The recipe is invalid. Holds every problem found, each with its key path."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self):
        if len(self.problems) == 1:
            return f"invalid recipe: {self.problems[0]}"
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"invalid recipe ({len(self.problems)} problems):\n{listed}"


class UsageError(AugcliError):
    """Paths or flags that cannot work together (e.g. output inside input)."""


class OutputError(AugcliError):
    """The output folder cannot be written (read-only, full, not a folder): the run stops.

    Outputs already written and recorded are kept; rerunning the same command
    once the cause is fixed makes the rest.
    """


class ClusterLost(AugcliError):
    """The Dask cluster went away mid-run: the run stops; what finished is kept and a
    rerun on a cluster that is up makes the rest."""


def output_error(path, exc: OSError) -> OutputError:
    """``cannot write out/x.jpg: No space left on device; ...`` from an ``OSError``."""
    reason = exc.strerror or str(exc)
    hint = ""
    if exc.errno in _FULL:
        hint = "; free some space (or raise the file size limit) and rerun the same command"
    elif exc.errno == errno.EACCES:
        hint = ("; this user cannot write there: choose another output folder or make it "
                "writable (in Docker, run with --user \"$(id -u):$(id -g)\")")
    return OutputError(f"cannot write {path}: {reason}{hint}")


# Write errors that stop a run: every later write into the output folder would fail too.
_FULL = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})
STOPS_RUN = _FULL | {errno.EROFS}


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = EXCERPT_CHARS
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8
_SHORT.maxlevel = 3


def excerpt(value) -> str:
    """A value as an error message quotes it: its repr when that is short; else at most
    80 characters of it and its type and size, e.g. ``'aaaa...' (a str of 2,000,000
    characters)``. Never slow and never raises, however large or deep the value."""
    if _small(value):
        text = repr(value)
        if len(text) <= EXCERPT_CHARS:
            return text
    if isinstance(value, int) and not isinstance(value, bool):
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    try:
        text = _SHORT.repr(value)
    except (ValueError, RecursionError):  # e.g. an integer too long to print inside a list
        text = "..."
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS] + "..."
    if isinstance(value, str):
        size = f"{len(value):,} characters"
    elif isinstance(value, (list, tuple, dict, set)):
        size = f"{len(value):,} item{'s' if len(value) != 1 else ''}"
    else:
        return text
    return f"{text} (a {type(value).__name__} of {size})"


def _long(item) -> bool:
    return isinstance(item, str) and len(item) > EXCERPT_CHARS or \
        isinstance(item, int) and item.bit_length() > 200


def _small(value, budget: int = 64) -> bool:
    """Whether a (nested) value has few, short enough parts to repr whole, cheaply."""
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
        elif _long(item):
            return False
    return True


class ImageReadError(AugcliError):
    """One input file could not be decoded; the run reports it and goes on."""

    exit_code = EXIT_SOME_FAILED

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def install_hint(extras: str) -> str:
    """The pip command that adds ``extras`` to augcli where it runs from: its source
    checkout (an editable install, by path, so it works from any folder) or an index."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return f"pip install -e '{root}[{extras}]'"
    return f"pip install 'augcli[{extras}]'"
