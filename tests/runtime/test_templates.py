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


# -- templates read values; they never change them ---------------------------------

ANSWER = StructType("Answer", "t.fmflow", fields=(("text", STR), ("tags", ListType(STR)), ("model_config", STR)))


@pytest.mark.parametrize("source", [
    "{{ tags.append('x') }}", "{{ tags.extend(['x']) }}", "{{ tags.pop() }}", "{{ tags.sort() }}",
    "{{ tags.clear() }}", "{{ d.update({'k': 2}) }}", "{{ d.setdefault('z', 1) }}", "{{ d.pop('k') }}",
    "{{ a.tags.append('x') }}", "{{ a.model_copy(update={'text': 'y'}) }}", "{{ a.__setattr__('text', 'y') }}",
    "{{ a.model_rebuild(force=True) }}", "{{ a.model_fields_set.add('x') }}", "{{ docs[0].metadata.update({'k': 1}) }}",
    "{{ docs.append(docs[0]) }}", "{% set ns = a %}{{ ns.tags.insert(0, 'x') }}",
])
def test_a_template_cannot_change_lists_dicts_declared_types_or_docs(renderer, models, docs, source):
    answer = models.validate(ANSWER, {"text": "t", "tags": ["a"], "model_config": "c"})
    values = {"tags": ["a"], "d": {"k": 1}, "a": answer, "docs": docs}
    with pytest.raises(TemplateRenderError) as info:
        renderer.render(source, values)
    assert "unsafe" in info.value.message and "cannot change" in info.value.message
    assert values["tags"] == ["a"] and values["d"] == {"k": 1} and len(docs) == 2
    assert answer.tags == ["a"] and answer.text == "t" and docs[0].metadata == {}


def test_a_template_reads_fields_of_declared_types_by_their_own_names(renderer, models):
    answer = models.validate(ANSWER, {"text": "t", "tags": ["a", "b"], "model_config": "c"})
    source = "{{ a.text }} {{ a['text'] }} {{ a.tags | join(',') }} {{ a.model_config }} {{ a.tags[1:] }}"
    assert renderer.render(source, {"a": answer}) == 't t a,b c ["b"]'
    assert renderer.render("{% for t in a.tags %}{{ loop.index }}{{ t }}{% endfor %}", {"a": answer}) == "1a2b"


# -- renders are bounded in time and size -------------------------------------------

def small(**limits) -> TemplateRenderer:
    from fmflow.runtime.sandbox import RenderLimits

    return TemplateRenderer(limits=RenderLimits(**limits))


def render_error(renderer: TemplateRenderer, source: str, values: dict | None = None) -> str:
    with pytest.raises(TemplateRenderError) as info:
        renderer.render(source, values or {})
    return info.value.message


@pytest.mark.parametrize("source, problem", [
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
     "loops ran more than 100,000 times"),
    ("{% for i in range(999) %}{% for j in range(999) %}x{% endfor %}{% endfor %}", "the rendered text"),
    ('{{ "x" * 999999999 }}', "'*' would be larger than the limit of 1,000 characters"),
    ('{{ ["x"] * 999999999 }}', "'*' would be larger"),
    ('{{ "x".center(999999999) }}', "'center' would be larger"),
    ('{{ "x" | center(999999999) }}', "'center' would be larger"),
    ('{{ ("\\n" * 900) | indent(900) }}', "'indent' would be larger"),
    ('{{ "{:>999999999}".format(1) }}', "a format width"),
    ('{{ "%999999999s" % 1 }}', "a format width"),
    ('{{ "%999999999s" | format(1) }}', "a format width"),
    ("{{ 10 ** 99999999 }}", "'**' would be larger"),
    ('{% set ns = namespace(s="xxxxxxxxxx") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}',
     "a value would be larger"),
    ('{% set ns = namespace(s="xxxxxxxxxx") %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}',
     "'+' would be larger"),
    ('{% set ns = namespace(s=["x"]) %}{% for i in range(40) %}{% set ns.s = [ns.s, ns.s] %}{% endfor %}',
     "a value would be larger"),
    ('{% set a = "x" * 900 %}{{ a | replace("x", a) }}', "'replace' would be larger"),
    ('{% set a = "x" * 900 %}{{ ([a] * 900) | join }}', "larger than the limit"),
    ('{% set x %}{{ "a" * 900 }}{% endset %}{% set ns = namespace(s=x) %}{% for i in range(30) %}'
     '{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}', "a value would be larger"),
])
def test_a_render_over_its_limits_stops_with_an_error(source, problem):
    message = render_error(small(chars=1_000, iterations=100_000), source)
    assert problem in message, message
    assert message.startswith("line 1: ") and "templates are limited to 3s, 1,000 characters" in message


def test_a_slow_render_stops_at_its_time_limit():
    # Every item allocates a value close to the size limit: slow, but within the other limits.
    source = '{% for i in range(99999) %}{{ ("x" * 99999) | length }}{% endfor %}'
    message = render_error(small(seconds=0.05, chars=100_000, iterations=10**9), source)
    assert "rendering took longer than 0.05s" in message


def test_deep_recursion_in_a_template_is_an_error(renderer):
    assert "calls itself too deeply" in render_error(renderer, "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}")


def test_the_output_limit_names_the_line_of_the_template():
    message = render_error(small(chars=100), "ok\n{% for i in range(1000) %}{{ x }}{% endfor %}", {"x": "abc"})
    assert message.startswith("line 2: the rendered text would be larger than the limit of 100 characters")


def test_renders_within_the_limits_are_unchanged(renderer):
    source = "{% for i in range(3) %}{{ i }}{{ lipsum(1, html=False) | length > 0 }}{% endfor %} {{ 'ab' * 2 }}"
    assert renderer.render(source, {}) == "0true1true2true abab"
    big = "y" * 900_000    # a large input renders; only what the template builds is bounded
    assert renderer.render("{{ x | truncate(10) }}|{{ x | length }}", {"x": big}) == "yyyyyyy...|900000"


def test_a_plain_substitution_has_the_same_output_limit():
    message = render_error(small(chars=100), "Q: {{ q }}", {"q": "x" * 200})
    assert message.startswith("the rendered text would be larger than the limit of 100 characters")
