"""Types of `test` blocks: the flow, its inputs, mocks, model scripts and expectations.

``models: { fast: ["not json", "{\\"ok\\": true}"] }`` scripts the replies of
declared models (``default`` too, declared or not): each reply is a string,
or ``{ text: …, json: …, tool_calls: [{ name: …, arguments: { … } }] }``.
``expect`` sees ``output`` (the flow's result) and ``calls`` (a ``dict[int]``
of calls by callee name); ``calls["x"]`` must name a callable.
"""

from __future__ import annotations

from .. import ast
from ..builtins import BUILTINS
from ..diagnostics import suggestion_help
from ..types import INT, JSON, STR, UNKNOWN, DictType
from .expressions import CALLABLE_KINDS, ExprChecker, Scope
from .typecheck import DEFAULT_MODEL, _expect_ref

CALLS = "calls"
_REPLY_KEYS = {"text": STR, "json": JSON, "tool_calls": None}
_TOOL_CALL_KEYS = {"name": STR, "arguments": DictType(JSON)}
_SCRIPT_EXAMPLE = 'e.g. models: { fast: ["not json", "{\\"ok\\": true}"] }'


def check_test(checker: ExprChecker, decl: ast.TestDecl) -> None:
    flow_entry = decl.entry("flow")
    flow = _expect_ref(checker, flow_entry.value, ("flow",), f"'flow' of test '{decl.name}'") \
        if flow_entry else None
    params, returns = checker.signature(flow) if flow is not None else (None, UNKNOWN)
    for entry in decl.entries:
        if entry.key == "input":
            _check_inputs(checker, decl, flow, entry.value, params)
        elif entry.key == "mock":
            _check_mocks(checker, decl, entry.value)
        elif entry.key == "models":
            _check_model_scripts(checker, decl, entry.value)
        elif entry.key == "expect":
            _check_expects(checker, entry.value, returns)


def _check_inputs(checker: ExprChecker, decl: ast.TestDecl, flow, value: ast.Node, params) -> None:
    if not isinstance(value, ast.DictExpr):
        checker.expect(value, DictType(JSON), Scope(), f"'input' of test '{decl.name}'")
        return
    if params is None:
        for entry in value.entries:
            checker.infer(entry.value, Scope())
        return
    args = [ast.Arg(e.key, e.value, span=e.span) for e in value.entries]
    checker.bind(f"flow '{flow.name}' (the input of test '{decl.name}')", params, args, value, Scope())


def _check_mocks(checker: ExprChecker, decl: ast.TestDecl, value: ast.Node) -> None:
    if not isinstance(value, ast.DictExpr):
        checker.error("E201", f"'mock' of test '{decl.name}' expects {{ callee: answer, … }}", value.span)
        return
    for entry in value.entries:
        target = checker.lookup(ast.Name(entry.key, None, span=entry.span), Scope(), kinds=CALLABLE_KINDS)
        if target is None:
            if entry.key in BUILTINS:
                checker.error("E201", f"'{entry.key}' is a built-in function; only declared calls can be mocked",
                              entry.span)
            checker.infer(entry.value, Scope())
            continue
        signature = checker.signature(target)
        if signature is None:
            checker.error("E201", f"'{entry.key}' is a {target.kind}; only calls can be mocked", entry.span)
            continue
        checker.expect(entry.value, signature[1], Scope(), f"the mock of {target.kind} '{entry.key}'")


# ------------------------------------------------------------ model scripts

def _check_model_scripts(checker: ExprChecker, decl: ast.TestDecl, value: ast.Node) -> None:
    what = f"'models' of test '{decl.name}'"
    if not isinstance(value, ast.DictExpr):
        checker.infer(value, Scope())
        checker.error("E201", f"{what} expects {{ model: [reply, …], … }}", value.span, _SCRIPT_EXAMPLE)
        return
    models = [n for n, ds in checker.ctx.symbols.decls.items() if ds[0].kind == "model"]
    for entry in value.entries:
        target = checker.ctx.lookup(entry.key)
        if isinstance(target, ast.ModelDecl):
            checker.ctx.refer(entry.span, target)
        elif target is not None:
            checker.error("E201", f"'{entry.key}' is a {target.kind}, not a model; `models` scripts the replies of "
                          "models", entry.span,
                          f"to answer the {target.kind} whole, mock it: mock: {{ {entry.key}: … }}"
                          if target.kind in CALLABLE_KINDS else None)
        elif entry.key != DEFAULT_MODEL:
            checker.error("E101", f"unknown model '{entry.key}'", entry.span,
                          suggestion_help(entry.key, [*models, DEFAULT_MODEL])
                          or f"models: {', '.join([*models, DEFAULT_MODEL])}")
        _check_replies(checker, entry.value, f"the script of model '{entry.key}'")


def _check_replies(checker: ExprChecker, value: ast.Node, what: str) -> None:
    if not isinstance(value, ast.ListExpr):
        checker.infer(value, Scope())
        checker.error("E201", f"{what} expects a list of replies, one per request", value.span, _SCRIPT_EXAMPLE)
        return
    for item in value.items:
        if isinstance(item, ast.DictExpr):
            _check_reply_object(checker, item, f"a reply in {what}")
        else:
            checker.expect(item, STR, Scope(), f"a reply in {what}")


def _check_reply_object(checker: ExprChecker, item: ast.DictExpr, what: str) -> None:
    _check_keys(checker, item, _REPLY_KEYS, what)
    if not any(e.key in _REPLY_KEYS for e in item.entries):
        checker.error("E103", f"{what} needs text, json or tool_calls", item.span,
                      'e.g. { tool_calls: [{ name: "word_count", arguments: { text: "a b" } }] }')
    for entry in item.entries:
        if entry.key != "tool_calls":
            continue
        if not isinstance(entry.value, ast.ListExpr):
            checker.infer(entry.value, Scope())
            checker.error("E201", f"'tool_calls' of {what} expects a list of {{ name, arguments }}", entry.value.span)
            continue
        for call in entry.value.items:
            if isinstance(call, ast.DictExpr):
                _check_keys(checker, call, _TOOL_CALL_KEYS, f"a tool call in {what}")
                if not any(e.key == "name" for e in call.entries):
                    checker.error("E103", f"a tool call in {what} needs a name", call.span)
            else:
                checker.infer(call, Scope())
                checker.error("E201", f"a tool call in {what} expects {{ name, arguments }}", call.span)


def _check_keys(checker: ExprChecker, node: ast.DictExpr, keys: dict, what: str) -> None:
    """Each entry's key is one of ``keys`` (E104) and its value of that key's type (E201)."""
    for entry in node.entries:
        if entry.key not in keys:
            checker.infer(entry.value, Scope())
            checker.error("E104", f"unknown key '{entry.key}' in {what}", entry.span,
                          suggestion_help(entry.key, keys) or f"keys: {', '.join(keys)}")
        elif keys[entry.key] is not None:
            checker.expect(entry.value, keys[entry.key], Scope(), f"'{entry.key}' of {what}")


# ------------------------------------------------------------ expectations

def _check_expects(checker: ExprChecker, value: ast.Node, returns) -> None:
    scope = Scope({"output": returns, CALLS: DictType(INT)})
    for item in value.items if isinstance(value, ast.ListExpr) else [value]:
        checker.infer(item, scope)
        _check_counted_names(checker, item)


def _check_counted_names(checker: ExprChecker, expr: ast.Node) -> None:
    """`calls["answer"]` names a callable: any other name is never counted."""
    callables = [n for n, ds in checker.ctx.symbols.decls.items() if ds[0].kind in CALLABLE_KINDS]
    for node in expr.walk():
        if not (isinstance(node, ast.Index) and isinstance(node.value, ast.Name) and node.value.id == CALLS
                and isinstance(node.index, ast.Literal) and node.index.kind == "str"):
            continue
        name = node.index.value
        target = checker.ctx.lookup(name)
        if target is None:
            checker.error("E101", f"calls[\"{name}\"]: nothing named '{name}' is called", node.index.span,
                          suggestion_help(name, callables)
                          or "calls counts the calls of prompts, agents, tools, filters, retrievers and flows")
        elif target.kind not in CALLABLE_KINDS:
            checker.error("E201", f"calls[\"{name}\"]: '{name}' is a {target.kind}, which is never called",
                          node.index.span, "calls counts the calls of prompts, agents, tools, filters, "
                          "retrievers and flows")
