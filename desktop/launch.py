"""`sift-desktop`: a running Sift gets the wish over its socket at once (no Qt, no engine import); else the app starts.

`sift-desktop --quick`, bound to a key, must show the popup in a blink: importing Qt and the
engine takes seconds, so this module imports neither unless it has to start the app itself.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from desktop.instance import send, socket_address

# Options only the app itself can carry out: they always start it (a running one never sees them).
APP_ONLY = ("--search", "--self-test", "-h", "--help")


def _paths_module():
    """engine/paths.py itself, loaded by path: `import engine.paths` would import the whole engine first."""
    path = Path(__file__).resolve().parent.parent / "engine" / "paths.py"
    if not path.is_file():  # a frozen app: the engine is there anyway
        import engine.paths

        return engine.paths
    name = "_sift_launcher_paths"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def data_dir(argv: Sequence[str]) -> Path:
    """The data folder the app would use for these arguments (it names the socket)."""
    paths = _paths_module()
    home = paths.home_argument(argv)
    return paths.resolve_paths({"SIFT_HOME": home} if home else None).data


def main(argv: Sequence[str] | None = None) -> int:
    """Message a running Sift ("quick" or "show") and return; start the app when none answers."""
    argv = list(sys.argv if argv is None else argv)
    rest = argv[1:]
    if not any(arg.split("=", 1)[0] in APP_ONLY for arg in rest):
        message = "quick" if "--quick" in rest else "show"
        try:
            if send(socket_address(data_dir(rest)), message):
                return 0
        except Exception:  # the app's own start-up says what is wrong better than this would
            pass
    from desktop.app import run

    sys.argv = argv
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
