"""Typed outputs: pydantic models from declarations, schemas, tolerant parsing, validation."""

from __future__ import annotations

import enum
import json
import typing

import pytest
from pydantic import BaseModel

from fmflow.api import load_program
from fmflow.checks.resolve import TypeResolver
from fmflow.runtime.outputs import (OutputError, OutputParseError, OutputValidationError, TypeModels, coerce_reply,
                                    parse_json_lenient, to_jsonable)
from fmflow.types import BOOL, DOC, FLOAT, INT, JSON, NULL, STR, DictType, EnumType, ListType, OptionalType, StructType

SRC = '''
model m {
  provider: "openai"
  name: "gpt-4o-mini"
}

enum Category {
  billing
  tech
}

type Answer {
  text: str
  citations: list[str]
  confidence: float
  note: str?
  category: Category
  docs: list[Doc]
}

type Node {
  name: str
  children: list[Node]
  parent: Node?
}

type Left {
  right: Right?
}

type Right {
  lefts: list[Left]
}

type Odd {
  json: int
  copy: str
  model_config: str?
  title: str
  default: int?
}

type Shelf {
  answers: list[Answer]
  counts: dict[int]
  extra: json
}

prompt answer(q: str) -> Answer {
  model: m
  template: """{{ q }}"""
}

prompt answers(q: str) -> list[Answer] {
  model: m
  template: """{{ q }}"""
}

prompt maybe(q: str) -> Answer? {
  model: m
  template: """{{ q }}"""
}

prompt tree(q: str) -> Node {
  model: m
  template: """{{ q }}"""
}

prompt left(q: str) -> Left {
  model: m
  template: """{{ q }}"""
}

prompt odd(q: str) -> Odd {
  model: m
  template: """{{ q }}"""
}

prompt shelf(q: str) -> Shelf {
  model: m
  template: """{{ q }}"""
}

prompt pick(q: str) -> Category {
  model: m
  template: """{{ q }}"""
}
'''


@pytest.fixture(scope="module")
def program():
    loader, ctx = load_program("t.fmflow", text=SRC)
    assert ctx is not None
    assert not [d for d in loader.diagnostics() if d.is_error]
    return ctx, TypeResolver(ctx)


@pytest.fixture()
def models(program):
    _ctx, resolver = program
    return TypeModels(resolver.fields)


@pytest.fixture()
def returns(program):
    ctx, resolver = program

    def of(prompt_name: str):
        return resolver.resolve(ctx.lookup(prompt_name).returns)

    return of


def answer_data(**overrides):
    data = {"text": "Reset it.", "citations": ["a"], "confidence": 0.9, "category": "billing",
            "docs": [{"id": "a", "text": "passage", "score": 0.5}]}
    data.update(overrides)
    return data


# --- parse_json_lenient -----------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    ('{"a": 1}', {"a": 1}),
    ("[1, 2]", [1, 2]),
    ("42", 42),
    ('  "text"  ', "text"),
    ("null", None),
    ('```json\n{"a": 1}\n```', {"a": 1}),
    ('```\n{"a": 1}\n```', {"a": 1}),
    ('```JSON\n[1]\n```', [1]),
    ('Here it is:\n```json\n{"a": 1}\n```\nAnything else?', {"a": 1}),
    ('```json\n{"a": 1}', {"a": 1}),  # fence never closed
    ('```json\n7\n```', 7),
    ('Sure! {"a": 1} Hope that helps.', {"a": 1}),
    ('The list: [1, 2, 3]. Done.', [1, 2, 3]),
    ('{"a": [1, 2,],}', {"a": [1, 2]}),
    ('{"a": {"b": [1, {"c": 2,},],},}', {"a": {"b": [1, {"c": 2}]}}),
    ("[1,\n 2,\n]", [1, 2]),
    ("{'a': 'b'}", {"a": "b"}),
    ("{'a': 'it\\'s'}", {"a": "it's"}),
    ("{'a': 'say \"hi\"'}", {"a": 'say "hi"'}),
    ("{'a': \"it's\"}", {"a": "it's"}),
    ("{'a': 'line1\nline2'}", {"a": "line1\nline2"}),
    ("{'ok': True, 'no': False, 'x': None}", {"ok": True, "no": False, "x": None}),
    ('{"s": "True, None", "t": True}', {"s": "True, None", "t": True}),
    ("{a: 1, b_2: 'two'}", {"a": 1, "b_2": "two"}),
    ('{"a": "}{][", "b": "\\"}"}', {"a": "}{][", "b": '"}'}),
    ('Prose with a "quote" then {"a": "x } y"} and {"b": 2}', {"a": "x } y"}),
    ('{"outer": {"inner": [{"deep": [1, [2, [3]]]}]}}', {"outer": {"inner": [{"deep": [1, [2, [3]]]}]}}),
    ("[1e5, -2.5E-3, 0]", [100000.0, -0.0025, 0]),
    ('{"u": "caf\\u00e9", "v": "日本"}', {"u": "café", "v": "日本"}),
    ("{it's broken} {\"a\": 2}", {"a": 2}),  # a span that does not parse is skipped
])
def test_parse_json_lenient(reply, expected):
    assert parse_json_lenient(reply) == expected


def test_parse_prefers_the_expected_bracket():
    reply = 'See [1] for details: {"a": 2}'
    assert parse_json_lenient(reply) == [1]
    assert parse_json_lenient(reply, expect="object") == {"a": 2}
    assert parse_json_lenient('{"a": [1]} [2]', expect="array") == [2]


@pytest.mark.parametrize("reply, wording", [
    ("", "the reply is empty"),
    ("   \n ", "the reply is empty"),
    ("I cannot answer that.", "the reply holds no JSON: 'I cannot answer that.'"),
    ('{"a": 1', "the reply's JSON is incomplete (a '{' or '[' is never closed)"),
    ('{"a": 1 "b": 2}', "the reply is not valid JSON (expecting ',' delimiter)"),
    ('Here: {"a": 1 "b": 2} ok', "the reply is not valid JSON (expecting ',' delimiter)"),
    ("{a: 1, b: [word]}", "the reply is not valid JSON (expecting value)"),  # only keys may be bare
])
def test_parse_errors_say_what_was_wrong(reply, wording):
    with pytest.raises(OutputParseError) as info:
        parse_json_lenient(reply)
    assert info.value.message.startswith(wording)
    assert str(info.value) == info.value.message
    assert info.value.reply == reply
    assert isinstance(info.value, OutputError)


def test_parse_error_quotes_at_most_80_characters():
    reply = "no json " * 50
    with pytest.raises(OutputParseError) as info:
        parse_json_lenient(reply)
    quoted = info.value.message.split(": ", 1)[1]
    assert len(quoted) <= 84  # 80 characters, an ellipsis and the quotes
    assert quoted.endswith("…'")
    assert info.value.reply == reply


# --- models ----------------------------------------------------------------------------

def test_struct_model_is_named_and_cached(models, returns):
    answer = returns("answer")
    model = models.model_for(answer)
    assert issubclass(model, BaseModel)
    assert model.__name__ == "Answer"
    assert models.model_for(answer) is model
    assert models.annotation(answer) is model
    assert set(model.model_fields) == {"text", "citations", "confidence", "note", "category", "docs"}
    assert model.model_fields["text"].is_required()
    assert not model.model_fields["note"].is_required()
    assert model.model_fields["note"].default is None


def test_same_name_in_two_files_gives_two_models(models):
    a = StructType("T", "a.fmflow", fields=(("x", INT),))
    b = StructType("T", "b.fmflow", fields=(("y", STR),))
    assert models.model_for(a) is not models.model_for(b)
    assert models.validate(a, {"x": 1}).x == 1
    assert models.validate(b, {"y": "s"}).y == "s"


def test_annotations_of_every_type(models, returns):
    assert models.annotation(STR) is str
    assert models.annotation(INT) is int
    assert models.annotation(FLOAT) is float
    assert models.annotation(BOOL) is bool
    assert models.annotation(JSON) is typing.Any
    assert models.annotation(NULL) is None
    assert models.annotation(ListType(INT)) == list[int]
    assert models.annotation(DictType(STR)) == dict[str, str]
    assert models.annotation(OptionalType(FLOAT)) == typing.Optional[float]
    nested = models.annotation(ListType(returns("answer")))
    assert typing.get_origin(nested) is list
    assert typing.get_args(nested)[0] is models.model_for(returns("answer"))


def test_valid_struct(models, returns):
    value = models.validate(returns("answer"), answer_data())
    assert type(value).__name__ == "Answer"
    assert value.text == "Reset it."
    assert value.note is None  # optional and left out
    assert value.docs[0].id == "a"
    assert type(value.docs[0]).__name__ == "Doc"


def test_model_instances_pass_through(models, returns):
    answer = returns("answer")
    value = models.validate(answer, answer_data())
    assert models.validate(answer, value) is value
    assert models.validate(ListType(answer), [value])[0] is value


def test_same_shaped_model_of_another_class_is_accepted(models, returns, program):
    answer = returns("answer")
    other = TypeModels(program[1].fields).validate(answer, answer_data())
    value = models.validate(answer, other)
    assert isinstance(value, models.model_for(answer))
    assert value.docs[0].text == "passage"


def test_int_is_accepted_for_float(models, returns):
    value = models.validate(returns("answer"), answer_data(confidence=1))
    assert value.confidence == 1.0 and isinstance(value.confidence, float)
    assert models.validate(FLOAT, 3) == 3.0
    assert isinstance(models.validate(FLOAT, 3), float)


@pytest.mark.parametrize("data, message", [
    (answer_data(citations="a"), "citations: expected a list, got str"),
    (answer_data(text=3), "text: expected a string, got int"),
    (answer_data(text=None), "text: expected a string, got null"),
    (answer_data(confidence="high"), "confidence: expected a number, got str 'high'"),
    (answer_data(category="sales"), "category: expected one of billing, tech, got str 'sales'"),
    (answer_data(docs=[{"id": "a", "text": "t", "score": "x"}]), "docs[0].score: expected a number, got str 'x'"),
    (answer_data(docs=["a"]), "docs[0]: expected an object, got str"),
    (answer_data(docs={"id": "a"}), "docs: expected a list, got object"),
    ({k: v for k, v in answer_data().items() if k != "text"}, "text: missing required field"),
    ([1], "expected an object, got list"),
])
def test_validation_errors_are_readable(models, returns, data, message):
    with pytest.raises(OutputValidationError) as info:
        models.validate(returns("answer"), data)
    assert info.value.message == message
    assert "Input should" not in message and "validation error" not in message


def test_many_validation_errors_are_summarized(models, returns):
    with pytest.raises(OutputValidationError) as info:
        models.validate(returns("answer"), {})
    assert info.value.message == ("text: missing required field; citations: missing required field; "
                                  "confidence: missing required field (and 2 more)")


def test_scalar_validation_errors(models):
    with pytest.raises(OutputValidationError, match=r"^expected an integer, got float '2.5'$"):
        models.validate(INT, 2.5)
    with pytest.raises(OutputValidationError, match=r"^\[1\]: expected an integer, got str 'x'$"):
        models.validate(ListType(INT), [1, "x"])
    with pytest.raises(OutputValidationError, match=r"^b: expected a string, got int$"):
        models.validate(DictType(STR), {"a": "x", "b": 2})
    assert models.validate(INT, 2.0) == 2


def test_optional_fields_and_values(models, returns):
    answer = returns("answer")
    assert models.validate(answer, answer_data(note=None)).note is None
    assert models.validate(answer, answer_data(note="n")).note == "n"
    assert models.validate(OptionalType(answer), None) is None
    assert models.validate(OptionalType(INT), None) is None


def test_extra_keys_in_a_reply_are_ignored(models, returns):
    value = models.validate(returns("answer"), answer_data(reasoning="because"))
    assert not hasattr(value, "reasoning")


def test_nested_lists_of_structs(models, returns):
    shelf = models.validate(returns("shelf"), {
        "answers": [answer_data(), answer_data(text="two", docs=[])],
        "counts": {"a": 1}, "extra": {"anything": [1, "two", None]}})
    assert [a.text for a in shelf.answers] == ["Reset it.", "two"]
    assert shelf.answers[0].docs[0].score == 0.5
    assert shelf.extra == {"anything": [1, "two", None]}
    many = models.validate(returns("answers"), [answer_data(), answer_data()])
    assert len(many) == 2 and all(type(a).__name__ == "Answer" for a in many)


def test_recursive_type(models, returns):
    tree = returns("tree")
    value = models.validate(tree, {"name": "root", "children": [
        {"name": "a", "children": [{"name": "a1", "children": []}]},
        {"name": "b", "children": [], "parent": {"name": "root", "children": []}}]})
    assert value.children[0].children[0].name == "a1"
    assert value.children[1].parent.name == "root"
    assert type(value.children[0]) is type(value)
    with pytest.raises(OutputValidationError, match=r"^children\[0\]\.children\[0\]\.name: missing required field$"):
        models.validate(tree, {"name": "r", "children": [{"name": "a", "children": [{"children": []}]}]})


def test_mutually_recursive_types(models, returns):
    value = models.validate(returns("left"), {"right": {"lefts": [{"right": None}, {}]}})
    assert type(value).__name__ == "Left"
    assert type(value.right).__name__ == "Right"
    assert value.right.lefts[1].right is None


def test_field_names_that_pydantic_uses(models, returns):
    odd = returns("odd")
    data = {"json": 1, "copy": "c", "model_config": "m", "title": "t", "default": 2}
    value = models.validate(odd, data)
    assert value.json == 1 and value.copy == "c" and value.title == "t"
    assert to_jsonable(value) == data
    assert models.validate(odd, to_jsonable(value)) == value


def test_enum_values_equal_their_names(models, returns):
    category = returns("pick")
    cls = models.enum_for(category)
    assert issubclass(cls, enum.Enum) and issubclass(cls, str)
    assert cls.__name__ == "Category"
    assert models.enum_for(category) is cls
    assert models.annotation(category) is cls
    billing = models.validate(category, "billing")
    assert billing is cls.billing
    assert billing == "billing" and "billing" == billing
    assert str(billing) == "billing" and f"{billing}" == "billing"
    assert json.dumps(billing) == '"billing"'
    assert models.validate(returns("answer"), answer_data()).category is cls.billing
    with pytest.raises(OutputValidationError, match="^expected one of billing, tech, got str 'Billing'$"):
        models.validate(category, "Billing")


def test_doc_model(models):
    doc_model = models.model_for(DOC)
    assert doc_model.__name__ == "Doc"
    assert set(doc_model.model_fields) == {"id", "text", "score", "metadata"}
    a = models.validate(DOC, {"id": "a", "text": "t", "score": 1})
    b = models.validate(DOC, {"id": "b", "text": "t", "score": 0.5, "metadata": {"lang": "en", "n": [1]}})
    assert a.metadata == {} and isinstance(a.score, float)
    a.metadata["x"] = 1
    assert models.validate(DOC, {"id": "c", "text": "t", "score": 1}).metadata == {}  # no shared default
    assert b.metadata == {"lang": "en", "n": [1]}
    with pytest.raises(OutputValidationError, match="^score: missing required field$"):
        models.validate(DOC, {"id": "a", "text": "t"})


def test_json_takes_anything(models):
    for value in (1, "s", None, [1, {"a": None}], {"k": [True]}):
        assert models.validate(JSON, value) == value
    assert models.validate(DictType(JSON), {"a": [1], "b": None}) == {"a": [1], "b": None}


# --- to_jsonable --------------------------------------------------------------------------

def test_to_jsonable_round_trip(models, returns):
    answer = returns("answer")
    value = models.validate(answer, answer_data(note="n"))
    data = to_jsonable(value)
    assert data == answer_data(note="n", docs=[{"id": "a", "text": "passage", "score": 0.5, "metadata": {}}])
    assert data["category"] == "billing" and type(data["category"]) is str
    assert json.loads(json.dumps(data)) == data
    assert models.validate(answer, data) == value
    assert models.to_jsonable(value) == data


def test_to_jsonable_of_plain_and_nested_values(models, returns):
    cat = models.validate(returns("pick"), "tech")
    doc = models.validate(DOC, {"id": "a", "text": "t", "score": 1})
    assert to_jsonable({"c": cat, "docs": (doc,), "n": None, "f": 1.5}) == {
        "c": "tech", "docs": [{"id": "a", "text": "t", "score": 1.0, "metadata": {}}], "n": None, "f": 1.5}
    assert type(to_jsonable(cat)) is str
    assert to_jsonable({1: {2}}) == {"1": "{2}"}  # exotic values become text, never an error


# --- json_schema ---------------------------------------------------------------------------

def _walk(node):
    yield node
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    yield from _walk(sub)
            else:
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_struct_schema_is_openai_strict(models, returns):
    schema = models.json_schema(returns("answer"))
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["text", "citations", "confidence", "note", "category", "docs"]
    assert schema["properties"]["citations"] == {"type": "array", "items": {"type": "string"}}
    assert schema["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["properties"]["category"] == {"$ref": "#/$defs/Category"}
    assert schema["$defs"]["Category"] == {"enum": ["billing", "tech"], "type": "string"}
    doc = schema["$defs"]["Doc"]
    assert doc["required"] == ["id", "text", "score", "metadata"] and doc["additionalProperties"] is False
    for node in _walk(schema):
        if isinstance(node, dict):
            assert "title" not in node and "default" not in node
            if "properties" in node:
                assert node["required"] == list(node["properties"])
                assert node["additionalProperties"] is False
    json.dumps(schema)


def test_schema_keeps_fields_named_like_keywords(models, returns):
    schema = models.json_schema(returns("odd"))
    assert list(schema["properties"]) == ["json", "copy", "model_config", "title", "default"]
    assert schema["required"] == list(schema["properties"])


def test_recursive_schemas(models, returns):
    schema = models.json_schema(returns("tree"))
    assert schema["type"] == "object" and "$ref" not in schema
    assert schema["properties"]["children"] == {"type": "array", "items": {"$ref": "#"}}
    assert schema["properties"]["parent"] == {"anyOf": [{"$ref": "#"}, {"type": "null"}]}
    mutual = models.json_schema(returns("left"))
    assert mutual["properties"]["right"] == {"anyOf": [{"$ref": "#/$defs/Right"}, {"type": "null"}]}
    assert mutual["$defs"]["Right"]["properties"]["lefts"] == {"type": "array", "items": {"$ref": "#"}}


def test_schemas_of_other_types(models, returns):
    assert models.json_schema(INT) == {"type": "integer"}
    assert models.json_schema(FLOAT) == {"type": "number"}
    assert models.json_schema(BOOL) == {"type": "boolean"}
    assert models.json_schema(JSON) == {}
    assert models.json_schema(ListType(STR)) == {"type": "array", "items": {"type": "string"}}
    assert models.json_schema(DictType(INT)) == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert models.json_schema(returns("pick")) == {"enum": ["billing", "tech"], "type": "string"}
    many = models.json_schema(returns("answers"))
    assert many["type"] == "array" and many["items"] == {"$ref": "#/$defs/Answer"}
    assert many["$defs"]["Answer"]["additionalProperties"] is False
    maybe = models.json_schema(returns("maybe"))
    assert maybe["anyOf"] == [{"$ref": "#/$defs/Answer"}, {"type": "null"}]


# --- coerce_reply ------------------------------------------------------------------------

def test_str_reply_is_the_text(models):
    assert coerce_reply(STR, "  Hello there.\n", models) == "Hello there."
    assert coerce_reply(STR, '{"not": "parsed"}', models) == '{"not": "parsed"}'
    assert coerce_reply(STR, "   ", models) == ""
    assert coerce_reply(OptionalType(STR), " hi ", models) == "hi"
    assert coerce_reply(OptionalType(STR), "", models) is None


@pytest.mark.parametrize("t, reply, expected", [
    (INT, "42", 42),
    (INT, " 42.\n", 42),
    (INT, "`7`", 7),
    (INT, '{"value": 3}', 3),
    (INT, "```json\n5\n```", 5),
    (FLOAT, "3", 3.0),
    (FLOAT, "-0.25", -0.25),
    (FLOAT, "1e3", 1000.0),
    (BOOL, "true", True),
    (BOOL, "False.", False),
    (BOOL, "yes", True),
    (BOOL, '{"answer": false}', False),
    (OptionalType(INT), "null", None),
    (ListType(FLOAT), "[1, 2.5]", [1.0, 2.5]),
    (ListType(FLOAT), '{"items": [1, 2.5]}', [1.0, 2.5]),
    (ListType(INT), "The numbers: [1, 2, 3,]", [1, 2, 3]),
    (JSON, "{'a': True}", {"a": True}),
    (DictType(INT), 'Counts: {"a": 1}', {"a": 1}),
])
def test_coerce_scalar_and_container_replies(models, t, reply, expected):
    value = coerce_reply(t, reply, models)
    assert value == expected and type(value) is type(expected)


def test_coerce_enum_reply(models, returns):
    category = returns("pick")
    cls = models.enum_for(category)
    assert coerce_reply(category, "billing", models) is cls.billing
    assert coerce_reply(category, '"tech"', models) is cls.tech
    assert coerce_reply(category, '{"category": "tech"}', models) is cls.tech
    with pytest.raises(OutputValidationError) as info:
        coerce_reply(category, '"sales"', models)
    assert info.value.message == "expected one of billing, tech, got str 'sales'"


def test_coerce_struct_reply(models, returns):
    reply = "Here is the answer:\n```json\n" + json.dumps(answer_data(), indent=2) + "\n```"
    value = coerce_reply(returns("answer"), reply, models)
    assert value.category == "billing" and value.docs[0].id == "a"
    prose = "Note [1] below. " + json.dumps(answer_data()).replace('"', "'") + " Done."
    assert coerce_reply(returns("answer"), prose, models) == value
    assert coerce_reply(returns("maybe"), "null", models) is None
    assert coerce_reply(returns("answers"), json.dumps([answer_data()]), models) == [value]


def test_coerce_errors_carry_the_reply(models, returns):
    bad = json.dumps(answer_data(citations="a"))
    with pytest.raises(OutputValidationError) as info:
        coerce_reply(returns("answer"), bad, models)
    assert info.value.message == "citations: expected a list, got str"
    assert info.value.reply == bad
    with pytest.raises(OutputParseError) as parse_info:
        coerce_reply(returns("answer"), "Sorry, I can't.", models)
    assert parse_info.value.reply == "Sorry, I can't."
    with pytest.raises(OutputError):
        coerce_reply(INT, "forty-two", models)


def test_unclosed_brackets_are_scanned_once(monkeypatch):
    """Every opener left open used to rescan the rest of the reply: quadratic ("{" * 20000 took minutes)."""
    from fmflow.runtime import outputs

    scanned = []

    class Counting:
        def finditer(self, text, start=0):
            for token in real.finditer(text, start):
                scanned.append(1)
                yield token

    real = outputs._BRACKETS
    monkeypatch.setattr(outputs, "_BRACKETS", Counting())
    reply = "{" * 2000 + ' the value is {"a": [1, 2]} and it\'s fine'
    assert outputs._bracketed(reply, None) == ['{"a": [1, 2]}']
    assert len(scanned) < 10 * 2000


# --- lenient enum replies (LANGUAGE.md §3) ---------------------------------------------

@pytest.mark.parametrize("reply", [
    "billing", "Billing", "BILLING", '"Billing"', "'billing'", "`billing`", "**Billing**", "billing.",
    "The answer is billing.", "Category: Billing", "I would say this is a billing question",
    '```\nBilling\n```', '{"category": "Billing"}', '{"value": "BILLING"}',
])
def test_an_enum_reply_is_the_one_member_it_names(models, returns, reply):
    category = returns("pick")
    assert coerce_reply(category, reply, models) is models.enum_for(category).billing


@pytest.mark.parametrize("reply, wording", [
    ("It is billing, or maybe tech.", "the reply names several members of Category (billing, tech); "
                                      "answer with exactly one of: billing, tech"),
    ("I cannot tell.", "the reply names none of the members of Category (billing, tech)"),
    ("billings", "the reply names none of the members of Category"),  # a member only as a whole word
])
def test_an_enum_reply_naming_several_members_or_none_is_rejected(models, returns, reply, wording):
    with pytest.raises(OutputParseError) as info:
        coerce_reply(returns("pick"), reply, models)
    assert info.value.message.startswith(wording)
    assert info.value.reply == reply


def test_enum_members_with_underscores_and_case_twins():
    members = EnumType("Kind", "k.fmflow", ("bug", "bug_report", "Bug"))
    models = TypeModels(lambda s: dict(s.fields))
    assert coerce_reply(members, "a bug report", models) == "bug_report"
    assert coerce_reply(members, "bug-report", models) == "bug_report"
    assert coerce_reply(members, "It is a Bug.", models) == "Bug"  # two match case aside: the exact one
    assert coerce_reply(members, "BUG_REPORT", models) == "bug_report"


def test_enum_values_inside_json_replies_match_case_aside(models, returns):
    data = answer_data(category="Tech ")
    value = coerce_reply(returns("answer"), json.dumps(data), models)
    assert value.category == "tech"
    shelf = coerce_reply(returns("shelf"), json.dumps({"answers": [answer_data(category="BILLING")],
                                                       "counts": {}, "extra": {"category": "Tech"}}), models)
    assert shelf.answers[0].category == "billing"
    assert shelf.extra == {"category": "Tech"}  # json is not an enum: left as it came
    with pytest.raises(OutputValidationError):  # inside JSON, only the whole value counts
        coerce_reply(returns("answer"), json.dumps(answer_data(category="billing please")), models)


def test_flow_inputs_stay_strict_about_enums(models, returns):
    with pytest.raises(OutputValidationError):
        models.validate(returns("pick"), "Billing")


# --- doc comments in schemas --------------------------------------------------------------

DOCUMENTED = '''
## A ticket after triage.
type Triage {
  ## How urgent it is.
  urgency: Urgency
  ## One line for the queue.
  summary: str
  owner: Person?
}

## Who handles a ticket.
type Person {
  ## Their email address.
  email: str
}

## How urgent a ticket is.
enum Urgency {
  ## Someone cannot work.
  high
  low
}

enum Plain { a, b }

prompt triage(q: str) -> Triage {
  template: "{{ q }}"
}

prompt level(q: str) -> Urgency {
  template: "{{ q }}"
}

prompt plain(q: str) -> Plain {
  template: "{{ q }}"
}
'''


def _documented_schema(prompt: str) -> dict:
    loader, ctx = load_program("d.fmflow", text=DOCUMENTED)
    assert not [d for d in loader.diagnostics() if d.is_error]
    resolver = TypeResolver(ctx)
    return TypeModels(resolver.fields).json_schema(resolver.resolve(ctx.lookup(prompt).returns))


def test_doc_comments_are_descriptions_in_output_schemas():
    schema = _documented_schema("triage")
    assert schema["description"] == "A ticket after triage."
    assert schema["properties"]["summary"] == {"description": "One line for the queue.", "type": "string"}
    assert schema["properties"]["urgency"]["description"] == "How urgent it is."
    assert schema["$defs"]["Urgency"]["description"] == "How urgent a ticket is.\nhigh: Someone cannot work."
    assert schema["$defs"]["Person"]["description"] == "Who handles a ticket."
    assert schema["$defs"]["Person"]["properties"]["email"]["description"] == "Their email address."
    assert "description" not in schema["properties"]["owner"]  # no doc, no description
    assert schema["required"] == ["urgency", "summary", "owner"] and schema["additionalProperties"] is False


def test_enum_schemas_describe_their_members():
    assert _documented_schema("level") == {"description": "How urgent a ticket is.\nhigh: Someone cannot work.",
                                           "enum": ["high", "low"], "type": "string"}
    assert _documented_schema("plain") == {"enum": ["a", "b"], "type": "string"}
