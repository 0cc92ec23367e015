"""What the checker passes share: the modules, the symbol table, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ast
from ..diagnostics import Diagnostics
from ..source import SourceFile, Span


@dataclass
class Reference:
    """A place in a file that names a declaration (for W501, hover, go-to-definition)."""

    span: Span
    decl: ast.Decl


@dataclass
class Symbols:
    """One namespace per file: local declarations and those of direct imports.

    Prompts may have several versions under one name; everything else has one
    declaration per name.
    """

    decls: dict[str, list[ast.Decl]] = field(default_factory=dict)
    origin: dict[int, str] = field(default_factory=dict)  # id(decl) → path of its file

    def add(self, decl: ast.Decl, path: str) -> None:
        self.decls.setdefault(decl.name, []).append(decl)
        self.origin[id(decl)] = path

    def get(self, name: str, version: int | None = None) -> ast.Decl | None:
        """The declaration a name refers to; for prompts the highest version unless pinned."""
        found = self.decls.get(name)
        if not found:
            return None
        prompts = [d for d in found if isinstance(d, ast.PromptDecl)]
        if prompts:
            if version is not None:
                return next((p for p in prompts if p.effective_version == version), None)
            return max(prompts, key=lambda p: p.effective_version)
        return found[0]

    def versions(self, name: str) -> list[int]:
        return sorted(d.effective_version for d in self.decls.get(name, []) if isinstance(d, ast.PromptDecl))

    def names(self) -> list[str]:
        return list(self.decls)

    def path_of(self, decl: ast.Decl) -> str:
        return self.origin.get(id(decl), "")


@dataclass
class CheckContext:
    source: SourceFile
    module: ast.Module
    diagnostics: Diagnostics
    # Parsed imports of this module: import path as written → (resolved path, module).
    imported: dict[str, tuple[str, ast.Module]] = field(default_factory=dict)
    symbols: Symbols = field(default_factory=Symbols)
    references: list[Reference] = field(default_factory=list)
    # Pins from the CLI (`--pin NAME@N`): name → version.
    pins: dict[str, int] = field(default_factory=dict)
    # Whether W501 applies (not for modules checked because another imports them).
    report_unused: bool = True
    # Types resolved by the type checker: id(ast node) → Type (for hover and the runtime).
    expr_types: dict[int, object] = field(default_factory=dict)
    # The ModuleLoader that checks imported files (see fmflow.checks.loader).
    loader: object = None
    # Each declaration's nodes, walked once for the passes that look for one kind of node.
    _walked: dict[int, list[ast.Node]] = field(default_factory=dict, repr=False, compare=False)

    def nodes(self, decl: ast.Decl) -> list[ast.Node]:
        """``decl`` and every node inside it, in source order (kept until the passes end)."""
        found = self._walked.get(id(decl))
        if found is None:
            found = self._walked[id(decl)] = list(decl.walk())
        return found

    def take_parser_walks(self) -> None:
        """Start from the lists of nodes the parser made (ast.Module.walks), handed over once."""
        if self.module.walks:
            # Keyed here, by the ids the declarations have now (a module may have been copied).
            self._walked = {id(decl): nodes for decl, nodes in self.module.walks}
            self.module.walks = None

    def forget_walks(self) -> None:
        self._walked = {}

    @property
    def path(self) -> str:
        return self.source.path

    def refer(self, span: Span, decl: ast.Decl) -> None:
        self.references.append(Reference(span, decl))

    def lookup(self, name: str, version: int | None = None) -> ast.Decl | None:
        if version is None and name in self.pins:
            version = self.pins[name]
        return self.symbols.get(name, version)
