"""A checked `eval` declaration read into what `fmflow eval` runs: variants, metrics and a dataset."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from .. import ast
from ..types import BOOL
from .dataset import DatasetSpec, read_dataset_entry


class EvalError(Exception):
    """The eval cannot run as asked (no such eval, …): a usage error."""


@dataclass(frozen=True)
class Variant:
    """One way of running the flow: a pinned prompt version, a model for every prompt, or the flow as is."""

    label: str
    pins: tuple[tuple[str, int], ...] = ()
    model: str | None = None


@dataclass(frozen=True)
class Metric:
    name: str
    expr: ast.Node = field(compare=False, repr=False)
    rate: bool          # a bool metric: a rate; otherwise a mean


@dataclass
class EvalPlan:
    decl: ast.EvalDecl
    flow: str
    dataset: DatasetSpec
    variants: list[Variant]
    metrics: list[Metric]

    @property
    def name(self) -> str:
        return self.decl.name


def evals_of(program) -> list[ast.EvalDecl]:
    return [d for d in program.ctx.module.decls if isinstance(d, ast.EvalDecl)]


def read_plan(program, name: str | None = None) -> EvalPlan:
    """The plan of the eval ``name`` of a checked program (the only one when ``name`` is None)."""
    decls = evals_of(program)
    names = ", ".join(d.name for d in decls)
    if name is None:
        if len(decls) != 1:
            raise EvalError(f"{program.path} declares no eval" if not decls else
                            f"{program.path} declares several evals ({names}); choose one with --name")
        decl = decls[0]
    else:
        decl = next((d for d in decls if d.name == name), None)
        if decl is None:
            raise EvalError(f"no eval '{name}' in {program.path} (evals: {names or 'none'})")
    folder = os.path.dirname(os.path.abspath(program.path))
    dataset = read_dataset_entry(decl.entry("dataset").value, folder)
    metrics = [Metric(e.key, e.value, program.ctx.expr_types.get(id(e.value)) == BOOL)
               for e in decl.entry("metrics").value.entries]
    return EvalPlan(decl, decl.entry("flow").value.id, dataset, _variants(program, decl), metrics)


def _variants(program, decl: ast.EvalDecl) -> list[Variant]:
    variants = decl.entry("variants")
    if variants is not None:
        found = []
        for item in variants.value.items:
            version = program.lookup(item.id, item.version).effective_version
            found.append(Variant(f"{item.id}@{version}", pins=((item.id, version),)))
        return found
    models = decl.entry("models")
    if models is not None:
        return [Variant(item.id, model=item.id) for item in models.value.items]
    return [Variant(decl.entry("flow").value.id)]


def program_hash(program) -> str:
    """sha256 of the program's files with their `eval` declarations cut out.

    What the flow runs depends on; an edit of an eval (a metric added) leaves it
    unchanged, so the outputs already computed are used again.
    """
    root = os.path.dirname(os.path.abspath(program.path))
    digest = hashlib.sha256()
    for path, source in sorted(program.loader.sources().items()):
        text = source.text
        ctx = program.loader.context(path)
        cuts = sorted((d.span.start, d.span.end) for d in (ctx.module.decls if ctx else ())
                      if isinstance(d, ast.EvalDecl))
        for start, end in reversed(cuts):
            text = text[:start] + text[end:]
        digest.update(json.dumps([os.path.relpath(os.path.abspath(path), root), text]).encode("utf-8"))
    return digest.hexdigest()
