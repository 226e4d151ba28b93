"""pypdf against pypdfium2 (PDFium, native) on a folder of PDFs: speed, failures, hangs, same text?

Each file is read by each extractor in a process of its own (forked from this one, which has
imported both libraries), under a processor-time limit (RLIMIT_CPU: a busy machine slows a file
down, it does not make it a hang) and the parse workers' 2 GB address-space cap. The two
extractors take turns file by file, so a change in the machine's load falls on both. A file's
time is open to last page inside the child, not the fork.

Outcomes: ok, encrypted (a password or a protection the library cannot open), no text (opened,
no page has text), error (an exception, or the process died), hang (ran out of its limit).
Printed per extractor: files read, pages, pages/s (total pages / total seconds over the files
both read), failures by kind; then over the files both read, per page: identical text after
whitespace normalisation, word sets that agree ≥ 95% (Jaccard, NFKC and case folded), pages
only one of them found text on; the files only one could read; and a few pages that differ.

    python bench/pdf_extractors.py                        # ../shared/data/pdfs, 30 s per file
    python bench/pdf_extractors.py DIR --limit 10 --json  # only the JSON object on stdout
    python bench/pdf_extractors.py --files 40 --examples 8
"""

from __future__ import annotations

import argparse
import collections
import difflib
import json
import logging
import multiprocessing
import os
import resource
import signal
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT.parent / "shared" / "data" / "pdfs"
MEMORY_MB = 2048    # as the parse workers (engine/parse/runner.py)
WALL_FACTOR = 20    # a child that got no processor time for this many limits is blocked: a hang
EXTRACTORS = ("pypdf", "pypdfium2")


def read_pypdf(path: str) -> tuple[str, list[str]]:
    """(outcome, page texts) the way Sift read PDFs before: empty password tried, a bad page is ''."""
    import traceback

    from pypdf import PasswordType, PdfReader

    with open(path, "rb") as f:
        try:
            reader = PdfReader(f)
        except NotImplementedError as exc:
            if any(fr.name == "_handle_encryption" for fr in traceback.extract_tb(exc.__traceback__)):
                return "encrypted", []
            raise
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            return "encrypted", []
        pages = []
        for page in reader.pages:
            try:
                pages.append(page.extract_text())
            except Exception:  # a bad page loses its text, as in Sift
                pages.append("")
    return ("ok" if any(p.strip() for p in pages) else "no text"), pages


def read_pdfium(path: str) -> tuple[str, list[str]]:
    """(outcome, page texts) with PDFium: the empty password is PDFium's own first try."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    with open(path, "rb") as f:
        try:
            pdf = pdfium.PdfDocument(f)
        except pdfium.PdfiumError as exc:
            if exc.err_code in (raw.FPDF_ERR_PASSWORD, raw.FPDF_ERR_SECURITY):
                return "encrypted", []
            raise
        pages = []
        try:
            for i in range(len(pdf)):
                try:
                    page = pdf[i]
                    textpage = page.get_textpage()
                    pages.append(textpage.get_text_range())
                    textpage.close()
                    page.close()
                except pdfium.PdfiumError:
                    pages.append("")
        finally:
            pdf.close()
    return ("ok" if any(p.strip() for p in pages) else "no text"), pages


READERS = {"pypdf": read_pypdf, "pypdfium2": read_pdfium}


def _child(conn, name: str, path: str, limit: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cpu = int(limit) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the limit ends the child
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_MB * 1024**2, resource.getrlimit(resource.RLIMIT_AS)[1]))
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        outcome, pages = READERS[name](path)
        detail = ""
    except MemoryError:
        outcome, pages, detail = "error", [], "MemoryError"
    except BaseException as exc:
        outcome, pages, detail = "error", [], f"{type(exc).__name__}: {str(exc)[:120]}"
    conn.send((outcome, pages, time.perf_counter() - t0, time.process_time() - c0, detail))
    conn.close()


def extract(context, name: str, path: str, limit: float) -> dict:
    """One file through one extractor in a child process: outcome, pages, seconds, texts."""
    parent, child = context.Pipe(duplex=False)
    proc = context.Process(target=_child, args=(child, name, path, limit), daemon=True)
    proc.start()
    child.close()
    got = None
    deadline = time.monotonic() + limit * WALL_FACTOR
    while got is None and time.monotonic() < deadline:
        if parent.poll(0.5):
            try:
                got = parent.recv()
            except EOFError:
                break
        elif not proc.is_alive():
            break
    proc.join(0.1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    parent.close()
    if got is None:
        code = proc.exitcode
        if code in (-signal.SIGXCPU, -signal.SIGKILL) or code is None:
            return {"outcome": "hang", "pages": 0, "seconds": limit, "texts": [], "detail": f"over {limit:g} s"}
        return {"outcome": "error", "pages": 0, "seconds": 0.0, "texts": [], "detail": f"process died ({code})"}
    outcome, texts, seconds, cpu, detail = got
    return {"outcome": outcome, "pages": len(texts), "seconds": seconds, "cpu_s": cpu, "texts": texts,
            "detail": detail}


def normal(text: str) -> str:
    return " ".join(text.split())


def words(text: str) -> set[str]:
    return set(unicodedata.normalize("NFKC", text).casefold().split())


def jaccard(a: set[str], b: set[str]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def compare(results: dict[str, dict[str, dict]], examples: int) -> dict:
    """Page by page over the files both extractors read (ok, or no text)."""
    both = [f for f, r in results.items() if all(r[n]["outcome"] in ("ok", "no text") for n in EXTRACTORS)]
    pages = identical = close = only_a = only_b = page_count_differs = 0
    differing: list[tuple[float, str, int, str, str]] = []
    for f in both:
        a, b = (results[f][n]["texts"] for n in EXTRACTORS)
        if len(a) != len(b):
            page_count_differs += 1
        for number, (ta, tb) in enumerate(zip(a, b), start=1):
            pages += 1
            na, nb = normal(ta), normal(tb)
            if na == nb:
                identical += 1
                close += 1
                continue
            similarity = jaccard(words(ta), words(tb))
            close += similarity >= 0.95
            only_a += bool(na) and not nb
            only_b += bool(nb) and not na
            differing.append((similarity, f, number, na, nb))
    differing.sort()
    step = max(1, len(differing) // max(examples, 1))
    shown = []
    for similarity, f, number, na, nb in differing[::step][:examples]:
        shown.append({"file": f, "page": number, "word_jaccard": round(similarity, 3),
                      EXTRACTORS[0]: na[:300], EXTRACTORS[1]: nb[:300], "diff": _diff(na, nb)})
    return {"files_both_read": len(both), "pages_compared": pages,
            "identical_pages": identical, "identical_rate": identical / pages if pages else None,
            "words_agree_95_pages": close, "words_agree_95_rate": close / pages if pages else None,
            f"text_only_from_{EXTRACTORS[0]}": only_a, f"text_only_from_{EXTRACTORS[1]}": only_b,
            "files_page_count_differs": page_count_differs, "examples": shown}


def _diff(a: str, b: str, width: int = 60) -> list[str]:
    """The first few spans where the normalised texts differ, as 'a-side → b-side'."""
    out = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False) if len(a) + len(b) < 20000 else None
    if matcher is None:
        return ["(too long to diff)"]
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.append(f"{a[max(0, i1 - 15):i2 + 5][:width]!r} → {b[max(0, j1 - 15):j2 + 5][:width]!r}")
        if len(out) == 3:
            break
    return out


def summarise(results: dict[str, dict[str, dict]]) -> dict:
    both_ok = [f for f, r in results.items() if all(r[n]["outcome"] == "ok" for n in EXTRACTORS)]
    out: dict = {}
    for n in EXTRACTORS:
        rows = [r[n] for r in results.values()]
        pages = sum(results[f][n]["pages"] for f in both_ok)
        seconds = sum(results[f][n]["seconds"] for f in both_ok)
        out[n] = {
            "files_read": sum(r["outcome"] in ("ok", "no text") for r in rows),
            "files_with_text": sum(r["outcome"] == "ok" for r in rows),
            "outcomes": dict(collections.Counter(r["outcome"] for r in rows).most_common()),
            "hangs": sum(r["outcome"] == "hang" for r in rows),
            "pages_both_ok": pages, "seconds_both_ok": seconds,
            "pages_per_s": pages / seconds if seconds else None,
            "seconds_all_files": sum(r["seconds"] for r in rows),
        }
    a, b = EXTRACTORS
    out["files_both_ok"] = len(both_ok)
    out["speed_ratio"] = (out[b]["pages_per_s"] / out[a]["pages_per_s"]) if out[a]["pages_per_s"] else None
    out["only_read_by"] = {
        n: sorted(f for f, r in results.items()
                  if r[n]["outcome"] == "ok" and r[other]["outcome"] != "ok")
        for n, other in ((a, b), (b, a))}
    out["outcome_pairs"] = dict(collections.Counter(
        f"{r[a]['outcome']} / {r[b]['outcome']}" for r in results.values()).most_common())
    return out


def table(result: dict) -> str:
    s = result["summary"]
    lines = [f"{result['files']} PDFs in {result['dir']}, limit {result['limit_s']:g} s of processor time per file, "
             f"load average at start {result['load_average'][0]:.1f}"]
    for n in EXTRACTORS:
        e = s[n]
        rate = f"{e['pages_per_s']:.1f}" if e["pages_per_s"] else "-"
        lines.append(f"{n:<10} read {e['files_read']} (text in {e['files_with_text']}), "
                     f"{e['pages_both_ok']} pages in {e['seconds_both_ok']:.1f} s = {rate} pages/s over the "
                     f"{s['files_both_ok']} files both read with text; outcomes "
                     + ", ".join(f"{k} {v}" for k, v in e["outcomes"].items())
                     + f"; all files {e['seconds_all_files']:.1f} s")
    if s["speed_ratio"]:
        lines.append(f"speed ratio {EXTRACTORS[1]} / {EXTRACTORS[0]}: {s['speed_ratio']:.1f}x (same run)")
    lines.append("outcome pairs (pypdf / pypdfium2): " + ", ".join(f"{k} {v}" for k, v in s["outcome_pairs"].items()))
    for n, files in s["only_read_by"].items():
        lines.append(f"text only from {n} ({len(files)}): " + ", ".join(files[:12]) + (" …" if len(files) > 12 else ""))
    c = result["comparison"]
    if c["pages_compared"]:
        lines.append(f"{c['pages_compared']} pages of {c['files_both_read']} files both read: identical after "
                     f"whitespace normalisation {c['identical_rate']:.1%}, word sets agree ≥ 95% "
                     f"{c['words_agree_95_rate']:.1%}; text only from pypdf on {c['text_only_from_pypdf']} pages, "
                     f"only from pypdfium2 on {c['text_only_from_pypdfium2']}; page counts differ in "
                     f"{c['files_page_count_differs']} files")
    for ex in c["examples"]:
        lines.append(f"  {ex['file']} p.{ex['page']} (word Jaccard {ex['word_jaccard']}):")
        for d in ex["diff"]:
            lines.append(f"      {d}")
    return "\n".join(lines)


def run(folder: Path, *, limit: float, files: int | None = None, examples: int = 6) -> dict:
    import pypdfium2  # noqa: F401  (imported once here, so the forked children do not pay for it)
    import pypdf  # noqa: F401

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a warning per quirk of a malformed file

    context = multiprocessing.get_context("fork")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".pdf")[:files]
    results: dict[str, dict[str, dict]] = {}
    for i, p in enumerate(paths):
        order = EXTRACTORS if i % 2 == 0 else EXTRACTORS[::-1]  # neither always runs on a warm cache
        results[p.name] = {n: extract(context, n, str(p), limit) for n in order}
    result = {"dir": str(folder), "files": len(paths), "limit_s": limit, "load_average": os.getloadavg(),
              "summary": summarise(results), "comparison": compare(results, examples),
              "per_file": {f: {n: {k: v for k, v in r[n].items() if k != "texts"} for n in EXTRACTORS}
                           for f, r in results.items()}}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--limit", type=float, default=30.0, help="processor seconds per file and extractor")
    ap.add_argument("--files", type=int, default=None, help="only the first N files (by name)")
    ap.add_argument("--examples", type=int, default=6, help="differing pages to show")
    ap.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    args = ap.parse_args()
    if not args.dir.is_dir():
        print(f"{args.dir} is not there; pass DIR", file=sys.stderr)
        return 2
    result = run(args.dir, limit=args.limit, files=args.files, examples=args.examples)
    print(table(result), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
