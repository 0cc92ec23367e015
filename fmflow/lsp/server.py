"""`fmflow lsp`: the language server, over stdio, on pygls.

Handlers only translate between LSP and fmflow: checking is the checker's
(through ``Analysis``), formatting is ``fmflow fmt``'s, previews are the
runtime's rendering. Everything runs on the server's event loop, one
message at a time, so the checked state is never shared between threads.
"""

from __future__ import annotations

import asyncio
import json
import os

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcParseError
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from .. import __version__, ast
from ..source import SourceFile
from . import completion, hover, outline, semantic
from .analysis import Analysis, path_to_uri, uri_to_path
from .diagnostics import file_diagnostics
from .positions import offset_at, span_range, whole_range
from .symbols import Occurrence, in_stdlib, loop_scope, occurrences, target_at

DEBOUNCE_SECONDS = 0.15  # edits closer together than this are checked once
PREVIEW_COMMAND = "fmflow.server.previewPrompt"
RENAMEABLE = ("decl", "param", "variable", "loop", "field")


class AnsweringProtocol(LanguageServerProtocol):
    """Answers every request, even one whose parameters do not fit its method.

    pygls logs such a request and drops it, and the client would wait for
    ever; JSON-RPC wants an "invalid params" error for its id.
    """

    def structure_message(self, data):
        try:
            return super().structure_message(data)
        except JsonRpcInvalidParams as error:
            if isinstance(data, dict) and "id" in data and "method" in data:
                self._send_response(data["id"], error=error.to_response_error())
            raise


class FmflowServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("fmflow", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
                         protocol_cls=AnsweringProtocol)
        self.analysis = Analysis()
        self.uris: dict[str, str] = {}  # path → the URI the editor uses for it
        self._pending: dict[str, asyncio.TimerHandle] = {}

    def report_server_error(self, error: Exception, source) -> None:
        """A message that is not JSON gets JSON-RPC's parse error (its id cannot be known)."""
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
            self.protocol._send_response(None, error=JsonRpcParseError(str(error)).to_response_error())
            return
        super().report_server_error(error, source)

    # ------------------------------------------------------------- documents
    def path_of(self, uri: str) -> str:
        path = uri_to_path(uri)
        self.uris.setdefault(path, uri)
        return path

    def uri_of(self, path: str) -> str:
        return self.uris.get(path) or path_to_uri(path)

    def document_changed(self, uri: str, delay: float) -> None:
        path = self.path_of(uri)
        text = self.workspace.get_text_document(uri).source
        stale = self.analysis.set_text(path, text)
        for changed in {path} | (stale & self.analysis.open):
            self._schedule(changed, delay)

    def _schedule(self, path: str, delay: float) -> None:
        pending = self._pending.pop(path, None)
        if pending is not None:
            pending.cancel()
        if delay <= 0:
            self.publish(path)
        else:
            self._pending[path] = asyncio.get_running_loop().call_later(delay, self.publish, path)

    def publish(self, path: str) -> None:
        self._pending.pop(path, None)
        if path not in self.analysis.open:
            return
        self.analysis.stale_open.discard(path)
        for target, diagnostics in file_diagnostics(self.analysis, path).items():
            self.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=self.uri_of(target), diagnostics=diagnostics))
        for stale in self.analysis.stale_open - set(self._pending):  # forgotten while this one was checked
            self._schedule(stale, DEBOUNCE_SECONDS)

    # --------------------------------------------------------------- lookups
    def located(self, uri: str, position: lsp.Position):
        """(context, target, span) of the name at a position, or None."""
        path = self.path_of(uri)
        ctx = self.analysis.context(path)
        if ctx is None:
            return None
        found = target_at(ctx, offset_at(ctx.source, position))
        return None if found is None else (ctx, *found)

    def semantic_tokens(self, uri: str, within: lsp.Range | None = None) -> lsp.SemanticTokens:
        ctx = self.analysis.context(self.path_of(uri))
        if ctx is None:
            return lsp.SemanticTokens(data=[])
        return lsp.SemanticTokens(data=semantic.encode(ctx.source, semantic.semantic_tokens(ctx), within))

    def all_occurrences(self, target) -> list[Occurrence]:
        for folder in self.workspace.folders.values():  # files that are not open may name it too
            self.analysis.load_folder(uri_to_path(folder.uri))
        return occurrences(target, self.analysis.contexts())

    def location(self, occurrence: Occurrence) -> lsp.Location:
        source = self.analysis.source(occurrence.path) or SourceFile(occurrence.path, "")
        return lsp.Location(uri=self.uri_of(occurrence.path), range=span_range(source, occurrence.span))


server = FmflowServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: FmflowServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.document_changed(params.text_document.uri, 0)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: FmflowServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.document_changed(params.text_document.uri, DEBOUNCE_SECONDS)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: FmflowServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.document_changed(params.text_document.uri, 0)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: FmflowServer, params: lsp.DidCloseTextDocumentParams) -> None:
    path = ls.path_of(params.text_document.uri)
    for stale in ls.analysis.close(path) & ls.analysis.open:
        ls._schedule(stale, 0)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def on_hover(ls: FmflowServer, params: lsp.HoverParams) -> lsp.Hover | None:
    found = ls.located(params.text_document.uri, params.position)
    if found is None:
        return None
    ctx, target, span = found
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=hover.hover_text(ctx, target)),
                     range=span_range(ctx.source, span))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: FmflowServer, params: lsp.DefinitionParams) -> list[lsp.Location] | None:
    found = ls.located(params.text_document.uri, params.position)
    if found is None or found[1].kind == "builtin":
        return None
    _ctx, target, _span = found
    ls.analysis.context(target.path)  # the declaring file (an import) is checked already
    definitions = [o for o in occurrences(target, ls.analysis.contexts()) if o.is_definition]
    return [ls.location(o) for o in definitions] or None


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
def on_references(ls: FmflowServer, params: lsp.ReferenceParams) -> list[lsp.Location] | None:
    found = ls.located(params.text_document.uri, params.position)
    if found is None or found[1].kind == "builtin":
        return None
    include = params.context.include_declaration
    return [ls.location(o) for o in ls.all_occurrences(found[1]) if include or not o.is_definition]


@server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
def on_prepare_rename(ls: FmflowServer, params: lsp.PrepareRenameParams):
    found = ls.located(params.text_document.uri, params.position)
    if found is None or found[1].kind not in RENAMEABLE or in_stdlib(found[1].path):
        return None
    return span_range(found[0].source, found[2])


@server.feature(lsp.TEXT_DOCUMENT_RENAME)
def on_rename(ls: FmflowServer, params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
    found = ls.located(params.text_document.uri, params.position)
    if found is None or found[1].kind not in RENAMEABLE:
        return None
    problem = name_problem(params.new_name) or captured_by_rename(found[1], params.new_name)
    if problem:
        raise ValueError(problem)
    if in_stdlib(found[1].path):
        raise ValueError("declarations of the standard library cannot be renamed")
    changes: dict[str, list[lsp.TextEdit]] = {}
    for occurrence in ls.all_occurrences(found[1]):
        location = ls.location(occurrence)
        changes.setdefault(location.uri, []).append(lsp.TextEdit(range=location.range, new_text=params.new_name))
    return lsp.WorkspaceEdit(changes=changes)


def captured_by_rename(target, name: str) -> str | None:
    """Why a loop variable cannot take ``name``: a name its comprehension already reads would
    then mean the loop variable."""
    if target.kind != "loop" or name == target.name:
        return None
    if any(read.id == name for part in loop_scope(target.node) for read in ast.read_names(part)):
        return f"'{name}' is read inside this comprehension: as the loop variable's name it would change what it means"
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a new name (LANGUAGE.md §1), or None."""
    from ..parser import KEYWORDS

    if not (name.isascii() and name.isidentifier()):
        return f"'{name}' is not a name: names are letters, digits and _, not starting with a digit"
    if name in KEYWORDS:
        return f"'{name}' is a keyword"
    return None


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=[".", '"', "/", "{", " "]))
def on_completion(ls: FmflowServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    uri = params.text_document.uri
    path = ls.path_of(uri)
    text = ls.workspace.get_text_document(uri).source
    source = SourceFile(path, text)
    items = completion.complete(ls.analysis.good_context(path), path, text, offset_at(source, params.position))
    return lsp.CompletionList(is_incomplete=False, items=items)


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def on_document_symbol(ls: FmflowServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    ctx = ls.analysis.context(ls.path_of(params.text_document.uri))
    return [] if ctx is None else outline.document_symbols(ctx.module, ctx.source)


@server.feature(lsp.TEXT_DOCUMENT_FOLDING_RANGE)
def on_folding_range(ls: FmflowServer, params: lsp.FoldingRangeParams) -> list[lsp.FoldingRange]:
    ctx = ls.analysis.context(ls.path_of(params.text_document.uri))
    return [] if ctx is None else outline.folding_ranges(ctx.module)


@server.feature(lsp.TEXT_DOCUMENT_CODE_LENS)
def on_code_lens(ls: FmflowServer, params: lsp.CodeLensParams) -> list[lsp.CodeLens]:
    path = ls.path_of(params.text_document.uri)
    ctx = ls.analysis.context(path)
    return [] if ctx is None else outline.code_lenses(ctx.module, ctx.source, path)


@server.feature(lsp.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL,
                lsp.SemanticTokensRegistrationOptions(legend=semantic.LEGEND, full=True, range=True))
def on_semantic_tokens(ls: FmflowServer, params: lsp.SemanticTokensParams) -> lsp.SemanticTokens:
    return ls.semantic_tokens(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_SEMANTIC_TOKENS_RANGE)
def on_semantic_tokens_range(ls: FmflowServer, params: lsp.SemanticTokensRangeParams) -> lsp.SemanticTokens:
    return ls.semantic_tokens(params.text_document.uri, params.range)


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def on_formatting(ls: FmflowServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
    from ..formatter import format_text

    uri = params.text_document.uri
    path = ls.path_of(uri)
    text = ls.workspace.get_text_document(uri).source
    formatted = format_text(text, path)
    if formatted is None or formatted == text:
        return None if formatted is None else []  # syntax errors: nothing to format
    return [lsp.TextEdit(range=whole_range(SourceFile(path, text)), new_text=formatted)]


@server.command(PREVIEW_COMMAND)
async def on_preview(ls: FmflowServer, *args) -> str:
    """Arguments: the file, ``NAME`` or ``NAME@N``, and optional inputs; returns the rendered messages."""
    from .preview import PreviewError, preview

    if len(args) not in (2, 3) or not all(isinstance(a, str) for a in args[:2]):
        raise ValueError(f"{PREVIEW_COMMAND} takes a file, a prompt name and optional inputs")
    path, prompt = args[0], args[1]
    inputs = args[2] if len(args) == 3 and isinstance(args[2], dict) else None
    path = os.path.abspath(path)
    ctx = ls.analysis.context(path)
    if ctx is None:
        raise ValueError(f"cannot read {path}")
    try:
        return await preview(ctx, ls.analysis.has_errors(path), prompt, inputs)
    except PreviewError as error:
        raise ValueError(str(error)) from None


def serve_stdio(stdin, stdout) -> None:
    server.start_io(stdin, stdout)
