"""The app quits within its budget on SIGTERM and loses nothing committed; its single-instance socket is private."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop.app import SHUTDOWN_BUDGET_S, SingleInstance
from engine.paths import resolve_paths
from tests.helpers import write

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_while_a_batch_is_embedding_quits_within_the_budget(tmp_path, docs):
    for i in range(5):
        write(docs / f"note-{i}.txt", f"note {i} about descaling espresso machines")
    home = tmp_path / "child-home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    child = subprocess.Popen([sys.executable, "-m", "tests.desktop.sigterm_child", str(home), str(docs)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 120)
        assert ready and child.stdout.readline().strip() == b"embedding", child.stderr.read1().decode()
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)  # today: the service is waited for 30 s, the embedding thread 60 s
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    assert took < SHUTDOWN_BUDGET_S + 3, f"quit took {took:.1f} s"
    catalog = sqlite3.connect(home / "data" / "catalog.sqlite3")
    try:
        assert catalog.execute("PRAGMA quick_check").fetchone()[0] == "ok"  # the batch in flight rolled back
    finally:
        catalog.close()


@pytest.mark.skipif(sys.platform == "win32", reason="Windows uses a named pipe, private to the session")
def test_the_single_instance_socket_is_in_a_private_folder(qtbot, home, monkeypatch, tmp_path):
    paths = resolve_paths({"SIFT_HOME": str(home)}).ensure()
    squatted = tmp_path / "run"  # a runtime folder anyone may write to: never used
    squatted.mkdir()
    squatted.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(squatted))
    key = SingleInstance.key_for(paths)
    assert os.path.isabs(key) and not key.startswith(str(squatted))
    folder = os.lstat(os.path.dirname(key))
    assert stat.S_ISDIR(folder.st_mode) and stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == os.getuid()
    first, second = SingleInstance(key), SingleInstance(key)
    try:
        assert first.listen()
        with qtbot.waitSignal(first.activated, timeout=10_000) as got:
            assert second.notify_running("quick")
        assert got.args == ["quick"]
    finally:
        first.close()
