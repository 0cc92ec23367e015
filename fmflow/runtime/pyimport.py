"""python("module:attr"): import a tool's implementation, the flow's folder first.

Two flows in different folders may each have a ``my_tools.py``; a module
found in the flow's own folder is therefore loaded from that file under a
private name, so one flow never gets the other's module from sys.modules.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import threading
from typing import Any, Callable

from .errors import FlowRuntimeError, describe

_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}
# What a module may raise while it is imported; KeyboardInterrupt too (tools import on a worker
# thread, where no Ctrl-C arrives), so that only a real Ctrl-C ends a run.
_IMPORT_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


def is_imported(target: str, folder: str) -> bool:
    """Whether the module of ``module:attr`` was imported for ``folder`` already (loading is then quick)."""
    return (os.path.abspath(folder), target.partition(":")[0]) in _loaded


def load_object(target: str, folder: str) -> Any:
    """The object named by ``module:attr``, importing ``module`` from ``folder`` first."""
    module_name, _, attr_path = target.partition(":")
    value: Any = _import(module_name, os.path.abspath(folder))
    for part in attr_path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise FlowRuntimeError(f"python(\"{target}\"): module '{module_name}' has no attribute "
                                   f"'{attr_path}'") from None
    return value


def load_callable(target: str, folder: str) -> Callable[..., Any]:
    """The callable named by ``module:attr`` (see load_object)."""
    value = load_object(target, folder)
    if not callable(value):
        raise FlowRuntimeError(f"python(\"{target}\") is a {type(value).__name__}, not a function")
    return value


def _import(module_name: str, folder: str):
    key = (folder, module_name)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        module = _from_folder(module_name, folder) or _from_path(module_name, folder)
        _loaded[key] = module
        return module


def _from_folder(module_name: str, folder: str):
    """A top-level module file (or package) that sits in the flow's folder."""
    head, _, rest = module_name.partition(".")
    file = os.path.join(folder, head + ".py")
    package = os.path.join(folder, head, "__init__.py")
    if rest or not (os.path.isfile(file) or os.path.isfile(package)):
        return None
    location = file if os.path.isfile(file) else package
    private = f"_fmflow_user_{hashlib.sha1(folder.encode()).hexdigest()[:10]}_{head}"
    spec = importlib.util.spec_from_file_location(private, location)
    module = importlib.util.module_from_spec(spec)
    sys.modules[private] = module
    try:
        spec.loader.exec_module(module)
    except _IMPORT_FAILURES as error:   # sys.exit() at import must not end fmflow
        sys.modules.pop(private, None)
        raise FlowRuntimeError(f"importing {location} failed: {describe(error)}") from error
    return module


def _from_path(module_name: str, folder: str):
    """Anything else (an installed package, a dotted module) through the import system."""
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise FlowRuntimeError(f"cannot import module '{module_name}' (looked in {folder} and on the Python "
                               f"path): {error}") from error
    except _IMPORT_FAILURES as error:
        raise FlowRuntimeError(f"importing module '{module_name}' failed: {describe(error)}") from error
