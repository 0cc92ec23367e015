"""`fmflow serve`: every flow of some files as an HTTP service (FastAPI on uvicorn).

catalog.py (the served flows and their request/response models) → runs.py
(one request's run, metrics, errors as outcomes) → app.py (routes), with
stream.py (server-sent events), openapi.py, metrics.py (Prometheus, one
registry per app), auth.py (bearer token, body limit) and server.py
(uvicorn, graceful shutdown). Importing this package imports FastAPI: the
CLI imports it only inside the `serve` command.
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, ServeSettings, build_app
from .catalog import FlowCatalog, FlowNameClash, ServedFlow
from .server import ServerSettings, is_loopback, run_server

__all__ = ["DEFAULT_MAX_BODY", "FlowCatalog", "FlowNameClash", "ServeSettings", "ServedFlow", "ServerSettings",
           "build_app", "is_loopback", "run_server"]
