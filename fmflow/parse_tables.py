"""The parser's LALR tables, kept between runs as JSON in a private per-user folder.

Building the tables from grammar/fmflow.lark takes about half a second;
loading them takes about 30 ms, which is what keeps `fmflow check` fast.
Lark's own cache (``cache=True``) pickles them into the shared temp folder
under a predictable name, so a file planted there would run code in every
fmflow command. Here the tables are stored as JSON (data, never code) and
only in a folder that the user alone can write: ``$XDG_CACHE_HOME/fmflow``
or ``~/.cache/fmflow``, created 0700. The folder and the file are checked
through open descriptors (a directory, not a link, owned by the user, not
writable by group or others; the file likewise and a regular file); when
any check fails the tables are built in memory and nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

FORMAT = 1
MAX_TABLE_BYTES = 8 * 1024 * 1024  # the tables are about 170 KB; anything far larger is not ours
_INT_KEYS = "\x00int-keys"  # JSON keys are strings; Lark's tables use int keys


def cache_folder() -> Path | None:
    """Where the tables are kept: ``$XDG_CACHE_HOME/fmflow``, else ``~/.cache/fmflow``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        try:
            base = os.path.join(os.path.expanduser("~"), ".cache")
        except (KeyError, RuntimeError):
            return None
        if not os.path.isabs(base):
            return None
    return Path(base) / "fmflow"


def table_key(grammar: str, options: dict[str, Any]) -> str:
    """Changes with the grammar, the build options, Lark's version and Python's."""
    import lark

    text = json.dumps([FORMAT, grammar, options, lark.__version__, sys.version_info[:2]], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_or_build(key: str, build: Callable[[], Any], load: Callable[[dict], Any],
                  folder: Path | None = None) -> Any:
    """``load(tables)`` from the private cache, else ``build()`` and store its tables."""
    folder = cache_folder() if folder is None else folder
    name = f"parser-{key[:32]}.json"
    with _private_folder(folder) as dir_fd:
        tables = _read_tables(dir_fd, name, key) if dir_fd is not None else None
        if tables is not None:
            try:
                return load(tables)
            except Exception:  # tables of another Lark version or a damaged file: build anew
                pass
        parser = build()
        if dir_fd is not None:
            _write_tables(dir_fd, name, key, parser)
        return parser


# ------------------------------------------------------------------ folder

def _private(st: os.stat_result, kind: Callable[[int], bool]) -> bool:
    owner_ok = not hasattr(os, "geteuid") or st.st_uid == os.geteuid()
    return kind(st.st_mode) and owner_ok and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@contextmanager
def _private_folder(folder: Path | None) -> Iterator[int | None]:
    """A descriptor of the cache folder when it is private to the user, else None."""
    if folder is None or not hasattr(os, "O_DIRECTORY") or not hasattr(os, "O_NOFOLLOW"):
        yield None
        return
    try:
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        yield None
        return
    try:
        yield fd if _private(os.fstat(fd), stat.S_ISDIR) else None
    finally:
        os.close(fd)


# ------------------------------------------------------------------ tables

def _read_tables(dir_fd: int, name: str, key: str) -> dict | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _private(st, stat.S_ISREG) or st.st_size > MAX_TABLE_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            document = json.loads(f.read(MAX_TABLE_BYTES), object_hook=_decode)
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("key") != key:
        return None
    tables = document.get("tables")
    return tables if isinstance(tables, dict) else None


def _write_tables(dir_fd: int, name: str, key: str, parser: Any) -> None:
    from lark.grammar import Rule
    from lark.lark import _LOAD_ALLOWED_OPTIONS
    from lark.lexer import TerminalDef

    data, memo = parser.memo_serialize([TerminalDef, Rule])
    # What Lark.save leaves out: the options given again at load (callbacks, post-lexer).
    data["options"] = {k: v for k, v in data["options"].items() if k not in _LOAD_ALLOWED_OPTIONS}
    try:
        text = json.dumps({"format": FORMAT, "key": key, "tables": _encode({"data": data, "memo": memo})},
                          separators=(",", ":"))
    except (TypeError, ValueError):  # something not plain data: keep no cache rather than a wrong one
        return
    temporary = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except OSError:
            pass


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {_INT_KEYS: [[k, _encode(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: dict) -> Any:
    if len(value) == 1 and _INT_KEYS in value:
        return {k: v for k, v in value[_INT_KEYS]}
    return value
