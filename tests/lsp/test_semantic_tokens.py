"""Semantic tokens from `fmflow lsp`, decoded from LSP's relative encoding and checked token by token."""

from __future__ import annotations

from lspclient import position

TEXT = '''enum Mood { calm, glad }

model fast {
  provider: "replay"
}

## Greets 🙂 someone.
prompt greet(name: str) -> str {
  model: fast
  template: "Bonjour 🙂 {{ name }}"
}

flow hello(who: str, moods: list[Mood]) -> list[str] {
  s = "é🙂" + greet(name: who)
  return ["🙂" + s for m in moods if m != Mood.calm]
}
'''


def _legend(lsp) -> tuple[list[str], list[str]]:
    legend = lsp.capabilities["semanticTokensProvider"]["legend"]
    return legend["tokenTypes"], legend["tokenModifiers"]


def _decode(lsp, data: list[int]) -> list[tuple]:
    """(line, character, length, type, modifiers) of each token, from the five relative integers of each."""
    types, modifiers = _legend(lsp)
    assert len(data) % 5 == 0
    tokens, line, character = [], 0, 0
    for i in range(0, len(data), 5):
        delta_line, delta_start, length, kind, bits = data[i:i + 5]
        line += delta_line
        character = character + delta_start if delta_line == 0 else delta_start
        names = {m for n, m in enumerate(modifiers) if bits & (1 << n)}
        tokens.append((line, character, length, types[kind], names))
    return tokens


def _at(text: str, needle: str, occurrence: int = 0, delta: int = 0) -> tuple[int, int]:
    found = position(text, needle, occurrence, delta)
    return found["line"], found["character"]


def _token(text, needle, kind, *modifiers, occurrence=0, delta=0, length=None):
    line, character = _at(text, needle, occurrence, delta)
    return line, character, length or len(needle), kind, set(modifiers)


def test_the_server_announces_full_and_range_tokens(lsp):
    provider = lsp.capabilities["semanticTokensProvider"]
    assert provider["full"] and provider["range"]
    types, modifiers = _legend(lsp)
    assert {"type", "enum", "enumMember", "function", "parameter", "variable", "property", "namespace"} <= set(types)
    assert {"declaration", "readonly", "defaultLibrary"} <= set(modifiers)


def _hello_tokens(t: str) -> list:
    """The tokens of TEXT (or of ``t``, TEXT edited after its prompt), in order."""
    return [
        _token(t, "Mood", "enum", "declaration"),
        _token(t, "calm", "enumMember", "declaration", "readonly"),
        _token(t, "glad", "enumMember", "declaration", "readonly"),
        _token(t, "fast", "namespace", "declaration"),
        _token(t, "greet", "function", "declaration"),
        _token(t, "name", "parameter", "declaration"),
        _token(t, "str", "type", "defaultLibrary"),
        _token(t, "str", "type", "defaultLibrary", occurrence=1),
        _token(t, "fast", "namespace", occurrence=1),
        _token(t, "name", "parameter", occurrence=1),  # in the template, after an emoji: two UTF-16 units
        _token(t, "hello", "function", "declaration"),
        _token(t, "who", "parameter", "declaration"),
        _token(t, "str", "type", "defaultLibrary", occurrence=2),
        _token(t, "moods", "parameter", "declaration"),
        _token(t, "list", "type", "defaultLibrary"),
        _token(t, "Mood", "enum", occurrence=1),
        _token(t, "list", "type", "defaultLibrary", occurrence=1),
        _token(t, "str", "type", "defaultLibrary", occurrence=3),
        _token(t, "s = ", "variable", "declaration", length=1),
        _token(t, "greet", "function", occurrence=1),
        _token(t, "name: who", "parameter", length=4),
        _token(t, "who)", "parameter", length=3),
        _token(t, "s for", "variable", length=1),
        _token(t, "m in", "variable", "declaration", length=1),
        _token(t, "moods if", "parameter", length=5),
        _token(t, "m !=", "variable", length=1),
        _token(t, "Mood.calm", "enum", length=4),
        _token(t, "calm", "enumMember", "readonly", occurrence=1),
    ]


def test_tokens_of_a_file_in_utf16_columns(lsp, tmp_path):
    uri = lsp.open(tmp_path / "hello.fmflow", TEXT)
    assert lsp.diagnostics(uri) == []
    tokens = _decode(lsp, lsp.request("textDocument/semanticTokens/full", {"textDocument": {"uri": uri}})["data"])
    t = TEXT
    assert tokens == _hello_tokens(t)
    # Columns count UTF-16 units: the call of `greet` comes after "é🙂", three units for two characters.
    assert _at(t, "greet", 1) == (13, 14) and t.splitlines()[13].index("greet") == 13


def test_range_tokens_are_those_of_the_range(lsp, tmp_path):
    uri = lsp.open(tmp_path / "hello.fmflow", TEXT)
    lsp.diagnostics(uri)
    line = TEXT.splitlines().index('  s = "é🙂" + greet(name: who)')
    data = lsp.request("textDocument/semanticTokens/range", {
        "textDocument": {"uri": uri},
        "range": {"start": {"line": line, "character": 0}, "end": {"line": line + 1, "character": 0}}})["data"]
    assert [(token[0], token[3]) for token in _decode(lsp, data)] == [
        (line, "variable"), (line, "function"), (line, "parameter"), (line, "parameter")]


def test_a_file_with_a_syntax_error_gets_tokens_for_what_parsed(lsp, tmp_path):
    broken = TEXT.replace("flow hello(who: str,", "flow hello(who: str,,")
    uri = lsp.open(tmp_path / "broken.fmflow", broken)
    assert [d["code"] for d in lsp.diagnostics(uri)] == ["E001"]
    tokens = _decode(lsp, lsp.request("textDocument/semanticTokens/full", {"textDocument": {"uri": uri}})["data"])
    # What parsed before the error has the tokens it has in the whole file (`fast` in the prompt
    # is resolved without the checker); nothing after it has any.
    assert tokens == _hello_tokens(broken)[:10]
