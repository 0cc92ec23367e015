"""W501: a declaration that nothing uses (flows, pipelines, tests and evals are entry points)."""

from __future__ import annotations

from .. import ast
from .context import CheckContext
from .typecheck import DEFAULT_MODEL


def check_unused(ctx: CheckContext) -> None:
    if not ctx.report_unused:
        return
    used = {ref.decl.name for ref in ctx.references if ref.span.path == ctx.path
            and not _inside(ref.span, ref.decl)}
    for decl in ctx.module.decls:
        if isinstance(decl, (ast.FlowDecl, ast.PipelineDecl, ast.TestDecl, ast.EvalDecl)) or decl.name in used:
            continue
        if isinstance(decl, ast.ModelDecl) and decl.name == DEFAULT_MODEL and ctx.module.imports:
            continue  # it answers the imported prompts that name no model (std/prompts)
        if id(decl) not in ctx.symbols.origin:
            continue  # rejected as a duplicate (E102): one report is enough
        ctx.diagnostics.add("W501", f"{decl.kind} '{decl.name}' is never used", decl.name_span,
                            "remove it, or use it from a flow")


def _inside(span, decl: ast.Decl) -> bool:
    """A use inside the declaration itself (a recursive type) does not count."""
    return decl.span.path == span.path and decl.span.start <= span.start < decl.span.end
