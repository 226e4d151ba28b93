"""Folders and settings: what to search, how, and how Sift looks; applied in the background."""

from __future__ import annotations

import dataclasses
import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop import theme
from desktop.models_tab import ModelsTab
from desktop.indexing import Indexer
from desktop.prefs import Prefs
from engine import BUNDLED_MODEL, Config, Engine, human_size

DEFAULT_NDIM = 384  # the bundled model's; the real figure is used once the model has loaded
VECTOR_BYTES = {"i8": 1.0, "f16": 2.0, "f32": 4.0, "b1": 1 / 8}
GRAPH_BYTES_PER_VECTOR = 150  # USearch's links and key per vector, measured on small indexes
PRECISIONS = (("i8", "Compact (8-bit, recommended)"), ("f16", "Half precision (16-bit)"),
              ("f32", "Full precision (32-bit)"), ("b1", "Tiny (1-bit, least accurate)"))
DEVICES = (("auto", "Automatic (GPU when available)"), ("cpu", "CPU"), ("cuda", "NVIDIA GPU (CUDA)"),
           ("mps", "Apple GPU (Metal)"))
THEME_NAMES = (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark"))
# Settings whose change means reading or embedding files again.
REINDEX_FIELDS = ("exclude", "include_hidden", "max_file_mb", "model", "vector_dtype")


def index_size(chunks: int, ndim: int, dtype: str) -> int:
    """Bytes the vector index takes for this many passages at this precision (an estimate)."""
    return int(chunks * (ndim * VECTOR_BYTES[dtype] + GRAPH_BYTES_PER_VECTOR))


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    theme.dim(label)
    return label


def _column(*widgets: QWidget) -> QWidget:
    """Widgets stacked in one form field; wrapped hints get the field's full width this way."""
    box = QWidget()
    # Expanding, or a form layout keeps the field (and its wrapped hints) to a narrow width.
    box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(6)
    for w in widgets:
        layout.addWidget(w)
    return box


def _form_page(form: QFormLayout) -> QWidget:
    """A settings tab holding one form, top-aligned."""
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(12, 12, 12, 12)
    layout.addLayout(form)
    layout.addStretch(1)
    return page


def _left(widget: QWidget) -> QWidget:
    """A widget at its natural width, at the left of its field."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(widget)
    layout.addStretch(1)
    return box


class SettingsDialog(QDialog):
    """Edits a copy of the settings; Save applies them through the engine off the GUI thread."""

    applied = Signal()  # the engine took every change (tests wait on this)
    learningForgotten = Signal()  # the history and all learned from it are gone

    def __init__(self, engine: Engine, indexer: Indexer, prefs: Prefs, *, chunks: int = 0, ndim: int = DEFAULT_NDIM,
                 tray_available: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine, self.indexer, self.prefs = engine, indexer, prefs
        self.chunks, self.ndim = chunks, ndim
        self.config: Config = engine.config
        self.setWindowTitle("Folders and settings – Sift")
        self.setMinimumWidth(600)
        self.resize(700, 660)

        tabs = QTabWidget()
        tabs.addTab(self._folders_tab(), "Folders")
        tabs.addTab(self._search_tab(), "Search")
        self.models_tab = ModelsTab(engine, indexer.tasks)
        self.models_tab.changed.connect(self._model_switched)
        tabs.addTab(self.models_tab, "Models")
        tabs.addTab(self._appearance_tab(tray_available), "Appearance")
        self.tabs = tabs

        self.reindex_note = _hint("Saving will re-index in the background; search keeps working meanwhile.")
        self.reindex_note.hide()
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color:#c0392b")
        self.error.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.MARGIN, theme.MARGIN, theme.MARGIN, theme.MARGIN)
        layout.setSpacing(10)
        layout.addWidget(tabs)
        layout.addWidget(self.reindex_note)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self._update_notes()

    # -- tabs -----------------------------------------------------------------------------------

    def _folders_tab(self) -> QWidget:
        c = self.config
        self.folder_list = QListWidget()
        self.folder_list.setMinimumHeight(120)
        for folder in c.folders:
            self._add_folder_item(folder)
        self.folder_list.itemSelectionChanged.connect(self._update_notes)
        add = QPushButton("Add folder…")
        add.clicked.connect(self._choose_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected_folder)
        buttons = QVBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        folders = QHBoxLayout()
        folders.addWidget(self.folder_list, 1)
        folders.addLayout(buttons)
        self.samples_note = _hint("")

        self.exclude = QPlainTextEdit("\n".join(c.exclude))
        self.exclude.setPlaceholderText("One pattern per line, e.g. *.log or build")
        self.exclude.setMinimumHeight(80)
        self.exclude.setMaximumHeight(140)
        self.exclude.setTabChangesFocus(True)
        self.exclude.textChanged.connect(self._update_notes)
        self.include_hidden = QCheckBox("Include hidden files and folders")
        self.include_hidden.setChecked(c.include_hidden)
        self.include_hidden.toggled.connect(self._update_notes)
        self.max_mb = QSpinBox()
        self.max_mb.setRange(1, 100_000)
        self.max_mb.setSuffix(" MB")
        self.max_mb.setValue(c.max_file_mb)
        self.max_mb.valueChanged.connect(self._update_notes)
        # The background service's settings (an engine without them shows neither box).
        self.watch = QCheckBox("Watch the folders and index changes as they happen")
        self.watch.setChecked(bool(getattr(c, "watch", False)))
        self.watch.setVisible(hasattr(c, "watch"))
        self.low_priority = QCheckBox("Index at low priority, so other programs stay quick")
        self.low_priority.setChecked(bool(getattr(c, "low_priority", False)))
        self.low_priority.setVisible(hasattr(c, "low_priority"))
        self.service_note = _hint("These two take effect the next time Sift starts.")
        self.service_note.setVisible(hasattr(c, "watch"))

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.setVerticalSpacing(10)
        form.addRow("Skip files larger than", _left(self.max_mb))
        form.addRow("", self.include_hidden)
        if hasattr(c, "watch"):
            form.addRow("While Sift runs", _column(self.watch, self.low_priority, self.service_note))
        form.addRow("Skip names matching", _column(
            self.exclude, _hint("One pattern per line. Without a / it matches any file or folder name "
                                "(*.tmp, node_modules); with a / it matches a path below a searched folder.")))

        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(QLabel("Search these folders and everything in them:"))
        layout.addLayout(folders)
        layout.addWidget(self.samples_note)
        layout.addSpacing(6)
        layout.addLayout(form)
        return page

    def _search_tab(self) -> QWidget:
        c = self.config
        self.model_choice = QComboBox()
        self.model_choice.addItem(f"Bundled: {BUNDLED_MODEL.removeprefix('bundled:')}", BUNDLED_MODEL)
        self.model_choice.addItem("A model folder on this computer", "folder")
        self.model_folder = QLineEdit("" if c.model == BUNDLED_MODEL else c.model)
        self.model_folder.setPlaceholderText("A sentence-transformers model folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_model)
        self.model_choice.setCurrentIndex(0 if c.model == BUNDLED_MODEL else 1)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_folder, 1)
        model_row.addWidget(browse)
        self.model_row = QWidget()
        self.model_row.setLayout(model_row)
        model_row.setContentsMargins(0, 0, 0, 0)
        self.model_choice.currentIndexChanged.connect(self._update_notes)
        self.model_folder.textChanged.connect(self._update_notes)

        self.rerank = QCheckBox("Rerank the best results with a cross-encoder (more precise, a little slower)")
        has_reranker = bool(c.reranker)
        self.rerank.setChecked(bool(c.use_reranker) and has_reranker)
        self.rerank.setEnabled(has_reranker)
        self.rerank_note = _hint(f"Reranker: {os.path.basename(c.reranker)}" if has_reranker else
                                 "No reranker is installed: search uses keywords and meaning together, which is "
                                 "good for most needs. To add one, choose a cross-encoder model folder.")
        self.add_reranker = QPushButton("Add a reranker model folder…")
        self.add_reranker.clicked.connect(self._choose_reranker)

        self.device = QComboBox()
        for value, name in DEVICES:
            self.device.addItem(name, value)
        self.device.setCurrentIndex(max(0, self.device.findData(c.device)))

        self.precision = QComboBox()
        for value, name in PRECISIONS:
            self.precision.addItem(name, value)
        self.precision.setCurrentIndex(max(0, self.precision.findData(c.vector_dtype)))
        self.precision.currentIndexChanged.connect(self._update_notes)
        self.size_note = _hint("")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.setVerticalSpacing(14)
        form.addRow("Model", _column(_left(self.model_choice), self.model_row,
                                     _hint("Changing the model embeds every passage again in the background; "
                                           "the current index keeps serving until then.")))
        form.addRow("Reranking", _column(self.rerank, self.rerank_note, _left(self.add_reranker)))
        form.addRow("Run models on", _left(self.device))
        form.addRow("Vector precision", _column(_left(self.precision), self.size_note))

        self.learn = QCheckBox("Learn from the results I open: they come first when I search for them again")
        self.learn.setChecked(c.learn_from_clicks)
        self.forget_button = QPushButton("Forget what Sift learned")
        self.forget_button.clicked.connect(self.forget_learning)
        self.learn_note = _hint("Your opened results and what Sift learned from them stay on this computer.")
        form.addRow("Learning", _column(self.learn, self.learn_note, _left(self.forget_button)))
        return _form_page(form)

    def forget_learning(self) -> None:
        """Forget every opened result and what was learned from them (a worker does it)."""
        self.forget_button.setEnabled(False)

        def done(_result) -> None:
            self.learn_note.setText("Sift forgot every opened result and all it learned from them.")
            self.learningForgotten.emit()

        def failed(exc: BaseException) -> None:
            self.forget_button.setEnabled(True)
            self._show_error(str(exc))

        self.indexer.tasks.run(self._forget, done=done, error=failed, name="forget learning")

    def _forget(self) -> None:
        self.engine.clear_history()
        self.engine.catalog.close()  # this worker's connection: its thread ends with the dialog's tasks

    def _appearance_tab(self, tray_available: bool) -> QWidget:
        self.theme_choice = QComboBox()
        for value, name in THEME_NAMES:
            self.theme_choice.addItem(name, value)
        self.theme_choice.setCurrentIndex(max(0, self.theme_choice.findData(self.prefs.theme)))
        self.keep_in_tray = QCheckBox("Keep Sift in the tray when its window is closed, so indexing goes on")
        self.keep_in_tray.setChecked(self.prefs.keep_in_tray and tray_available)
        self.keep_in_tray.setEnabled(tray_available)
        form = QFormLayout()
        form.setVerticalSpacing(10)
        form.addRow("Theme", _left(self.theme_choice))
        tray_hint = _hint("This desktop has no system tray, so closing the window quits Sift.")
        tray_hint.setVisible(not tray_available)
        form.addRow("Window", _column(self.keep_in_tray, tray_hint))
        return _form_page(form)

    def _model_switched(self, kind: str, value: str) -> None:
        """Models → Roll back switched the engine: this dialog's copy follows, so Save does not switch back."""
        c = self.engine.config
        self.config = dataclasses.replace(self.config, model=c.model, reranker=c.reranker,
                                          use_reranker=c.use_reranker)
        if kind == "embedder":
            self.model_choice.setCurrentIndex(0 if c.model == BUNDLED_MODEL else 1)
            self.model_folder.setText("" if c.model == BUNDLED_MODEL else c.model)
        else:
            self.rerank.setEnabled(bool(c.reranker))
            self.rerank.setChecked(bool(c.reranker) and bool(c.use_reranker))
            self.rerank_note.setText(f"Reranker: {os.path.basename(c.reranker)}" if c.reranker else
                                     "No reranker is installed.")
        self._update_notes()

    # -- folder list ------------------------------------------------------------------------------

    def _add_folder_item(self, folder: str) -> None:
        item = QListWidgetItem(folder)
        item.setToolTip(folder)
        self.folder_list.addItem(item)

    def folders(self) -> tuple[str, ...]:
        return tuple(self.folder_list.item(i).text() for i in range(self.folder_list.count()))

    def add_folder(self, folder: str) -> None:
        folder = os.path.abspath(os.path.expanduser(folder))
        if folder not in self.folders():
            self._add_folder_item(folder)
        self._update_notes()

    def remove_selected_folder(self) -> None:
        for item in self.folder_list.selectedItems():
            self.folder_list.takeItem(self.folder_list.row(item))
        self._update_notes()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to search", os.path.expanduser("~"))
        if folder:
            self.add_folder(folder)

    def _choose_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a sentence-transformers model folder",
                                                  self.model_folder.text() or os.path.expanduser("~"))
        if folder:
            self.model_folder.setText(folder)
            self.model_choice.setCurrentIndex(1)

    def _choose_reranker(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a cross-encoder model folder", os.path.expanduser("~"))
        if folder:
            self.import_reranker(folder)

    def import_reranker(self, folder: str) -> None:
        """Copy a cross-encoder folder into Sift's data folder (a worker does it) and turn reranking on."""
        engine = self.engine
        self.add_reranker.setEnabled(False)
        self.rerank_note.setText("Copying the reranker…")

        def done(target: str) -> None:
            self.add_reranker.setEnabled(True)
            # The engine saved these; the rest of the dialog's edits are still to be saved.
            self.config = dataclasses.replace(self.config, reranker=engine.config.reranker,
                                              use_reranker=engine.config.use_reranker)
            self.rerank.setEnabled(True)
            self.rerank.setChecked(True)
            self.rerank_note.setText(f"Reranker: {os.path.basename(target)}")

        def failed(exc: BaseException) -> None:
            self.add_reranker.setEnabled(True)
            self.rerank_note.setText("")
            self._show_error(str(exc))

        self.indexer.tasks.run(lambda: engine.import_reranker(folder), done=done, error=failed, name="reranker")

    # -- changes ------------------------------------------------------------------------------------

    def _model_value(self) -> str:
        if self.model_choice.currentData() == BUNDLED_MODEL:
            return BUNDLED_MODEL
        return os.path.abspath(os.path.expanduser(self.model_folder.text().strip())) if self.model_folder.text().strip() else ""

    def changes(self) -> dict:
        """Settings that differ from the engine's, as update_config keywords (folders apart)."""
        c = self.config
        wanted = {
            "exclude": tuple(line.strip() for line in self.exclude.toPlainText().splitlines() if line.strip()),
            "include_hidden": self.include_hidden.isChecked(),
            "max_file_mb": self.max_mb.value(),
            "model": self._model_value(),
            "device": self.device.currentData(),
            "vector_dtype": self.precision.currentData(),
            "use_reranker": self.rerank.isChecked() if self.rerank.isEnabled() else c.use_reranker,
            "learn_from_clicks": self.learn.isChecked(),
        }
        for name, box in (("watch", self.watch), ("low_priority", self.low_priority)):
            if hasattr(c, name):
                wanted[name] = box.isChecked()
        return {k: v for k, v in wanted.items() if getattr(c, k) != v}

    def folder_changes(self) -> tuple[list[str], list[str]]:
        before, after = set(self.config.folders), self.folders()
        return [f for f in after if f not in before], [f for f in self.config.folders if f not in after]

    def needs_reindex(self) -> bool:
        added, removed = self.folder_changes()
        return bool(added or removed or any(k in REINDEX_FIELDS for k in self.changes()))

    def _update_notes(self) -> None:
        self.remove_button.setEnabled(bool(self.folder_list.selectedItems()))
        # The samples are searched only until a folder is chosen: once one is, say what removing does.
        self.samples_note.setText("Removing a folder forgets what was indexed from it." if self.folders() else
                                  "Until you add a folder, Sift searches its sample documents.")
        self.model_row.setEnabled(self.model_choice.currentData() != BUNDLED_MODEL)
        dtype = self.precision.currentData()
        if self.chunks:
            size = human_size(index_size(self.chunks, self.ndim, dtype))
            self.size_note.setText(f"The vector index for your {self.chunks:,} passages takes about {size} "
                                   f"at this precision. The catalog keeps full vectors, so switching never "
                                   f"embeds again.")
        else:
            per_100k = human_size(index_size(100_000, self.ndim, dtype))
            self.size_note.setText(f"About {per_100k} per 100,000 passages at this precision.")
        self.reindex_note.setVisible(self.needs_reindex())

    def save(self) -> None:
        """Apply folders, settings and preferences; the engine part runs on a worker."""
        model = self._model_value()
        if not model or (model != BUNDLED_MODEL and not os.path.isdir(model)):
            self._show_error("Choose an existing model folder, or the bundled model.")
            self.tabs.setCurrentIndex(1)
            return
        self.prefs.theme = self.theme_choice.currentData()
        if self.keep_in_tray.isEnabled():
            self.prefs.keep_in_tray = self.keep_in_tray.isChecked()
        theme.apply_theme(self.prefs.theme)
        added, removed = self.folder_changes()
        changes = self.changes()
        if not (added or removed or changes):
            self.applied.emit()
            self.accept()
            return
        engine = self.engine

        def apply() -> None:
            for folder in removed:
                engine.remove_folder(folder)
            for folder in added:
                engine.add_folder(folder)
            if changes:
                engine.update_config(**changes)

        self.buttons.setEnabled(False)
        self.error.hide()
        self.indexer.change(apply, done=self._applied, error=self._failed, reindex=self.needs_reindex())

    def _applied(self, _result) -> None:
        self.buttons.setEnabled(True)
        self.applied.emit()
        self.accept()

    def _failed(self, exc: BaseException) -> None:
        self.buttons.setEnabled(True)
        self.config = self.engine.config  # part may have applied (an earlier folder); compare with what is now
        self._show_error(str(exc))

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
