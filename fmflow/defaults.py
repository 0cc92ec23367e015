"""Parameter defaults as JSON schemas show them (agents' tool specs, `fmflow serve`).

A default is evaluated each time a call leaves its parameter out (it may read
the parameters before it), so a schema can only give it when it is a
constant: a literal, a negated number, an enum member, or a list or `{ … }`
of those. Other defaults make the parameter optional without a shown value.
"""

from __future__ import annotations

from typing import Any, Callable

from . import ast

NOT_CONSTANT = object()


def constant_value(expr: ast.Node, is_enum: Callable[[str], bool]) -> Any:
    """The JSON value of a constant expression, or NOT_CONSTANT. ``is_enum(name)`` says
    whether a name is an enum (so that `Tone.formal` is the string "formal")."""
    if isinstance(expr, ast.Literal) and expr.kind in ("str", "int", "float", "bool", "null"):
        return expr.value
    if isinstance(expr, ast.Unary) and expr.op == "-":
        inner = constant_value(expr.operand, is_enum)
        return -inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else NOT_CONSTANT
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.version is None \
            and is_enum(expr.value.id):
        return expr.attr
    if isinstance(expr, ast.ListExpr):
        items = [constant_value(item, is_enum) for item in expr.items]
        return NOT_CONSTANT if any(i is NOT_CONSTANT for i in items) else items
    if isinstance(expr, ast.DictExpr):
        values = {e.key: constant_value(e.value, is_enum) for e in expr.entries}
        return NOT_CONSTANT if any(v is NOT_CONSTANT for v in values.values()) else values
    return NOT_CONSTANT


def parameter_schema(schema: dict, param: ast.Param, is_enum: Callable[[str], bool]) -> dict:
    """A parameter's JSON schema (not changed) completed with its `##` doc and constant default."""
    extra: dict[str, Any] = {}
    if param.doc is not None:
        extra["description"] = param.doc.text
    if param.default is not None:
        value = constant_value(param.default, is_enum)
        if value is not NOT_CONSTANT:
            extra["default"] = value
    return {**schema, **extra} if extra else schema
