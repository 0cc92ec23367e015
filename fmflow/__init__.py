"""fmflow: declarative, checked, versioned flows for foundation-model applications.

The public API imports lazily so that ``fmflow check`` starts fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["parse", "check", "check_text", "load", "run_tests", "__version__"]


def parse(text: str, path: str = "<string>"):
    """Parse ``.fmflow`` text into a Module; raises FmflowSyntaxError on syntax errors."""
    from .api import parse as _parse

    return _parse(text, path)


def check(path):
    """Check a ``.fmflow`` file and the files it imports; returns its diagnostics."""
    from .api import check as _check

    return _check(path)


def check_text(text: str, path: str = "<string>"):
    """Check ``.fmflow`` text as if it were the file at ``path``."""
    from .api import check_text as _check_text

    return _check_text(text, path)


def load(path, flow=None, **options):
    """Check a ``.fmflow`` file and return a runnable Flow (``.run(**inputs)``, ``await .arun(…)``)."""
    from .api import load as _load

    return _load(path, flow, **options)


def run_tests(path, **options):
    """Run the ``test`` blocks of a ``.fmflow`` file as `fmflow test` does; returns a TestReport."""
    from .api import run_tests as _run_tests

    return _run_tests(path, **options)
