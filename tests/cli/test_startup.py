"""`fmflow check` starts fast: it loads what checking needs and nothing else.

Each test runs fmflow in a fresh interpreter (as `python -m fmflow` does) and
lists, from ``sys.modules`` at the end, the modules that must stay unloaded:
the heavy libraries of running, serving and indexing, and the modules of
fmflow's other commands. Times are measured by benchmarks/check_speed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from clitools import ROOT, fmflow_cmd

from fmflow.cli import COMMAND_GROUPS, build_parser

HEAVY = ("torch", "transformers", "chromadb", "numpy", "onnxruntime", "fastapi", "uvicorn", "starlette",
         "prometheus_client", "networkx", "pydantic", "httpx", "pygls", "rich", "opentelemetry", "openai",
         "dask", "pyarrow")
# fmflow's other commands and the phases `check` does not reach.
OTHER_COMMANDS = tuple(f"fmflow.cli.{group}" for group in ("running", "rendering", "batch", "pipeline", "evaluating",
                                                          "traces", "indexing", "serve", "editor"))
OTHER_PHASES = ("fmflow.runtime", "fmflow.compiler", "fmflow.formatter", "fmflow.retrieval", "fmflow.data",
                "fmflow.serve", "fmflow.lsp", "fmflow.observe", "fmflow.providers", "fmflow.integrations")

_DRIVER = """
import json, runpy, sys
sys.argv = ["fmflow", *sys.argv[1:]]
try:
    runpy.run_module("fmflow", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    status = exit.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def modules_after(*args: str) -> tuple[int, set[str]]:
    """Exit status and the modules loaded by ``fmflow ARGS`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", _DRIVER, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["status"], set(report["modules"])


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_check_loads_neither_heavy_libraries_nor_other_commands():
    status, modules = modules_after("check", "examples")
    assert status == 0
    assert "fmflow.checks" in modules and "jinja2" in modules  # the driver did check the examples
    assert loaded(modules, HEAVY) == []
    assert loaded(modules, OTHER_COMMANDS + OTHER_PHASES) == []


def test_check_loads_the_eval_and_pipeline_readers_only_for_files_that_declare_them():
    status, modules = modules_after("check", "examples/hello/hello.fmflow")
    assert status == 0
    assert "fmflow.checks.pipelines" in modules and "fmflow.checks.evals" in modules
    assert loaded(modules, ("fmflow.evals", "fmflow.pipeline_steps")) == []


def test_fmt_loads_the_formatter_but_no_checker():
    status, modules = modules_after("fmt", "--check", "examples")
    assert status == 0
    assert "fmflow.formatter" in modules
    assert loaded(modules, HEAVY + OTHER_COMMANDS + ("fmflow.checks", "fmflow.runtime")) == []


def test_every_group_adds_the_commands_it_is_listed_with():
    """The table that lets a command load its group alone matches what the groups add."""
    for group, names in COMMAND_GROUPS.items():
        parser = build_parser([names[0]])
        commands = next(a for a in parser._actions if a.dest == "command")
        assert tuple(commands.choices) == names, group
    every = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(every.choices) == [n for names in COMMAND_GROUPS.values() for n in names]


_WHOLE_PARSER = "import sys; from fmflow.cli import build_parser; build_parser().parse_args(sys.argv[1:])"


@pytest.mark.parametrize("args", [("check", "--help"), ("--debug", "run", "--help"), ("--help",), ("-h", "check"),
                                  ("--deb", "check", "--help"), ("chek", "x.fmflow"), ("check", "--format", "xml"),
                                  ("fmt",), ("trace", "show", "--help")])
def test_help_and_usage_errors_are_those_of_the_parser_of_every_command(tmp_path, args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100")
    whole = subprocess.run([sys.executable, "-c", _WHOLE_PARSER, *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    result = fmflow_cmd(tmp_path, *args, env={"COLUMNS": "100"})
    assert whole.returncode in (0, 2)
    assert (result.returncode, result.stdout, result.stderr) == (whole.returncode, whole.stdout, whole.stderr)
