"""OpenTelemetry export: every span of a trace also goes out over OTLP (HTTP/protobuf).

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
is set; otherwise nothing of OpenTelemetry is imported. The spans are the
trace writer's records, already converted and masked (cleaning.py): what
leaves the process is exactly what the JSONL trace holds, never more.

- One OpenTelemetry trace per run, its id in the JSONL header (``trace_id``);
  span ids derive from it and the step's id, so parents link without
  keeping state, and each span keeps its real start and end.
- Attributes follow the GenAI semantic conventions: ``gen_ai.operation.name``
  (``chat``, ``execute_tool``, ``invoke_agent``, ``retrieval``,
  ``invoke_workflow``), ``gen_ai.provider.name`` (and the older
  ``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens``/``output_tokens``,
  ``gen_ai.response.finish_reasons``, ``gen_ai.request.temperature`` and
  ``max_tokens``; fmflow's own facts under ``fmflow.*``. A failed step has
  an error status.
- Message content (prompts, replies, tool arguments and results, queries)
  goes out only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
- A down or slow collector never slows a run: spans wait in the SDK's batch
  processor (a bounded queue, its own thread), each export is bounded by a
  short timeout, and the first failure prints one warning; later ones are
  silent.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import sys
import threading
from typing import Any

from .background import BACKGROUND

CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
EXPORT_TIMEOUT = 1.0     # seconds per export, unless the environment sets one
MAX_QUEUE = 4096         # spans waiting for export; beyond that they are dropped, never waited for

_EXPORTERS: dict[tuple, "OtlpExporter"] = {}
_LOCK = threading.Lock()

# fmflow span kinds → GenAI operation names.
_OPERATIONS = {"model": "chat", "tool": "execute_tool", "filter": "execute_tool", "agent": "invoke_agent",
               "retriever": "retrieval", "retrieval": "retrieval", "flow": "invoke_workflow"}


def exporter_from_env() -> "OtlpExporter | None":
    """The process's exporter for the endpoint the environment names; None when none is set."""
    endpoint = next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), None)
    if endpoint is None:
        return None
    capture = os.environ.get(CAPTURE_VARIABLE, "").strip().lower() == "true"
    key = (endpoint, capture)
    with _LOCK:
        exporter = _EXPORTERS.get(key)
        if exporter is None:
            exporter = _EXPORTERS[key] = OtlpExporter(endpoint, capture)
        return exporter


def span_id_of(trace_id: str, step_id: str) -> int:
    """The 64-bit OpenTelemetry span id of step ``step_id`` of the run ``trace_id``."""
    digest = hashlib.blake2b(f"{trace_id}/{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


class OtlpExporter:
    """Turns clean span records into OpenTelemetry spans and hands them to a batch processor."""

    def __init__(self, endpoint: str, capture_content: bool) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from .. import __version__

        for name in ("opentelemetry.exporter.otlp", "opentelemetry.sdk._shared_internal",
                     "opentelemetry.sdk.trace.export"):
            logging.getLogger(name).setLevel(logging.CRITICAL)   # failures are told once, below
        timeout = None if any(os.environ.get(v) for v in TIMEOUT_VARIABLES) else EXPORT_TIMEOUT
        self.endpoint = endpoint
        self.capture_content = capture_content
        self._stopped = False
        self._exporter = _WarnOnce(OTLPSpanExporter(timeout=timeout), endpoint)
        self._processor = BatchSpanProcessor(self._exporter, max_queue_size=MAX_QUEUE, schedule_delay_millis=500)
        self._resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "fmflow",
                                          "service.version": __version__})
        atexit.register(self.shutdown)
        BACKGROUND.at_terminate(self.shutdown)

    def span(self, writer, record: dict) -> None:
        """Export one clean span record of ``writer``'s run (on the trace writer's thread)."""
        try:
            self._processor.on_end(self._readable(writer, record))
        except Exception as error:   # an exporter must never break the trace it rides on
            self._exporter.warn(f"a span could not be exported ({type(error).__name__}: {error})")

    def shutdown(self) -> None:
        """Send what is queued (unless the collector already failed) and stop; once."""
        if self._stopped:
            return
        self._stopped = True
        if self._exporter.failed:
            self._exporter.stop()   # do not wait at exit for a collector that is down
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        return self._processor.force_flush(timeout_millis)

    # -- one span ----------------------------------------------------------

    def _readable(self, writer, record: dict):
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        trace_id = int(writer.trace_id, 16)
        context = SpanContext(trace_id, span_id_of(writer.trace_id, record["id"]), is_remote=False,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
        parent = None
        if record.get("parent"):
            parent = SpanContext(trace_id, span_id_of(writer.trace_id, record["parent"]), is_remote=False,
                                 trace_flags=TraceFlags(TraceFlags.SAMPLED))
        error = record.get("error")
        status = Status(StatusCode.ERROR, str(error)) if error is not None else Status(StatusCode.UNSET)
        events = [Event("fmflow.retry", {k: _attribute(v) for k, v in attempt.items() if v is not None})
                  for attempt in record.get("attempts") or [] if isinstance(attempt, dict)]
        kind = SpanKind.CLIENT if record.get("kind") == "model" else SpanKind.INTERNAL
        return ReadableSpan(
            name=span_name(record), context=context, parent=parent, resource=self._resource,
            attributes=attributes(record, writer, self.capture_content), events=events, kind=kind,
            status=status, start_time=int(record["start"] * 1e9), end_time=int(record["end"] * 1e9),
            instrumentation_scope=InstrumentationScope("fmflow"))


def span_name(record: dict) -> str:
    kind, name = record.get("kind"), record.get("name")
    operation = _OPERATIONS.get(kind)
    if kind == "model":
        return f"chat {record.get('model') or name}"
    if operation is not None:
        return f"{operation} {name}"
    return f"{kind} {name}"


def attributes(record: dict, writer, capture: bool) -> dict[str, Any]:
    """The span's attributes: GenAI conventions where they apply, fmflow.* for the rest."""
    kind, name = record.get("kind"), record.get("name")
    out: dict[str, Any] = {"fmflow.kind": kind, "fmflow.run_id": writer.run_id}
    if record.get("line") is not None:
        out["fmflow.line"] = record["line"]
    if kind in _OPERATIONS:
        out["gen_ai.operation.name"] = _OPERATIONS[kind]
    if kind == "model":
        _model_attributes(record, out, capture)
    elif kind in ("tool", "filter"):
        out.update({"gen_ai.tool.name": name, "gen_ai.tool.type": "function"})
        if capture:
            out.update({"gen_ai.tool.call.arguments": _json(record.get("inputs")),
                        "gen_ai.tool.call.result": _json(record.get("output"))})
    elif kind == "agent":
        out["gen_ai.agent.name"] = name
    elif kind in ("retriever", "retrieval"):
        out["gen_ai.data_source.id"] = record.get("collection") or name
        query = (record.get("inputs") or {}).get("query")
        if capture and query is not None:
            out["gen_ai.retrieval.query.text"] = _attribute(query)
    elif kind == "flow":
        out["gen_ai.workflow.name"] = name
    elif kind == "prompt":
        out["gen_ai.prompt.name"] = name
    if record.get("error") is not None:
        out["error.type"] = record.get("error_type") or "_OTHER"
    if record.get("unfinished"):
        out["fmflow.unfinished"] = True
    return {k: v for k, v in out.items() if v is not None}


def _model_attributes(record: dict, out: dict, capture: bool) -> None:
    provider = record.get("provider")
    out.update({
        "gen_ai.provider.name": provider, "gen_ai.system": provider,
        "gen_ai.request.model": record.get("model"), "gen_ai.response.model": record.get("response_model"),
        "gen_ai.usage.input_tokens": record.get("tokens_in"), "gen_ai.usage.output_tokens": record.get("tokens_out"),
        "gen_ai.request.temperature": record.get("temperature"),
        "gen_ai.request.max_tokens": record.get("max_tokens"),
        "fmflow.model": record.get("name"), "fmflow.cache_hit": record.get("cache_hit"),
        "fmflow.cost_usd": record.get("cost"), "fmflow.retries": record.get("retries"),
    })
    if record.get("finish_reason"):
        out["gen_ai.response.finish_reasons"] = [record["finish_reason"]]
    prompt = record.get("prompt")
    if isinstance(prompt, dict) and prompt.get("name"):
        out["gen_ai.prompt.name"] = prompt["name"]
        out["fmflow.prompt.version"] = prompt.get("version")
    if capture:
        messages = (record.get("inputs") or {}).get("messages") or []
        out["gen_ai.input.messages"] = _json([_message(m) for m in messages if isinstance(m, dict)])
        if record.get("output") is not None:
            out["gen_ai.output.messages"] = _json([{"role": "assistant", "finish_reason": record.get("finish_reason"),
                                                    "parts": [{"type": "text", "content": record["output"]}]}])


def _message(message: dict) -> dict:
    return {"role": message.get("role"), "parts": [{"type": "text", "content": message.get("content")}]}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _attribute(value: Any) -> Any:
    """A value OpenTelemetry takes as an attribute: scalars as they are, the rest as JSON."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return _json(value)


class _WarnOnce:
    """The OTLP exporter, saying once on stderr that the collector cannot be reached."""

    def __init__(self, inner, endpoint: str) -> None:
        from ..secrets import mask_url_credentials

        self._inner = inner
        self.endpoint = mask_url_credentials(endpoint)
        self.failed = False
        self._lock = threading.Lock()

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self._inner.export(spans)
        except Exception as error:
            self.warn(f"{type(error).__name__}: {error}")
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.warn("the collector did not accept the spans")
        return result

    def warn(self, cause: str) -> None:
        with self._lock:
            if self.failed:
                return
            self.failed = True
        print(f"fmflow: warning: cannot export traces to {self.endpoint} ({cause}); the runs go on, their "
              "traces stay in .fmflow/runs/ (further export failures are not shown)", file=sys.stderr)

    def stop(self) -> None:
        self._inner.shutdown()

    def shutdown(self) -> None:
        try:
            self._inner.shutdown()
        except Exception:
            pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
