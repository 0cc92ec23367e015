"""Which files `fmflow index` reads, and reading them without being led astray.

`find_files(paths)` lists the files named and those below the folders named
(sorted, hidden files and folders skipped, supported extensions only inside
folders). The paths named are the roots, taken as named, links included.
Below them a symbolic link is followed only when it leads inside a root (a
file or folder named, or anything below a folder named); a link leading
anywhere else, a broken link, a loop of links and a link to a folder that
contains it are skipped, each with the reason. A file reached twice (through
a link, a hard link or two arguments) is listed once, by the first name met,
files met without a link first.

Only regular files are listed and read: a FIFO, socket or device is skipped
(opening a FIFO waits for a writer; /dev/zero never ends). Each file's
identity (device and inode) is recorded when it is listed, and
`read_file(found, max_bytes)` opens it without blocking and reads it only if
it is still that same regular file and within the size limit, so a file
swapped for a link, a FIFO or a bigger file in between is not read either.
Folders are opened the same way, each checked to be the one listed in its
parent, so swapping a folder for a link while the tree is walked leads
nowhere.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass, field

from ..files import UnreadableFile, not_regular, open_regular_file, os_reason, read_up_to

SUPPORTED = (".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".pdf")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_BY_FD = os.scandir in os.supports_fd  # POSIX: list a folder through the descriptor checked


class FileError(Exception):
    """A file that cannot be read as listed; the message is the reason, without the path."""


@dataclass(frozen=True)
class FoundFile:
    path: str  # as found: the argument, or below it (a file reached through a link keeps the link's name)
    identity: tuple[int, int]  # (device, inode) when listed
    through_link: bool = False  # the last part of `path` is a link (named, or followed inside the roots)


@dataclass
class Listing:
    files: list[FoundFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # named paths that do not exist
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def find_files(paths: list[str]) -> Listing:
    return _Walk().run(paths)


def printable(path: str) -> str:
    """A path fit to store and print: bytes of a name that are not UTF-8 are shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _maybe_wanted(name: str) -> bool:
    """A link whose target cannot be seen: worth a note when its name is a document's or a folder's."""
    return name.lower().endswith(SUPPORTED) or not os.path.splitext(name)[1]


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _Walk:
    """One listing: the roots, what was seen, and the links left to follow once the roots are walked."""

    def __init__(self) -> None:
        self.listing = Listing()
        self.roots: list[str] = []  # real paths of the folders and files named
        self.seen_files: set[tuple[int, int]] = set()
        self.seen_folders: set[tuple[int, int]] = set()
        self.links: deque[tuple[str, str]] = deque()  # (path shown, real folder holding the link + name)

    def run(self, paths: list[str]) -> Listing:
        named = [(raw, self._named(raw)) for raw in paths]  # every root is known before a link is judged
        for raw, info in named:  # then in the order named: a folder's files, or the file
            if info is None:
                continue
            if stat.S_ISDIR(info.st_mode):
                self._walk(raw, os.path.realpath(raw), _identity(info))
            else:
                self._add(raw, info, os.path.islink(raw))
        while self.links:  # links are followed after the plain files, so those keep their own names
            shown, real = self.links.popleft()
            self._follow(shown, real)
        return self.listing

    def _named(self, raw: str) -> os.stat_result | None:
        """A named path: a root (its stat returned) or a reason it is skipped."""
        try:
            info = os.stat(raw)
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.islink(raw):
                self.listing.missing.append(raw)
            else:
                self._skip_unreachable(raw, raw, error)
            return None
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            self.listing.skipped.append((raw, not_regular(info.st_mode)))
            return None
        self.roots.append(os.path.realpath(raw))
        return info

    def _walk(self, shown: str, real: str, identity: tuple[int, int]) -> None:
        """Depth first in name order (a folder's files and subfolders interleaved, as `sorted` gives paths)."""
        if identity in self.seen_folders:
            return
        self.seen_folders.add(identity)
        stack = [(shown, real, iter(self._list(shown, real, identity)))]
        while stack:
            folder_shown, folder_real, entries = stack[-1]
            for name, info in entries:
                path, inner = os.path.join(folder_shown, name), os.path.join(folder_real, name)
                if stat.S_ISLNK(info.st_mode):
                    self.links.append((path, inner))
                elif stat.S_ISDIR(info.st_mode):
                    if _identity(info) not in self.seen_folders:
                        self.seen_folders.add(_identity(info))
                        stack.append((path, inner, iter(self._list(path, inner, _identity(info)))))
                        break
                elif name.lower().endswith(SUPPORTED):
                    if stat.S_ISREG(info.st_mode):
                        self._add(path, info, False)
                    else:
                        self.listing.skipped.append((path, not_regular(info.st_mode)))
            else:
                stack.pop()

    def _list(self, shown: str, real: str, identity: tuple[int, int]) -> list[tuple[str, os.stat_result]]:
        """(name, lstat) of the visible entries of a folder, sorted; [] (and a note) when it cannot be listed.

        On POSIX the folder is opened without following a link and checked to
        be the one met in its parent, then listed through that descriptor.
        """
        fd = None
        try:
            if _BY_FD:
                fd = os.open(real, _FOLDER_FLAGS | _NOFOLLOW)
                if _identity(os.fstat(fd)) != identity:
                    self.listing.skipped.append((shown, "the folder changed while it was listed"))
                    return []
            found = []
            with os.scandir(fd if fd is not None else real) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        found.append((entry.name, entry.stat(follow_symlinks=False)))
                    except OSError:  # gone since the folder was read
                        continue
            return sorted(found, key=lambda item: item[0])
        except OSError as error:
            self.listing.skipped.append((shown, f"cannot list the folder: {os_reason(error)}"))
            return []
        finally:
            if fd is not None:
                os.close(fd)

    def _follow(self, shown: str, link: str) -> None:
        """A link met below a root: followed when it leads inside a root, else skipped with the reason."""
        try:
            info = os.stat(link)
        except OSError as error:
            if _maybe_wanted(shown):
                self._skip_unreachable(shown, link, error)
            return
        is_folder = stat.S_ISDIR(info.st_mode)
        if not is_folder and not shown.lower().endswith(SUPPORTED):
            return  # a link to a file of another type: ignored as that file would be
        target = os.path.realpath(link)
        if is_folder and _inside(os.path.dirname(link), target):
            self.listing.skipped.append((shown, f"a link to {target}, a folder that contains it (a loop)"))
        elif not any(_inside(target, root) for root in self.roots):
            self.listing.skipped.append((shown, f"a link to {target}, outside the folders being indexed"))
        elif is_folder:
            self._walk(shown, target, _identity(info))
        elif stat.S_ISREG(info.st_mode):
            self._add(shown, info, True)
        else:
            self.listing.skipped.append((shown, not_regular(info.st_mode)))

    def _skip_unreachable(self, shown: str, link: str, error: OSError) -> None:
        if error.errno == errno.ELOOP:
            reason = "a loop of symbolic links"
        elif error.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(link):
            reason = f"a broken link (to {os.readlink(link)})"
        else:
            reason = os_reason(error)
        self.listing.skipped.append((shown, reason))

    def _add(self, path: str, info: os.stat_result, through_link: bool) -> None:
        identity = _identity(info)
        if identity not in self.seen_files:
            self.seen_files.add(identity)
            self.listing.files.append(FoundFile(path, identity, through_link))


# ------------------------------------------------------------------ reading

def limit_bytes(max_file_mb: float | None) -> int | None:
    """--max-file-mb as bytes (1 MB = 1,000,000 bytes); None or 0: no limit."""
    return int(max_file_mb * 1_000_000) if max_file_mb else None


def shown_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1_000_000 else f"{size / 1e3:.1f} KB"


def read_file(found: FoundFile | str, max_bytes: int | None = None) -> bytes:
    """The bytes of a listed file (or a path), if it is still the regular file listed and not too big.

    Opened without blocking (a FIFO swapped in cannot hold the run) and, for a
    file not reached through a link, without following one.
    """
    if isinstance(found, str):
        found = FoundFile(found, (-1, -1), through_link=True)
    try:
        with open_regular_file(found.path, follow_links=found.through_link) as (fd, info):
            if found.identity != (-1, -1) and _identity(info) != found.identity:
                raise FileError("it was replaced by another file while being indexed")
            if max_bytes is not None and info.st_size > max_bytes:
                raise FileError(_too_big(info.st_size, max_bytes))
            data = read_up_to(fd, found.path, max_bytes)
    except UnreadableFile as error:
        raise FileError(error.reason) from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise FileError(_too_big(len(data), max_bytes))
    return data


def _too_big(size: int, max_bytes: int) -> str:
    return f"{shown_size(size)}, over the {shown_size(max_bytes)} limit (--max-file-mb)"
