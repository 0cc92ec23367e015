"""std/tools' read_file: a text file inside an allowed folder.

Roots come from ``FMFLOW_FILES_ROOT`` (folders separated by ``os.pathsep``)
or from ``read_file_tool(root)``; nothing is readable by default. A relative
path is taken inside each root in turn. The file's real path, every
symbolic link resolved, must lie inside a root's real path (``..`` and links
that lead out are refused); it must be a regular file (no FIFO, device or
folder) of at most ``max_bytes`` (1 MB), holding UTF-8 text. The file is
opened without following a final link and checked again once open (its
real path read back from the open descriptor where the system gives it), so
swapping a path for a link between the check and the open does not escape.
"""

from __future__ import annotations

import os
import stat

ROOT_ENV = "FMFLOW_FILES_ROOT"
MAX_BYTES = 1_000_000


class FileRefused(ValueError):
    pass


def roots_from_env() -> list[str]:
    roots = [r for r in os.environ.get(ROOT_ENV, "").split(os.pathsep) if r.strip()]
    return [os.path.realpath(r) for r in roots]


def read(path: str, roots: list[str], max_bytes: int) -> str:
    if not roots:
        raise FileRefused(f"read_file: no folder is readable; set {ROOT_ENV} to one")
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise FileRefused(f"read_file: not a file path: {path!r}")
    candidates = [path] if os.path.isabs(path) else [os.path.join(root, path) for root in roots]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        root = _root_of(real, roots)
        if root is None:
            continue
        if not os.path.lexists(real):
            continue
        return _read_regular(real, root, path, max_bytes)
    if any(_root_of(os.path.realpath(c), roots) for c in candidates):
        raise FileRefused(f"read_file: no file {path!r} in {', '.join(roots)}")
    raise FileRefused(f"read_file: {path!r} is outside the readable folders ({', '.join(roots)})")


def _root_of(real: str, roots: list[str]) -> str | None:
    for root in roots:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return root
    return None


def _read_regular(real: str, root: str, shown: str, max_bytes: int) -> str:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as error:
        raise FileRefused(f"read_file: cannot open {shown!r}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"read_file: {shown!r} is not a regular file")
        opened = _path_of(fd)
        if opened is not None and _root_of(opened, [root]) is None:
            raise FileRefused(f"read_file: {shown!r} is outside the readable folders")
        if info.st_size > max_bytes:
            raise FileRefused(f"read_file: {shown!r} is {info.st_size} bytes; at most {max_bytes}")
        data = _read_up_to(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FileRefused(f"read_file: {shown!r} is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileRefused(f"read_file: {shown!r} is not UTF-8 text (byte {error.start})") from None


def _path_of(fd: int) -> str | None:
    """The real path of an open file, where the system tells it (Linux's /proc)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(65536, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
