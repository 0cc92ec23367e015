"""The fmflow AST: data-only nodes, each with the Span it came from.

Spans are left out of equality so that two parses of differently formatted
text compare equal when they mean the same thing (the round-trip tests rely
on it). Behaviour lives in passes (fmflow.checks), the formatter and the
compiler, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator, Union

from .source import Span


def _span() -> Span:
    return field(compare=False, repr=False, kw_only=True)  # type: ignore[return-value]


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


# Field types that never hold a node (walks skip such fields without reading them).
_PLAIN_TYPES = frozenset({"str", "str | None", "int", "int | None", "bool", "object", "DocComment | None",
                          "list[Comment]",
                          "list[tuple[Decl, list[Node]]] | None"})  # Module.walks: the same nodes again


def _child_fields(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` that may hold nodes: all but its spans and plain data."""
    names = tuple(f.name for f in fields(cls)
                  if f.name != "span" and not f.name.endswith("_span") and f.type not in _PLAIN_TYPES)
    _FIELD_NAMES[cls] = names
    return names


class Node:
    span: Span

    def children(self) -> list["Node"]:
        """Direct child nodes, in source order."""
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _child_fields(type(self))
        found: list[Node] = []
        for name in names:
            value = getattr(self, name)
            if isinstance(value, Node):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if isinstance(item, Node):
                        found.append(item)
                    elif isinstance(item, tuple):
                        found.extend(x for x in item if isinstance(x, Node))
        return found

    def walk(self) -> Iterator["Node"]:
        """This node and all its descendants, depth first, in source order.

        A loop, not recursion: a chain of ten thousand `+` is ten thousand levels deep.
        """
        stack: list[Node] = [self]
        pop, extend = stack.pop, stack.extend
        while stack:
            node = pop()
            yield node
            children = node.children()
            if children:
                children.reverse()
                extend(children)


# ------------------------------------------------------------------- types

@dataclass
class TypeRef(Node):
    """A written type: ``str``, ``list[Doc]``, ``Answer?``."""

    name: str
    arg: "TypeRef | None"
    optional: bool
    span: Span = _span()


@dataclass
class DocComment:
    """``##`` lines directly above a declaration, a parameter, a type field or an
    enum member (see fmflow.doc_comments). Not a Node: nothing walks into it.

    ``text`` is what tools and schemas show (each line without ``##`` and one
    space, joined by newlines); ``lines`` are the comments verbatim, for the formatter.
    """

    text: str
    lines: list[str] = field(compare=False, default_factory=list)
    span: Span = _span()


def _doc():
    return field(default=None, kw_only=True)


@dataclass
class Param(Node):
    """``name: type`` or ``name: type = default`` in a signature."""

    name: str
    type: TypeRef
    default: "Expr | None" = None
    doc: DocComment | None = _doc()
    span: Span = _span()


# ------------------------------------------------------------- expressions

@dataclass
class Literal(Node):
    """str, int, float, bool, null, duration (seconds) or rate literal.

    ``raw`` keeps the text as written so the formatter can print it back.
    """

    kind: str  # "str" | "int" | "float" | "bool" | "null" | "duration" | "rate"
    value: object
    raw: str = field(compare=False, default="")
    span: Span = _span()


@dataclass
class BlockString(Node):
    """A ``\"\"\"…\"\"\"`` string: ``value`` is dedented, ``raw`` is verbatim."""

    value: str
    raw: str = field(compare=False, default="")
    # Line in the file where ``value``'s first line sits (for template diagnostics).
    first_line: int = field(compare=False, default=1)
    indent: int = field(compare=False, default=0)
    span: Span = _span()


@dataclass
class Name(Node):
    id: str
    version: int | None = None
    span: Span = _span()


@dataclass
class ListExpr(Node):
    items: list["Expr"]
    span: Span = _span()


@dataclass
class DictEntry(Node):
    key: str
    value: "Expr"
    quoted: bool = field(compare=False, default=False)
    span: Span = _span()


@dataclass
class DictExpr(Node):
    entries: list[DictEntry]
    span: Span = _span()


@dataclass
class Comprehension(Node):
    element: "Expr"
    var: str
    iterable: "Expr"
    condition: "Expr | None"
    var_span: Span = field(compare=False, repr=False, default=None)  # type: ignore[assignment]
    span: Span = _span()


@dataclass
class Arg(Node):
    name: str | None
    value: "Expr"
    span: Span = _span()


@dataclass
class Call(Node):
    func: "Expr"
    args: list[Arg]
    span: Span = _span()


@dataclass
class Pipe(Node):
    """``value | filter(args…)``: the filter called with value first."""

    value: "Expr"
    filter: str
    args: list[Arg]
    filter_span: Span = field(compare=False, repr=False, default=None)  # type: ignore[assignment]
    span: Span = _span()


@dataclass
class Attribute(Node):
    value: "Expr"
    attr: str
    attr_span: Span = field(compare=False, repr=False, default=None)  # type: ignore[assignment]
    span: Span = _span()


@dataclass
class Index(Node):
    value: "Expr"
    index: "Expr"
    span: Span = _span()


@dataclass
class Unary(Node):
    op: str  # "-" | "not"
    operand: "Expr"
    span: Span = _span()


@dataclass
class Binary(Node):
    """Arithmetic, comparison, membership and boolean operators."""

    op: str  # + - * / % == != < <= > >= in "not in" and or
    left: "Expr"
    right: "Expr"
    span: Span = _span()


@dataclass
class Conditional(Node):
    """``then if condition else otherwise``."""

    then: "Expr"
    condition: "Expr"
    otherwise: "Expr"
    span: Span = _span()


Expr = Union[
    Literal, BlockString, Name, ListExpr, DictExpr, Comprehension, Call, Pipe,
    Attribute, Index, Unary, Binary, Conditional,
]

# Operators that lean left and may repeat: `a + b - c` is `(a + b) - c`. A long
# chain of them (generated code writes ten thousand terms) is as deep as it is
# long, so every phase walks a chain with a loop (``binary_chain``,
# ``pipe_chain``) and the nesting limit (fmflow.nesting) does not count it.
CHAIN_CLASS = {"+": "sum", "-": "sum", "*": "product", "/": "product", "%": "product", "and": "and", "or": "or"}


def continues_chain(parent: Node, child: Node) -> bool:
    """``child`` is the left part of the same chain as ``parent`` (a Binary or Pipe)."""
    if isinstance(parent, Binary):
        return (child is parent.left and isinstance(child, Binary) and parent.op in CHAIN_CLASS
                and CHAIN_CLASS.get(child.op) == CHAIN_CLASS[parent.op])
    return isinstance(parent, Pipe) and child is parent.value and isinstance(child, Pipe)


def binary_chain(node: Binary) -> tuple[Expr, list[Binary]]:
    """The first operand of the chain ``node`` ends, and its links from the innermost out.

    Each link adds its ``op`` and ``right`` to the value so far: ``a + b - c``
    gives ``(a, [a + b, (a + b) - c])``. A comparison is a chain of one link.
    """
    links = [node]
    while continues_chain(links[-1], links[-1].left):
        links.append(links[-1].left)  # type: ignore[arg-type]
    links.reverse()
    return links[0].left, links


def read_names(expr: Node, callees: bool = True) -> Iterator[Name]:
    """The names ``expr`` reads, in source order, minus the variables its comprehensions bind.

    ``callees=False`` leaves out the names being called (``f`` in ``f(x)``).
    """
    return (name for name, bound in scoped_names(expr, callees) if name.id not in bound)


def scoped_names(expr: Node, callees: bool = True) -> Iterator[tuple[Name, frozenset[str]]]:
    """Every name ``expr`` reads, in source order, with the comprehension variables bound where it is."""
    stack: list[tuple[Node, frozenset[str]]] = [(expr, frozenset())]
    while stack:
        node, bound = stack.pop()
        if isinstance(node, Name):
            yield node, bound
        elif isinstance(node, Comprehension):
            inner = bound | {node.var}
            parts = [(node.iterable, bound), (node.element, inner)]
            if node.condition is not None:
                parts.append((node.condition, inner))
            stack.extend(reversed(parts))
        elif not callees and isinstance(node, Call) and isinstance(node.func, Name):
            stack.extend((arg, bound) for arg in reversed(node.args))
        else:
            stack.extend((child, bound) for child in reversed(list(node.children())))


def pipe_chain(node: Pipe) -> tuple[Expr, list[Pipe]]:
    """The value a chain of pipes starts from, and its stages from the first out."""
    stages = [node]
    while isinstance(stages[-1].value, Pipe):
        stages.append(stages[-1].value)  # type: ignore[arg-type]
    stages.reverse()
    return stages[0].value, stages


# -------------------------------------------------------------- statements

@dataclass
class Assign(Node):
    name: str
    value: Expr
    name_span: Span = field(compare=False, repr=False, default=None)  # type: ignore[assignment]
    span: Span = _span()


@dataclass
class Return(Node):
    value: Expr
    span: Span = _span()


@dataclass
class Branch(Node):
    """One ``if``/``elif`` arm: a condition and its statements."""

    condition: Expr
    body: list["Stmt"]
    end_span: Span = field(compare=False, repr=False, default=None)  # type: ignore[assignment]
    span: Span = _span()


@dataclass
class If(Node):
    branches: list[Branch]
    orelse: list["Stmt"] | None
    span: Span = _span()


Stmt = Union[Assign, Return, If]


def statements(body: list[Stmt]) -> Iterator[Stmt]:
    """Every statement of a body, those in the arms of its ``if``s included, in source order."""
    stack = list(reversed(body))
    while stack:
        stmt = stack.pop()
        yield stmt
        if isinstance(stmt, If):
            nested = [s for branch in stmt.branches for s in branch.body] + (stmt.orelse or [])
            stack.extend(reversed(nested))


def assigned_names(body: list[Stmt]) -> set[str]:
    """Names a body assigns anywhere (only statements assign: no need to walk expressions)."""
    return {s.name for s in statements(body) if isinstance(s, Assign)}


# ------------------------------------------------------------ declarations

@dataclass
class Entry(Node):
    """``key: value`` inside a declaration block."""

    key: str
    value: Expr
    key_span: Span = field(compare=False, repr=False, default=None)  # type: ignore[assignment]
    span: Span = _span()


@dataclass
class Decl(Node):
    """Base of top-level declarations; ``name_span`` is where the name is."""

    kind = "declaration"
    name: str
    name_span: Span = field(compare=False, repr=False, kw_only=True)
    doc: DocComment | None = _doc()
    span: Span = _span()

    def entry(self, key: str) -> Entry | None:
        """The first entry named ``key`` (an index built on first use: the runtime asks on every call)."""
        index = self.__dict__.get("_entry_index")
        if index is None:
            index = {}
            for e in getattr(self, "entries", ()):
                index.setdefault(e.key, e)
            self.__dict__["_entry_index"] = index
        return index.get(key)


@dataclass
class Import(Node):
    path: str
    span: Span = _span()


@dataclass
class ModelDecl(Decl):
    kind = "model"
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Field(Node):
    name: str
    type: TypeRef
    doc: DocComment | None = _doc()
    span: Span = _span()


@dataclass
class TypeDecl(Decl):
    kind = "type"
    fields: list[Field] = field(default_factory=list)


@dataclass
class EnumMember(Node):
    name: str
    doc: DocComment | None = _doc()
    span: Span = _span()


@dataclass
class EnumDecl(Decl):
    kind = "enum"
    members: list[EnumMember] = field(default_factory=list)


@dataclass
class PromptDecl(Decl):
    kind = "prompt"
    version: int | None = None  # None: written without @N (version 1)
    params: list[Param] = field(default_factory=list)
    returns: TypeRef | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def effective_version(self) -> int:
        return 1 if self.version is None else self.version


@dataclass
class RetrieverDecl(Decl):
    kind = "retriever"
    entries: list[Entry] = field(default_factory=list)


@dataclass
class ToolDecl(Decl):
    """``tool`` and ``filter`` declarations: a signature bound to an implementation."""

    kind = "tool"
    params: list[Param] = field(default_factory=list)
    returns: TypeRef | None = None
    impl: Expr | None = None


@dataclass
class FilterDecl(ToolDecl):
    kind = "filter"


@dataclass
class AgentDecl(Decl):
    kind = "agent"
    params: list[Param] = field(default_factory=list)
    returns: TypeRef | None = None
    entries: list[Entry] = field(default_factory=list)


@dataclass
class FlowDecl(Decl):
    kind = "flow"
    params: list[Param] = field(default_factory=list)
    returns: TypeRef | None = None
    body: list[Stmt] = field(default_factory=list)
    end_span: Span = field(compare=False, repr=False, default=None)  # type: ignore[assignment]


@dataclass
class TestDecl(Decl):
    kind = "test"
    entries: list[Entry] = field(default_factory=list)


@dataclass
class EvalDecl(Decl):
    """``eval NAME { flow: …, dataset: …, variants: […] | models: […], metrics: {…} }``."""

    kind = "eval"
    entries: list[Entry] = field(default_factory=list)


@dataclass
class PipelineDecl(Decl):
    """``pipeline NAME { source: …, steps: [...], sink: … }``: its entries as written.

    ``fmflow.pipeline_steps`` reads the source, the steps and the sink out of
    them (each keeps the span of the call it was written as).
    """

    kind = "pipeline"
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Comment:
    """A ``#`` comment; kept beside the AST so the formatter can put it back."""

    text: str
    line: int
    col: int
    own_line: bool  # nothing but whitespace before it on its line


@dataclass
class Module(Node):
    path: str
    imports: list[Import]
    decls: list[Decl]
    comments: list[Comment] = field(compare=False, default_factory=list)
    # True when the parser had to set broken declarations aside (see parser.py).
    recovered: bool = field(compare=False, default=False)
    # (declaration, its nodes in source order), as the parser's nesting check walked them
    # (fmflow/nesting.py); the checker takes them over (CheckContext.nodes).
    walks: list[tuple[Decl, list[Node]]] | None = field(compare=False, default=None, repr=False)
    span: Span = _span()

    def items(self) -> list[Node]:
        """Imports and declarations in source order."""
        return sorted([*self.imports, *self.decls], key=lambda n: n.span.start)
