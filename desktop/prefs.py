"""The GUI's own preferences (theme, tray, window layout), beside the engine's settings file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from desktop.theme import THEMES


class Prefs:
    """A small typed wrapper over QSettings in Sift's config folder (so SIFT_HOME isolates it too)."""

    def __init__(self, config_dir: Path) -> None:
        self._s = QSettings(str(Path(config_dir) / "desktop.ini"), QSettings.Format.IniFormat)

    def _get(self, key: str, default, kind):
        value = self._s.value(key, default)
        if kind is bool and isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    @property
    def theme(self) -> str:
        value = self._get("theme", "system", str)
        return value if value in THEMES else "system"

    @theme.setter
    def theme(self, value: str) -> None:
        self._s.setValue("theme", value)

    @property
    def keep_in_tray(self) -> bool:
        """Closing the window keeps Sift (and indexing) running in the tray."""
        return self._get("keep_in_tray", True, bool)

    @keep_in_tray.setter
    def keep_in_tray(self, value: bool) -> None:
        self._s.setValue("keep_in_tray", bool(value))

    @property
    def told_about_tray(self) -> bool:
        return self._get("told_about_tray", False, bool)

    @told_about_tray.setter
    def told_about_tray(self, value: bool) -> None:
        self._s.setValue("told_about_tray", bool(value))

    def geometry(self, name: str) -> QByteArray | None:
        value = self._s.value(f"layout/{name}")
        return value if isinstance(value, QByteArray) else None

    def set_geometry(self, name: str, value: QByteArray) -> None:
        self._s.setValue(f"layout/{name}", value)

    def sync(self) -> None:
        self._s.sync()
