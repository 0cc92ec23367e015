"""Document symbols (the outline), folding ranges and code lenses of one file."""

from __future__ import annotations

from lsprotocol import types as lsp

from .. import ast
from ..source import SourceFile
from .positions import span_range

SymbolKind = lsp.SymbolKind
DECL_SYMBOLS = {"model": SymbolKind.Module, "type": SymbolKind.Struct, "enum": SymbolKind.Enum,
                "prompt": SymbolKind.Function, "retriever": SymbolKind.Function, "tool": SymbolKind.Function,
                "filter": SymbolKind.Function, "agent": SymbolKind.Class, "flow": SymbolKind.Function,
                "test": SymbolKind.Event}

RUN_TEST, RUN_FLOW, PREVIEW_PROMPT = "fmflow.runTest", "fmflow.runFlow", "fmflow.previewPrompt"


def document_symbols(module: ast.Module, source: SourceFile) -> list[lsp.DocumentSymbol]:
    symbols = []
    for decl in module.decls:
        name = decl.name
        if isinstance(decl, ast.PromptDecl) and decl.version is not None:
            name += f"@{decl.version}"
        symbols.append(lsp.DocumentSymbol(
            name=name, detail=decl.kind, kind=DECL_SYMBOLS.get(decl.kind, SymbolKind.Object),
            range=span_range(source, decl.span), selection_range=span_range(source, decl.name_span),
            children=_children(decl, source)))
    return symbols


def _children(decl: ast.Decl, source: SourceFile) -> list[lsp.DocumentSymbol]:
    children = []
    members = [*getattr(decl, "params", ()), *getattr(decl, "fields", ())]
    for node in members:
        kind = SymbolKind.Field if isinstance(node, ast.Field) else SymbolKind.Variable
        children.append(_leaf(node.name, kind, node.span, node.span.head(len(node.name)), source))
    for member in getattr(decl, "members", ()):
        children.append(_leaf(member.name, SymbolKind.EnumMember, member.span, member.span, source))
    for entry in getattr(decl, "entries", ()):
        children.append(_leaf(entry.key, SymbolKind.Property, entry.span, entry.key_span, source))
    return children


def _leaf(name, kind, span, selection, source) -> lsp.DocumentSymbol:
    return lsp.DocumentSymbol(name=name, kind=kind, range=span_range(source, span),
                              selection_range=span_range(source, selection))


def folding_ranges(module: ast.Module) -> list[lsp.FoldingRange]:
    """Declarations, block strings, if-branches and runs of comment lines that span lines."""
    ranges: list[lsp.FoldingRange] = []
    for node in module.walk():
        if isinstance(node, (ast.Decl, ast.BlockString, ast.Branch, ast.DictExpr, ast.ListExpr)) \
                and node.span.end_line > node.span.line:
            ranges.append(lsp.FoldingRange(start_line=node.span.line - 1, end_line=node.span.end_line - 1))
    start = previous = None
    for comment in [c for c in module.comments if c.own_line] + [None]:
        if comment is not None and previous is not None and comment.line == previous + 1:
            previous = comment.line
            continue
        if start is not None and previous > start:
            ranges.append(lsp.FoldingRange(start_line=start - 1, end_line=previous - 1,
                                           kind=lsp.FoldingRangeKind.Comment))
        start = previous = comment.line if comment is not None else None
    return ranges


def code_lenses(module: ast.Module, source: SourceFile, path: str) -> list[lsp.CodeLens]:
    """"Run test" above each test, "Run flow" above each flow, "Preview prompt" above prompts and agents."""
    lenses = []
    for decl in module.decls:
        if isinstance(decl, ast.TestDecl):
            title, command = "Run test", RUN_TEST
        elif isinstance(decl, ast.FlowDecl):
            title, command = "Run flow", RUN_FLOW
        elif isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
            title, command = "Preview prompt", PREVIEW_PROMPT
        else:
            continue
        version = getattr(decl, "version", None)
        name = decl.name if version is None else f"{decl.name}@{version}"
        lenses.append(lsp.CodeLens(range=span_range(source, decl.name_span),
                                   command=lsp.Command(title=title, command=command, arguments=[path, name])))
    return lenses
