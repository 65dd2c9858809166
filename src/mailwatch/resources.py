"""Where the packaged templates and migrations live, installed or in a checkout."""

from pathlib import Path


def packaged_dir(name: str) -> Path:
    """Return the folder `name` ("templates" or "migrations") shipped with mailwatch."""
    package = Path(__file__).resolve().parent
    installed = package / f"_{name}"  # the wheel force-includes them under this name
    if installed.is_dir():
        return installed
    return package.parents[1] / name  # a source checkout or an editable install
