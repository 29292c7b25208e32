"""Folder checks."""

import pytest

from augcli.errors import UsageError
from augcli.jobs import check_folders


def test_input_inside_output_is_refused(tmp_path):
    (tmp_path / "out" / "in").mkdir(parents=True)
    with pytest.raises(UsageError, match="input folder .* is inside the output folder"):
        check_folders(tmp_path / "out" / "in", tmp_path / "out")
