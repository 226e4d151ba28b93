"""Prints the code's shape: long functions, module sizes, engine import cycles, and a click's walk.

    python bench/architecture.py [--min-lines 80] [--walk]

The walk records a click and runs fine-tuning (fake embedder, fake trainer, a temporary home)
up to the moment the first training rows are handed to the trainer, and lists the engine
functions it enters for the first time, in order, as a reader following the code would:
"stops" are those functions, "files" the distinct files they sit in, "returns" the times the
walk goes back to a file it had already left.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.test_architecture import engine_import_graph, find_cycle  # noqa: E402 (the test's graph, one home)

SOURCE_DIRS = ("engine", "desktop", "bench")


def long_functions(min_lines: int) -> list[tuple[int, str]]:
    out = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > min_lines:
                        out.append((n, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def module_sizes(top: int = 15) -> list[tuple[int, str]]:
    sizes = []
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            sizes.append((len(path.read_text(encoding="utf-8").splitlines()), str(path.relative_to(ROOT))))
    return sorted(sizes, reverse=True)[:top]


def click_walk() -> tuple[list[str], int, int]:
    """(stops as "file:function", files entered, returns to a file already left)."""
    import logging
    import tempfile

    from engine.embed import FakeEmbedder
    from engine.engine import Engine
    from engine.finetune import TrainOptions, run_finetune

    class _Stop(Exception):
        pass

    stops: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    engine_dir = str(ROOT / "engine")

    def tracer(frame, event, arg):
        if event == "call":
            file = frame.f_code.co_filename
            if file.startswith(engine_dir) and not frame.f_code.co_name.startswith("<"):  # comprehensions, lambdas
                key = (str(Path(file).relative_to(ROOT)), frame.f_code.co_qualname)
                if key not in seen:
                    seen.add(key)
                    stops.append(key)
        return None

    class Trainer:
        def mine_negatives(self, *, pairs, corpus, count, **_):
            return {(q, p): [t for t in corpus if t != p][:count] for q, p in pairs}

        def train_embedder(self, **_):
            sys.settrace(None)
            raise _Stop

    topics = 210
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for i in range(topics):
            (docs / f"topic{i:03}.txt").write_text(
                f"Sheet {i}\n\nThe w{i}x assembly is inspected with gauge {i} and its readings are logged.")
        engine = Engine.open(Path(tmp) / "home", embedder=FakeEmbedder())
        try:
            engine.update_config(parse_workers=0)
            engine.add_folder(docs)
            engine.index()
            clicks = []
            for i in range(topics):
                query = f"w{i}x readings"
                hits = engine.search(query, limit=5)
                hit = next((h for h in hits if h.path.endswith(f"topic{i:03}.txt")), hits[0])
                clicks.append((query, hit, hits))
            options = TrainOptions(train_reranker=False)
            last = clicks.pop()
            for query, hit, hits in clicks:
                engine.record_click(query, hit, rank=hits.index(hit) + 1, shown=hits)
            logging.getLogger("engine").setLevel(logging.CRITICAL)  # the run logs the stop as a failure
            sys.settrace(tracer)
            try:
                engine.record_click(last[0], last[1], rank=last[2].index(last[1]) + 1, shown=last[2])
                run_finetune(engine, options, trainer=Trainer())
            except Exception as exc:  # the run wraps _Stop in a SiftError once rows reached the trainer
                if "_Stop" not in repr(exc) and not isinstance(exc, _Stop):
                    raise
            finally:
                sys.settrace(None)
        finally:
            engine.close()
    files: list[str] = []
    returns = 0
    previous = None
    for file, _ in stops:
        if file != previous:
            if file in files:
                returns += 1
            else:
                files.append(file)
            previous = file
    return [f"{f}:{q}" for f, q in stops], len(files), returns


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-lines", type=int, default=80)
    ap.add_argument("--walk", action="store_true", help="also trace a click to a training pair")
    args = ap.parse_args(argv)
    longs = long_functions(args.min_lines)
    print(f"functions over {args.min_lines} lines ({len(longs)}):")
    for n, where in longs:
        print(f"  {n:4} {where}")
    print("largest modules (lines):")
    for n, where in module_sizes():
        print(f"  {n:5} {where}")
    cycle = find_cycle(engine_import_graph())
    print("import cycle in engine: " + (" → ".join(cycle) if cycle else "none"))
    if args.walk:
        stops, files, returns = click_walk()
        print(f"a click to a training pair: {len(stops)} stops in {files} files, {returns} returns to a file already left")
        for s in stops:
            print("  " + s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
