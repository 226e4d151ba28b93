"""Settings: defaults in one place, a schema version, validation, migration, atomic save."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.atomic import write_json
from engine.errors import ConfigError

SCHEMA_VERSION = 3

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
DEVICES = ("auto", "cpu", "cuda", "mps")
VECTOR_DTYPES = ("i8", "f16", "f32", "b1")
BACKENDS = ("auto", "torch", "openvino")  # auto: OpenVINO int8 on x86 CPUs where a checked model is prepared, else torch
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")  # auto: fp16 on CUDA, bf16 on CPUs with native bf16;
# int8: OpenVINO only, the model quantized by NNCF (bench/openvino_int8.py)

# Excluded by default since settings schema 2: cloud and tool credentials, shell histories.
_ADDED_IN_2 = (
    "credentials.json", "credentials.*", "secrets.json", "secrets.*", "*secret*.json", "client_secret*",
    "service-account*.json", "application_default_credentials.json", "*.keystore", "*.jks",
    ".aws", ".azure", ".docker", ".kube", "gcloud", ".terraform.d", ".vault-token", ".git-credentials",
    ".npmrc", ".pypirc", ".bash_history", ".zsh_history", "*_history", ".histfile",
)

# Never indexed unless the user removes them from the list. A pattern without "/" matches any
# single path component (file or folder name); one with "/" matches the path below the root.
DEFAULT_EXCLUDES = (
    # tool and build clutter
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".cache", ".Trash*", "$RECYCLE.BIN",
    "*.tmp", "*.swp", "~$*", ".~lock.*",
    # private places: keys, passwords, secrets, browser profiles
    ".ssh", ".gnupg", ".password-store", ".env", ".env.*", "*.pem", "*.key", "*.p12",
    "*.pfx", "id_rsa*", "id_ed25519*", "id_ecdsa*", ".netrc", ".pgpass", "*.kdbx",
    ".mozilla", ".thunderbird", "google-chrome", "chromium", "BraveSoftware",
    *_ADDED_IN_2,
)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a user can set. Change it with `dataclasses.replace` and `save_config`."""

    schema_version: int = SCHEMA_VERSION
    folders: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    include_hidden: bool = False
    max_file_mb: int = 100
    max_text_mb: int = 8                  # text one file may yield (UTF-8); the rest is not indexed
    max_chunks_per_file: int = 10_000     # passages one file may yield (~7 MB of prose at 200 tokens)
    model: str = BUNDLED_MODEL            # "bundled:…", a model folder path, or a hub name
    device: str = "auto"                  # auto picks CUDA, then Apple MPS, then CPU
    vector_dtype: str = "i8"              # precision of the USearch index; catalog keeps f16
    chunk_tokens: int = 200               # capped at the model's max_seq_length minus specials
    chunk_overlap: int = 32
    parse_workers: int = 2                # worker processes; 0 parses in-process (no timeout)
    parse_timeout_s: float = 30.0         # a file's processor seconds (wall seconds off Linux); tried twice
    reranker: str = ""                    # a cross-encoder model folder; "" means none installed
    use_reranker: bool = True             # stage 2 on/off, when one is installed
    embed_batch_size: int = 0             # 0 picks for the device: 16 on CPU, 128 on a GPU
    backend: str = "auto"                 # how the embedding model runs: auto, torch, or openvino (CPU)
    precision: str = "auto"               # fp32, bf16 (CPU), fp16 (CUDA), or auto: picked per device
    watch: bool = True                    # follow the folders live while Sift runs
    reconcile_interval_min: int = 60      # full rescan this often, since watch events can be lost; 0 = never
    low_priority: bool = True             # background indexing yields the CPU to everything else
    rerank_budget_ms: int = 700           # stage 2's share of a search; depth and truncation fit it; 0 = fixed
    previous_model: str = ""              # what `rollback_model` returns to; "" = nothing yet
    previous_reranker: str = ""           # what `rollback_reranker` returns to ("none": no reranker)
    learn_from_clicks: bool = True        # opened results lift what they were opened for (engine/learn.py)

    def validate(self) -> "Config":
        problems = []
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.backend not in BACKENDS:
            problems.append(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.vector_dtype not in VECTOR_DTYPES:
            problems.append(f"vector_dtype must be one of {', '.join(VECTOR_DTYPES)}, not {self.vector_dtype!r}")
        if not 16 <= self.chunk_tokens <= 8192:
            problems.append(f"chunk_tokens must be between 16 and 8192, not {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            problems.append("chunk_overlap must be at least 0 and less than half of chunk_tokens")
        if self.max_file_mb < 1:
            problems.append("max_file_mb must be at least 1")
        if self.max_text_mb < 1 or self.max_chunks_per_file < 1:
            problems.append("max_text_mb and max_chunks_per_file must be at least 1")
        if self.reconcile_interval_min < 0:
            problems.append("reconcile_interval_min must be 0 (never) or more")
        if self.rerank_budget_ms < 0:
            problems.append("rerank_budget_ms must be 0 (no budget) or more")
        if self.parse_workers < 0 or self.parse_timeout_s <= 0 or self.embed_batch_size < 0:
            problems.append("parse_workers must be ≥ 0, parse_timeout_s > 0 and embed_batch_size ≥ 0")
        if problems:
            raise ConfigError("Invalid settings: " + "; ".join(problems) + ". Fix or delete the settings file.")
        return self

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1024 * 1024

    @property
    def max_text_bytes(self) -> int:
        return self.max_text_mb * 1024 * 1024


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring an older settings dict up to SCHEMA_VERSION, one version step at a time."""
    version = raw.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"The settings file is from a newer Sift (schema {version}, this one knows {SCHEMA_VERSION}). "
            "Update Sift, or delete the settings file to start over."
        )
    if version == 1:
        # Schema 2 excludes more secrets by default. Settings saved before hold the old list in
        # full (every setting is saved); one that still has every old default gets the new ones.
        exclude = raw.get("exclude")
        if isinstance(exclude, list) and set(DEFAULT_EXCLUDES) - set(_ADDED_IN_2) <= set(exclude):
            raw["exclude"] = exclude + [p for p in _ADDED_IN_2 if p not in exclude]
        version = 2
    if version == 2:
        # Schema 3's default backend is auto (OpenVINO int8 on x86 CPUs). "torch" was the old
        # default, saved with every other setting, and no window offered another: it becomes auto.
        if raw.get("backend") == "torch":
            raw["backend"] = "auto"
        version = 3
    # Future steps go here: `if version == 3: …; version = 4`.
    raw["schema_version"] = SCHEMA_VERSION
    return raw


def config_from_dict(raw: dict[str, Any]) -> Config:
    raw = _migrate(dict(raw))
    values = {}
    for name, value in raw.items():
        if name not in _FIELDS:
            continue  # settings of a removed feature: ignore rather than refuse to start
        if isinstance(value, list):
            value = tuple(value)
        expected = type(_FIELDS[name].default)
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise ConfigError(f"Invalid settings: {name} must be {expected.__name__}, not {value!r}. "
                              "Fix or delete the settings file.")
        values[name] = value
    return Config(**values).validate()


def config_to_dict(config: Config) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def load_config(path: Path) -> Config:
    """The settings at `path`, or the defaults when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"The settings file {path} is not valid JSON ({exc}). Fix or delete it.") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"The settings file {path} must hold a JSON object. Fix or delete it.")
    return config_from_dict(raw)


def save_config(path: Path, config: Config) -> None:
    """Write settings atomically: a crash leaves the old file or the new one, never half."""
    config.validate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_json(path, config_to_dict(config))
