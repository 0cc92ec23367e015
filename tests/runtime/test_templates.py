"""Prompt templates: sandboxed Jinja rendering, chat messages, output instructions."""

from __future__ import annotations

import json

import pytest

from fmflow.runtime.outputs import TypeModels
from fmflow.runtime.templates import OUTPUT_INSTRUCTIONS, TemplateRenderer, TemplateRenderError, build_messages
from fmflow.types import DOC, EnumType, ListType, StructType, STR, FLOAT


@pytest.fixture()
def renderer():
    return TemplateRenderer()


@pytest.fixture()
def models():
    return TypeModels(lambda struct: dict(struct.fields))


@pytest.fixture()
def docs(models):
    return models.validate(ListType(DOC), [
        {"id": "a", "text": "Reset the router.", "score": 0.9},
        {"id": "b", "text": "Call support.", "score": 0.4, "metadata": {"lang": "en"}},
    ])


CATEGORY = EnumType("Category", "t.fmflow", ("billing", "tech"))


def test_renders_variables(renderer):
    assert renderer.render("Question: {{ question }}", {"question": "why?"}) == "Question: why?"
    assert renderer.render("{{ n + 1 }} {{ x }}", {"n": 1, "x": 2.5}) == "2 2.5"


def test_renders_lists_of_models_with_attribute_access(renderer, docs):
    source = "{% for d in docs %}[{{ d.id }}] {{ d.text }} ({{ d.score }})\n{% endfor %}Question: {{ q }}"
    assert renderer.render(source, {"docs": docs, "q": "help"}) == (
        "[a] Reset the router. (0.9)\n[b] Call support. (0.4)\nQuestion: help")
    assert renderer.render("{{ docs[1].metadata.lang }} {{ docs | length }}", {"docs": docs}) == "en 2"
    assert renderer.render("{{ d['id'] }}", {"d": {"id": "x"}}) == "x"


def test_enums_render_as_their_names(renderer, models):
    billing = models.validate(CATEGORY, "billing")
    assert renderer.render("{{ c }}", {"c": billing}) == "billing"
    assert renderer.render("{% if c == 'billing' %}yes{% endif %}", {"c": billing}) == "yes"
    assert renderer.render("{{ cs }}", {"cs": [billing]}) == '["billing"]'


def test_structured_values_render_as_json(renderer, models, docs):
    doc_json = '{"id": "a", "text": "Reset the router.", "score": 0.9, "metadata": {}}'
    assert renderer.render("{{ d }}", {"d": docs[0]}) == doc_json
    assert renderer.render("{{ tags }}", {"tags": ["x", "y"]}) == '["x", "y"]'
    assert renderer.render("{{ m }}", {"m": {"k": None}}) == '{"k": null}'
    assert renderer.render("{{ a }} {{ b }} {{ n }}", {"a": True, "b": False, "n": None}) == "true false null"
    assert renderer.render("{{ docs | tojson }}", {"docs": docs[:1]}) == f"[{doc_json}]"


def test_text_is_not_escaped_and_trailing_newline_dropped(renderer):
    assert renderer.render("<b>{{ x }}</b>\n", {"x": "a & 'b' <c>"}) == "<b>a & 'b' <c></b>"


def test_undefined_variable_is_an_error(renderer):
    with pytest.raises(TemplateRenderError) as info:
        renderer.render("Hello\n{{ name }}", {})
    assert info.value.message == "line 2: 'name' is undefined"
    assert str(info.value) == info.value.message


def test_undefined_attribute_is_an_error(renderer, docs):
    with pytest.raises(TemplateRenderError, match="has no attribute 'nope'"):
        renderer.render("{{ d.nope }}", {"d": docs[0]})
    with pytest.raises(TemplateRenderError, match="undefined"):
        renderer.render("{% for x in missing %}{{ x }}{% endfor %}", {})


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ d.__dict__ }}",
    "{{ d.__class__.__init__.__globals__ }}",
])
def test_sandbox_blocks_unsafe_attributes(renderer, docs, source):
    with pytest.raises(TemplateRenderError) as info:
        renderer.render(source, {"d": docs[0]})
    assert "unsafe" in info.value.message
    assert "Traceback" not in info.value.message


def test_syntax_errors_are_render_errors(renderer):
    with pytest.raises(TemplateRenderError) as info:
        renderer.render("ok\n{% for x in xs %}{{ x }}", {"xs": []})
    assert info.value.message.startswith("line 2: ")
    with pytest.raises(TemplateRenderError, match=r"^line 1: .*end of print statement"):
        renderer.render("{{ x", {"x": 1})


def test_python_errors_while_rendering_are_render_errors(renderer):
    with pytest.raises(TemplateRenderError, match=r"^line 1: TypeError: unsupported operand"):
        renderer.render("{{ 1 + 'a' }}", {})
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        renderer.render("{{ n / 0 }}", {"n": 1})


def test_templates_are_compiled_once(renderer, monkeypatch):
    source = "Hi {{ name | lower }}"  # a filter: Jinja renders it (plain substitutions skip Jinja)
    first = renderer.compile(source)
    assert renderer.compile(source) is first
    calls = []
    original = renderer.env.compile_guarded
    monkeypatch.setattr(renderer.env, "compile_guarded", lambda s: calls.append(s) or original(s))
    assert renderer.render(source, {"name": "a"}) == "Hi a"
    assert renderer.render(source, {"name": "b"}) == "Hi b"
    assert calls == []
    renderer.render("Bye {{ name | lower }}", {"name": "c"})
    assert calls == ["Bye {{ name | lower }}"]


def test_extra_filters(models):
    renderer = TemplateRenderer(filters={"shout": lambda s: s.upper() + "!"})
    assert renderer.render("{{ x | shout }}", {"x": "hi"}) == "HI!"


def test_build_messages():
    assert build_messages("Be brief.", "Hi") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert build_messages(None, "Hi") == [{"role": "user", "content": "Hi"}]
    assert build_messages("", "Hi") == [{"role": "user", "content": "Hi"}]
    assert build_messages("  \n", "Hi") == [{"role": "user", "content": "Hi"}]


def test_output_instructions_hold_the_compact_schema(models):
    answer = StructType("Answer", "t.fmflow", fields=(("text", STR), ("confidence", FLOAT)))
    schema = models.json_schema(answer)
    text = OUTPUT_INSTRUCTIONS(schema)
    assert "JSON only" in text
    compact = json.dumps(schema, separators=(",", ":"))
    assert compact in text
    assert json.loads(text[text.index("{"):]) == schema
    assert text.count("\n") == 1  # one line of instructions, one of schema


# Templates that only substitute variables skip Jinja's machinery; the text must not change.
PLAIN_TEMPLATES = ["Q: {{ q }}", "{{q}}", "{{ q }}{{ n }}\n", "a}} {{ q }} {b}\n\n", "{{ q }} and {{ q }}", "",
                   "no variables", "{ {{ q }} }", "{{ q}} {{n }}"]
OTHER_TEMPLATES = ["{{{ q }}", "{{ q }}}", "{{ q | upper }}", "{{ q }}\r\n", "{# c #}{{ q }}", "{{ none }}",
                   "{% if q %}{{ q }}{% endif %}", "{{\nq }}", "{{ q.x }}"]


@pytest.mark.parametrize("source", PLAIN_TEMPLATES + OTHER_TEMPLATES)
@pytest.mark.parametrize("value", ["text", 3, 2.5, True, None, ["a", 1], {"k": [None]}, "{{ q }}"])
def test_plain_substitution_renders_what_jinja_renders(renderer, source, value):
    from fmflow.runtime.templates import _Substitution

    variables = {"q": value, "n": 7}
    try:
        expected = renderer.compile(source).render(variables)
    except Exception as error:  # `{{ q.x }}` on a str: Jinja's error is the one users see
        with pytest.raises(TemplateRenderError):
            renderer.render(source, variables)
        assert _Substitution.of(source) is None, error
        return
    assert renderer.render(source, variables) == expected
    assert (_Substitution.of(source) is not None) == (source in PLAIN_TEMPLATES)


def test_plain_substitution_of_models_and_enums(renderer, models, docs):
    billing = models.validate(CATEGORY, "billing")
    for value in (docs[0], docs, billing, [billing]):
        assert renderer.render("x {{ v }}", {"v": value}) == renderer.compile("x {{ v }}").render(v=value)


def test_a_missing_variable_still_gets_jinjas_error(renderer):
    with pytest.raises(TemplateRenderError, match="'q' is undefined"):
        renderer.render("Q: {{ q }}", {})
