"""Reading and writing the files fmflow owns in a project, safely against what else may be there.

Reading: only a regular file, opened without blocking (a FIFO never waits
for a writer) and checked through its descriptor, up to a size limit.
Writing: a fresh temporary file beside the target (never a name that a link
planted in the folder could redirect), then an atomic rename, keeping the
target's permissions.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager


class UnreadableFile(OSError):
    """A path that cannot be read as the kind of file wanted; the message says why, never what it holds."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot read '{self.path}': {self.reason}"


def read_regular_file(path: str | os.PathLike, limit: int, what: str = "files") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; UnreadableFile otherwise."""
    path = os.fspath(path)
    with open_regular_file(path) as (fd, info):
        if info.st_size > limit:
            raise UnreadableFile(path, _too_large(info.st_size, limit, what))
        data = read_up_to(fd, path, limit)
    if len(data) > limit:  # it grew while being read
        raise UnreadableFile(path, _too_large(len(data), limit, what))
    return data


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file ("no such file", "it is a pipe (FIFO)…"), or None.

    Looked up without opening it, so a FIFO is named, never waited on."""
    try:
        info = os.stat(path)
    except OSError as error:
        return os_reason(error)
    if not stat.S_ISREG(info.st_mode):
        return not_regular(info.st_mode)
    return None


@contextmanager
def open_regular_file(path: str | os.PathLike, follow_links: bool = True) -> Iterator[tuple[int, os.stat_result]]:
    """(descriptor, its stat) of a regular file, opened without blocking; UnreadableFile otherwise.

    Without ``follow_links`` a path that is a symbolic link is refused (the
    caller checked what it names and wants no link swapped in since).
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow_links:
            raise UnreadableFile(path, "it is a symbolic link") from None
        raise UnreadableFile(path, os_reason(error)) from None
    try:
        try:
            info = os.fstat(fd)
        except OSError as error:
            raise UnreadableFile(path, os_reason(error)) from None
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(path, not_regular(info.st_mode))
        yield fd, info
    finally:
        os.close(fd)


def read_up_to(fd: int, path: str, limit: int | None) -> bytes:
    """What ``fd`` holds, reading at most ``limit + 1`` bytes (so a caller can tell a file over the limit)."""
    parts: list[bytes] = []
    total = 0
    try:
        while limit is None or total <= limit:
            part = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit + 1 - total))
            if not part:
                break
            parts.append(part)
            total += len(part)
    except OSError as error:
        raise UnreadableFile(path, os_reason(error)) from None
    return b"".join(parts)


def not_regular(mode: int) -> str:
    """Why a file of this mode is not read."""
    return f"it is {_file_kind(mode)}, not a regular file"


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` at once: readers see the old file or the new, never half of one."""
    import tempfile

    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)  # O_EXCL: a fresh file
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _too_large(size: int, limit: int, what: str) -> str:
    return f"it holds {size / 1_048_576:.1f} MB; {what} are limited to {limit // 1_048_576} MB"


def os_reason(error: OSError) -> str:
    """Why an OS call failed, in lower case as it reads inside a message."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a folder"
    return (error.strerror or type(error).__name__).lower()


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")
