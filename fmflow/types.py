"""fmflow's type system: the types the checker infers and compares.

Kept free of heavy imports: ``fmflow check`` loads this module. The runtime
builds pydantic models from the same declarations in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Type:
    def __str__(self) -> str:  # pragma: no cover - every subclass overrides
        return "?"


@dataclass(frozen=True)
class Prim(Type):
    """str int float bool json null, and the literal-only duration and rate."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ListType(Type):
    item: Type

    def __str__(self) -> str:
        return f"list[{self.item}]"


@dataclass(frozen=True)
class DictType(Type):
    value: Type

    def __str__(self) -> str:
        return f"dict[{self.value}]"


@dataclass(frozen=True)
class OptionalType(Type):
    inner: Type

    def __str__(self) -> str:
        return f"{self.inner}?"


@dataclass(frozen=True)
class StructType(Type):
    """A declared ``type`` (or the built-in Doc). Fields resolve lazily."""

    name: str
    path: str  # the file that declares it; two files may each declare a type T
    fields: tuple[tuple[str, Type], ...] = field(compare=False, default=())
    # Fields that may be left out of a constructor call (optional ones, and Doc.metadata).
    defaults: frozenset[str] = field(compare=False, default=frozenset())
    # The TypeDecl behind it; fields of declared types are resolved by the checker
    # (fmflow.checks.resolve) so that recursive types need no fixed point here.
    decl: object = field(compare=False, default=None, repr=False)
    # `str` fields whose value must be one of a few words (Message.role): the checker
    # checks literals, the runtime every value.
    choices: tuple[tuple[str, tuple[str, ...]], ...] = field(compare=False, default=())

    def __str__(self) -> str:
        return self.name

    def field_choices(self, name: str) -> tuple[str, ...] | None:
        return dict(self.choices).get(name)

    def field_type(self, name: str) -> Type | None:
        return dict(self.fields).get(name)


@dataclass(frozen=True)
class EnumType(Type):
    name: str
    path: str
    members: tuple[str, ...] = field(compare=False, default=())
    decl: object = field(compare=False, default=None, repr=False)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Unknown(Type):
    """The type of an expression that already has an error: compatible with all."""

    def __str__(self) -> str:
        return "unknown"


@dataclass(frozen=True)
class DeclRef(Type):
    """A bare reference to a declaration: a model, a callable, a type or an enum."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} '{self.name}'"


STR, INT, FLOAT, BOOL, JSON, NULL = (Prim(n) for n in ("str", "int", "float", "bool", "json", "null"))
DURATION, RATE = Prim("duration"), Prim("rate")
UNKNOWN = Unknown()
PRIMITIVES = {"str": STR, "int": INT, "float": FLOAT, "bool": BOOL, "json": JSON}
GENERIC_TYPES = ("list", "dict")

DOC = StructType(
    "Doc", "<builtin>",
    fields=(("id", STR), ("text", STR), ("score", FLOAT), ("metadata", DictType(JSON))),
    defaults=frozenset({"metadata"}),
)
# One turn of a conversation, for a prompt's or an agent's `history:`.
MESSAGE_ROLES = ("system", "user", "assistant", "tool")
MESSAGE = StructType("Message", "<builtin>", fields=(("role", STR), ("content", STR)),
                     choices=(("role", MESSAGE_ROLES),))
# Built-in declared-like types: usable as types and constructors, never redeclared.
BUILTIN_STRUCTS = {"Doc": DOC, "Message": MESSAGE}
BUILTIN_TYPE_NAMES = (*PRIMITIVES, *GENERIC_TYPES, *BUILTIN_STRUCTS)

# A retriever is called as kb(query, k: …, where: …) and gives list[Doc]:
# (name, type, required) for the checker and the runtime alike.
RETRIEVER_PARAMS = (("query", STR, True), ("k", INT, False), ("where", DictType(JSON), False))
RETRIEVER_RESULT = ListType(DOC)


def is_dynamic(t: Type) -> bool:
    return isinstance(t, Unknown) or t == JSON


def strip_optional(t: Type) -> Type:
    return t.inner if isinstance(t, OptionalType) else t


def is_numeric(t: Type) -> bool:
    return t in (INT, FLOAT)


def is_assignable(source: Type, target: Type) -> bool:
    """Can a value of type ``source`` be used where ``target`` is expected?"""
    if is_dynamic(source) or is_dynamic(target) or source == target:
        return True
    if source == INT and target == FLOAT:
        return True
    if isinstance(source, EnumType) and target == STR:
        return True  # an enum value equals its name as a string
    if isinstance(target, OptionalType):
        if source == NULL:
            return True
        return is_assignable(strip_optional(source), target.inner)
    if isinstance(source, ListType) and isinstance(target, ListType):
        return is_assignable(source.item, target.item)
    if isinstance(source, DictType) and isinstance(target, DictType):
        return is_assignable(source.value, target.value)
    return False


def join(a: Type, b: Type) -> Type | None:
    """The type that holds values of both ``a`` and ``b``, or None if none does."""
    if a == b:
        return a
    if a == JSON or b == JSON:
        return JSON  # json holds anything, and stays json
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return b if isinstance(a, Unknown) else a
    if a == NULL:
        return b if isinstance(b, OptionalType) else OptionalType(b)
    if b == NULL:
        return a if isinstance(a, OptionalType) else OptionalType(a)
    if is_numeric(a) and is_numeric(b):
        return FLOAT
    if isinstance(a, ListType) and isinstance(b, ListType):
        item = join(a.item, b.item)
        return ListType(item) if item is not None else None
    if isinstance(a, DictType) and isinstance(b, DictType):
        value = join(a.value, b.value)
        return DictType(value) if value is not None else None
    if isinstance(a, OptionalType) or isinstance(b, OptionalType):
        inner = join(strip_optional(a), strip_optional(b))
        return OptionalType(inner) if inner is not None else None
    if is_assignable(a, b):
        return b
    if is_assignable(b, a):
        return a
    return None
