"""The checked state of the files an editor works on, kept between edits.

One ModuleLoader lives as long as the server. Open documents are its
overrides (their unsaved text replaces the file on disk). An edit forgets
the changed file and every loaded file that imports it, directly or
through others, and nothing else: the standard library and untouched
imports stay checked, so an edit re-checks one file and its dependents.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

from ..checks.context import CheckContext
from ..checks.loader import ModuleLoader
from ..source import SUFFIX, SourceError, SourceFile

MAX_WORKSPACE_FILES = 2000  # flow files loaded to find references in files that are not open


def uri_to_path(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        return uri  # untitled:… and other schemes: a name, never read from disk
    return os.path.abspath(unquote(parsed.path))


def path_to_uri(path: str) -> str:
    from pathlib import Path

    try:
        return Path(path).absolute().as_uri()
    except ValueError:
        return path


class Analysis:
    """Checked contexts of open documents and of the files they import."""

    def __init__(self) -> None:
        self.loader = ModuleLoader()
        self.open: set[str] = set()
        # The newest context of each file whose semantic passes ran (parse recovered nothing):
        # completion and hover use it while the file is being typed and does not parse.
        self.last_good: dict[str, CheckContext] = {}
        # What each file imported when it was last checked: kept when its context is forgotten,
        # so that the files depending on an edited one are still known.
        self.imports: dict[str, set[str]] = {}
        # Open files forgotten while answering something else: their diagnostics are due again.
        self.stale_open: set[str] = set()

    # -------------------------------------------------------------- documents
    def set_text(self, path: str, text: str) -> set[str]:
        """A document opened or edited; returns the loaded files to check again."""
        self.open.add(path)
        self.loader.overrides[path] = text
        loaded = self.loader.context(path)
        if loaded is not None and loaded.source.text == text:
            return {path}  # opened as it was loaded (as an import, say): nothing depends on a change
        return self.invalidate(path)

    def close(self, path: str) -> set[str]:
        self.open.discard(path)
        self.loader.overrides.pop(path, None)
        self.last_good.pop(path, None)
        return self.invalidate(path)

    def invalidate(self, path: str) -> set[str]:
        """Forget ``path`` and the loaded files that depend on it; returns them all."""
        stale = {path} | self.dependents(path)
        self.stale_open |= (stale - {path}) & self.open
        for key in stale:
            self.loader.contexts.pop(key, None)
        self.loader.field_cache.clear()  # keyed by ids of declarations that may be gone
        return stale

    def dependents(self, path: str) -> set[str]:
        """Loaded files that import ``path``, directly or through other files."""
        importers: dict[str, set[str]] = {}
        for key, targets in self.imports.items():
            for target in targets:
                importers.setdefault(target, set()).add(key)
        found: set[str] = set()
        todo = [path]
        while todo:
            for importer in importers.get(todo.pop(), ()):
                if importer not in found:
                    found.add(importer)
                    todo.append(importer)
        return found

    # ---------------------------------------------------------------- checking
    def context(self, path: str) -> CheckContext | None:
        """The checked context of ``path`` (checked now if it is not loaded yet)."""
        ctx = self.loader.context(path)
        if ctx is not None and path in self.open and not ctx.report_unused:
            self.invalidate(path)  # loaded as someone's import: W501 was not looked for
            ctx = None
        if ctx is None:
            try:
                ctx = self.loader.load(path)
            except (SourceError, OSError):
                return None
            self._record_imports()
        if not ctx.module.recovered:
            self.last_good[path] = ctx
        return ctx

    def imported_paths(self, path: str) -> set[str]:
        """The files ``path`` imports, directly or through others."""
        found: set[str] = set()
        todo = [path]
        while todo:
            for target in self.imports.get(todo.pop(), ()):
                if target not in found:
                    found.add(target)
                    todo.append(target)
        return found

    def has_errors(self, path: str) -> bool:
        """Whether ``path`` or a file it imports has errors."""
        for key in [path, *self.imported_paths(path)]:
            ctx = self.loader.context(key)
            if ctx is None or ctx.diagnostics.has_errors:
                return True
        return False

    def _record_imports(self) -> None:
        for key, ctx in self.loader.contexts.items():
            self.imports[key] = {os.path.abspath(target) for target, _module in ctx.imported.values()}

    def good_context(self, path: str) -> CheckContext | None:
        """The newest context of ``path`` whose symbols and types are known."""
        ctx = self.context(path)
        if ctx is not None and not ctx.module.recovered:
            return ctx
        return self.last_good.get(path, ctx)

    def source(self, path: str) -> SourceFile | None:
        ctx = self.loader.context(path)
        if ctx is not None:
            return ctx.source
        text = self.loader.overrides.get(path)
        return SourceFile(path, text) if text is not None else None

    def load_folder(self, folder: str) -> None:
        """Check every flow file under ``folder`` (for references in files that are not open)."""
        from ..cli.common import UsageError, flow_files

        try:
            paths = flow_files([folder])
        except UsageError:  # no flow files there
            return
        for path in paths[:MAX_WORKSPACE_FILES]:
            try:
                self.loader.load(os.path.abspath(path))
            except (SourceError, OSError):
                continue
        self._record_imports()

    def contexts(self) -> list[CheckContext]:
        return list(self.loader.contexts.values())

    def is_flow_file(self, path: str) -> bool:
        return path.endswith(SUFFIX)
