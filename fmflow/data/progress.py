"""Progress of a data job on stderr, and its summary.

On a terminal: one line redrawn in place (a bar, records done, rate, ETA,
failures), at most ten times a second. Elsewhere (a log file, CI): a plain
line every ``interval`` seconds, so that logs stay readable.
"""

from __future__ import annotations

import sys
import time

BAR = 24


class ProgressReporter:
    def __init__(self, total: int, done_before: int = 0, stream=None, interval: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total = total
        self.done_before = done_before
        self.interval = interval if interval is not None else (0.1 if self.tty else 10.0)
        self.started = time.monotonic()
        self._next = self.started + (0.0 if self.tty else self.interval)
        self._drawn = False

    def __call__(self, totals) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            self._show(totals, now)

    def finish(self, totals) -> None:
        if self.tty:
            self._show(totals, time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, totals, now: float) -> None:
        done, failed = totals.done, totals.failed
        elapsed = max(now - self.started, 1e-9)
        rate = (done - self.done_before) / elapsed
        left = max(self.total - done, 0)
        eta = _duration(left / rate) if rate > 0 else "?"
        share = done / self.total if self.total else 1.0
        counts = f"{done:,}/{self.total:,} ({share:.0%})  {rate:,.0f} records/s  ETA {eta}"
        if failed:
            counts += f"  {failed:,} failed"
        if self.tty:
            filled = int(BAR * min(share, 1.0))
            self.stream.write(f"\r\x1b[K[{'#' * filled}{'.' * (BAR - filled)}] {counts}")
        else:
            self.stream.write(f"fmflow: {counts}\n")
        self.stream.flush()


def summary(result) -> str:
    """The end-of-job lines: records ok and failed, cache hits, tokens, cost, wall time."""
    usage = result.usage
    lines = [f"{result.records:,} records: {result.ok:,} ok, {result.failed:,} failed"
             + (f" ({result.done_before:,} finished before this run)" if result.done_before else "")]
    cost = f", ${usage.cost:.4f}" if usage.cost else ""
    lines.append(f"model calls: {usage.calls:,} ({usage.cached:,} cached); tokens: {usage.tokens_in:,} in, "
                 f"{usage.tokens_out:,} out{cost}")
    if getattr(result, "budget", None) is not None:
        lines.append(f"budget: ${usage.cost:.4f} of ${result.budget:.4f} spent"
                     + (f"; reached: {result.stopped:,} records were not run (continue with --resume and a "
                        "larger --budget)" if result.stopped else ""))
    rate = result.ran / result.seconds if result.seconds > 0 else 0.0
    lines.append(f"time: {_duration(result.seconds)} ({rate:,.0f} records/s, engine {result.engine}) "
                 f"-> {result.output}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
