"""``python -m augcli``: the same command line as ``augcli``."""

from augcli.cli import main

if __name__ == "__main__":
    main(prog_name="augcli")
