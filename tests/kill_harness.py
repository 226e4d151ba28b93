"""SIGKILL `sift index` at random moments and check that nothing is ever half-written (the crash harness).

tests/engine/test_crash.py runs it; bench/kill_index.py is its command line for the figures.

Each round edits, deletes, renames and adds a few files, starts an indexing run in a child
process and kills it with SIGKILL at a moment of one of these kinds, in turn:

    timer        a random delay after the start
    commit       right after the n-th catalog transaction commits (n random)
    first-save   in a brand-new home, inside the very first saves of the vector index: before
                 usearch writes, after it wrote the temporary file, before or after the rename
                 over the old file, or after the checksum commit
    mid-write    in a brand-new home, a random few milliseconds into the first full save
                 (killed by this script, from outside, while usearch is writing)
    rebuild      after the index file was deleted or damaged, while the next start rebuilds it
                 from the catalog: between adds, or at any stage of its save
    save         at a stage of a later save, over an existing index file

After each kill, a fresh process checks: the catalog opens and passes SQLite's integrity check;
every file is either fully indexed (chunks numbered 0..n-1, each with a vector) or absent; the
vector index opens (rebuilt or repaired if it must be) with exactly the catalog's chunk ids; a
search runs; and no file indexed before the round and untouched since was lost. A final run
must then finish the work.

    python bench/kill_index.py --corpus ../shared/data/ir/cranfield --rounds 50     # real model
    python bench/kill_index.py --synthetic 400 --rounds 50 --fake                   # a minute
    python bench/kill_index.py --synthetic 300 --rounds 5 --fake --moments timer    # the old test

Prints a line per round and a summary; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_corpus(corpus: Path, out: Path, limit: int | None) -> int:
    """A BEIR corpus.jsonl written out as one text file per document."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(corpus / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            text = (doc.get("title", "") + "\n\n" + doc.get("text", "")).strip()
            (out / f"{doc['_id']}.txt").write_text(text or "(empty)", encoding="utf-8")
            n += 1
            if limit and n >= limit:
                break
    return n


def write_synthetic(out: Path, n: int) -> int:
    rng = random.Random(7)
    words = ("boiler pressure descaling wing lift drag flow turbine sample measure library index "
             "student river bird compass magnet field engine valve heat orbit").split()
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        paras = ["  ".join(" ".join(rng.choices(words, k=12)).capitalize() + "." for _ in range(rng.randint(2, 6)))
                 for _ in range(rng.randint(1, 4))]
        (out / f"doc{i:05}.txt").write_text("\n\n".join(paras), encoding="utf-8")
    return n


def mutate(docs: Path, rng: random.Random) -> None:
    """Give every round work to do: edit ~15% of the files, delete, rename and add ~2% each."""
    files = sorted(docs.glob("*.txt"))
    for f in rng.sample(files, max(1, len(files) * 15 // 100)):
        f.write_text(f.read_text(encoding="utf-8") + f"\n\nRevision {rng.random():.6f}.", encoding="utf-8")
    k = max(1, len(files) // 50)
    victims = rng.sample(files, 2 * k)
    for f in victims[:k]:
        f.unlink(missing_ok=True)
    for f in victims[k:]:
        if f.exists():
            f.rename(f.with_name("renamed-" + f.name))
    for i in range(k):
        (docs / f"new-{rng.randrange(10**9)}.txt").write_text(
            f"A new note {i}: boiler pressure and wing lift measured again.", encoding="utf-8")


MOMENTS = ("timer", "commit", "first-save", "rebuild", "save", "mid-write")
SAVE_STAGES = ("save-begin", "save-written", "before-rename", "after-rename", "checksum-committed")


def instrument(plan: str | None) -> None:
    """In the child: report each interesting point on stdout, and SIGKILL this process at the
    n-th time the planned one is reached (plan "stage:n")."""
    import collections
    from contextlib import contextmanager

    from usearch.index import Index

    import engine.store as store_module
    import engine.vectors as vectors_module
    from engine.catalog import Catalog

    stage, _, nth = (plan or "none:0").partition(":")
    seen: collections.Counter = collections.Counter()

    def reached(name: str) -> None:
        seen[name] += 1
        print(f"AT {name} {seen[name]}", flush=True)  # the parent may kill on this line (mid-write)
        if name == stage and seen[name] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    real_save = Index.save

    def save(self, path, *args, **kwargs):
        reached("save-begin")
        result = real_save(self, path, *args, **kwargs)
        reached("save-written")
        return result

    Index.save = save
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        is_index = os.fspath(dst).endswith(".usearch")
        if is_index:
            reached("before-rename")
        real_replace(src, dst, *args, **kwargs)
        if is_index:
            reached("after-rename")

    vectors_module.os.replace = replace
    real_save_vectors = store_module.VectorStore.save

    def save_vectors(self, index, *args, **kwargs):
        path = real_save_vectors(self, index, *args, **kwargs)
        reached("checksum-committed")
        return path

    store_module.VectorStore.save = save_vectors
    real_transaction = Catalog.transaction

    @contextmanager
    def transaction(self):
        with real_transaction(self) as conn:
            yield conn
        reached("commit")

    Catalog.transaction = transaction
    real_add = vectors_module.VectorIndex.add

    def add(self, keys, vectors):
        real_add(self, keys, vectors)
        reached("index-add")

    vectors_module.VectorIndex.add = add


def child_index(home: str, fake: bool, plan: str | None) -> None:
    """Run in the child: one indexing run (the fake embedder keeps the test suite fast)."""
    from engine.embed import FakeEmbedder
    from engine.engine import Engine

    instrument(plan)
    engine = Engine.open(home, embedder=FakeEmbedder() if fake else None)
    engine.index()


def child_open(home: str, fake: bool, plan: str | None) -> None:
    """Run in the child: open and search, which rebuilds a missing or damaged vector index."""
    from engine.embed import FakeEmbedder
    from engine.engine import Engine

    instrument(plan)
    print("AT rebuild-begin 1", flush=True)
    engine = Engine.open(home, embedder=FakeEmbedder() if fake else None)
    engine.vectors()
    engine.search("pressure distribution", limit=3)


def check(home: str, fake: bool) -> list[str]:
    """Run in a fresh process after a kill: the invariants every crash must keep."""
    from engine.embed import FakeEmbedder
    from engine.engine import Engine

    problems: list[str] = []
    engine = Engine.open(home, embedder=FakeEmbedder() if fake else None)
    if (integrity := engine.catalog.check()) != "ok":
        problems.append(f"integrity: {integrity}")
    catalog, model_id = engine.catalog, engine.embedder.model_id
    rows = []
    for row in catalog.files().values():
        ids = catalog.chunk_ids_of_file(row.id)
        ordinals = [c.ordinal for c in catalog.chunks_by_id(ids).values()]
        with_vector, _ = catalog.chunk_vectors(model_id, ids)
        rows.append((row.id, row.status, len(ids), max(ordinals, default=-1), len(ids) - len(with_vector)))
    for fid, status, n, max_ordinal, no_vector in rows:
        if status == "indexed" and (n == 0 or max_ordinal != n - 1):
            problems.append(f"file {fid} is half-indexed: {n} chunks, last ordinal {max_ordinal}")
        if no_vector:
            problems.append(f"file {fid} has {no_vector} chunks without a vector")
    keys = set(engine.vectors().keys().tolist())
    chunk_ids = set(engine.catalog.chunk_ids().tolist())
    if keys != chunk_ids:
        problems.append(f"index keys differ from catalog: {len(keys - chunk_ids)} extra, {len(chunk_ids - keys)} missing")
    if chunk_ids and not engine.search("pressure distribution", limit=3):
        problems.append("search returned nothing")
    indexed = {path: [row.size, row.mtime_ns] for path, row in engine.catalog.files().items()
               if row.status == "indexed"}
    print(json.dumps({"problems": problems, "files": len(rows), "chunks": len(chunk_ids), "indexed": indexed}))
    return problems


def _python(*args: str) -> list[str]:
    return [sys.executable, __file__, *args]


def damage(index_dir: Path, rng: random.Random) -> str:
    """Delete, truncate or scribble on the saved vector index, so the next start rebuilds it."""
    files = sorted(index_dir.glob("*.usearch"))
    if not files:
        return "no index file to damage"
    path = files[0]
    how = rng.choice(["deleted", "truncated", "flipped"])
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:
        data = bytearray(path.read_bytes())
        for _ in range(8):
            data[rng.randrange(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))
    return f"index {how}"


def run_child(args: list[str], env: dict, *, kill_after: float | None = None,
              kill_on: str | None = None, kill_delay: float = 0.0, timeout: float = 300) -> str:
    """Run a child; SIGKILL it after kill_after seconds, or kill_delay after it prints kill_on."""
    child = subprocess.Popen(_python(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + (kill_after if kill_after is not None else timeout)
    outcome = "finished before the kill"
    if kill_on is not None:
        for line in child.stdout:
            if line.strip() == kill_on:
                time.sleep(kill_delay)
                child.send_signal(signal.SIGKILL)
                outcome = f"killed {kill_delay * 1000:.1f} ms after {kill_on.split()[1]}"
                break
        child.stdout.read()
        child.wait()
        return outcome
    import threading

    threading.Thread(target=child.stdout.read, daemon=True).start()  # drain, never block the child
    try:
        child.wait(timeout=max(0.0, deadline - time.monotonic()))
        if child.returncode == -signal.SIGKILL:
            outcome = "killed itself at the planned point"
        elif child.returncode != 0:
            outcome = f"child failed with exit code {child.returncode}"
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        outcome = f"killed at {kill_after:.2f} s"
    return outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--corpus", type=Path, help="a BEIR collection folder (corpus.jsonl)")
    src.add_argument("--synthetic", type=int, metavar="N", help="N generated text files")
    ap.add_argument("--limit", type=int, help="use only the first N documents of the corpus")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--moments", default=",".join(MOMENTS),
                    help=f"kinds of kill moments to take in turn (default: all of {', '.join(MOMENTS)})")
    ap.add_argument("--max-delay", type=float, default=None, help="latest timer kill, seconds after start")
    ap.add_argument("--fake", action="store_true", help="use the fake embedder (fast; for the test suite)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="keep files here instead of a temporary folder")
    ap.add_argument("--child", choices=["index", "open", "check"], help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child == "index":
        child_index(args.home, args.fake, args.plan)
        return 0
    if args.child == "open":
        child_open(args.home, args.fake, args.plan)
        return 0
    if args.child == "check":
        return 1 if check(args.home, args.fake) else 0

    moments = [m.strip() for m in args.moments.split(",") if m.strip()]
    if unknown := set(moments) - set(MOMENTS):
        ap.error(f"unknown moments: {', '.join(sorted(unknown))}")
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sift-kill-"))
    docs = work / "docs"
    if args.corpus:
        n = write_corpus(args.corpus, docs, args.limit)
    else:
        n = write_synthetic(docs, args.synthetic or 300)
    fake = ["--fake"] if args.fake else []
    max_delay = args.max_delay or (3.0 if args.fake else 25.0)
    print(f"{n} files in {docs}; {args.rounds} kills, in turn: {', '.join(moments)}")

    def new_home(name: str) -> Path:
        home = work / name
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "engine.cli", "--home", str(home), "add-folder", str(docs)],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        return home

    main_home = new_home("home")
    indexed_before: dict[str, list[int]] = {}
    failures = kills = attempts = 0
    counts: dict[str, int] = {}
    timer_max = max_delay
    # A run can finish before its moment comes (a small change, a plan for a second save that
    # never happens): such tries are checked too but not counted; the same kind is tried again.
    while kills < args.rounds and attempts < 3 * args.rounds:
        if attempts:
            mutate(docs, rng)
        attempts += 1
        moment = moments[kills % len(moments)]
        home = main_home
        env = {**os.environ, "SIFT_HOME": str(home)}
        index_args = ["--child", "index", "--home", str(home), *fake]
        started = time.monotonic()
        if moment == "timer":
            outcome = run_child(index_args, env, kill_after=rng.uniform(min(0.2, timer_max / 2), timer_max))
            if not outcome.startswith("killed"):  # runs are quicker than the delays: aim earlier
                timer_max = max(0.1, 0.8 * (time.monotonic() - started))
        elif moment == "commit":
            k = rng.randint(1, 5)
            outcome = run_child([*index_args, "--plan", f"commit:{k}"], env) + f" (commit {k})"
        elif moment in ("first-save", "mid-write"):
            home = new_home(f"home-first-{attempts}")
            env = {**os.environ, "SIFT_HOME": str(home)}
            index_args = ["--child", "index", "--home", str(home), *fake]
            if moment == "first-save":
                # Save 1 is the empty index made on first open; save 2 the first one with vectors.
                plan = f"{rng.choice(SAVE_STAGES)}:{rng.choice([1, 2])}"
                outcome = run_child([*index_args, "--plan", plan], env) + f" ({plan})"
            else:
                outcome = run_child(index_args, env, kill_on="AT save-begin 2", kill_delay=rng.uniform(0, 0.004))
        elif moment == "rebuild":
            hurt = damage(home / "data" / "index", rng)
            open_args = ["--child", "open", "--home", str(home), *fake]
            if rng.random() < 0.5:
                plan = f"{rng.choice(SAVE_STAGES + ('index-add',))}:1"
                outcome = run_child([*open_args, "--plan", plan], env) + f" ({hurt}; {plan})"
            else:
                outcome = run_child(open_args, env, kill_on="AT rebuild-begin 1",
                                    kill_delay=rng.uniform(0.05, 0.6)) + f" ({hurt})"
        else:  # "save": a later save over an existing file
            # Save 1 repairs an index left stale by the last kill, if it must; else it is the last.
            plan = f"{rng.choice(SAVE_STAGES)}:{rng.choice([1, 1, 2])}"
            outcome = run_child([*index_args, "--plan", plan], env) + f" ({plan})"
        landed = outcome.startswith("killed")
        kills += landed
        if landed:
            counts[moment] = counts.get(moment, 0) + 1
        result = subprocess.run(_python("--child", "check", "--home", str(home), *fake), env=env,
                                capture_output=True, text=True)
        report = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {
            "problems": [f"check crashed: {result.stderr[-500:]}"], "files": "?", "chunks": "?", "indexed": {}}
        if home == main_home:
            # No committed work lost: what was indexed before the round and is unchanged on disk
            # since (same size and mtime) must still be indexed.
            lost = []
            for path, stamp in indexed_before.items():
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if [st.st_size, st.st_mtime_ns] == stamp and path not in report["indexed"]:
                    lost.append(path)
            if lost:
                report["problems"].append(f"{len(lost)} committed files lost, e.g. {lost[0]}")
            indexed_before = report["indexed"]
        failures += bool(report["problems"])
        label = f"kill {kills:>2}" if landed else "(no kill)"
        print(f"{label:<9} {moment:<10} {outcome:<58} files {report['files']:>5}  chunks {report['chunks']:>6}  "
              f"{'OK' if not report['problems'] else 'FAIL ' + '; '.join(report['problems'])}", flush=True)

    env = {**os.environ, "SIFT_HOME": str(main_home)}
    t = time.monotonic()
    final = subprocess.run(_python("--child", "index", "--home", str(main_home), *fake), env=env,
                           stdout=subprocess.DEVNULL)
    check_final = subprocess.run(_python("--child", "check", "--home", str(main_home), *fake), env=env,
                                 capture_output=True, text=True)
    report = json.loads(check_final.stdout.strip().splitlines()[-1])
    n = sum(1 for _ in docs.glob("*.txt"))
    complete = final.returncode == 0 and report["files"] == n and not report["problems"]
    print("kill moments: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f" ({attempts - kills} runs finished before their moment: checked, not counted)")
    print(f"final run: {time.monotonic() - t:.1f} s, {report['files']}/{n} files, "
          f"{'complete' if complete else 'INCOMPLETE ' + '; '.join(report['problems'])}")
    print(f"{kills - failures} of {kills} kills left a consistent catalog and index")
    return 0 if failures == 0 and complete and kills == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
