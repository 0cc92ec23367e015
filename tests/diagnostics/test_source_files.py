"""Which files fmflow reads, and how: `*.fmflow` regular files of at most 10 MB, in UTF-8.

An import names a `.fmflow` file or a `std/` module; anything else is E002,
and what a file that is not a flow holds is never shown. Pipes and devices
are refused before a byte is read (they would block or never end). A file
that is not UTF-8 is one E001 at its first bad byte.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from fmflow.api import check, load_program
from fmflow.diagnostics import render_text
from fmflow.parser import parse_file
from fmflow.diagnostics import Diagnostics
from fmflow.source import MAX_SOURCE_BYTES, SourceError, SourceFile

SECRET = "hunter2-do-not-print"
FLOW = 'flow f(x: str) -> str {\n  return x\n}\n'


def diagnostics_text(path: Path) -> str:
    """Everything `fmflow check` would print for ``path``."""
    loader, _ctx = load_program(path)
    return render_text(loader.diagnostics(), loader.sources())


def codes_and_messages(path: Path) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in check(path)]


def finishes_within(seconds: float, function, fifo: Path | None = None):
    """Run ``function`` in a thread; fail (after freeing a reader stuck on ``fifo``) if it takes longer."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            with open(fifo, "w"):  # a writer lets the blocked reader go
                pass
        thread.join(5)
        pytest.fail(f"still running after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# ------------------------------------------------------------------ imports

@pytest.mark.parametrize("written", ["./.env", "/etc/shadow", "../secret.txt", "./notes", "./x.fmflow.bak"])
def test_an_import_must_name_a_flow_file(tmp_path, written):
    (tmp_path / ".env").write_text(f"TOKEN={SECRET}\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    main = tmp_path / "sub" / "main.fmflow"
    main.write_text(f'import "{written}"\n' + FLOW, encoding="utf-8")
    assert codes_and_messages(main) == [
        ("E002", f"cannot import '{written}': an import names a .fmflow file or a std/ module")]
    assert SECRET not in diagnostics_text(main)


def test_an_import_through_a_link_to_a_file_that_is_not_a_flow(tmp_path):
    (tmp_path / ".env").write_text(f"TOKEN={SECRET}\n", encoding="utf-8")
    (tmp_path / "shared.fmflow").symlink_to(tmp_path / ".env")
    main = tmp_path / "main.fmflow"
    main.write_text('import "./shared.fmflow"\n' + FLOW, encoding="utf-8")
    assert codes_and_messages(main) == [
        ("E002", "cannot read import './shared.fmflow': it links to a file whose name does not end in '.fmflow'")]
    assert SECRET not in diagnostics_text(main)


def test_a_link_between_flow_files_is_followed(tmp_path):
    (tmp_path / "real.fmflow").write_text('flow g(x: str) -> str { return x }\n', encoding="utf-8")
    (tmp_path / "shared.fmflow").symlink_to(tmp_path / "real.fmflow")
    main = tmp_path / "main.fmflow"
    main.write_text('import "./shared.fmflow"\nflow f(x: str) -> str { return g(x) }\n', encoding="utf-8")
    assert check(main) == []


@pytest.mark.parametrize("written", ["std/../../etc/passwd", "std/../examples/x", "std/", "std//filters",
                                     "std/a b"])
def test_a_std_import_cannot_leave_the_standard_library(tmp_path, written):
    main = tmp_path / "main.fmflow"
    main.write_text(f'import "{written}"\n' + FLOW, encoding="utf-8")
    assert [d.code for d in check(main)] == ["E002"]


@pytest.mark.parametrize("written", ["std/filters", "std/filters.fmflow"])
def test_std_modules_still_import(tmp_path, written):
    main = tmp_path / "main.fmflow"
    main.write_text(f'import "{written}"\n' + FLOW, encoding="utf-8")
    assert [d.code for d in check(main) if d.is_error] == []


# ---------------------------------------------------- pipes, devices, size

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe.fmflow"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match=r"cannot read '.*pipe.fmflow': it is a pipe \(FIFO\), not a regular file"):
        finishes_within(10, lambda: check(fifo), fifo)
    main = tmp_path / "main.fmflow"
    main.write_text('import "./pipe.fmflow"\n' + FLOW, encoding="utf-8")
    assert finishes_within(10, lambda: codes_and_messages(main), fifo) == [
        ("E002", "cannot read import './pipe.fmflow': it is a pipe (FIFO), not a regular file")]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to make a device node")
def test_a_device_named_like_a_flow_is_refused(tmp_path):
    zero = tmp_path / "zero.fmflow"
    os.mknod(zero, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # the device of /dev/zero
    with pytest.raises(SourceError, match="it is a character device, not a regular file"):
        finishes_within(10, lambda: check(zero))


def test_a_link_to_dev_zero_is_refused(tmp_path):
    zero = tmp_path / "zero.fmflow"
    zero.symlink_to("/dev/zero")
    with pytest.raises(SourceError, match="links to a file whose name does not end in '.fmflow'"):
        finishes_within(10, lambda: check(zero))


def test_a_folder_named_like_a_flow_is_refused(tmp_path):
    folder = tmp_path / "dir.fmflow"
    folder.mkdir()
    with pytest.raises(SourceError, match="it is a folder"):
        check(folder)


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    big = tmp_path / "big.fmflow"
    with open(big, "wb") as f:
        f.truncate(MAX_SOURCE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(SourceError, match=r"it holds 10\.0 MB; flow files are limited to 10 MB"):
        check(big)
    main = tmp_path / "main.fmflow"
    main.write_text('import "./big.fmflow"\n' + FLOW, encoding="utf-8")
    assert [m for _c, m in codes_and_messages(main)] == [
        "cannot read import './big.fmflow': it holds 10.0 MB; flow files are limited to 10 MB"]


def test_a_file_at_the_size_limit_is_read(tmp_path):
    path = tmp_path / "full.fmflow"
    path.write_bytes(FLOW.encode() + b"#" * (MAX_SOURCE_BYTES - len(FLOW)))
    assert check(path) == []


def test_other_names_are_refused_when_read_directly(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text(FLOW, encoding="utf-8")
    with pytest.raises(SourceError, match="flow files end in '.fmflow'"):
        check(notes)
    with pytest.raises(SourceError, match="no such file"):
        check(tmp_path / "nope.fmflow")


# ------------------------------------------------------------------ UTF-8

def test_a_byte_that_is_not_utf8_is_e001_at_its_line_and_column(tmp_path):
    path = tmp_path / "latin1.fmflow"
    path.write_bytes(b'flow f(x: str) -> str {\n  return "caf\xe9 ' + SECRET.encode() + b'"\n}\n')
    (d,) = check(path)
    assert (d.code, d.message, d.span.line, d.span.col) == ("E001", "byte 0xE9 is not valid UTF-8", 2, 14)
    assert d.help == "fmflow files are UTF-8 text; save it as UTF-8"
    shown = diagnostics_text(path)
    assert 'return "caf' in shown and SECRET not in shown  # nothing after the bad byte is shown


def test_a_binary_file_shows_no_content(tmp_path):
    path = tmp_path / "image.fmflow"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET.encode())
    (d,) = check(path)
    assert (d.code, d.span.line, d.span.col, d.message) == ("E001", 1, 1, "byte 0x89 is not valid UTF-8")
    assert "PNG" not in diagnostics_text(path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.fmflow"
    path.write_bytes(b"\xef\xbb\xbfflow f(x: str) -> str { return nope }\n")
    (d,) = check(path)
    assert (d.code, d.span.line, d.span.col) == ("E101", 1, 32)  # columns count after the mark
    source, _not_utf8 = SourceFile.read(path)
    assert source.bom and source.text.startswith("flow")


def test_parse_file_of_a_file_that_is_not_utf8_gives_an_empty_module(tmp_path):
    path = tmp_path / "bad.fmflow"
    path.write_bytes(b"flow f(x: str) -> str { return x }\n\xff")
    diagnostics = Diagnostics()
    source, module = parse_file(str(path), diagnostics)
    assert module.decls == [] and module.recovered
    assert [(d.code, d.span.line, d.span.col) for d in diagnostics] == [("E001", 2, 1)]


# ------------------------------------------------------- other files read

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_lock_file_that_is_a_fifo_is_e401_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "fmflow.lock")
    path = tmp_path / "flow.fmflow"
    path.write_text(FLOW, encoding="utf-8")
    assert finishes_within(10, lambda: codes_and_messages(path), tmp_path / "fmflow.lock") == [
        ("E401", "fmflow.lock cannot be read: it is a pipe (FIFO), not a regular file")]


# ------------------------------------------------------------- surrogates

@pytest.mark.parametrize("literal", ['"\\u{D800}"', '"x\\u{DBFF}\\u{DC00}"', '"\\u{dfff}"'])
def test_an_escaped_surrogate_stops_parse_and_load(tmp_path, literal):
    import fmflow
    from fmflow.errors import FmflowCheckError, FmflowSyntaxError

    text = f"flow f(x: str) -> str {{\n  return x + {literal}\n}}\n"
    with pytest.raises(FmflowSyntaxError) as parsed:
        fmflow.parse(text)
    (d,) = parsed.value.diagnostics[:1]
    assert (d.code, d.span.line, d.span.col) == ("E001", 2, 16 if literal.startswith('"x') else 15)
    path = tmp_path / "s.fmflow"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FmflowCheckError):
        fmflow.load(path)


def test_text_holding_a_lone_surrogate_is_e001_there(tmp_path):
    from fmflow.api import check_text
    from fmflow.formatter import format_text

    text = 'flow f(x: str) -> str {\n  return "\udfff"\n}\n'
    assert [(d.code, d.span.line, d.span.col) for d in check_text(text)] == [("E001", 2, 11)]
    assert format_text(text) is None


def test_a_missing_file_is_still_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot read '.*nope.fmflow': no such file"):
        check(tmp_path / "nope.fmflow")
