"""Errors augcli raises on purpose.

Every error a user can cause is an ``AugcliError``; the CLI turns it into
``Error: <message>`` and the exit code below, never a traceback.
"""

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2


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


class ImageReadError(AugcliError):
    """One input file could not be decoded; the run reports it and goes on."""

    exit_code = EXIT_SOME_FAILED

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
