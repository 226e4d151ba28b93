"""Small helpers for writing test files."""

from __future__ import annotations

import os
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path, seconds: float = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


def wait_for(condition, timeout: float = 30.0, interval: float = 0.02) -> bool:
    """Poll condition until it is true or timeout passes; returns its last value (never sleep-and-hope)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


class Engines:
    """Opens engines over one test's home, parsing in-process for speed; `close()` closes them all."""

    def __init__(self, home: Path, **open_options) -> None:
        self.home, self.open_options = home, open_options
        self.opened: list = []

    def __call__(self, **config):
        from engine.engine import Engine

        engine = Engine.open(self.home, **self.open_options)
        engine.update_config(**{"parse_workers": 0, **config})
        self.opened.append(engine)
        return engine

    def indexed(self, folder: Path, **config):
        """A new engine searching `folder`, indexed."""
        engine = self(**config)
        engine.add_folder(folder)
        engine.index()
        return engine

    def close(self) -> None:
        for engine in self.opened:
            engine.close()

