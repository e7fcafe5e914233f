//! Bindings of `lxdex_engine::journal`: CRC32C, batch framing and scans for
//! the node's journal (python/lxdex/node/journal.py).

use lxdex_engine::journal::{
    crc32c_append, find_valid_record, frame_record, record_crc, scan, Scan, MAX_PAYLOAD_LEN,
    RECORD_HEADER_LEN,
};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::SendPtr;

/// A read-only contiguous byte view of any buffer-protocol object (bytes,
/// bytearray, memoryview, mmap, numpy array). The view holds the exporter.
pub(crate) struct View {
    _buf: Option<PyBuffer<u8>>,
    ptr: *const u8,
    len: usize,
}

impl View {
    pub(crate) fn new(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            let s = b.as_bytes();
            // The bytes object is immutable and `obj` outlives the view.
            return Ok(View { _buf: None, ptr: s.as_ptr(), len: s.len() });
        }
        let buf = PyBuffer::<u8>::get(obj)
            .map_err(|_| PyTypeError::new_err(format!("{what}: expected a bytes-like object")))?;
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err(format!("{what}: expected a contiguous buffer")));
        }
        let (ptr, len) = (buf.buf_ptr() as *const u8, buf.len_bytes());
        Ok(View { _buf: Some(buf), ptr, len })
    }

    /// SAFETY: valid while `self` and the object it was made from live.
    pub(crate) unsafe fn slice(&self) -> &[u8] {
        if self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

fn status(s: &Scan) -> &'static str {
    s.stop.as_str()
}

/// CRC32C (Castagnoli) of `data`, continuing from `crc` (0 to start).
#[pyfunction]
#[pyo3(signature = (data, crc = 0))]
fn crc32c(data: &Bound<'_, PyAny>, crc: u32) -> PyResult<u32> {
    let v = View::new(data, "data")?;
    Ok(crc32c_append(crc, unsafe { v.slice() }))
}

/// Frames `payloads` (bytes-like objects) as consecutive journal records
/// numbered from `first_seq`; returns the framed bytes.
#[pyfunction]
fn journal_frame<'py>(py: Python<'py>, payloads: &Bound<'py, PyAny>, first_seq: u64) -> PyResult<Bound<'py, PyBytes>> {
    let items: Vec<Bound<'py, PyAny>> = if let Ok(list) = payloads.cast::<PyList>() {
        list.iter().collect()
    } else if let Ok(t) = payloads.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        payloads.try_iter()?.collect::<PyResult<_>>()?
    };
    let views: Vec<View> = items.iter().map(|o| View::new(o, "payloads")).collect::<PyResult<_>>()?;
    let mut total = 0usize;
    for v in &views {
        if v.len > MAX_PAYLOAD_LEN {
            return Err(PyValueError::new_err("journal record payload over 1 GiB"));
        }
        total += RECORD_HEADER_LEN + v.len;
    }
    PyBytes::new_with(py, total, |out| {
        let mut off = 0;
        for (i, v) in views.iter().enumerate() {
            let p = unsafe { v.slice() };
            let seq = first_seq + i as u64;
            out[off..off + 4].copy_from_slice(&(p.len() as u32).to_le_bytes());
            out[off + 4..off + 8].copy_from_slice(&record_crc(seq, p).to_le_bytes());
            out[off + 8..off + 16].copy_from_slice(&seq.to_le_bytes());
            out[off + 16..off + 16 + p.len()].copy_from_slice(p);
            off += RECORD_HEADER_LEN + p.len();
        }
        Ok(())
    })
}

/// Frames every `record_size` bytes of `data` as one record, numbered from
/// `first_seq` (e.g. a numpy array of fixed-size command records).
#[pyfunction]
fn journal_frame_fixed<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    record_size: usize,
    first_seq: u64,
) -> PyResult<Bound<'py, PyBytes>> {
    let v = View::new(data, "data")?;
    if record_size == 0 || v.len % record_size != 0 {
        return Err(PyValueError::new_err(format!(
            "data: {} bytes is not a whole number of {record_size}-byte records",
            v.len
        )));
    }
    if record_size > MAX_PAYLOAD_LEN {
        return Err(PyValueError::new_err("journal record payload over 1 GiB"));
    }
    let n = v.len / record_size;
    let ptr = SendPtr(v.ptr, v.len);
    let framed = py.detach(move || {
        // SAFETY: `v` keeps the buffer alive until after this closure.
        let bytes = unsafe { ptr.slice() };
        let mut out = Vec::with_capacity(n * (RECORD_HEADER_LEN + record_size));
        for (i, p) in bytes.chunks_exact(record_size).enumerate() {
            frame_record(&mut out, first_seq + i as u64, p);
        }
        out
    });
    drop(v);
    Ok(PyBytes::new(py, &framed))
}

/// Validates the records of `buf` from offset `start` without returning
/// them: `(count, last_seq, valid_end, status)`.
#[pyfunction]
#[pyo3(signature = (buf, expected_first_seq, start = 0))]
fn journal_check(
    py: Python<'_>,
    buf: &Bound<'_, PyAny>,
    expected_first_seq: u64,
    start: usize,
) -> PyResult<(u64, u64, usize, &'static str)> {
    let v = View::new(buf, "buf")?;
    let ptr = SendPtr(v.ptr, v.len);
    let s = py.detach(move || {
        // SAFETY: `v` keeps the buffer alive until after this closure.
        let bytes = unsafe { ptr.slice() };
        scan(bytes, start, expected_first_seq, 0, usize::MAX, false)
    });
    Ok((s.count, s.last_seq, s.valid_end, status(&s)))
}

/// Scans `buf` from `start`: `(records, valid_end, status)` with one
/// `(seq, payload_start, payload_end)` per valid record.
#[pyfunction]
#[pyo3(signature = (buf, expected_first_seq, start = 0, max_records = None))]
fn journal_scan(
    py: Python<'_>,
    buf: &Bound<'_, PyAny>,
    expected_first_seq: u64,
    start: usize,
    max_records: Option<usize>,
) -> PyResult<(Vec<(u64, usize, usize)>, usize, &'static str)> {
    let v = View::new(buf, "buf")?;
    let ptr = SendPtr(v.ptr, v.len);
    let max = max_records.unwrap_or(usize::MAX);
    let s = py.detach(move || {
        // SAFETY: `v` keeps the buffer alive until after this closure.
        let bytes = unsafe { ptr.slice() };
        scan(bytes, start, expected_first_seq, 0, max, true)
    });
    let st = status(&s);
    Ok((s.records, s.valid_end, st))
}

/// Reads records of `buf` from `start`: `(records, last_seq, valid_end,
/// status)` with one `(seq, payload)` per valid record with `seq >=
/// from_seq`, at most `max_records`; a further call continues from
/// `valid_end` with `last_seq + 1`.
#[pyfunction]
#[pyo3(signature = (buf, expected_first_seq, start = 0, from_seq = 0, max_records = None))]
fn journal_read<'py>(
    py: Python<'py>,
    buf: &Bound<'py, PyAny>,
    expected_first_seq: u64,
    start: usize,
    from_seq: u64,
    max_records: Option<usize>,
) -> PyResult<(Bound<'py, PyList>, u64, usize, &'static str)> {
    let v = View::new(buf, "buf")?;
    let bytes = unsafe { v.slice() };
    let s = scan(bytes, start, expected_first_seq, from_seq, max_records.unwrap_or(usize::MAX), true);
    let items = s
        .records
        .iter()
        .map(|&(seq, a, b)| (seq, PyBytes::new(py, &bytes[a..b])).into_pyobject(py))
        .collect::<PyResult<Vec<_>>>()?;
    let list = PyList::new(py, items)?;
    Ok((list, s.last_seq, s.valid_end, status(&s)))
}

/// Like `journal_read` without the per-record tuples: `(first_seq,
/// payloads, last_seq, valid_end, status)` where `payloads[i]` is record
/// `first_seq + i` (seqs are consecutive). The fast path for replay.
#[pyfunction]
#[pyo3(signature = (buf, expected_first_seq, start = 0, from_seq = 0, max_records = None))]
fn journal_read_payloads<'py>(
    py: Python<'py>,
    buf: &Bound<'py, PyAny>,
    expected_first_seq: u64,
    start: usize,
    from_seq: u64,
    max_records: Option<usize>,
) -> PyResult<(u64, Bound<'py, PyList>, u64, usize, &'static str)> {
    let v = View::new(buf, "buf")?;
    let bytes = unsafe { v.slice() };
    let s = scan(bytes, start, expected_first_seq, from_seq, max_records.unwrap_or(usize::MAX), true);
    let first = s.records.first().map_or(s.last_seq + 1, |r| r.0);
    let list = PyList::new(py, s.records.iter().map(|&(_, a, b)| PyBytes::new(py, &bytes[a..b])))?;
    Ok((first, list, s.last_seq, s.valid_end, status(&s)))
}

/// Like `journal_read_payloads`, without copying the payloads: returns
/// `(first_seq, spans, last_seq, end, status)` where `spans` holds a
/// little-endian `u64` start and end offset into `buf` per record.
#[pyfunction]
#[pyo3(signature = (buf, expected_first_seq, start, from_seq, max_records = None))]
fn journal_read_spans<'py>(
    py: Python<'py>,
    buf: &Bound<'py, PyAny>,
    expected_first_seq: u64,
    start: usize,
    from_seq: u64,
    max_records: Option<usize>,
) -> PyResult<(u64, Bound<'py, PyBytes>, u64, usize, &'static str)> {
    let v = View::new(buf, "buf")?;
    let ptr = SendPtr(v.ptr, v.len);
    let max = max_records.unwrap_or(usize::MAX);
    let s = py.detach(move || {
        // SAFETY: `v` keeps the buffer alive until after this closure.
        let bytes = unsafe { ptr.slice() };
        scan(bytes, start, expected_first_seq, from_seq, max, true)
    });
    let first = s.records.first().map_or(s.last_seq + 1, |r| r.0);
    let mut spans = Vec::with_capacity(s.records.len() * 16);
    for &(_, a, b) in &s.records {
        spans.extend_from_slice(&(a as u64).to_le_bytes());
        spans.extend_from_slice(&(b as u64).to_le_bytes());
    }
    Ok((first, PyBytes::new(py, &spans), s.last_seq, s.valid_end, status(&s)))
}

/// The first offset at or after `start` where a complete, CRC-valid record
/// with `seq >= min_seq` begins, or None.
#[pyfunction]
fn journal_find_valid(py: Python<'_>, buf: &Bound<'_, PyAny>, start: usize, min_seq: u64) -> PyResult<Option<usize>> {
    let v = View::new(buf, "buf")?;
    let ptr = SendPtr(v.ptr, v.len);
    Ok(py.detach(move || {
        // SAFETY: `v` keeps the buffer alive until after this closure.
        let bytes = unsafe { ptr.slice() };
        find_valid_record(bytes, start, min_seq)
    }))
}

/// The journal's background write: `start` hands a framed batch to a thread
/// of its own that writes it to the segment's file descriptor (and
/// fdatasyncs it when asked) without the GIL; `wait` blocks, the GIL
/// released, until it is done. One write in flight at a time: the sequencer
/// applies a batch while its write runs, and neither thread waits on the
/// other for the GIL (a Python worker thread needed the GIL to start, to
/// return from each syscall and to resolve a future: several hand-offs per
/// batch).
#[pyclass(module = "lxdex._core")]
pub(crate) struct DurableWriter {
    shared: std::sync::Arc<WriterShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WriterJob {
    fd: i32,
    data: Vec<u8>,
    sync: bool,
}

#[derive(Default)]
struct WriterState {
    job: Option<WriterJob>,
    busy: bool,
    result: Option<Result<(), (i32, String)>>,
    stop: bool,
}

#[derive(Default)]
struct WriterShared {
    state: std::sync::Mutex<WriterState>,
    cv: std::sync::Condvar,
}

fn writer_loop(shared: std::sync::Arc<WriterShared>) {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    loop {
        let job = {
            let mut st = shared.state.lock().unwrap();
            loop {
                if let Some(job) = st.job.take() {
                    break job;
                }
                if st.stop {
                    return;
                }
                st = shared.cv.wait(st).unwrap();
            }
        };
        // SAFETY: the Journal keeps the descriptor open until `wait` has
        // returned; ManuallyDrop leaves it open here.
        let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(job.fd) });
        let r = (&*file)
            .write_all(&job.data)
            .and_then(|_| if job.sync { file.sync_data() } else { Ok(()) })
            .map_err(|e| (e.raw_os_error().unwrap_or(5), e.to_string()));
        let mut st = shared.state.lock().unwrap();
        st.result = Some(r);
        st.busy = false;
        shared.cv.notify_all();
    }
}

#[pymethods]
impl DurableWriter {
    #[new]
    fn new() -> PyResult<Self> {
        let shared = std::sync::Arc::new(WriterShared::default());
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lxdex-journal".into())
            .spawn(move || writer_loop(s2))
            .map_err(|e| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "cannot start the journal thread: {e}"
                ))
            })?;
        Ok(DurableWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts writing `data` (copied) to file descriptor `fd`, then
    /// fdatasync if `sync`. RuntimeError if a write is already in flight or
    /// the writer is closed.
    fn start(&self, fd: i32, data: &Bound<'_, PyAny>, sync: bool) -> PyResult<()> {
        let v = View::new(data, "data")?;
        let bytes = unsafe { v.slice() }.to_vec();
        let mut st = self.shared.state.lock().unwrap();
        if st.stop {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "the journal writer is closed",
            ));
        }
        if st.busy {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "a journal write is already in flight",
            ));
        }
        st.busy = true;
        st.result = None;
        st.job = Some(WriterJob {
            fd,
            data: bytes,
            sync,
        });
        self.shared.cv.notify_all();
        Ok(())
    }

    /// Waits (GIL released) for the write in flight; raises OSError (with
    /// the errno) if the write or the fdatasync failed, RuntimeError if
    /// nothing was started.
    fn wait(&self, py: Python<'_>) -> PyResult<()> {
        let shared = self.shared.clone();
        let r = py.detach(move || {
            let mut st = shared.state.lock().unwrap();
            while st.busy {
                st = shared.cv.wait(st).unwrap();
            }
            st.result.take()
        });
        match r {
            None => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "no journal write in flight",
            )),
            Some(Ok(())) => Ok(()),
            Some(Err((errno, msg))) => Err(pyo3::exceptions::PyOSError::new_err((errno, msg))),
        }
    }

    /// Finishes the write in flight (if any) and stops the thread.
    fn close(&mut self, py: Python<'_>) {
        {
            let mut st = self.shared.state.lock().unwrap();
            st.stop = true;
            self.shared.cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            py.detach(move || {
                let _ = t.join();
            });
        }
    }
}

impl Drop for DurableWriter {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.stop = true;
            self.shared.cv.notify_all();
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DurableWriter>()?;
    m.add_function(wrap_pyfunction!(crc32c, m)?)?;
    m.add_function(wrap_pyfunction!(journal_frame, m)?)?;
    m.add_function(wrap_pyfunction!(journal_read_spans, m)?)?;
    m.add_function(wrap_pyfunction!(journal_frame_fixed, m)?)?;
    m.add_function(wrap_pyfunction!(journal_check, m)?)?;
    m.add_function(wrap_pyfunction!(journal_scan, m)?)?;
    m.add_function(wrap_pyfunction!(journal_read, m)?)?;
    m.add_function(wrap_pyfunction!(journal_read_payloads, m)?)?;
    m.add_function(wrap_pyfunction!(journal_find_valid, m)?)?;
    m.add("JOURNAL_RECORD_HEADER_LEN", RECORD_HEADER_LEN)?;
    Ok(())
}
