"""Paths from SIFT_HOME and the environment; settings defaults, validation, migration, atomic save."""

from __future__ import annotations

import json
import stat

import pytest

from engine.config import DEFAULT_EXCLUDES, SCHEMA_VERSION, Config, load_config, save_config
from engine.errors import ConfigError
from engine.paths import resolve_paths


def test_sift_home_holds_everything(tmp_path):
    paths = resolve_paths({"SIFT_HOME": str(tmp_path)})
    assert {paths.data, paths.cache, paths.config, paths.logs} == {tmp_path / d for d in ("data", "cache", "config", "logs")}
    assert paths.catalog.parent == paths.data


def test_specific_variables_beat_sift_home(tmp_path):
    paths = resolve_paths({"SIFT_HOME": str(tmp_path / "h"), "SIFT_CACHE_DIR": str(tmp_path / "c")})
    assert paths.cache == tmp_path / "c" and paths.data == tmp_path / "h" / "data"


def test_platform_dirs_without_overrides():
    paths = resolve_paths({})
    assert "sift" in str(paths.data).lower()


def test_directories_are_private(tmp_path):
    paths = resolve_paths({"SIFT_HOME": str(tmp_path / "h")}).ensure()
    for d in (paths.data, paths.cache, paths.config, paths.logs):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_defaults_when_no_file(tmp_path):
    config = load_config(tmp_path / "settings.json")
    assert config == Config()
    assert config.vector_dtype == "i8" and config.folders == () and ".ssh" in config.exclude


def test_round_trip_and_atomic_save(tmp_path):
    path = tmp_path / "cfg" / "settings.json"
    config = Config(folders=("/a", "/b"), vector_dtype="f16", chunk_tokens=128)
    save_config(path, config)
    assert load_config(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"], "no temp files left behind"


def test_unknown_keys_are_ignored_and_missing_keys_default(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "folders": ["/x"], "retired_setting": 3}))
    config = load_config(path)
    assert config.folders == ("/x",) and config.exclude == DEFAULT_EXCLUDES


def test_settings_without_version_are_migrated(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"folders": ["/x"]}))
    assert load_config(path).schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"schema_version": SCHEMA_VERSION + 1}), "newer Sift"),
    (json.dumps({"vector_dtype": "f64"}), "vector_dtype"),
    (json.dumps({"chunk_tokens": 100, "chunk_overlap": 60}), "chunk_overlap"),
    (json.dumps({"device": "tpu"}), "device"),
    (json.dumps({"max_file_mb": "big"}), "max_file_mb"),
])
def test_bad_settings_say_what_to_do(tmp_path, content, words):
    path = tmp_path / "settings.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        load_config(path)
