"""Self-test of an installed or frozen Sift: index bundled samples offline with the bundled model, search, check a hit.

`sift self-test` and `sift-desktop --self-test` run it. It never touches the user's own index:
everything happens in a temporary Sift home that is deleted afterwards. It proves what a
fresh install needs: the sample documents and the model are inside the bundle, parse worker
processes start (they are spawned, which a frozen app must support), the model loads without
the network, and a search by meaning finds the page it should. Exit status 0 when all of it
works, 1 with a message naming what failed otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from engine.embed import Embedder, SentenceTransformerEmbedder
from engine.errors import SiftError
from engine.paths import resolve_paths, samples_dir

# A few samples of different formats, the PDF among them: its parser is the heaviest to freeze.
SAMPLE_FILES = (
    "espresso-machine-manual.pdf",
    "bicycle-maintenance.txt",
    "sourdough-bread.md",
    "home-composting.html",
    "lease-summary.docx",
)
# "limescale" is not a word of the manual: the embedding model has to lead to its descaling page (p. 3).
QUERY = "remove limescale from the coffee machine"
EXPECTED_FILE = "espresso-machine-manual.pdf"
EXPECTED_PAGE = 3
PARSE_WORKERS = 1  # at least one spawned worker process: the part of a frozen app most likely to break

EXIT_OK, EXIT_FAILED = 0, 1


@dataclass
class SelfTestReport:
    """What a self-test checked: one line per check, and whether all passed."""

    checks: list[tuple[bool, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks)

    def add(self, ok: bool, text: str, out: Callable[[str], None]) -> bool:
        self.checks.append((ok, text))
        out(f"{'ok  ' if ok else 'FAIL'} {text}")
        return ok


class _NetworkWatch:
    """Records every attempt to reach beyond this machine, through an audit hook installed once per process."""

    _installed: ClassVar[bool] = False
    _lock: ClassVar[threading.Lock] = threading.Lock()
    active: ClassVar[bool] = False
    attempts: ClassVar[list[str]] = []

    @classmethod
    def start(cls) -> None:
        with cls._lock:
            if not cls._installed:
                sys.addaudithook(cls._audit)  # audit hooks cannot be removed: one hook, switched on and off
                cls._installed = True
            cls.attempts = []
            cls.active = True

    @classmethod
    def stop(cls) -> list[str]:
        cls.active = False
        return list(cls.attempts)

    @classmethod
    def _audit(cls, event: str, args: tuple) -> None:
        if not cls.active or not event.startswith("socket."):
            return
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            address = args[1] if len(args) > 1 else None
            if isinstance(address, tuple) and address and not is_local(address[0]):
                cls.attempts.append(f"{event} to {address[0]}")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex") and args \
                and not is_local(args[0]):
            cls.attempts.append(f"{event} for {args[0]}")


def is_local(host) -> bool:
    """True for a host name or address on this machine (loopback): what Sift may talk to."""
    import ipaddress

    if host is None or host in ("", "localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host).is_loopback
    except ValueError:
        return False


def run_self_test(
    *,
    embedder: Embedder | None = None,
    samples: Path | None = None,
    files: Sequence[str] = SAMPLE_FILES,
    query: str = QUERY,
    expected_file: str = EXPECTED_FILE,
    expected_page: int | None = EXPECTED_PAGE,
    parse_workers: int = PARSE_WORKERS,
    out: Callable[[str], None] = print,
) -> SelfTestReport:
    """Index `files` from the samples in a temporary Sift home, search `query`, expect `expected_file` first.

    `embedder` None means the configured default: the bundled model, as a user gets it.
    """
    report = SelfTestReport()
    started = time.perf_counter()
    frozen = getattr(sys, "frozen", False)
    out(f"Sift self-test ({'frozen app' if frozen else 'Python'} {sys.executable})")
    samples = samples or samples_dir()
    missing = [name for name in files if not (samples / name).is_file()]
    if not report.add(not missing, f"sample documents in {samples}"
                      + (f": missing {', '.join(missing)}; the install is incomplete, reinstall Sift" if missing else ""),
                      out):
        return report
    if embedder is None:
        from engine.embed import bundled_model_dir

        try:
            model = bundled_model_dir()
        except SiftError as exc:
            report.add(False, f"bundled model: {exc}", out)
            return report
        if not report.add(any(model.glob("*.safetensors")), f"bundled model in {model}"
                          + ("" if any(model.glob("*.safetensors")) else ": no .safetensors weights there"), out):
            return report

    _NetworkWatch.start()
    try:
        with tempfile.TemporaryDirectory(prefix="sift-selftest-") as tmp:
            _index_and_search(report, Path(tmp), samples=samples, files=files, embedder=embedder, query=query,
                              expected_file=expected_file, expected_page=expected_page,
                              parse_workers=parse_workers, out=out)
    except (SiftError, OSError) as exc:
        report.add(False, f"{type(exc).__name__}: {exc}", out)
    finally:
        attempts = _NetworkWatch.stop()
    report.add(not attempts, "no network connection attempted" if not attempts
               else f"network used: {'; '.join(sorted(set(attempts))[:5])}", out)
    report.elapsed_s = time.perf_counter() - started
    out(f"{'PASSED' if report.ok else 'FAILED'} in {report.elapsed_s:.1f} s")
    return report


def _index_and_search(report: SelfTestReport, tmp: Path, *, samples: Path, files: Sequence[str],
                      embedder: Embedder | None, query: str, expected_file: str, expected_page: int | None,
                      parse_workers: int, out: Callable[[str], None]) -> None:
    from engine.engine import Engine

    docs = tmp / "documents"
    docs.mkdir()
    for name in files:
        shutil.copy2(samples / name, docs / name)
    engine = Engine(resolve_paths({"SIFT_HOME": str(tmp / "home")}), embedder=embedder)
    try:
        engine.update_config(parse_workers=parse_workers)
        engine.add_folder(docs)
        t0 = time.perf_counter()
        indexed = engine.index()
        problems = engine.status().problems
        why = "; ".join(f"{os.path.basename(p.path)}: {p.status} ({p.reason})" for p in problems)
        if not report.add(indexed.failed == 0 and indexed.added == len(files),
                          f"indexed {indexed.added} of {len(files)} files with {parse_workers} parse worker process"
                          f"{'es' if parse_workers != 1 else ''}, {indexed.chunks_embedded} chunks embedded with "
                          f"{engine.embedder.model_id} in {time.perf_counter() - t0:.1f} s"
                          + (f"; could not index {why}" if why else ""), out):
            return
        used = engine.embedder
        if isinstance(used, SentenceTransformerEmbedder) and used.int8_expected():
            runs = used.backend == "openvino"
            if not report.add(runs, "the prepared int8 model runs (OpenVINO)" if runs else
                              "the prepared int8 model is here but does not run (the warning above says why); "
                              "torch runs instead", out):
                return
        t0 = time.perf_counter()
        hits = engine.search(query, limit=5)
        found = [f"{os.path.basename(h.path)} p.{h.page}" for h in hits]
        top = hits[0] if hits else None
        ok = (top is not None and os.path.basename(top.path) == expected_file
              and (expected_page is None or top.page == expected_page))
        want = f"{expected_file}" + (f" p.{expected_page}" if expected_page is not None else "")
        report.add(ok, f"search {query!r} in {(time.perf_counter() - t0) * 1000:.0f} ms: "
                   + (f"first hit {want}" if ok else f"expected {want} first, got {', '.join(found) or 'nothing'}"),
                   out)
    finally:
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`sift self-test`: the exit status says whether this installation works."""
    try:
        report = run_self_test(out=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("Self-test stopped.", file=sys.stderr)
        return 130
    if not report.ok:
        print("Sift's self-test failed: the lines marked FAIL above say what is missing or broken. "
              "Reinstall Sift, or report them.", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED
