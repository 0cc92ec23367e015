"""Reading documents to index: Markdown, text, reStructuredText, HTML and PDF files.

`find_documents(paths)` lists the files (folders recursively, sorted, hidden
files and folders skipped); `read_document(path)` gives its text and title or
raises `DocumentError` with a reason fit to print next to the file's name.
pypdf is imported only when a PDF is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

SUPPORTED = (".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".pdf")
_SNIFF = 8192


class DocumentError(Exception):
    """A file that cannot be indexed; the message is the reason, without the path."""


@dataclass(frozen=True)
class Document:
    path: str  # as found (the command-line argument, or below it)
    title: str
    text: str


def find_documents(paths: list[str]) -> tuple[list[str], list[str]]:
    """(files, missing): supported files named or found below the folders named, each once.

    A file named explicitly is listed whatever its extension (reading it then
    says why it is not supported); inside folders only supported extensions
    are taken and hidden files and folders are skipped.
    """
    files: list[str] = []
    missing: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for raw in paths:
        if os.path.isdir(raw):
            found: list[str] = []
            for folder, subfolders, names in os.walk(raw):
                subfolders[:] = [d for d in subfolders if not d.startswith(".")]
                found.extend(os.path.join(folder, name) for name in names
                             if not name.startswith(".") and name.lower().endswith(SUPPORTED))
            for path in sorted(found, key=lambda p: Path(p).parts):
                add(path)
        elif os.path.isfile(raw):
            add(raw)
        else:
            missing.append(raw)
    return files, missing


def read_document(path: str) -> Document:
    """The text and title of one file; `DocumentError` says why it cannot be read."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED:
        raise DocumentError(f"unsupported file type '{suffix or Path(path).name}' "
                            f"(supported: {' '.join(SUPPORTED)})")
    if suffix == ".pdf":
        return _read_pdf(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise DocumentError(f"cannot read: {error.strerror or error}") from None
    if b"\x00" in data[:_SNIFF]:
        raise DocumentError("binary file, not text")
    name = Path(path).name
    if suffix in (".html", ".htm"):
        title, text = html_to_text(_decode(data, _html_charset(data)))
        return Document(path, title or name, text)
    text = _decode(data, "utf-8")
    if suffix in (".md", ".markdown"):
        return Document(path, _markdown_title(text) or name, text)
    if suffix == ".rst":
        return Document(path, _rst_title(text) or name, text)
    return Document(path, name, text)


def _decode(data: bytes, encoding: str) -> str:
    if encoding.replace("-", "").replace("_", "").lower() == "utf8":
        encoding = "utf-8-sig"  # drops a byte-order mark
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DocumentError(f"not {error.encoding.replace('-sig', '').upper()} text "
                            f"(byte 0x{data[error.start]:02x} at offset {error.start})") from None
    except LookupError:
        raise DocumentError(f"unknown character encoding '{encoding}'") from None


# ------------------------------------------------------------------ titles

_ATX = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _markdown_title(text: str) -> str | None:
    """The first heading: `# Title` or a line underlined with === or ---, outside code fences."""
    lines = text.splitlines()
    fenced = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        match = _ATX.match(line)
        if match:
            return match.group(1).strip()
        if (line.strip() and i + 1 < len(lines) and re.fullmatch(r" {0,3}(=+|-+)[ \t]*", lines[i + 1])
                and not line.lstrip().startswith(("-", "*", "+", ">"))):
            return line.strip()
    return None


def _rst_title(text: str) -> str | None:
    """The first section title: a line underlined (and maybe overlined) with punctuation."""
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        title, under = lines[i].strip(), lines[i + 1].rstrip()
        if (title and not re.fullmatch(r"([^\w\s])\1*", title)
                and re.fullmatch(r"([=\-~^\"'`#*+:.])\1{2,}", under) and len(under) >= len(title)):
            return title
    return None


# ------------------------------------------------------------------ HTML

_SKIPPED_TAGS = {"script", "style", "noscript", "template", "svg"}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "blockquote", "pre",
    "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "table", "tr", "figure",
    "figcaption", "hr", "form", "fieldset", "address", "details", "summary", "body",
}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0
        self.in_title = False
        self.title_parts: list[str] = []
        self.h1_parts: list[str] | None = None
        self.h1: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        elif tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre":
                self.pre += 1
            if tag == "h1" and self.h1 is None:
                self.h1_parts = []
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_startendtag(self, tag, attrs):
        if tag in ("br", "hr"):
            self.parts.append("\n" if tag == "br" else "\n\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif tag in _SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            if tag == "h1" and self.h1_parts is not None:
                self.h1 = " ".join("".join(self.h1_parts).split()) or None
                self.h1_parts = None

    def handle_data(self, data):
        if self.in_title:
            self.title_parts.append(data)
            return
        if self.skipping:
            return
        if self.h1_parts is not None:
            self.h1_parts.append(data)
        if self.pre:
            self.parts.append(data)
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str | None, str]:
    """(title, text) of an HTML page: scripts and styles dropped, blocks as paragraphs."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = " ".join("".join(parser.title_parts).split()) or parser.h1
    return title, text


def _html_charset(data: bytes) -> str:
    match = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", data[:4096], re.IGNORECASE)
    return match.group(1).decode("ascii") if match else "utf-8"


# ------------------------------------------------------------------ PDF

def _read_pdf(path: str) -> Document:
    import logging

    try:
        import pypdf
    except ImportError:
        raise DocumentError("reading PDF files needs the pypdf package: pip install pypdf") from None
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)  # pypdf warns about every odd object; the reason is reported instead
    try:
        try:
            reader = pypdf.PdfReader(path)
        except OSError as error:
            raise DocumentError(f"cannot read: {error.strerror or error}") from None
        except Exception as error:
            raise DocumentError(f"not a readable PDF ({_reason(error)})") from None
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # many PDFs are encrypted with an empty user password
            except Exception as error:
                raise DocumentError(f"encrypted PDF that cannot be opened ({_reason(error)})") from None
            if not opened:
                raise DocumentError("encrypted PDF: it needs a password")
        try:
            pages = [page.extract_text() or "" for page in reader.pages]
        except Exception as error:
            raise DocumentError(f"not a readable PDF ({_reason(error)})") from None
        title = None
        try:
            title = reader.metadata.title if reader.metadata else None
        except Exception:
            pass
    finally:
        logger.setLevel(level)
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    title = title.strip() if isinstance(title, str) and title.strip() else Path(path).name
    return Document(path, title, text)


def _reason(error: Exception) -> str:
    message = str(error).strip().rstrip(".")
    return message or type(error).__name__
