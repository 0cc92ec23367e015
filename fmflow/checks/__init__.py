"""The checker: a flat, ordered list of small passes, one concern each.

Every pass takes the CheckContext, adds diagnostics, and never raises on bad
input. Semantic passes run only when the whole file parsed: when the parser
had to set a broken declaration aside, the rest is not what the user meant
yet. (A bad escape or `@0` is an E001 too, but the file still parsed.)
"""

from __future__ import annotations

import os

from .blocks import check_block_keys
from .context import CheckContext
from .flow_paths import check_flow_paths
from .imports import check_imports
from .lock import check_lock
from .pipelines import check_pipelines
from .recursion import check_recursion
from .symbols import collect_symbols
from .templates import check_templates
from .typecheck import check_types
from .unused import check_unused

PASSES = (
    check_imports,      # E002
    collect_symbols,    # E102
    check_block_keys,   # E104 (block keys)
    check_types,        # E101 E103 E104 E201
    check_pipelines,    # E101 E103 E201 (pipeline steps)
    check_templates,    # E202
    check_flow_paths,   # E203 E204
    check_recursion,    # E301
    check_lock,         # E401
    check_unused,       # W501
)


def run_passes(ctx: CheckContext) -> None:
    if ctx.module.recovered:
        return
    ctx.take_parser_walks()
    try:
        _run_each(ctx)
    finally:
        ctx.forget_walks()


def _run_each(ctx: CheckContext) -> None:
    for check in PASSES:
        try:
            check(ctx)
        except Exception as error:  # a checker bug must not become a user's traceback
            if os.environ.get("FMFLOW_STRICT"):
                raise
            ctx.diagnostics.add(
                "E001", f"internal error in the checker ({check.__name__}: {type(error).__name__}: {error})",
                ctx.source.span(0, 0), "please report this with the file that caused it")
            return
