"""Declared filters in templates at run time: `{{ text | redact_pii }}` calls the flow's
filter as a flow call would (sync functions in a worker thread, async ones awaited;
arguments and result validated; mocks and traces), named in the prompt's own file."""

from __future__ import annotations

import json
import threading

import pytest

from fmflow.runtime.errors import FlowRuntimeError

from flowfiles import load, write

ECHO = 'model m { provider: "replay", options: { echo: true } }\n'

TOOLS = '''
import asyncio
import threading

threads = []

def shout(text, mark="!"):
    threads.append(threading.current_thread().name)
    return text.upper() + mark

async def whisper(text):
    await asyncio.sleep(0)
    return text.lower() + "..."

def broken(text):
    raise ValueError("no way")

def wrong_type(text):
    return 42
'''

FILTERS = ECHO + '''
filter shout(text: str, mark: str = "!") -> str = python("filter_tools:shout")
filter whisper(text: str) -> str = python("filter_tools:whisper")
filter broken(text: str) -> str = python("filter_tools:broken")
filter wrong_type(text: str) -> str = python("filter_tools:wrong_type")
'''


def _flow(tmp_path, template: str, extra: str = "", **kwargs):
    (tmp_path / "filter_tools.py").write_text(TOOLS, encoding="utf-8")
    text = FILTERS + extra + f'''
prompt p(text: str, items: list[str]) -> str {{
  model: m
  template: """{template}"""
}}
flow f(text: str, items: list[str]) -> str {{
  return p(text, items)
}}
'''
    return load(tmp_path, text, **{"trace": False, "cache": False, **kwargs})


def test_sync_and_async_filters_with_arguments(tmp_path):
    flow = _flow(tmp_path, '{{ text | shout }} {{ text | whisper }} {{ text | shout("?") }} '
                           '{{ text | shout(mark="~") | whisper }} {{ text | upper | shout }}')
    assert flow.run(text="Hi", items=[]) == "HI! hi... HI? hi~... HI!"


def test_filters_inside_loops_and_conditions(tmp_path):
    flow = _flow(tmp_path, "{% for i in items %}{{ i | shout }},{% endfor %}"
                           "{% if text | whisper == 'a...' %}yes{% endif %}")
    assert flow.run(text="A", items=["x", "y"]) == "X!,Y!,yes"


def test_a_sync_filter_runs_in_a_worker_thread(tmp_path):
    from fmflow.runtime.pyimport import load_object

    flow = _flow(tmp_path, "{{ text | shout }}")
    assert flow.run(text="a", items=[]) == "A!"
    threads = load_object("filter_tools:threads", str(tmp_path))
    assert threads and all(name != threading.main_thread().name for name in threads)


def test_a_failing_filter_fails_the_prompt_with_its_own_error(tmp_path):
    flow = _flow(tmp_path, "{{ text | broken }}")
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(text="a", items=[])
    assert "filter 'broken' (filter_tools:broken)" in str(info.value)
    assert str(info.value).endswith("failed: ValueError: no way")


def test_filter_arguments_and_results_are_validated(tmp_path):
    with pytest.raises(FlowRuntimeError) as info:
        _flow(tmp_path, "{{ text | wrong_type }}").run(text="a", items=[])
    assert "the result of filter 'wrong_type'" in str(info.value)
    with pytest.raises(FlowRuntimeError) as info:
        _flow(tmp_path, "{{ text | shout(3) }}").run(text="a", items=[])
    assert "argument 'mark' of filter 'shout'" in str(info.value)


def test_filter_calls_are_traced(tmp_path):
    flow = _flow(tmp_path, "{{ text | whisper }}", trace=True)
    assert flow.run(text="Ab", items=[]) == "ab..."
    with open(flow.last_run.trace_path, encoding="utf-8") as f:
        spans = [r for r in map(json.loads, f) if r.get("type") == "span"]
    filters = [(s["name"], s["inputs"], s["output"]) for s in spans if s["kind"] == "filter"]
    assert filters == [("whisper", {"text": "Ab"}, "ab...")]


def test_the_standard_filters_in_a_template(tmp_path):
    flow = load(tmp_path, ECHO + '''
        import "std/filters"
        prompt p(text: str) -> str {
          model: m
          template: "{{ text | redact_pii | truncate(20) }}"
        }
        flow f(text: str) -> str {
          return p(text)
        }
    ''', trace=False, cache=False)
    assert flow.run(text="mail me at ann@example.com today please") == "mail me at [EMAIL]"


def test_a_filter_name_means_what_it_means_in_the_prompts_own_file(tmp_path):
    """`truncate` is std/filters' in a file that imports it, and Jinja's own elsewhere."""
    write(tmp_path, ECHO + '''
        import "std/filters"
        prompt short(text: str) -> str {
          model: m
          template: "{{ text | truncate(9) }}"
        }
    ''', "shared.fmflow")
    flow = load(tmp_path, ECHO.replace("model m", "model n") + '''
        import "./shared.fmflow"
        prompt jinja(text: str) -> str {
          model: n
          template: "{{ text | truncate(9) }}"
        }
        flow f(text: str) -> str {
          return short(text) + "|" + jinja(text)
        }
    ''', trace=False, cache=False)
    # std/filters cuts at a word boundary; Jinja's truncate(9) keeps 9 - 3 characters and adds "...".
    assert flow.run(text="abcd efgh ijkl mnop qrst") == "abcd efgh|abcd..."


def test_a_filter_that_an_imported_file_imports_runs_from_its_own_folder(tmp_path):
    """The root file does not see std/filters; the file it imports does (flow pipes too)."""
    write(tmp_path, '''
        import "std/filters"
        flow clean(text: str) -> str {
          return text | redact_pii
        }
    ''', "shared.fmflow")
    flow = load(tmp_path, '''
        import "./shared.fmflow"
        flow f(text: str) -> str {
          return clean(text)
        }
    ''', trace=False, cache=False)
    assert flow.run(text="write to ann@example.com") == "write to [EMAIL]"


def test_fmflow_test_mocks_a_filter_used_in_a_template(tmp_path):
    from fmflow.api import load_checked
    from fmflow.runtime.testing import run_tests

    import asyncio

    (tmp_path / "filter_tools.py").write_text(TOOLS, encoding="utf-8")
    path = write(tmp_path, FILTERS + '''
        prompt p(text: str) -> str {
          model: m
          template: "{{ text | shout }}"
        }
        flow f(text: str) -> str {
          return p(text)
        }
        test mocked_filter {
          flow: f
          input: { text: "a" }
          mock: { shout: "MOCK", p: "answer" }
          expect: [output == "answer"]
        }
    ''')
    outcomes = asyncio.run(run_tests(load_checked(path)))
    assert [(o.name, o.passed, o.error) for o in outcomes] == [("mocked_filter", True, None)]


def test_a_template_with_a_declared_filter_keeps_the_render_limits(tmp_path):
    loops = "{% for i in range(2000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
    flow = _flow(tmp_path, "{{ text | shout }}" + loops)
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(text="a", items=[])
    assert "loops ran more than 1,000,000 times" in str(info.value)


def test_a_declared_filters_own_time_is_not_the_renders():
    """A filter call has its own timeout; a render's time limit counts the template's work."""
    import asyncio

    from fmflow.runtime.sandbox import RenderLimits
    from fmflow.runtime.templates import FILTER_CALLS, TemplateRenderer, TemplateRenderError

    renderer = TemplateRenderer(limits=RenderLimits(seconds=0.05, chars=100), declared={"slow", "big"})

    async def calls(name, values, named):
        if name == "big":
            return "x" * 200
        await asyncio.sleep(0.2)
        return values[0].upper()

    async def render(source):
        token = FILTER_CALLS.set(calls)
        try:
            return await renderer.render_async(source, {"q": "hi"})
        finally:
            FILTER_CALLS.reset(token)

    assert asyncio.run(render("{{ q | slow }} {{ q | slow }}")) == "HI HI"
    with pytest.raises(TemplateRenderError) as info:
        asyncio.run(render("{{ q | big }}"))
    assert "the result of filter 'big' would be larger than the limit of 100 characters" in str(info.value)
    with pytest.raises(TemplateRenderError) as info:
        asyncio.run(TemplateRenderer(declared={"slow"}).render_async("{{ q | slow }}", {"q": "x"}))
    assert "filter 'slow' can only run while a flow runs" in str(info.value)
