"""Parse files in worker processes, so a hostile file can hang, crash or bloat only a worker."""

from __future__ import annotations

import importlib
import math
import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import cast

from engine.errors import ParseError
from engine.parse.source import ParseJob, Unchanged
from engine.types import FileStatus, ParsedFile

DEFAULT_PARSE_FN = "engine.parse:parse"
# Python start-up plus importing the parser libraries; slow disks and frozen apps need a while.
STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_GRACE_S = 1.0
STOP_POLL_S = 0.1  # how soon map() notices its stop event while every worker is busy
# The limit is the processor time a file got, not the time that passed (Linux, where a worker's
# CPU time can be read): a busy machine slows a parse down, it does not make the file bad. Under
# two busy loops on a 2-core machine the 350 PDFs of ../shared/data/pdfs took 10x longer, and 14
# good documents ran past a 30 s wall-clock limit. A worker that gets no processor time at all
# over a whole limit is stuck (a blocked read), and one still running after STRETCH_MAX limits
# of waiting is given up on however little time it got.
STRETCH_MAX = 20
# A file that times out is tried once more after every other file, at RETRY_FACTOR times the
# limit, when this run's other parsing no longer competes with it; only then is it TIMEOUT.
RETRY_FACTOR = 2
# The most a file parsed in the caller's process (map's `inline`) may hold when it is opened.
INLINE_MAX_BYTES = 64 * 1024

_READY = "ready"  # a worker's first message: the clock for its first file starts only then

Result = ParsedFile | Unchanged | ParseError
Job = ParseJob | str
ParseFn = Callable[..., ParsedFile]


class ParseRunner:
    """Parses paths in up to `workers` long-lived spawned processes, each file under a time limit.

    Each job is a path or a ParseJob (the inode the scan saw, the hash already indexed); the
    worker opens the file once and reads only that descriptor (engine.parse.source). Text past
    `max_text_bytes` is cut in the worker, before it is sent back.
    A file whose parse runs past `timeout_s` (of processor time where it can be measured, see
    STRETCH_MAX) has its worker killed and is tried once more after all the others, at
    RETRY_FACTOR times the limit; running past that too, it gets FileStatus.TIMEOUT. One that kills
    its worker gets FileStatus.CORRUPT and is not tried again. Either way a fresh worker takes over. `workers=0` parses in this process, without a time limit.
    `parse_fn` names the function to call as "module:attribute", importable in a fresh process.
    """

    def __init__(
        self,
        *,
        workers: int,
        timeout_s: float,
        max_bytes: int,
        max_text_bytes: int | None = None,
        memory_mb: int | None = 2048,
        parse_fn: str = DEFAULT_PARSE_FN,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        self._workers = workers
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._max_text_bytes = max_text_bytes
        self._memory_mb = memory_mb
        self._parse_fn_name = parse_fn
        self._parse_fn = _resolve(parse_fn)  # fail here, not in every worker, on a bad name
        # spawn, never fork: the caller holds SQLite connections and threads a fork would copy.
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []  # started and waiting for a file
        self._maps: weakref.WeakSet[Generator] = weakref.WeakSet()  # map() results not yet done
        self._closed = False

    def map(self, paths: Iterable[Job], *, stop: threading.Event | None = None,
            inline: Callable[[Job], bool] | None = None) -> Iterator[tuple[str, Result]]:
        """Yield (path, ParsedFile or ParseError) once per path, in the order parsing finishes.

        Paths are taken from `paths` only as workers free up, so it may be a lazy iterable of
        any length. Stopping early (break, or close()) stops the workers still parsing; so does
        setting `stop`, within STOP_POLL_S, from any thread: a generator running in another
        thread cannot be closed from this one. Jobs that `inline` says yes to are parsed in the
        calling thread, whether or not the workers are busy, if they hold at most INLINE_MAX_BYTES
        when opened (else a worker reads them): for files whose parse costs far less than a round
        trip to a worker (small plain text). No worker starts until a file needs one.
        """
        if self._closed:
            raise RuntimeError("this ParseRunner is closed")
        if self._workers == 0:
            return ((_path_of(job), self._parse_here(job)) for job in paths if stop is None or not stop.is_set())
        results = self._map_in_workers(iter(paths), stop, inline)
        self._maps.add(results)
        return results

    def close(self) -> None:
        """Stop every worker; any still running after a short grace period is killed."""
        self._closed = True
        for results in list(self._maps):
            results.close()  # its cleanup kills the workers it was waiting on
        workers, self._idle = self._idle, []
        for worker in workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass  # already dead: nothing to tell it
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            worker.kill()

    def __enter__(self) -> ParseRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _parse_here(self, job: Job) -> Result:
        try:
            return self._parse_fn(job, max_bytes=self._max_bytes, max_text_bytes=self._max_text_bytes)
        except ParseError as error:
            return error
        except Exception as exc:  # a parse_fn other than ours may raise anything
            return ParseError(FileStatus.CORRUPT, f"the parser failed: {exc!r}")

    def _parse_inline(self, job: Job) -> Result | None:
        """A file parsed in this process, read no further than INLINE_MAX_BYTES whatever it holds
        now; None when it is longer than that (then a worker reads it)."""
        cap = min(self._max_bytes, INLINE_MAX_BYTES)
        try:
            return self._parse_fn(job, max_bytes=cap, max_text_bytes=self._max_text_bytes)
        except ParseError as error:
            if error.status == FileStatus.TOO_LARGE and cap < self._max_bytes:
                return None
            return error
        except Exception as exc:  # a parse_fn other than ours may raise anything
            return ParseError(FileStatus.CORRUPT, f"the parser failed: {exc!r}")

    def _map_in_workers(self, paths: Iterator[Job], stop: threading.Event | None,
                        inline: Callable[[Job], bool] | None) -> Generator[tuple[str, Result], None, None]:
        busy: dict[Connection, _Worker] = {}
        retry: list[Job] = []  # timed out once: tried again after every other file
        held: Job | None = None  # taken from paths, waiting for a free worker
        for_worker = False  # held grew past INLINE_MAX_BYTES since it was listed: a worker reads it
        try:
            while True:
                inlined = False
                while True:
                    if stop is not None and stop.is_set():
                        return
                    if held is None:
                        held, for_worker = next(paths, None), False
                    if held is not None and not for_worker and inline is not None and inline(held):
                        job, held = held, None
                        result = self._parse_inline(job)
                        if result is None:
                            held, for_worker = job, True
                            continue
                        yield _path_of(job), result
                        inlined = True
                        if busy:
                            break  # look at the workers between two files parsed here
                        continue
                    if len(busy) >= self._workers:
                        break
                    limit = self._timeout_s
                    if held is None:
                        if not retry:
                            break
                        job, limit = retry.pop(0), self._timeout_s * RETRY_FACTOR
                    else:
                        job, held = held, None
                    worker = self._assign(job, limit)
                    busy[worker.conn] = worker
                if not busy:
                    return
                timeout = max(0.0, min(worker.deadline for worker in busy.values()) - time.monotonic())
                if inlined:
                    timeout = 0.0  # only what is there: more files to parse here may be waiting
                if stop is not None:
                    timeout = min(timeout, STOP_POLL_S)
                # (wait() gives back some of the connections it was given)
                for conn in cast(list[Connection], wait(list(busy), timeout=timeout)):
                    worker = busy[conn]
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):
                        del busy[conn]
                        worker.kill()
                        if not worker.ready:
                            raise RuntimeError(
                                f"a parse worker exited while starting "
                                f"(exit code {worker.process.exitcode})"
                            ) from None
                        crashed = ParseError(FileStatus.CORRUPT, "the parser crashed on this file")
                        yield worker.release()[0], crashed
                        continue
                    if message == _READY:
                        worker.start_clock()
                        continue
                    del busy[conn]
                    path, _ = worker.release()
                    self._idle.append(worker)
                    yield path, message
                now = time.monotonic()
                for conn, worker in list(busy.items()):
                    # A result may have arrived while our caller was busy with the last one.
                    if worker.deadline > now or conn.poll():
                        continue
                    if not worker.ready:
                        del busy[conn]
                        worker.kill()
                        raise RuntimeError(
                            f"a parse worker did not start within {STARTUP_TIMEOUT_S:g} s"
                        )
                    why = worker.over_limit(now)
                    if why is None:
                        continue
                    del busy[conn]
                    worker.kill()
                    path, job = worker.release()
                    if worker.limit == self._timeout_s:
                        retry.append(job)
                        continue
                    yield path, ParseError(FileStatus.TIMEOUT, f"{why} (tried twice)")
        finally:
            # Abandoned mid-way (or failed): results still in flight must not reach a later
            # map(), and the files may be hanging, so stop those workers.
            for worker in busy.values():
                worker.kill()

    def _assign(self, path: Job, limit: float) -> _Worker:
        worker = self._idle.pop() if self._idle else self._start_worker()
        try:
            worker.assign(path, limit)
        except OSError:  # it died while idle; this file never reached it, so no retry loop
            worker.kill()
            worker = self._start_worker()
            worker.assign(path, limit)
        return worker

    def _start_worker(self) -> _Worker:
        return _Worker(
            self._context,
            args=(self._parse_fn_name, self._max_bytes, self._max_text_bytes, self._memory_mb),
        )


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context, *, args: tuple) -> None:
        self.conn, child_conn = context.Pipe(duplex=True)
        # daemon: should the caller exit without close(), multiprocessing still ends us.
        self.process = context.Process(
            target=_worker_main, args=(child_conn, *args), name="sift-parse", daemon=True
        )
        self.process.start()
        child_conn.close()  # so the parent sees EOF when the child dies
        self.ready = False
        self.job: Job | None = None
        self.path: str | None = None
        self.limit = math.inf
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S

    def assign(self, job: Job, limit: float) -> None:
        self.conn.send(job if isinstance(job, ParseJob) else os.fspath(job))
        self.job, self.path, self.limit = job, _path_of(job), limit
        if self.ready:
            self.start_clock()

    def release(self) -> tuple[str, Job]:
        """The file this worker was given (path, job), which it no longer has: parsed, crashed or killed."""
        if self.path is None or self.job is None:
            raise RuntimeError("this parse worker was given no file")
        given = self.path, self.job
        self.job = self.path = None
        return given

    def start_clock(self) -> None:
        """The file's clock starts: wall time and, where readable, this worker's processor time."""
        self.ready = True
        self.started = self.checked = time.monotonic()
        self.cpu_start = self.cpu_checked = _cpu_seconds(self.process.pid)
        self.deadline = self.started + self.limit if self.path is not None else math.inf

    def over_limit(self, now: float) -> str | None:
        """At the deadline: why this file has had its time, or None, having set the next deadline.

        Without a readable CPU time the limit is wall time. With one, the file is over when its
        processor time reaches the limit, when a whole limit passed with no processor time
        (blocked), or after STRETCH_MAX limits of waiting.
        """
        cpu = _cpu_seconds(self.process.pid)
        if self.cpu_start is None or self.cpu_checked is None or cpu is None:
            return f"parsing took longer than {self.limit:g} s"
        used = cpu - self.cpu_start
        if used >= self.limit:
            return f"parsing took longer than {self.limit:g} s of processor time"
        if now - self.started >= self.limit * STRETCH_MAX:
            return f"parsing was not done after {now - self.started:.0f} s on a machine too busy to finish it"
        if now - self.checked >= self.limit and cpu <= self.cpu_checked:
            return f"parsing stopped making progress for {self.limit:g} s"  # stuck, not slowed down
        if cpu > self.cpu_checked:
            self.checked, self.cpu_checked = now, cpu
        # At the earliest the rest of its processor time from now; at least a tick's worth.
        self.deadline = now + max(self.limit - used, _CPU_TICK_S * 10)
        return None

    def kill(self) -> None:
        """Stop the process now if it still runs, and reap it."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(SHUTDOWN_GRACE_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _worker_main(conn: Connection, parse_fn: str, max_bytes: int, max_text_bytes: int | None,
                 memory_mb: int | None) -> None:
    """Entry point of a worker process: parse each path received until told to stop."""
    # Ctrl+C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parse = _resolve(parse_fn)
    _limit_memory(memory_mb)
    conn.send(_READY)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        try:
            result: Result = parse(job, max_bytes=max_bytes, max_text_bytes=max_text_bytes)
        except ParseError as error:
            result = error
            if isinstance(error.__cause__, MemoryError) and memory_mb is not None:
                result = _out_of_memory(memory_mb)
        except MemoryError:
            result = _out_of_memory(memory_mb)
        except BaseException as exc:  # SystemExit too: nothing in a parser may end the worker
            result = ParseError(FileStatus.CORRUPT, f"the parser failed: {exc!r}")
        try:
            conn.send(result)
        except (EOFError, OSError):
            return
        except Exception as exc:  # e.g. a result that cannot be pickled
            conn.send(ParseError(FileStatus.CORRUPT, f"the parser's result was unusable: {exc!r}"))


def _out_of_memory(memory_mb: int | None) -> ParseError:
    if memory_mb is None:
        return ParseError(FileStatus.CORRUPT, "ran out of memory while reading it")
    return ParseError(FileStatus.CORRUPT, f"needs more than {memory_mb} MB of memory to read")


def _limit_memory(memory_mb: int | None) -> None:
    """Cap this process's address space, so a memory bomb raises MemoryError here."""
    if memory_mb is None:
        return
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the timeout still bounds the damage
        return
    soft = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ValueError, OSError):  # macOS refuses RLIMIT_AS; the timeout still applies
        pass


_CPU_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system processor seconds of a process, from /proc (Linux); None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    try:
        return (int(fields[11]) + int(fields[12])) * _CPU_TICK_S  # utime, stime: fields 14 and 15
    except (IndexError, ValueError):
        return None


def _path_of(job: Job) -> str:
    return job.path if isinstance(job, ParseJob) else os.fspath(job)


def _resolve(name: str) -> ParseFn:
    module_name, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
