"""Run by test_hardening inside `unshare -rm` with a small tmpfs: index until the disk is full, then free it.

    python -m tests.diskfull_child DOCS MOUNT KB  (MOUNT: an empty, small file system; KB: space left)

Prints one JSON object describing what happened at each step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WORDS = "harbour ledger quartz sonnet glacier orbit valve compass turbine river".split()


def baseline_text(i: int) -> str:
    return f"Baseline note {i}: descaling espresso machines, topic{i} and token{i}x repeated. " * 3


def later_text(i: int) -> str:
    return f"Later note {i} " + " ".join(WORDS[(i + k) % len(WORDS)] + str(k) for k in range(300)) + "."


def fill(mount: Path, leave: int) -> Path:
    """A ballast file that takes all free space on mount but `leave` bytes."""
    ballast = mount / "ballast"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(ballast, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, free - leave))
        f.flush()
        os.fsync(f.fileno())
    return ballast


def main() -> int:
    from engine.embed import FakeEmbedder
    from engine.engine import Engine
    from engine.errors import DiskFullError

    docs, mount = Path(sys.argv[1]), Path(sys.argv[2])
    home = mount / "home"
    out: dict = {}
    for i in range(40):
        (docs / f"base-{i:03}.txt").write_text(baseline_text(i), encoding="utf-8")
    engine = Engine.open(home, embedder=FakeEmbedder())
    engine.update_config(parse_workers=0)
    engine.add_folder(docs)
    engine.index()
    # Each side of the index on its own: a note's own words by keyword, its own text by meaning
    # (the fake model gives equal texts equal vectors). Fused, new notes may rank between.
    queries = {f"topic{i} token{i}x": "bm25" for i in range(0, 40, 8)} | {baseline_text(i): "dense" for i in (3, 21)}
    before = {q: engine.search(q, limit=1, mode=mode)[0].path for q, mode in queries.items()}
    base_chunks = {p: row.id for p, row in engine.catalog.files().items()}
    engine.close()

    for i in range(400):
        (docs / f"later-{i:03}.txt").write_text(later_text(i), encoding="utf-8")
    ballast = fill(mount, leave=int(sys.argv[3]) * 1024)
    engine = Engine.open(home, embedder=FakeEmbedder())
    try:
        engine.index()
        out["error"] = None
    except DiskFullError as exc:
        out["error"] = str(exc)
    except Exception as exc:  # the test reports what else happened
        out["error"] = f"{type(exc).__name__}: {exc}"
    engine.close()

    # Still on a full disk: a fresh start opens, finds everything from before, and searches.
    engine = Engine.open(home, embedder=FakeEmbedder())
    out["integrity"] = engine.catalog.check()
    files = engine.catalog.files()
    out["baseline_kept"] = all(p in files and files[p].id == fid for p, fid in base_chunks.items())
    out["indexed_while_full"] = sum(1 for p in files if "later-" in p)
    out["keys_match"] = set(engine.vectors().keys().tolist()) == set(engine.catalog.chunk_ids().tolist())
    out["same_results"] = {q: engine.search(q, limit=1, mode=mode)[0].path for q, mode in queries.items()} == before
    engine.close()

    ballast.unlink()  # space freed: the next run finishes the work
    engine = Engine.open(home, embedder=FakeEmbedder())
    report = engine.index()
    out["after_free"] = {"added": report.added, "files": len(engine.catalog.files()),
                         "keys_match": set(engine.vectors().keys().tolist())
                         == set(engine.catalog.chunk_ids().tolist())}
    engine.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
