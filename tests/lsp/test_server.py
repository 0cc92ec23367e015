"""`fmflow lsp` end to end: a client drives the server in a subprocess over stdio."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from lspclient import ResponseError, position

BAD = '''model fast {
  provider: "replay"
}

prompt answer(question: str) -> str {
  model: fast
  template: "Réponse 🙂: {{ questoin }}"
}

flow main(q: str) -> str {
  return answer(question: "🙂🙂 " + missing)
}
'''

SHARED = '''## What an answer holds.
type Answer {
  ## The reply itself.
  text: str
  confident: bool
}

enum Tone { plain, warm }

model fast {
  provider: "replay"
  temperature: 0
}

## Answers one question.
prompt reply(question: str) -> Answer {
  model: fast
  template: """
    Answer {{ question }} briefly.
    """
}
'''

MAIN = '''import "./shared.fmflow"
import "std/filters"

flow ask(q: str) -> str {
  a = reply(question: q)
  return a.text
}

test ask_works {
  flow: ask
  input: { q: "why?" }
  mock: { reply: { text: "because", confident: true } }
  expect: [output == "because"]
}
'''


def _at(client, method: str, uri: str, text: str, needle: str, occurrence: int = 0, delta: int = 0, **extra):
    return client.request(method, {"textDocument": {"uri": uri},
                                   "position": position(text, needle, occurrence, delta), **extra})


def _project(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "shared.fmflow").write_text(SHARED, encoding="utf-8")
    (tmp_path / "main.fmflow").write_text(MAIN, encoding="utf-8")
    return tmp_path / "shared.fmflow", tmp_path / "main.fmflow"


def _ranges(diagnostics: list[dict]) -> list[tuple]:
    return [(d["code"], d["range"]["start"]["line"], d["range"]["start"]["character"],
             d["range"]["end"]["line"], d["range"]["end"]["character"]) for d in diagnostics]


def test_initialize_announces_the_features(lsp):
    capabilities = lsp.capabilities
    for name in ("hoverProvider", "definitionProvider", "referencesProvider", "renameProvider",
                 "completionProvider", "documentSymbolProvider", "foldingRangeProvider",
                 "documentFormattingProvider", "codeLensProvider", "executeCommandProvider"):
        assert capabilities.get(name), name
    assert "." in capabilities["completionProvider"]["triggerCharacters"]


def test_diagnostics_have_exact_codes_and_utf16_ranges_and_clear_after_a_fix(lsp, tmp_path):
    path = tmp_path / "bad.fmflow"
    path.write_text(BAD, encoding="utf-8")
    uri = lsp.open(path)
    diagnostics = lsp.diagnostics(uri)
    # Line 7 has one emoji (two UTF-16 units) before the name, line 11 two of them.
    assert _ranges(diagnostics) == [("E202", 6, 28, 6, 36), ("E101", 10, 36, 10, 43)]
    assert position(BAD, "questoin") == {"line": 6, "character": 28}
    assert all(d["severity"] == 1 and d["source"] == "fmflow" for d in diagnostics)
    assert "did you mean 'question'" in diagnostics[0]["message"]

    fixed = BAD.replace("questoin", "question").replace(' + missing', "")
    lsp.change(uri, fixed, 2)
    assert lsp.diagnostics(uri) == []


def test_quick_edits_are_checked_once_with_the_last_text(lsp, tmp_path):
    path = tmp_path / "bad.fmflow"
    path.write_text(BAD, encoding="utf-8")
    uri = lsp.open(path)
    lsp.diagnostics(uri)
    for version in range(2, 12):  # typing: ten edits well inside the debounce window
        lsp.change(uri, BAD.replace("missing", "missing" + "x" * version), version)
    last = lsp.diagnostics(uri)
    assert [d["message"].splitlines()[0] for d in last if d["code"] == "E101"] == [f"unknown name 'missing{'x' * 11}'"]
    later = [m for m in lsp.drain(1.0) if m["params"].get("uri") == uri]
    assert later == []  # the edits before the last were never checked


def test_a_warning_is_published_as_unnecessary_code(lsp, tmp_path):
    path = tmp_path / "w.fmflow"
    path.write_text('model fast {\n  provider: "replay"\n}\n', encoding="utf-8")
    [warning] = lsp.diagnostics(lsp.open(path))
    assert (warning["code"], warning["severity"], warning["tags"]) == ("W501", 2, [1])


def test_errors_of_an_imported_file_are_published_for_that_file(lsp, tmp_path):
    shared, main = _project(tmp_path)
    shared.write_text(SHARED.replace("text: str", "text: strr"), encoding="utf-8")
    main_uri = lsp.open(main)
    published = {main_uri: lsp.diagnostics(main_uri), shared.as_uri(): lsp.diagnostics(shared.as_uri())}
    assert [d["code"] for d in published[main_uri]] == []
    assert [d["code"] for d in published[shared.as_uri()]] == ["E101"]


def test_an_edit_rechecks_the_files_that_import_the_changed_one(lsp, tmp_path):
    shared, main = _project(tmp_path)
    main_uri, shared_uri = lsp.open(main), lsp.open(shared)
    assert lsp.diagnostics(main_uri) == []
    lsp.change(shared_uri, SHARED.replace("prompt reply(", "prompt respond("), 2)
    assert [d["code"] for d in lsp.diagnostics(main_uri)] == ["E101", "E101"]  # the call and the mock key


def test_import_cycles_point_at_the_other_file(lsp, tmp_path):
    (tmp_path / "a.fmflow").write_text('import "./b.fmflow"\n', encoding="utf-8")
    (tmp_path / "b.fmflow").write_text('import "./a.fmflow"\n', encoding="utf-8")
    lsp.open(tmp_path / "a.fmflow")
    # a is checked first, so b's import of a closes the cycle; it is published for b.
    [cycle] = lsp.diagnostics((tmp_path / "b.fmflow").as_uri())
    assert cycle["code"] == "E002" and "import cycle" in cycle["message"]
    related = cycle["relatedInformation"]
    assert [r["location"]["uri"] for r in related] == [(tmp_path / "a.fmflow").as_uri()] * 2
    assert related[1]["location"]["range"]["start"] == {"line": 0, "character": 0}


def test_hover_shows_signature_doc_comment_versions_and_fields(lsp, tmp_path):
    shared, main = _project(tmp_path)
    uri = lsp.open(main)
    text = lsp.request  # keep names short below
    hover = _at(lsp, "textDocument/hover", uri, MAIN, "reply(", delta=1)["contents"]["value"]
    assert "prompt reply(question: str) -> Answer" in hover
    assert "Answers one question." in hover  # its `##` doc comment
    assert "`reply@1`: not locked" in hover
    assert "shared.fmflow" in hover
    field = _at(lsp, "textDocument/hover", uri, MAIN, "a.text", delta=3)["contents"]["value"]
    assert "(field of Answer) text: str" in field
    assert "The reply itself." in field
    builtin_uri = lsp.open(tmp_path / "len.fmflow", 'flow f(x: str) -> int {\n  return len(x)\n}\n')
    builtin = _at(lsp, "textDocument/hover", builtin_uri, 'flow f(x: str) -> int {\n  return len(x)\n}\n',
                  "len")["contents"]["value"]
    assert "len(" in builtin
    del text


def test_hover_gives_the_lock_state_of_each_prompt_version(lsp, tmp_path):
    from fmflow.api import load_program
    from fmflow.lockfile import write_lock

    shared, _main = _project(tmp_path)
    write_lock(load_program(shared)[1])
    uri = lsp.open(shared)
    assert "E401" not in [d["code"] for d in lsp.diagnostics(uri)]
    hover = _at(lsp, "textDocument/hover", uri, SHARED, "reply(")["contents"]["value"]
    assert "`reply@1`: locked" in hover
    edited = SHARED.replace("briefly", "at length")
    lsp.change(uri, edited, 2)
    assert [d["code"] for d in lsp.diagnostics(uri)] == ["W501", "E401", "W501"]  # Tone and reply are unused
    hover = _at(lsp, "textDocument/hover", uri, edited, "reply(")["contents"]["value"]
    assert "`reply@1`: changed since locked (E401)" in hover


def test_hover_of_a_model_and_a_type_lists_settings_and_fields(lsp, tmp_path):
    shared, _main = _project(tmp_path)
    uri = lsp.open(shared)
    model = _at(lsp, "textDocument/hover", uri, SHARED, "model: fast", delta=8)["contents"]["value"]
    assert 'provider: "replay"' in model and "temperature: 0" in model
    answer = _at(lsp, "textDocument/hover", uri, SHARED, "-> Answer", delta=4)["contents"]["value"]
    assert "text: str" in answer and "confident: bool" in answer


def test_definition_across_an_import_and_into_the_standard_library(lsp, tmp_path):
    shared, main = _project(tmp_path)
    text = MAIN.replace("return a.text", "return a.text | strip_markdown")
    uri = lsp.open(main, text)
    [location] = _at(lsp, "textDocument/definition", uri, text, "reply(question", delta=2)
    assert location["uri"] == shared.as_uri()
    assert location["range"]["start"] == position(SHARED, "reply(")
    [mock] = _at(lsp, "textDocument/definition", uri, text, "reply: {", delta=1)  # a mock key
    assert mock == location
    [std] = _at(lsp, "textDocument/definition", uri, text, "strip_markdown", delta=3)
    assert std["uri"].endswith("/stdlib/filters.fmflow")
    std_text = Path(std["uri"][len("file://"):]).read_text(encoding="utf-8")
    assert position(std_text, "strip_markdown")["line"] == std["range"]["start"]["line"]


def test_template_variables_lead_to_the_parameter(lsp, tmp_path):
    shared, _main = _project(tmp_path)
    uri = lsp.open(shared)
    [location] = _at(lsp, "textDocument/definition", uri, SHARED, "{{ question", delta=4)
    assert location["range"]["start"] == position(SHARED, "question: str")
    references = _at(lsp, "textDocument/references", uri, SHARED, "question: str",
                     context={"includeDeclaration": True})
    assert [(Path(r["uri"]).name, r["range"]["start"]) for r in references] == [
        ("shared.fmflow", position(SHARED, "question: str")),
        ("main.fmflow", position(MAIN, "question: q")),  # the argument's name in a call
        ("shared.fmflow", position(SHARED, "{{ question", delta=3))]


def test_references_across_files(lsp, tmp_path):
    shared, main = _project(tmp_path)
    uri = lsp.open(shared)
    references = _at(lsp, "textDocument/references", uri, SHARED, "Answer {", context={"includeDeclaration": False})
    assert {(r["uri"], r["range"]["start"]["line"]) for r in references} == {(uri, position(SHARED, "-> Answer")["line"])}
    calls = _at(lsp, "textDocument/references", uri, SHARED, "reply(", context={"includeDeclaration": False})
    assert sorted((Path(r["uri"]).name, r["range"]["start"]["line"]) for r in calls) == [
        ("main.fmflow", 4), ("main.fmflow", 11)]  # the call and the mock key, in a file that is not open


def test_completion_after_a_dot_in_a_block_in_an_import_and_in_a_template(lsp, tmp_path):
    shared, main = _project(tmp_path)
    uri = lsp.open(main)
    lsp.diagnostics(uri)
    typing = MAIN.replace("return a.text", "return a.")
    lsp.change(uri, typing, 2)
    items = _at(lsp, "textDocument/completion", uri, typing, "return a.", delta=9)["items"]
    assert [i["label"] for i in items] == ["text", "confident"]
    assert items[0]["detail"] == "str"

    block = MAIN.replace("  flow: ask\n", "  flow: ask\n  \n")
    lsp.change(uri, block, 3)
    items = _at(lsp, "textDocument/completion", uri, block, "  \n", delta=2)["items"]
    from fmflow.checks.blocks import BLOCKS

    unwritten = set(BLOCKS["test"]) - {"flow", "input", "mock", "expect"}
    assert {i["label"] for i in items} == unwritten  # the keys of a test block not written yet
    partial = block.replace("  mock: { reply: { text: \"because\", confident: true } }\n", "")
    lsp.change(uri, partial, 4)
    items = _at(lsp, "textDocument/completion", uri, partial, "  \n", delta=2)["items"]
    assert {i["label"] for i in items} == unwritten | {"mock"}

    importing = MAIN.replace('import "std/filters"', 'import "std/')
    lsp.change(uri, importing, 5)
    labels = {i["label"] for i in _at(lsp, "textDocument/completion", uri, importing, 'import "std/', delta=12)["items"]}
    assert {"std/filters", "std/tools", "std/validators"} <= labels

    shared_uri = lsp.open(shared)
    inside = SHARED.replace("Answer {{ question }}", "Answer {{ q")
    lsp.change(shared_uri, inside, 2)
    labels = [i["label"] for i in _at(lsp, "textDocument/completion", shared_uri, inside, "{{ q", delta=4)["items"]]
    assert labels[0] == "question"
    assert _at(lsp, "textDocument/completion", shared_uri, inside, "Answer {{", delta=3)["items"] == []  # plain text


def test_completion_of_enum_members_and_names_in_scope(lsp, tmp_path):
    shared, main = _project(tmp_path)
    text = MAIN.replace("return a.text", "t = Tone.\n  return a.text")
    uri = lsp.open(main, MAIN)
    lsp.diagnostics(uri)
    lsp.change(uri, text, 2)
    items = _at(lsp, "textDocument/completion", uri, text, "Tone.", delta=5)["items"]
    assert [i["label"] for i in items] == ["plain", "warm"]
    scope = MAIN.replace("return a.text", "return ")
    lsp.change(uri, scope, 3)
    labels = {i["label"] for i in _at(lsp, "textDocument/completion", uri, scope, "return ", delta=7)["items"]}
    assert {"q", "a", "reply", "Answer", "fast", "len"} <= labels


COMPREHENSION = '''type Page {
  title: str
  words: int
}

flow titles(docs: list[Page], stop: str) -> list[str] {
  longest = [d.title for d in docs if d.words > 10]
  return [upper(t) for t in longest if t != stop]
}
'''


def _completion_details(lsp, uri: str, text: str, needle: str, delta: int, occurrence: int = 0) -> dict:
    items = _at(lsp, "textDocument/completion", uri, text, needle, occurrence, delta)["items"]
    return {i["label"]: i.get("detail") for i in items}


def test_completion_offers_a_comprehension_variable_inside_it_only(lsp, tmp_path):
    uri = lsp.open(tmp_path / "titles.fmflow", COMPREHENSION)
    assert lsp.diagnostics(uri) == []
    text = COMPREHENSION
    in_element = _completion_details(lsp, uri, text, "upper(t)", 6)
    assert in_element["t"] == "str" and in_element["longest"] == "list[str]"
    assert "d" not in in_element  # the other comprehension's variable
    in_filter = _completion_details(lsp, uri, text, "t != stop", 0)
    assert in_filter["t"] == "str" and in_filter["stop"] == "str"
    assert _completion_details(lsp, uri, text, "d.words", 0)["d"] == "Page"
    outside = [_completion_details(lsp, uri, text, "return [", 7),  # before the element
               _completion_details(lsp, uri, text, "longest if", 3),  # the list looped over
               _completion_details(lsp, uri, text, "longest = ", 0)]  # another statement
    assert all("t" not in found and "d" not in found and "docs" in found for found in outside)

    typing = text.replace("d.title for", "d. for")  # does not parse: the last checked text places the cursor
    lsp.change(uri, typing, 2)
    lsp.diagnostics(uri)
    fields = _at(lsp, "textDocument/completion", uri, typing, "d. for", delta=2)["items"]
    assert [(i["label"], i["detail"]) for i in fields] == [("title", "str"), ("words", "int")]


def test_rename_a_declaration_across_two_files(lsp, tmp_path):
    shared, main = _project(tmp_path)
    uri = lsp.open(main)
    edit = _at(lsp, "textDocument/rename", uri, MAIN, "reply(question", newName="respond")
    changes = edit["changes"]
    assert sorted(changes) == sorted([shared.as_uri(), main.as_uri()])
    assert [e["range"]["start"] for e in changes[shared.as_uri()]] == [position(SHARED, "reply(")]
    assert sorted(e["range"]["start"]["line"] for e in changes[main.as_uri()]) == [4, 11]
    assert all(e["newText"] == "respond" for es in changes.values() for e in es)
    # The edits applied give files that check clean.
    for path, edits in ((shared, changes[shared.as_uri()]), (main, changes[main.as_uri()])):
        path.write_text(_apply(path.read_text(encoding="utf-8"), edits), encoding="utf-8")
    from fmflow.api import check

    assert check(main) == []


def test_rename_a_parameter_renames_its_uses_templates_and_keywords(lsp, tmp_path):
    shared, main = _project(tmp_path)
    uri = lsp.open(shared)
    edit = _at(lsp, "textDocument/rename", uri, SHARED, "question: str", newName="query")
    edits = edit["changes"]
    assert len(edits[uri]) == 2 and len(edits[main.as_uri()]) == 1  # template, and `question:` in the call
    with pytest.raises(ResponseError, match="is not a name"):
        _at(lsp, "textDocument/rename", uri, SHARED, "question: str", newName="not a name")
    with pytest.raises(ResponseError, match="is a keyword"):
        _at(lsp, "textDocument/rename", uri, SHARED, "question: str", newName="flow")


def test_rename_a_flow_variable(lsp, tmp_path):
    _shared, main = _project(tmp_path)
    uri = lsp.open(main)
    edit = _at(lsp, "textDocument/rename", uri, MAIN, "a = reply", newName="found")
    assert sorted(e["range"]["start"]["line"] for e in edit["changes"][uri]) == [4, 5]


def test_formatting_returns_the_canonical_text(lsp, tmp_path):
    messy = 'model   fast {\n    provider: "replay"\n}\nflow f(x: str) -> str {\n    return x\n}\n'
    path = tmp_path / "messy.fmflow"
    uri = lsp.open(path, messy)
    edits = lsp.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                    "options": {"tabSize": 2, "insertSpaces": True}})
    from fmflow.formatter import format_text

    assert _apply(messy, edits) == format_text(messy)
    assert lsp.request("textDocument/formatting", {"textDocument": {"uri": lsp.open(path, format_text(messy), 2)},
                                                   "options": {"tabSize": 2, "insertSpaces": True}}) == []


def test_code_lenses_run_tests_and_flows_and_preview_prompts(lsp, tmp_path):
    shared, main = _project(tmp_path)
    uri = lsp.open(main)
    lenses = lsp.request("textDocument/codeLens", {"textDocument": {"uri": uri}})
    assert [(lens["command"]["title"], lens["command"]["command"], lens["command"]["arguments"][1],
             lens["range"]["start"]["line"]) for lens in lenses] == [
        ("Run flow", "fmflow.runFlow", "ask", 3), ("Run test", "fmflow.runTest", "ask_works", 8)]
    assert lenses[0]["command"]["arguments"][0] == str(main)
    # The extension runs `fmflow test FILE --name TEST` with a test lens's arguments: that test only.
    assert lenses[1]["command"]["arguments"] == [str(main), "ask_works"]


def test_preview_prompt_renders_the_messages(lsp, tmp_path):
    shared, _main = _project(tmp_path)
    lsp.open(shared)
    text = lsp.request("workspace/executeCommand", {"command": "fmflow.server.previewPrompt",
                                                    "arguments": [str(shared), "reply", {"question": "Why?"}]})
    assert "Answer Why? briefly." in text
    assert '"confident"' in text  # the output instructions carry the reply's schema
    with pytest.raises(ResponseError, match="no prompt or agent 'nope'"):
        lsp.request("workspace/executeCommand", {"command": "fmflow.server.previewPrompt",
                                                 "arguments": [str(shared), "nope"]})


def test_outline_and_folding(lsp, tmp_path):
    shared, _main = _project(tmp_path)
    uri = lsp.open(shared)
    symbols = lsp.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [(s["name"], s["detail"]) for s in symbols] == [
        ("Answer", "type"), ("Tone", "enum"), ("fast", "model"), ("reply", "prompt")]
    assert [c["name"] for c in symbols[0]["children"]] == ["text", "confident"]
    folds = lsp.request("textDocument/foldingRange", {"textDocument": {"uri": uri}})
    assert {"startLine": position(SHARED, "type Answer")["line"], "endLine": position(SHARED, "}")["line"]} in folds


def test_a_malformed_message_and_a_bad_request_get_errors_and_the_server_keeps_serving(lsp, tmp_path):
    lsp.raw(b"{this is not json")
    assert lsp.response(None)["error"]["code"] == -32700
    lsp.raw(b"\xff\xfe not UTF-8")
    assert lsp.response(None)["error"]["code"] == -32700
    bad = lsp.response(lsp.send_request("textDocument/hover", {"textDocument": {"uri": 42}}))
    assert bad["error"]["code"] in (-32602, -32603)
    unknown = lsp.response(lsp.send_request("fmflow/nothing", {}))
    assert unknown["error"]["code"] == -32601
    path = tmp_path / "ok.fmflow"
    path.write_text(BAD, encoding="utf-8")
    assert [d["code"] for d in lsp.diagnostics(lsp.open(path))] == ["E202", "E101"]


def test_a_file_of_random_bytes_gets_diagnostics_not_a_crash(lsp, tmp_path):
    generator = random.Random(12)
    data = bytes(generator.randrange(256) for _ in range(4000))
    text = data.decode("latin-1")  # what an editor would hold after opening it with a wrong encoding
    path = tmp_path / "noise.fmflow"
    uri = lsp.open(path, text)
    diagnostics = lsp.diagnostics(uri)
    assert diagnostics and {d["code"] for d in diagnostics} == {"E001"}
    for method in ("textDocument/hover", "textDocument/completion", "textDocument/definition"):
        lsp.request(method, {"textDocument": {"uri": uri}, "position": {"line": 3, "character": 5}})
    for method in ("textDocument/documentSymbol", "textDocument/foldingRange", "textDocument/codeLens",
                   "textDocument/semanticTokens/full"):
        lsp.request(method, {"textDocument": {"uri": uri}})
    assert lsp.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                   "options": {"tabSize": 2, "insertSpaces": True}}) is None
    lsp.change(uri, text + "\ud800", 2)  # a lone surrogate, as JSON may carry
    assert lsp.diagnostics(uri)
    assert lsp.process.poll() is None


def test_the_server_exits_when_the_client_asks(tmp_path):
    from lspclient import LspClient

    client = LspClient(tmp_path)
    try:
        client.initialize(tmp_path)
        assert client.request("shutdown") is None
        client.notify("exit")
        assert client.process.wait(timeout=10) == 0
        assert "Traceback" not in client.stderr()
    finally:
        client.close()


def _apply(text: str, edits: list[dict]) -> str:
    """Apply LSP text edits (UTF-16 positions) to ``text``."""
    lines = text.split("\n")

    def offset(pos: dict) -> int:
        line = lines[pos["line"]] if pos["line"] < len(lines) else ""
        units, chars = 0, 0
        while units < pos["character"] and chars < len(line):
            units += 2 if ord(line[chars]) > 0xFFFF else 1
            chars += 1
        return sum(len(x) + 1 for x in lines[:pos["line"]]) + chars

    for edit in sorted(edits, key=lambda e: (e["range"]["start"]["line"], e["range"]["start"]["character"]),
                       reverse=True):
        start, end = offset(edit["range"]["start"]), offset(edit["range"]["end"])
        text = text[:start] + edit["newText"] + text[end:]
    return text


def test_the_lsp_command_is_the_only_one_that_imports_pygls():
    import subprocess
    import sys

    code = "import sys, fmflow.cli, fmflow.api; fmflow.cli.build_parser(); print('pygls' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.stdout.strip() == "False", out.stderr


LOOPS = '''type Item {
  name: str
  size: int
}

flow names(items: list[Item], x: str, limit: int) -> list[str] {
  big = [x.name for x in items if x.size > limit]
  nested = [[x for x in [x.name]] for x in items]
  return [x for x in big]
}
'''


def test_a_comprehension_variable_has_hover_definition_references_and_rename(lsp, tmp_path):
    uri = lsp.open(tmp_path / "loops.fmflow", LOOPS)
    hover = _at(lsp, "textDocument/hover", uri, LOOPS, "x.name")
    assert "(loop variable) x: Item" in hover["contents"]["value"]
    found = _at(lsp, "textDocument/definition", uri, LOOPS, "x.size")
    found = found[0] if isinstance(found, list) else found
    assert found["range"]["start"] == position(LOOPS, "x in items if")  # `for x`, not the parameter x
    uses = [position(LOOPS, "x in items if"), position(LOOPS, "x.name"), position(LOOPS, "x.size")]
    refs = _at(lsp, "textDocument/references", uri, LOOPS, "x in items if", context={"includeDeclaration": True})
    assert [r["range"]["start"] for r in refs] == uses  # the binding first, then the reads
    # The outer x of `nested` is read only as `[x.name]`, the inner one only as the element.
    outer = _at(lsp, "textDocument/references", uri, LOOPS, "x in items]", context={"includeDeclaration": True})
    assert [r["range"]["start"] for r in outer] == [position(LOOPS, "x in items]"), position(LOOPS, "x.name]")]
    inner = _at(lsp, "textDocument/references", uri, LOOPS, "x in [x", context={"includeDeclaration": True})
    assert [r["range"]["start"] for r in inner] == [position(LOOPS, "x in [x"), position(LOOPS, "x for x in [")]
    edit = _at(lsp, "textDocument/rename", uri, LOOPS, "x.name", newName="item")
    assert sorted((e["range"]["start"]["line"], e["range"]["start"]["character"])
                  for e in edit["changes"][uri]) == sorted((u["line"], u["character"]) for u in uses)
    with pytest.raises(ResponseError, match="'limit' is read inside this comprehension"):
        _at(lsp, "textDocument/rename", uri, LOOPS, "x.name", newName="limit")
    assert _at(lsp, "textDocument/rename", uri, LOOPS, "x.name", newName="items")  # read outside its scope only
    # The parameter x is not touched by any of it.
    param = _at(lsp, "textDocument/references", uri, LOOPS, "x: str", context={"includeDeclaration": True})
    assert [r["range"]["start"]["line"] for r in param] == [5]


LOOPING_PROMPT = '''type Page {
  title: str
  tags: list[str]
}

model fast {
  provider: "replay"
}

prompt digest(pages: list[Page], topic: str) -> str {
  model: fast
  template: """
    {% set heading = topic %}
    {% for page in pages %}
      {{ page.title }}
      {% for tag in page.tags %}{{ tag }}{% endfor %}
      {{ page.title }}
    {% endfor %}
    {{ topic }}
    """
}
'''


def test_completion_in_a_template_knows_its_loops_their_items_and_set_names(lsp, tmp_path):
    path = tmp_path / "digest.fmflow"
    uri = lsp.open(path, LOOPING_PROMPT)
    lsp.diagnostics(uri)

    def labels_at(text: str, needle: str, delta: int, occurrence: int = 0) -> list[tuple[str, str | None]]:
        items = _at(lsp, "textDocument/completion", uri, text, needle, occurrence, delta=delta)["items"]
        return [(i["label"], i.get("detail")) for i in items]

    inner = labels_at(LOOPING_PROMPT, "{{ tag }}", 3)  # inside both loops
    assert inner[:4] == [("loop", None), ("tag", "str"), ("page", "Page"), ("heading", None)]
    assert ("topic", "str") in inner and ("pages", "list[Page]") in inner
    after_inner = [label for label, _ in labels_at(LOOPING_PROMPT, "{{ page.title }}", 3, occurrence=1)]
    assert "tag" not in after_inner and after_inner[:2] == ["loop", "page"]
    outside = [label for label, _ in labels_at(LOOPING_PROMPT, "{{ topic }}", 3)]
    assert "page" not in outside and "loop" not in outside and outside[0] == "heading"

    typing = LOOPING_PROMPT.replace("      {{ page.title }}\n      {% for", "      {{ page.\n      {% for", 1)
    lsp.change(uri, typing, 2)
    assert labels_at(typing, "{{ page.", 8) == [("title", "str"), ("tags", "list[str]")]
