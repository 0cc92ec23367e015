"""Types of declarations, block values, flow bodies and tests.

Expressions themselves are typed by ExprChecker (expressions.py); this pass
walks every declaration and says what each expression must be.
"""

from __future__ import annotations

import re

from .. import ast
from ..builtins import ON_FAIL_POLICIES
from ..diagnostics import suggestion_help
from ..nesting import MAX_TYPE_DEPTH, inner_types, type_depth
from ..secrets import is_env_var_name, looks_like_key
from ..types import DURATION, INT, MESSAGE, STR, UNKNOWN, DictType, ListType, OptionalType, Type, join
from .blocks import POLICY_COUNT, PROVIDERS, KeySpec, block_spec, bound_message, out_of_bound
from .context import CheckContext
from .evals import check_eval
from .expressions import CALLABLE_KINDS, ExprChecker, Scope
from .narrowing import always_returns, non_null_when
from .resolve import decl_type

DEFAULT_MODEL = "default"  # the model of prompts and agents that name none
_PYTHON_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def check_types(ctx: CheckContext) -> None:
    checker = ExprChecker(ctx)
    _check_type_depths(checker)
    for decl in ctx.module.decls:
        if isinstance(decl, ast.TypeDecl):
            for f in decl.fields:
                checker.types.resolve(f.type)
        elif isinstance(decl, ast.FlowDecl):
            _check_flow(checker, decl)
        elif isinstance(decl, ast.ToolDecl):
            _check_tool(checker, decl)
        elif isinstance(decl, ast.TestDecl):
            from .test_blocks import check_test  # it builds on this module's helpers

            check_test(checker, decl)
        elif isinstance(decl, ast.EvalDecl):
            check_eval(checker, decl)
        elif hasattr(decl, "entries"):
            _check_block_decl(checker, decl)


def _check_type_depths(checker: ExprChecker) -> None:
    """Types nested deeper than MAX_TYPE_DEPTH (fmflow.nesting), through brackets and declared types.

    A declared type too deep is reported once, at the outermost one (those
    inside it are deep because of it); a written type at the place it is
    written, unless the declared type in it was reported already.
    """
    fields_of, depth = checker.types.fields, {}
    decls = checker.ctx.module.decls
    structs = {id(d): decl_type(d, checker.ctx.path) for d in decls if isinstance(d, ast.TypeDecl)}
    too_deep = {key: t for key, t in structs.items() if type_depth(t, fields_of, depth) > MAX_TYPE_DEPTH}
    inside = {_unwrapped(inner) for t in too_deep.values() for inner in inner_types(t, fields_of)}
    for decl in decls:
        struct = too_deep.get(id(decl))
        if struct is not None and struct not in inside:
            _type_too_deep(checker, f"type '{decl.name}'", depth[struct], decl.name_span)
    reported = set(too_deep.values())
    for ref in _written_types([d for d in decls if id(d) not in too_deep]):
        t = checker.types.resolve_quietly(ref)
        if _unwrapped(t) not in reported and type_depth(t, fields_of, depth) > MAX_TYPE_DEPTH:
            text = str(t) if len(str(t)) <= 40 else str(t)[:39] + "…"
            _type_too_deep(checker, f"type '{text}'", depth[t], ref.span)


def _type_too_deep(checker: ExprChecker, what: str, levels: int, span) -> None:
    checker.error("E001", f"{what} is nested too deeply: {levels} levels of types inside types, "
                  f"more than {MAX_TYPE_DEPTH}", span, "flatten it: hold the inner data as json, or refer to it by an id")


def _written_types(decls: list[ast.Decl]):
    for decl in decls:
        for param in getattr(decl, "params", ()):
            yield param.type
        if getattr(decl, "returns", None) is not None:
            yield decl.returns
        for f in getattr(decl, "fields", ()):
            yield f.type


def _unwrapped(t: Type) -> Type:
    """The type inside list[…], dict[…] and ?."""
    while isinstance(t, (ListType, DictType, OptionalType)):
        t = t.item if isinstance(t, ListType) else t.value if isinstance(t, DictType) else t.inner
    return t


def _signature_scope(checker: ExprChecker, decl: ast.Decl) -> tuple[Scope, Type]:
    """The parameters as a scope, and the result type; defaults are checked on the way."""
    scope = Scope()
    for index, param in enumerate(decl.params):
        t = checker.types.resolve(param.type)
        if param.default is not None:
            _check_default(checker, decl, index, t, scope)
        scope.vars[param.name] = t
    return scope, checker.types.resolve(decl.returns)


def _check_default(checker: ExprChecker, decl: ast.Decl, index: int, t: Type, earlier: Scope) -> None:
    """A default fits its parameter's type and reads only the parameters before it (E101)."""
    param = decl.params[index]
    later = {p.name: p for p in decl.params[index:]}
    for name in ast.read_names(param.default):
        if name.version is None and name.id in later and name.id not in earlier.vars:
            what = "the parameter itself" if name.id == param.name else f"a parameter after '{param.name}'"
            checker.error("E101", f"the default of '{param.name}' reads '{name.id}', {what}", name.span,
                          "a default can only use the parameters before it"
                          + ("" if name.id == param.name else f": move '{name.id}' before '{param.name}'"))
    scope = earlier.child(**{n: UNKNOWN for n in later if n not in earlier.vars})  # reported above
    checker.expect(param.default, t, scope, f"the default of parameter '{param.name}'")


# ------------------------------------------------------------ block values

def _check_block_decl(checker: ExprChecker, decl: ast.Decl) -> None:
    scope, returns = (Scope(), UNKNOWN)
    if isinstance(decl, (ast.PromptDecl, ast.AgentDecl)):
        scope, returns = _signature_scope(checker, decl)
        default = checker.ctx.lookup(DEFAULT_MODEL)
        if decl.entry("model") is None and isinstance(default, ast.ModelDecl):
            checker.ctx.refer(decl.name_span, default)  # it answers this prompt
    spec = block_spec(decl) or {}
    for entry in decl.entries:
        key_spec = spec.get(entry.key)
        if key_spec is not None:  # unknown keys are E104 from the blocks pass
            check_entry(checker, decl, entry, key_spec, scope, returns)


def check_entry(checker: ExprChecker, decl: ast.Decl, entry: ast.Entry, spec: KeySpec,
                scope: Scope, returns: Type) -> None:
    value = entry.value
    what = f"'{entry.key}' of {decl.kind} '{decl.name}'"
    kind = spec.value
    if not isinstance(kind, str):
        checker.expect(value, kind, Scope(), what)
        check_bound(checker, value, spec, what, f"{entry.key}: {spec.doc}")
    elif kind == "provider":
        checker.expect(value, STR, Scope(), what)
        if isinstance(value, ast.Literal) and value.kind == "str" and value.value not in PROVIDERS:
            checker.error("E201", f"unknown provider '{value.value}'", value.span,
                          suggestion_help(value.value, PROVIDERS) or f"providers: {', '.join(PROVIDERS)}")
    elif kind == "env_name":
        checker.expect(value, STR, Scope(), what)
        _check_env_name(checker, value, what)
    elif kind == "model_ref":
        _expect_ref(checker, value, ("model",), what)
    elif kind == "model_refs":
        for item in _list_items(checker, value, what):
            _expect_ref(checker, item, ("model",), what)
    elif kind == "tool_refs":
        for item in _list_items(checker, value, what):
            _expect_ref(checker, item, CALLABLE_KINDS, what)
    elif kind == "template":
        checker.expect(value, STR, Scope(), what)
    elif kind == "history":
        checker.expect(value, ListType(MESSAGE), scope, what)
    elif kind in ("checks", "expects"):
        inner = scope.child(output=returns)
        items = value.items if isinstance(value, ast.ListExpr) else [value]
        for item in items:
            checker.infer(item, inner)
    elif kind == "policy":
        _check_policy(checker, value, scope, returns, what)


def check_bound(checker: ExprChecker, value: ast.Node, spec: KeySpec, what: str, help: str | None = None) -> None:
    """E201 for a number written as a literal (or as env()'s default) outside its key's bound."""
    if spec.bound is None:
        return
    if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "env"
            and len(value.args) == 2):
        value = value.args[1].value  # the default; the variable itself is checked when the flow runs
    constant = constant_number(value)
    if constant is not None and out_of_bound(spec, constant[0]):
        checker.error("E201", bound_message(what, spec, constant[1]), value.span, help)


def constant_number(node: ast.Node) -> tuple[float | int, str] | None:
    """(number, as written) of a numeric literal, a negated one, or a rate's count."""
    sign = ""
    if isinstance(node, ast.Unary) and node.op == "-":
        node, sign = node.operand, "-"
    kinds = ("int", "float", "duration") if sign else ("int", "float", "duration", "rate")
    if not isinstance(node, ast.Literal) or node.kind not in kinds:
        return None
    number = node.value[0] if node.kind == "rate" else node.value
    return (-number if sign else number), sign + (node.raw or str(node.value))


def _check_env_name(checker: ExprChecker, value: ast.Node, what: str) -> None:
    """`api_key_env` names a variable; a key pasted there is refused without being repeated."""
    if not (isinstance(value, ast.Literal) and value.kind == "str") or is_env_var_name(value.value):
        if isinstance(value, ast.Literal) and value.kind == "str" and looks_like_key(value.value):
            pass  # an all-capitals key (AWS's AKIA…) matches the name pattern
        else:
            return
    if looks_like_key(value.value):
        message = f"{what}: this looks like a key, not a variable name"
    else:
        message = f"{what} must be the name of an environment variable ([A-Z_][A-Z0-9_]*)"
    checker.error("E201", message, value.span,
                  'put the key in an environment variable and write its name here, e.g. api_key_env: "OPENAI_API_KEY"')


def _list_items(checker: ExprChecker, value: ast.Node, what: str) -> list[ast.Node]:
    if isinstance(value, ast.ListExpr):
        return value.items
    checker.error("E201", f"{what} expects a list of names, e.g. [a, b]", value.span)
    return []


def _expect_ref(checker: ExprChecker, value: ast.Node, kinds: tuple[str, ...], what: str) -> ast.Decl | None:
    """A bare name of a declaration of one of ``kinds``."""
    wanted = " or ".join(kinds)
    if not isinstance(value, ast.Name):
        checker.infer(value, Scope())
        checker.error("E201", f"{what} expects the name of a {wanted}", value.span)
        return None
    decl = checker.lookup(value, Scope(), kinds=kinds)
    if decl is None:
        return None
    if decl.kind not in kinds:
        checker.error("E201", f"{what} expects a {wanted}, but '{value.id}' is a {decl.kind}", value.span)
        return None
    return decl


def _check_policy(checker: ExprChecker, value: ast.Node, scope: Scope, returns: Type, what: str) -> None:
    name, args = None, []
    if isinstance(value, ast.Name) and value.version is None:
        name = value.id
    elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        name, args = value.func.id, value.args
    policies = ", ".join(f"{p}(…)" if n else p for p, n in ON_FAIL_POLICIES.items())
    if name not in ON_FAIL_POLICIES:
        checker.error("E201", f"{what} expects an on-fail policy", value.span,
                      (suggestion_help(name, ON_FAIL_POLICIES) if name else None) or f"policies: {policies}")
        return
    wanted = ON_FAIL_POLICIES[name]
    if isinstance(value, ast.Name) and wanted:
        checker.error("E103", f"on-fail policy '{name}' needs an argument: {name}(…)", value.span)
        return
    if len(args) != wanted or any(a.name for a in args):
        checker.error("E103", f"on-fail policy '{name}' takes {wanted} argument{'s' if wanted != 1 else ''}",
                      value.span, f"policies: {policies}")
        return
    if name in ("reask", "retry"):
        checker.expect(args[0].value, INT, Scope(), f"the count of {name}(…)")
        check_bound(checker, args[0].value, KeySpec(INT, bound=POLICY_COUNT), f"the count of {name}(…)",
                    "to give up at once, write `on_fail: raise`")
    elif name == "default":
        checker.expect(args[0].value, returns, scope, f"the default of {what}")


# ------------------------------------------------------------ tools, filters

def _check_tool(checker: ExprChecker, decl: ast.ToolDecl) -> None:
    _signature_scope(checker, decl)
    if isinstance(decl, ast.FilterDecl) and not decl.params:
        checker.error("E103", f"filter '{decl.name}' needs a parameter for the piped value", decl.name_span,
                      f"e.g. filter {decl.name}(text: str) -> str = …")
    impl = decl.impl
    good = (isinstance(impl, ast.Call) and isinstance(impl.func, ast.Name) and impl.func.id == "python"
            and impl.args and impl.args[0].name is None)
    if not good:
        checker.error("E201", f"{decl.kind} '{decl.name}' must be implemented by python(\"module:attr\")",
                      impl.span, f'e.g. {decl.kind} {decl.name}(…) -> … = python("my_tools:{decl.name}")')
        return
    target = impl.args[0].value
    if not (isinstance(target, ast.Literal) and target.kind == "str"):
        checker.error("E201", "python(…) takes a string \"module:attr\"", target.span)
    elif not _PYTHON_TARGET.match(target.value):
        checker.error("E201", f"python(…) expects \"module:attr\", got \"{target.value}\"", target.span,
                      'e.g. python("my_tools:word_count") for my_tools.py beside the flow')
    _check_python_options(checker, impl.args[1:])


def _check_python_options(checker: ExprChecker, options: list[ast.Arg]) -> None:
    """python("module:attr", timeout: 10s): the one option, a duration longer than 0s."""
    seen = set()
    for arg in options:
        if arg.name != "timeout" or arg.name in seen:
            problem = "takes one string" if arg.name is None else \
                (f"has no option '{arg.name}'" if arg.name != "timeout" else "takes 'timeout' once")
            checker.infer(arg.value, Scope())
            checker.error("E103", f"python(…) {problem}", arg.span,
                          'python("module:attr") or python("module:attr", timeout: 10s)')
            continue
        seen.add(arg.name)
        checker.expect(arg.value, DURATION, Scope(), "the timeout of python(…)")
        if isinstance(arg.value, ast.Literal) and arg.value.kind == "duration" and not arg.value.value > 0:
            checker.error("E201", "the timeout of python(…) must be longer than 0s", arg.value.span,
                          "e.g. timeout: 10s")


# ----------------------------------------------------------------- flows

def _check_flow(checker: ExprChecker, flow: ast.FlowDecl) -> None:
    scope, returns = _signature_scope(checker, flow)
    scope.pending = ast.assigned_names(flow.body)
    _check_statements(checker, flow, flow.body, scope, returns)


def _check_statements(checker: ExprChecker, flow: ast.FlowDecl, body: list, scope: Scope,
                      returns: Type) -> dict[str, Type]:
    """Check statements in order; returns the names they assign with their types."""
    assigned: dict[str, Type] = {}
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            value_type = checker.infer(stmt.value, scope)
            decl = checker.ctx.lookup(stmt.name)
            if decl is not None:
                checker.error("E102", f"'{stmt.name}' is already defined as a {decl.kind}; "
                              "a variable cannot reuse its name", stmt.name_span, "rename the variable")
            scope.vars[stmt.name] = assigned[stmt.name] = value_type
        elif isinstance(stmt, ast.Return):
            checker.expect(stmt.value, returns, scope, f"the return value of flow '{flow.name}'")
        elif isinstance(stmt, ast.If):
            merged = _check_if(checker, flow, stmt, scope, returns)
            assigned.update(merged)
    return assigned


def _check_if(checker: ExprChecker, flow: ast.FlowDecl, stmt: ast.If, scope: Scope,
              returns: Type) -> dict[str, Type]:
    """Each arm sees what its condition (and the earlier ones being false) tells about
    nulls; after the `if`, so does the rest of the block when every arm that goes on knows it."""
    merged: dict[str, Type] = {}
    known_false: frozenset[str] = frozenset()  # what the earlier conditions being false tell
    arms: list[tuple[list, frozenset[str]]] = []
    for branch in stmt.branches:
        checker.infer(branch.condition, scope.narrowed(known_false))
        arms.append((branch.body, known_false | non_null_when(branch.condition, True)))
        known_false = known_false | non_null_when(branch.condition, False)
    arms.append((stmt.orelse or [], known_false))
    going_on: list[frozenset[str]] = []
    for body, known in arms:
        arm_scope = scope.child()
        arm_scope.narrow(known)
        arm_assigned = _check_statements(checker, flow, body, arm_scope, returns)
        for name, t in arm_assigned.items():
            merged[name] = _merge_branch_type(checker, body, name, merged.get(name), t)
        if not always_returns(body):
            going_on.append(arm_scope.non_null)
    scope.vars.update(merged)
    if going_on:
        scope.narrow(frozenset.intersection(*going_on))
    return merged


def _merge_branch_type(checker: ExprChecker, arm: list, name: str, before: Type | None, t: Type) -> Type:
    """The type of a name assigned in several arms of an if: they must agree."""
    if before is None:
        return t
    joined = join(before, t)
    if joined is None:
        where = next((s.name_span for s in arm if isinstance(s, ast.Assign) and s.name == name), None)
        if where is not None:
            checker.error("E201", f"'{name}' is {before} in one branch and {t} in another", where,
                          "give it the same type in every branch")
        return UNKNOWN
    return joined
