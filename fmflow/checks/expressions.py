"""Type inference over expressions: E101 names, E103 calls, E104 fields, E201 types.

An expression with an error gets the type ``unknown``, which is compatible
with everything, so one mistake is reported once and not at every use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .. import ast
from ..builtins import BUILTINS, IMPLEMENTATION_FUNCTIONS
from ..diagnostics import did_you_mean, suggestion_help
from ..types import (RETRIEVER_PARAMS, RETRIEVER_RESULT, BOOL, BUILTIN_STRUCTS, DURATION, FLOAT, INT, JSON, NULL,
                     RATE, STR, UNKNOWN, DeclRef, DictType, EnumType, ListType, OptionalType, StructType, Type,
                     Unknown, is_assignable, is_dynamic, is_numeric, join, strip_optional)
from .context import CheckContext
from .narrowing import non_null_when, path_of
from .resolve import TypeResolver, decl_type

_LITERAL_TYPES = {"str": STR, "int": INT, "float": FLOAT, "bool": BOOL, "null": NULL,
                  "duration": DURATION, "rate": RATE}
CALLABLE_KINDS = ("prompt", "agent", "tool", "filter", "retriever", "flow")


@dataclass(frozen=True)
class Param:
    name: str
    type: Type
    required: bool = True


@dataclass
class Scope:
    """Names visible in an expression: parameters, assigned names, ``output``."""

    vars: dict[str, Type] = field(default_factory=dict)
    # Names assigned somewhere in the flow but not (yet) on this path: flow_paths
    # reports those as E203, so they are not unknown names here.
    pending: set[str] = field(default_factory=set)
    # Paths (`x`, `x.a`) known not to be null here (see narrowing.py); names among
    # them also have their narrowed type in ``vars``.
    non_null: frozenset[str] = frozenset()

    def child(self, **extra: Type) -> "Scope":
        non_null = self.non_null
        if extra and non_null:  # a name bound again (a comprehension's variable) is another value
            non_null = frozenset(p for p in non_null if p.split(".", 1)[0] not in extra)
        return Scope({**self.vars, **extra}, self.pending, non_null)

    def narrow(self, paths: frozenset[str]) -> None:
        """Know ``paths`` are not null from here on (in this scope)."""
        self.non_null = self.non_null | paths
        for path in paths:
            if path in self.vars:
                self.vars[path] = strip_optional(self.vars[path])

    def narrowed(self, paths: frozenset[str]) -> "Scope":
        """This scope where ``paths`` are not null (itself when that adds nothing)."""
        if paths <= self.non_null:
            return self
        inner = self.child()
        inner.narrow(paths)
        return inner


class ExprChecker:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.types = TypeResolver(ctx)
        # Inner links of an operator or pipe chain, typed in a loop just before the link that reads them.
        self._chain_types: dict[int, Type] = {}
        # Signatures of the declarations called so far (a declaration's types resolve the same at every call).
        self._signatures: dict[int, tuple[list[Param], Type] | None] = {}

    def error(self, code: str, message: str, span, help: str | None = None) -> Type:
        self.ctx.diagnostics.add(code, message, span, help)
        return UNKNOWN

    # --------------------------------------------------------------- public
    def infer(self, expr: ast.Node, scope: Scope) -> Type:
        typed = self._chain_types.pop(id(expr), None)
        if typed is not None:
            return typed
        if isinstance(expr, ast.Binary) and expr.op in ("and", "or"):
            return self._infer_logic_chain(expr, scope)
        # `a + b + … + z` is as deep as it is long: type its links from the innermost out, in a loop.
        for link in _inner_links(expr):
            self._chain_types[id(link)] = self._infer_node(link, scope)
        return self._infer_node(expr, scope)

    def _infer_node(self, expr: ast.Node, scope: Scope) -> Type:
        key = (type(self), type(expr))
        method = _INFER_METHODS.get(key)
        if method is None:
            method = _INFER_METHODS[key] = getattr(type(self), "_infer_" + key[1].__name__, _infer_unknown)
        result = method(self, expr, scope)
        self.ctx.expr_types[id(expr)] = result
        return result

    def expect(self, expr: ast.Node, target: Type, scope: Scope, what: str) -> Type:
        """Check that ``expr`` fits ``target``; literals are checked against it item by item."""
        plain = strip_optional(target)
        if isinstance(expr, ast.DictExpr) and isinstance(plain, StructType):
            return self._struct_literal(expr, plain, scope, what)
        if isinstance(expr, ast.ListExpr) and isinstance(plain, ListType) and expr.items:
            for item in expr.items:
                self.expect(item, plain.item, scope, f"an item of {what}")
            return target
        if isinstance(expr, ast.DictExpr) and isinstance(plain, DictType):
            for entry in expr.entries:
                self.expect(entry.value, plain.value, scope, f"entry '{entry.key}' of {what}")
            return target
        if plain == JSON and isinstance(expr, (ast.ListExpr, ast.DictExpr)):
            for child in expr.children():  # json holds items of any type, mixed too
                self.expect(child.value if isinstance(child, ast.DictEntry) else child, JSON, scope, what)
            return target
        if isinstance(expr, ast.Literal) and expr.kind == "str" and isinstance(plain, EnumType):
            if expr.value not in plain.members:
                return self.error("E201", f"{what} expects {plain}, got \"{expr.value}\"", expr.span,
                                  f"{plain} is one of: {', '.join(plain.members)}")
            return target
        actual = self.infer(expr, scope)
        if not is_assignable(actual, target):
            self.error("E201", f"{what} expects {target}, got {actual}", expr.span,
                       _mismatch_help(actual, target, expr))
        return target

    def signature(self, decl: ast.Decl) -> tuple[list[Param], Type] | None:
        """Parameters and result type of a callable declaration."""
        key = id(decl)
        if key not in self._signatures:
            self._signatures[key] = self._signature(decl)
        return self._signatures[key]

    def _signature(self, decl: ast.Decl) -> tuple[list[Param], Type] | None:
        if isinstance(decl, ast.RetrieverDecl):
            return [Param(*p) for p in RETRIEVER_PARAMS], RETRIEVER_RESULT
        if isinstance(decl, (ast.PromptDecl, ast.AgentDecl, ast.ToolDecl, ast.FlowDecl)):
            owner = self.ctx.loader.context(self.ctx.symbols.path_of(decl)) or self.ctx
            resolver = self.types if owner is self.ctx else TypeResolver(owner, _quiet())
            params = [Param(p.name, resolver.resolve(p.type), p.default is None) for p in decl.params]
            return params, resolver.resolve(decl.returns)
        return None

    # ------------------------------------------------------------- literals
    def _infer_Literal(self, node: ast.Literal, scope: Scope) -> Type:
        return _LITERAL_TYPES[node.kind]

    def _infer_BlockString(self, node: ast.BlockString, scope: Scope) -> Type:
        return STR

    def _infer_ListExpr(self, node: ast.ListExpr, scope: Scope) -> Type:
        item: Type = UNKNOWN
        for element in node.items:
            t = self.infer(element, scope)
            joined = join(item, t)
            if joined is None:
                return self.error("E201", f"list items have different types: {item} and {t}", element.span,
                                  "use one type for every item, or declare the list as list[json]")
            item = joined
        return ListType(item)

    def _infer_DictExpr(self, node: ast.DictExpr, scope: Scope) -> Type:
        value: Type = UNKNOWN
        for entry in node.entries:
            t = self.infer(entry.value, scope)
            value = join(value, t) or JSON  # a dict literal of mixed values is a dict[json]
        return DictType(value)

    def _struct_literal(self, node: ast.DictExpr, struct: StructType, scope: Scope, what: str) -> Type:
        fields = self.types.fields(struct)
        given: set[str] = set()
        for entry in node.entries:
            if entry.key not in fields:
                given |= self._unknown_field(struct, fields, entry.key, entry.span)
                self.infer(entry.value, scope)
                continue
            given.add(entry.key)
            self._expect_field(struct, entry.key, fields[entry.key], entry.value, scope)
        missing = [f for f in fields if f not in given and f not in struct.defaults]
        if missing:
            self.error("E103", f"missing field{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(repr(m) for m in missing)} for {struct} in {what}", node.span)
        return struct

    def _expect_field(self, struct: StructType, name: str, t: Type, value: ast.Node, scope: Scope) -> None:
        """A field's value in a constructor or a `{ … }` literal; a literal `str` where the
        field takes one of a few words (Message.role) must be one of them."""
        self.expect(value, t, scope, f"field '{name}' of {struct}")
        choices = struct.field_choices(name)
        if choices and isinstance(value, ast.Literal) and value.kind == "str" and value.value not in choices:
            self.error("E201", f"field '{name}' of {struct} is one of {', '.join(choices)}, got \"{value.value}\"",
                       value.span, suggestion_help(value.value, choices) or f"write one of: {', '.join(choices)}")

    def _unknown_field(self, struct: StructType, fields: dict, name: str, span) -> set[str]:
        """E104 for a field the type lacks; returns the field it probably meant, if any."""
        help = suggestion_help(name, fields) or f"fields of {struct}: {', '.join(fields)}"
        self.error("E104", f"unknown field '{name}' of type {struct}", span, help)
        meant = did_you_mean(name, fields)
        return {meant} if meant else set()

    # ---------------------------------------------------------------- names
    def _infer_Name(self, node: ast.Name, scope: Scope) -> Type:
        if node.version is None and node.id in scope.vars:
            return scope.vars[node.id]
        decl = self.lookup(node, scope)
        return UNKNOWN if decl is None else DeclRef(decl.kind, decl.name)

    def lookup(self, node: ast.Name, scope: Scope, report: bool = True,
               kinds: tuple[str, ...] | None = None) -> ast.Decl | None:
        """The declaration a name refers to, reporting E101 when there is none.

        ``kinds`` narrows the did-you-mean candidates to declarations of those kinds.
        """
        decl = self.ctx.lookup(node.id, node.version)
        if decl is not None:
            if node.version is not None and not isinstance(decl, ast.PromptDecl):
                self.error("E201", f"'{node.id}' is a {decl.kind}; only prompts have versions", node.span)
            self.ctx.refer(node.span, decl)
            return decl
        if not report or node.id in scope.pending or (node.version is None and node.id in BUILTINS):
            return None
        if node.version is not None and self.ctx.symbols.versions(node.id):
            versions = ", ".join(f"@{v}" for v in self.ctx.symbols.versions(node.id))
            self.error("E101", f"prompt '{node.id}' has no version {node.version}", node.span,
                       f"declared versions: {versions}")
            return None
        if kinds is None:
            candidates = [*scope.vars, *self.ctx.symbols.names(), *BUILTINS]
        else:
            candidates = [n for n, ds in self.ctx.symbols.decls.items() if ds[0].kind in kinds]
        help = suggestion_help(node.id, candidates)
        if help is None and kinds is not None and len(kinds) == 1:
            help = f"declare it first: {kinds[0]} {node.id} {{ … }}"
        self.error("E101", f"unknown name '{node.id}'", node.span, help)
        return None

    # ---------------------------------------------------------------- calls
    def _infer_Call(self, node: ast.Call, scope: Scope) -> Type:
        func = node.func
        if not isinstance(func, ast.Name):
            self.infer(func, scope)
            self._infer_args(node.args, scope)
            return self.error("E201", "only declared prompts, agents, tools, filters, retrievers, flows, "
                              "types and built-in functions can be called", func.span)
        if func.version is None and func.id in scope.vars:
            self._infer_args(node.args, scope)
            return self.error("E201", f"'{func.id}' is a {scope.vars[func.id]} value and cannot be called",
                              func.span)
        if func.id in IMPLEMENTATION_FUNCTIONS and self.ctx.lookup(func.id) is None:
            self._infer_args(node.args, scope)
            return self.error("E103", f"{func.id}(…) can only be the implementation of a tool or filter",
                              node.span, 'write: tool name(x: str) -> str = python("module:function")')
        if func.id in BUILTIN_STRUCTS and func.version is None and self.ctx.lookup(func.id) is None:
            return self._construct(BUILTIN_STRUCTS[func.id], node.args, node, scope)
        decl = self.lookup(func, scope)
        if decl is None:
            if func.version is None and func.id in BUILTINS:
                return self._builtin_call(func.id, [a.value for a in node.args], node, scope)
            self._infer_args(node.args, scope)
            return UNKNOWN
        return self._decl_call(decl, node.args, node, scope)

    def _infer_args(self, args: list[ast.Arg], scope: Scope) -> None:
        for arg in args:
            self.infer(arg.value, scope)

    def _decl_call(self, decl: ast.Decl, args: list[ast.Arg], node: ast.Node, scope: Scope,
                   piped: ast.Node | None = None) -> Type:
        if isinstance(decl, (ast.TypeDecl,)):
            struct = decl_type(decl, self.ctx.symbols.path_of(decl))
            return self._construct(struct, args, node, scope)
        if isinstance(decl, ast.EnumDecl):
            self._infer_args(args, scope)
            return self.error("E201", f"enum {decl.name} cannot be called; write {decl.name}.member",
                              node.span, f"members: {', '.join(m.name for m in decl.members)}")
        signature = self.signature(decl)
        if signature is None:
            self._infer_args(args, scope)
            return self.error("E201", f"'{decl.name}' is a {decl.kind} and cannot be called", node.span)
        params, result = signature
        desc = f"{decl.kind} '{decl.name}'"
        self.bind(desc, params, args, node, scope, piped=piped)
        if isinstance(decl, ast.RetrieverDecl):
            self._retriever_bounds(decl, args)
        return result

    def _retriever_bounds(self, decl: ast.RetrieverDecl, args: list[ast.Arg]) -> None:
        """A literal `k:` of a call obeys the bound of the block's `k`."""
        from .blocks import BLOCKS
        from .typecheck import check_bound

        for position, arg in enumerate(args):
            if arg.name == "k" or (arg.name is None and position == 1):
                spec = BLOCKS["retriever"]["k"]
                check_bound(self, arg.value, spec, f"'k' of a call to retriever '{decl.name}'", f"k: {spec.doc}")

    def _construct(self, struct: StructType, args: list[ast.Arg], node: ast.Node, scope: Scope) -> Type:
        fields = self.types.fields(struct)
        given: set[str] = set()
        for arg in args:
            if arg.name is None:
                self.error("E103", f"fields of {struct} must be named, e.g. {struct}({next(iter(fields), 'x')}: …)",
                           arg.span)
                self.infer(arg.value, scope)
            elif arg.name not in fields:
                given |= self._unknown_field(struct, fields, arg.name, arg.span)
                self.infer(arg.value, scope)
            elif arg.name in given:
                self.error("E103", f"field '{arg.name}' is given twice", arg.span)
            else:
                given.add(arg.name)
                self._expect_field(struct, arg.name, fields[arg.name], arg.value, scope)
        missing = [f for f in fields if f not in given and f not in struct.defaults]
        if missing and all(a.name is not None for a in args):
            self.error("E103", f"missing field{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(repr(m) for m in missing)} in {struct}(…)", node.span,
                       "give every field that is not optional")
        return struct

    def bind(self, desc: str, params: list[Param], args: list[ast.Arg], node: ast.Node, scope: Scope,
             piped: ast.Node | None = None) -> None:
        """Match arguments to parameters (E103) and check their types (E201)."""
        bound: set[str] = set()
        rejected = False  # after a rejected argument, "missing" reports would only add noise
        offset = 0
        if piped is not None and params:
            bound.add(params[0].name)
            self.expect(piped, params[0].type, scope, f"the piped value of {desc}")
            offset = 1
        saw_named = False
        names = [p.name for p in params]
        for i, arg in enumerate(args):
            if arg.name is None:
                if saw_named:
                    self.error("E103", f"a positional argument cannot follow named ones in a call to {desc}",
                               arg.span)
                    self.infer(arg.value, scope)
                    rejected = True
                    continue
                position = i + offset
                if position >= len(params):
                    self.error("E103", f"too many arguments: {desc} takes {len(params)}, got "
                               f"{len(args) + offset}", arg.span)
                    self.infer(arg.value, scope)
                    rejected = True
                    continue
                param = params[position]
            else:
                saw_named = True
                param = next((p for p in params if p.name == arg.name), None)
                if param is None:
                    self.error("E103", f"unknown argument '{arg.name}' for {desc}", arg.span,
                               suggestion_help(arg.name, names) or f"parameters: {', '.join(names) or 'none'}")
                    self.infer(arg.value, scope)
                    rejected = True
                    continue
            if param.name in bound:
                self.error("E103", f"argument '{param.name}' of {desc} is given twice", arg.span)
                rejected = True
                continue
            bound.add(param.name)
            self.expect(arg.value, param.type, scope, f"argument '{param.name}' of {desc}")
        missing = [p.name for p in params if p.required and p.name not in bound]
        if missing and not rejected:
            listed = ", ".join(f"'{m}'" for m in missing)
            self.error("E103", f"missing argument{'s' if len(missing) > 1 else ''} {listed} in call to {desc}",
                       node.span)

    def _builtin_call(self, name: str, values: list[ast.Node], node: ast.Node, scope: Scope,
                      builtin=None) -> Type:
        builtin = builtin or BUILTINS[name]
        types = [self.infer(v, scope) for v in values]
        if not builtin.min_args <= len(values) <= builtin.max_args:
            return self.error("E103", f"{name}() takes {_count(builtin.min_args, builtin.max_args)}, "
                              f"got {len(values)}", node.span, builtin.signature)
        if any(isinstance(t, Unknown) for t in types):
            return UNKNOWN
        result = builtin.typing(types)
        if isinstance(result, str):
            # `len(x)` with `x: list[str]?`: what is wrong is the null, not the function.
            optional = next((v for v, t in zip(values, types) if isinstance(t, OptionalType)), None)
            fits = optional is not None and not isinstance(builtin.typing([strip_optional(t) for t in types]), str)
            return self.error("E201", result, node.span, null_hint(optional) if fits else builtin.signature)
        return result

    def _infer_Pipe(self, node: ast.Pipe, scope: Scope) -> Type:
        target = ast.Name(node.filter, None, span=node.filter_span)
        decl = self.lookup(target, scope)
        if decl is None:
            if node.filter in BUILTINS:
                return self._builtin_call(node.filter, [node.value, *(a.value for a in node.args)], node, scope)
            self.infer(node.value, scope)
            self._infer_args(node.args, scope)
            return UNKNOWN
        if not isinstance(decl, ast.FilterDecl):
            self.infer(node.value, scope)
            self._infer_args(node.args, scope)
            return self.error("E201", f"'{node.filter}' is a {decl.kind}; only filters and built-in functions "
                              "can follow '|'", node.filter_span)
        return self._decl_call(decl, node.args, node, scope, piped=node.value)

    # ----------------------------------------------------- fields and items
    def _infer_Attribute(self, node: ast.Attribute, scope: Scope) -> Type:
        base = self.infer(node.value, scope)
        if isinstance(base, DeclRef) and base.kind == "enum":
            enum = decl_type(self.ctx.lookup(base.name), self.ctx.symbols.path_of(self.ctx.lookup(base.name)))
            if node.attr not in enum.members:
                return self.error("E104", f"enum {enum} has no member '{node.attr}'", node.attr_span,
                                  suggestion_help(node.attr, enum.members) or f"members: {', '.join(enum.members)}")
            return enum
        optional = isinstance(base, OptionalType)
        plain = strip_optional(base)
        if is_dynamic(plain):
            return plain
        if isinstance(plain, StructType):
            fields = self.types.fields(plain)
            if node.attr not in fields:
                return self.error("E104", f"unknown field '{node.attr}' of type {plain}", node.attr_span,
                                  suggestion_help(node.attr, fields) or f"fields: {', '.join(fields)}")
            result = fields[node.attr]
            if scope.non_null and path_of(node) in scope.non_null:
                return strip_optional(result)
            return OptionalType(result) if optional and not isinstance(result, OptionalType) else result
        if isinstance(plain, DictType):
            return self.error("E201", f"a {plain} has no fields; read an entry with [\"{node.attr}\"]",
                              node.attr_span)
        return self.error("E201", f"{base} has no field '{node.attr}'", node.attr_span)

    def _infer_Index(self, node: ast.Index, scope: Scope) -> Type:
        base = strip_optional(self.infer(node.value, scope))
        index = self.infer(node.index, scope)
        if is_dynamic(base):
            return base
        if isinstance(base, ListType) or base == STR:
            if not is_assignable(index, INT):
                return self.error("E201", f"a {base} index must be int, got {index}", node.index.span)
            return base.item if isinstance(base, ListType) else STR
        if isinstance(base, DictType):
            if not is_assignable(index, STR):
                return self.error("E201", f"a {base} key must be str, got {index}", node.index.span)
            return base.value
        return self.error("E201", f"{base} cannot be indexed", node.span)

    # ------------------------------------------------------------ operators
    def _infer_Unary(self, node: ast.Unary, scope: Scope) -> Type:
        operand = self.infer(node.operand, scope)
        if node.op == "not":
            return BOOL
        if is_dynamic(operand) or is_numeric(operand) or operand == DURATION:  # a duration is a number of seconds
            return operand
        return self.error("E201", f"unary '-' needs a number, got {operand}", node.span)

    def _infer_Binary(self, node: ast.Binary, scope: Scope) -> Type:
        left, right = self.infer(node.left, scope), self.infer(node.right, scope)
        if isinstance(left, Unknown) or isinstance(right, Unknown):
            return BOOL if node.op in _BOOLEAN_OPS else UNKNOWN
        if node.op in ("and", "or", "==", "!="):
            return BOOL
        if node.op in ("<", "<=", ">", ">="):
            if (is_numeric(left) and is_numeric(right)) or (left == right == STR) or is_dynamic(left) \
                    or is_dynamic(right):
                return BOOL
            return self._operands_error(node, left, right, "compares numbers with numbers or str with str")
        if node.op in ("in", "not in"):
            return self._membership(node, left, right)
        return self._arithmetic(node, left, right)

    def _membership(self, node: ast.Binary, left: Type, right: Type) -> Type:
        container = strip_optional(right)
        ok = is_dynamic(container) or is_dynamic(left)
        if container == STR or isinstance(container, (DictType, StructType)):
            ok = ok or is_assignable(left, STR)
        elif isinstance(container, ListType):
            ok = ok or is_assignable(left, container.item) or is_assignable(container.item, left)
        if not ok:
            return self._operands_error(node, left, right, "looks for a str in a str or dict, or an item in a list")
        return BOOL

    def _arithmetic(self, node: ast.Binary, left: Type, right: Type) -> Type:
        if is_dynamic(left) or is_dynamic(right):
            return JSON
        if is_numeric(left) and is_numeric(right):
            if node.op == "/":
                return FLOAT
            return INT if left == right == INT else FLOAT
        if node.op == "+":
            if left == right == STR or (isinstance(left, EnumType) and right == STR) \
                    or (left == STR and isinstance(right, EnumType)):
                return STR
            if isinstance(left, ListType) and isinstance(right, ListType):
                item = join(left.item, right.item)
                if item is not None:
                    return ListType(item)
        if node.op == "*" and {left, right} == {STR, INT}:
            return STR
        return self._operands_error(node, left, right, None)

    def _operands_error(self, node: ast.Binary, left: Type, right: Type, help: str | None) -> Type:
        if isinstance(left, OptionalType) or isinstance(right, OptionalType):  # no operator here takes null
            help = null_hint(node.left if isinstance(left, OptionalType) else node.right)
        return self.error("E201", f"operator '{node.op}' does not apply to {left} and {right}", node.span, help)

    def _infer_logic_chain(self, node: ast.Binary, scope: Scope) -> Type:
        """`a and b and …` / `a or b or …`, in a loop: each operand sees what the ones
        before it tell when the chain goes on (true for `and`, false for `or`)."""
        first, links = ast.binary_chain(node)
        self.infer(first, scope)
        known = non_null_when(first, node.op == "and")
        for link in links:
            self.infer(link.right, scope.narrowed(known))
            self.ctx.expr_types[id(link)] = BOOL
            known = known | non_null_when(link.right, node.op == "and")
        return BOOL

    def _infer_Conditional(self, node: ast.Conditional, scope: Scope) -> Type:
        self.infer(node.condition, scope)
        then = self.infer(node.then, scope.narrowed(non_null_when(node.condition, True)))
        otherwise = self.infer(node.otherwise, scope.narrowed(non_null_when(node.condition, False)))
        joined = join(then, otherwise)
        if joined is None:
            return self.error("E201", f"the two sides of 'if … else' have different types: {then} and {otherwise}",
                              node.span)
        return joined

    def _infer_Comprehension(self, node: ast.Comprehension, scope: Scope) -> Type:
        iterable = self.infer(node.iterable, scope)
        item = loop_item(iterable)
        if item is None:
            item = self.error("E201", f"cannot loop over {strip_optional(iterable)}", node.iterable.span,
                              "loop over a list, a dict or a str")
        inner = scope.child(**{node.var: item})
        if node.condition is not None:
            self.infer(node.condition, inner)
            inner = inner.narrowed(non_null_when(node.condition, True))
        return ListType(self.infer(node.element, inner))


# The checker class's _infer_<node class name>, by (checker class, node class), found once.
_INFER_METHODS: dict[tuple[type, type], Callable] = {}


def _infer_unknown(_checker: ExprChecker, _expr: ast.Node, _scope: Scope) -> Type:
    return UNKNOWN


def loop_item(iterable: Type) -> Type | None:
    """The type of the items a comprehension over ``iterable`` sees; None when it cannot loop over it."""
    iterable = strip_optional(iterable)
    if isinstance(iterable, ListType):
        return iterable.item
    if is_dynamic(iterable):
        return iterable
    if isinstance(iterable, DictType) or iterable == STR:
        return STR  # a dict iterates over its keys, a str over its characters
    return None


def _inner_links(expr: ast.Node) -> list[ast.Node]:
    """The links of the chain ``expr`` ends, innermost first, without ``expr`` itself."""
    if isinstance(expr, ast.Binary) and ast.continues_chain(expr, expr.left):
        return ast.binary_chain(expr)[1][:-1]
    if isinstance(expr, ast.Pipe) and isinstance(expr.value, ast.Pipe):
        return ast.pipe_chain(expr)[1][:-1]
    return []


_BOOLEAN_OPS = {"and", "or", "==", "!=", "<", "<=", ">", ">=", "in", "not in"}


def null_hint(expr: ast.Node) -> str:
    """How to use a value that may be null where one that is not is needed: the forms the
    checker narrows (see narrowing.py), written with the value's own name."""
    path = path_of(expr)
    if path is None:
        return ("the value may be null: name it (`v = …`), then use it inside `if v != null { … }`, "
                "or give a default: `v if v != null else …`")
    return (f"'{path}' may be null: use it inside `if {path} != null {{ … }}`, "
            f"or give a default: `{path} if {path} != null else …`")


def _mismatch_help(actual: Type, target: Type, expr: ast.Node) -> str | None:
    plain = strip_optional(target)
    if isinstance(actual, OptionalType) and is_assignable(actual.inner, target):
        return null_hint(expr)
    if plain == DURATION and is_numeric(actual):
        return "write a duration with its unit: 500ms, 30s, 2m, 1h"
    if plain == RATE and is_numeric(actual):
        return "write a rate with its period: 60/min, 5/s, 1000/h"
    if isinstance(plain, EnumType) and actual == STR:
        return f"write {plain}.member or a string literal naming one: {', '.join(plain.members)}"
    return None


def _count(low: int, high: int) -> str:
    if low == high:
        return f"{low} argument{'s' if low != 1 else ''}"
    return f"{low} to {high} arguments"


def _quiet():
    from ..diagnostics import Diagnostics

    return Diagnostics()
