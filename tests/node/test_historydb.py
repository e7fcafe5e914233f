"""`_core.HistoryDb`, the history writer's SQLite connection, against
Python's `sqlite3` reading the same file: what it binds from columns, and
its errors (the `sqlite3` module's, so the writer treats them alike)."""

import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxdex import _core
from lxdex.node.history import _Cols, _FastSQLite


def _db(tmp_path):
    db = _core.HistoryDb(str(tmp_path / "h.sqlite3"))
    db.execute("CREATE TABLE t (a INTEGER, b INTEGER, c TEXT, d)")
    return db


def _read(tmp_path):
    with sqlite3.connect(tmp_path / "h.sqlite3") as c:
        return c.execute("SELECT a, b, c, d FROM t ORDER BY rowid").fetchall()


def test_execute_binds_python_values_and_returns_rows(tmp_path):
    db = _db(tmp_path)
    db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (1, None, "x", 2.5))
    db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (2**63 - 1, True, "é", b"\x00\x01"))
    assert db.execute("SELECT a, b, c, d FROM t ORDER BY a") == [(1, None, "x", 2.5), (2**63 - 1, 1, "é", b"\x00\x01")]
    assert db.execute("SELECT count(*) FROM t WHERE a > ?", [5]) == [(1,)]
    db.close()
    assert _read(tmp_path) == [(1, None, "x", 2.5), (2**63 - 1, 1, "é", b"\x00\x01")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5), st.integers(0, 3),
                          st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5))),
                max_size=40))
def test_insert_columns_binds_what_the_rows_say(tmp_path_factory, rows):
    tmp_path = tmp_path_factory.mktemp("h")
    db = _db(tmp_path)
    a = np.array([r[0] for r in rows], np.int64)
    b = np.array([r[1] for r in rows], np.int64)
    c = np.array([r[2] for r in rows], np.int64)
    d = [r[3] for r in rows]
    values = ["zero", None, "two", "three"]
    cols = _Cols(a, ("null_if_negative", b), ("lookup", c, values), d)
    db.execute("BEGIN")
    assert db.insert_columns("INSERT INTO t VALUES (?, ?, ?, ?)", cols.cols) == len(rows)
    db.execute("COMMIT")
    db.close()
    want = [(r[0], r[1] if r[1] >= 0 else None, values[r[2]], r[3]) for r in rows]
    assert _read(tmp_path) == want
    assert cols.rows() == want  # the tuples the other backends get are the same rows


def test_strided_and_unaligned_views_are_taken_as_their_values(tmp_path):
    db = _db(tmp_path)
    rec = np.zeros(3, np.dtype([("k", "u1"), ("v", "<i8"), ("w", "<u8")], align=False))  # packed: 'v' unaligned
    rec["v"] = [7, -8, 9]
    rec["w"] = [1, 2, 3]
    for sub in (rec, rec[:1]):
        cols = _Cols(sub["v"], sub["w"], [None] * len(sub), [None] * len(sub))
        db.insert_columns("INSERT INTO t VALUES (?, ?, ?, ?)", cols.cols)
    db.close()
    assert _read(tmp_path) == [(7, 1, None, None), (-8, 2, None, None), (9, 3, None, None), (7, 1, None, None)]


def test_bad_columns_are_refused_before_anything_is_written(tmp_path):
    db = _db(tmp_path)
    sql = "INSERT INTO t VALUES (?, ?, ?, ?)"
    one = np.array([1], np.int64)
    with pytest.raises(ValueError, match="column 1 has 2 rows, column 0 has 1"):
        db.insert_columns(sql, [one, np.array([1, 2], np.int64), one, one])
    with pytest.raises(ValueError, match="3 columns for a statement that takes 4"):
        db.insert_columns(sql, [one, one, one])
    with pytest.raises(ValueError, match="column 2: code 4 is outside its 2 values"):
        db.insert_columns(sql, [one, one, ("lookup", np.array([4], np.int64), ["a", "b"]), one])
    with pytest.raises(TypeError, match="column 0: expected an int64 array"):
        db.insert_columns(sql, [np.array([1.5]), one, one, one])
    with pytest.raises(TypeError, match="column 3, row 0: type dict is not supported"):
        db.insert_columns(sql, [one, one, one, [{}]])
    with pytest.raises(OverflowError, match="^parameter 1: 18446744073709551616 does not fit"):
        db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (2**64, 0, 0, 0))
    with pytest.raises(OverflowError, match="does not fit"):
        _Cols(np.array([2**63], np.uint64))
    db.close()
    assert _read(tmp_path) == []


def test_sqlite_errors_are_the_sqlite3_modules(tmp_path):
    db = _db(tmp_path)
    db.execute("CREATE TABLE u (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        db.insert_columns("INSERT INTO u VALUES (?)", [np.array([2, 1], np.int64)])
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        db.execute("SELECT * FROM nope")
    # another process holds the write lock: "database is locked" after the busy timeout (another process:
    # POSIX locks do not exclude the process that holds them, and only SQLite's own copy tracks that)
    db.close()
    db = _core.HistoryDb(str(tmp_path / "h.sqlite3"), 50)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.read()", str(tmp_path / "h.sqlite3")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            db.execute("BEGIN IMMEDIATE")
    finally:
        holder.stdin.close()
        holder.wait(10)
    db.execute("BEGIN IMMEDIATE")
    assert db.in_transaction
    db.execute("ROLLBACK")
    db.close()
    with pytest.raises(ValueError, match="closed"):
        db.execute("SELECT 1")


def test_the_connection_wrapper_reads_like_sqlite3(tmp_path):
    conn = _FastSQLite(_db(tmp_path))
    conn.cursor().executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(1, 2, "a", None), (3, 4, "b", None)])
    assert conn.execute("SELECT a FROM t ORDER BY a").fetchall() == [(1,), (3,)]
    assert conn.execute("SELECT a FROM t WHERE a = ?", (3,)).fetchone() == (3,)
    assert conn.execute("SELECT a FROM t WHERE a = ?", (9,)).fetchone() is None
    conn.close()


_TWO_THREADS = """
import sys, threading
from lxdex import _core
db = _core.HistoryDb(sys.argv[1])
done, short = [], []
long = threading.Thread(target=lambda: done.append(db.execute(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT count(*) FROM c")))
long.start()
for _ in range(50):
    short.append((db.in_transaction, db.execute("SELECT 1")))
long.join()
assert done == [[(2000000,)]] and short == [(False, [(1,)])] * 50
print("ok")
"""


def test_two_threads_on_one_connection_take_turns(tmp_path):
    """A call waits for the other thread's with the GIL released (holding it, the two would wait for each
    other forever: SQLite runs without the GIL, and the running call needs it back to return). In a
    process of its own: a deadlock there is a timeout here, not a hung test run."""
    r = subprocess.run([sys.executable, "-c", _TWO_THREADS, str(tmp_path / "h.sqlite3")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_parameters_are_a_list_or_tuple(tmp_path):
    db = _db(tmp_path)
    with pytest.raises(TypeError, match="parameters: expected a list or tuple of values, got str"):
        db.execute("SELECT ?", "x")
    with pytest.raises(TypeError, match="row 1: expected a list or tuple of values, got dict"):
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(1, 2, 3, 4), {"a": 1}])
    with pytest.raises(TypeError, match="column 0: a tuple column starts with its kind's name"):
        db.insert_columns("INSERT INTO t VALUES (?, ?, ?, ?)", [(1, 2)] + [[1]] * 3)
    db.close()
    assert _read(tmp_path) == []
