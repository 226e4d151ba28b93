"""Fixtures for the GUI tests: offscreen Qt, a real engine over the fake embedder, and no thread left behind."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt makes the QApplication

import pytest  # noqa: E402

from desktop.app import SiftApp  # noqa: E402
from desktop.prefs import Prefs  # noqa: E402
from desktop.tasks import Tasks  # noqa: E402

WAIT_MS = 10_000
SERVICE_OPTIONS = {"quiet_s": 0.0, "root_check_s": 0.2}  # no debounce: tests wait on signals, not time  # generous: a slow CI machine still passes; a hang still fails


class FakeOpener:
    """Records what would have been opened, instead of starting a viewer."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int | None]] = []
        self.revealed: list[str] = []

    def open(self, path: str, page: int | None = None) -> None:
        self.opened.append((path, page))

    def reveal(self, path: str) -> None:
        self.revealed.append(path)


@pytest.fixture(autouse=True)
def no_threads_left():
    """Every test must stop what it started: a worker thread left running fails it."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate()
            if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def tasks():
    """A Tasks of the test's own, its workers joined after."""
    tasks = Tasks()
    yield tasks
    tasks.shutdown()


@pytest.fixture
def engine(make_engine):
    return make_engine()


@pytest.fixture
def opener() -> FakeOpener:
    return FakeOpener()


@pytest.fixture
def make_sift(qtbot, opener):
    """SiftApps over an engine, shut down (threads joined) after the test."""
    made: list[SiftApp] = []

    def make(engine, *, use_tray: bool = False, start: bool = True, index: bool = True,
             use_service: bool | None = None) -> SiftApp:
        sift = SiftApp(engine, opener=opener, use_tray=use_tray, prefs=Prefs(engine.paths.config),
                       use_service=use_service, service_options=SERVICE_OPTIONS)
        qtbot.addWidget(sift.window)
        qtbot.addWidget(sift.quick)
        made.append(sift)
        if start:
            with qtbot.waitSignal(sift.warmed, timeout=WAIT_MS):
                sift.start(index=False)
            if index:
                with qtbot.waitSignal(sift.indexer.finished, timeout=WAIT_MS):
                    sift.indexer.start()
                qtbot.waitUntil(lambda: sift.tasks.is_idle(), timeout=WAIT_MS)
        return sift

    yield make
    for sift in made:
        sift.shutdown()


@pytest.fixture
def sift(make_sift, engine):
    """The app over the bundled samples, indexed and warmed up."""
    return make_sift(engine)


def search(qtbot, window, text: str) -> list:
    """Type `text` into the main window's search box and wait for its results."""
    expected = " ".join(part for part in (text.strip(), window.search.filters) if part)
    with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS, check_params_cb=lambda q, n: q == expected):
        window.query.clear()
        qtbot.keyClicks(window.query, text)
    return window.model.hits
