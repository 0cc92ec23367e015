"""How `fmflow test` answers model requests that no mock took.

In order: the test's ``models:`` script for that model (each request takes
the next reply); else the file's cassette (replayed, or, with ``--record``,
the real model asked and its reply recorded); else the test fails, naming
the prompt or agent. Everything above the provider — rendering, parsing,
``check:``, ``on_fail``, agent rounds — runs for real.
"""

from __future__ import annotations

from typing import Any

from .. import ast
from ..providers import ChatRequest, ChatResponse, ModelConfig, Provider, get_provider
from ..providers.replay import build_response
from .cassette import Cassette
from .errors import NotMocked


class ScriptExhausted(NotMocked):
    """A scripted model was asked once more than the test gives it replies."""


class TestModels:
    """The model stand-ins of one run of one test."""

    def __init__(self, test: str, scripts: dict[tuple[str, str], list[Any]], cassette: Cassette | None = None,
                 secrets=None) -> None:
        self.test = test
        self.scripts = scripts            # ModelConfig.key → replies
        self.cassette = cassette
        self.secrets = secrets            # the run's SecretMasker: a cassette never holds what a trace may not
        self._taken: dict[tuple[str, str], int] = {}
        self._asked: dict[str, int] = {}  # cassette key → times asked in this test

    def provider(self, config: ModelConfig, decl: ast.Decl) -> Provider:
        call = f"{decl.kind} '{decl.name}'"
        if config.key in self.scripts:
            return _Scripted(self, call)
        if self.cassette is not None and self.cassette.exists:
            return _Recording(self, call) if self.cassette.record else _Replaying(self, call)
        raise NotMocked(f"{call} is called but not mocked, and its model '{config.name}' is not scripted; add "
                        f"`{decl.name}: …` to the test's mock, script the model in `models: {{ {config.name}: "
                        f"[…] }}`, or record real replies with `fmflow test --record`")

    def next_reply(self, config: ModelConfig, call: str) -> tuple[Any, str]:
        replies = self.scripts[config.key]
        n = self._taken.get(config.key, 0)
        self._taken[config.key] = n + 1
        if n >= len(replies):
            raise ScriptExhausted(f"model '{config.name}' has no more scripted replies: test '{self.test}' gives "
                                  f"{len(replies)}, and {call} asked for reply {n + 1}")
        return replies[n], f"reply {n + 1} scripted for model '{config.name}' in test '{self.test}'"

    def asked(self, key: str) -> int:
        n = self._asked.get(key, 0)
        self._asked[key] = n + 1
        return n


class _StandIn(Provider):
    """A provider for one call of one test."""

    def __init__(self, models: TestModels, call: str) -> None:
        self.models, self.call = models, call


class _Scripted(_StandIn):
    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        item, where = self.models.next_reply(config, self.call)
        return await build_response(item, config, request, where=where)


class _Replaying(_StandIn):
    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        from .cassette import request_key

        models = self.models
        occurrence = models.asked(request_key(config, request))
        item = models.cassette.reply(models.test, self.call, config, request, occurrence)
        return await build_response(item, config, request, where=f"{models.cassette.path}: {self.call}")


class _Recording(_StandIn):
    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        response = await get_provider(config.provider).complete(config, request)
        self.models.cassette.add(self.models.test, self.call, config, request, response, self.models.secrets)
        return response
