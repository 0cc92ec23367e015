"""`fmflow test --name TEST`: one test, or a few, out of the files given."""

from __future__ import annotations

from clitools import fmflow_cmd, write

DOUBLE = '''flow double(x: int) -> int {
  return x * 2
}

test doubles_two {
  flow: double
  input: { x: 2 }
  expect: [output == 4]
}

test doubles_three {
  flow: double
  input: { x: 3 }
  expect: [output == 7]
}
'''

HALF = '''flow half(x: int) -> float {
  return x / 2
}

test halves_four {
  flow: half
  input: { x: 4 }
  expect: [output == 2.0]
}
'''


def _ran(stdout: str) -> list[str]:
    return [line.split()[1] for line in stdout.splitlines() if line.startswith(("  PASS", "  FAIL"))]


def test_name_runs_only_that_test(tmp_path):
    write(tmp_path, "double.fmflow", DOUBLE)
    result = fmflow_cmd(tmp_path, "test", "double.fmflow", "--name", "doubles_two")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _ran(result.stdout) == ["doubles_two"]  # doubles_three, which fails, did not run
    assert "1 passed, 0 failed" in result.stdout
    failing = fmflow_cmd(tmp_path, "test", "double.fmflow", "--name", "doubles_three")
    assert failing.returncode == 1 and _ran(failing.stdout) == ["doubles_three"]


def test_names_select_across_files_and_folders(tmp_path):
    write(tmp_path, "a/double.fmflow", DOUBLE)
    write(tmp_path, "b/half.fmflow", HALF)
    write(tmp_path, "b/broken.fmflow", "flow broken( {\n}\n")  # declares none of them: not even checked
    result = fmflow_cmd(tmp_path, "test", "a", "b", "--name", "halves_four", "--name", "doubles_two")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _ran(result.stdout) == ["doubles_two", "halves_four"]
    assert "broken" not in result.stdout + result.stderr
    assert "2 passed, 0 failed" in result.stdout


def test_an_unknown_name_is_a_usage_error_with_a_suggestion(tmp_path):
    write(tmp_path, "double.fmflow", DOUBLE)
    close = fmflow_cmd(tmp_path, "test", "double.fmflow", "--name", "doubles_thre")
    assert close.returncode == 2
    assert close.stderr.strip() == ("fmflow: error: no test 'doubles_thre' in double.fmflow; "
                                    "did you mean 'doubles_three'?")
    assert close.stdout == ""  # nothing ran
    far = fmflow_cmd(tmp_path, "test", "double.fmflow", "--name", "doubles_two", "--name", "halving")
    assert far.returncode == 2 and far.stdout == ""
    assert far.stderr.strip() == ("fmflow: error: no test 'halving' in double.fmflow; "
                                  "tests: doubles_two, doubles_three")


def test_an_unknown_name_across_files_lists_them_all_and_names_files_with_syntax_errors(tmp_path):
    write(tmp_path, "double.fmflow", DOUBLE)
    write(tmp_path, "half.fmflow", HALF)
    write(tmp_path, "zz.fmflow", "flow broken( {\n}\n")
    result = fmflow_cmd(tmp_path, "test", ".", "--name", "nothing_like", "--name", "halves_fuor")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    hidden = " (syntax errors in zz.fmflow may hide tests)"
    assert lines == [
        "fmflow: error: no test 'nothing_like' in . (3 files); tests: doubles_two, doubles_three, halves_four"
        + hidden,
        "  no test 'halves_fuor' in . (3 files); did you mean 'halves_four'?" + hidden]


def test_a_file_without_tests_says_so(tmp_path):
    write(tmp_path, "plain.fmflow", "flow f() -> int {\n  return 1\n}\n")
    result = fmflow_cmd(tmp_path, "test", "plain.fmflow", "--name", "anything")
    assert result.returncode == 2
    assert "no test 'anything' in plain.fmflow; it declares no test" in result.stderr
