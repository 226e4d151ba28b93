"""Colours, fonts and spacing shared by every window; light and dark alike, following the system."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QLabel

THEMES = ("system", "light", "dark")

# Spacing, in pixels, used everywhere so windows line up.
MARGIN = 16
GAP = 8



def dim(widget):
    """Draw a label's text in the palette's secondary colour; it follows light/dark switches (a style sheet would not)."""
    widget.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return widget


def label(text: str = "", *, dim: bool = False, wrap: bool = True, rich: bool = False) -> QLabel:
    """A label of plain text (rich: Qt's rich text) at the top left, wrapped unless told; `dim`: as dim() draws."""
    widget = QLabel(text)
    widget.setWordWrap(wrap)
    widget.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    widget.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    if dim:
        widget.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return widget


def error_label() -> QLabel:
    """A hidden label for an error message, in red, selectable (to copy into a report)."""
    widget = label()
    widget.setStyleSheet("color:#c0392b")
    widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    widget.hide()
    return widget


def apply_theme(choice: str) -> None:
    """Follow the system's light/dark choice, or force one.

    Qt ≥ 6.8 asks the platform to switch; where the platform cannot (no platform theme, as under
    a bare X server or some window managers), a dark palette of our own stands in.
    """
    app = QGuiApplication.instance()
    if app is None:
        return
    hints = QGuiApplication.styleHints()
    scheme = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(choice, Qt.ColorScheme.Unknown)
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(scheme)
    system_dark = hints.colorScheme() == Qt.ColorScheme.Dark
    want_dark = choice == "dark" or (choice == "system" and system_dark)
    ours = app.property("siftPalette")
    if want_dark and (ours or not is_dark(app.palette())):
        app.setPalette(dark_palette())
        app.setProperty("siftPalette", True)
    elif not want_dark and ours:
        app.setPalette(QPalette())  # back to the style's own
        app.setProperty("siftPalette", False)


def dark_palette() -> QPalette:
    """A calm dark palette: not black, soft contrast, the same accent as light."""
    p = QPalette()
    R, G = QPalette.ColorRole, QPalette.ColorGroup
    colors = {
        R.Window: "#232427", R.WindowText: "#e6e7e9", R.Base: "#1b1c1f", R.AlternateBase: "#26282b",
        R.ToolTipBase: "#2e3034", R.ToolTipText: "#e6e7e9", R.Text: "#e6e7e9", R.Button: "#2e3034",
        R.ButtonText: "#e6e7e9", R.BrightText: "#ff6b6b", R.Link: "#7fb0f0", R.LinkVisited: "#b39ddb",
        R.Highlight: "#3b78c9", R.HighlightedText: "#ffffff", R.PlaceholderText: "#9a9ea5",
        R.Light: "#3a3c41", R.Midlight: "#313337", R.Mid: "#44474c", R.Dark: "#141517", R.Shadow: "#000000",
    }
    for role, color in colors.items():
        p.setColor(role, QColor(color))
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(G.Disabled, role, QColor("#6c7076"))
    p.setColor(G.Disabled, R.Highlight, QColor("#3a3c41"))
    return p


def is_dark(palette: QPalette | None = None) -> bool:
    palette = palette or QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def highlight_colors(palette: QPalette | None = None) -> tuple[str, str]:
    """(background, text) for matched words in snippets: a soft marker, legible in both themes."""
    if is_dark(palette):
        return "#6b5514", "#fff6d8"
    return "#ffe58a", "#1d1d1d"


def dim_color(palette: QPalette | None = None) -> QColor:
    """Secondary text (paths, dates): between the text and the background."""
    palette = palette or QGuiApplication.palette()
    text, base = palette.color(QPalette.ColorRole.Text), palette.color(QPalette.ColorRole.Base)
    return QColor((text.red() * 3 + base.red() * 2) // 5, (text.green() * 3 + base.green() * 2) // 5,
                  (text.blue() * 3 + base.blue() * 2) // 5)


def accent(palette: QPalette | None = None) -> QColor:
    palette = palette or QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Highlight)


def scaled_font(base: QFont, factor: float, *, bold: bool = False) -> QFont:
    font = QFont(base)
    if font.pointSizeF() > 0:
        font.setPointSizeF(font.pointSizeF() * factor)
    else:
        font.setPixelSize(round(font.pixelSize() * factor))
    if bold:
        font.setWeight(QFont.Weight.DemiBold)
    return font
