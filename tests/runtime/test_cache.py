"""The on-disk response cache: keys, persistence, threads, broken files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from fmflow.runtime.cache import ResponseCache, cache_key

BASE = dict(
    provider="openai",
    model="gpt-4o-mini",
    settings={"temperature": 0, "max_tokens": 100},
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    schema={"type": "object", "properties": {"a": {"type": "string"}}},
)


def key(**changes):
    return cache_key(**{**BASE, **changes})


def test_key_is_stable_sha256_hex():
    k = key()
    assert k == key()
    assert len(k) == 64 and all(c in "0123456789abcdef" for c in k)


def test_key_ignores_dict_order():
    settings = {"max_tokens": 100, "temperature": 0}
    schema = {"properties": {"a": {"type": "string"}}, "type": "object"}
    messages = [{"content": "Be brief.", "role": "system"}, {"content": "Hi", "role": "user"}]
    assert key(settings=settings, schema=schema, messages=messages) == key()


@pytest.mark.parametrize("change", [
    {"provider": "ollama"},
    {"model": "gpt-4o"},
    {"model": None},
    {"settings": {"temperature": 0.5, "max_tokens": 100}},
    {"settings": {"temperature": 0}},
    {"messages": [{"role": "user", "content": "Hi"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."}]},
    {"schema": None},
    {"schema": {"type": "object", "properties": {"a": {"type": "integer"}}}},
])
def test_key_changes_with_every_part(change):
    assert key(**change) != key()


def test_key_does_not_confuse_fields():
    # The same text moved between fields must not collide.
    assert cache_key("a", "b", {}, [], None) != cache_key("b", "a", {}, [], None)


def test_get_put_and_persistence(tmp_path):
    path = tmp_path / "deep" / "cache" / "responses.sqlite3"
    cache = ResponseCache(path)
    assert path.exists()
    assert cache.get("k") is None
    value = {"text": "héllo", "tokens_in": 3, "tokens_out": 1, "model": "m"}
    cache.put("k", value)
    assert cache.get("k") == value
    cache.put("k", {"text": "replaced"})
    assert cache.get("k") == {"text": "replaced"}
    cache.close()

    again = ResponseCache(path)
    assert again.get("k") == {"text": "replaced"}
    assert len(again) == 1
    again.clear()
    assert again.get("k") is None and len(again) == 0
    again.close()


def test_wal_mode(tmp_path):
    path = tmp_path / "c.sqlite3"
    ResponseCache(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_async_wrappers(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite3")

    async def main():
        await cache.aput("k", {"text": "x"})
        return await cache.aget("k"), await cache.aget("missing")

    assert asyncio.run(main()) == ({"text": "x"}, None)


def test_concurrent_puts_from_threads(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite3")
    barrier = threading.Barrier(8)

    def worker(n):
        barrier.wait()
        for i in range(50):
            cache.put(f"{n}-{i}", {"n": n, "i": i})
            assert cache.get(f"{n}-{i}") == {"n": n, "i": i}

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.last_error is None
    assert len(cache) == 400
    assert cache.get("7-49") == {"n": 7, "i": 49}


def test_two_instances_share_one_file(tmp_path):
    path = tmp_path / "c.sqlite3"
    a, b = ResponseCache(path), ResponseCache(path)
    a.put("k", {"v": 1})
    assert b.get("k") == {"v": 1}


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_new_cache_started(tmp_path):
    path = tmp_path / "c.sqlite3"
    garbage = b"this is not a sqlite database at all\x00" * 200
    path.write_bytes(garbage)
    warnings = []
    cache = ResponseCache(path, warn=warnings.append)
    assert cache.available and cache.get("k") is None
    cache.put("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert (tmp_path / "c.sqlite3.broken").read_bytes() == garbage
    assert len(warnings) == 1 and str(path) in warnings[0] and "damaged" in warnings[0]
    cache.close()


def test_unreadable_location_is_tolerated(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = ResponseCache(blocker / "sub" / "c.sqlite3")   # parent is a file
    assert cache.get("k") is None
    cache.put("k", {"v": 1})
    assert cache.last_error is not None


def test_damaged_row_is_a_miss(tmp_path):
    path = tmp_path / "c.sqlite3"
    cache = ResponseCache(path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO responses VALUES ('bad', '{not json', 0)")
    conn.commit()
    conn.close()
    assert cache.get("bad") is None


def test_unserialisable_value_is_recorded_not_raised(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite3")
    cache.put("k", {"v": object()})
    assert cache.get("k") is None
    assert isinstance(cache.last_error, TypeError)


def test_closed_cache_misses(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite3")
    cache.put("k", {"v": 1})
    cache.close()
    assert cache.get("k") is None
    cache.put("k", {"v": 2})        # no exception


# -- damage: detected, said once, rebuilt ---------------------------------------------

def filled(path, rows: int = 300) -> ResponseCache:
    cache = ResponseCache(path)
    for i in range(rows):
        cache.put(f"k{i}", {"text": "x" * 400})
    return cache


def test_a_file_damaged_while_open_is_moved_aside_and_rebuilt(tmp_path):
    path = tmp_path / "c.sqlite3"
    filled(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    warnings = []
    cache = ResponseCache(path, warn=warnings.append)
    assert cache.get("k1") == {"text": "x" * 400}
    with open(path, "r+b") as f:             # another program writes over the middle of the file
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 8192)
    results = [cache.get(f"k{i}") for i in range(300)]
    assert None in results                   # the damaged pages read as misses …
    cache.put("new", {"text": "fresh"})
    assert cache.get("new") == {"text": "fresh"}   # … and the cache works again, on a new file
    assert len(warnings) == 1 and "is damaged" in warnings[0] and str(path) in warnings[0]
    assert (tmp_path / "c.sqlite3.broken").exists()


def test_a_table_of_another_shape_is_moved_aside(tmp_path):
    path = tmp_path / "c.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, payload BLOB)")
    conn.commit()
    conn.close()
    warnings = []
    cache = ResponseCache(path, warn=warnings.append)
    cache.put("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert len(warnings) == 1 and "columns" in warnings[0]


def test_a_busy_file_is_not_damage(tmp_path):
    path = tmp_path / "c.sqlite3"
    ResponseCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")        # another process holds the lock
    warnings = []
    ResponseCache(path, warn=warnings.append).close()
    holder.execute("ROLLBACK")
    holder.close()
    assert warnings == [] and not (tmp_path / "c.sqlite3.broken").exists()


def test_entries_the_reader_refuses_are_deleted_and_said_once(tmp_path):
    warnings = []
    cache = ResponseCache(tmp_path / "c.sqlite3", warn=warnings.append)
    conn = sqlite3.connect(tmp_path / "c.sqlite3")
    conn.executemany("INSERT INTO responses VALUES (?, ?, 0)",
                     [("text-null", '{"text": null}'), ("not-json", "{oops"), ("list", "[1]"),
                      ("good", '{"text": "a"}')])
    conn.commit()
    conn.close()
    accept = lambda value: isinstance(value.get("text"), str)  # noqa: E731
    found = [cache.get(k, accept) for k in ("text-null", "not-json", "list", "good")]
    assert found == [None, None, None, {"text": "a"}]
    assert len(cache) == 1 and len(warnings) == 1 and "damaged entry" in warnings[0]


def test_values_are_masked_and_made_valid_text_before_they_are_stored(tmp_path):
    from fmflow.secrets import SecretMasker

    path = tmp_path / "c.sqlite3"
    cache = ResponseCache(path, masker=SecretMasker(["hunter22"]))
    cache.put("k", {"text": "pw hunter22 at http://u:p@h \ud800", "api_key": "k-1"})
    assert cache.get("k") == {"text": "pw *** at http://***@h \ufffd", "api_key": "***"}
    cache.put("nan", {"v": float("nan")})     # not JSON: not stored
    assert cache.get("nan") is None and isinstance(cache.last_error, ValueError)
    assert b"hunter22" not in path.read_bytes() + (tmp_path / "c.sqlite3-wal").read_bytes()
