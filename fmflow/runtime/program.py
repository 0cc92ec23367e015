"""A checked program, as the runtime sees it: declarations, their types, their models."""

from __future__ import annotations

import os
from functools import cached_property

from .. import ast
from ..checks.context import CheckContext
from ..checks.loader import ModuleLoader
from ..checks.resolve import TypeResolver
from ..diagnostics import Diagnostics
from ..types import RETRIEVER_PARAMS, RETRIEVER_RESULT, Type
from .errors import FlowRuntimeError


class Program:
    """The root file's checked context plus the loader holding its imports."""

    def __init__(self, loader: ModuleLoader, ctx: CheckContext) -> None:
        self.loader = loader
        self.ctx = ctx
        self._resolvers: dict[str, TypeResolver] = {}
        self._signatures: dict[int, tuple[list[tuple[str, Type]], Type]] = {}
        self._hashes: dict[int, object] = {}
        self._contexts: dict[int, CheckContext] = {}
        self._lookups: dict[tuple, ast.Decl | None] = {}
        # Facts about AST nodes the runtime derives once (keyed by node id: the
        # program keeps its AST alive, so the ids stay valid as long as it does).
        self.memo: dict = {}

    @property
    def path(self) -> str:
        return self.ctx.path

    def flows(self) -> list[ast.FlowDecl]:
        return [d for d in self.ctx.module.decls if isinstance(d, ast.FlowDecl)]

    def flow(self, name: str | None) -> ast.FlowDecl:
        if name is not None and type(name) is not str:
            return self._find_flow(name)   # which says there is no such flow
        # Every run looks its flow up, and a file may declare hundreds of things.
        found = self.memo.get(("flow", name))
        if found is None:
            found = self.memo[("flow", name)] = self._find_flow(name)
        return found

    def _find_flow(self, name: str | None) -> ast.FlowDecl:
        flows = self.flows()
        if name is None:
            if len(flows) == 1:
                return flows[0]
            if not flows:
                raise FlowRuntimeError(f"{self.path} declares no flow")
            raise FlowRuntimeError(f"{self.path} declares several flows ({', '.join(f.name for f in flows)}); "
                                   "choose one (--flow NAME, or load(path, flow=NAME))")
        for flow in flows:
            if flow.name == name:
                return flow
        raise FlowRuntimeError(f"no flow '{name}' in {self.path} (flows: {', '.join(f.name for f in flows)})")

    # ------------------------------------------------------- declarations
    def context_of(self, decl: ast.Decl) -> CheckContext:
        """The checked file that declares ``decl`` (names inside it resolve there)."""
        key = id(decl)
        if key not in self._contexts:
            path = self.ctx.symbols.path_of(decl) or self._declaring_path(decl)
            self._contexts[key] = self.loader.context(path) or self.ctx
        return self._contexts[key]

    def _declaring_path(self, decl: ast.Decl) -> str:
        """The file of a declaration the root file does not see (one that an imported file imports)."""
        for ctx in self.loader.contexts.values():
            if any(d is decl for d in ctx.module.decls):
                return ctx.path
        return self.ctx.path

    def folder_of(self, decl: ast.Decl) -> str:
        return os.path.dirname(os.path.abspath(self.context_of(decl).path))

    def lookup(self, name: str, version: int | None = None, within: ast.Decl | None = None) -> ast.Decl | None:
        ctx = self.context_of(within) if within is not None else self.ctx
        key = (id(ctx), name, version)
        if key not in self._lookups:  # the program does not change once checked
            self._lookups[key] = ctx.lookup(name, version)
        return self._lookups[key]

    def resolver(self, decl: ast.Decl) -> TypeResolver:
        return self._resolver_in(self.context_of(decl))

    def _resolver_in(self, ctx: CheckContext) -> TypeResolver:
        if ctx.path not in self._resolvers:
            self._resolvers[ctx.path] = TypeResolver(ctx, Diagnostics())
        return self._resolvers[ctx.path]

    def signature(self, decl: ast.Decl) -> tuple[list[tuple[str, Type]], Type]:
        """(parameter name, type) pairs and the result type of a callable declaration."""
        key = id(decl)
        if key not in self._signatures and isinstance(decl, ast.RetrieverDecl):
            self._signatures[key] = ([(name, t) for name, t, _required in RETRIEVER_PARAMS], RETRIEVER_RESULT)
        if key not in self._signatures:
            resolver = self.resolver(decl)
            params = [(p.name, resolver.resolve(p.type)) for p in getattr(decl, "params", [])]
            self._signatures[key] = (params, resolver.resolve(getattr(decl, "returns", None)))
        return self._signatures[key]

    def prompt_hashes(self, decl: ast.PromptDecl):
        """The lock's hashes of a prompt version (its text, its model), as traces record them."""
        key = id(decl)
        if key not in self._hashes:
            from ..lockfile import prompt_hashes

            self._hashes[key] = prompt_hashes(decl, self.context_of(decl))
        return self._hashes[key]

    def renderer_for(self, decl: ast.Decl):
        """The template renderer of the file declaring ``decl``: its templates may use the
        filters that file declares or imports, besides Jinja's own."""
        ctx = self.context_of(decl)
        key = ("renderer", ctx.path)
        if key not in self.memo:
            from .templates import TemplateRenderer

            declared = [name for name, decls in ctx.symbols.decls.items() if isinstance(decls[0], ast.FilterDecl)]
            self.memo[key] = TemplateRenderer(declared=declared)
        return self.memo[key]

    @cached_property
    def types(self):
        """Pydantic models and JSON schemas of the program's types."""
        from .outputs import TypeModels

        return TypeModels(self.resolver_for_fields)

    def resolver_for_fields(self, struct) -> dict[str, Type]:
        if struct.decl is None:
            return dict(struct.fields)
        return self._resolver_in(self.loader.context(struct.path) or self.ctx).fields(struct)

    @cached_property
    def secret_sources(self) -> tuple[frozenset[str], frozenset[str]]:
        """(names of environment variables, URLs) whose secrets a run must mask from the start:
        every ``env("NAME")`` written with a literal name and every literal ``api_key_env``
        in the program and its imports, and every literal ``base_url``."""
        names, urls = set(), set()
        for ctx in self.loader.contexts.values():
            for node in ctx.module.walk():
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "env" \
                        and node.args and _literal_str(node.args[0].value) is not None:
                    names.add(_literal_str(node.args[0].value))
                elif isinstance(node, ast.ModelDecl):
                    for key, into in (("api_key_env", names), ("base_url", urls)):
                        entry = node.entry(key)
                        if entry is not None and _literal_str(entry.value) is not None:
                            into.add(_literal_str(entry.value))
        return frozenset(names), frozenset(urls)

    def models(self) -> list[ast.ModelDecl]:
        """Every model declaration visible from the root file (local and imported)."""
        seen, found = set(), []
        for decls in self.ctx.symbols.decls.values():
            for decl in decls:
                if isinstance(decl, ast.ModelDecl) and id(decl) not in seen:
                    seen.add(id(decl))
                    found.append(decl)
        return found


def _literal_str(node: ast.Node) -> str | None:
    return node.value if isinstance(node, ast.Literal) and node.kind == "str" else None
