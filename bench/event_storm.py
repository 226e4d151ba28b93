"""Event storm: create, rename and delete thousands of files while Sift watches; check it converges.

With the background service running (or paused, or not running at all, to lose events on
purpose), make a nested tree of files, rename some (plain renames, moves to other folders,
renames over existing files, whole folders moved) and delete some (files and a whole folder),
as fast as the file system allows. Then wait until things are quiet and compare the catalog's
file set with the file system's, and the vector index's keys with the catalog's chunks.

    python bench/event_storm.py                                     # 20,000 / 5,000 / 3,000, watcher running
    python bench/event_storm.py --mode paused --max-pending 2000    # events dropped: a full rescan mends it
    python bench/event_storm.py --mode stopped                      # changes made while Sift was not running
    python bench/event_storm.py --create 2000 --rename 500 --delete 300   # the size the test suite uses

Uses the fake embedder (the point is the file bookkeeping, not the model). Prints figures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORDS = ("boiler pressure descaling wing lift drag turbine sample library index student river bird "
         "compass magnet field engine valve heat orbit glacier sonnet ledger harbour quartz").split()


@dataclass
class StormCounts:
    created: int = 0
    renamed: int = 0          # files renamed or moved one by one (some over an existing file)
    replaced: int = 0         # of those, renamed over an existing file (an editor's atomic save)
    deleted: int = 0          # files deleted one by one
    folders_moved: int = 0
    folders_deleted: int = 0
    files_in_moved_folders: int = 0
    files_in_deleted_folders: int = 0
    seconds: float = 0.0
    timeline: list[str] = field(default_factory=list)


def _text(rng: random.Random, i: int) -> str:
    return f"Storm note {i}. " + " ".join(rng.choices(WORDS, k=rng.randint(8, 40))) + "."


def storm(root: Path, *, create: int, rename: int, delete: int, seed: int = 1,
          after_create: Callable[[], None] | None = None) -> StormCounts:
    """Create, then rename, then delete files in a nested tree under root, as fast as possible.

    after_create, if given, runs between creating and renaming (to let the index catch up).
    """
    rng = random.Random(seed)
    counts = StormCounts()
    t0 = time.monotonic()
    # Nested folders: about 25 files per folder, three levels deep.
    n_dirs = max(4, create // 25)
    dirs = []
    for d in range(n_dirs):
        parts = [f"a{d % 7}", f"b{d % 23}", f"c{d}"][: 1 + d % 3]
        dirs.append(root.joinpath(*parts))
    files: list[Path] = []
    for i in range(create):
        folder = dirs[i % n_dirs]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"note-{i:06}.txt"
        path.write_text(_text(rng, i), encoding="utf-8")
        files.append(path)
    counts.created = create
    counts.timeline.append(f"created {create} files in {n_dirs} folders: {time.monotonic() - t0:.1f} s")
    if after_create is not None:
        after_create()
        counts.timeline.append(f"the index caught up: {time.monotonic() - t0:.1f} s")

    live = set(files)
    for k in range(rename):
        src = rng.choice(files)
        while src not in live:
            src = rng.choice(files)
        kind = k % 20
        if kind == 0 and len(live) > 2:  # over an existing file: the destination's old text is gone
            dst = rng.choice(files)
            while dst not in live or dst == src:
                dst = rng.choice(files)
            counts.replaced += 1
        elif kind < 10:  # to another folder
            dst = rng.choice(dirs) / f"moved-{k:06}.txt"
            dst.parent.mkdir(parents=True, exist_ok=True)
        else:  # a new name in the same folder
            dst = src.with_name(f"renamed-{k:06}-{src.name}")
        os.replace(src, dst)
        live.discard(src)
        live.add(dst)
        files.append(dst)
        counts.renamed += 1
    # Whole folders moved: every file below changes its path in one event.
    for j in range(max(1, rename // 2500)):
        folder = dirs[j]
        if folder.is_dir():
            target = root / f"moved-folder-{j}"
            inside = [p for p in live if str(p).startswith(str(folder) + os.sep)]
            os.rename(folder, target)
            for p in inside:
                live.discard(p)
                live.add(target / p.relative_to(folder))
            counts.folders_moved += 1
            counts.files_in_moved_folders += len(inside)
    files = sorted(live)
    counts.timeline.append(f"renamed {counts.renamed} files and moved {counts.folders_moved} folders: "
                           f"{time.monotonic() - t0:.1f} s")

    for victim in rng.sample(files, min(delete, len(files))):
        victim.unlink()
        live.discard(victim)
        counts.deleted += 1
    for j in range(max(1, delete // 1500)):
        folder = dirs[-1 - j]
        if folder.is_dir():
            inside = [p for p in live if str(p).startswith(str(folder) + os.sep)]
            shutil.rmtree(folder)
            live.difference_update(inside)
            counts.folders_deleted += 1
            counts.files_in_deleted_folders += len(inside)
    counts.seconds = time.monotonic() - t0
    counts.timeline.append(f"deleted {counts.deleted} files and {counts.folders_deleted} folders: "
                           f"{counts.seconds:.1f} s")
    return counts


def on_disk(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.endswith(".txt")}


def differences(engine, root: Path) -> tuple[int, int, int, int]:
    """(missing from the catalog, extra in it, index keys not in the catalog, chunks not in the index)."""
    disk = on_disk(root)
    catalog = set(engine.catalog.files())
    keys = set(engine.vectors().keys().tolist())
    chunks = set(engine.catalog.chunk_ids().tolist())
    return len(disk - catalog), len(catalog - disk), len(keys - chunks), len(chunks - keys)


def wait_until(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--create", type=int, default=20_000)
    ap.add_argument("--rename", type=int, default=5_000)
    ap.add_argument("--delete", type=int, default=3_000)
    ap.add_argument("--mode", choices=["running", "paused", "stopped"], default="running")
    ap.add_argument("--max-pending", type=int, default=None, help="the service's cap on remembered changes")
    ap.add_argument("--workers", type=int, default=0, help="parse worker processes (0: parse in-process)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for the index to converge")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--settle", action="store_true",
                    help="let the index catch up after creating, so renames show embedding reuse")
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()

    from engine.embed import FakeEmbedder
    from engine.engine import Engine
    from engine.service import start_service

    work = Path(args.workdir or tempfile.mkdtemp(prefix="sift-storm-"))
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    embedder = FakeEmbedder()
    engine = Engine.open(work / "home", embedder=embedder)
    engine.update_config(parse_workers=args.workers)
    engine.add_folder(docs)
    options = dict(quiet_s=0.5, max_wait_s=5.0)
    if args.max_pending:
        options["max_pending"] = args.max_pending
    print(f"storm: {args.create} created, {args.rename} renamed, {args.delete} deleted; mode {args.mode}; "
          f"in {docs}")

    service = None
    if args.mode != "stopped":
        service = start_service(engine, **options)
        service.wait_idle(60)
        if args.mode == "paused":
            service.pause()
    embedded_at = {}

    def settle() -> None:
        wait_until(lambda: differences(engine, docs) == (0, 0, 0, 0), args.timeout, interval=0.5)
        embedded_at["settled"] = embedder.texts_embedded

    counts = storm(docs, create=args.create, rename=args.rename, delete=args.delete, seed=args.seed,
                   after_create=settle if args.settle and args.mode == "running" else None)
    for line in counts.timeline:
        print("  " + line)
    expected = len(on_disk(docs))
    t_quiet = time.monotonic()
    if args.mode == "paused":
        print(f"  while paused the service noted {service.queue.pending} changes"
              f"{' (over its cap: a full rescan was queued)' if service.queue.full_pending else ''}")
        service.resume()
    elif args.mode == "stopped":
        service = start_service(engine, **options)
    converged = wait_until(lambda: differences(engine, docs) == (0, 0, 0, 0), args.timeout, interval=0.5)
    t_converged = time.monotonic() - t_quiet
    idle = service.wait_idle(args.timeout)
    missing, extra, orphan_keys, unindexed = differences(engine, docs)
    statuses = engine.catalog.counts_by_status()
    print(f"files on disk: {expected}; in the catalog: {sum(statuses.values())} {statuses}")
    print(f"converged {'in' if converged else 'NOT within'} {t_converged:.1f} s after the storm "
          f"({counts.seconds:.1f} s long); service idle: {idle}")
    print(f"missing {missing}, extra {extra}; index keys without a chunk {orphan_keys}, chunks without a key "
          f"{unindexed}")
    print(f"indexing runs {service.runs} ({service.full_runs} full rescans); texts embedded "
          f"{embedder.texts_embedded}; chunks {engine.catalog.chunk_count()}")
    if "settled" in embedded_at:
        print(f"texts embedded for the {counts.renamed} renames and {counts.folders_moved} folder moves after the "
              f"index caught up: {embedder.texts_embedded - embedded_at['settled']} (renames reuse vectors)")
    engine.close()
    return 0 if (missing, extra, orphan_keys, unindexed) == (0, 0, 0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
