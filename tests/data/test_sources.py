"""Record sources: numbering, streaming, bad lines and rows, typed CSV cells, Parquet, scans."""

from __future__ import annotations

import hashlib
import json

import pytest

from fmflow.data.records import DataError
from fmflow.data.sources import cell_value, open_source
from fmflow.types import FLOAT, INT, STR, ListType, OptionalType


def records(source, skip=None):
    return [(r.line, r.value, r.error) for r in (source.records(skip) if skip else source.records())]


# ------------------------------------------------------------------ JSONL

def test_jsonl_lines_are_numbered_from_one_and_blank_lines_keep_the_numbering(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"q": "a"}\n\n   \n{"q": "b"}\n{"q": "c"}')  # a BOM; no final newline
    source = open_source(str(path))
    assert records(source) == [(1, {"q": "a"}, None), (4, {"q": "b"}, None), (5, {"q": "c"}, None)]
    scan = source.scan()
    assert scan.records == 3
    assert scan.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_jsonl_bad_lines_become_records_with_the_reason(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"q": "a"}\n{"q": \n[1, 2]\n"text"\n{"q": "\xff"}\nnull\n')
    got = records(open_source(str(path)))
    assert got[0] == (1, {"q": "a"}, None)
    assert got[1][2].startswith("line 2 is not valid JSON at column 7: Expecting value")
    assert got[2][2] == "line 3 must be a JSON object of the inputs, got an array"
    assert got[3][2] == "line 4 must be a JSON object of the inputs, got a string"
    assert got[4][2] == "line 5 is not valid UTF-8 (byte 8)"
    assert got[5][2] == "line 6 must be a JSON object of the inputs, got null"
    assert all(value is None for _, value, error in got[1:])


def test_skipped_lines_are_not_parsed(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"q": 1}\nnot json\n{"q": 3}\n')
    assert records(open_source(str(path)), skip=lambda n: n <= 2) == [(3, {"q": 3}, None)]


def test_a_large_file_is_streamed(tmp_path):
    path = tmp_path / "in.jsonl"
    with path.open("w") as f:
        for i in range(50_000):
            f.write(json.dumps({"q": i}) + "\n")
    it = open_source(str(path)).records()
    first = next(it)
    assert first.line == 1
    assert it.gi_frame is not None  # a generator holding one line at a time, not a list of the file
    assert sum(1 for _ in it) == 49_999


@pytest.mark.parametrize("name, content, message", [
    ("in.txt", "x", "cannot tell the format of"),
    ("missing.jsonl", None, "no such file"),
])
def test_unreadable_inputs_are_data_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        open_source(str(path))


def test_a_folder_is_not_an_input(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(DataError, match="it is a folder, not a regular file"):
        open_source(str(tmp_path / "d.jsonl"))


# -------------------------------------------------------------------- CSV

FIELDS = {"q": STR, "n": INT, "score": OptionalType(FLOAT), "tags": ListType(STR), "note": OptionalType(STR)}


def test_csv_cells_are_typed_by_the_fields(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('q,n,score,tags,note\n"hello, world",3,,"[""a"", ""b""]",\n42,x,0.5,[],hi\n', newline="")
    got = records(open_source(str(path), FIELDS))
    assert got == [
        (1, {"q": "hello, world", "n": 3, "score": None, "tags": ["a", "b"], "note": None}, None),
        (2, {"q": "42", "n": "x", "score": 0.5, "tags": [], "note": "hi"}, None),
    ]


def test_csv_rows_count_data_rows_and_span_lines(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b'q\n"two\nlines"\n\nb\n"\xff"\n')
    source = open_source(str(path), {"q": STR})
    got = records(source)
    assert got[:2] == [(1, {"q": "two\nlines"}, None), (2, {"q": "b"}, None)]
    assert got[2] == (3, None, "row 3 is not valid UTF-8")
    assert source.count() == 3
    assert records(source, skip=lambda n: n != 2) == [(2, {"q": "b"}, None)]


def test_csv_short_rows_are_errors(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("a,b\n1\n1,2,3\n1,2\n")
    got = records(open_source(str(path)))
    assert got[0] == (1, None, "row 1 has 1 cells, the header row has 2")
    assert got[1] == (2, None, "row 2 has 3 cells, the header row has 2")
    assert got[2] == (3, {"a": "1", "b": "2"}, None)


@pytest.mark.parametrize("header, message", [
    ("a,,b", "column 2 of the header row has no name"),
    ("a,b,a", "names 'a' twice"),
])
def test_bad_csv_headers_are_data_errors(tmp_path, header, message):
    path = tmp_path / "in.csv"
    path.write_text(header + "\n1,2,3\n")
    with pytest.raises(DataError, match=message):
        open_source(str(path))


def test_an_empty_csv_has_no_records(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("")
    source = open_source(str(path))
    assert records(source) == [] and source.count() == 0


def test_cell_values():
    assert cell_value("", OptionalType(INT)) is None
    assert cell_value("", STR) == ""
    assert cell_value("007", STR) == "007"
    assert cell_value("7", INT) == 7
    assert cell_value("seven", INT) == "seven"  # validation then names the expected type
    assert cell_value("x", None) == "x"


# ---------------------------------------------------------------- Parquet

def test_parquet_rows_in_batches(tmp_path, monkeypatch):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fmflow.data.sources import ParquetSource

    monkeypatch.setattr(ParquetSource, "BATCH", 3)
    table = pa.table({"q": [f"q{i}" for i in range(7)], "n": list(range(7)),
                      "when": [datetime.date(2024, 1, i + 1) for i in range(7)]})
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=2)
    source = open_source(str(path))
    got = records(source)
    assert [line for line, _, _ in got] == list(range(1, 8))
    assert got[3] == (4, {"q": "q3", "n": 3, "when": "2024-01-04"}, None)
    assert source.scan().records == 7
    assert [line for line, _, _ in records(source, skip=lambda n: n < 6)] == [6, 7]


def test_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "in.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match="cannot read .* as Parquet"):
        open_source(str(path))
