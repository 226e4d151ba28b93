"""The installation self-test (`sift self-test`, `sift-desktop --self-test`) and the frozen app's runtime hook."""

from __future__ import annotations

import functools
import os
import runpy
import sys
from pathlib import Path

import pytest

from engine import cli, selftest
from engine.embed import FakeEmbedder
from engine.paths import samples_dir

ROOT = Path(__file__).resolve().parents[2]
# With the fake embedder only words match, so the fast tests search a word the descaling page has.
FAKE_QUERY = "descaling"


_run_self_test = selftest.run_self_test  # the real one, also where tests replace it with fake_run


def fake_run(**kwargs):
    return _run_self_test(embedder=FakeEmbedder(), query=FAKE_QUERY, **kwargs)


def test_self_test_indexes_samples_in_a_worker_and_finds_the_known_page(home):
    lines: list[str] = []
    report = fake_run(out=lines.append)
    assert report.ok, lines
    text = "\n".join(lines)
    assert f"indexed {len(selftest.SAMPLE_FILES)} of {len(selftest.SAMPLE_FILES)} files with 1 parse worker" in text
    assert "first hit espresso-machine-manual.pdf p.3" in text
    assert "no network connection attempted" in text
    assert lines[-1].startswith("PASSED")
    assert not home.exists()  # a temporary home: the user's own (here the test's) is never touched


def test_missing_sample_fails_with_its_name(tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "espresso-machine-manual.pdf").write_bytes((samples_dir() / "espresso-machine-manual.pdf").read_bytes())
    lines: list[str] = []
    report = fake_run(samples=samples, out=lines.append)
    assert not report.ok
    assert lines[1].startswith("FAIL ") and "bicycle-maintenance.txt" in lines[1] and "reinstall" in lines[1]


def test_wrong_hit_fails_and_says_what_came_instead():
    lines: list[str] = []
    report = fake_run(expected_file="sourdough-bread.md", expected_page=None, out=lines.append)
    assert not report.ok
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert len(failed) == 1
    assert "expected sourdough-bread.md first, got espresso-machine-manual.pdf p.3" in failed[0]
    assert lines[-1].startswith("FAILED")


def test_unreadable_sample_fails_the_indexing_check(tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "broken.pdf").write_bytes(b"%PDF-1.7 this is not a PDF")
    lines: list[str] = []
    report = fake_run(samples=samples, files=("broken.pdf",), out=lines.append)
    assert not report.ok
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert "indexed 0 of 1 files" in failed[0] and "could not index broken.pdf" in failed[0]


def test_network_watch_records_only_attempts_beyond_this_machine():
    watch = selftest._NetworkWatch
    watch.start()
    try:
        watch._audit("socket.connect", (None, ("127.0.0.1", 8080)))
        watch._audit("socket.connect", (None, "/tmp/some.sock"))
        watch._audit("socket.getaddrinfo", ("localhost", 80, 0, 0, 0, 0))
        watch._audit("socket.getaddrinfo", ("huggingface.co", 443, 0, 0, 0, 0))
        watch._audit("socket.connect", (None, ("203.0.113.7", 443)))
        watch._audit("open", ("/etc/hosts", "r", 0))
    finally:
        attempts = watch.stop()
    assert attempts == ["socket.getaddrinfo for huggingface.co", "socket.connect to 203.0.113.7"]
    watch._audit("socket.connect", (None, ("203.0.113.7", 443)))  # switched off: not recorded
    assert watch.attempts == attempts


def test_cli_self_test_needs_no_user_home(monkeypatch, capsys, home):
    monkeypatch.setattr(selftest, "run_self_test", functools.partial(fake_run))
    assert cli.main(["self-test"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out
    assert not home.exists()  # the command never opened an engine over the user's home


def test_cli_self_test_failure_exits_1_with_a_message(monkeypatch, capsys):
    monkeypatch.setattr(selftest, "run_self_test",
                        functools.partial(fake_run, expected_file="sourdough-bread.md", expected_page=None))
    assert cli.main(["self-test"]) == 1
    assert "self-test failed" in capsys.readouterr().err


@pytest.fixture
def restored_environ():
    """The hook sets variables with os.environ.setdefault; put the environment back as it was."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _run_runtime_hook(monkeypatch, argv: list[str]) -> dict[str, str]:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "TORCH_HOME",
                "SENTENCE_TRANSFORMERS_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "packaging" / "hooks" / "rthook_sift.py"))
    return dict(os.environ)


def test_runtime_hook_makes_the_app_offline_with_caches_in_sifts_own_folder(monkeypatch, home, restored_environ):
    env = _run_runtime_hook(monkeypatch, ["sift-desktop"])
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HF_HOME"] == str(home.resolve() / "cache" / "huggingface")
    assert env["TORCH_HOME"] == str(home.resolve() / "cache" / "torch")


def test_runtime_hook_follows_home_argument_and_keeps_values_already_set(monkeypatch, tmp_path, restored_environ):
    monkeypatch.setenv("TORCH_HOME", "/opt/torch-cache")
    other = tmp_path / "other"
    monkeypatch.setattr(sys, "argv", ["sift", "--home", str(other), "index"])
    runpy.run_path(str(ROOT / "packaging" / "hooks" / "rthook_sift.py"))
    assert os.environ["TORCH_HOME"] == "/opt/torch-cache"
    assert os.environ["SENTENCE_TRANSFORMERS_HOME"].startswith(str(other.resolve()))


def test_runtime_hook_lets_the_reranker_download_reach_the_hub(monkeypatch, restored_environ):
    env = _run_runtime_hook(monkeypatch, ["sift", "reranker", "download", "-y"])
    assert "HF_HUB_OFFLINE" not in env and "TRANSFORMERS_OFFLINE" not in env


def test_packaging_version_is_the_projects():
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        from version import app_version
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    import tomllib

    assert app_version() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.slow
def test_self_test_with_the_bundled_model_passes():
    lines: list[str] = []
    report = selftest.run_self_test(out=lines.append)
    assert report.ok, lines
    assert any("first hit espresso-machine-manual.pdf p.3" in line for line in lines)
