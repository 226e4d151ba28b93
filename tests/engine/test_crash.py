"""SIGKILL during indexing never leaves a half-indexed file or an index out of step (fake embedder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "kill_index.py"


def test_random_kills_leave_a_consistent_catalog(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--synthetic", "400", "--rounds", "6", "--fake", "--max-delay", "2",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 of 6 kills left a consistent catalog and index" in result.stdout
    assert "complete" in result.stdout.splitlines()[-2]
