"""Observing runs: the trace writer (JSONL, buffered, written off the event loop), the OTLP
export of its spans, and the views of a trace (a text tree and a self-contained HTML page)."""
