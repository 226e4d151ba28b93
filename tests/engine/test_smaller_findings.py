"""The smaller findings of issue 18: encodings, escaped CLI output, unlistable folders, modes, excludes, Sift's own files."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys

import pytest

from engine import indexer
from engine.config import DEFAULT_EXCLUDES, load_config
from engine.errors import Cancelled
from engine.parse.text import decode
from engine.paths import resolve_paths
from engine.types import FileStatus
from tests.helpers import write

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes, links and names")

# -- encodings -------------------------------------------------------------------------------------

PROSE = "Café menus list crème brûlée, naïve rosé and a smörgåsbord of pâtés.\n" * 40


def test_utf16_without_a_bom_is_text():
    assert decode(PROSE.encode("utf-16-le")) == PROSE
    assert decode(PROSE.encode("utf-16-be")) == PROSE


def test_utf8_with_a_few_bad_bytes_stays_utf8():
    data = PROSE.encode("utf-8")
    data = data[:500] + b"\xff\xfe" + data[500:2000] + b"\x81" + data[2000:]
    text = decode(data)
    assert text.count("\ufffd") == 3
    assert "crème brûlée" in text and "Ã" not in text  # no mojibake anywhere


def test_legacy_text_is_still_detected():
    assert decode(PROSE.encode("cp1252")) == PROSE


# -- the CLI never prints a name or a snippet raw -----------------------------------------------------


@posix_only
def test_names_and_snippets_are_escaped_in_cli_output(make_engine, docs, run_cli):
    forged = docs / "real.txt\n 2. \u2215etc\u2215shadow  [0.999].txt"  # (U+2215: a slash look-alike)
    write(forged, "espresso descaling\x1b[2J with a \u202eplain trick\nsecond line")
    write(docs / "fdp.\u202etxt.exe.txt", "espresso descaling guide")
    engine = make_engine()
    engine.add_folder(docs)
    engine.index()
    engine.close()
    code, out, err = run_cli("search", "espresso descaling")
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out
    assert not any(line.startswith(" 2. \u2215etc") for line in out.splitlines())
    assert "real.txt\\n 2. \u2215etc" in out and "\\u202e" in out and "\\x1b[2J" in out


# -- a folder that cannot be listed --------------------------------------------------------------------


def test_a_folder_that_cannot_be_listed_is_in_status(make_engine, docs, monkeypatch, run_cli):
    write(docs / "ok.txt", "readable words")
    write(docs / "locked" / "hidden.txt", "words nobody sees")
    engine = make_engine()
    engine.add_folder(docs)
    real = indexer._list_folder

    def refusing(folder, **kwargs):  # as for a folder of another user (root reads anything)
        if folder == str(docs / "locked"):
            raise PermissionError(errno.EACCES, "Permission denied", folder)
        return real(folder, **kwargs)

    monkeypatch.setattr(indexer, "_list_folder", refusing)
    engine.index()
    problems = {p.path: p for p in engine.status().problems}
    locked = problems[str(docs / "locked")]
    assert locked.status == FileStatus.UNREADABLE and "cannot be listed (Permission denied)" in locked.reason
    engine.close()
    code, out, err = run_cli("status")
    assert str(docs / "locked") in out
    monkeypatch.setattr(indexer, "_list_folder", real)
    code, out, err = run_cli("index", "-q")
    code, out, err = run_cli("status")
    assert str(docs / "locked") not in out  # listable again: forgotten


# -- modes -----------------------------------------------------------------------------------------------


@posix_only
def test_existing_and_intermediate_folders_are_made_private(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        home = tmp_path / "new-home"                 # made by Sift, with its parents: 0700
        paths = resolve_paths({"SIFT_HOME": str(home)}).ensure()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        paths.data.chmod(0o755)                       # made 0755 by an older Sift
        paths.ensure()
        assert stat.S_IMODE(paths.data.stat().st_mode) == 0o700
        logs = tmp_path / "state" / "Sift" / "log"   # like ~/.local/state/Sift/log
        monkeypatch.setenv("SIFT_LOG_DIR", str(logs))
        resolve_paths({"SIFT_HOME": str(home), "SIFT_LOG_DIR": str(logs)}).ensure()
        assert stat.S_IMODE((tmp_path / "state" / "Sift").stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    finally:
        os.umask(old)


def test_an_index_path_that_is_a_file_is_a_clear_error(home, run_cli):
    (home / "data").mkdir(parents=True)
    (home / "data" / "index").write_text("not a folder")
    code, out, err = run_cli("status")
    assert code == 1 and "Traceback" not in err and "should be a folder" in err


# -- what is never indexed by default --------------------------------------------------------------------


def test_secrets_and_sifts_own_files_are_not_indexed(make_engine, docs, home):
    write(docs / "notes.txt", "ordinary notes")
    for name in ("credentials.json", "secrets.json", "client_secret_123.json", ".aws/config.json",
                 ".docker/config.json", ".kube/config.yaml", ".config/gcloud/application_default_credentials.json",
                 ".bash_history", "app.keystore"):
        write(docs / name, '{"token": "hunter2"}')
    engine = make_engine(include_hidden=True)
    engine.add_folder(home.parent)  # holds docs and Sift's own home: its settings.json among others
    engine.index()
    indexed = {os.path.relpath(p, home.parent) for p in engine.catalog.files()}
    assert indexed == {os.path.join("docs", "notes.txt")}


def test_old_settings_get_the_new_default_excludes(tmp_path):
    from engine.config import _ADDED_IN_2

    old_defaults = [p for p in DEFAULT_EXCLUDES if p not in _ADDED_IN_2]
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "exclude": old_defaults + ["*.log"]}))
    assert set(load_config(path).exclude) == set(DEFAULT_EXCLUDES) | {"*.log"}
    path.write_text(json.dumps({"schema_version": 1, "exclude": ["*.log"]}))  # the user's own list: kept
    assert load_config(path).exclude == ("*.log",)


# -- Ctrl+C while a huge text is chunked -----------------------------------------------------------------


def test_a_cancel_stops_the_chunking_of_a_huge_text(make_engine, docs, fake_embedder, monkeypatch):
    write(docs / "huge.txt", "word " * 400_000)  # 2 M characters: 100 blocks to tokenize
    engine = make_engine()
    engine.add_folder(docs)
    calls = []
    real = fake_embedder.token_offsets

    def token_offsets(text):
        calls.append(len(text))
        if len(calls) == 2:
            engine.cancel()  # Ctrl+C, quit, pause: while the producer is in the middle of the text
        return real(text)

    monkeypatch.setattr(fake_embedder, "token_offsets", token_offsets)
    with pytest.raises(Cancelled):
        engine.index()
    assert len(calls) <= 3
