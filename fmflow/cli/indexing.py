"""`fmflow index`: documents into a Chroma collection for retrievers."""

from __future__ import annotations

import os
import shlex
import sys
import time

from .common import EXIT_ERRORS, EXIT_OK, UsageError

PROGRESS_SECONDS_ENV = "FMFLOW_PROGRESS_SECONDS"  # seconds between progress lines off a terminal (default 5)
DEFAULT_PROGRESS_SECONDS = 5.0


def cmd_index(args) -> int:
    from ..retrieval.embeddings import EmbeddingError
    from ..retrieval.indexing import IndexingError, index_paths
    from ..retrieval.store import StoreError, StoreFailure

    reporter = _IndexProgress.start() if sys.stderr.isatty() else _ProgressLines.start()
    try:
        summary = index_paths(args.paths, args.collection, store=args.store, chunk_size=args.chunk_size,
                              chunk_overlap=args.chunk_overlap, prune=args.prune, embedding=args.embedding,
                              progress=reporter.update if reporter else None, max_file_mb=args.max_file_mb,
                              verify=args.verify, lock_timeout=args.lock_timeout, notify=_note,
                              holder="fmflow " + shlex.join(sys.argv[1:]))
    except StoreFailure as error:  # the store is busy, read-only or damaged: not a mistake in the command
        _note(f"error: {error}")
        return EXIT_ERRORS
    except (IndexingError, StoreError) as error:
        raise UsageError(str(error)) from None
    except EmbeddingError as error:
        _note(f"error: {error}")
        return EXIT_ERRORS
    finally:
        if reporter:
            reporter.stop()
    for path, reason in summary.skipped:
        _note(f"skipped {path}: {reason}")
    for path, count in summary.repeated:
        _note(f"{path}: {count} chunk{'s' if count > 1 else ''} repeating an earlier one of the file, stored once")
    for report in summary.verified:
        print(report.line())
    if not args.paths:
        return EXIT_OK
    if not summary.files:
        _note(f"error: nothing indexed into {args.collection}"
              + (f" ({summary.removed} chunks removed)" if summary.removed else ""))
        return EXIT_ERRORS

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    print(f"indexed {count(summary.files, 'file')}, {count(summary.chunks, 'chunk')} ({summary.added} added, "
          f"{summary.updated} updated, {summary.removed} removed) in {summary.seconds:.1f} s into {args.collection}")
    return EXIT_OK


def _note(message: str) -> None:
    from ..retrieval.files import printable

    print(f"fmflow: {printable(message)}", file=sys.stderr, flush=True)


class _IndexProgress:
    """A progress bar over the files being indexed, on a terminal only."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.task = None

    @classmethod
    def start(cls) -> "_IndexProgress | None":
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:  # no bar without rich; indexing works the same
            return None

        progress = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
        progress.start()
        return cls(progress)

    def update(self, done: int, total: int, chunks: int, path: str | None) -> None:
        if self.task is None:
            self.task = self.progress.add_task("", total=total)
        self.progress.update(self.task, completed=done, total=total,
                             description=f"{chunks} chunks  {path or ''}".rstrip())

    def stop(self) -> None:
        self.progress.stop()


class _ProgressLines:
    """Off a terminal (a log, CI): a line on stderr every few seconds, and a last one if any was printed."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.began = self.last = time.monotonic()
        self.printed = False

    @classmethod
    def start(cls) -> "_ProgressLines":
        try:
            every = float(os.environ.get(PROGRESS_SECONDS_ENV, DEFAULT_PROGRESS_SECONDS))
        except ValueError:
            every = DEFAULT_PROGRESS_SECONDS
        return cls(every)

    def update(self, done: int, total: int, chunks: int, path: str | None) -> None:
        now = time.monotonic()
        if now - self.last < self.every and not (path is None and self.printed):
            return
        self.last, self.printed = now, True
        rate = chunks / max(now - self.began, 1e-9)
        _note(f"indexing: {done}/{total} files, {chunks} chunks, {rate:.0f} chunks/s" + (f", {path}" if path else ""))

    def stop(self) -> None:
        pass


def add_commands(commands) -> None:
    from ..retrieval.defaults import DEFAULT_EMBEDDING, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_FILE_MB, DEFAULT_STORE

    index = commands.add_parser("index", help="split documents into chunks and store them in a collection")
    index.add_argument("paths", nargs="*", metavar="PATH", help=".md .txt .rst .html .pdf files or folders")
    index.add_argument("--collection", required=True, metavar="NAME", help="the collection to fill")
    index.add_argument("--store", default=DEFAULT_STORE, metavar="DIR",
                       help=f"the store folder (default {DEFAULT_STORE})")
    index.add_argument("--chunk-size", type=int, default=1000, metavar="N", help="characters per chunk at most")
    index.add_argument("--chunk-overlap", type=int, default=150, metavar="N",
                       help="characters a chunk repeats from the end of the previous one")
    index.add_argument("--prune", action="store_true",
                       help="remove chunks of files that are gone or not among the PATHs")
    index.add_argument("--embedding", default=DEFAULT_EMBEDDING, metavar="SPEC",
                       help=f"the embedding model (default {DEFAULT_EMBEDDING})")
    index.add_argument("--verify", action="store_true",
                       help="check every entry of the collection first and repair the damaged ones "
                            "(with no PATH, only that)")
    index.add_argument("--max-file-mb", type=float, default=DEFAULT_MAX_FILE_MB, metavar="MB",
                       help=f"skip files bigger than this (default {DEFAULT_MAX_FILE_MB:g}; 0: no limit)")
    index.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                       help=f"how long to wait for another run writing to the store (default "
                            f"{DEFAULT_LOCK_TIMEOUT:g}; 0: fail at once)")
    index.set_defaults(handler=cmd_index)
