"""The `fmflow` command through real subprocesses (LANGUAGE.md §5, §6).

Exit status: 0 clean (warnings allowed), 1 errors, 2 usage error; no
traceback ever; colour only on a terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fmflow
from clitools import ANSI, ROOT, fmflow_cmd, write

CLEAN = '''\
model local { provider: "builtin", name: "echo" }

prompt greet(name: str) -> str {
  model: local
  template: "Hi {{ name }}"
}

flow hello(name: str) -> str {
  return greet(name: name)
}
'''

# An unused model: a warning (W501), no error.
WARNING_ONLY = CLEAN + '\nmodel spare { provider: "builtin", name: "echo" }\n'

# A misspelt name (E101 with a did-you-mean help) and a syntax-clean file otherwise.
ERRORS = '''\
flow f(question: str) -> str {
  return quesiton
}
'''

TWO_FLOWS = CLEAN + '''
flow hello_twice(name: str) -> str {
  first = greet(name: name)
  return first + greet(name: first)
}
'''

# Not in the formatter's layout: one line for a whole block, cramped spacing.
UNFORMATTED = '''\
model local {provider:"builtin",name:"echo"}
prompt greet(name: str) -> str { model: local, template: "Hi {{ name }}" }
flow hello(name: str) -> str { return greet(name: name) }
'''

JSON_KEYS = {"file", "line", "col", "end_line", "end_col", "severity", "code", "message"}


def require(module: str, attr: str):
    """Skip while a module being written elsewhere lacks what the test needs."""
    mod = pytest.importorskip(module)
    if not hasattr(mod, attr):
        pytest.skip(f"{module} has no {attr} yet")
    return mod


# ------------------------------------------------------------------ check

def test_check_clean_file_exits_0(tmp_path):
    write(tmp_path, "hello.fmflow", CLEAN)
    result = fmflow_cmd(tmp_path, "check", "hello.fmflow")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "no problems" in result.stderr


def test_check_warnings_only_exits_0(tmp_path):
    write(tmp_path, "hello.fmflow", WARNING_ONLY)
    result = fmflow_cmd(tmp_path, "check", "hello.fmflow")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello.fmflow:12:7: warning[W501]: model 'spare' is never used" in result.stdout
    assert "error[" not in result.stdout


def test_check_errors_exit_1_with_location_source_caret_and_help(tmp_path):
    write(tmp_path, "bad.fmflow", ERRORS)
    result = fmflow_cmd(tmp_path, "check", "bad.fmflow")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "bad.fmflow:2:10: error[E101]: unknown name 'quesiton'"
    assert lines[1:5] == [
        "  |",
        "2 |   return quesiton",
        "  |          ^^^^^^^^",
        "  help: did you mean 'question'?",
    ]
    assert "1 error" in result.stderr


def test_check_syntax_error_is_reported_with_caret(tmp_path):
    write(tmp_path, "broken.fmflow", 'retriever docs { k 4 }\n')
    result = fmflow_cmd(tmp_path, "check", "broken.fmflow")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "broken.fmflow:1:20: error[E001]: unexpected number 4; expected ':'",
        "  |",
        "1 | retriever docs { k 4 }",
        "  |                    ^",
        "  help: block entries are written 'key: value'",
    ]


def test_check_json_is_exactly_a_list_of_diagnostics(tmp_path):
    write(tmp_path, "bad.fmflow", ERRORS)
    write(tmp_path, "warn.fmflow", WARNING_ONLY)
    result = fmflow_cmd(tmp_path, "check", "--format", "json", "bad.fmflow", "warn.fmflow")
    assert result.returncode == 1
    data = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert isinstance(data, list) and len(data) == 2
    for item in data:
        assert set(item) == JSON_KEYS
        assert item["line"] >= 1 and item["col"] >= 1
    assert data[0] == {"file": "bad.fmflow", "line": 2, "col": 10, "end_line": 2, "end_col": 18,
                       "severity": "error", "code": "E101", "message": "unknown name 'quesiton'"}
    assert (data[1]["file"], data[1]["severity"], data[1]["code"]) == ("warn.fmflow", "warning", "W501")


def test_check_json_clean_prints_empty_list(tmp_path):
    write(tmp_path, "hello.fmflow", CLEAN)
    result = fmflow_cmd(tmp_path, "check", "--format", "json", "hello.fmflow")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


def test_check_several_files_and_a_folder(tmp_path):
    write(tmp_path, "a.fmflow", CLEAN)
    write(tmp_path, "flows/b.fmflow", CLEAN.replace("hello", "hi"))
    write(tmp_path, "flows/deeper/bad.fmflow", ERRORS)
    both = fmflow_cmd(tmp_path, "check", "a.fmflow", "flows/b.fmflow")
    assert both.returncode == 0, both.stdout
    folder = fmflow_cmd(tmp_path, "check", "--format", "json", "a.fmflow", "flows")
    assert folder.returncode == 1
    files = {Path(d["file"]).as_posix() for d in json.loads(folder.stdout)}
    assert files == {"flows/deeper/bad.fmflow"}


def test_check_missing_file_is_a_usage_error(tmp_path):
    write(tmp_path, "hello.fmflow", CLEAN)
    result = fmflow_cmd(tmp_path, "check", "hello.fmflow", "nope.fmflow")
    assert result.returncode == 2
    assert "nope.fmflow" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [
    ["bogus"],
    ["check", "--bogus", "hello.fmflow"],
    ["check", "--format", "xml", "hello.fmflow"],
    ["check", "--pin", "bad", "hello.fmflow"],
    ["check", "--pin", "greet@0", "hello.fmflow"],
    ["check"],
    [],
])
def test_usage_errors_exit_2(tmp_path, args):
    write(tmp_path, "hello.fmflow", CLEAN)
    result = fmflow_cmd(tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip()


def test_pin_error_names_the_bad_pin(tmp_path):
    write(tmp_path, "hello.fmflow", CLEAN)
    result = fmflow_cmd(tmp_path, "check", "--pin", "bad", "hello.fmflow")
    assert "fmflow: error: --pin expects NAME@N (e.g. answer@2), got 'bad'" in result.stderr


def test_version(tmp_path):
    result = fmflow_cmd(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"fmflow {fmflow.__version__}"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_colour_only_on_a_terminal(tmp_path):
    """The ANSI check in fmflow_cmd means something: a terminal does get colour."""
    import pty

    write(tmp_path, "bad.fmflow", ERRORS)
    env = {k: v for k, v in os.environ.items() if k not in ("FMFLOW_DEBUG", "NO_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TERM"] = "xterm"
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "fmflow", "check", "bad.fmflow"], cwd=tmp_path,
                              env=env, stdout=follower, stderr=subprocess.PIPE, timeout=60)
        os.close(follower)
        follower = None
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 1
    assert ANSI.search(b"".join(chunks).decode("utf-8", "replace"))


# -------------------------------------------------------------------- fmt

def test_fmt_check_then_fmt(tmp_path):
    require("fmflow.formatter", "format_module")
    path = write(tmp_path, "ugly.fmflow", UNFORMATTED)
    write(tmp_path, "hello.fmflow", CLEAN)
    assert fmflow_cmd(tmp_path, "fmt", "hello.fmflow").returncode == 0  # now in the formatter's layout
    check = fmflow_cmd(tmp_path, "fmt", "--check", "ugly.fmflow", "hello.fmflow")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "ugly.fmflow" in check.stdout
    assert "hello.fmflow" not in check.stdout
    assert path.read_text(encoding="utf-8") == UNFORMATTED  # --check changes nothing

    rewrite = fmflow_cmd(tmp_path, "fmt", "ugly.fmflow")
    assert rewrite.returncode == 0, rewrite.stdout + rewrite.stderr
    assert path.read_text(encoding="utf-8") != UNFORMATTED
    again = fmflow_cmd(tmp_path, "fmt", "--check", "ugly.fmflow")
    assert again.returncode == 0, again.stdout + again.stderr
    assert fmflow_cmd(tmp_path, "check", "ugly.fmflow").returncode == 0


def test_fmt_refuses_a_file_with_syntax_errors(tmp_path):
    require("fmflow.formatter", "format_module")
    path = write(tmp_path, "broken.fmflow", "flow f(x) -> str { return x }\n")
    result = fmflow_cmd(tmp_path, "fmt", "broken.fmflow")
    assert result.returncode == 1
    assert "error[E001]" in result.stdout
    assert path.read_text(encoding="utf-8") == "flow f(x) -> str { return x }\n"


# ------------------------------------------------------------------- lock

def test_lock_then_change_then_new_version(tmp_path):
    path = write(tmp_path, "hello.fmflow", CLEAN)
    locked = fmflow_cmd(tmp_path, "lock", "hello.fmflow")
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert (tmp_path / "fmflow.lock").is_file()
    assert "greet@1" in (tmp_path / "fmflow.lock").read_text(encoding="utf-8")
    assert fmflow_cmd(tmp_path, "check", "hello.fmflow").returncode == 0

    changed = CLEAN.replace('"Hi {{ name }}"', '"Hello {{ name }}"')
    path.write_text(changed, encoding="utf-8")
    result = fmflow_cmd(tmp_path, "check", "hello.fmflow")
    assert result.returncode == 1
    assert ("hello.fmflow:3:8: error[E401]: the text of prompt 'greet@1' changed since fmflow.lock was written, "
            "but it kept its version number") in result.stdout
    assert "greet@2" in result.stdout  # the help names the next version

    path.write_text(changed.replace("prompt greet(", "prompt greet@2("), encoding="utf-8")
    result = fmflow_cmd(tmp_path, "check", "hello.fmflow")
    assert result.returncode == 0, result.stdout


def test_lock_tells_the_model_from_the_text(tmp_path):
    path = write(tmp_path, "hello.fmflow", CLEAN)
    assert fmflow_cmd(tmp_path, "lock", "hello.fmflow").returncode == 0
    lock = json.loads((tmp_path / "fmflow.lock").read_text(encoding="utf-8"))
    assert lock["fmflow_lock"] == 2
    assert set(lock["files"]["hello.fmflow"]["greet@1"]) == {"prompt", "model"}

    # Transport settings and provider options (a replay model's answers) are not locked.
    unlocked = CLEAN.replace('name: "echo" }', 'name: "echo", timeout: 5s, options: { seed: 1 } }')
    path.write_text(unlocked, encoding="utf-8")
    assert fmflow_cmd(tmp_path, "check", "hello.fmflow").returncode == 0

    path.write_text(CLEAN.replace('name: "echo"', 'name: "extractive"'), encoding="utf-8")
    result = fmflow_cmd(tmp_path, "check", "hello.fmflow")
    assert result.returncode == 1
    assert ("error[E401]: the model of prompt 'greet@1' changed since fmflow.lock was written, "
            "but it kept its version number") in result.stdout
    assert "its model is its provider, name and temperature" in result.stdout


# ------------------------------------------------------------------ graph

def test_graph_mermaid_and_dot(tmp_path):
    require("fmflow.compiler", "build_flow_graph")
    write(tmp_path, "hello.fmflow", CLEAN)
    mermaid = fmflow_cmd(tmp_path, "graph", "hello.fmflow")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.lstrip().startswith("flowchart")
    dot = fmflow_cmd(tmp_path, "graph", "--format", "dot", "hello.fmflow")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.lstrip().startswith("digraph")
    assert dot.stdout.rstrip().endswith("}")


def test_graph_of_two_flows_draws_both_unless_one_is_chosen(tmp_path):
    require("fmflow.compiler", "build_flow_graph")
    write(tmp_path, "two.fmflow", TWO_FLOWS)
    result = fmflow_cmd(tmp_path, "graph", "two.fmflow")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    subgraph flow_hello["flow hello"]' in lines and '    subgraph flow_hello_twice["flow hello_twice"]' in lines
    assert lines.count("    end") == 2
    assert any(line.startswith("        hello_twice__n1[") for line in lines)
    dot = fmflow_cmd(tmp_path, "graph", "two.fmflow", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    assert '    subgraph "cluster_hello" {' in dot.stdout and '    subgraph "cluster_hello_twice" {' in dot.stdout
    assert '"hello_twice:n1"' in dot.stdout and dot.stdout.rstrip().endswith("}")
    chosen = fmflow_cmd(tmp_path, "graph", "two.fmflow", "--flow", "hello_twice")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.lstrip().startswith("flowchart")
    unknown = fmflow_cmd(tmp_path, "graph", "two.fmflow", "--flow", "nope")
    assert unknown.returncode == 2
    assert "nope" in unknown.stderr


def test_graph_of_a_file_with_errors_exits_1(tmp_path):
    require("fmflow.compiler", "build_flow_graph")
    write(tmp_path, "bad.fmflow", ERRORS)
    result = fmflow_cmd(tmp_path, "graph", "bad.fmflow")
    assert result.returncode == 1
    assert "error[E101]" in result.stdout
