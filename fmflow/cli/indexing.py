"""`fmflow index`: documents into a Chroma collection for retrievers."""

from __future__ import annotations

import os
import sys

from .common import EXIT_ERRORS, EXIT_OK, UsageError


def cmd_index(args) -> int:
    from ..retrieval.embeddings import EmbeddingError
    from ..retrieval.indexing import IndexingError, index_paths
    from ..retrieval.store import StoreError

    bar = _IndexProgress.start() if sys.stderr.isatty() else None
    try:
        summary = index_paths(args.paths, args.collection, store=args.store, chunk_size=args.chunk_size,
                              chunk_overlap=args.chunk_overlap, prune=args.prune, embedding=args.embedding,
                              progress=bar.update if bar else None)
    except (IndexingError, StoreError) as error:
        raise UsageError(str(error)) from None
    except EmbeddingError as error:
        print(f"fmflow: error: {error}", file=sys.stderr)
        return EXIT_ERRORS
    finally:
        if bar:
            bar.stop()
    for path, reason in summary.skipped:
        print(f"fmflow: skipped {path}: {reason}", file=sys.stderr)
    if not summary.files:
        print(f"fmflow: error: nothing indexed into {args.collection}"
              + (f" ({summary.removed} chunks removed)" if summary.removed else ""), file=sys.stderr)
        return EXIT_ERRORS

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    print(f"indexed {count(summary.files, 'file')}, {count(summary.chunks, 'chunk')} ({summary.added} added, "
          f"{summary.updated} updated, {summary.removed} removed) in {summary.seconds:.1f} s into {args.collection}")
    return EXIT_OK


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

    def update(self, done: int, total: int, path: str | None) -> None:
        if self.task is None:
            self.task = self.progress.add_task("", total=total)
        self.progress.update(self.task, completed=done, total=total, description=path or "")

    def stop(self) -> None:
        self.progress.stop()


def add_commands(commands) -> None:
    index = commands.add_parser("index", help="split documents into chunks and store them in a collection")
    index.add_argument("paths", nargs="+", metavar="PATH", help=".md .txt .rst .html .pdf files or folders")
    index.add_argument("--collection", required=True, metavar="NAME", help="the collection to fill")
    index.add_argument("--store", default=os.path.join(".fmflow", "store"), metavar="DIR",
                       help="the store folder (default .fmflow/store)")
    index.add_argument("--chunk-size", type=int, default=1000, metavar="N", help="characters per chunk at most")
    index.add_argument("--chunk-overlap", type=int, default=150, metavar="N",
                       help="characters a chunk repeats from the end of the previous one")
    index.add_argument("--prune", action="store_true",
                       help="remove chunks of files that are gone or not among the PATHs")
    index.add_argument("--embedding", default="builtin:minilm", metavar="SPEC",
                       help="the embedding model (default builtin:minilm)")
    index.set_defaults(handler=cmd_index)
