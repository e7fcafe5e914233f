//! `HistoryDb`: the history writer's SQLite connection (python/lxdex/node/history.py).
//!
//! The writer process turns events into columns (numpy arrays) and inserts
//! them here row by row with one prepared statement, binding each value
//! straight from the arrays: no Python tuple or int per value, and no
//! per-call locking of a serialized SQLite build. It is SQLite itself,
//! compiled in (the `bundled` build of rusqlite), used only by the writer
//! process: the node process reads the same file with Python's `sqlite3`
//! (another process: SQLite's file locks keep them apart). Never open one
//! file with both in the same process: POSIX locks do not exclude their own
//! process, and each SQLite copy tracks only its own connections.
//!
//! Errors are raised as the `sqlite3` module's exceptions (`IntegrityError`
//! for a constraint, `OperationalError` for a busy, locked, full or failing
//! database), so the writer retries and reports them as it does for
//! Python's own connection.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::sync::{Mutex, MutexGuard};

fn sqlite_err(py: Python<'_>, e: rusqlite::Error) -> PyErr {
    let class = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            rusqlite::ErrorCode::ConstraintViolation => "IntegrityError",
            rusqlite::ErrorCode::TypeMismatch => "IntegrityError",
            _ => "OperationalError",
        },
        rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => "ProgrammingError",
        _ => "OperationalError",
    };
    let msg = e.to_string();
    match py.import("sqlite3").and_then(|m| m.getattr(class)).and_then(|c| c.call1((msg.clone(),))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// A Python value as an SQLite value (None, bool, int, float, str, bytes).
fn value_of(obj: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Integer(obj.extract::<bool>()? as i64));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj
            .extract::<i64>()
            .map(Value::Integer)
            .map_err(|_| PyOverflowError::new_err(format!("{}: {} does not fit a 64-bit integer", what(), obj)));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Real(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Text(s.to_str()?.to_owned()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Blob(b.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{}: type {} is not supported (None, int, float, str or bytes)",
        what(),
        obj.get_type().name()?
    )))
}

fn object_of<'py>(py: Python<'py>, v: ValueRef<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        ValueRef::Null => py.None().into_bound(py),
        ValueRef::Integer(i) => i.into_pyobject(py)?.into_any(),
        ValueRef::Real(f) => f.into_pyobject(py)?.into_any(),
        ValueRef::Text(t) => PyString::new(py, &String::from_utf8_lossy(t)).into_any(),
        ValueRef::Blob(b) => PyBytes::new(py, b).into_any(),
    })
}

/// A statement's parameters: a list or tuple of values (`row`: which
/// statement of an `executemany`, for messages; None for `execute`).
fn params_of(params: Option<&Bound<'_, PyAny>>, row: Option<usize>) -> PyResult<Vec<Value>> {
    let Some(p) = params else { return Ok(Vec::new()) };
    let at = |i: usize| match row {
        Some(r) => format!("row {r}, parameter {}", i + 1),
        None => format!("parameter {}", i + 1),
    };
    if !(p.is_instance_of::<PyList>() || p.is_instance_of::<PyTuple>()) {
        let what = row.map_or_else(|| "parameters".to_owned(), |r| format!("row {r}"));
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a list or tuple of values, got {}",
            p.get_type().name()?
        )));
    }
    let mut out = Vec::new();
    for (i, item) in p.try_iter()?.enumerate() {
        out.push(value_of(&item?, &|| at(i))?);
    }
    Ok(out)
}

/// One column of `insert_columns`, read for each row.
enum Column {
    Ints(PyBuffer<i64>),
    /// NULL where the value is negative.
    IntsNullNegative(PyBuffer<i64>),
    /// `values[code]` for each code.
    Lookup(PyBuffer<i64>, Vec<Value>),
    Objects(Vec<Value>),
}

impl Column {
    fn ints(obj: &Bound<'_, PyAny>, col: usize) -> PyResult<PyBuffer<i64>> {
        let b = PyBuffer::<i64>::get(obj).map_err(|_| {
            PyTypeError::new_err(format!("column {col}: expected an int64 array (an aligned buffer of 'q' or 'l')"))
        })?;
        if !b.is_c_contiguous() || b.dimensions() != 1 {
            return Err(PyValueError::new_err(format!("column {col}: expected a one-dimensional contiguous array")));
        }
        Ok(b)
    }

    fn new(obj: &Bound<'_, PyAny>, col: usize) -> PyResult<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            let mut v = Vec::with_capacity(list.len());
            for (row, item) in list.iter().enumerate() {
                v.push(value_of(&item, &|| format!("column {col}, row {row}"))?);
            }
            return Ok(Column::Objects(v));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            let tag: String = t.get_item(0)?.extract().map_err(|_| {
                PyTypeError::new_err(format!("column {col}: a tuple column starts with its kind's name"))
            })?;
            return match (tag.as_str(), t.len()) {
                ("null_if_negative", 2) => Ok(Column::IntsNullNegative(Self::ints(&t.get_item(1)?, col)?)),
                ("lookup", 3) => {
                    let table = t.get_item(2)?;
                    let mut vals = Vec::new();
                    for (i, item) in table.try_iter()?.enumerate() {
                        vals.push(value_of(&item?, &|| format!("column {col}, lookup value {i}"))?);
                    }
                    Ok(Column::Lookup(Self::ints(&t.get_item(1)?, col)?, vals))
                }
                _ => Err(PyValueError::new_err(format!(
                    "column {col}: expected ('null_if_negative', array) or ('lookup', array, values), got {tag:?}"
                ))),
            };
        }
        Ok(Column::Ints(Self::ints(obj, col)?))
    }

    fn len(&self) -> usize {
        match self {
            Column::Ints(b) | Column::IntsNullNegative(b) | Column::Lookup(b, _) => b.item_count(),
            Column::Objects(v) => v.len(),
        }
    }
}

fn slice(b: &PyBuffer<i64>) -> &[i64] {
    if b.item_count() == 0 {
        return &[]; // (an empty buffer's pointer may be null)
    }
    // SAFETY: a contiguous one-dimensional buffer of i64, held by `b` (its exporter cannot be
    // resized while a buffer view is held).
    unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const i64, b.item_count()) }
}

/// Something used by one thread at a time but moved into `Python::detach`
/// (a connection, or a guard of its mutex). Sound only because `detach`
/// runs the closure on the calling thread: nothing here crosses threads.
struct AssertSend<T>(T);
unsafe impl<T> Send for AssertSend<T> {}

/// The history writer's connection to its SQLite file. SQLite runs with
/// the GIL released (the writer converts its next group meanwhile); the
/// mutex keeps calls from two threads apart (taken with the GIL released:
/// a thread waiting for it must not hold the GIL its holder needs back).
#[pyclass(name = "HistoryDb", module = "lxdex._core")]
pub(crate) struct HistoryDb {
    conn: Mutex<Option<Connection>>,
}

fn closed() -> PyErr {
    PyValueError::new_err("the history database connection is closed")
}

fn value_object<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    object_of(py, ValueRef::from(v))
}

impl HistoryDb {
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Option<Connection>> {
        if let Ok(g) = self.conn.try_lock() {
            return g;
        }
        py.detach(|| AssertSend(self.conn.lock().unwrap_or_else(|e| e.into_inner()))).0
    }
}

#[pymethods]
impl HistoryDb {
    /// Opens (creating if missing) the SQLite file at `path`.
    #[new]
    #[pyo3(signature = (path, busy_timeout_ms = 30_000))]
    fn new(py: Python<'_>, path: &str, busy_timeout_ms: u64) -> PyResult<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite_err(py, e))?;
        conn.busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))
            .map_err(|e| sqlite_err(py, e))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(HistoryDb { conn: Mutex::new(Some(conn)) })
    }

    /// Runs one statement with `params` (a sequence); returns its rows as tuples.
    #[pyo3(signature = (sql, params = None))]
    fn execute<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let values = params_of(params, None)?;
        let guard = self.lock(py);
        let conn = AssertSend(guard.as_ref().ok_or_else(closed)?);
        let rows = py
            .detach(move || -> rusqlite::Result<Vec<Vec<Value>>> {
                let conn = conn;
                let mut stmt = conn.0.prepare_cached(sql)?;
                let ncol = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push((0..ncol).map(|i| r.get::<_, Value>(i)).collect::<rusqlite::Result<Vec<_>>>()?);
                }
                Ok(out)
            })
            .map_err(|e| sqlite_err(py, e))?;
        rows.iter()
            .map(|r| PyTuple::new(py, r.iter().map(|v| value_object(py, v)).collect::<PyResult<Vec<_>>>()?))
            .collect()
    }

    /// Runs one statement for each sequence of parameters in `rows`; returns how many.
    fn executemany(&self, py: Python<'_>, sql: &str, rows: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut all = Vec::new();
        for (n, row) in rows.try_iter()?.enumerate() {
            all.push(params_of(Some(&row?), Some(n))?);
        }
        let guard = self.lock(py);
        let conn = AssertSend(guard.as_ref().ok_or_else(closed)?);
        let n_params = conn.0.prepare_cached(sql).map_err(|e| sqlite_err(py, e))?.parameter_count();
        if let Some((n, r)) = all.iter().enumerate().find(|(_, r)| r.len() != n_params) {
            return Err(PyValueError::new_err(format!(
                "row {n}: {} parameters for a statement that takes {n_params}",
                r.len()
            )));
        }
        py.detach(move || -> rusqlite::Result<usize> {
            let conn = conn;
            let mut stmt = conn.0.prepare_cached(sql)?;
            for values in &all {
                for (i, v) in values.iter().enumerate() {
                    stmt.raw_bind_parameter(i + 1, v)?;
                }
                stmt.raw_execute()?;
            }
            Ok(all.len())
        })
        .map_err(|e| sqlite_err(py, e))
    }

    /// Runs `sql` once per row of `columns`, the i-th column binding the
    /// i-th parameter: an int64 array, `("null_if_negative", int64 array)`,
    /// `("lookup", int64 codes, values)` or a list of Python values.
    /// Returns the number of rows.
    fn insert_columns(&self, py: Python<'_>, sql: &str, columns: &Bound<'_, PyList>) -> PyResult<usize> {
        let cols = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Column::new(&c, i))
            .collect::<PyResult<Vec<_>>>()?;
        let n = cols.first().map_or(0, Column::len);
        for (i, c) in cols.iter().enumerate() {
            if c.len() != n {
                return Err(PyValueError::new_err(format!("column {i} has {} rows, column 0 has {n}", c.len())));
            }
            if let Column::Lookup(b, vals) = c {
                if let Some(bad) = slice(b).iter().find(|&&k| k < 0 || k as usize >= vals.len()) {
                    return Err(PyValueError::new_err(format!(
                        "column {i}: code {bad} is outside its {} values",
                        vals.len()
                    )));
                }
            }
        }
        let guard = self.lock(py);
        let conn = AssertSend(guard.as_ref().ok_or_else(closed)?);
        let n_params = conn.0.prepare_cached(sql).map_err(|e| sqlite_err(py, e))?.parameter_count();
        if cols.len() != n_params {
            return Err(PyValueError::new_err(format!(
                "{} columns for a statement that takes {n_params} parameters",
                cols.len()
            )));
        }
        // The arrays' buffers are held by `cols` until this returns; nothing resizes them meanwhile
        // (the writer hands over a group's columns and waits for this call).
        let job = AssertSend((&cols, conn));
        py.detach(move || -> rusqlite::Result<()> {
            let job = job;
            let (cols, conn) = job.0;
            let mut stmt = conn.0.prepare_cached(sql)?;
            let ncol = cols.len();
            let slices: Vec<&[i64]> = cols
                .iter()
                .map(|c| match c {
                    Column::Ints(b) | Column::IntsNullNegative(b) | Column::Lookup(b, _) => slice(b),
                    Column::Objects(_) => &[][..],
                })
                .collect();
            // Rows are bound from a block copied row-major first: read column by column for each
            // row, the columns' cache lines were evicted by SQLite's own work between rows (a
            // profile of the writer put ~5% of its time on those loads).
            const BLOCK: usize = 256;
            let mut block = vec![0i64; BLOCK * ncol];
            for start in (0..n).step_by(BLOCK) {
                let len = BLOCK.min(n - start);
                for (i, col) in slices.iter().enumerate() {
                    if !col.is_empty() {
                        for (r, v) in col[start..start + len].iter().enumerate() {
                            block[r * ncol + i] = *v;
                        }
                    }
                }
                for r in 0..len {
                    let vals = &block[r * ncol..(r + 1) * ncol];
                    for (i, c) in cols.iter().enumerate() {
                        match c {
                            Column::Ints(_) => stmt.raw_bind_parameter(i + 1, vals[i])?,
                            Column::IntsNullNegative(_) => {
                                if vals[i] < 0 {
                                    stmt.raw_bind_parameter(i + 1, rusqlite::types::Null)?
                                } else {
                                    stmt.raw_bind_parameter(i + 1, vals[i])?
                                }
                            }
                            Column::Lookup(_, values) => stmt.raw_bind_parameter(i + 1, &values[vals[i] as usize])?,
                            Column::Objects(v) => stmt.raw_bind_parameter(i + 1, &v[start + r])?,
                        }
                    }
                    stmt.raw_execute()?;
                }
            }
            Ok(())
        })
        .map_err(|e| sqlite_err(py, e))?;
        Ok(n)
    }

    /// Whether a transaction is open (not autocommit).
    #[getter]
    fn in_transaction(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(!self.lock(py).as_ref().ok_or_else(closed)?.is_autocommit())
    }

    /// Closes the connection (rolling back an open transaction); later calls raise.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(c) = self.lock(py).take() {
            c.close().map_err(|(_, e)| sqlite_err(py, e))?;
        }
        Ok(())
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HistoryDb>()
}
