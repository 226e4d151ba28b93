"""Seconds from SIGTERM to exit of the desktop app while a batch is embedding (a minute-long model call).

The app runs offscreen in a child (tests/desktop/sigterm_child.py, the fake model whose embedding
sleeps 60 s, like a big batch on a slow CPU); once it says it is embedding, it gets SIGTERM.
A session's logout waits about 5 s before it kills what is left.

    python bench/sigterm_exit.py --rounds 3

Prints a line per round and the worst; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sift-sigterm-"))
    docs = work / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"note-{i}.txt").write_text(f"note {i} about descaling espresso machines")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    took = []
    for round_ in range(args.rounds):
        child = subprocess.Popen([sys.executable, "-m", "tests.desktop.sigterm_child", str(work / f"home-{round_}"),
                                  str(docs)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            select.select([child.stdout], [], [], 120)
            child.stdout.readline()
            sent = time.monotonic()
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=180)
            took.append(time.monotonic() - sent)
            print(f"round {round_ + 1}: exit code {child.returncode} after {took[-1]:.2f} s", flush=True)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
    print(f"worst of {len(took)}: {max(took):.2f} s from SIGTERM to exit")


if __name__ == "__main__":
    main()
