"""The preview pane: the selected result's passage in context, its page, other matches, and actions."""

from __future__ import annotations

import html
import os
import re

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop import theme
from desktop.context import Context, passage_context
from desktop.highlight import term_spans, to_html
from desktop.icons import type_badge, type_label
from desktop.results import friendly_date, page_text, short_folder
from desktop.tasks import Tasks
from engine import Engine, Hit

KIND_NAMES = {"pdf": "PDF", "docx": "Word document", "pptx": "PowerPoint", "xlsx": "Excel workbook",
              "html": "Web page", "text": "Text", "email": "Email", "epub": "E-book", "odf": "OpenDocument"}


_SOFT_BREAK = re.compile(r"(?<=[^\n.:;!?])\n(?=[a-z(])")


def reflow(text: str) -> str:
    """Join lines a PDF broke mid-sentence (a break before a lower-case word); lists and paragraphs stay.

    Same length as the input, so highlight spans still fit.
    """
    return _SOFT_BREAK.sub(" ", text)


class PreviewPane(QWidget):
    """Shows one hit; asks for the surrounding text in the background so selection stays instant."""

    openRequested = Signal()
    revealRequested = Signal()
    copyRequested = Signal()
    contextShown = Signal(object)  # Context, once the passage in context is on screen (tests wait on it)

    def __init__(self, engine: Engine, tasks: Tasks, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine, self.tasks = engine, tasks
        self.hit: Hit | None = None
        self.query = ""
        self.context: Context | None = None

        self.badge = QLabel()
        self.badge.setFixedSize(36, 36)
        self.title = QLabel()
        self.title.setFont(theme.scaled_font(self.font(), 1.25, bold=True))
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setWordWrap(True)
        self.folder = QLabel()
        self.folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder.setWordWrap(True)
        self.meta = QLabel()
        self.meta.setWordWrap(True)
        theme.dim(self.folder)
        theme.dim(self.meta)

        titles = QVBoxLayout()
        titles.setSpacing(2)
        titles.addWidget(self.title)
        titles.addWidget(self.folder)
        titles.addWidget(self.meta)
        head = QHBoxLayout()
        head.setSpacing(12)
        head.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)
        head.addLayout(titles, 1)

        self.open_button = QPushButton("Open")
        self.open_button.setDefault(False)
        self.open_button.setToolTip("Open in its application (Enter)")
        self.reveal_button = QPushButton("Show in folder")
        self.reveal_button.setToolTip("Show the file in its folder (Ctrl+Enter)")
        self.copy_button = QPushButton("Copy path")
        self.copy_button.setToolTip("Copy the file's path (Ctrl+C)")
        for button in (self.open_button, self.reveal_button, self.copy_button):
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # Tab reaches them; a click leaves the keyboard where it was
        self.open_button.clicked.connect(self.openRequested)
        self.reveal_button.clicked.connect(self.revealRequested)
        self.copy_button.clicked.connect(self.copyRequested)
        buttons = QHBoxLayout()
        buttons.setSpacing(theme.GAP)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.reveal_button)
        buttons.addWidget(self.copy_button)
        buttons.addStretch(1)

        self.body = QTextBrowser()
        self.body.setOpenLinks(False)
        self.body.setFrameShape(QTextBrowser.Shape.NoFrame)
        self.body.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.body.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.body.document().setDocumentMargin(2)
        self.body.setAccessibleName("Passage in context")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.MARGIN + 4, theme.MARGIN, theme.MARGIN, theme.MARGIN)
        layout.setSpacing(12)
        layout.addLayout(head)
        layout.addLayout(buttons)
        layout.addWidget(self.body, 1)
        self.clear()

    # -- showing a hit --------------------------------------------------------------------------

    def clear(self) -> None:
        self.hit, self.context = None, None
        self.tasks.cancel("preview")
        for w in (self.badge, self.title, self.folder, self.meta):
            w.clear()
        self.body.clear()
        for b in (self.open_button, self.reveal_button, self.copy_button):
            b.setEnabled(False)

    def show_hit(self, query: str, hit: Hit) -> None:
        if hit == self.hit and query == self.query:
            return
        self.hit, self.query, self.context = hit, query, None
        ratio = self.devicePixelRatioF()
        self.badge.setPixmap(type_badge(type_label(hit.path, hit.kind), hit.kind, 36, ratio))
        self.title.setText(os.path.basename(hit.path))
        self.folder.setText(short_folder(hit.path))
        self.folder.setToolTip(hit.path)
        parts = [KIND_NAMES.get(hit.kind, hit.kind.upper() or "File")]
        if hit.page is not None:
            parts.insert(0, page_text(hit).capitalize())
        if hit.mtime:
            parts.append(f"modified {friendly_date(hit.mtime)}")
        self.meta.setText(" · ".join(parts))
        self.open_button.setText(f"Open at {page_text(hit)}" if hit.page is not None and hit.kind == "pdf" else "Open")
        for b in (self.open_button, self.reveal_button, self.copy_button):
            b.setEnabled(True)
        # The snippet at once; the passage with its neighbours as soon as the catalog answers.
        self._render(Context(text=hit.snippet, focus=(0, len(hit.snippet)), page=hit.page, exact=False),
                     spans=hit.highlights)
        engine = self.engine
        self.tasks.run(lambda: passage_context(engine, hit), key="preview", name="preview",
                       done=lambda ctx: self._context_ready(hit, ctx))

    def _context_ready(self, hit: Hit, context: Context) -> None:
        if hit is not self.hit:
            return
        self.context = context
        if context.exact:
            self._render(context, spans=term_spans(context.text, self.query))
        self.contextShown.emit(context)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self.hit is not None:  # light ↔ dark
            context = self.context or Context(self.hit.snippet, (0, len(self.hit.snippet)), self.hit.page, False)
            spans = term_spans(context.text, self.query) if context.exact else self.hit.highlights
            self._render(context, spans=spans)

    def _render(self, context: Context, *, spans) -> None:
        hit = self.hit
        assert hit is not None
        palette = self.palette()
        bg, fg = theme.highlight_colors(palette)
        dim = theme.dim_color(palette).name()
        text_color = palette.color(QPalette.ColorRole.Text).name()
        accent = theme.accent(palette).name()
        heading = f'font-size:small;color:{dim};font-weight:600;letter-spacing:0.5px'
        label = "Passage" + (f" on {page_text(hit)}" if hit.page is not None else "")
        focus_style = f"color:{text_color}"
        passage = to_html(reflow(context.text), spans, background=bg, color=fg, focus=context.focus, focus_style=focus_style)
        parts = [f'<p style="{heading}">{html.escape(label.upper())}</p>',
                 f'<p style="color:{dim};line-height:135%">{passage}</p>']
        if hit.passages:
            parts.append(f'<p style="{heading};margin-top:18px">MORE IN THIS DOCUMENT</p>')
            for p in hit.passages:
                where = f"Page {p.page}" if p.page is not None else ""
                body = to_html(p.snippet, p.highlights, background=bg, color=fg)
                parts.append('<p style="margin-top:6px;margin-bottom:10px">'
                             + (f'<span style="color:{accent};font-weight:600">{where}</span>&nbsp; ' if where else "")
                             + f'<span style="color:{text_color}">{body}</span></p>')
        if hit.duplicates:
            parts.append(f'<p style="{heading};margin-top:18px">SAME CONTENT ALSO IN</p>')
            parts += [f'<p style="color:{dim};margin:2px 0">{html.escape(d)}</p>' for d in hit.duplicates]
        self.body.setHtml("".join(parts))
        self.body.verticalScrollBar().setValue(0)
        # After the browser has laid the text out and set its scroll range (the next turn of the loop).
        QTimer.singleShot(0, lambda hit=hit: hit is self.hit and self._bring_passage_into_view(context))

    def _bring_passage_into_view(self, context: Context) -> None:
        """A short preview (scale 2, a small screen) scrolls to the passage itself, not the text before it."""
        start, end = context.focus
        words = " ".join(reflow(context.text[start:end]).split()[:6])
        cursor = self.body.document().find(words) if words else None
        if cursor is None or cursor.isNull():
            return
        cursor.setPosition(cursor.selectionStart())
        line = self.body.fontMetrics().lineSpacing()
        rect = self.body.cursorRect(cursor)
        if rect.bottom() + 2 * line > self.body.viewport().height():
            bar = self.body.verticalScrollBar()
            bar.setValue(bar.value() + rect.top() - line)
