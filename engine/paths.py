"""Where Sift keeps its files: the only caller of platformdirs; SIFT_HOME=DIR overrides it all."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

APP_NAME = "Sift"

# Environment variables, most specific first: SIFT_DATA_DIR beats SIFT_HOME beats platformdirs.
ENV_HOME = "SIFT_HOME"
ENV_DIRS = {
    "data": "SIFT_DATA_DIR",
    "cache": "SIFT_CACHE_DIR",
    "config": "SIFT_CONFIG_DIR",
    "logs": "SIFT_LOG_DIR",
}
ENV_RESOURCES = "SIFT_RESOURCES"


@dataclass(frozen=True, slots=True)
class Paths:
    """The four directories Sift writes to, and the files inside them."""

    data: Path
    cache: Path
    config: Path
    logs: Path

    @property
    def catalog(self) -> Path:
        return self.data / "catalog.sqlite3"

    @property
    def index_dir(self) -> Path:
        return self.data / "index"

    @property
    def settings(self) -> Path:
        return self.config / "settings.json"

    @property
    def lock(self) -> Path:
        return self.data / "indexing.lock"

    def ensure(self) -> "Paths":
        """Create the directories, private to this user (0700): they hold document text.

        Folders created on the way (a SIFT_HOME root, ~/.local/state/Sift above the logs) are
        0700 too, and Sift's own folders made earlier with a wider mode are narrowed.
        """
        from engine.errors import SiftError

        for d in (self.data, self.cache, self.config, self.logs, self.index_dir):
            try:
                _make_private_dir(d)
            except (FileExistsError, NotADirectoryError):
                raise SiftError(f"{d} should be a folder, but a file has that name. Move or delete that "
                                "file, then start Sift again.") from None
            except PermissionError as exc:
                raise SiftError(f"Sift cannot create or use its folder {d} ({exc.strerror}). Check its "
                                "permissions, or set SIFT_HOME to a folder of your own.") from None
        return self


def _make_private_dir(d: Path) -> None:
    missing = []
    parent = d
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made meanwhile (another Sift starting); checked below like the rest
    if not d.is_dir():
        raise NotADirectoryError(str(d))
    info = d.stat()
    if info.st_mode & 0o077 and getattr(os, "getuid", lambda: info.st_uid)() == info.st_uid:
        os.chmod(d, 0o700)


def home_argument(argv: Sequence[str]) -> str | None:
    """`--home DIR` or `--home=DIR` in a command line (both programs take it), else None: for what
    runs before the arguments are parsed (the launcher finding a running app, the frozen app's
    runtime hook placing the caches)."""
    for i, arg in enumerate(argv):
        if arg == "--home" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--home="):
            return arg.split("=", 1)[1]
    return None


def resolve_paths(env: Mapping[str, str] | None = None) -> Paths:
    """The directories to use, from the environment or the platform's conventions."""
    env = os.environ if env is None else env
    home = env.get(ENV_HOME)
    if home:
        base = Path(home).expanduser().resolve()
        defaults = {k: base / k for k in ENV_DIRS}
    else:
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        defaults = {
            "data": Path(dirs.user_data_dir),
            "cache": Path(dirs.user_cache_dir),
            "config": Path(dirs.user_config_dir),
            "logs": Path(dirs.user_log_dir),
        }
    chosen = {k: Path(env[v]).expanduser().resolve() if env.get(v) else defaults[k] for k, v in ENV_DIRS.items()}
    return Paths(**chosen)


def resources_dir() -> Path:
    """The bundled resources (sample documents, icons): beside the packages, or in a frozen app."""
    override = os.environ.get(ENV_RESOURCES)
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)  # PyInstaller unpacks data files here
    root = Path(frozen_root) if frozen_root else Path(__file__).resolve().parent.parent
    return root / "resources"


def samples_dir() -> Path:
    """The sample documents searched until the user chooses folders of their own."""
    return resources_dir() / "samples"
