"""SIGKILL `sift index` at random moments and check that nothing is ever half-written.

Each round edits, deletes, renames and adds a few files, starts an indexing run in a child process, kills it after a random delay, and then
checks, in a fresh process: the catalog opens and passes SQLite's integrity check; every file
is either fully indexed (chunks numbered 0..n-1, each with a vector) or absent; the vector index
opens (rebuilt or repaired if it must be) with exactly the catalog's chunk ids; a search runs.
A final run must then finish the work.

    python bench/kill_index.py --corpus ../shared/data/ir/cranfield --rounds 20     # real model
    python bench/kill_index.py --synthetic 300 --rounds 5 --fake                    # seconds

Prints a line per round and a summary; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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


def child_index(home: str, fake: bool) -> None:
    """Run in the child: one indexing run (the fake embedder keeps the test suite fast)."""
    from engine.embed import FakeEmbedder
    from engine.engine import Engine

    engine = Engine.open(home, embedder=FakeEmbedder() if fake else None)
    engine.index()


def check(home: str, fake: bool) -> list[str]:
    """Run in a fresh process after a kill: the invariants every crash must keep."""
    from engine.embed import FakeEmbedder
    from engine.engine import Engine

    problems: list[str] = []
    engine = Engine.open(home, embedder=FakeEmbedder() if fake else None)
    if (integrity := engine.catalog.check()) != "ok":
        problems.append(f"integrity: {integrity}")
    conn = engine.catalog.conn
    rows = conn.execute("""SELECT f.id, f.status, COUNT(c.id), COALESCE(MAX(c.ordinal), -1),
                                  SUM(e.text_hash IS NULL)
                           FROM files f LEFT JOIN chunks c ON c.file_id = f.id
                           LEFT JOIN embeddings e ON e.text_hash = c.text_hash AND e.model_id = ?
                           GROUP BY f.id""", (engine.embedder.model_id,)).fetchall()
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
    print(json.dumps({"problems": problems, "files": len(rows), "chunks": len(chunk_ids)}))
    return problems


def _python(*args: str) -> list[str]:
    return [sys.executable, __file__, *args]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--corpus", type=Path, help="a BEIR collection folder (corpus.jsonl)")
    src.add_argument("--synthetic", type=int, metavar="N", help="N generated text files")
    ap.add_argument("--limit", type=int, help="use only the first N documents of the corpus")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--max-delay", type=float, default=None, help="latest kill, seconds after start")
    ap.add_argument("--fake", action="store_true", help="use the fake embedder (fast; for the test suite)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="keep files here instead of a temporary folder")
    ap.add_argument("--child", choices=["index", "check"], help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child == "index":
        child_index(args.home, args.fake)
        return 0
    if args.child == "check":
        return 1 if check(args.home, args.fake) else 0

    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sift-kill-"))
    docs, home = work / "docs", work / "home"
    if args.corpus:
        n = write_corpus(args.corpus, docs, args.limit)
    else:
        n = write_synthetic(docs, args.synthetic or 300)
    env = {**os.environ, "SIFT_HOME": str(home)}
    fake = ["--fake"] if args.fake else []
    subprocess.run([sys.executable, "-m", "engine.cli", "add-folder", str(docs)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    max_delay = args.max_delay or (3.0 if args.fake else 25.0)
    print(f"{n} files in {docs}; {args.rounds} kills at 0–{max_delay:g} s after start")

    failures = 0
    for i in range(args.rounds):
        if i:
            mutate(docs, rng)
        delay = rng.uniform(0.2, max_delay)
        child = subprocess.Popen(_python("--child", "index", "--home", str(home), *fake), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            child.wait(timeout=delay)
            outcome = "finished before the kill"
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            outcome = f"killed at {delay:.1f} s"
        result = subprocess.run(_python("--child", "check", "--home", str(home), *fake), env=env,
                                capture_output=True, text=True)
        report = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {
            "problems": [f"check crashed: {result.stderr[-500:]}"], "files": "?", "chunks": "?"}
        failures += bool(report["problems"])
        print(f"round {i + 1:>2}: {outcome:<24} files {report['files']:>5}  chunks {report['chunks']:>6}  "
              f"{'OK' if not report['problems'] else 'FAIL ' + '; '.join(report['problems'])}", flush=True)

    t = time.monotonic()
    final = subprocess.run(_python("--child", "index", "--home", str(home), *fake), env=env)
    check_final = subprocess.run(_python("--child", "check", "--home", str(home), *fake), env=env,
                                 capture_output=True, text=True)
    report = json.loads(check_final.stdout.strip().splitlines()[-1])
    n = sum(1 for _ in docs.glob("*.txt"))
    complete = final.returncode == 0 and report["files"] == n and not report["problems"]
    print(f"final run: {time.monotonic() - t:.1f} s, {report['files']}/{n} files, "
          f"{'complete' if complete else 'INCOMPLETE ' + '; '.join(report['problems'])}")
    print(f"{args.rounds - failures} of {args.rounds} kills left a consistent catalog and index")
    return 0 if failures == 0 and complete else 1


if __name__ == "__main__":
    sys.exit(main())
