"""Settings → Models: the models in use, where they came from, and one-click roll back."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from desktop import theme
from desktop.tasks import Tasks
from engine import BUNDLED_MODEL, Engine, ModelCard, ModelInfo, model_name


def describe_card(card: ModelCard | None) -> str:
    """One or two sentences saying where a model came from and what it measured."""
    if card is None:
        return ""
    try:
        when = datetime.fromisoformat(card.created).strftime("%d %b %Y")
    except ValueError:
        when = card.created
    source = ("your documents' titles and headings" if card.method == "cold-start"
              else f"{card.pairs:,} searches and the results you opened")
    text = f"Trained {when} from {source}, starting from {model_name(card.base, mark_bundled=True)}."
    key = "dense" if card.kind == "embedder" else "pipeline"
    before, after = card.before.get(key, {}), card.after.get(key, {})
    if card.heldout_queries and "ndcg@10" in before and "ndcg@10" in after:
        text += (f" On {card.heldout_queries:,} held-out searches, nDCG@10 went from "
                 f"{before['ndcg@10']:.3f} to {after['ndcg@10']:.3f}.")
    elif not card.heldout_queries:
        text += " Not measured: there were no held-out searches to test it on."
    return text


class ModelsTab(QWidget):
    """The models in use, where they came from, and one-click roll back (in the background)."""

    changed = Signal(str, str)   # kind ("embedder" | "reranker"), the value now active
    loaded = Signal()            # the list came back from the engine (tests wait on this)

    def __init__(self, engine: Engine, tasks: Tasks, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine, self.tasks = engine, tasks
        self.infos: list[ModelInfo] = []
        self.rows: dict[str, dict[str, QWidget]] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(14)
        for kind, title in (("embedder", "Search model (bi-encoder)"), ("reranker", "Reranker (cross-encoder)")):
            heading = theme.label(title, wrap=False)
            heading.setFont(theme.scaled_font(heading.font(), 1.0, bold=True))
            active = theme.label("…")
            card = theme.label("", dim=True)
            previous = theme.label("", dim=True)
            rollback = QPushButton("Roll back")
            rollback.setToolTip("Switch back to the previous model at once; nothing is trained or embedded again")
            rollback.clicked.connect(lambda _=False, k=kind: self.roll_back(k))
            rollback.hide()
            prev_row = QHBoxLayout()
            prev_row.setContentsMargins(0, 0, 0, 0)
            prev_row.addWidget(previous, 1)
            prev_row.addWidget(rollback, 0, Qt.AlignmentFlag.AlignTop)
            box = QVBoxLayout()
            box.setSpacing(4)
            box.addWidget(heading)
            box.addWidget(active)
            box.addWidget(card)
            box.addLayout(prev_row)
            layout.addLayout(box)
            self.rows[kind] = {"active": active, "card": card, "previous": previous, "rollback": rollback}
        layout.addWidget(theme.label("“Improve search…” in the main window trains models from the results you open. "
                                "Rolling back is quick: the previous model's vectors are kept, so nothing is "
                                "trained again, and only documents added since are embedded.", dim=True))
        self.error = theme.error_label()
        layout.addWidget(self.error)
        layout.addStretch(1)
        self._shown = False

    def showEvent(self, event) -> None:
        """The list is read when the tab is first looked at, not whenever Settings opens."""
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            self.refresh()

    def refresh(self) -> None:
        self.tasks.run(self.engine.models, done=self._show, error=self._failed, key="models", name="list models")

    def _show(self, infos: list[ModelInfo]) -> None:
        self.infos = list(infos)
        config = self.engine.config
        for kind, widgets in self.rows.items():
            active = next((i for i in self.infos if i.kind == kind and i.active), None)
            previous = next((i for i in self.infos if i.kind == kind and i.previous), None)
            configured = config.model if kind == "embedder" else config.reranker
            if active is not None:
                widgets["active"].setText(f"In use: {model_name(active.value, mark_bundled=True)}")
            elif configured:
                widgets["active"].setText(f"In use: {model_name(configured, mark_bundled=True)}")
            else:
                widgets["active"].setText("None installed" if kind == "reranker" else f"In use: {model_name(BUNDLED_MODEL, mark_bundled=True)}")
            card_text = describe_card(active.card) if active is not None else ""
            widgets["card"].setText(card_text)
            widgets["card"].setVisible(bool(card_text))
            if previous is not None:
                widgets["previous"].setText(f"Before it: {model_name(previous.value, mark_bundled=True)}")
            else:
                widgets["previous"].setText("No previous model to go back to.")
            widgets["rollback"].setVisible(previous is not None)
            widgets["rollback"].setEnabled(previous is not None)
        self.loaded.emit()

    def _failed(self, exc: BaseException) -> None:
        self.error.setText(str(exc))
        self.error.show()
        self.loaded.emit()

    def roll_back(self, kind: str) -> None:
        """Switch back to the previous model on a worker; no re-training, no re-embedding."""
        widgets = self.rows[kind]
        widgets["rollback"].setEnabled(False)
        widgets["previous"].setText("Rolling back…")
        self.error.hide()
        engine = self.engine
        fn = engine.rollback_model if kind == "embedder" else engine.rollback_reranker

        def done(value: str) -> None:
            self.changed.emit(kind, value)
            self.refresh()

        def failed(exc: BaseException) -> None:
            self.error.setText(f"Could not roll back: {exc}")
            self.error.show()
            self.refresh()

        self.tasks.run(fn, done=done, error=failed, name=f"roll back {kind}")
