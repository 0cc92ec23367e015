"""The HTTP app: one route per flow, the flow list, health, metrics and the OpenAPI document.

Routes (LANGUAGE.md §10):

- ``POST /flows/NAME``        inputs as a JSON object → ``{"output", "run_id"}``;
  422 naming each bad input, 500 with the error text;
- ``POST /flows/NAME/stream`` the same run as server-sent events (stream.py);
- ``GET /flows``              every flow with the JSON schemas of its inputs and output;
- ``GET /healthz``            liveness (never needs the token);
- ``GET /metrics``            Prometheus text (metrics.py);
- ``/openapi.json``, ``/docs`` each flow's request and response models.

The flow routes are plain Starlette routes that read and validate their
bodies themselves, not through FastAPI's body parameters: validation is
strict JSON (catalog.py), a bad request's 422 names each input in fmflow's
words, and FastAPI's per-request parameter machinery is skipped. Their
operations and models are written into the OpenAPI document by openapi.py.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import __version__
from ..runtime import RunOptions
from .auth import BearerAuth, BodyLimit
from .catalog import FlowCatalog, InvalidInputs, ServedFlow
from .metrics import ServeMetrics
from .openapi import flows_openapi
from .runs import FlowRunner
from .stream import stream_run

DEFAULT_MAX_BODY = 1024 * 1024


@dataclass
class ServeSettings:
    token: str | None = None                  # FMFLOW_SERVE_TOKEN: required bearer token, if any
    max_body: int = DEFAULT_MAX_BODY          # bytes; larger request bodies get 413


def build_app(catalog: FlowCatalog, options: RunOptions | None = None,
              settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving every flow of ``catalog`` with the run options of ``fmflow run``."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    runner = FlowRunner(options or RunOptions(), metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        cache = runner.open_shared_cache()
        try:
            yield
        finally:
            from ..providers import release_loop_resources

            await release_loop_resources()  # the providers' HTTP clients on the server's loop
            if cache is not None:
                cache.close()

    app = FastAPI(title="fmflow", version=__version__, lifespan=lifespan,
                  description="Flows served by `fmflow serve`: " + ", ".join(f.name for f in catalog))
    app.state.catalog, app.state.metrics, app.state.runner = catalog, metrics, runner
    for flow in catalog:
        _add_flow_routes(app, flow, runner)
    _add_service_routes(app, catalog, metrics)
    app.openapi = flows_openapi(app, catalog)
    reject = metrics.rejected.labels
    app.add_middleware(BodyLimit, limit=settings.max_body, on_reject=lambda why: reject(why).inc())
    if settings.token:  # added last: outermost, so an unauthorised request is refused before anything else
        app.add_middleware(BearerAuth, token=settings.token, on_reject=lambda why: reject(why).inc())
    return app


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json")


async def _read_inputs(request: Request, flow: ServedFlow, runner: FlowRunner, route: str) -> dict | Response:
    """The request's inputs, or the 422 that names each bad one."""
    try:
        return flow.parse_inputs(await request.body())
    except InvalidInputs as error:
        runner.rejected(flow, route)
        return _json(422, {"error": str(error), "inputs": [p.as_json() for p in error.problems]})


def _add_flow_routes(app: FastAPI, flow: ServedFlow, runner: FlowRunner) -> None:
    async def run(request: Request) -> Response:
        inputs = await _read_inputs(request, flow, runner, "run")
        if isinstance(inputs, Response):
            return inputs
        outcome = await runner.run(flow, inputs, "run")
        return _json(outcome.status, outcome.body)

    async def stream(request: Request) -> Response:
        inputs = await _read_inputs(request, flow, runner, "stream")
        if isinstance(inputs, Response):
            return inputs
        run_id = runner.new_run_id()
        events = stream_run(lambda on_text: runner.run(flow, inputs, "stream", on_text=on_text, run_id=run_id),
                            run_id)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # Plain Starlette routes: FastAPI's parameter machinery has nothing to do here (the body is read
    # and validated above) and costs a fraction of a millisecond per request. openapi.py describes them.
    app.add_route(f"/flows/{flow.name}", run, methods=["POST"], name=f"run {flow.name}", include_in_schema=False)
    app.add_route(f"/flows/{flow.name}/stream", stream, methods=["POST"], name=f"stream {flow.name}",
                  include_in_schema=False)


def _add_service_routes(app: FastAPI, catalog: FlowCatalog, metrics: ServeMetrics) -> None:
    @app.get("/flows", tags=["service"], summary="The served flows with their input and output schemas")
    async def list_flows() -> JSONResponse:
        return JSONResponse({"flows": [flow.describe() for flow in catalog]})

    @app.get("/healthz", tags=["service"], summary="Liveness: answers without a token")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "flows": len(catalog)})

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/flows/{name}", include_in_schema=False)
    @app.post("/flows/{name}/stream", include_in_schema=False)
    async def unknown_flow(name: str) -> JSONResponse:
        known = ", ".join(f.name for f in catalog) or "none"
        return JSONResponse({"error": f"no flow '{name}' (flows: {known})"}, status_code=404)
