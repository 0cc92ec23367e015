"""Reading documents to index: Markdown, text, reStructuredText, HTML and PDF files.

`read_document(found, max_bytes)` gives a file's text and title or raises
`DocumentError` with a reason fit to print next to the file's name. Which
files are read, and how they are opened, is fmflow/retrieval/files.py.
pypdf is imported only when a PDF is read.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from .files import SUPPORTED, FileError, FoundFile, printable, read_file


class DocumentError(Exception):
    """A file that cannot be indexed; the message is the reason, without the path."""


@dataclass(frozen=True)
class Document:
    path: str  # as found (the command-line argument, or below it)
    title: str
    text: str


def read_document(found: FoundFile | str, max_bytes: int | None = None) -> Document:
    """The text and title of one file; `DocumentError` says why it cannot be read."""
    path = found if isinstance(found, str) else found.path
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED:
        raise DocumentError(f"unsupported file type '{suffix or Path(path).name}' "
                            f"(supported: {' '.join(SUPPORTED)})")
    try:
        data = read_file(found, max_bytes)
    except FileError as error:
        raise DocumentError(str(error)) from None
    if suffix == ".pdf":
        return _read_pdf(path, data)
    if b"\x00" in data:  # no text format has NUL bytes; anywhere in the file, not only its start
        raise DocumentError("binary file, not text")
    name = printable(Path(path).name)  # a title, stored in Chroma: valid UTF-8
    if suffix in (".html", ".htm"):
        title, text = html_to_text(_decode(data, _html_charset(data)))
        return Document(path, title or name, text)
    text = _decode(data, "utf-8")
    del data  # a big file is held once, as text
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

_ATX_OPEN = re.compile(r" {0,3}#{1,6}[ \t]+")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
_RST_UNDERLINE = re.compile(r"([=\-~^\"'`#*+:.])\1{2,}")
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # as str.splitlines


def _line_pairs(text: str):
    """(line, next line or None) through the text, one line at a time: a big file is not copied into a list."""
    start, previous = 0, None
    for match in _LINE_BREAK.finditer(text):
        line = text[start:match.start()]
        if previous is not None:
            yield previous, line
        previous, start = line, match.end()
    last = text[start:] if start < len(text) else None
    if previous is not None:
        yield previous, last
    if last is not None:
        yield last, None


def _atx_heading(line: str) -> str | None:
    """`## Title ##` → "Title"; scanned by hand, as a backtracking pattern is quadratic on a long line."""
    opening = _ATX_OPEN.match(line)
    if not opening:
        return None
    title = line[opening.end():].rstrip(" \t")
    unclosed = title.rstrip("#")
    if unclosed != title and unclosed[-1:] in (" ", "\t") and unclosed.strip():
        title = unclosed
    return title.strip() or None


def _markdown_title(text: str) -> str | None:
    """The first heading: `# Title` or a line underlined with === or ---, outside code fences."""
    fenced = False
    for line, following in _line_pairs(text):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        heading = _atx_heading(line)
        if heading:
            return heading
        if (line.strip() and following is not None and _SETEXT.fullmatch(following)
                and not line.lstrip().startswith(("-", "*", "+", ">"))):
            return line.strip()
    return None


def _rst_title(text: str) -> str | None:
    """The first section title: a line underlined (and maybe overlined) with punctuation."""
    for line, following in _line_pairs(text):
        if following is None:
            return None
        title, under = line.strip(), following.rstrip()
        if (title and not re.fullmatch(r"([^\w\s])\1*", title)
                and _RST_UNDERLINE.fullmatch(under) and len(under) >= len(title)):
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

def _read_pdf(path: str, data: bytes) -> Document:
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
            reader = pypdf.PdfReader(io.BytesIO(data))  # the bytes checked and read once, not the path again
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
    text = _storable("\n\n".join(page.strip() for page in pages if page.strip()))
    title = _storable(title.strip()) if isinstance(title, str) and title.strip() else printable(Path(path).name)
    return Document(path, title, text)


def _storable(text: str) -> str:
    """Text extracted from a PDF may hold lone surrogates (broken fonts); Chroma stores UTF-8 only."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _reason(error: Exception) -> str:
    message = str(error).strip().rstrip(".")
    return message or type(error).__name__
