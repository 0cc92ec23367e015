"""Written types (TypeRef) → checker types, and the fields of declared types."""

from __future__ import annotations

from .. import ast
from ..diagnostics import Diagnostics, suggestion_help
from ..types import (BUILTIN_STRUCTS, GENERIC_TYPES, PRIMITIVES, UNKNOWN, DictType, EnumType, ListType, OptionalType,
                     StructType, Type)
from .context import CheckContext


def decl_type(decl: ast.Decl, path: str) -> Type:
    """The type a ``type`` or ``enum`` declaration defines."""
    if isinstance(decl, ast.EnumDecl):
        return EnumType(decl.name, path, tuple(m.name for m in decl.members), decl=decl)
    optional = frozenset(f.name for f in decl.fields if f.type.optional)
    return StructType(decl.name, path, defaults=optional, decl=decl)


class TypeResolver:
    """Resolves TypeRefs in one module, reporting E101/E201 into its diagnostics."""

    def __init__(self, ctx: CheckContext, diagnostics: Diagnostics | None = None) -> None:
        self.ctx = ctx
        self.diagnostics = diagnostics if diagnostics is not None else ctx.diagnostics

    def resolve_quietly(self, ref: ast.TypeRef | None) -> Type:
        """The type of ``ref`` without reporting anything (its errors are reported where it is checked)."""
        return TypeResolver(self.ctx, Diagnostics()).resolve(ref)

    def resolve(self, ref: ast.TypeRef | None) -> Type:
        if ref is None:
            return UNKNOWN
        base = self._resolve_base(ref)
        return OptionalType(base) if ref.optional and base is not UNKNOWN else base

    def _resolve_base(self, ref: ast.TypeRef) -> Type:
        if ref.name in GENERIC_TYPES:
            if ref.arg is None:
                self.diagnostics.add("E201", f"'{ref.name}' needs an item type", ref.span,
                                     f"write {ref.name}[str], {ref.name}[json], …")
                return UNKNOWN
            item = self.resolve(ref.arg)
            return ListType(item) if ref.name == "list" else DictType(item)
        if ref.arg is not None:
            self.diagnostics.add("E201", f"'{ref.name}' takes no type argument", ref.span,
                                 "only list[T] and dict[T] take one")
        if ref.name in PRIMITIVES:
            return PRIMITIVES[ref.name]
        if ref.name in BUILTIN_STRUCTS:
            return BUILTIN_STRUCTS[ref.name]
        decl = self.ctx.lookup(ref.name)
        if decl is None:
            candidates = [*PRIMITIVES, *GENERIC_TYPES, *BUILTIN_STRUCTS,
                          *(n for n, ds in self.ctx.symbols.decls.items()
                            if isinstance(ds[0], (ast.TypeDecl, ast.EnumDecl)))]
            self.diagnostics.add("E101", f"unknown type '{ref.name}'", ref.span,
                                 suggestion_help(ref.name, candidates))
            return UNKNOWN
        if self.diagnostics is self.ctx.diagnostics:
            self.ctx.refer(ref.span, decl)
        if not isinstance(decl, (ast.TypeDecl, ast.EnumDecl)):
            self.diagnostics.add("E201", f"'{ref.name}' is a {decl.kind}, not a type", ref.span,
                                 "types are str, int, float, bool, json, list[T], dict[T], Doc, "
                                 "and declared types and enums")
            return UNKNOWN
        return decl_type(decl, self.ctx.symbols.path_of(decl))

    def fields(self, struct: StructType) -> dict[str, Type]:
        """Field name → type of a struct (declared anywhere in the program)."""
        if struct.decl is None:
            return dict(struct.fields)
        cache = self.ctx.loader.field_cache
        key = id(struct.decl)
        if key not in cache:
            cache[key] = {}  # recursive types see the fields resolved so far
            owner = self.ctx.loader.context(struct.path) or self.ctx
            # Diagnostics for the declaration were reported when its own module was checked.
            resolver = TypeResolver(owner, Diagnostics())
            cache[key] = {f.name: resolver.resolve(f.type) for f in struct.decl.fields}
        return cache[key]
