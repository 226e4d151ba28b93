"""Sift's desktop app: a PySide6 GUI over the engine's public API (see desktop/app.py)."""
