"""E104 for declaration blocks: which keys each kind of block takes.

The table is shared: the type checker reads ``value`` to check each entry
and ``bound`` to check a number given as a literal, and the runtime reads
the same keys and asks ``setting_problem`` about values known only when a
flow runs (``env(…)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ast
from ..diagnostics import suggestion_help
from ..types import BOOL, DURATION, FLOAT, INT, RATE, STR, DictType, JSON, Type
from .context import CheckContext

PROVIDERS = ("openai", "ollama", "hf", "langchain", "builtin", "replay")


@dataclass(frozen=True)
class Bound:
    """The numbers a key accepts: from ``low`` to ``high`` (each inclusive, either open-ended);
    ``above``: strictly more than ``low``. For a rate, the bound is on its count."""

    low: float | None = None
    high: float | None = None
    above: bool = False

    def allows(self, number: float) -> bool:
        if self.low is not None and (number <= self.low if self.above else number < self.low):
            return False
        return self.high is None or number <= self.high

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {_number(self.low)} to {_number(self.high)}"
        if self.low is None:
            return f"at most {_number(self.high)}"
        return f"more than {_number(self.low)}" if self.above else f"at least {_number(self.low)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class KeySpec:
    """A block key: the Type its value must have, or a special kind of value.

    Special kinds: ``provider``, ``env_name``, ``model_ref``, ``model_refs``,
    ``tool_refs``, ``template``, ``checks``, ``policy``, ``history``, ``flow_ref``,
    ``inputs``, ``mocks``, ``model_scripts``, ``expects``. ``bound`` limits a number,
    a duration (in seconds) or the count of a rate.
    """

    value: Type | str
    required: bool = False
    doc: str = ""
    bound: Bound | None = None


AT_LEAST_ONE = Bound(low=1)
POSITIVE = Bound(low=0, above=True)
# An on_fail count: reask(N) and retry(N) ask again N more times.
POLICY_COUNT = AT_LEAST_ONE

_GENERATION = {
    "temperature": KeySpec(FLOAT, doc="sampling temperature", bound=Bound(0, 2)),
    "max_tokens": KeySpec(INT, doc="upper bound on generated tokens", bound=AT_LEAST_ONE),
    "timeout": KeySpec(DURATION, doc="per-call timeout, e.g. 30s", bound=POSITIVE),
    "cache": KeySpec(BOOL, doc="cache replies on disk (default: on at temperature 0)"),
}

_HISTORY_DOC = "earlier messages (list[Message]), sent between the system text and the template's message"

BLOCKS: dict[str, dict[str, KeySpec]] = {
    "model": {
        "provider": KeySpec("provider", required=True, doc="one of " + ", ".join(PROVIDERS)),
        "name": KeySpec(STR, doc="the provider's model name"),
        "base_url": KeySpec(STR, doc="endpoint of an OpenAI-compatible server"),
        "api_key_env": KeySpec("env_name", doc="name of the environment variable holding the key"),
        **_GENERATION,
        "retry": KeySpec(INT, doc="transport-level retries", bound=Bound(low=0)),
        "rate": KeySpec(RATE, doc="requests per period, e.g. 60/min", bound=AT_LEAST_ONE),
        "concurrency": KeySpec(INT, doc="calls in flight at once", bound=AT_LEAST_ONE),
        "fallback": KeySpec("model_refs", doc="models tried in order when this one fails"),
        "options": KeySpec(DictType(JSON), doc="passed to the provider as is"),
        "native_tools": KeySpec(BOOL, doc="false: agents describe their tools in text instead of sending "
                                          "them to the model (default: native, text once the server refuses)"),
    },
    "prompt": {
        "model": KeySpec("model_ref", doc="the model that answers (default: the model named `default`)"),
        "template": KeySpec("template", required=True, doc="Jinja2 template of the user message"),
        "system": KeySpec("template", doc="Jinja2 template of the system message"),
        "history": KeySpec("history", doc=_HISTORY_DOC),
        "check": KeySpec("checks", doc="expressions over `output` that must hold"),
        "on_fail": KeySpec("policy", doc="reask(N) | retry(N) | fallback | default(EXPR) | raise"),
        **_GENERATION,
    },
    "agent": {
        "model": KeySpec("model_ref", doc="the model that plans and answers (default: the model named `default`)"),
        "template": KeySpec("template", required=True, doc="Jinja2 template of the task"),
        "system": KeySpec("template", doc="Jinja2 template of the system message"),
        "history": KeySpec("history", doc=_HISTORY_DOC),
        "tools": KeySpec("tool_refs", doc="tools, retrievers, prompts or flows the agent may call"),
        "max_steps": KeySpec(INT, doc="upper bound on tool-calling rounds", bound=AT_LEAST_ONE),
        "check": KeySpec("checks", doc="expressions over `output` that must hold"),
        "on_fail": KeySpec("policy", doc="reask(N) | retry(N) | fallback | default(EXPR) | raise"),
        **_GENERATION,
    },
    "retriever": {
        "collection": KeySpec(STR, required=True, doc="Chroma collection name"),
        "k": KeySpec(INT, doc="number of passages returned", bound=AT_LEAST_ONE),
        "min_score": KeySpec(FLOAT, doc="passages scoring lower are dropped (scores are cosine similarities)",
                             bound=Bound(-1, 1)),
        "where": KeySpec(DictType(JSON), doc="metadata filter"),
        "store": KeySpec(STR, doc="folder of the Chroma store (default .fmflow/store)"),
        "embedding": KeySpec(STR, doc='embedding model (default "builtin:minilm")'),
        "mmr": KeySpec(BOOL, doc="diverse results (maximal marginal relevance) instead of the k closest"),
    },
    "test": {
        "flow": KeySpec("flow_ref", required=True, doc="the flow under test"),
        "input": KeySpec("inputs", doc="the flow's inputs"),
        "mock": KeySpec("mocks", doc="answers for calls, by callee name"),
        "models": KeySpec("model_scripts", doc="replies for models, by model name: each request takes the next"),
        "expect": KeySpec("expects", doc="expressions over `output` and `calls` that must hold"),
    },
    "eval": {
        "flow": KeySpec("flow_ref", required=True, doc="the flow evaluated"),
        "dataset": KeySpec("dataset", required=True, doc='the records: jsonl("path", type: T?), csv(…), parquet(…)'),
        "variants": KeySpec("prompt_versions", doc="prompt versions compared, e.g. [answer@1, answer@2]"),
        "models": KeySpec("model_refs", doc="models compared, e.g. [fast, local]"),
        "metrics": KeySpec("metrics", required=True, doc="{ name: expression over record and output }"),
    },
    # Read and typed by checks/pipelines.py.
    "pipeline": {
        "source": KeySpec("pipeline_source", required=True, doc="jsonl|csv|parquet(PATH, type: T) or files(GLOB)"),
        "steps": KeySpec("pipeline_steps", required=True, doc="[keep(…), drop(…), map(…), expand(…), dedupe(…), "
                         "sample(…), embed(…)]"),
        "sink": KeySpec("pipeline_sink", required=True, doc="jsonl|csv|parquet(PATH)"),
    },
}


def block_spec(decl: ast.Decl) -> dict[str, KeySpec] | None:
    return BLOCKS.get(decl.kind)


def out_of_bound(spec: KeySpec, value: object) -> bool:
    """Whether an evaluated value (a number, a duration in seconds, a rate) breaks ``spec``'s bound."""
    if spec.bound is None or isinstance(value, bool):
        return False
    number = value[0] if isinstance(value, tuple) and value else value
    return isinstance(number, (int, float)) and not spec.bound.allows(number)


def bound_message(what: str, spec: KeySpec, shown: str) -> str:
    unit = " per period" if spec.value is RATE else " seconds" if spec.value is DURATION else ""
    return f"{what} must be {spec.bound.describe()}{unit}, got {shown}"


def settings_problem(kind: str, name: str, values: dict[str, object]) -> str | None:
    """Why an evaluated setting of a ``kind`` block is out of its key's bound, or None.

    The runtime asks this of the values it evaluates (``env(…)`` is known only then).
    """
    for key, value in values.items():
        spec = BLOCKS.get(kind, {}).get(key)
        if spec is not None and out_of_bound(spec, value):
            shown = f"{value[0]}/{value[1]:g}s" if isinstance(value, tuple) else repr(value)
            return bound_message(f"'{key}' of {kind} '{name}'", spec, shown)
    return None


def check_block_keys(ctx: CheckContext) -> None:
    for decl in ctx.module.decls:
        spec = block_spec(decl)
        if spec is None:
            continue
        present = {e.key for e in decl.entries}
        for entry in decl.entries:
            if entry.key not in spec:
                ctx.diagnostics.add(
                    "E104", f"unknown key '{entry.key}' in {decl.kind} '{decl.name}'", entry.key_span,
                    suggestion_help(entry.key, spec) or f"{decl.kind} keys: {', '.join(spec)}")
        for key, key_spec in spec.items():
            if key_spec.required and key not in present:
                ctx.diagnostics.add(
                    "E104", f"{decl.kind} '{decl.name}' is missing the required key '{key}'", decl.name_span,
                    f"add '{key}: …' ({key_spec.doc})")
