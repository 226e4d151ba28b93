"""Shared fixtures: a private Sift home per test and an engine over the fake embedder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # spawned parse workers and helper scripts import `tests.…`
    sys.path.insert(0, str(ROOT))

from engine.embed import FakeEmbedder  # noqa: E402
from engine.engine import Engine  # noqa: E402


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """No test ever touches the user's real Sift data or settings."""
    home = tmp_path / "sift-home"
    monkeypatch.setenv("SIFT_HOME", str(home))
    for var in ("SIFT_DATA_DIR", "SIFT_CACHE_DIR", "SIFT_CONFIG_DIR", "SIFT_LOG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def home(_private_home) -> Path:
    return _private_home


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def make_engine(home, fake_embedder):
    """Engines over the test's home with the fake embedder; parsing in-process for speed."""
    opened: list[Engine] = []

    def make(**config) -> Engine:
        engine = Engine.open(home, embedder=fake_embedder)
        engine.update_config(parse_workers=0, **config)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder
