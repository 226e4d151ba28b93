"""The results list: one row per document (name, type, path, page, date, snippet with matches, relevance)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QAbstractTextDocumentLayout, QColor, QFontMetrics, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from desktop import theme
from desktop.highlight import to_html
from desktop.icons import type_badge, type_label
from engine import Hit

HitRole = Qt.ItemDataRole.UserRole + 1
RelevanceRole = Qt.ItemDataRole.UserRole + 2
DividerRole = Qt.ItemDataRole.UserRole + 3  # the divider row's text; None on a result

DIVIDER = "Loosely related"

PAD_X, PAD_Y = 14, 10
ICON = 32
SNIPPET_LINES = 3


def friendly_date(mtime: float, *, now: float | None = None) -> str:
    """'Today 14:05', 'Yesterday', '3 Mar', '3 Mar 2023': short, and exact enough to recognise a file."""
    if not mtime:
        return ""
    now = time.time() if now is None else now
    then, today = datetime.fromtimestamp(mtime), datetime.fromtimestamp(now)
    days = (today.date() - then.date()).days
    if days == 0:
        return f"Today {then:%H:%M}"
    if days == 1:
        return "Yesterday"
    if then.year == today.year:
        return f"{then.day} {then:%b}"
    return f"{then.day} {then:%b} {then.year}"


def short_folder(path: str) -> str:
    """The folder of `path`, with the home folder written as ~."""
    folder = os.path.dirname(path)
    home = os.path.expanduser("~")
    if home and home != "~" and (folder == home or folder.startswith(home + os.sep)):
        folder = "~" + folder[len(home):]
    return folder


def copies_text(hit: Hit) -> str:
    """'also at ~/Backup' (or '… and 2 more') for a file whose identical copies are this one result."""
    if not hit.duplicates:
        return ""
    more = len(hit.duplicates) - 1
    return f"also at {short_folder(hit.duplicates[0])}" + (f" and {more} more" if more else "")


def page_text(hit: Hit) -> str:
    if hit.page is None:
        return ""
    word = {"pptx": "slide", "xlsx": "sheet"}.get(hit.kind, "page")
    return f"{word} {hit.page}"


def relevance(hits: Sequence[Hit], mode: str) -> list[float]:
    """Bar lengths in [0, 1] for the relevance bars.

    A reranker's score is a probability and is drawn as it is. The first stage's shown score (a
    cosine, or BM25 over the best one's) is close to the best one's for every listed document;
    drawn as it is, all bars would be nearly full. Within one result list it is spread out
    instead, best to worst.
    """
    if mode == "rerank":
        return [max(0.0, min(1.0, h.score)) for h in hits]
    if not hits:
        return []
    hi, lo = max(h.score for h in hits), min(h.score for h in hits)
    if hi - lo < 1e-9:
        return [1.0] * len(hits)
    return [0.08 + 0.92 * (h.score - lo) / (hi - lo) for h in hits]


def count_text(hits: Sequence[Hit], query: str) -> str:
    """What the count above the results says: how many good matches, or that there is none."""
    good = sum(1 for h in hits if h.match == "good")
    if not hits:
        return ""
    if not good:
        return f"No good matches for \u201c{query.strip()}\u201d; the closest:"
    return f"{good} good match{'es' if good != 1 else ''}"


class ResultsModel(QAbstractListModel):
    """The hits of the latest search: the good matches, best first, then, under a divider row
    ("Loosely related"), the weak ones, collapsed while there are good ones. With no good match
    the weak ones are the list, with no divider (the count above says so)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.query = ""
        self.good: list[Hit] = []
        self.weak: list[Hit] = []
        self.expanded = False
        self.hits: list[Hit] = []        # every hit in display order: good, then weak (shown or collapsed)
        self._rows: list[Hit | None] = []  # None: the divider
        self._relevance: dict[int, float] = {}
        self.mode = ""

    def set_results(self, query: str, hits: Sequence[Hit], mode: str = "") -> None:
        self.beginResetModel()
        self.query, self.mode = query, mode
        self.good = [h for h in hits if h.match == "good"]
        self.weak = [h for h in hits if h.match != "good"]
        self.expanded = not self.good
        ordered = self.good + self.weak
        self._relevance = {id(h): r for h, r in zip(ordered, relevance(ordered, mode))}
        self._layout()
        self.endResetModel()

    def _layout(self) -> None:
        if self.good and self.weak:
            self._rows = [*self.good, None, *(self.weak if self.expanded else ())]
        else:
            self._rows = self.good + self.weak
        self.hits = self.good + self.weak

    def set_expanded(self, expanded: bool) -> None:
        """Show or hide the loosely related results under the divider."""
        if expanded == self.expanded or not (self.good and self.weak):
            return
        first = len(self.good) + 1
        if expanded:
            self.beginInsertRows(QModelIndex(), first, first + len(self.weak) - 1)
        else:
            self.beginRemoveRows(QModelIndex(), first, first + len(self.weak) - 1)
        self.expanded = expanded
        self._layout()
        (self.endInsertRows if expanded else self.endRemoveRows)()
        self.dataChanged.emit(self.index(first - 1), self.index(first - 1))

    def divider_text(self) -> str:
        arrow = "\u25be" if self.expanded else "\u25b8"  # ▾ open, ▸ closed
        return f"{DIVIDER} \u00b7 {len(self.weak)} {arrow}"

    def is_divider(self, row: int) -> bool:
        return 0 <= row < len(self._rows) and self._rows[row] is None

    def hit_at(self, row: int) -> Hit | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def rank_of(self, row: int) -> int:
        """The 1-based rank in display order (the divider is not one)."""
        return sum(1 for h in self._rows[: row + 1] if h is not None)

    def clear(self) -> None:
        self.set_results("", [])

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        hit = self._rows[index.row()]
        if hit is None:
            if role in (DividerRole, Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleDescriptionRole):
                return self.divider_text()
            if role == Qt.ItemDataRole.ToolTipRole:
                return ("Results that share little with the query; Enter or a click shows or hides them"
                        if self.good else None)
            return None
        if role == HitRole:
            return hit
        if role == RelevanceRole:
            return self._relevance.get(id(hit), 0.0)
        if role == Qt.ItemDataRole.DisplayRole:
            return os.path.basename(hit.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            extra = f" · {page_text(hit)}" if hit.page is not None else ""
            copies = "".join(f"\nalso at {path}" for path in hit.duplicates)
            return f"{hit.path}{extra}{copies}"
        if role == Qt.ItemDataRole.AccessibleDescriptionRole:
            return hit.snippet
        return None


class ResultDelegate(QStyledItemDelegate):
    """Paints a result as a small card; calm colours, the matched words marked like a highlighter pen."""

    def __init__(self, view: QListView, *, compact: bool = False) -> None:
        super().__init__(view)
        self.view = view
        self.compact = compact  # the quick-search popup: one line of snippet, no relevance bar

    # geometry -----------------------------------------------------------------------------------

    def _fonts(self, option: QStyleOptionViewItem):
        base = option.font
        return theme.scaled_font(base, 1.06, bold=True), theme.scaled_font(base, 0.9), base

    def _snippet_lines(self) -> int:
        return 1 if self.compact else SNIPPET_LINES

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        hit: Hit = index.data(HitRole)
        name_font, small_font, body_font = self._fonts(option)
        if index.data(DividerRole) is not None:
            return QSize(200, QFontMetrics(small_font).height() + 2 * PAD_Y)
        name_h = QFontMetrics(name_font).height()
        small_h = QFontMetrics(small_font).height()
        width = self.view.viewport().width() - self._text_left() - PAD_X
        doc = self._snippet_doc(hit, option, max(width, 120))
        body = self._visible_height(doc)
        height = PAD_Y + name_h + 2 + small_h + 4 + body + PAD_Y
        if hit is not None and hit.passages and not self.compact:
            height += small_h + 2
        return QSize(max(width, 200), int(height))

    def _visible_height(self, doc: QTextDocument) -> float:
        """Height of the snippet's first lines, cut between lines (never through one)."""
        full = doc.size().height()  # lays the document out, so its lines exist
        block = doc.firstBlock()
        layout = block.layout()
        if layout is None or layout.lineCount() == 0:
            return full
        line = layout.lineAt(min(layout.lineCount(), self._snippet_lines()) - 1)
        top = doc.documentLayout().blockBoundingRect(block).top()
        return top + line.y() + line.height()

    def _text_left(self) -> int:
        return PAD_X + ICON + 12

    def _snippet_doc(self, hit: Hit | None, option: QStyleOptionViewItem, width: int) -> QTextDocument:
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(option.font)
        if hit is not None:
            bg, fg = theme.highlight_colors(option.palette)
            snippet = hit.snippet if not self.compact else " ".join(hit.snippet.split())
            text_color = option.palette.color(QPalette.ColorRole.Text).name()
            doc.setHtml(f'<div style="color:{text_color}">'
                        + to_html(snippet, hit.highlights, background=bg, color=fg) + "</div>")
        doc.setTextWidth(width)
        return doc

    # painting -----------------------------------------------------------------------------------

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        divider = index.data(DividerRole)
        if divider is not None:
            self._paint_divider(painter, option, divider)
            return
        hit: Hit | None = index.data(HitRole)
        if hit is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = option.rect
        palette = option.palette
        accent = theme.accent(palette)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hovered:
            fill = QColor(accent)
            fill.setAlpha(56 if selected else 18)
            painter.fillRect(rect, fill)
        if selected:
            painter.fillRect(QRect(rect.left(), rect.top(), 3, rect.height()), accent)
            if self.view.hasFocus():  # the keyboard is in the list: say so, as a focus frame would
                painter.setPen(accent)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(QRectF(rect).adjusted(0.5, 0.5, -1.5, -1.5))
        separator = QColor(palette.color(QPalette.ColorRole.Text))
        separator.setAlpha(28)
        painter.fillRect(QRect(rect.left() + PAD_X, rect.bottom(), rect.width() - 2 * PAD_X, 1), separator)

        name_font, small_font, body_font = self._fonts(option)
        dim = theme.dim_color(palette)
        text_color = palette.color(QPalette.ColorRole.Text)
        ratio = painter.device().devicePixelRatioF() if painter.device() else 1.0
        badge = type_badge(type_label(hit.path, hit.kind), hit.kind, ICON, ratio)
        painter.drawPixmap(rect.left() + PAD_X, rect.top() + PAD_Y + 2, badge)

        left = rect.left() + self._text_left()
        right = rect.right() - PAD_X
        y = rect.top() + PAD_Y

        # line 1: name … date and relevance
        small_fm = QFontMetrics(small_font)
        date = friendly_date(hit.mtime)
        date_w = small_fm.horizontalAdvance(date) if date else 0
        bar_w = 0 if self.compact else 44
        meta_w = max(date_w, bar_w)
        name_fm = QFontMetrics(name_font)
        painter.setFont(name_font)
        painter.setPen(text_color)
        name = name_fm.elidedText(os.path.basename(hit.path), Qt.TextElideMode.ElideMiddle, right - left - meta_w - 16)
        painter.drawText(QRect(left, y, right - left - meta_w - 12, name_fm.height()),
                         int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), name)
        painter.setFont(small_font)
        painter.setPen(dim)
        if date:
            painter.drawText(QRect(right - date_w, y, date_w, name_fm.height()),
                             int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), date)
        y += name_fm.height() + 2

        # line 2: folder · page · also at (identical copies), relevance bar at the right
        where = short_folder(hit.path)
        tail = "".join(f" · {part}" for part in (page_text(hit), copies_text(hit)) if part)
        room = right - left - bar_w - 12
        folder_room = room - 4 - small_fm.horizontalAdvance(tail)
        folder = small_fm.elidedText(where, Qt.TextElideMode.ElideMiddle, max(folder_room, 40))
        painter.drawText(QRect(left, y, room, small_fm.height()),
                         int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         small_fm.elidedText(folder + tail, Qt.TextElideMode.ElideRight, room))
        if bar_w:
            self._paint_relevance(painter, QRectF(right - bar_w, y + small_fm.height() / 2 - 2, bar_w, 4),
                                  index.data(RelevanceRole) or 0.0, accent, palette)
        y += small_fm.height() + 4

        # the snippet, at most a few lines
        doc = self._snippet_doc(hit, option, right - left)
        painter.translate(left, y)
        clip = QRectF(0, 0, right - left, self._visible_height(doc))
        painter.setClipRect(clip)
        ctx = QAbstractTextDocumentLayout.PaintContext()
        ctx.clip = clip
        ctx.palette.setColor(QPalette.ColorRole.Text, text_color)
        doc.documentLayout().draw(painter, ctx)
        painter.setClipping(False)
        painter.translate(-left, -y)
        y += int(clip.height()) + 2

        if hit.passages and not self.compact:
            pages = sorted({p.page for p in hit.passages if p.page is not None})
            more = len(hit.passages)
            text = f"+ {more} more passage{'s' if more > 1 else ''} in this document"
            if pages:
                text += " (" + ", ".join(f"p. {n}" for n in pages[:5]) + ")"
            painter.setFont(small_font)
            painter.setPen(dim)
            painter.drawText(QRect(left, y, right - left, small_fm.height()),
                             int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
        painter.restore()

    def _paint_divider(self, painter: QPainter, option: QStyleOptionViewItem, text: str) -> None:
        """A rule with the words on it: what follows is only loosely related."""
        painter.save()
        rect, palette = option.rect, option.palette
        if option.state & QStyle.StateFlag.State_Selected:
            fill = QColor(theme.accent(palette))
            fill.setAlpha(56)
            painter.fillRect(rect, fill)
        _, small_font, _ = self._fonts(option)
        fm = QFontMetrics(small_font)
        painter.setFont(small_font)
        painter.setPen(theme.dim_color(palette))
        left = rect.left() + PAD_X
        width = fm.horizontalAdvance(text)
        painter.drawText(QRect(left, rect.top(), width + 4, rect.height()),
                         int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
        rule = QColor(palette.color(QPalette.ColorRole.Text))
        rule.setAlpha(40)
        middle = rect.top() + rect.height() // 2
        painter.fillRect(QRect(left + width + 12, middle, max(0, rect.right() - PAD_X - left - width - 12), 1), rule)
        painter.restore()

    @staticmethod
    def _paint_relevance(painter: QPainter, rect: QRectF, score: float, accent: QColor, palette: QPalette) -> None:
        track = QColor(palette.color(QPalette.ColorRole.Text))
        track.setAlpha(30)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(track)
        painter.drawRoundedRect(rect, 2, 2)
        filled = QRectF(rect)
        filled.setWidth(max(4.0, rect.width() * max(0.0, min(1.0, score))))
        painter.setBrush(accent)
        painter.drawRoundedRect(filled, 2, 2)


class ResultsView(QListView):
    """A list of result cards; keyboard handling lives in the window that owns it."""

    def __init__(self, parent: QWidget | None = None, *, compact: bool = False) -> None:
        super().__init__(parent)
        self.setItemDelegate(ResultDelegate(self, compact=compact))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(False)
        self.setMouseTracking(True)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAccessibleName("Search results")
        self.clicked.connect(self._toggle_if_divider)

    def _toggle_if_divider(self, index: QModelIndex) -> None:
        model = self.model()
        if isinstance(model, ResultsModel) and model.is_divider(index.row()):
            model.set_expanded(not model.expanded)

    def toggle_divider(self) -> bool:
        """Enter on the divider row: show or hide the loosely related results; False elsewhere."""
        index = self.currentIndex()
        model = self.model()
        if not (index.isValid() and isinstance(model, ResultsModel) and model.is_divider(index.row())):
            return False
        model.set_expanded(not model.expanded)
        return True

    def current_hit(self) -> Hit | None:
        index = self.currentIndex()
        return index.data(HitRole) if index.isValid() else None

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.scheduleDelayedItemsLayout()  # snippet heights depend on the width
