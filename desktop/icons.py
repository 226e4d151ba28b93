"""The app icon (resources/icons) and small file-type badges drawn on demand."""

from __future__ import annotations

import os
from functools import lru_cache

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPixmap

from engine.paths import resources_dir

# Badge colour per parser kind; the label is the file's own suffix.
_KIND_COLORS = {
    "pdf": "#d0453a", "docx": "#2f6fc0", "odf": "#2f6fc0", "pptx": "#d36b2c", "xlsx": "#2b8a4b",
    "html": "#7a52b3", "email": "#b0457f", "epub": "#8a6d3b", "text": "#5b6b7d",
}
_LABELS = {"email": "MAIL", "text": "TXT"}


def icon_path(name: str = "sift") -> str:
    return str(resources_dir() / "icons" / f"{name}.svg")


@lru_cache(maxsize=1)
def app_icon() -> QIcon:
    icon = QIcon(icon_path())
    png = resources_dir() / "icons" / "sift.png"
    if png.exists():  # platforms without the SVG plugin still get a sharp icon
        icon.addFile(str(png))
    return icon


def type_label(path: str, kind: str) -> str:
    suffix = os.path.splitext(path)[1].lstrip(".").upper()
    if suffix and len(suffix) <= 4:
        return suffix
    return _LABELS.get(kind, (kind or "file")[:4].upper())


@lru_cache(maxsize=128)
def type_badge(label: str, kind: str, size: int, ratio: float = 1.0) -> QPixmap:
    """A page-shaped badge with the file type written on it, like a file manager's icon."""
    pixmap = QPixmap(round(size * ratio), round(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    w, h = size * 0.78, size * 0.96
    x, y = (size - w) / 2, (size - h) / 2
    fold = w * 0.3
    page = QPainterPath()
    page.moveTo(x + 3, y)
    page.lineTo(x + w - fold, y)
    page.lineTo(x + w, y + fold)
    page.lineTo(x + w, y + h - 3)
    page.quadTo(x + w, y + h, x + w - 3, y + h)
    page.lineTo(x + 3, y + h)
    page.quadTo(x, y + h, x, y + h - 3)
    page.lineTo(x, y + 3)
    page.quadTo(x, y, x + 3, y)
    color = QColor(_KIND_COLORS.get(kind, "#5b6b7d"))
    p.fillPath(page, color)
    corner = QPainterPath()
    corner.moveTo(x + w - fold, y)
    corner.lineTo(x + w - fold, y + fold - 2)
    corner.quadTo(x + w - fold, y + fold, x + w - fold + 2, y + fold)
    corner.lineTo(x + w, y + fold)
    corner.closeSubpath()
    p.fillPath(corner, color.lighter(150))
    font = QFont()
    font.setBold(True)
    font.setPixelSize(max(7, round(size * (0.3 if len(label) <= 3 else 0.24))))
    p.setFont(font)
    p.setPen(QColor("white"))
    p.drawText(QRectF(x, y + h * 0.38, w, h * 0.5), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, label)
    p.end()
    return pixmap
