//! Binding of `lxdex_engine::gateway`: the binary gateway's per-row acks.

use lxdex_engine::gateway::acks;
use lxdex_engine::record::COMMAND_RECORD_SIZE;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::journal::View;

/// `gateway_acks(records, events) -> bytes`: the 32-byte acks (ACK_DTYPE)
/// of every 120-byte command record in `records`, from the 80-byte
/// EVENT_DTYPE rows `events` of their batch (both bytes-like).
#[pyfunction]
fn gateway_acks<'py>(py: Python<'py>, records: &Bound<'py, PyAny>, events: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let r = View::new(records, "records")?;
    let e = View::new(events, "events")?;
    // SAFETY: the views live until the end of this function.
    let (rs, es) = unsafe { (r.slice(), e.slice()) };
    if rs.len() % COMMAND_RECORD_SIZE != 0 {
        return Err(PyValueError::new_err(format!("records: {} bytes is not whole 120-byte records", rs.len())));
    }
    if es.len() % 80 != 0 {
        return Err(PyValueError::new_err(format!("events: {} bytes is not whole 80-byte events", es.len())));
    }
    Ok(PyBytes::new(py, &acks(rs, es)))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gateway_acks, m)?)
}
