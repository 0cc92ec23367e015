"""std/tools' calculator: arithmetic read with Python's ast module, never run as code.

Allowed: numbers (int, float, 1e-3, 1_000), + - * / // % ** and unary
signs, parentheses, the constants pi, e and tau, and the functions in
FUNCTIONS, called with positional arguments. Anything else — names,
attribute access, subscripts, other calls, strings, comparisons,
comprehensions, lambdas — is refused with the reason and its column.

Bounds: an expression of at most 1,000 characters, nested at most 50
levels; integers of at most 4,096 bits (about 1,233 digits), checked
before a power or a product is computed, so ``9**9**9`` is refused at once
rather than computed; a result must be a finite number.
"""

from __future__ import annotations

import ast
import math
import operator

MAX_LENGTH = 1000
MAX_DEPTH = 50
MAX_BITS = 4096

CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
FUNCTIONS = {
    "abs": abs, "round": round, "min": min, "max": max, "sqrt": math.sqrt, "exp": math.exp, "log": math.log,
    "log10": math.log10, "log2": math.log2, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "atan2": math.atan2, "hypot": math.hypot, "floor": math.floor,
    "ceil": math.ceil, "degrees": math.degrees, "radians": math.radians,
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(ValueError):
    pass


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression: an int when exact, else a float."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("calculator: give an arithmetic expression, e.g. (2 + 3) * 4")
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"calculator: the expression is {len(expression)} characters long; "
                              f"at most {MAX_LENGTH}")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise CalculatorError(f"calculator: not an arithmetic expression (column {error.offset or 0}): "
                              f"{error.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise CalculatorError("calculator: the expression cannot be read (nested too deeply or not text)") from None
    value = _eval(tree.body, 0)
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError(f"calculator: the result is not a finite number ({value})")
    return value


def _eval(node: ast.AST, depth: int):
    if depth > MAX_DEPTH:
        raise CalculatorError(f"calculator: the expression is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        return _binary(node, left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, depth + 1))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        if node.keywords:
            _refuse(node, "named arguments")
        args = [_eval(arg, depth + 1) for arg in node.args]
        return _call(node, node.func.id, args)
    _refuse(node, _describe(node))


def _binary(node: ast.BinOp, left, right):
    op = type(node.op)
    if op is ast.Pow and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > MAX_BITS:
            raise CalculatorError(f"calculator: {left} ** {right} is too large (over {MAX_BITS} bits)")
    if op is ast.Mult and isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_BITS + 1:
            raise CalculatorError(f"calculator: the product is too large (over {MAX_BITS} bits)")
    try:
        result = _BINARY[op](left, right)
    except ZeroDivisionError:
        raise CalculatorError(f"calculator: division by zero at column {node.col_offset + 1}") from None
    except OverflowError:
        raise CalculatorError(f"calculator: the result at column {node.col_offset + 1} is too large") from None
    if isinstance(result, complex):
        raise CalculatorError(f"calculator: the result at column {node.col_offset + 1} is not a real number "
                              f"(a negative number to a fractional power)")
    if isinstance(result, int) and result.bit_length() > MAX_BITS:
        raise CalculatorError(f"calculator: the result is too large (over {MAX_BITS} bits)")
    return result


def _call(node: ast.Call, name: str, args: list):
    try:
        result = FUNCTIONS[name](*args)
    except (ValueError, TypeError, OverflowError) as error:
        raise CalculatorError(f"calculator: {name}({', '.join(map(str, args))}) at column {node.col_offset + 1}: "
                              f"{error}") from None
    if isinstance(result, int) and result.bit_length() > MAX_BITS:
        raise CalculatorError(f"calculator: the result of {name} is too large (over {MAX_BITS} bits)")
    return result


def _refuse(node: ast.AST, what: str):
    raise CalculatorError(f"calculator: {what} at column {getattr(node, 'col_offset', 0) + 1} is not allowed; "
                          f"only numbers, + - * / // % **, parentheses, {', '.join(CONSTANTS)} and "
                          f"{', '.join(FUNCTIONS)}(…)")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name '{node.id}'"
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr})"
    if isinstance(node, ast.Call):
        return "a call of something other than the listed functions"
    if isinstance(node, ast.Constant):
        return f"the {type(node.value).__name__} constant {node.value!r}"
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return "a comprehension"
    if isinstance(node, ast.BinOp):
        return f"the operator {type(node.op).__name__}"
    return f"{type(node).__name__}"
