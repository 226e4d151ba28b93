#!/usr/bin/env python3
"""Set up a virtual environment and run Sift or its tests: `python3 dev.py run|test [ARGS]`."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".sift-installed"
# The int8 model the automatic backend runs on x86 CPUs (engine.embed.prepared_dir).
PREPARED = VENV / "share" / "sift" / "openvino"


def _inputs_digest() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def setup() -> None:
    """Create .venv and install Sift with its test extra, skipping work already done."""
    if sys.version_info < (3, 11):
        sys.exit(f"Sift needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print(f"Creating {VENV} …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = _inputs_digest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("Installing Sift and its dependencies into .venv: about 2 GB, mostly torch. It took "
          f"{MEASURED_INSTALL}; it is done once, and again only when pyproject.toml or constraints.txt "
          "change.", flush=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check"]
    started = time.monotonic()
    _pip([*pip, "-q", "install", "--upgrade", "pip"], started, "Updating pip")
    _pip([*pip, "install", "--progress-bar", "off", "-c", "constraints.txt", "-e", ".[test]"], started,
         "Installing")
    print(f"Installed in {_clock(time.monotonic() - started)}.", flush=True)
    prepare_int8()
    STAMP.write_text(digest)


def prepare_int8() -> None:
    """On x86 CPUs: quantize the bundled model to int8 for OpenVINO and check it against torch
    (about half a minute), the automatic backend's model. Should it fail, Sift runs torch."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    print("Preparing the int8 search model for this CPU (about half a minute) …", flush=True)
    done = subprocess.run([str(PYTHON), "-m", "engine.cli", "models", "prepare", "bundled:all-MiniLM-L6-v2",
                           "--into", str(PREPARED)], cwd=ROOT, check=False)
    if done.returncode != 0:
        print("The int8 model could not be prepared; Sift runs the model in torch (slower, same results).",
              flush=True)


# A fresh `python3 dev.py setup` on the 2-core development machine, pip's download cache warm,
# other work running beside it (load average 9): 0:39 to choose 49 packages, 4:12 to unpack them.
MEASURED_INSTALL = "5 minutes on a busy 2-core machine"
QUIET_S = 20  # pip unpacking torch says nothing for minutes: say it is still at work this often


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _pip(command: list[str], started: float, doing: str) -> None:
    """Run pip, turning its long log into one line per package: what it is doing, and for how long."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1)
    seen, building = 0, False
    tail: list[str] = []
    heard = [time.monotonic()]
    finished = threading.Event()

    def still_working() -> None:
        while not finished.wait(QUIET_S):
            if time.monotonic() - heard[0] >= QUIET_S:
                print(f"  [{_clock(time.monotonic() - started)}] still installing …", flush=True)

    threading.Thread(target=still_working, daemon=True).start()
    assert process.stdout is not None
    for line in process.stdout:
        heard[0] = time.monotonic()
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        words = line.split()
        if not words:
            continue
        if words[0] in ("Collecting", "Obtaining") and len(words) > 1:
            seen += 1
            print(f"  [{_clock(time.monotonic() - started)}] {doing}: looking at {words[1]} "
                  f"({seen} package{'s' if seen != 1 else ''} so far)", flush=True)
        elif words[0] == "Installing" and "collected" in words[1:2]:
            print(f"  [{_clock(time.monotonic() - started)}] Unpacking {seen} packages into .venv "
                  "(torch alone takes a while) …", flush=True)
        elif words[0] == "Building" and "editable" in line and not building:
            building = True
            print(f"  [{_clock(time.monotonic() - started)}] Installing Sift itself …", flush=True)
    code = process.wait()
    finished.set()
    if code != 0:
        print("\n".join(tail), file=sys.stderr)
        raise subprocess.CalledProcessError(code, command)


def _has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "setup"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    setup()
    if command == "setup":
        return 0
    if command == "test":
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT, env=env)
    # run: the desktop app when there is a screen and it is built, else the CLI tour.
    if _has_display() and (ROOT / "desktop" / "app.py").exists():
        return subprocess.call([str(PYTHON), "-m", "desktop", *rest], cwd=ROOT)
    return subprocess.call([str(PYTHON), "-m", "engine.cli", "tour", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
