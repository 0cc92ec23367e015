"""`--pin NAME@N`: what a pin must name, and where it changes nothing.

A pin is an option of a run or a check, not a line of a file, so its
problems are not diagnostics: an unknown name or version is a usage error
(``pin_problems``), and a pin that a version written in the file overrides
is a warning (``pin_notes``). Both look at every checked file of the run.
"""

from __future__ import annotations

from .. import ast
from ..diagnostics import suggestion_help


def pin_problems(contexts, pins: dict[str, int], option: str = "--pin {name}@{version}") -> list[str]:
    """Why each bad pin cannot apply: no such prompt, not a prompt, no such version.

    ``option`` is how a pin is shown (the Python API's ``pins={…}`` is not an option on a command line).
    """
    problems = []
    for name, version in pins.items():
        found = _declarations(contexts, name)
        prompts = [d for d in found if isinstance(d, ast.PromptDecl)]
        pin = option.format(name=name, version=version)
        if not found:
            names = sorted({d.name for ctx in contexts for d in ctx.module.decls if isinstance(d, ast.PromptDecl)})
            help = suggestion_help(name, names) or (f"prompts: {', '.join(names)}" if names
                                                    else "no prompt is declared")
            problems.append(f"{pin}: there is no prompt '{name}'; {help}")
        elif not prompts:
            problems.append(f"{pin}: '{name}' is a {found[0].kind}; only prompts have versions")
        else:
            problems.extend(f"{pin}: {missing}" for missing in _missing_version(contexts, name, version))
    return problems


def pin_notes(contexts, pins: dict[str, int], option: str = "--pin {name}@{version}") -> list[str]:
    """Places where a pinned prompt is named with a version of its own, which the pin does not change."""
    notes = []
    for ctx in contexts:
        for decl in ctx.module.decls:
            for node in decl.walk():
                if isinstance(node, ast.Name) and node.version is not None and node.id in pins \
                        and node.version != pins[node.id]:
                    span = node.span
                    pin = option.format(name=node.id, version=pins[node.id])
                    notes.append(f"{pin} does not apply at {span.path}:{span.line}:{span.col}, which names "
                                 f"{node.id}@{node.version} (a version written in the file wins)")
    return notes


def _missing_version(contexts, name: str, version: int) -> list[str]:
    """For each file whose prompt ``name`` lacks ``version``: what it declares (the file named when
    several files declare the prompt)."""
    declared = {}
    for ctx in contexts:
        versions = sorted(d.effective_version for d in ctx.module.decls
                          if isinstance(d, ast.PromptDecl) and d.name == name)
        if versions:
            declared[ctx.path] = versions
    found = []
    for path, versions in declared.items():
        if version not in versions:
            where = f" in {path}" if len(declared) > 1 else ""
            shown = ", ".join(f"@{v}" for v in versions)
            found.append(f"prompt '{name}'{where} has no version {version} (declared: {shown})")
    return found


def _declarations(contexts, name: str) -> list[ast.Decl]:
    return [d for ctx in contexts for d in ctx.module.decls if d.name == name]
