"""The `sift` command line: folders, index, search, status, and a first-run tour."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence

from engine.engine import Engine
from engine.errors import Cancelled, CatalogDamagedError, SiftError
from engine.match import GOOD
from engine.models import NO_RERANKER, ModelInfo, model_name
from engine.paths import resolve_paths
from engine.repair import set_aside_catalog
from engine.rerank import DEFAULT_RERANKER, reranker_download_size
from engine.search import MODES, nothing_found
from engine.types import Hit, IndexReport, Progress, human_size

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# What a file's name or text must not send to a terminal raw: control characters (a newline
# forges a result line, ESC starts a command), bidirectional overrides (U+202E shows a name
# backwards), and bytes 0x80-0x9f of a non-UTF-8 name (C1 controls to some terminals).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                     "\udc80-\udc9f]")
_FLOWING = frozenset("\n\r\t\u2028\u2029")


def shown(text: str, *, flowing: bool = False) -> str:
    """`text` safe to print: unsafe characters as visible escapes (\\n, \\x1b, \\u202e); with
    `flowing` (snippets), line breaks and tabs as spaces."""
    def escape(m: re.Match) -> str:
        ch = m.group()
        if flowing and ch in _FLOWING:
            return " "
        code = ord(ch) - 0xDC00 if "\udc80" <= ch <= "\udc9f" else ord(ch)
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or (
            f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return _UNSAFE.sub(escape, text)

TOUR_QUERIES = (
    "how do I remove limescale from the coffee machine",
    "what tyre pressure should a road bike have",
    "how do birds find their way when migrating",
)


class _LogLines:
    """A tqdm bar's redraws as whole lines, for a log or CI, where `\\r` does not go back."""

    def __init__(self, stream) -> None:
        self.stream, self.encoding = stream, getattr(stream, "encoding", None)

    def write(self, text: str) -> None:
        if line := text.replace("\r", "").rstrip():
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _Bar:
    """Progress on stderr, drawn by tqdm (counts, rate, time left): one line redrawn in place on a
    terminal and cleared at the end; on a log or CI, a line every `every_s` seconds, and one at
    once for a new stage and for the last step. A new `desc` (a stage) or a count that goes back
    (a new run) starts the count and the clock again."""

    def __init__(self, unit: str, *, every_s: float = 5.0, bar_format: str | None = None) -> None:
        self.stream = sys.stderr  # looked up now, not when the module was imported
        self.tty = self.stream.isatty()
        self.unit, self.bar_format = unit, bar_format
        self.every_s = 0.1 if self.tty else every_s
        self._bar = None

    def __call__(self, done: int, total: int, desc: str, postfix: str = "") -> None:
        """Show `done` of `total` (0: not known yet, only the time so far is shown)."""
        bar = self._bar
        bar_format = self.bar_format if total else "{desc} … [{elapsed}{postfix}]"
        if bar is None:
            from tqdm import tqdm

            bar = self._bar = tqdm(
                total=total or None, initial=done, desc=desc, postfix=postfix or None, unit=self.unit,
                bar_format=bar_format, file=self.stream if self.tty else _LogLines(self.stream),
                mininterval=self.every_s, miniters=1, leave=False, dynamic_ncols=self.tty, position=0)
            return
        bar.bar_format = bar_format
        new = desc != bar.desc or done < bar.n
        if new:
            bar.set_description_str(desc, refresh=False)
            bar.set_postfix_str("" if done else postfix, refresh=False)  # (not a later step's words at 0)
            bar.reset(total=total or None)  # drawn at once, at 0
        bar.set_postfix_str(postfix, refresh=False)
        bar.total = total or None
        bar.update(done - bar.n)  # drawn when `every_s` has passed since the last time
        if (new and done) or (total and done >= total and bar.last_print_n < done):
            bar.refresh()  # a stage's first step and the last step, at once
            bar.last_print_n = done  # (as update() marks what it drew: the last step is drawn once)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()  # a terminal's line is cleared
            self._bar = None


class _IndexProgress:
    """An indexing run's Progress as a bar of files, the chunks embedded and the file at hand beside it."""

    def __init__(self) -> None:
        # The time left is the indexer's (given once it can be trusted), not tqdm's first guess.
        self.bar = _Bar(" files", bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]")

    def __call__(self, p: Progress) -> None:
        if p.phase == "scanning":
            self.bar(0, 0, "Looking for changes")
            return
        failed = f" · {p.files_failed} failed" if p.files_failed else ""
        left = f" · about {human_duration(p.eta_s)} left" if p.eta_s is not None else ""
        name = shown(os.path.basename(p.current_file)[:40])
        # Files as they are read and chunks as they are embedded, ahead of the commits.
        self.bar(p.files_seen, p.files_total, "Indexing",
                 f"{p.chunks_embedded} chunks embedded{failed}{left}{'  ' + name if name else ''}")

    def done(self) -> None:
        self.bar.close()


def _print_report(report: IndexReport) -> None:
    parts = [f"{report.added} added", f"{report.updated} updated", f"{report.removed} removed",
             f"{report.moved} moved", f"{report.unchanged} unchanged"]
    if report.failed:
        parts.append(f"{report.failed} could not be indexed (see `sift status`)")
    print(f"Indexed in {report.elapsed_s:.1f} s: " + ", ".join(parts) + ".")
    print(f"Chunks embedded: {report.chunks_embedded}; reused from cache: {report.chunks_reused}.")


def _emphasize(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """Bold the matched words on a terminal; plain text when piped."""
    if not sys.stdout.isatty() or not spans:
        return shown(text, flowing=True)
    out, pos = [], 0
    for start, end in spans:
        out += [shown(text[pos:start], flowing=True), "\033[1m", shown(text[start:end], flowing=True), "\033[0m"]
        pos = end
    return "".join(out) + shown(text[pos:], flowing=True)


def sort_score(hit: Hit) -> float:
    """The number the list is sorted by: the reranker's probability where it ran, else the fused
    score of the two stage-1 lists (hit.score is then the cosine similarity, which the order does
    not follow: rank 2 could show 0.053 and rank 3 0.104)."""
    w = hit.why
    if w is None or w.rerank_score is not None or (w.dense_rank is None and w.keyword_rank is None
                                                   and not w.fused_score):
        return hit.score
    return w.fused_score


DIVIDER = "Loosely related"


def _print_hits(hits: Sequence[Hit], *, why: bool = False, query: str | None = None) -> None:
    """Good matches first; the weak ones under a divider, or, with no good one, said first.

    query: the search's text (None: find-similar, whose hits are not judged)."""
    if not hits:
        print(shown(nothing_found(query)) + "." if query and query.strip() else "No results.")
        return
    if query is not None:
        good = [h for h in hits if h.match == GOOD]
        weak = [h for h in hits if h.match != GOOD]
        if not good:
            print(f"No good matches for \u201c{shown(query)}\u201d; the closest:")
        hits = good + weak
    for i, hit in enumerate(hits, 1):
        if query is not None and i > 1 and hit.match != GOOD and hits[i - 2].match == GOOD:
            print(f"── {DIVIDER} ──")
        where = f" (page {hit.page})" if hit.page is not None else ""
        print(f"{i:>2}. {shown(hit.path)}{where}  [{sort_score(hit):.4f}]")
        print(f"    {_emphasize(hit.snippet, hit.highlights)}")
        for path in hit.duplicates:
            print(f"    same content: {shown(path)}")
        if why and hit.why is not None:
            w = hit.why
            rerank = f", rerank {w.rerank_score:.2f}" if w.rerank_score is not None else ""
            print(f"    why: dense rank {w.dense_rank or '-'}, keyword rank {w.keyword_rank or '-'}, "
                  f"fused {w.fused_score:.4f}{rerank}; {len(hit.passages)} more passages")


def cmd_add_folder(engine: Engine, args) -> int:
    for folder in args.paths:
        print(f"Added {shown(engine.add_folder(folder))}. Run `sift index` to index it.")
    return EXIT_OK


def cmd_remove_folder(engine: Engine, args) -> int:
    for folder in args.paths:
        n = engine.remove_folder(folder)
        print(f"Removed {shown(os.path.abspath(folder))}; forgot {n} indexed files.")
    return EXIT_OK


def cmd_folders(engine: Engine, args) -> int:
    if engine.using_samples:
        print(f"No folders chosen yet; searching the bundled samples in {engine.roots()[0]}.")
        print("Add your own with `sift add-folder PATH`.")
    for folder in engine.config.folders:
        print(shown(folder))
    return EXIT_OK


def _run_index(engine: Engine, quiet: bool) -> IndexReport:
    line = None if quiet else _IndexProgress()
    try:
        return engine.index(on_progress=line)
    finally:
        if line is not None:
            line.done()


def cmd_index(engine: Engine, args) -> int:
    report = _run_index(engine, args.quiet)
    _print_report(report)
    return EXIT_OK


def _load_model_first(engine: Engine, mode: str) -> float | None:
    """Load the model before the search (for --why): ms it took, None if it was loaded already."""
    if mode == "bm25":
        return None
    embedder = engine.embedder
    if getattr(embedder, "_model", "loaded") is not None or not hasattr(embedder, "warm_up"):
        return None
    t = time.perf_counter()
    embedder.warm_up()
    return (time.perf_counter() - t) * 1000


def search_json(query: str, result) -> str:
    """One search as one line of JSON: the query, its hits (each with "match"), the good count."""
    return json.dumps({"query": query, "hits": [dataclasses.asdict(h) for h in result.hits],
                       "good_matches": result.good_matches}, ensure_ascii=False)


def _queries(args) -> list[str]:
    """The query on the command line, or one a line of --queries FILE ('-': standard input)."""
    if args.queries is None:
        if not args.query:
            raise SiftError("Give a query, or --queries FILE with one query a line ('-' reads standard input).")
        return [" ".join(args.query)]
    if args.query:
        raise SiftError("Give either a query or --queries FILE, not both.")
    try:
        if args.queries == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.queries, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SiftError(f"Cannot read the queries in {args.queries}: {exc}. Give a UTF-8 text file, one query "
                        "a line.") from None
    return [line.strip() for line in lines if line.strip()]


def cmd_search(engine: Engine, args) -> int:
    queries = _queries(args)
    load_ms = _load_model_first(engine, args.mode) if args.why else None
    for n, query in enumerate(queries):
        result = engine.search_detailed(query, limit=args.limit, mode=args.mode)
        if args.json:
            print(search_json(query, result), flush=True)
            continue
        if len(queries) > 1:
            print(("\n" if n else "") + f"$ sift search {query}")
        _print_hits(result.hits, why=args.why, query=query)
        if result.hits and result.good_matches:
            print(f"({result.good_matches} good match{'es' if result.good_matches != 1 else ''})")
        if result.note:
            print(f"({result.note})", file=sys.stderr)
        if args.why:
            timings = ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in result.timings_ms.items())
            print(f"mode {result.mode}; {timings}", file=sys.stderr)
            if load_ms is not None and n == 0:
                print(f"before it: loading the model {load_ms:.0f} ms (once per start, not part of the search)",
                      file=sys.stderr)
    return EXIT_OK


def cmd_similar(engine: Engine, args) -> int:
    _print_hits(engine.similar(args.path, limit=args.limit))
    return EXIT_OK


def cmd_reranker_download(engine: Engine, args) -> int:
    size = reranker_download_size(args.name)
    print(f"{args.name} is {human_size(size)}; it will be saved in Sift's data folder and used for stage 2.")
    if not args.yes:
        if not sys.stdin.isatty():
            raise SiftError("Add --yes to download without being asked (no terminal to ask on).")
        if input("Download it now? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing downloaded.")
            return EXIT_OK
    print(f"Installed {engine.download_reranker(args.name)}; search now runs both stages.")
    return EXIT_OK


def cmd_reranker_import(engine: Engine, args) -> int:
    print(f"Installed the reranker from {args.folder} as {engine.import_reranker(args.folder)}; "
          "search now runs both stages.")
    return EXIT_OK


def _model_line(m: ModelInfo) -> str:
    mark = "active" if m.active else "previous" if m.previous else ""
    line = f"{'*' if m.active else ' '} {m.name:<28} {mark:<8}  {m.value}"
    c = m.card
    if c is not None:
        line += f"\n    {c.method}, {c.pairs} pairs, {c.created[:10]}, from {model_name(c.base)}"
        for stage in ("dense", "pipeline"):
            before, after = c.before.get(stage, {}), c.after.get(stage, {})
            figures = [f"{k} {before[k]:.3f} → {after[k]:.3f}" for k in ("ndcg@10", "recall@5")
                       if k in before and k in after]
            if figures:
                line += f"\n    held-out {stage} ({c.heldout_queries} queries): " + ", ".join(figures)
    return line


def _model_json(m: ModelInfo) -> dict:
    return {**dataclasses.asdict(m), "card": dataclasses.asdict(m.card) if m.card is not None else None}


def cmd_models(engine: Engine, args) -> int:
    models = engine.models()
    if args.json:
        print(json.dumps([_model_json(m) for m in models], ensure_ascii=False, indent=2))
        return EXIT_OK
    for kind, title in (("embedder", "Embedding models"), ("reranker", "Rerankers (stage 2)")):
        print(f"{title}:")
        listed = [m for m in models if m.kind == kind]
        print("\n".join(_model_line(m) for m in listed) if listed else "  none installed")
    print("Switch with `sift models use NAME`; undo the last switch with `sift models rollback`.")
    return EXIT_OK


def _switch_report(engine: Engine, kind: str, as_json: bool) -> None:
    config = engine.config
    active, previous = ((config.model, config.previous_model) if kind == "embedder"
                        else (config.reranker, config.previous_reranker))
    if as_json:
        print(json.dumps({"kind": kind, "active": active, "previous": previous}, ensure_ascii=False))
    else:
        what = "Search now uses" if kind == "embedder" else "Stage 2 now uses"
        print(f"{what} {model_name(active) if active else 'no reranker'}; "
              f"`sift models rollback{' --reranker' if kind == 'reranker' else ''}` goes back to "
              f"{model_name(previous) if previous != NO_RERANKER else 'no reranker'}.")


def _switch_model(engine: Engine, switch, name: str) -> None:
    """Run a model switch in the foreground; Ctrl+C cancels it and keeps what was embedded."""
    bar = _Bar(" passages")
    try:
        switch(on_progress=lambda done, total: bar(done, total, f"Embedding your documents with {name}"))
    except KeyboardInterrupt:
        raise Cancelled() from None
    finally:
        bar.close()


def cmd_models_use(engine: Engine, args) -> int:
    models = engine.models()
    wanted = [m for m in models if args.model in (m.name, m.value) and (not args.reranker or m.kind == "reranker")]
    if len({m.kind for m in wanted}) > 1:
        raise SiftError(f"{args.model} names an embedding model and a reranker; add --reranker for the reranker.")
    kind = wanted[0].kind if wanted else ("reranker" if args.reranker else "embedder")
    value = wanted[0].value if wanted else args.model
    if kind == "reranker":
        engine.adopt_reranker(value)
    else:
        try:
            _switch_model(engine, lambda **kw: engine.adopt_model(value, **kw), model_name(value))
        except Cancelled:
            print("\nStopped; the model in use is unchanged. What was embedded is kept: run the same command "
                  "again to continue.", file=sys.stderr)
            return EXIT_INTERRUPTED
    _switch_report(engine, kind, args.json)
    return EXIT_OK


def cmd_models_rollback(engine: Engine, args) -> int:
    if args.reranker:
        engine.rollback_reranker()
        _switch_report(engine, "reranker", args.json)
        return EXIT_OK
    try:
        _switch_model(engine, lambda **kw: engine.rollback_model(**kw), model_name(engine.config.previous_model))
    except Cancelled:
        print("\nStopped; the model in use is unchanged.", file=sys.stderr)
        return EXIT_INTERRUPTED
    _switch_report(engine, "embedder", args.json)
    return EXIT_OK


def cmd_models_prepare(args) -> int:
    """Make the int8 model that the automatic backend runs on x86 CPUs, check it against torch and
    keep it (setup and the installer run this with --into; a user may, for a model of their own)."""
    from engine.config import load_config
    from engine.embed import SentenceTransformerEmbedder

    paths = resolve_paths({"SIFT_HOME": args.home} if args.home else None)
    try:
        value = args.model or load_config(paths.settings).model
        embedder = SentenceTransformerEmbedder(value, device="cpu", cache_dir=paths.cache)
        started = time.monotonic()
        check = embedder.prepare_int8(into=args.into)
    except SiftError as exc:
        print(f"sift: {shown(str(exc), flowing=True)}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({**check, "seconds": round(time.monotonic() - started, 1)}, indent=2))
    else:
        verdict = "used from now on" if check["passed"] else "not used: torch keeps running this model"
        print(f"int8 model of {embedder.name}: cosine to fp32 mean {check['cosine_mean']:.4f}, min "
              f"{check['cosine_min']:.4f} on {check['texts']} texts, {time.monotonic() - started:.0f} s; {verdict}.")
    return EXIT_OK if check["passed"] else EXIT_ERROR


def cmd_history(engine: Engine, args) -> int:
    """What opened results have taught (counts), `clear` to forget it all, `tune` to measure it."""
    if args.action == "clear":
        engine.clear_history()
        print("Forgot every opened result and everything Sift learned from them.")
        return EXIT_OK
    if args.action == "tune":
        report = engine.tune_learning()
        if args.json:
            print(json.dumps(dataclasses.asdict(report), ensure_ascii=False, indent=2))
        else:
            print(report.message)
        return EXIT_OK
    summary = engine.learning_summary()
    if args.json:
        print(json.dumps(dataclasses.asdict(summary), ensure_ascii=False, indent=2))
        return EXIT_OK
    learning = "on" if engine.config.learn_from_clicks else "off (learn_from_clicks in the settings)"
    print(f"{summary.opens:,} opened results; {summary.queries:,} searches learned on {summary.passages:,} "
          f"passages; learning {learning}.")
    if summary.weights.chosen_on:
        print(f"How much it counts was measured on {summary.weights.chosen_on} held-out searches "
              f"(weight {summary.weights.weight:g}).")
    return EXIT_OK


def cmd_rebuild(engine: Engine, args) -> int:
    if getattr(args, "set_aside_catalog", False):  # main() already did: it could not open the old one
        _print_report(_run_index(engine, args.quiet))
        return EXIT_OK
    line = None if args.quiet else _IndexProgress()
    try:
        done, report = engine.rebuild_catalog(on_progress=line)
    finally:
        if line is not None:
            line.done()
    _print_rebuilt(done)
    if report is not None:  # None: the background service indexes the new catalog itself
        _print_report(report)
    return EXIT_OK


def _print_rebuilt(done) -> None:
    kept = f"The old catalog is kept as {done.damaged}" if done.damaged else "There was no catalog"
    print(f"{kept}; carried over {done.rows.get('clicks', 0)} opened results and "
          f"{done.rows.get('embeddings', 0)} cached vectors. Settings are unchanged.")


def cmd_status(engine: Engine, args) -> int:
    s = engine.status()
    if args.json:
        data = dataclasses.asdict(s)
        data["problems"] = [{"path": p.path, "status": str(p.status), "reason": p.plain_reason, "detail": p.reason}
                            for p in s.problems]
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EXIT_ERROR if s.catalog_damage else EXIT_OK
    if s.catalog_damage:
        print(f"Catalog: DAMAGED ({s.catalog_damage}). Search and indexing may fail; run `sift rebuild` to index "
              "your folders again into a new catalog (your opened results and settings are kept).")
    if s.using_samples:
        print("Folders: none chosen yet; searching the bundled sample documents.")
    else:
        print("Folders:\n" + "\n".join(f"  {shown(f)}" + ("  (offline: not there now; its files are kept)"
                                                   if f in s.offline else "") for f in s.folders))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(s.files_by_status.items())) or "nothing indexed yet"
    print(f"Files: {counts}")
    print(f"Chunks: {s.chunks}")
    print(f"Model: {s.model}")
    print(f"Reranker: {s.reranker}")
    print(f"Vector index: {s.vector_dtype}, {human_size(s.index_bytes)}; catalog {human_size(s.catalog_bytes)}")
    failed = [p for p in s.problems if not p.skipped]
    skipped = [p for p in s.problems if p.skipped]
    for problems, heading in ((failed, "Could not index"), (skipped, "Skipped, no text in")):
        if problems:
            print(f"{heading} {len(problems)} file{'' if len(problems) == 1 else 's'}:")
            for p in problems:
                print(f"  {shown(p.path)}: {shown(p.plain_reason)}")
    return EXIT_ERROR if s.catalog_damage else EXIT_OK


def _service_text(p: Progress, folders: int) -> str:
    """One line for the background service when it is not in the middle of a run."""
    if p.error:
        return f"Waiting to retry: {p.error}"
    parts = ["Paused" if p.paused else "Up to date"]
    if p.watching:
        parts.append(f"watching {folders} folder{'s' if folders != 1 else ''}")
    if p.paused and p.files_queued:  # otherwise they are indexed within a second or two
        parts.append(f"{p.files_queued} change{'s' if p.files_queued != 1 else ''} waiting")
    if p.offline:
        parts.append("offline: " + ", ".join(p.offline))
    return " · ".join(parts)


def cmd_watch(engine: Engine, args) -> int:
    """Index in the foreground: everything that changed since last time, then each change as it happens."""
    from engine.service import start_service

    service = start_service(engine)
    folders = len(engine.config.folders) or 1
    where = "the bundled samples" if engine.using_samples else ", ".join(engine.config.folders)
    every = engine.config.reconcile_interval_min
    print(f"Watching {where}{f' (full rescan every {every} min)' if every else ''}. Press Ctrl+C to stop.",
          file=sys.stderr)
    line = _IndexProgress()
    shown = ""

    def stop(signum, frame):  # `kill` and logging out stop it as cleanly as Ctrl+C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        while service.running:
            p = engine.progress()
            if p.phase in ("scanning", "indexing"):
                if not args.quiet:
                    line(p)
                shown = ""
            elif (service.full_runs or p.error or p.paused) and (text := _service_text(p, folders)) != shown:
                shown = text  # (not "up to date" before the first pass has looked)
                line.done()
                print(text, file=sys.stderr, flush=True)
            time.sleep(0.2)  # how often the terminal line is refreshed
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        line.done()
        engine.stop_service()
    print("Stopped watching. Everything indexed so far is kept.", file=sys.stderr)
    return EXIT_OK


def cmd_tour(engine: Engine, args) -> int:
    """First run: index (the samples, until folders are chosen), then show a few searches."""
    if engine.using_samples:
        print(f"No folders chosen yet: indexing the bundled sample documents in {engine.roots()[0]}.")
    print("Loading the embedding model and indexing (the first time takes a minute) …")
    _print_report(_run_index(engine, quiet=False))
    queries = TOUR_QUERIES if engine.using_samples else ()
    for query in queries:
        print(f"\n$ sift search \"{query}\"")
        _print_hits(engine.search(query, limit=3), query=query)
    print("\nNext: `sift add-folder ~/Documents`, `sift index`, then `sift search \"your question\"`.")
    print("      `sift status` shows what is indexed and which files could not be read, and why.")
    return EXIT_OK


def cmd_eval(engine: Engine, args) -> int:
    """Score each search mode on a BEIR collection, in a Sift home of its own (never the user's index)."""
    from engine.evaluate import evaluate, format_table

    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
    if args.limit_queries is not None and args.limit_queries < 1:
        raise SiftError("--limit-queries must be at least 1.")
    line = _IndexProgress()

    def log(message: str) -> None:
        line.done()
        print(message, file=sys.stderr, flush=True)

    try:
        result = evaluate(args.dir, modes=modes, home=args.eval_home, keep=args.keep,
                          limit_queries=args.limit_queries, settings=engine.config, log=log, on_progress=line)
    finally:
        line.done()
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else format_table(result))
    return EXIT_OK


def _finetune_table(result) -> str:
    """Before and after, side by side, for the bi-encoder alone and the full pipeline."""
    from engine.finetune import METRIC_KEYS

    lines = [f"{'held-out':<20}{'before':>9}{'after':>9}{'change':>9}"]
    for stage in ("dense", "pipeline"):
        before, after = getattr(result.before, stage), getattr(result.tried or result.after, stage)
        for key in METRIC_KEYS:
            lines.append(f"{stage + ' ' + key:<20}{before[key]:>9.3f}{after[key]:>9.3f}{after[key] - before[key]:>+9.3f}")
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02} s" if seconds >= 60 else f"{seconds} s"


def cmd_finetune(engine: Engine, args) -> int:
    """Summarize the click history, or (--train) fine-tune from it and show before/after."""
    from engine.finetune import TrainOptions, finetune_summary, run_finetune

    defaults = TrainOptions()
    options = TrainOptions(epochs=defaults.epochs if args.epochs is None else args.epochs,
                           learning_rate=defaults.learning_rate if args.lr is None else args.lr,
                           batch_size=args.batch_size or 0,
                           hard_negatives=defaults.hard_negatives if args.hard_negatives is None else args.hard_negatives,
                           train_reranker=not args.no_reranker, cold_start=args.cold_start)
    summary = finetune_summary(engine, options)
    if not args.train:
        if args.json:
            print(json.dumps(dataclasses.asdict(summary), ensure_ascii=False, indent=2))
        else:
            print(summary.message)
            if summary.enough:
                print("Run `sift finetune --train` to train and compare; add --adopt to switch when it is better.")
        return EXIT_OK
    if not summary.enough:
        raise SiftError(summary.message)
    if not args.json:
        print(summary.message, file=sys.stderr)
    cancel = threading.Event()
    outcome: dict = {}
    # A bar a stage (each stage counts its own steps). Made here: bars made on the worker while it
    # mines are library bars to tqdm_hook, followed into nowhere.
    bar = _Bar("", every_s=10.0, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
               "[{elapsed}<{remaining}{postfix}]")
    bar(0, 0, "Fine-tuning")

    def work() -> None:
        try:
            outcome["result"] = run_finetune(engine, options, on_progress=lambda p: bar(p.done, p.total, p.stage,
                                                                                         p.message), cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 (handed to the main thread, which raises it)
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="sift-finetune", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            try:
                worker.join(0.2)
            except KeyboardInterrupt:  # Ctrl+C: stop at the next step; the worker cleans up
                cancel.set()
                print("\nStopping after the current step …", file=sys.stderr, flush=True)
    finally:
        bar.close()
    if isinstance(outcome.get("error"), Cancelled):
        print("Stopped; the models in use are unchanged and nothing was kept.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    adopted: list[str] = []
    if args.adopt and result.embedder:
        _switch_model(engine, lambda **kw: engine.adopt_model(result.embedder, **kw), model_name(result.embedder))
        adopted.append(result.embedder)
    if args.adopt and result.reranker:
        engine.adopt_reranker(result.reranker)
        adopted.append(result.reranker)
    if args.json:
        data = dataclasses.asdict(result)
        data["adopted"] = adopted
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EXIT_OK
    print(_finetune_table(result))
    print(f"{result.pairs:,} training pairs, {result.heldout_queries} held-out searches; trained in "
          f"{human_duration(result.train_seconds)}.")
    print(result.verdict)
    for folder in adopted:
        print(f"Adopted {model_name(folder)}; `sift models rollback` goes back.")
    if not args.adopt and result.improved:
        offered = " and ".join(f"`sift models use {model_name(f)}`" for f in (result.embedder, result.reranker) if f)
        print(f"Switch with {offered}, or run again with --adopt.")
    return EXIT_OK


def cmd_self_test(args) -> int:
    """Index a few samples with the bundled model in a temporary home, search, check the known hit."""
    from engine.selftest import main as self_test

    return self_test()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sift", description="Private, local, semantic search over your own documents.")
    parser.add_argument("--home", metavar="DIR", help="keep all of Sift's data, settings and caches in DIR (like SIFT_HOME)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("add-folder", help="search a folder (and everything below it)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_add_folder)
    p = sub.add_parser("remove-folder", help="stop searching a folder and forget what was indexed from it")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_remove_folder)
    p = sub.add_parser("folders", help="list the folders Sift searches")
    p.set_defaults(func=cmd_folders)
    p = sub.add_parser("index", help="index new and changed files, forget deleted ones")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("rebuild", help="a new catalog from your folders (after damage): keeps opened results and "
                       "settings; the old file is kept aside")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_rebuild)
    p = sub.add_parser("search", help="search by meaning and keywords")
    p.add_argument("query", nargs="*")
    p.add_argument("-n", "--limit", type=int, default=10, help="how many documents (default 10)")
    p.add_argument("--queries", metavar="FILE", help="answer one query a line of FILE ('-': standard input)")
    p.add_argument("--json", action="store_true", help="print each search as one JSON object on one line: "
                   '{"query", "hits" (each with "match": "good" or "weak"), "good_matches"}')
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="auto (default): keywords + meaning, reranked when a reranker is installed")
    p.add_argument("--why", action="store_true", help="show how each hit ranked, and the timings")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("similar", help="documents like the given one")
    p.add_argument("path")
    p.add_argument("-n", "--limit", type=int, default=10)
    p.set_defaults(func=cmd_similar)
    p = sub.add_parser("reranker", help="install a cross-encoder for the second search stage")
    rsub = p.add_subparsers(dest="reranker_command", required=True, metavar="ACTION")
    r = rsub.add_parser("import", help="copy a sentence-transformers CrossEncoder folder into Sift and use it")
    r.add_argument("folder")
    r.set_defaults(func=cmd_reranker_import)
    r = rsub.add_parser("download", help="download a cross-encoder from the Hugging Face hub (asks first, shows the size)")
    r.add_argument("name", nargs="?", default=DEFAULT_RERANKER, help=f"hub name (default {DEFAULT_RERANKER})")
    r.add_argument("-y", "--yes", action="store_true", help="do not ask")
    r.set_defaults(func=cmd_reranker_download)
    p = sub.add_parser("models", help="list the models (fine-tuned ones with their measured gain), switch, roll back")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    m = msub.add_parser("use", help="switch to a model: re-embeds in the background, then switches at once")
    m.add_argument("model", metavar="NAME|VALUE", help="a name from `sift models`, a model folder, or bundled:…")
    m.add_argument("--reranker", action="store_true", help="the model is a reranker (cross-encoder) folder")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=cmd_models_use)
    m = msub.add_parser("rollback", help="go back to the model used before the last switch (nothing is retrained)")
    m.add_argument("--reranker", action="store_true", help="roll back the reranker instead")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=cmd_models_rollback)
    m = msub.add_parser("prepare", help="make and check the int8 model the automatic backend runs on x86 CPUs "
                        "(setup and the installer do it for the bundled model)")
    m.add_argument("model", nargs="?", metavar="VALUE", help="a model folder or bundled:… (default: the model in use)")
    m.add_argument("--into", metavar="DIR", help="keep it in DIR (what setup and the installer ship) instead of the cache")
    m.add_argument("--json", action="store_true", help="print the check as JSON")
    m.set_defaults(func=None, standalone=cmd_models_prepare)
    p = sub.add_parser("status", help="what is indexed, with which model, and what could not be")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("tour", help="index (the bundled samples at first) and show example searches")
    p.set_defaults(func=cmd_tour)
    p = sub.add_parser("watch", help="keep the index up to date as files change, until Ctrl+C")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar while indexing")
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser("eval", help="measure search quality on a BEIR test collection (nDCG@10, recall, MRR, latency)")
    p.add_argument("dir", metavar="DIR", help="folder with corpus.jsonl, queries.jsonl and qrels.tsv")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--modes", metavar="LIST", help="comma-separated, from bm25,dense,hybrid,rerank,default "
                   "(default: all; rerank when a reranker is installed; default is what a plain search runs)")
    p.add_argument("--home", dest="eval_home", metavar="DIR",
                   help="index in this Sift home (default: a temporary one; your own index is never used)")
    p.add_argument("--keep", metavar="DIR", help="keep the written corpus and its index in DIR; a re-run reuses them")
    p.add_argument("--limit-queries", type=int, metavar="N", help="evaluate only the first N judged queries")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("finetune", help="learn from the results you opened: how much there is to learn from, "
                       "or (--train) train, measure before/after on held-out searches, and (--adopt) switch")
    p.add_argument("--train", action="store_true", help="train and compare (minutes to an hour on a CPU; Ctrl+C stops)")
    p.add_argument("--adopt", action="store_true", help="switch to the new models that measured better")
    p.add_argument("--cold-start", action="store_true",
                   help="learn from practice questions made from your documents instead of your searches")
    p.add_argument("--epochs", type=int, metavar="N", help="passes over the training pairs (default 1)")
    p.add_argument("--lr", type=float, metavar="RATE", help="learning rate (default 2e-5)")
    p.add_argument("--batch-size", type=int, metavar="N", help="default: 32 on a CPU, 128 on a GPU")
    p.add_argument("--hard-negatives", type=int, metavar="N", help="hard negatives per pair for the search model (default 0: in-batch negatives only)")
    p.add_argument("--no-reranker", action="store_true", help="train the search model only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser("history", help="what your opened results taught Sift; `clear` forgets it all, "
                       "`tune` measures it on held-out searches and sets how much it counts")
    p.add_argument("action", nargs="?", choices=("show", "clear", "tune"), default="show")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("self-test", help="check this installation: index samples offline in a temporary home, "
                       "search, check a known hit (exit 0 when it works)")
    p.set_defaults(func=None, standalone=cmd_self_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # parse workers in a frozen (PyInstaller) build
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid UTF-8 reaches us with surrogate escapes; print its own
        # bytes, as ls does, rather than fail on it.
        if hasattr(stream, "reconfigure") and (getattr(stream, "encoding", "") or "").lower().replace("-", "") == "utf8":
            stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    # `sift search boundary layer -laminar`: words starting with "-" belong to the query.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "search" and not any(e.startswith("--") for e in extra):
        args.query += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "standalone", None) is not None:  # needs no engine over the user's own home
        return args.standalone(args)
    try:
        try:
            engine = Engine.open(args.home)
        except CatalogDamagedError:
            if args.command != "rebuild":
                raise
            # Too damaged to open at all: set it aside first, then rebuild into the new one.
            _print_rebuilt(set_aside_catalog(resolve_paths({"SIFT_HOME": args.home} if args.home else None)))
            args.set_aside_catalog = True
            engine = Engine.open(args.home)
    except SiftError as exc:
        print(f"sift: {shown(str(exc), flowing=True)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return args.func(engine, args)
    except SiftError as exc:
        print(f"sift: {shown(str(exc), flowing=True)}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `sift search … | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (KeyboardInterrupt, Cancelled):
        print("\nStopped. Everything indexed so far is kept; `sift index` continues from there.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())
