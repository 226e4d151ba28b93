"""Index every PDF in ../shared/data/pdfs/ (350 files from PDF libraries' test suites, a third hostile).

Runs the real indexer (parse workers, per-file timeout and memory cap) with the fake embedder,
so the time measured is parsing and bookkeeping. Prints the status counts, how they line up with
what pypdf did with each file alone (MANIFEST.tsv: ok, exception, timeout at 30 s), the slowest
kinds of failure, whether any parse worker outlived the run, and the wall time next to the bound
the per-file timeout sets.

    python bench/index_pdfs.py                      # 2 workers, 30 s per file (the defaults)
    python bench/index_pdfs.py --workers 4 --timeout 10
"""

from __future__ import annotations

import argparse
import collections
import csv
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DIR = ROOT.parent / "shared" / "data" / "pdfs"


def parse_workers_alive() -> list[int]:
    """Spawned worker processes still running under this one (Linux: read from /proc).

    multiprocessing's resource tracker is a child too, by design alive until we exit; not counted.
    """
    mine, found = os.getpid(), []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == mine and fields[0] != "Z" and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def run(folder: Path, *, workers: int, timeout: float, home: Path | None = None) -> dict:
    """Index folder in a fresh Sift home; return the figures (also used by the slow test)."""
    from engine.embed import FakeEmbedder
    from engine.engine import Engine

    home = home or Path(tempfile.mkdtemp(prefix="sift-pdfs-"))
    engine = Engine.open(home, embedder=FakeEmbedder())
    engine.update_config(parse_workers=workers, parse_timeout_s=timeout)
    engine.add_folder(folder)
    t0 = time.monotonic()
    report = engine.index()
    wall = time.monotonic() - t0
    rows = {os.path.basename(p): r for p, r in engine.catalog.files().items() if p.lower().endswith(".pdf")}
    manifest = {}
    if (folder / "MANIFEST.tsv").exists():
        with open(folder / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
            manifest = {r["file"]: r["pypdf_7.1.1_outcome"] for r in csv.DictReader(f, delimiter="\t")}
    left = parse_workers_alive() + [p.pid for p in multiprocessing.active_children()]
    figures = {
        "pdfs_on_disk": sum(1 for p in folder.iterdir() if p.suffix.lower() == ".pdf"),
        "pdfs_in_catalog": len(rows),
        "statuses": dict(collections.Counter(str(r.status) for r in rows.values()).most_common()),
        "by_manifest": {},
        "wall_s": wall,
        "workers": workers,
        "timeout_s": timeout,
        "workers_left": sorted(set(left)),
        "report": report,
        "reasons": collections.Counter(),
        "shown": collections.Counter(p.plain_reason for p in engine.status().problems
                                     if p.path.lower().endswith(".pdf")),
        "chunks": engine.catalog.chunk_count(),
    }
    for name, row in rows.items():
        outcome = manifest.get(name, "?")
        figures["by_manifest"].setdefault(outcome, collections.Counter())[str(row.status)] += 1
        if row.status != "indexed":
            figures["reasons"][(str(row.status), row.reason[:100])] += 1
    engine.close()
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    if not args.dir.is_dir():
        print(f"{args.dir} is not there; pass --dir", file=sys.stderr)
        return 2
    f = run(args.dir, workers=args.workers, timeout=args.timeout)
    print(f"{f['pdfs_in_catalog']} of {f['pdfs_on_disk']} PDFs have a status; {f['chunks']} chunks indexed")
    print("statuses: " + ", ".join(f"{s} {n}" for s, n in f["statuses"].items()))
    for outcome, counts in sorted(f["by_manifest"].items()):
        print(f"  pypdf alone said {outcome!r:<12} → " + ", ".join(f"{s} {n}" for s, n in counts.most_common()))
    print("reasons (status: reason, count):")
    for (status, reason), n in f["reasons"].most_common(25):
        print(f"  {n:>4}  {status:<10} {reason}")
    print("what a person is shown (reason, count):")
    for reason, n in f["shown"].most_common():
        print(f"  {n:>4}  {reason}")
    timeouts = f["statuses"].get("timeout", 0)
    bound = f["pdfs_on_disk"] * f["timeout_s"] / f["workers"]
    print(f"wall time {f['wall_s']:.1f} s with {f['workers']} workers and a {f['timeout_s']:g} s limit per file "
          f"({timeouts} files hit it; their share is at most {timeouts * f['timeout_s'] / f['workers']:.0f} s; "
          f"worst case for any input {bound:.0f} s)")
    print(f"parse workers left running after the run: {len(f['workers_left'])}")
    return 0 if f["pdfs_in_catalog"] == f["pdfs_on_disk"] and not f["workers_left"] else 1


if __name__ == "__main__":
    sys.exit(main())
