"""Sift's engine: private local document search with no GUI dependency. This is its public API."""

from engine.config import BUNDLED_MODEL, Config
from engine.engine import Engine
from engine.errors import (
    Cancelled,
    CatalogDamagedError,
    CatalogError,
    ConfigError,
    DiskFullError,
    FolderError,
    ModelError,
    ParseError,
    SiftError,
)
from engine.finetune import (
    DataSummary,
    FinetuneProgress,
    FinetuneResult,
    Metrics,
    TrainOptions,
    finetune_summary,
    run_finetune,
)
from engine.learn import LearnedSummary, LearnWeights, TuneReport
from engine.models import ModelCard, ModelInfo, load_card, model_name, save_card
from engine.paths import Paths, resolve_paths
from engine.repair import SetAside, set_aside_catalog
from engine.search import STOPWORDS, SearchResult
from engine.types import (
    FileStatus,
    Hit,
    IndexReport,
    Page,
    ParsedFile,
    Passage,
    PassageContext,
    Problem,
    Progress,
    StatusReport,
    Why,
    human_size,
)

__all__ = [
    "BUNDLED_MODEL",
    "Cancelled",
    "CatalogDamagedError",
    "CatalogError",
    "Config",
    "ConfigError",
    "DataSummary",
    "DiskFullError",
    "Engine",
    "FileStatus",
    "FinetuneProgress",
    "FinetuneResult",
    "FolderError",
    "Hit",
    "IndexReport",
    "LearnWeights",
    "LearnedSummary",
    "IndexService",
    "Metrics",
    "ModelCard",
    "ModelError",
    "ModelInfo",
    "Page",
    "ParseError",
    "ParsedFile",
    "Passage",
    "PassageContext",
    "Paths",
    "Problem",
    "Progress",
    "STOPWORDS",
    "SearchResult",
    "SetAside",
    "SiftError",
    "StatusReport",
    "TrainOptions",
    "TuneReport",
    "Why",
    "finetune_summary",
    "human_size",
    "load_card",
    "model_name",
    "resolve_paths",
    "run_finetune",
    "save_card",
    "set_aside_catalog",
    "start_service",
]


def __getattr__(name: str):
    # The background service needs watchdog: imported when first asked for, so the CLI's other
    # commands (and `import engine`) load no file-watching code.
    if name in ("IndexService", "start_service"):
        from engine import service

        return getattr(service, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
