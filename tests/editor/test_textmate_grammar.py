"""Checks of the VS Code extension in vscode-extension/, in Python only.

The TextMate grammar is loaded as JSON, its regexes compiled with ``re`` and
run by a small TextMate tokenizer below (enough of the format for this
grammar: match, begin/end, captures, includes), which also checks the scope
assertions in fixtures/highlight.fmflow. That file uses the
vscode-tmgrammar-test format, so the same assertions can be run against VS
Code's own engine (Oniguruma) when npm is at hand; see the extension README.

Every regex in the grammar compiles with Python's ``re`` unchanged: the
grammar uses no Oniguruma-only syntax (no \\G, \\h, \\p{..}, possessive
quantifiers or back-references into a begin match), so nothing is skipped.

Run from the repository root so that ``fmflow`` is importable.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from fmflow.builtins import BUILTINS, ON_FAIL_POLICIES
from fmflow.parser import DECLARATION_KEYWORDS, KEYWORDS, parse_text
from fmflow.types import BUILTIN_TYPE_NAMES

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "vscode-extension"
GRAMMAR_PATH = EXTENSION / "syntaxes" / "fmflow.tmLanguage.json"
FIXTURE = Path(__file__).parent / "fixtures" / "highlight.fmflow"
REGEX_KEYS = ("match", "begin", "end", "while")


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def grammar() -> dict:
    return load_json(GRAMMAR_PATH)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_json(EXTENSION / "package.json")


def walk(node, path="$"):
    """Every dict in a JSON tree, with its path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def word_groups(regex: str) -> list[set[str]]:
    """The words of each `(a|b|c)` group of a regex, in order."""
    groups = [set(g.split("|")) for g in re.findall(r"\(((?:\w+\|)*\w+)\)", regex)]
    assert groups, f"no word group in {regex!r}"
    return groups


def alternatives(regex: str) -> set[str]:
    """The words of the first `(a|b|c)` group of a regex."""
    return word_groups(regex)[0]


# ------------------------------------------------------------------ tokenizer
class TextMate:
    """A small TextMate tokenizer over Python's ``re``.

    Follows vscode-textmate: each line is tokenized with a trailing "\\n";
    at each position the earliest match among the current rule's end and its
    patterns wins, ties going to the end pattern and then to pattern order.
    """

    def __init__(self, data: dict):
        self.data = data
        self.repository = data.get("repository", {})

    @staticmethod
    @lru_cache(maxsize=None)
    def regex(source: str) -> re.Pattern:
        return re.compile(source)

    def rules(self, patterns: list) -> list[dict]:
        """The patterns with their includes resolved."""
        resolved = []
        for pattern in patterns:
            target = pattern
            if "include" in pattern:
                ref = pattern["include"]
                assert ref == "$self" or ref.startswith("#"), f"unsupported include {ref}"
                target = self.data if ref == "$self" else self.repository[ref[1:]]
            if "match" in target or "begin" in target:
                resolved.append(target)
            else:
                resolved.extend(self.rules(target.get("patterns", [])))
        return resolved

    @staticmethod
    def paint(scopes: list, match: re.Match, captures: dict | None) -> None:
        # Lower group numbers are the outer groups, so adding scopes in group
        # order nests them as TextMate does.
        for key in sorted(captures or {}, key=int):
            capture = captures[key]
            assert "patterns" not in capture, "capture patterns are not supported here"
            group = int(key)
            if match.start(group) < 0 or "name" not in capture:
                continue
            for i in range(match.start(group), match.end(group)):
                scopes[i] = scopes[i] + capture["name"].split()

    def tokenize(self, lines: list[str]) -> list[list[list[str]]]:
        """The scopes of every character of every line."""
        stack = [(self.data, [self.data["scopeName"]])]
        result = []
        for line in lines:
            text = line + "\n"
            scopes: list[list[str]] = [[] for _ in text]
            pos = 0
            while pos < len(text):
                rule, current = stack[-1]
                best = None  # (start, order, kind, rule, match)
                if "end" in rule:
                    found = self.regex(rule["end"]).search(text, pos)
                    if found:
                        best = (found.start(), -1, "end", rule, found)
                for order, candidate in enumerate(self.rules(rule.get("patterns", []))):
                    found = self.regex(candidate.get("match") or candidate["begin"]).search(text, pos)
                    if found and (best is None or found.start() < best[0]):
                        best = (found.start(), order, "rule", candidate, found)
                if best is None:
                    for i in range(pos, len(text)):
                        scopes[i] = list(current)
                    break
                start, _, kind, chosen, found = best
                for i in range(pos, start):
                    scopes[i] = list(current)
                if kind == "end":
                    outer = current[:-1] if rule.get("contentName") else current
                    for i in range(found.start(), found.end()):
                        scopes[i] = list(outer)
                    self.paint(scopes, found, rule.get("endCaptures") or rule.get("captures"))
                    stack.pop()
                else:
                    assert found.end() > found.start(), f"empty match of {chosen} at {pos} in {line!r}"
                    inner = current + chosen["name"].split() if "name" in chosen else list(current)
                    for i in range(found.start(), found.end()):
                        scopes[i] = list(inner)
                    if "begin" in chosen:
                        self.paint(scopes, found, chosen.get("beginCaptures") or chosen.get("captures"))
                        content = inner + chosen["contentName"].split() if "contentName" in chosen else inner
                        stack.append((chosen, content))
                    else:
                        self.paint(scopes, found, chosen.get("captures"))
                pos = found.end()
            result.append(scopes[: len(line)])
        return result


@pytest.fixture(scope="module")
def engine(grammar) -> TextMate:
    return TextMate(grammar)


def scopes_of(engine: TextMate, lines: list[str], needle: str, line: int = -1) -> list[str]:
    """Scopes of the first character of `needle` in `lines[line]`."""
    text = lines[line]
    column = text.index(needle)
    return engine.tokenize(lines)[line][column]


# ------------------------------------------------------------ grammar: shape
def test_grammar_is_valid_json_with_its_scope(grammar):
    assert grammar["scopeName"] == "source.fmflow"
    assert grammar["name"] == "fmflow"
    assert grammar["patterns"], "no top-level patterns"


def test_every_regex_compiles_with_python_re(grammar):
    regexes = [(path, key, rule[key]) for path, rule in walk(grammar)
               for key in REGEX_KEYS if isinstance(rule.get(key), str)]
    assert len(regexes) > 40
    for path, key, source in regexes:
        try:
            re.compile(source)
        except re.error as error:  # pragma: no cover - reported by the assert
            pytest.fail(f"{path}.{key} = {source!r} does not compile: {error}")


def test_includes_resolve_and_scopes_are_named_for_the_language(grammar):
    repository = grammar["repository"]
    for path, rule in walk(grammar):
        include = rule.get("include")
        if include is not None:
            assert include == "$self" or include[1:] in repository, f"{path}: unknown include {include}"
        for key in ("name", "contentName"):
            if path != "$" and isinstance(rule.get(key), str):  # $.name is the display name
                for scope in rule[key].split():
                    assert scope.endswith((".fmflow", ".jinja")), f"{path}.{key}: {scope}"


def test_keyword_rules_list_exactly_the_language_keywords(grammar):
    rules = grammar["repository"]["keywords"]["patterns"]
    words = [word for rule in rules for word in alternatives(rule["match"])]
    assert len(words) == len(set(words)), "a keyword is listed twice"
    assert set(words) == KEYWORDS


def test_keyword_rules_match_whole_words_only(grammar):
    compiled = [re.compile(rule["match"]) for rule in grammar["repository"]["keywords"]["patterns"]]
    for keyword in KEYWORDS:
        assert sum(bool(rule.fullmatch(keyword)) for rule in compiled) == 1, keyword
    for word in ("input", "format", "iffy", "nullable", "flows", "_if", "model2", "tests"):
        assert not any(rule.search(word) for rule in compiled), word
    assert not any(rule.search("output.in") for rule in compiled), "attribute named like a keyword"


def test_declaration_rules_cover_the_declaration_keywords(grammar):
    words = set()
    for rule in grammar["repository"]["declarations"]["patterns"]:
        words |= alternatives(rule.get("match") or rule["begin"])
    assert words == set(DECLARATION_KEYWORDS) - {"import"}


def test_builtin_names_agree_with_the_implementation(grammar):
    repository = grammar["repository"]
    assert alternatives(repository["builtin-functions"]["match"]) == set(BUILTINS)
    builtin_types = repository["types"]["patterns"][0]["match"]
    assert alternatives(builtin_types) == set(BUILTIN_TYPE_NAMES)
    on_fail = repository["block-key"]["patterns"][0]["match"]
    assert word_groups(on_fail)[-1] == set(ON_FAIL_POLICIES)


# ------------------------------------------------------- grammar: tokenizing
@pytest.mark.parametrize(
    ("line", "needle", "scope"),
    [
        ("# c", "# c", "comment.line.number-sign.fmflow"),
        ("## The answer.", "The", "comment.line.documentation.fmflow"),
        ("  ## A field.", "##", "punctuation.definition.comment.documentation.fmflow"),
        ("### ruler", "ruler", "comment.line.number-sign.fmflow"),
        ("flow f(round: int = 0) -> str {", "0", "constant.numeric.integer.fmflow"),
        ('flow f(tone: str = "plain") -> str {', '"plain"', "string.quoted.double.fmflow"),
        ("flow f(n: int = len(x)) -> int {", "len", "support.function.builtin.fmflow"),
        ("flow f(h: list[Message]) -> str {", "Message", "support.type.builtin.fmflow"),
        ("  timeout: 30s  # per call", "30s", "constant.numeric.duration.fmflow"),
        ("x = 500ms", "500ms", "constant.numeric.duration.fmflow"),
        ("x = 1h", "1h", "constant.numeric.duration.fmflow"),
        ("rate: 5/s", "5/s", "constant.numeric.rate.fmflow"),
        ("rate: 1000/h", "1000/h", "constant.numeric.rate.fmflow"),
        ("x = 1e-3", "1e-3", "constant.numeric.float.fmflow"),
        ("x = -3", "3", "constant.numeric.integer.fmflow"),
        ("x = -3", "-", "keyword.operator.arithmetic.fmflow"),
        ('s = "a\\tb"', "\\t", "constant.character.escape.fmflow"),
        ('s = "a\\u{e9}"', "\\u{e9}", "constant.character.escape.fmflow"),
        ('s = "a\\qb"', "\\q", "invalid.illegal.unknown-escape.fmflow"),
        ("flow: docs_qa", "flow", "support.type.property-name.fmflow"),
        ("  model: fast", "model", "support.type.property-name.fmflow"),
        ("model fast {", "model", "storage.type.model.fmflow"),
        ("prompt answer@2 (q: str) -> str {", "answer", "entity.name.function.prompt.fmflow"),
        ("pipeline", "pipeline", "storage.type.declaration.fmflow"),
        ('tool t(x: str) -> str = python("m:f")', "m", "entity.name.namespace.python-module.fmflow"),
        ("x = a if b else c", "else", "keyword.control.flow.fmflow"),
        ("x = a not in b", "not", "keyword.operator.logical.fmflow"),
        ("x = strip(y)", "strip", "support.function.builtin.fmflow"),
        ("x = env(\"HOME\")", "env", "support.function.builtin.fmflow"),
        ("x: dict[json]", "json", "support.type.builtin.fmflow"),
        ("x = Category.bug", "Category", "entity.name.type.fmflow"),
    ],
)
def test_single_lines(engine, line, needle, scope):
    assert scope in scopes_of(engine, [line], needle)


def test_words_containing_keywords_are_not_keywords(engine):
    for line, needle in [("x = input", "input"), ("y = formats", "formats"), ("z = output.in", "in")]:
        scopes = scopes_of(engine, [line], needle)
        assert not any(s.startswith(("keyword.", "storage.type.", "constant.language.")) for s in scopes), \
            (line, scopes)


def test_an_unclosed_string_ends_at_the_end_of_its_line(engine):
    lines = ['s = "no end', "n = 42"]
    assert "string.quoted.double.fmflow" in scopes_of(engine, lines, "no end", 0)
    assert scopes_of(engine, lines, "42") == ["source.fmflow", "constant.numeric.integer.fmflow"]


def test_block_string_spans_lines_and_highlights_jinja(engine):
    lines = ['template: """', "  {% if x %}{{ x | upper }}{% endif %} {# note #}", '"""', "flow f() -> str {"]
    assert scopes_of(engine, lines, "x |", 1)[-2:] == ["meta.embedded.expression.jinja", "variable.other.jinja"]
    assert "support.function.filter.jinja" in scopes_of(engine, lines, "upper", 1)
    assert "keyword.control.jinja" in scopes_of(engine, lines, "endif", 1)
    assert "comment.block.jinja" in scopes_of(engine, lines, "note", 1)
    assert "storage.type.flow.fmflow" in scopes_of(engine, lines, "flow", 3)


def test_an_unclosed_jinja_tag_does_not_swallow_the_block_string_end(engine):
    lines = ['template: """{{ question """', "model m {"]
    assert "punctuation.definition.string.end.fmflow" in engine.tokenize(lines)[0][-1]
    assert "storage.type.model.fmflow" in scopes_of(engine, lines, "model", 1)


def test_doc_comments_are_not_ordinary_comments(engine):
    doc = scopes_of(engine, ["## Counts words."], "Counts")
    assert "comment.line.documentation.fmflow" in doc and "comment.line.number-sign.fmflow" not in doc
    ruler = scopes_of(engine, ["### Section"], "Section")
    assert "comment.line.number-sign.fmflow" in ruler and "comment.line.documentation.fmflow" not in ruler


def test_defaults_in_a_multi_line_header(engine):
    lines = ["flow f(", "  ## The draft.", "  draft: str,", "  round: int = 0,", '  tone: str = "plain",', ") -> str {"]
    assert "comment.line.documentation.fmflow" in scopes_of(engine, lines, "The draft", 1)
    assert "variable.parameter.fmflow" in scopes_of(engine, lines, "round", 3)
    assert "constant.numeric.integer.fmflow" in scopes_of(engine, lines, "0", 3)
    assert "keyword.operator.assignment.fmflow" in scopes_of(engine, lines, "=", 3)
    assert "string.quoted.double.fmflow" in scopes_of(engine, lines, '"plain"', 4)
    assert "variable.parameter.fmflow" not in scopes_of(engine, lines, '"plain"', 4)


def test_parameters_in_a_multi_line_header(engine):
    lines = ["flow f(", "  question: str,", "  docs: list[Doc],", ") -> Answer {", "  return x", "}"]
    assert "variable.parameter.fmflow" in scopes_of(engine, lines, "docs", 2)
    assert "entity.name.type.fmflow" in scopes_of(engine, lines, "Answer", 3)
    assert "keyword.control.flow.fmflow" in scopes_of(engine, lines, "return", 4)
    assert "meta.declaration.flow.fmflow" not in scopes_of(engine, lines, "return", 4)


# -------------------------------------------------- grammar: fixture assertions
UP_ARROWS = re.compile(r"^\s*((?:\^+\s*)+)((?:\s*\w[-\w.]*)*)(?:\s*-)?((?:\s*\w[-\w.]*)*)\s*$")
LEFT_ARROW = re.compile(r"^(\s*)<(~*)(-+)((?:\s*\w[-\w.]*)*)(?:\s*-)?((?:\s*\w[-\w.]*)*)\s*$")


def parse_syntax_test(text: str):
    """Source lines and (source line, from, to, required, excluded) assertions,
    read as vscode-tmgrammar-test reads them."""
    lines = text.split("\n")
    header = re.match(r'^(\S+)\s+SYNTAX\s+TEST\s+"([^"]+)"', lines[0])
    assert header, "missing SYNTAX TEST header"
    comment, scope = header.groups()
    source, assertions = [], []
    for number, line in enumerate(lines[1:], start=2):
        rest = line[len(comment):]
        if not (line.startswith(comment) and re.match(r"^\s*(\^|<~*-+)", rest)):
            source.append(line)
            continue
        where = (len(source) - 1, number)
        if rest.strip().startswith("^"):
            found = UP_ARROWS.match(rest)
            assert found, f"bad assertion on line {number}"
            required, excluded = found.group(2).split(), found.group(3).split()
            for run in re.finditer(r"\^+", rest):
                assertions.append((*where, len(comment) + run.start(), len(comment) + run.end(), required, excluded))
        else:
            found = LEFT_ARROW.match(rest)
            assert found, f"bad assertion on line {number}"
            tildes, dashes = len(found.group(2)), len(found.group(3))
            assertions.append((*where, tildes, tildes + dashes, found.group(4).split(), found.group(5).split()))
    return scope, source, assertions


def missing_in_order(required: list[str], actual: list[str]) -> list[str]:
    it = iter(actual)
    matched = 0
    for scope in required:
        if scope in it:
            matched += 1
        else:
            break
    return required[matched:]


def test_fixture_scope_assertions(engine):
    scope, source, assertions = parse_syntax_test(FIXTURE.read_text(encoding="utf-8"))
    assert scope == "source.fmflow"
    assert len(assertions) > 80
    tokens = engine.tokenize(source)
    failures = []
    for line, number, start, end, required, excluded in assertions:
        assert end <= len(source[line]), f"assertion on line {number} runs past its source line"
        for column in range(start, end):
            actual = tokens[line][column]
            missing = missing_in_order(required, actual)
            unexpected = [s for s in excluded if s in actual]
            if missing or unexpected:
                failures.append(f"line {number} col {column} ({source[line][column]!r}): "
                                f"missing {missing} unexpected {unexpected} actual {actual}")
                break
    assert not failures, "\n".join(failures)


def test_fixture_is_a_valid_fmflow_file():
    _, diagnostics = parse_text(FIXTURE.read_text(encoding="utf-8"), str(FIXTURE))
    assert diagnostics == []


# ------------------------------------------------------------ package.json
def test_manifest_metadata(manifest):
    assert manifest["name"] == "fmflow"
    assert manifest["publisher"] == "fmflow"
    assert manifest["version"] == "0.1.0"
    assert manifest["license"] == "Apache-2.0"
    assert manifest["repository"]["url"] == "https://github.com/fmflow/fmflow"
    assert manifest["engines"]["vscode"] == "^1.85.0"
    assert manifest["activationEvents"][0] == "onLanguage:fmflow"
    assert manifest["dependencies"]["vscode-languageclient"] == "^9.0.1"
    assert manifest["displayName"]


def test_manifest_points_at_files_that_exist(manifest, grammar):
    contributes = manifest["contributes"]

    def exists(relative: str) -> bool:
        return (EXTENSION / relative).resolve().is_file()

    assert exists(manifest["main"])
    [language] = contributes["languages"]
    assert language["id"] == "fmflow" and language["extensions"] == [".fmflow"] and language["aliases"]
    assert exists(language["configuration"])
    [grammar_entry] = contributes["grammars"]
    assert grammar_entry["language"] == "fmflow"
    assert grammar_entry["scopeName"] == grammar["scopeName"] == "source.fmflow"
    assert (EXTENSION / grammar_entry["path"]).resolve() == GRAMMAR_PATH
    [snippets] = contributes["snippets"]
    assert snippets["language"] == "fmflow" and exists(snippets["path"])
    for name in ("README.md", "LICENSE", ".vscodeignore"):
        assert exists(name), name


def test_manifest_server_settings(manifest):
    properties = manifest["contributes"]["configuration"]["properties"]
    assert properties["fmflow.serverCommand"]["type"] == "string"
    assert properties["fmflow.serverCommand"]["default"] == "fmflow"
    assert properties["fmflow.serverArgs"]["type"] == "array"
    assert properties["fmflow.serverArgs"]["default"] == ["lsp"]
    restricted = manifest["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"]
    assert set(restricted) == {"fmflow.serverCommand", "fmflow.serverArgs"}


# ------------------------------------------------ language-configuration.json
def test_language_configuration():
    config = load_json(EXTENSION / "language-configuration.json")
    assert config["comments"]["lineComment"] == "#"
    assert config["brackets"] == [["{", "}"], ["[", "]"], ["(", ")"]]
    opens = {pair["open"]: pair["close"] for pair in config["autoClosingPairs"]}
    assert opens['"'] == '"' and opens['"""'] == '"""'
    assert {"{", "[", "("} <= set(opens)
    increase = re.compile(config["indentationRules"]["increaseIndentPattern"])
    decrease = re.compile(config["indentationRules"]["decreaseIndentPattern"])
    for line in ["model fast {", '  if x == "a" {', "flow f() -> str {  # main", "} else {"]:
        assert increase.search(line), line
    for line in ["  provider: \"openai\"", "# a comment {", '  where: { lang: "en" }']:
        assert not increase.search(line), line
    assert decrease.search("  }") and decrease.search("} else {") and not decrease.search("  x = {}")
    re.compile(config["wordPattern"])


# ---------------------------------------------------------------- snippets
def expand_snippet(body: str, choice: int = 0) -> str:
    """The text a snippet inserts when every placeholder keeps its default
    (or the given option of a choice)."""
    values: dict[str, str] = {}

    def choose(m: re.Match) -> str:
        options = m.group(2).split(",")
        values[m.group(1)] = options[min(choice, len(options) - 1)]
        return values[m.group(1)]

    def placeholder(m: re.Match) -> str:
        values[m.group(1)] = m.group(2)
        return m.group(2)

    text = re.sub(r"\$\{(\d+)\|([^|]*)\|\}", choose, body)
    while True:  # innermost placeholders first, so nested ones resolve
        text, count = re.subn(r"\$\{(\d+):([^${}]*)\}", placeholder, text)
        if not count:
            break
    text = re.sub(r"\$(\d+)", lambda m: values.get(m.group(1), ""), text)
    assert "$" not in text, f"unexpanded snippet syntax in {text!r}"
    return text


def test_snippets_expand_to_valid_fmflow():
    snippets = load_json(EXTENSION / "snippets" / "fmflow.json")
    assert {s["prefix"] for s in snippets.values()} == {
        "model", "prompt", "flow", "type", "retriever", "tool", "test", "pipeline"}
    for name, snippet in snippets.items():
        assert snippet["description"], name
        body = "\n".join(snippet["body"])
        choices = re.findall(r"\$\{\d+\|([^|]*)\|\}", body)
        for option in range(max([len(c.split(",")) for c in choices], default=1)):
            text = expand_snippet(body, option)
            _, diagnostics = parse_text(text + "\n", f"<snippet {name}>")
            assert diagnostics == [], f"{name}:\n{text}\n{diagnostics}"


# ------------------------------------------------------------- extension.js
HARNESS = r"""
const Module = require('module');
const [settings, startFails] = [JSON.parse(process.argv[2]), process.argv[3] === 'fail'];
const calls = [];
const vscode = {
  workspace: {
    getConfiguration: () => ({ get: (key) => settings[key] }),
    workspaceFolders: [{ uri: { scheme: 'file', fsPath: process.cwd() } }],
    onDidChangeConfiguration: () => ({ dispose() {} }),
  },
  window: {
    createOutputChannel: () => ({ appendLine() {}, dispose() {} }),
    showErrorMessage: (message) => { calls.push(['error', message]); return Promise.resolve(undefined); },
  },
  commands: {
    executeCommand: () => Promise.resolve(),
    registerCommand: (name) => { registered.push(name); return { dispose() {} }; },
  },
};
const registered = [];
class LanguageClient {
  constructor(id, name, server, client) {
    calls.push(['client', id, server.command, server.args, client.documentSelector.map((d) => d.language)]);
  }
  start() { calls.push(['start']); return startFails ? Promise.reject(new Error('spawn failed')) : Promise.resolve(); }
  stop() { calls.push(['stop']); return Promise.resolve(); }
}
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'vscode') return vscode;
  if (request === 'vscode-languageclient/node') return { LanguageClient, TransportKind: { stdio: 0 } };
  return load.call(this, request, ...rest);
};
const extension = require(process.argv[4]);
(async () => {
  await extension.activate({ subscriptions: [] });
  await extension.deactivate();
  process.stdout.write(JSON.stringify({ calls, registered }));
})();
"""


def run_extension(tmp_path: Path, settings: dict, start: str = "ok", registered: bool = False):
    """What the extension asked of VS Code (or, with ``registered``, the commands it registered)."""
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS, encoding="utf-8")
    done = subprocess.run(
        ["node", str(harness), json.dumps(settings), start, str(EXTENSION / "extension.js")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    return output["registered"] if registered else output["calls"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
class TestExtensionScript:
    def test_starts_the_configured_server_and_stops_it(self, tmp_path):
        node = shutil.which("node")
        calls = run_extension(tmp_path, {"serverCommand": node, "serverArgs": ["lsp", "--x"]})
        assert calls == [["client", "fmflow", node, ["lsp", "--x"], ["fmflow", "fmflow"]], ["start"], ["stop"]]

    def test_a_missing_command_gives_a_clear_error(self, tmp_path):
        calls = run_extension(tmp_path, {"serverCommand": "fmflow-not-installed", "serverArgs": ["lsp"]})
        assert len(calls) == 1 and calls[0][0] == "error"
        assert "'fmflow-not-installed' was not found" in calls[0][1]
        assert "fmflow.serverCommand" in calls[0][1]

    def test_registers_the_contributed_commands_and_those_of_the_code_lenses(self, tmp_path, manifest):
        from fmflow.lsp.outline import PREVIEW_PROMPT, RUN_FLOW, RUN_TEST

        registered = run_extension(tmp_path, {"serverCommand": "fmflow-not-installed"}, registered=True)
        contributed = [c["command"] for c in manifest["contributes"]["commands"]]
        assert sorted(registered) == sorted(contributed)
        for lens in (RUN_TEST, RUN_FLOW, PREVIEW_PROMPT):  # commands the server's lenses name
            assert lens in registered
            assert f"onCommand:{lens}" in manifest["activationEvents"]

    def test_a_failed_start_gives_a_clear_error(self, tmp_path):
        calls = run_extension(tmp_path, {"serverCommand": shutil.which("node"), "serverArgs": ["lsp"]}, "fail")
        assert calls[:2] == [calls[0], ["start"]] and calls[2][0] == "error"
        assert "spawn failed" in calls[2][1]
        assert ["stop"] not in calls
