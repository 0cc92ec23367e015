"""Cassettes: the replies of real models, recorded by `fmflow test --record` and replayed after.

A cassette sits beside its flow file (``NAME.fmflow.cassette.jsonl``), one
JSON line per reply: the test, the call (``prompt answer``), the model, the
request's key and messages, and the reply as a replay item (text, tool
calls, tokens). The key is the response cache's ``cache_key`` of everything
that shapes an answer (provider, model, settings, messages, output schema),
with an agent's tool specs among the settings. Replies of one key are
replayed in the order they were recorded, per test; when a test asks the
same request more often than it was recorded, the last reply is given again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

from ..providers.base import ChatRequest, ChatResponse, ModelConfig
from .cache import cache_key, model_settings
from .errors import NotMocked

SUFFIX = ".cassette.jsonl"
MAX_BYTES = 256 * 1024 * 1024


class CassetteMiss(NotMocked):
    """A request that the cassette does not hold."""


def cassette_path(flow_file: str) -> str:
    return flow_file + SUFFIX


def request_key(config: ModelConfig, request: ChatRequest) -> str:
    """The response cache's key, with the tools offered and without the server's address: a cassette
    recorded against one server replays wherever the tests run."""
    settings = {**model_settings(config), "tools": [asdict(tool) for tool in request.tools or []]}
    settings.pop("base_url")
    return cache_key(config.provider, config.model, settings, request.messages, request.json_schema)


def reply_item(response: ChatResponse) -> dict[str, Any]:
    """A reply as a replay item (providers.replay.build_response turns it back)."""
    item: dict[str, Any] = {"text": response.text}
    if response.tool_calls:
        item["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls]
    for key in ("tokens_in", "tokens_out", "cost", "model"):
        if getattr(response, key) is not None:
            item[key] = getattr(response, key)
    return item


class Cassette:
    """The cassette of one flow file: read to replay, or filled while recording and then saved."""

    def __init__(self, path: str, record: bool = False, rerecorded: set[str] | None = None) -> None:
        """``rerecorded``: when recording, the tests recorded again; the others' replies are kept
        (None: every test is recorded again)."""
        self.path = path
        self.record = record
        if not record:
            self.entries: list[dict[str, Any]] = _read(path)
        elif rerecorded is None:
            self.entries = []
        else:
            self.entries = [e for e in _read(path) if e["test"] not in rerecorded]
        self.kept = len(self.entries)
        self._by_key: dict[tuple[str, str], list[dict]] = {}
        for entry in self.entries:
            self._by_key.setdefault((entry["test"], entry["key"]), []).append(entry)

    @property
    def exists(self) -> bool:
        return self.record or os.path.isfile(self.path)

    def add(self, test: str, call: str, config: ModelConfig, request: ChatRequest, response: ChatResponse,
            secrets=None) -> None:
        """Record a reply; ``secrets`` (the run's SecretMasker) masks what the file shows, as in the cache."""
        shown = {"messages": request.messages, "reply": reply_item(response)}
        if secrets is not None:
            shown = secrets.mask_data(shown)
        entry = {"test": test, "call": call, "model": config.name, "key": request_key(config, request),
                 "request": {"messages": shown["messages"]}, "reply": shown["reply"]}
        self.entries.append(entry)
        self._by_key.setdefault((test, entry["key"]), []).append(entry)

    def reply(self, test: str, call: str, config: ModelConfig, request: ChatRequest, occurrence: int) -> dict:
        """The recorded reply to ``request``'s ``occurrence``-th asking (from 0) in ``test``."""
        found = self._by_key.get((test, request_key(config, request)))
        if found:
            return found[min(occurrence, len(found) - 1)]["reply"]
        raise CassetteMiss(self._miss(test, call, config, request))

    def _miss(self, test: str, call: str, config: ModelConfig, request: ChatRequest) -> str:
        from ..providers.replay import closest_difference

        same_call = [e["request"]["messages"] for e in self.entries if e["test"] == test and e["call"] == call]
        if not same_call:
            why = f"it holds no request of {call} in test '{test}'"
        elif request.messages in same_call:
            why = ("the messages were recorded, with other settings: provider, model, temperature, max_tokens, "
                   "options, output schema or tools")
        else:
            why = closest_difference(request.messages, same_call)
        return (f"{call} (model {config.name}) sent a request that {os.path.basename(self.path)} does not hold "
                f"({why}); record it again with `fmflow test --record`")

    def save(self) -> int:
        """Write what was recorded and kept (atomically); returns the replies recorded by this run.

        A cassette left with nothing to hold is removed."""
        from ..files import write_atomically

        if not self.entries:
            if os.path.isfile(self.path):
                os.remove(self.path)
            return 0
        text = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in self.entries)
        write_atomically(self.path, text)
        return len(self.entries) - self.kept


def _read(path: str) -> list[dict[str, Any]]:
    from ..files import UnreadableFile, read_regular_file

    if not os.path.lexists(path):
        return []
    try:
        text = read_regular_file(path, MAX_BYTES, "cassettes").decode("utf-8")
    except (UnreadableFile, UnicodeDecodeError) as error:
        raise NotMocked(f"{error}; record it again with `fmflow test --record`") from None
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not all(isinstance(entry.get(k), str) for k in ("test", "call", "key")) \
                    or not isinstance(entry.get("reply"), dict):
                raise ValueError("a line needs test, call, key and reply")
            entry.setdefault("request", {"messages": []})
        except (ValueError, AttributeError) as error:
            raise NotMocked(f"{path}:{n}: not a cassette line ({error}); record it again with "
                            "`fmflow test --record`") from None
        entries.append(entry)
    return entries
