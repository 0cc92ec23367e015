"""`fmflow check`, `fmt`, `graph` and `test` on hostile or careless input, through real subprocesses.

The only outcomes allowed: diagnostics, or a one-line error naming the file
and the reason; never a traceback, a hang, or a byte of a file that is not
a flow.
"""

from __future__ import annotations

import os

import pytest

from clitools import fmflow_cmd, write

SECRET = "hunter2-do-not-print"
ECHO = '''\
flow echo(x: str) -> str {
  return x
}

test echo_works {
  flow: echo
  input: { x: "a" }
  expect: [output == "a"]
}
'''


def shown(result) -> str:
    return result.stdout + result.stderr


# ------------------------------------------------------------ imports (2)

def test_check_never_prints_a_file_that_is_not_a_flow(tmp_path):
    write(tmp_path, ".env", f"TOKEN={SECRET}\n")
    write(tmp_path, "main.fmflow", 'import "./.env"\nimport "/etc/passwd"\nflow f(x: str) -> str { return x }\n')
    result = fmflow_cmd(tmp_path, "check", "main.fmflow")
    assert result.returncode == 1
    assert SECRET not in shown(result) and "root:" not in shown(result)
    assert "main.fmflow:1:1: error[E002]: cannot import './.env': an import names a .fmflow file or a std/ module" \
        in result.stdout
    assert "main.fmflow:2:1: error[E002]: cannot import '/etc/passwd'" in result.stdout


def test_check_of_a_link_to_a_secret_prints_nothing_of_it(tmp_path):
    write(tmp_path, ".env", f"TOKEN={SECRET}\n")
    os.symlink(tmp_path / ".env", tmp_path / "flow.fmflow")
    result = fmflow_cmd(tmp_path, "check", "flow.fmflow")
    assert result.returncode == 2
    assert SECRET not in shown(result)
    assert "fmflow: error: cannot read 'flow.fmflow': it links to a file whose name does not end in '.fmflow'" \
        in result.stderr


# ------------------------------------------------ pipes and devices (3)

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("command", [["check"], ["fmt"], ["fmt", "--check"], ["graph"], ["test"], ["run"],
                                     ["batch", "--input", "in.jsonl", "--output", "out.jsonl"], ["pipeline"],
                                     ["eval"], ["render", "--prompt", "p"]])
def test_a_fifo_named_like_a_flow_does_not_hang(tmp_path, command):
    os.mkfifo(tmp_path / "pipe.fmflow")
    result = fmflow_cmd(tmp_path, *command, "pipe.fmflow", timeout=30)
    assert "cannot read 'pipe.fmflow': it is a pipe (FIFO), not a regular file" in result.stderr
    assert result.returncode in (1, 2)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("option", [["-i", "x=@pipe.txt"], ["--input-json", "@pipe.txt"]])
def test_an_input_read_from_a_fifo_does_not_hang(tmp_path, option):
    write(tmp_path, "echo.fmflow", ECHO)
    os.mkfifo(tmp_path / "pipe.txt")
    result = fmflow_cmd(tmp_path, "run", "echo.fmflow", *option, timeout=30)
    assert result.returncode == 2
    assert "cannot read 'pipe.txt': it is a pipe (FIFO), not a regular file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_check_of_a_folder_skips_pipes_and_links_and_an_import_of_a_pipe_is_e002(tmp_path):
    os.mkfifo(tmp_path / "pipe.fmflow")
    os.symlink("/dev/zero", tmp_path / "zero.fmflow")
    write(tmp_path, "main.fmflow", 'import "./pipe.fmflow"\nflow f(x: str) -> str { return x }\n')
    result = fmflow_cmd(tmp_path, "check", ".", timeout=30)
    assert result.returncode == 1
    assert result.stdout.count("error[") == 1
    assert "main.fmflow:1:1: error[E002]: cannot read import './pipe.fmflow': it is a pipe (FIFO), not a " \
           "regular file" in result.stdout


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    with open(tmp_path / "big.fmflow", "wb") as f:
        f.truncate(11 * 1024 * 1024)
    for command in (["check"], ["fmt"]):
        result = fmflow_cmd(tmp_path, *command, "big.fmflow")
        assert result.returncode == 2
        assert "cannot read 'big.fmflow': it holds 11.0 MB; flow files are limited to 10 MB" in result.stderr


# ----------------------------------------------------------- UTF-8 (5)

def test_check_and_fmt_say_which_byte_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.fmflow"
    original = b'flow f(x: str) -> str {\n  return "caf\xe9"\n}\n'
    path.write_bytes(original)
    for command in (["check"], ["fmt"], ["fmt", "--check"]):
        result = fmflow_cmd(tmp_path, *command, "latin1.fmflow")
        assert result.returncode == 1, shown(result)
        assert "latin1.fmflow:2:14: error[E001]: byte 0xE9 is not valid UTF-8" in result.stdout
    assert path.read_bytes() == original


def test_fmt_drops_a_byte_order_mark_and_check_accepts_it(tmp_path):
    path = tmp_path / "bom.fmflow"
    canonical = b"flow f(x: str) -> str {\n  return x\n}\n"
    path.write_bytes(b"\xef\xbb\xbf" + canonical)
    assert fmflow_cmd(tmp_path, "check", "bom.fmflow").returncode == 0
    result = fmflow_cmd(tmp_path, "fmt", "--check", "bom.fmflow")
    assert result.returncode == 1 and "would reformat bom.fmflow" in result.stdout
    assert fmflow_cmd(tmp_path, "fmt", "bom.fmflow").returncode == 0
    assert path.read_bytes() == canonical
    assert fmflow_cmd(tmp_path, "fmt", "--check", "bom.fmflow").returncode == 0


# ------------------------------------------------------ folder walks (9)

def test_folder_commands_skip_the_fmflow_state_folder_and_hidden_folders(tmp_path):
    write(tmp_path, "echo.fmflow", ECHO)
    write(tmp_path, ".fmflow/runs/run-1.jsonl", "{}\n")
    write(tmp_path, ".fmflow/cache/x.fmflow", "not a flow {")  # a stray state file
    write(tmp_path, ".git/hooks/old.fmflow", "broken {")
    write(tmp_path, ".draft.fmflow", "broken {")
    write(tmp_path, "nested.fmflow/inner.fmflow", "flow g(x: str) -> str {\n  return x\n}\n")
    ran = fmflow_cmd(tmp_path, "run", "echo.fmflow", "-i", "x=hi")  # writes .fmflow/ in the folder
    assert ran.returncode == 0, shown(ran)
    for command in (["check", "."], ["fmt", "--check", "."], ["check", str(tmp_path)], ["test", "."]):
        result = fmflow_cmd(tmp_path, *command)
        assert result.returncode == 0, (command, shown(result))
        assert ".fmflow'" not in result.stderr
    tested = fmflow_cmd(tmp_path, "test", ".")
    assert "PASS echo_works" in tested.stdout and "1 passed, 0 failed" in tested.stdout
    checked = fmflow_cmd(tmp_path, "check", ".", "--format", "json")
    assert checked.stdout.strip() == "[]"


def test_fmt_writes_through_a_fresh_file_and_keeps_permissions(tmp_path):
    victim = write(tmp_path, "victim.txt", "precious\n")
    path = write(tmp_path, "ugly.fmflow", "flow f(x: str) -> str { return x }\n")
    path.chmod(0o640)
    for planted in ("ugly.fmflow.fmflow-tmp", "ugly.fmflow.tmp", "fmflow.lock.tmp"):
        os.symlink(victim, tmp_path / planted)  # a link where a predictable temporary name would be
    assert fmflow_cmd(tmp_path, "fmt", "ugly.fmflow").returncode == 0
    assert path.read_text(encoding="utf-8") == "flow f(x: str) -> str {\n  return x\n}\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert fmflow_cmd(tmp_path, "lock", "ugly.fmflow").returncode == 0
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["victim.txt", "ugly.fmflow", "fmflow.lock", "ugly.fmflow.fmflow-tmp", "ugly.fmflow.tmp", "fmflow.lock.tmp"])


# ------------------------------------------------------ surrogates (6)

def test_an_escaped_surrogate_is_e001_at_the_escape_in_check_and_run(tmp_path):
    write(tmp_path, "s.fmflow", 'flow f(x: str) -> str {\n  return x + "\\u{D800}"\n}\n')
    for command in (["check", "s.fmflow"], ["run", "s.fmflow", "-i", "x=a"], ["fmt", "s.fmflow"]):
        result = fmflow_cmd(tmp_path, *command)
        assert result.returncode == 1, (command, shown(result))
        assert "s.fmflow:2:15: error[E001]: '\\u{D800}' is a surrogate code point, not a character" \
            in result.stdout, command


# ------------------------------------------------------ settings (7)

BOUNDED = '''\
model m {
  provider: "replay"
  options: { responses: [{ text: "hi" }] }
  concurrency: CONCURRENCY
}

prompt p(x: str) -> str {
  model: m
  template: "{{ x }}"
  on_fail: retry(-1)
}

flow f(x: str) -> str {
  return p(x)
}
'''


def test_check_reports_settings_out_of_bounds_and_run_refuses_them(tmp_path):
    write(tmp_path, "zero.fmflow", BOUNDED.replace("CONCURRENCY", "0"))
    result = fmflow_cmd(tmp_path, "check", "zero.fmflow")
    assert result.returncode == 1
    assert "zero.fmflow:4:16: error[E201]: 'concurrency' of model 'm' must be at least 1, got 0" in result.stdout
    assert "zero.fmflow:10:18: error[E201]: the count of retry(…) must be at least 1, got -1" in result.stdout

    write(tmp_path, "env.fmflow", BOUNDED.replace("CONCURRENCY", 'env("FM_CONCURRENCY", 2)')
          .replace("retry(-1)", "retry(1)"))
    assert fmflow_cmd(tmp_path, "check", "env.fmflow").returncode == 0
    ran = fmflow_cmd(tmp_path, "run", "env.fmflow", "-i", "x=a", env={"FM_CONCURRENCY": "0"})
    assert ran.returncode == 1
    assert "'concurrency' of model 'm' must be at least 1, got 0" in ran.stderr
    assert "internal error" not in ran.stderr


# ------------------------------------------------------ messages (8)

def test_an_unclosed_block_string_is_reported_where_it_starts(tmp_path):
    write(tmp_path, "open.fmflow", 'prompt p(x: str) -> str {\n  template: """\n    Say "hi" to {{ x }}\n}\n\n'
                                   'flow f(x: str) -> str {\n  return p(x)\n}\n')
    result = fmflow_cmd(tmp_path, "check", "open.fmflow")
    assert result.returncode == 1
    assert result.stdout.count("error[") == 1
    assert "open.fmflow:2:13: error[E001]: this block string is not closed" in result.stdout
    assert 'help: it starts here (line 2, column 13) and runs to the end of the file; end it with """' \
        in result.stdout


# ------------------------------------------------------ nesting (4)

def test_deep_nesting_is_one_e001_in_every_command_and_a_long_chain_works(tmp_path):
    write(tmp_path, "deep.fmflow", "flow f(x: int) -> json {\n  return " + "[" * 5000 + "x" + "]" * 5000 + "\n}\n")
    for command in (["check"], ["fmt"], ["graph"], ["run", "-i", "x=1"]):
        result = fmflow_cmd(tmp_path, *command[:1], "deep.fmflow", *command[1:])
        assert result.returncode == 1, (command, shown(result))
        assert "deep.fmflow:2:110: error[E001]: nested too deeply: more than 100 levels of brackets, operators " \
               "or ifs" in result.stdout, command
        assert len(result.stdout) < 2000  # the snippet shows a window of the long line, not all of it

    write(tmp_path, "chain.fmflow", "flow f(x: int) -> int {\n  return " + " + ".join(["x"] * 10_000) + "\n}\n")
    assert fmflow_cmd(tmp_path, "check", "chain.fmflow").returncode == 0
    assert fmflow_cmd(tmp_path, "fmt", "--check", "chain.fmflow").returncode == 0
    assert "flowchart" in fmflow_cmd(tmp_path, "graph", "chain.fmflow").stdout
    ran = fmflow_cmd(tmp_path, "run", "chain.fmflow", "-i", "x=3")
    assert ran.returncode == 0 and ran.stdout.strip() == "30000", shown(ran)
