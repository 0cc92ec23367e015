"""Typed outputs: fmflow types → pydantic models, JSON schemas, tolerant reply parsing.

A prompt that returns a non-``str`` type asks the model for JSON matching the
type's schema (``TypeModels.json_schema``), parses the reply tolerantly
(``parse_json_lenient``) and validates it (``TypeModels.validate``). Runtime
values of declared types are instances of the generated pydantic models;
enum values are members of a generated ``StrEnum`` (so they equal their names).
"""

from __future__ import annotations

import enum
import itertools
import json
import re
import warnings
from typing import Any, Callable, ForwardRef, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from .enum_replies import EnumNotFound, fold_enum_values, member_by_text, member_in_prose
from ..types import BOOL, FLOAT, INT, JSON, NULL, STR, DictType, EnumType, ListType, OptionalType, Prim, \
    StructType, Type, Unknown, strip_optional


class OutputError(Exception):
    """A model reply (or a value) that is not a valid value of the expected type."""

    def __init__(self, message: str, reply: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reply = reply


class OutputParseError(OutputError):
    """The reply holds no JSON we could read."""


class OutputValidationError(OutputError):
    """The JSON was read but does not fit the type."""


_PRIMS: dict[Prim, Any] = {STR: str, INT: int, FLOAT: float, BOOL: bool, JSON: Any, NULL: None}
# Lax validation accepts ints for floats; extra keys in a reply are ignored rather than fatal.
# from_attributes: a same-shaped model of another class (e.g. from another program) validates.
_MODEL_CONFIG = ConfigDict(protected_namespaces=(), extra="ignore", populate_by_name=True,
                           from_attributes=True)
_RESERVED = frozenset(n for n in dir(BaseModel) if n.startswith("model_")) | {"model_config"}


class TypeModels:
    """Builds (once) and caches the pydantic models and enums behind fmflow types."""

    def __init__(self, fields_of: Callable[[StructType], dict[str, Type]]) -> None:
        self._fields_of = fields_of
        self._models: dict[tuple[str, str], type[BaseModel]] = {}
        self._enums: dict[tuple[str, str], type[enum.Enum]] = {}
        self._adapters: dict[Type, TypeAdapter] = {}
        self._schemas: dict[Type, dict] = {}
        # Structs whose model is being built: a field referring to one gets a forward ref.
        self._building: dict[tuple[str, str], str] = {}
        self._namespace: dict[str, type[BaseModel]] = {}
        self._refs = itertools.count()  # forward-ref names must be unique: two files may declare T

    # --- annotations and models -------------------------------------------------------

    def annotation(self, t: Type) -> Any:
        if isinstance(t, Prim) and t in _PRIMS:
            return _PRIMS[t]
        if isinstance(t, Unknown):  # the checker could not tell: accept anything, like json
            return Any
        if isinstance(t, ListType):
            return list[self.annotation(t.item)]
        if isinstance(t, DictType):
            return dict[str, self.annotation(t.value)]
        if isinstance(t, OptionalType):
            return Optional[self.annotation(t.inner)]
        if isinstance(t, EnumType):
            return self.enum_for(t)
        if isinstance(t, StructType):
            key = (t.name, t.path)
            if key in self._building:
                return ForwardRef(self._building[key])
            return self.model_for(t)
        raise TypeError(f"no runtime values of type {t}")

    def model_for(self, t: StructType) -> type[BaseModel]:
        model = self._models.get((t.name, t.path))
        return model if model is not None else self._build_model(t)

    def enum_for(self, t: EnumType) -> type[enum.Enum]:
        key = (t.name, t.path)
        if key not in self._enums:
            # StrEnum: members equal their names and print / serialize as them.
            self._enums[key] = enum.StrEnum(t.name, [(m, m) for m in t.members])
            description = enum_description(t.decl)
            if description:  # pydantic puts an enum's docstring in its schema
                self._enums[key].__doc__ = description
        return self._enums[key]

    def _build_model(self, t: StructType) -> type[BaseModel]:
        key = (t.name, t.path)
        ref = f"{t.name}__{next(self._refs)}"
        self._building[key] = ref
        try:
            declared = self.fields(t)
            fields = {_field_name(name): self._field(t, name, ft) for name, ft in declared.items()}
            doc = getattr(t.decl, "doc", None)
            with warnings.catch_warnings():
                # Field names like `json` or `copy` shadow BaseModel methods; the field wins.
                warnings.simplefilter("ignore")
                # The type's doc comment is its schema's description (pydantic reads __doc__).
                model = create_model(t.name, __config__=_MODEL_CONFIG, __doc__=doc.text if doc else None,
                                     **fields)
        finally:
            del self._building[key]
        self._models[key] = model
        self._namespace[ref] = model
        if not self._building:
            # The outermost build is done: every forward ref now has its model.
            for pending in self._models.values():
                if not pending.__pydantic_complete__:
                    pending.model_rebuild(_types_namespace=self._namespace)
        return model

    def _field(self, struct: StructType, name: str, t: Type) -> tuple[Any, Any]:
        kwargs: dict[str, Any] = {}
        if isinstance(t, OptionalType):
            kwargs["default"] = None
        elif name in struct.defaults:  # e.g. Doc.metadata: may be left out, defaults to empty
            empty = {DictType: dict, ListType: list}.get(type(t))
            kwargs["default_factory" if empty else "default"] = empty
        else:
            kwargs["default"] = ...
        if name in _RESERVED:  # pydantic owns these attribute names; keep the JSON name as alias
            kwargs["alias"] = name
        doc = _field_doc(struct, name)
        if doc:
            kwargs["description"] = doc
        choices = struct.field_choices(name)
        return (Literal[choices] if choices else self.annotation(t)), Field(**kwargs)

    def fields(self, struct: StructType) -> dict[str, Type]:
        """Field name → type of a declared type or a built-in one (Doc, Message)."""
        return dict(struct.fields) if struct.decl is None else self._fields_of(struct)

    def _adapter(self, t: Type) -> TypeAdapter:
        if t not in self._adapters:
            self._adapters[t] = TypeAdapter(self.annotation(t))
        return self._adapters[t]

    # --- schema, validation, serialization --------------------------------------------

    def json_schema(self, t: Type) -> dict:
        """JSON schema of a value of type ``t``, in OpenAI's strict structured-output style.

        Every object lists all its properties in ``required``; optional fields are
        nullable (``anyOf [..., {"type": "null"}]``) instead of omitted; objects of declared
        types have ``additionalProperties: false``; ``title`` and ``default`` are dropped.
        Declared types stay in ``$defs`` (recursive types need the ``$ref``s), except the
        root's own, which is inlined (a reference back to it is ``"#"``). The root is
        whatever the type is: OpenAI wants an object root, so a caller asking for e.g.
        ``list[T]`` wraps it (``coerce_reply`` unwraps a one-key object). ``dict[T]`` and
        ``json`` give free-form objects, which OpenAI's strict mode does not accept.
        """
        if t not in self._schemas:  # pydantic rebuilds a schema from scratch on every call
            self._schemas[t] = _inline_root(_strictify(self._adapter(t).json_schema()))
        return self._schemas[t]  # shared: callers must not change it

    def validate(self, t: Type, value: Any) -> Any:
        """Coerce a Python value (JSON data, models, lists…) to the runtime value of ``t``."""
        try:
            return self._adapter(t).validate_python(value)
        except ValidationError as exc:
            raise OutputValidationError(_describe(exc)) from None

    @staticmethod
    def to_jsonable(value: Any) -> Any:
        return to_jsonable(value)


def _field_doc(struct: StructType, name: str) -> str | None:
    field = next((f for f in getattr(struct.decl, "fields", ()) if f.name == name), None)
    return field.doc.text if field is not None and field.doc is not None else None


def enum_description(decl: Any) -> str | None:
    """An enum's doc comment, then one line per documented member (`name: text`): JSON
    schemas have no place for a description of each value of an `enum`."""
    if decl is None:
        return None
    lines = [decl.doc.text] if decl.doc is not None else []
    lines += [f"{m.name}: {m.doc.text}" for m in decl.members if m.doc is not None]
    return "\n".join(lines) or None


def _field_name(name: str) -> str:
    """The Python attribute of a field: names pydantic reserves get a trailing underscore."""
    return f"{name}_" if name in _RESERVED else name


def to_jsonable(value: Any) -> Any:
    """Plain JSON data for traces, --json output and caches (enums → their names)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # never fail a trace over an exotic value


def _inline_root(schema: dict) -> dict:
    """{"$ref": "#/$defs/T", "$defs": {...}} → T's schema at the root, as OpenAI wants."""
    ref = schema.get("$ref", "")
    if not ref.startswith("#/$defs/") or set(schema) != {"$ref", "$defs"}:
        return schema
    defs = dict(schema["$defs"])
    root = defs.pop(ref.removeprefix("#/$defs/"))
    root = _replace_refs(root, ref, "#")
    if defs:
        root["$defs"] = _replace_refs(defs, ref, "#")
    return root


def _replace_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, list):
        return [_replace_refs(n, old, new) for n in node]
    if isinstance(node, dict):
        return {k: (new if k == "$ref" and v == old else _replace_refs(v, old, new)) for k, v in node.items()}
    return node


def _strictify(node: Any) -> Any:
    if isinstance(node, list):
        return [_strictify(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("title", "default"):
            continue
        if key in ("properties", "$defs"):  # maps of names → schemas: keep every name
            out[key] = {name: _strictify(s) for name, s in value.items()}
        else:
            out[key] = _strictify(value)
    if "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


# --- readable validation errors --------------------------------------------------------

_EXPECTED = {
    "string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
    "int_from_float": "an integer", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
    "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
    "none_required": "null",
}
_JSON_NAMES = {str: "str", int: "int", float: "float", bool: "bool", type(None): "null",
               list: "list", tuple: "list", dict: "object"}


def _describe(exc: ValidationError, limit: int = 3) -> str:
    messages = describe_errors(exc)
    more = f" (and {len(messages) - limit} more)" if len(messages) > limit else ""
    return "; ".join(messages[:limit]) + more


def describe_errors(exc: ValidationError) -> list[str]:
    """One readable message per error, in order: "docs[0].id: expected a string, got int"."""
    return [_describe_one(e) for e in exc.errors(include_url=False)]


def _describe_one(error: dict) -> str:
    path = _path(error["loc"])
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        text = "missing required field"
    elif kind in ("enum", "literal_error"):  # an enum, or a word of a few (Message.role)
        members = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        text = f"expected one of {members}, got {_got(value, True)}"
    elif kind in _EXPECTED:
        # The value helps when its type was plausible ("high" for a number, 2.5 for an int).
        shown = kind.endswith("parsing") or kind == "int_from_float"
        text = f"expected {_EXPECTED[kind]}, got {_got(value, shown)}"
    else:
        text = error["msg"][0].lower() + error["msg"][1:]
    return f"{path}: {text}" if path else text


def _path(loc: tuple) -> str:
    """("docs", 0, "id") → "docs[0].id"."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _got(value: Any, show_value: bool) -> str:
    name = _JSON_NAMES.get(type(value), type(value).__name__)
    if show_value and isinstance(value, (str, int, float)):
        return f"{name} {_quote(str(value) if not isinstance(value, str) else value, 40)}"
    return name


def _quote(text: str, limit: int = 80) -> str:
    text = text if len(text) <= limit else text[:limit] + "…"
    return repr(text)


# --- tolerant JSON parsing -------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON|javascript|js)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}


def parse_json_lenient(text: str, expect: str | None = None) -> Any:
    """Parse the JSON in a model reply: fences, surrounding prose, trailing commas,
    single quotes and Python literals are tolerated. ``expect`` ("object" or "array")
    says which bracket to look for first when prose surrounds the value."""
    stripped = text.strip()
    if not stripped:
        raise OutputParseError("the reply is empty", text)
    candidates = _candidates(stripped, expect)
    errors = []
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
        try:
            return json.loads(_repair(candidate))
        except json.JSONDecodeError as exc:
            errors.append(exc.msg)
    raise OutputParseError(f"{_parse_failure(stripped, candidates, errors)}: {_quote(stripped)}", text)


def _parse_failure(text: str, candidates: list[str], errors: list[str]) -> str:
    has_brackets = "{" in text or "[" in text
    if has_brackets and not _bracketed(text, None):
        return "the reply's JSON is incomplete (a '{' or '[' is never closed)"
    if has_brackets or len(candidates) > 1:
        # errors[0] is about the whole reply, prose included; [1] about the likeliest value.
        error = errors[1] if len(errors) > 1 else errors[0]
        return f"the reply is not valid JSON ({error[0].lower() + error[1:]})"
    return "the reply holds no JSON"


def _candidates(text: str, expect: str | None) -> list[str]:
    """Texts that may be the JSON value, most likely first."""
    out = [text]
    fenced = [m.group(1).strip() for m in _FENCE.finditer(text) if m.group(1).strip()]
    for source in (*fenced, text):
        out += [s for s in _bracketed(source, expect) if s not in out]
    out += [f for f in fenced if f not in out]
    return out


def _bracketed(text: str, expect: str | None, limit: int = 8) -> list[str]:
    """Complete top-level {...} / [...] spans in text, in order; the expected kind first.

    A bracket that never closes is passed over and the complete values inside
    it are found, as if each opener were tried in turn; the text is scanned once
    (trying each opener in turn rescans the rest of the text for each one left
    open: "{" * 20000 took two minutes).
    """
    pairs = _pairs(text)
    spans: list[str] = []
    resume = 0
    for start in sorted(pairs):
        if start >= resume and len(spans) < limit:
            spans.append(text[start:pairs[start]])
            resume = pairs[start]
    if expect is not None:
        first = "{" if expect == "object" else "["
        spans.sort(key=lambda span: span[0] != first)  # stable: keeps the order within a kind
    return spans


# A JSON (or Python) string, either quote, escapes included; then the tokens each scanner wants.
_STRING = r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"""
_BRACKETS = re.compile(_STRING + r"|[][{}]", re.DOTALL)
_REPAIRABLE = re.compile(_STRING + r"|[A-Za-z_]\w*(?P<key>\s*:)?|,(?=\s*[}\]])", re.DOTALL)


_OPENER = re.compile(r"[{\[]")


def _pairs(text: str) -> dict[int, int]:
    """Each closed bracket's start → its end (exclusive); strings respected.

    Scanning starts at the first opener and starts again at the next opener
    after each complete top-level value (text between values is prose, whose
    apostrophes must not be read as the start of a string).
    """
    pairs: dict[int, int] = {}
    found = _OPENER.search(text)
    while found is not None:
        stack: list[int] = []
        restart = None
        for token in _BRACKETS.finditer(text, found.start()):
            bracket = token.group()
            if bracket in ("{", "["):
                stack.append(token.start())
            elif bracket in ("}", "]") and stack:
                pairs[stack.pop()] = token.end()
                if not stack:
                    restart = token.end()
                    break
        if restart is None:
            break
        found = _OPENER.search(text, restart)
    return pairs


def _repair(text: str) -> str:
    """Rewrite JSON-ish text as JSON: 'single' quotes, True/False/None, bare keys, trailing commas."""
    return _REPAIRABLE.sub(_repair_token, text)


def _repair_token(match: re.Match) -> str:
    token = match.group()
    if token == ",":  # only matched before a closing bracket: a trailing comma
        return ""
    if token[0] == '"':
        return token
    if token[0] == "'":
        return json.dumps(_single_quoted(token[1:-1]), ensure_ascii=False)
    if match.group("key"):
        word = token[:-len(match.group("key"))]
        return json.dumps(word) + match.group("key")
    return _PY_LITERALS.get(token, token)


def _single_quoted(body: str) -> str:
    """The value of a 'python style' string body."""
    escaped = re.sub(r'(?<!\\)"', lambda _: '\\"', body.replace("\\'", "'"))
    try:
        return json.loads(f'"{escaped}"', strict=False)  # strict=False: raw newlines are fine
    except json.JSONDecodeError:
        return body  # escapes JSON does not know (\x41…): keep the text as written


# --- replies → values ------------------------------------------------------------------

_BARE_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_BARE_BOOL = {"true": True, "false": False, "yes": True, "no": False}


def coerce_reply(t: Type, text: str, models: TypeModels) -> Any:
    """The runtime value of type ``t`` that a model's reply text stands for.

    Enums are read leniently (see enum_replies): a bare or quoted name in any
    case, the one member named in prose, and enum values in JSON in any case.
    """
    inner = strip_optional(t)
    if inner == STR:  # free text; an empty reply is the null of a `str?`
        return text.strip() or (None if t != STR else "")
    value = _bare_scalar(inner, text)
    if value is None:
        try:
            value = _unwrap(t, parse_json_lenient(text, _expected_bracket(t)))
        except OutputParseError:
            if not isinstance(inner, EnumType):
                raise
            value = _enum_in_prose(inner, text)
        value = fold_enum_values(t, value, models.fields)
    try:
        return models.validate(t, value)
    except OutputValidationError as exc:
        raise OutputValidationError(exc.message, text) from None


def _enum_in_prose(enum_type: EnumType, text: str) -> str:
    try:
        return member_in_prose(enum_type, text)
    except EnumNotFound as error:
        raise OutputParseError(f"{error.message}: {_quote(text.strip())}", text) from None


def _bare_scalar(t: Type, text: str) -> Any:
    """A reply like `42`, `True.` or `billing` (`"Billing"`, `**billing**`) for an int/float/bool/enum output."""
    word = text.strip().strip("`*_").strip().rstrip(".").strip("\"'")
    if t in (INT, FLOAT) and _BARE_NUMBER.fullmatch(word):
        return float(word) if t == FLOAT or not word.lstrip("+-").isdigit() else int(word)
    if t == BOOL and word.lower() in _BARE_BOOL:
        return _BARE_BOOL[word.lower()]
    if isinstance(t, EnumType):
        return member_by_text(t.members, word)
    return None


def _expected_bracket(t: Type) -> str | None:
    inner = strip_optional(t)
    if isinstance(inner, (StructType, DictType)):
        return "object"
    return "array" if isinstance(inner, ListType) else None


def _unwrap(t: Type, value: Any) -> Any:
    """A one-key object around a non-object value (e.g. {"value": [...]}) gives that value:
    OpenAI's structured outputs need an object root, so callers may have asked for one."""
    inner = strip_optional(t)
    if isinstance(inner, (StructType, DictType)) or inner == JSON:
        return value
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value
