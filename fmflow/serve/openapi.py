"""The OpenAPI document: FastAPI's (the service routes), plus an operation per flow route.

The flow routes are plain Starlette routes that read their bodies
themselves (strict validation, fmflow's error words), so FastAPI does not
know them; their operations are written here, with the flows' request and
response models in ``components/schemas``, generated together by pydantic
so that two files' types of the same name get distinct, stable names.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .catalog import FlowCatalog


class InputProblemBody(BaseModel):
    input: str | None
    message: str


class InvalidInputsBody(BaseModel):
    """422: the body is not a valid set of the flow's inputs; each problem is listed."""

    error: str
    inputs: list[InputProblemBody]


class FlowErrorBody(BaseModel):
    """500: the flow failed; ``error`` says where and why, ``run_id`` names its trace."""

    error: str
    run_id: str | None


_EVENTS = ("Server-sent events: `start` {run_id}; `text` {text} for each piece of the final answer; "
           "`restart` {} when a model call is tried again (drop the text so far); then `result` "
           "{output, run_id} or `error` {error, run_id}.")


def flows_openapi(app: FastAPI, catalog: FlowCatalog) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: builds the document once, on first request."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            _add_flow_models(document, catalog)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


def _add_flow_models(document: dict[str, Any], catalog: FlowCatalog) -> None:
    keys: list[tuple[type[BaseModel], str]] = [(InvalidInputsBody, "serialization"), (FlowErrorBody, "serialization")]
    for flow in catalog:
        keys += [(flow.request_model, "validation"), (flow.response_model, "serialization")]
    refs, top = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    document.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
    invalid, failed = refs[(InvalidInputsBody, "serialization")], refs[(FlowErrorBody, "serialization")]
    errors = {
        "422": {"description": "Invalid inputs, each named", "content": {"application/json": {"schema": invalid}}},
        "500": {"description": "The flow failed", "content": {"application/json": {"schema": failed}}},
    }
    paths = document.setdefault("paths", {})
    for flow in catalog:
        body = {"required": True, "content": {"application/json": {"schema": refs[(flow.request_model, "validation")]}}}
        output = refs[(flow.response_model, "serialization")]
        paths[f"/flows/{flow.name}"] = {"post": {
            "tags": ["flows"], "summary": f"Run flow {flow.name}", "operationId": f"run_{flow.name}",
            "requestBody": body,
            "responses": {"200": {"description": "The flow's output and the id of its run's trace",
                                  "content": {"application/json": {"schema": output}}}, **errors}}}
        paths[f"/flows/{flow.name}/stream"] = {"post": {
            "tags": ["flows"], "summary": f"Run flow {flow.name}, streaming its answer (server-sent events)",
            "operationId": f"stream_{flow.name}", "requestBody": body,
            "responses": {"200": {"description": _EVENTS,
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          "422": errors["422"]}}}
