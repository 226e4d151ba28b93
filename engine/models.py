"""Models as folders: where fine-tuned models live, their cards, and the list of models to choose from."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from engine.atomic import write_json
from engine.config import BUNDLED_MODEL, Config
from engine.paths import Paths

log = logging.getLogger(__name__)

CARD_FILE = "sift-card.json"
KINDS = ("embedder", "reranker")
METHODS = ("clicks", "cold-start")
# Stored in Config.previous_reranker when the reranker was adopted while none was installed:
# rolling back then turns stage 2 back off (an empty value means there is nothing to go back to).
NO_RERANKER = "none"


@dataclass(frozen=True)
class ModelCard:
    """What a fine-tuned model folder is: where it came from, on how much data, and how it measured.

    `before`/`after` hold held-out metrics, outer keys "dense" and "pipeline", inner keys
    "ndcg@10", "recall@5", "recall@10", "mrr@10". `adopted` turns True once the model has been
    switched to (it stays True after a rollback: `ModelInfo.active` says what serves now).
    """

    kind: str
    base: str
    created: str
    method: str
    pairs: int
    train_seconds: float
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)
    heldout_queries: int = 0
    adopted: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """One model Sift can use: `value` is the setting that selects it ("bundled:…" or a folder)."""

    kind: str
    name: str
    value: str
    active: bool
    previous: bool
    card: ModelCard | None = None


def models_root(paths: Paths) -> Path:
    return paths.data / "models"


def embedders_dir(paths: Paths) -> Path:
    """Where fine-tuned bi-encoders live, one folder each."""
    return models_root(paths) / "embedders"


def rerankers_dir(paths: Paths) -> Path:
    """Where cross-encoders live, imported, downloaded or fine-tuned, one folder each."""
    return models_root(paths) / "rerankers"


def new_model_name(parent: Path, now: datetime | None = None) -> str:
    """A fresh folder name under `parent`, like sift-ft-20261127-2330 (with -2, -3… if taken)."""
    stamp = (now or datetime.now()).strftime("sift-ft-%Y%m%d-%H%M")
    name, n = stamp, 1
    while (parent / name).exists():
        n += 1
        name = f"{stamp}-{n}"
    return name


def model_value(value: str) -> str:
    """The canonical setting for a model: folders as absolute paths, anything else as given."""
    value = value.strip()
    if not value or value.startswith("bundled:"):
        return value
    path = Path(value).expanduser()
    return str(path.resolve()) if path.is_dir() else value


def model_name(value: str, *, mark_bundled: bool = False) -> str:
    """A model setting as a person reads it: the folder's name, the bundled model's name
    ('all-MiniLM-L6-v2 (bundled)' with mark_bundled), "no reranker", or "none" when unset."""
    if not value:
        return "none"
    if value == NO_RERANKER:
        return "no reranker"
    if value.startswith("bundled:"):
        name = value.removeprefix("bundled:")
        return f"{name} (bundled)" if mark_bundled else name
    return Path(value.rstrip("/\\")).name or value


# -- cards -------------------------------------------------------------------------------------


def save_card(folder: Path, card: ModelCard) -> None:
    """Write `folder/sift-card.json` atomically (a crash leaves the old card or the new one)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CARD_FILE, dataclasses.asdict(card))


def load_card(folder: Path) -> ModelCard | None:
    """The card in `folder`, or None when there is none or it cannot be read (never raises)."""
    path = Path(folder) / CARD_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable model card %s: %s", path, exc)
        return None
    try:
        return _card_from_dict(raw)
    except (TypeError, ValueError) as exc:
        log.warning("ignoring the invalid model card %s: %s", path, exc)
        return None


def _card_from_dict(raw: object) -> ModelCard:
    if not isinstance(raw, dict):
        raise TypeError("a card must be a JSON object")
    kind, method = raw.get("kind"), raw.get("method")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(method, str):
        raise TypeError(f"method must be text, not {method!r}")

    def text(key: str) -> str:
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise TypeError(f"{key} must be text, not {value!r}")
        return value

    def number(key: str, kind: type) -> int | float:
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{key} must be a number, not {value!r}")
        return kind(value)

    def metrics(key: str) -> dict[str, dict[str, float]]:
        value = raw.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ValueError(f"{key} must map a stage to its metrics")
        return {str(stage): {str(k): float(v) for k, v in inner.items()
                             if isinstance(v, int | float) and not isinstance(v, bool)}
                for stage, inner in value.items()}

    return ModelCard(kind=kind, base=text("base"), created=text("created"), method=method,
                     pairs=int(number("pairs", int)), train_seconds=float(number("train_seconds", float)),
                     before=metrics("before"), after=metrics("after"),
                     heldout_queries=int(number("heldout_queries", int)), adopted=bool(raw.get("adopted", False)))


def mark_adopted(value: str) -> None:
    """Note on a model folder's card that it has been switched to (no card, nothing to note)."""
    if value.startswith("bundled:") or not os.path.isdir(value):
        return
    card = load_card(Path(value))
    if card is not None and not card.adopted:
        try:
            save_card(Path(value), dataclasses.replace(card, adopted=True))
        except OSError as exc:  # a read-only folder: the switch itself has happened
            log.warning("could not mark the card in %s as adopted: %s", value, exc)


# -- the list ------------------------------------------------------------------------------------


def list_models(paths: Paths, config: Config) -> list[ModelInfo]:
    """The bundled embedder, every folder under models/embedders and models/rerankers, and the
    configured ones (active or previous) that live elsewhere; active first, then by kind and name."""
    infos: list[ModelInfo] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, value: str) -> None:
        value = model_value(value)
        if not value or value == NO_RERANKER or (kind, value) in seen:
            return
        seen.add((kind, value))
        active_value, previous_value = ((config.model, config.previous_model) if kind == "embedder"
                                        else (config.reranker, config.previous_reranker))
        card = None if value.startswith("bundled:") or not os.path.isdir(value) else load_card(Path(value))
        infos.append(ModelInfo(kind=kind, name=model_name(value), value=value,
                               active=value == model_value(active_value),
                               previous=bool(previous_value) and value == model_value(previous_value), card=card))

    add("embedder", BUNDLED_MODEL)
    for kind, folder in (("embedder", embedders_dir(paths)), ("reranker", rerankers_dir(paths))):
        try:
            entries = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            entries = []
        for entry in entries:
            add(kind, str(entry))
    # The configured ones, wherever they live (a folder chosen in settings).
    for value in (config.model, config.previous_model):
        add("embedder", value)
    for value in (config.reranker, config.previous_reranker):
        add("reranker", value)
    return sorted(infos, key=lambda m: (KINDS.index(m.kind), not m.active, not m.previous, m.name))
