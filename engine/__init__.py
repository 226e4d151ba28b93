"""Sift's engine: private local document search with no GUI dependency. This is its public API."""

from engine.config import BUNDLED_MODEL, Config
from engine.engine import Engine
from engine.errors import (
    Cancelled,
    CatalogError,
    ConfigError,
    DiskFullError,
    FolderError,
    ModelError,
    ParseError,
    SiftError,
)
from engine.paths import Paths, resolve_paths
from engine.types import (
    FileStatus,
    Hit,
    IndexReport,
    Page,
    ParsedFile,
    Passage,
    Problem,
    Progress,
    StatusReport,
    Why,
    human_size,
)

__all__ = [
    "BUNDLED_MODEL",
    "Cancelled",
    "CatalogError",
    "Config",
    "ConfigError",
    "DiskFullError",
    "Engine",
    "FileStatus",
    "FolderError",
    "Hit",
    "IndexReport",
    "ModelError",
    "Page",
    "ParseError",
    "ParsedFile",
    "Passage",
    "Paths",
    "Problem",
    "Progress",
    "SiftError",
    "StatusReport",
    "Why",
    "human_size",
    "resolve_paths",
]
