"""The app's version for installers, read from pyproject.toml so it is written in one place only."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def app_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The [project] version in pyproject.toml."""
    import tomllib

    with pyproject.open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


if __name__ == "__main__":
    print(app_version())
