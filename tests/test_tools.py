"""The rules the tools keep, run with the tests: ruff, mypy on engine/, and import-linter's contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_ruff_finds_nothing():
    done = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_passes_on_engine():
    # The configuration (files, strictness, what is not followed) is pyproject.toml's [tool.mypy].
    done = _run("mypy", "--cache-dir", str(ROOT / ".mypy_cache"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_are_kept():
    from importlinter.cli import lint_imports

    # Contracts in pyproject.toml's [tool.importlinter]: engine never imports the GUI; its layers point one way.
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
