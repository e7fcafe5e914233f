//! Little-endian binary encoding shared by the canonical snapshots.

/// Why snapshot bytes could not be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid book snapshot: {}", self.0)
    }
}

impl std::error::Error for SnapshotError {}

pub(crate) fn bad<T>(what: impl Into<String>) -> Result<T, SnapshotError> {
    Err(SnapshotError(what.into()))
}

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) at: usize,
}

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        if self.b.len() - self.at < n {
            return bad(format!("truncated at byte {}", self.at));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn count(&mut self, min_record: usize) -> Result<usize, SnapshotError> {
        let n = self.u64()?;
        if n > ((self.b.len() - self.at) / min_record) as u64 {
            return bad(format!("count {n} larger than the remaining bytes allow"));
        }
        Ok(n as usize)
    }
    pub(crate) fn enum_<T>(&mut self, f: fn(u8) -> Option<T>, what: &str) -> Result<T, SnapshotError> {
        let v = self.u8()?;
        f(v).map_or_else(|| bad(format!("{what}: invalid value {v}")), Ok)
    }
    pub(crate) fn flag(&mut self, what: &str) -> Result<bool, SnapshotError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => bad(format!("{what}: invalid flag {v}")),
        }
    }
}


impl Writer {
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

impl Reader<'_> {
    pub(crate) fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub(crate) fn i128(&mut self) -> Result<i128, SnapshotError> {
        Ok(i128::from_le_bytes(self.take(16)?.try_into().unwrap()))
    }
    pub(crate) fn bytes(&mut self) -> Result<&[u8], SnapshotError> {
        let n = self.u64()?;
        if n > (self.b.len() - self.at) as u64 {
            return bad(format!("length {n} past the end"));
        }
        self.take(n as usize)
    }
    pub(crate) fn done(&self) -> Result<(), SnapshotError> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            bad("trailing bytes")
        }
    }
}
