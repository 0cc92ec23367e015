"""std/tools without the network: calculator, read_file, sql_query, now; hostile input of every kind."""

from __future__ import annotations

import datetime
import os
import sqlite3

import pytest


# --------------------------------------------------------------------------- calculator
@pytest.mark.parametrize("expression, value", [
    ("(17.5 - 2) * 3 ** 2", 139.5), ("2 ** 10", 1024), ("7 // 2 + 7 % 2", 4), ("-3 + +4", 1), ("1_000 * 3", 3000),
    ("sqrt(16) + abs(-2)", 6.0), ("round(2.567, 2)", 2.57), ("max(1, 5, 3) - min(4, 2)", 3), ("2 * pi", 6.283185307179586),
    ("log(e)", 1.0), ("12345678901234567890 * 3", 37037036703703703670), ("2 ** -2", 0.25), ("1e3 / 4", 250.0),
])
def test_calculator_computes(std, expression, value):
    assert std("tools").calculator(expression) == value


@pytest.mark.parametrize("expression, reason", [
    ("__import__('os').system('echo hi')", "a call of something other than the listed functions"),
    ("(1).__class__.__bases__", "attribute access"),
    ("open('/etc/passwd')", "a call"),
    ("x + 1", "the name 'x'"),
    ("[x for x in range(10)]", "a comprehension"),
    ("{1: 2}", "Dict"),
    ("'a' * 3", "the str constant"),
    ("lambda: 1", "Lambda"),
    ("1 if 2 else 3", "IfExp"),
    ("2 < 3", "Compare"),
    ("sqrt(x=4)", "named arguments"),
    ("True + 1", "the bool constant"),
    ("9 ** 9 ** 9", "too large"),
    ("10 ** 5000", "too large"),
    ("(2 ** 4000) * (2 ** 4000)", "too large"),
    ("1 / 0", "division by zero at column 1"),
    ("10.0 ** 400", "too large"),
    ("(-8) ** 0.5", "not a real number"),
    ("sqrt(-1)", "math domain error"),
    ("1e308 * 10", "not a finite number"),
    ("", "give an arithmetic expression"),
    ("1 +", "not an arithmetic expression"),
    ("1" * 1001, "at most 1000"),
    ("(" * 300 + "1" + ")" * 300, "nested"),
    ("-" * 900 + "1", "nested more than 50"),
])
def test_calculator_refuses(std, expression, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        std("tools").calculator(expression)


def test_now_is_iso_8601_with_a_timezone(std):
    value = std("tools").now()
    parsed = datetime.datetime.fromisoformat(value)
    assert parsed.tzinfo is not None and abs((datetime.datetime.now(datetime.timezone.utc) - parsed).total_seconds()) < 60


# ---------------------------------------------------------------------------- read_file
@pytest.fixture
def files(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("hello notes", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("top secret", encoding="utf-8")
    monkeypatch.setenv("FMFLOW_FILES_ROOT", str(root))
    return root


def test_read_file_inside_the_root(std, files):
    tools = std("tools")
    assert tools.read_file("notes/a.txt") == "hello notes"
    assert tools.read_file(str(files / "notes" / "a.txt")) == "hello notes"
    assert tools.read_file("notes/../notes/a.txt") == "hello notes"
    os.symlink(files / "notes" / "a.txt", files / "inside-link.txt")
    assert tools.read_file("inside-link.txt") == "hello notes"  # a link that stays inside is fine


@pytest.mark.parametrize("path", ["../secret.txt", "notes/../../secret.txt", "/etc/passwd", "../root/../secret.txt"])
def test_read_file_refuses_traversal(std, files, path):
    with pytest.raises(ValueError, match="outside the readable folders"):
        std("tools").read_file(path)


def test_read_file_refuses_links_that_lead_out(std, files, tmp_path):
    os.symlink(tmp_path / "secret.txt", files / "escape.txt")
    os.symlink(tmp_path, files / "notes" / "up")
    for path in ("escape.txt", "notes/up/secret.txt"):
        with pytest.raises(ValueError, match="outside the readable folders"):
            std("tools").read_file(path)


def test_read_file_refuses_what_is_not_a_small_text_file(std, files):
    tools = std("tools")
    os.mkfifo(files / "pipe")
    (files / "big.txt").write_bytes(b"x" * 10_000_001)
    (files / "binary.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    cases = {"pipe": "not a regular file", "notes": "not a regular file", "big.txt": "at most 1000000",
             "binary.bin": "not UTF-8 text", "missing.txt": "no file 'missing.txt'", "": "not a file path",
             "a\x00b": "not a file path"}
    for path, reason in cases.items():
        with pytest.raises(ValueError, match=reason):
            tools.read_file(path)


def test_read_file_needs_a_root(std, monkeypatch):
    monkeypatch.delenv("FMFLOW_FILES_ROOT", raising=False)
    with pytest.raises(ValueError, match="set FMFLOW_FILES_ROOT"):
        std("tools").read_file("a.txt")


def test_read_file_tool_confines_to_its_own_root(std, files, tmp_path, monkeypatch):
    monkeypatch.delenv("FMFLOW_FILES_ROOT")
    read = std("tools").read_file_tool(files / "notes", max_bytes=5)
    with pytest.raises(ValueError, match="at most 5"):
        read("a.txt")
    with pytest.raises(ValueError, match="outside"):
        std("tools").read_file_tool(files / "notes")("../../secret.txt")
    assert std("tools").read_file_tool(files / "notes")("a.txt") == "hello notes"


# ---------------------------------------------------------------------------- sql_query
@pytest.fixture
def shop(tmp_path, monkeypatch):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as connection:
        connection.executescript("""
            CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL, note BLOB);
            INSERT INTO orders (customer, total, note) VALUES ('ada', 12.5, x'cafe'), ('bob', 7.0, NULL),
                                                              ('eve', 99.0, NULL);
        """)
    connection.close()
    monkeypatch.setenv("FMFLOW_SQL_ALLOW", str(db))
    return db


def test_sql_query_reads_with_parameters(std, shop):
    tools = std("tools")
    result = tools.sql_query(str(shop), "SELECT customer, total, note FROM orders WHERE total > ? ORDER BY id", [10])
    assert result == {"columns": ["customer", "total", "note"], "rows": [["ada", 12.5, "cafe"], ["eve", 99.0, None]],
                      "truncated": False}
    named = tools.sql_query(str(shop), "SELECT count(*) AS n FROM orders WHERE customer = :who", {"who": "bob"})
    assert named["rows"] == [[1]]
    assert tools.sql_query(str(shop), "SELECT 1", None)["rows"] == [[1]]


def test_sql_injection_stays_a_value(std, shop):
    result = std("tools").sql_query(str(shop), "SELECT id FROM orders WHERE customer = ?",
                                    ["x' OR '1'='1"])
    assert result["rows"] == []


@pytest.mark.parametrize("query", [
    "INSERT INTO orders (customer) VALUES ('mallory')",
    "UPDATE orders SET total = 0",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "CREATE TABLE x (a)",
    "ATTACH DATABASE '/tmp/other.db' AS other",
    "PRAGMA query_only = OFF",
    "PRAGMA writable_schema = ON",
    "BEGIN",
    "VACUUM",
    "SELECT 1; DROP TABLE orders",
    "WITH t AS (SELECT 1) DELETE FROM orders",
])
def test_sql_writes_and_tricks_are_refused(std, shop, query):
    with pytest.raises(ValueError, match="sql_query: "):
        std("tools").sql_query(str(shop), query, None)
    with sqlite3.connect(shop) as connection:
        assert connection.execute("SELECT count(*) FROM orders").fetchone() == (3,)
    connection.close()
    assert not os.path.exists("/tmp/other.db") or "ATTACH" not in query


def test_sql_limits(std, shop, tmp_path):
    tools = std("tools")
    many = tools.sql_query_tool(shop, max_rows=2)("SELECT * FROM orders", None)
    assert len(many["rows"]) == 2 and many["truncated"]
    slow = tools.sql_query_tool(shop, timeout=0.2)
    with pytest.raises(ValueError, match="ran too long"):
        slow("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n", None)
    big = tools.sql_query_tool(shop, max_bytes=30)("SELECT customer FROM orders", None)
    assert big["truncated"] and len(big["rows"]) < 3


def test_sql_refuses_databases_that_are_not_allowed(std, shop, tmp_path, monkeypatch):
    tools = std("tools")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    for db, reason in ((str(other), "not an allowed database"), ("", "not a database path"),
                       (str(tmp_path / "missing.db"), "not an allowed database")):
        with pytest.raises(ValueError, match=reason):
            tools.sql_query(db, "SELECT 1", None)
    for params, reason in (("x", "params must be a list"), ([{"a": 1}], "a parameter must be")):
        with pytest.raises(ValueError, match=reason):
            tools.sql_query(str(shop), "SELECT ?", params)
    monkeypatch.delenv("FMFLOW_SQL_ALLOW")
    with pytest.raises(ValueError, match="set FMFLOW_SQL_ALLOW"):
        tools.sql_query(str(shop), "SELECT 1", None)
    monkeypatch.setenv("FMFLOW_SQL_ALLOW", str(tmp_path))  # a folder allows the databases inside it
    assert tools.sql_query(str(other), "SELECT 2", None)["rows"] == [[2]]
