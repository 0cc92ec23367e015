"""Running the app under uvicorn: one process, one worker, one event loop.

One loop because the models' `concurrency` and `rate` are kept per loop
(runtime/limits.py): every request then shares them. On SIGTERM (or
Ctrl-C) uvicorn stops accepting connections and lets the requests in
flight finish, for at most ``grace`` seconds; runs still going then are
cancelled, which closes their traces as cancelled. The process exits 0.
"""

from __future__ import annotations

import copy
import ipaddress
import signal
import socket
import sys
from dataclasses import dataclass

from fastapi import FastAPI

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000                     # 0: any free port (printed at start)
    grace: float = 30.0                  # seconds in-flight requests get to finish on shutdown
    access_log: bool = True


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_server(app: FastAPI, settings: ServerSettings, announce: str) -> None:
    """Serve until SIGTERM or Ctrl-C; ``announce`` is printed with the address once listening."""
    import uvicorn

    config = uvicorn.Config(app, host=settings.host, port=settings.port, workers=1, lifespan="on",
                            access_log=settings.access_log, timeout_graceful_shutdown=settings.grace,
                            log_config=_log_config(uvicorn), server_header=False)
    sock = listen(settings.host, settings.port)  # bound here so that port 0 can be reported
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"fmflow: {announce} on http://{url_host}:{port} (API docs: /docs)", file=sys.stderr, flush=True)
    server = uvicorn.Server(config)
    with _stop_on_signals(server):
        server.run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


class _stop_on_signals:
    """SIGTERM and SIGINT ask the server to stop, also before and after uvicorn's own handlers.

    uvicorn installs its handlers only once it runs, and when it is done it
    restores the previous ones and raises the stopping signal again so that
    the process dies of it. With these in place, a signal that comes during
    start-up stops the server as soon as it is up, and the raised-again one
    is a no-op: a graceful stop exits 0.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, server) -> None:
        self.server = server

    def _stop(self, _signum, _frame) -> None:
        self.server.should_exit = True

    def __enter__(self) -> None:
        self._previous = {sig: signal.signal(sig, self._stop) for sig in self.SIGNALS}

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _log_config(uvicorn) -> dict:
    """uvicorn's logging, with fmflow.serve's messages (failed runs) beside its own."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["fmflow.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
