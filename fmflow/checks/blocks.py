"""E104 for declaration blocks: which keys each kind of block takes.

The table is shared: the type checker reads ``value`` to check each entry,
and the runtime reads the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ast
from ..diagnostics import suggestion_help
from ..types import BOOL, DURATION, FLOAT, INT, RATE, STR, DictType, JSON, Type
from .context import CheckContext

PROVIDERS = ("openai", "ollama", "hf", "langchain", "builtin", "replay")


@dataclass(frozen=True)
class KeySpec:
    """A block key: the Type its value must have, or a special kind of value.

    Special kinds: ``provider``, ``model_ref``, ``model_refs``, ``tool_refs``,
    ``template``, ``checks``, ``policy``, ``flow_ref``, ``inputs``, ``mocks``,
    ``expects``.
    """

    value: Type | str
    required: bool = False
    doc: str = ""


_GENERATION = {
    "temperature": KeySpec(FLOAT, doc="sampling temperature"),
    "max_tokens": KeySpec(INT, doc="upper bound on generated tokens"),
    "timeout": KeySpec(DURATION, doc="per-call timeout, e.g. 30s"),
    "cache": KeySpec(BOOL, doc="cache replies on disk (default: on at temperature 0)"),
}

BLOCKS: dict[str, dict[str, KeySpec]] = {
    "model": {
        "provider": KeySpec("provider", required=True, doc="one of " + ", ".join(PROVIDERS)),
        "name": KeySpec(STR, doc="the provider's model name"),
        "base_url": KeySpec(STR, doc="endpoint of an OpenAI-compatible server"),
        "api_key_env": KeySpec(STR, doc="name of the environment variable holding the key"),
        **_GENERATION,
        "retry": KeySpec(INT, doc="transport-level retries"),
        "rate": KeySpec(RATE, doc="requests per period, e.g. 60/min"),
        "concurrency": KeySpec(INT, doc="calls in flight at once"),
        "fallback": KeySpec("model_refs", doc="models tried in order when this one fails"),
        "options": KeySpec(DictType(JSON), doc="passed to the provider as is"),
    },
    "prompt": {
        "model": KeySpec("model_ref", doc="the model that answers (default: the model named `default`)"),
        "template": KeySpec("template", required=True, doc="Jinja2 template of the user message"),
        "system": KeySpec("template", doc="Jinja2 template of the system message"),
        "check": KeySpec("checks", doc="expressions over `output` that must hold"),
        "on_fail": KeySpec("policy", doc="reask(N) | retry(N) | fallback | default(EXPR) | raise"),
        **_GENERATION,
    },
    "agent": {
        "model": KeySpec("model_ref", doc="the model that plans and answers (default: the model named `default`)"),
        "template": KeySpec("template", required=True, doc="Jinja2 template of the task"),
        "system": KeySpec("template", doc="Jinja2 template of the system message"),
        "tools": KeySpec("tool_refs", doc="tools, retrievers, prompts or flows the agent may call"),
        "max_steps": KeySpec(INT, doc="upper bound on tool-calling rounds"),
        "check": KeySpec("checks", doc="expressions over `output` that must hold"),
        "on_fail": KeySpec("policy", doc="reask(N) | retry(N) | fallback | default(EXPR) | raise"),
        **_GENERATION,
    },
    "retriever": {
        "collection": KeySpec(STR, required=True, doc="Chroma collection name"),
        "k": KeySpec(INT, doc="number of passages returned"),
        "min_score": KeySpec(FLOAT, doc="passages scoring lower are dropped"),
        "where": KeySpec(DictType(JSON), doc="metadata filter"),
        "store": KeySpec(STR, doc="folder of the Chroma store (default .fmflow/store)"),
        "embedding": KeySpec(STR, doc='embedding model (default "builtin:minilm")'),
        "mmr": KeySpec(BOOL, doc="diverse results (maximal marginal relevance) instead of the k closest"),
    },
    "test": {
        "flow": KeySpec("flow_ref", required=True, doc="the flow under test"),
        "input": KeySpec("inputs", doc="the flow's inputs"),
        "mock": KeySpec("mocks", doc="answers for calls, by callee name"),
        "expect": KeySpec("expects", doc="expressions over `output` that must hold"),
    },
}


def block_spec(decl: ast.Decl) -> dict[str, KeySpec] | None:
    return BLOCKS.get(decl.kind)


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
