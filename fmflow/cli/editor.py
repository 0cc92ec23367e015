"""`fmflow lsp`: the language server for editors, over stdio."""

from __future__ import annotations

import os
import sys

from .common import EXIT_OK


def cmd_lsp(args) -> int:
    from ..lsp.server import serve_stdio  # pygls loads only for this command

    # The protocol gets its own copy of stdout; whatever else would print there
    # (a warning, a stray print in a user's tool module) goes to stderr instead
    # of breaking the stream of messages.
    sys.stdout.flush()
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        serve_stdio(sys.stdin.buffer, protocol_out)
    finally:
        protocol_out.close()
    return EXIT_OK


def add_commands(commands) -> None:
    lsp = commands.add_parser("lsp", help="run the language server (LSP over stdio) for editors")
    lsp.add_argument("--stdio", action="store_true",
                     help="speak over stdin and stdout (the only transport; accepted because editors pass it)")
    lsp.set_defaults(handler=cmd_lsp)
