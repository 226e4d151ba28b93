"""Shared fixtures: a private Sift home per test and an engine over the fake embedder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # spawned parse workers and helper scripts import `tests.…`
    sys.path.insert(0, str(ROOT))

from engine.embed import FakeEmbedder  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.selftest import is_local  # noqa: E402


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # PySide6 on Python 3.11 can abort during the interpreter's final garbage collection
    # ("Fatal Python error: bool_dealloc"), after every test has run and been reported, turning
    # a green run red. The desktop app skips that teardown the same way (desktop/__main__.py).
    if "PySide6" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(getattr(config, "_sift_exitstatus", 0)))


def pytest_sessionfinish(session, exitstatus):
    session.config._sift_exitstatus = exitstatus


def pytest_configure(config):
    # watchdog 7 warns (harmlessly) when a folder made during a burst is watched twice, printing
    # its whole watch table; engine.watch filters it at import, but pytest resets filters per test.
    config.addinivalue_line("filterwarnings", "ignore:Callback with id:RuntimeWarning")


# -- no network ------------------------------------------------------------------------------------
# Sift never talks to the network. An audit hook (it sees every socket call made through Python,
# whatever library makes it) fails any test that connects or resolves a name beyond this machine.
# Hooks cannot be removed, so one is installed for the session and switched per test.


class _Network:
    active = False
    recording: list[tuple] | None = None  # every socket event, for tests that want none at all
    violations: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if not event.startswith("socket.") or not _Network.active:
        return
    if _Network.recording is not None:
        _Network.recording.append((event, args[1:] if event == "socket.__new__" else args[-1:]))
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1]
        local = not isinstance(address, tuple) or is_local(address[0])  # str/bytes: a Unix socket
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        local = is_local(args[0])
    else:
        return
    if not local:
        _Network.violations.append(f"{event} to {args[0] if event.startswith('socket.get') else args[1]}")
        raise ConnectionRefusedError(f"Sift's tests allow no network access ({event})")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _no_network():
    """Fail the test if anything in it reached for a non-loopback address (even if it caught the error)."""
    _Network.violations = []
    _Network.active = True
    try:
        yield
    finally:
        _Network.active = False
    if _Network.violations:
        pytest.fail("the test used the network: " + "; ".join(_Network.violations[:5]), pytrace=False)


@pytest.fixture
def socket_events():
    """A list that collects every socket operation made in this process during the test."""
    events: list[tuple] = []
    _Network.recording = events
    try:
        yield events
    finally:
        _Network.recording = None


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """No test ever touches the user's real Sift data or settings."""
    home = tmp_path / "sift-home"
    monkeypatch.setenv("SIFT_HOME", str(home))
    for var in ("SIFT_DATA_DIR", "SIFT_CACHE_DIR", "SIFT_CONFIG_DIR", "SIFT_LOG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # No int8 model prepared by setup: the automatic backend runs torch unless a test asks for
    # the prepared one (the prepared_int8 fixture).
    monkeypatch.setenv("SIFT_PREPARED_DIR", str(tmp_path / "prepared"))
    return home


@pytest.fixture
def prepared_int8(monkeypatch) -> Path:
    """The int8 model that setup (dev.py) prepared in this environment, for the automatic backend."""
    from engine.embed import int8_runs_here

    where = Path(sys.prefix) / "share" / "sift" / "openvino"
    if not int8_runs_here():
        pytest.skip("OpenVINO int8 is the automatic backend only on x86 CPUs with OpenVINO and NNCF")
    assert any(where.glob("*/int8-check.json")), f"setup (python3 dev.py setup) prepares the int8 model in {where}"
    monkeypatch.setenv("SIFT_PREPARED_DIR", str(where))
    return where


@pytest.fixture
def home(_private_home) -> Path:
    return _private_home


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def make_engine(home, fake_embedder):
    """Engines over the test's home with the fake embedder; parsing in-process for speed."""
    from tests.helpers import Engines

    make = Engines(home, embedder=fake_embedder)
    yield make
    make.close()


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder


@pytest.fixture
def run_cli(monkeypatch, fake_embedder, capsys):
    """`run_cli("search", "x")` → (exit code, stdout, stderr), with every Engine on the fake embedder.

    `run_cli.opened` lists the data folders of the engines the commands opened.
    """
    from engine import cli

    real_open = Engine.open
    opened: list[Path] = []

    def open_with_fake(home=None, **kw):
        engine = real_open(home, embedder=fake_embedder)
        engine.update_config(parse_workers=0)
        opened.append(engine.paths.data)
        return engine

    monkeypatch.setattr(Engine, "open", staticmethod(open_with_fake))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    run.opened = opened
    return run
