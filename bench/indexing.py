"""Indexing throughput: end-to-end chunks/s beside the raw speed of the same model on the same texts.

Indexes a folder of files into a temporary Sift home with the real pipeline (parse workers,
chunking, embedding, catalog and vector index), then, in the same run and with the same embedder
(backend, precision, threads), times `embed_documents` alone on exactly the chunk texts that were
indexed. The ratio says how much of the model's speed the pipeline keeps (goal ≥ 0.85). Then it
re-indexes the unchanged folder (0 chunks should be embedded) and reports files/s.

    python bench/indexing.py DIR --json                       # a folder of files
    python bench/indexing.py --beir ../shared/data/ir/cranfield  # a BEIR corpus written out as .txt files
    python bench/indexing.py --synthetic 2000                 # PDF, DOCX, HTML and Markdown made here
    python bench/indexing.py --short 3000 --beir ../shared/data/ir/cranfield --beir ../shared/data/ir/cisi
                                                              # 3,000 one-chunk notes of real sentences
    python bench/indexing.py --synthetic 200 --fake           # pipeline only (hashing embedder)
    python bench/indexing.py --short 3000 --beir … --cpu      # also processor seconds per thread

The model is loaded and warmed up before the clock starts; its load time is reported apart.
With --json only the JSON object goes to stdout (the table goes to stderr); --out writes it too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORDS = ("boundary layer pressure gradient turbulent flow heat transfer wing surface shock wave supersonic "
         "velocity profile laminar separation viscous stream nozzle cylinder experiment theory solution "
         "library archive invoice contract meeting budget schedule project report summary customer garden "
         "recipe espresso bicycle tyre weather mountain river history museum painting concert orchestra").split()


def _paragraph(rng: random.Random, words: int) -> str:
    sentences, out = [], []
    for w in range(words):
        out.append(rng.choice(WORDS))
        if len(out) >= rng.randint(8, 18) or w == words - 1:
            sentences.append(" ".join(out).capitalize() + ".")
            out = []
    return " ".join(sentences)


def make_synthetic(folder: Path, count: int, seed: int = 7) -> None:
    """count mixed documents (PDF, DOCX, HTML, Markdown, a quarter each), 100-1,500 words each."""
    from tests.filemaker import make_docx, make_html, make_pdf

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        paragraphs = [_paragraph(rng, rng.randint(40, 150)) for _ in range(rng.randint(2, 10))]
        kind = i % 4
        sub = folder / f"part{i % 20:02}"
        sub.mkdir(exist_ok=True)
        if kind == 0:
            # make_pdf draws each line as is: wrap at ~90 characters, ~40 lines a page
            lines = [p[j:j + 90] for p in paragraphs for j in range(0, len(p), 90)]
            make_pdf(sub / f"doc{i:05}.pdf", ["\n".join(lines[k:k + 40]) for k in range(0, len(lines), 40)])
        elif kind == 1:
            make_docx(sub / f"doc{i:05}.docx", paragraphs)
        elif kind == 2:
            make_html(sub / f"doc{i:05}.html", "".join(f"<p>{p}</p>" for p in paragraphs), title=f"Page {i}")
        else:
            (sub / f"doc{i:05}.md").write_text(f"# Note {i}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")


def write_beir(source: Path, folder: Path, limit: int | None) -> None:
    from engine.evaluate import load_beir, write_corpus

    corpus = load_beir(source).corpus
    if limit:
        corpus = dict(list(corpus.items())[:limit])
    write_corpus(corpus, folder)


def write_short(sources: list[Path], folder: Path, count: int, words: int = 30) -> None:
    """count short notes (one chunk each, about 50 tokens): each document of the BEIR collections
    cut at sentence ends into pieces of about `words` words, taken in turn across the collections,
    so the notes are real text that nobody here wrote, as a home folder's notes, mail and snippets are."""
    import re

    from engine.evaluate import load_beir

    pieces: list[list[str]] = []
    for source in sources:
        notes: list[str] = []
        for doc in load_beir(source).corpus.values():
            sentence_words: list[str] = []
            for sentence in re.split(r"(?<=[.?!])\s+", f"{doc.title}. {doc.text}" if doc.title else doc.text):
                sentence_words += sentence.split()
                if len(sentence_words) >= words:
                    notes.append(" ".join(sentence_words[:2 * words]))
                    sentence_words = []
        pieces.append(notes)
    taken = [note for group in zip(*pieces) for note in group][:count]
    if len(taken) < count:
        raise SystemExit(f"the collections give only {len(taken)} notes of {words} words")
    folder.mkdir(parents=True, exist_ok=True)
    for i, note in enumerate(taken):
        sub = folder / f"notes{i // 500:02}"
        sub.mkdir(exist_ok=True)
        (sub / f"note{i:05}.txt").write_text(note + "\n", encoding="utf-8")


def chunk_texts(engine) -> list[str]:
    ids = engine.catalog.chunk_ids().tolist()
    rows = engine.catalog.chunks_by_id(ids)
    return [rows[i].text for i in ids]


class ThreadCPU:
    """Processor seconds per thread of this process while it runs (Linux: /proc/self/task, read
    every 50 ms so threads that end before it does are counted too), and of its children that
    ended meanwhile (the parse workers). Threads Python did not start (the model's) are "native"."""

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last: dict[int, tuple[str, float]] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="bench-cpu-sampler", daemon=True)

    def _read(self) -> dict[int, tuple[str, float]]:
        names = {t.native_id: t.name for t in threading.enumerate()}
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            out[int(tid)] = (names.get(int(tid), "native"), (int(fields[11]) + int(fields[12])) / self._tick)
        return out

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self._last.update(self._read())

    def __enter__(self) -> "ThreadCPU":
        self._start, self._children = self._read(), os.times()
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._sampler.join()
        self._last.update(self._read())
        after = os.times()
        by: dict[str, float] = {}
        for tid, (name, cpu) in self._last.items():
            name = re.sub(r"_\d+$", "", name)  # sift-embed_0 → sift-embed
            by[name] = by.get(name, 0.0) + cpu - self._start.get(tid, (name, 0.0))[1]
        by.pop(self._sampler.name, None)
        by["parse worker processes"] = (after.children_user + after.children_system
                                        - self._children.children_user - self._children.children_system)
        self.seconds = {k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1]) if v >= 0.01}


def run(folder: Path, *, backend: str, precision: str, workers: int, batch_size: int, threads: int,
        fake: bool, reindex: bool = True, home: Path | None = None, raw_passes: int = 2, cpu: bool = False) -> dict:
    from engine.embed import FakeEmbedder
    from engine.engine import Engine

    if threads:
        import torch

        torch.set_num_threads(threads)
    home = home or Path(tempfile.mkdtemp(prefix="sift-bench-index-"))
    engine = Engine.open(home, embedder=FakeEmbedder() if fake else None)
    try:
        engine.update_config(parse_workers=workers, embed_batch_size=batch_size, backend=backend, precision=precision,
                             low_priority=False)
        engine.add_folder(folder)
        embedder = engine.embedder
        t0 = time.perf_counter()
        if hasattr(embedder, "warm_up"):
            embedder.warm_up()
        load_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadCPU() if cpu else contextlib.nullcontext() as threads_cpu:
            report = engine.index()
        index_s = time.perf_counter() - t0
        texts = chunk_texts(engine)

        # The whole list at once, the model's best case, in a fresh thread as the pipeline's
        # embedding runs (torch on this process's main thread measured up to 3x slower after the
        # query path's thread switch); the faster of raw_passes passes, since a first pass pays
        # one-off costs per input shape (oneDNN primitives).
        from concurrent.futures import ThreadPoolExecutor

        raw_times = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            for _ in range(max(1, raw_passes)):
                t0 = time.perf_counter()
                pool.submit(embedder.embed_documents, texts).result()
                raw_times.append(time.perf_counter() - t0)
        raw_s = min(raw_times)

        out = {
            "folder": str(folder), "files": report.added, "failed": report.failed, "chunks": len(texts),
            "chunks_embedded": report.chunks_embedded, "index_s": round(index_s, 2),
            "chunks_per_s": round(report.chunks_embedded / index_s, 2) if index_s else None,
            "files_per_s": round((report.added + report.failed) / index_s, 2) if index_s else None,
            "raw_model_s": round(raw_s, 2), "raw_model_passes_s": [round(t, 2) for t in raw_times],
            "raw_model_chunks_per_s": round(len(texts) / raw_s, 2) if raw_s else None,
            "model_load_s": round(load_s, 2),
        }
        if threads_cpu is not None:
            out["index_cpu_s"] = threads_cpu.seconds
        out["ratio"] = round(out["chunks_per_s"] / out["raw_model_chunks_per_s"], 3) \
            if out["chunks_per_s"] and out["raw_model_chunks_per_s"] else None
        if texts and not fake:
            lengths = [len(embedder.token_offsets(t)) for t in texts[:2000]]
            out["mean_chunk_tokens"] = round(sum(lengths) / len(lengths), 1)
        if reindex:
            t0 = time.perf_counter()
            again = engine.index()
            re_s = time.perf_counter() - t0
            total = again.added + again.updated + again.unchanged + again.failed
            out["reindex"] = {"s": round(re_s, 3), "files": total, "chunks_embedded": again.chunks_embedded,
                              "files_per_s": round(total / re_s, 1) if re_s else None}
        import torch

        out.update({
            "embedder": embedder.model_id, "backend": getattr(embedder, "backend", "fake"),
            "precision": getattr(embedder, "precision", "fake"), "batch_size": getattr(embedder, "batch_size", None),
            "torch_threads": torch.get_num_threads(), "parse_workers": workers,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        })
        return out
    finally:
        engine.close()


def table(r: dict) -> str:
    lines = [
        (f"{r['files']:,} files ({r['failed']} failed) -> {r['chunks']:,} chunks in {r['index_s']} s "
         f"[{r['backend']}/{r['precision']}, batch {r['batch_size']}, {r['torch_threads']} torch threads, "
         f"{r['parse_workers']} parse workers, load avg {r['load_avg_1m']}]"),
        f"  end to end : {r['chunks_per_s']} chunks/s, {r['files_per_s']} files/s",
        f"  raw model  : {r['raw_model_chunks_per_s']} chunks/s (same texts, same embedder)",
        f"  ratio      : {r['ratio']}",
    ]
    if "index_cpu_s" in r:
        lines.append("  index CPU s: " + ", ".join(f"{k} {v}" for k, v in r["index_cpu_s"].items()))
    if "reindex" in r:
        ri = r["reindex"]
        lines.append(f"  re-index   : {ri['files']:,} files in {ri['s']} s = {ri['files_per_s']} files/s, "
                     f"{ri['chunks_embedded']} chunks embedded")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", help="a folder of files to index")
    ap.add_argument("--beir", action="append", type=Path,
                    help="a BEIR collection folder, written out as text files first (with --short: repeatable)")
    ap.add_argument("--short", type=int, metavar="N", help="with --beir: N one-chunk notes cut from its documents")
    ap.add_argument("--limit", type=int, help="with --beir: only the first N documents")
    ap.add_argument("--synthetic", type=int, metavar="N", help="make N mixed documents (PDF, DOCX, HTML, Markdown)")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "openvino"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    ap.add_argument("--workers", type=int, default=2, help="parse worker processes (default 2)")
    ap.add_argument("--batch-size", type=int, default=0, help="embedder batch size (default: picked per device)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's own)")
    ap.add_argument("--fake", action="store_true", help="hashing embedder: measures the pipeline alone")
    ap.add_argument("--no-reindex", action="store_true")
    ap.add_argument("--raw-passes", type=int, default=2, help="raw-model passes; the fastest counts (default 2)")
    ap.add_argument("--cpu", action="store_true",
                    help="processor seconds of the index pass per thread and of the parse workers (Linux)")
    ap.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    ap.add_argument("--out", help="also write the JSON object to this file")
    args = ap.parse_args()
    if sum(x is not None for x in (args.folder, args.beir, args.synthetic)) != 1:
        ap.error("give exactly one of DIR, --beir or --synthetic")
    if args.beir and len(args.beir) > 1 and not args.short:
        ap.error("more than one --beir only with --short")
    with tempfile.TemporaryDirectory(prefix="sift-bench-") as work:
        if args.folder:
            folder = Path(args.folder).resolve()
        else:
            folder = Path(work) / "docs"
            t0 = time.perf_counter()
            if args.short:
                write_short(args.beir, folder, args.short)
            elif args.beir:
                write_beir(args.beir[0], folder, args.limit)
            else:
                make_synthetic(folder, args.synthetic)
            print(f"wrote the documents in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        result = run(folder, backend=args.backend, precision=args.precision, workers=args.workers,
                     batch_size=args.batch_size, threads=args.threads, fake=args.fake,
                     reindex=not args.no_reindex, home=Path(work) / "home", raw_passes=args.raw_passes,
                     cpu=args.cpu)
    if args.short:
        result["folder"] = f"{args.short} notes cut from {', '.join(str(b) for b in args.beir)}"
    elif args.beir:
        result["folder"] = f"{args.beir[0]} (written as files)"
    elif args.synthetic:
        result["folder"] = f"synthetic {args.synthetic} (PDF, DOCX, HTML, Markdown)"
    text = json.dumps(result, indent=None if args.json else 2)
    print(table(result), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
