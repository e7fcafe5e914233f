//! The common case of `POST /order` in one call: the JSON body of a plain
//! limit or market order to its 120-byte SUBMIT record.
//!
//! `OrderJson.parse` takes only bodies it can convert exactly as the Python
//! path does (python/lxdex/node/http.py `post_order`: msgspec decode, then
//! `Exchange.order_record`), and returns None for anything else: unknown
//! fields or markets, escapes in strings, exponents, numbers a float would
//! not hold exactly, off-grid or out-of-range amounts, conditional order
//! types, bad values. The Python path then answers those, with its errors.
//! tests/node/test_order_json.py checks the two paths give the same rows.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// A decimal amount's grid: `mant * 10^-k` (a tick or lot size).
#[derive(Clone, Copy)]
struct Step {
    mant: u128,
    k: u32,
}

#[derive(Clone, Copy)]
struct MarketSpec {
    id: u32,
    tick: Step,
    lot: Step,
}

/// What a reply shows of a market: its symbol (JSON-safe) and its tick and
/// lot sizes as Python's `Decimal` holds them (coefficient, exponent).
struct ReplySpec {
    symbol: String,
    tick: (u128, i32),
    lot: (u128, i32),
}

/// `coef * 10^exp` as Python's `str(Decimal)` writes it (the reply's
/// `units * step`): plain notation when `exp <= 0` and the adjusted exponent
/// is at least -6, else scientific (`0E-8`, `5E+1`).
fn decimal_str(out: &mut Vec<u8>, neg: bool, coef: u128, exp: i32) {
    let digits = coef.to_string();
    let n = digits.len() as i32;
    let adjusted = exp + n - 1;
    if neg {
        out.push(b'-');
    }
    if exp <= 0 && adjusted >= -6 {
        if exp == 0 {
            out.extend_from_slice(digits.as_bytes());
        } else if n > -exp {
            let cut = (n + exp) as usize;
            out.extend_from_slice(&digits.as_bytes()[..cut]);
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[cut..]);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - n) as usize));
            out.extend_from_slice(digits.as_bytes());
        }
    } else {
        out.push(digits.as_bytes()[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[1..]);
        }
        out.push(b'E');
        if adjusted >= 0 {
            out.push(b'+');
        }
        out.extend_from_slice(adjusted.to_string().as_bytes());
    }
}

/// `units * step` (a tick or lot size as (coefficient, exponent)) as the
/// JSON string Python's reply holds; None past `Decimal`'s 28 digits.
fn amount(out: &mut Vec<u8>, units: i64, step: (u128, i32)) -> Option<()> {
    let coef = u128::from(units.unsigned_abs()).checked_mul(step.0)?;
    if coef >= 10u128.pow(28) {
        return None;
    }
    out.push(b'"');
    decimal_str(out, units < 0 && coef != 0, coef, step.1);
    out.push(b'"');
    Some(())
}

/// Byte offsets of the EVENT_DTYPE fields a reply reads.
struct EventLayout {
    size: usize,
    kind: usize,
    reason: usize,
    order_type: usize,
    cmd_index: usize,
    market: usize,
    order_id: usize,
    other_id: usize,
    price: usize,
    qty: usize,
    remaining: usize,
}

fn u8_at(e: &[u8], o: usize) -> u8 {
    e[o]
}
/// Little-endian fields of a fixed-layout record (also the history writer's, histrows.rs).
pub(crate) fn u32_at(e: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(e[o..o + 4].try_into().unwrap())
}
pub(crate) fn u64_at(e: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(e[o..o + 8].try_into().unwrap())
}
pub(crate) fn i64_at(e: &[u8], o: usize) -> i64 {
    i64::from_le_bytes(e[o..o + 8].try_into().unwrap())
}

/// The JSON values the fast path reads.
#[derive(Clone, Copy, PartialEq)]
enum Val<'a> {
    Str(&'a [u8]),
    /// A number literal: its text, and whether it has a fraction (a float to msgspec).
    Num(&'a [u8], bool),
    Bool(bool),
    Null,
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes or control characters (anything else: None).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Some(s);
                }
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        None
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn value(&mut self) -> Option<Val<'a>> {
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => self.string().map(Val::Str),
            b't' => self.literal(b"true").map(|_| Val::Bool(true)),
            b'f' => self.literal(b"false").map(|_| Val::Bool(false)),
            b'n' => self.literal(b"null").map(|_| Val::Null),
            b'0'..=b'9' => {
                // JSON's grammar: no leading zeros, digits [. digits]; no sign, no exponent here.
                let start = self.i;
                while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                if self.i - start > 1 && self.b[start] == b'0' {
                    return None;
                }
                let mut frac = false;
                if self.b.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    let f = self.i;
                    while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                        self.i += 1;
                    }
                    if self.i == f {
                        return None;
                    }
                    frac = true;
                }
                if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                    return None;
                }
                Some(Val::Num(&self.b[start..self.i], frac))
            }
            _ => None,
        }
    }
}

/// `text` (digits, at most one point) as `(mantissa, fraction digits)`;
/// None beyond 36 digits.
fn decimal(text: &[u8]) -> Option<(u128, u32)> {
    let mut m: u128 = 0;
    let mut k = 0u32;
    let mut point = false;
    let mut digits = 0;
    for &c in text {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u128::from(c - b'0');
                digits += 1;
                if digits > 36 {
                    return None;
                }
                if point {
                    k += 1;
                }
            }
            b'.' if !point => point = true,
            _ => return None,
        }
    }
    if digits == 0 || text.last() == Some(&b'.') || text.first() == Some(&b'.') {
        return None;
    }
    Some((m, k))
}

/// Significant digits of a number literal: from its first to its last
/// non-zero digit (0 for zero).
fn significant(text: &[u8]) -> usize {
    let (mut n, mut first, mut last) = (0, None, 0);
    for &c in text.iter().filter(|c| c.is_ascii_digit()) {
        if c != b'0' {
            first.get_or_insert(n);
            last = n + 1;
        }
        n += 1;
    }
    first.map_or(0, |f| last - f)
}

/// An amount as a whole number of `step`s: exact, below 2^63, or None.
fn units(v: Val<'_>, step: Step) -> Option<i64> {
    let (m, k) = match v {
        // A float (msgspec decodes `1.5` as one, the Python path formats it with repr): exact when it
        // has at most 15 significant digits (they survive the round trip through a double).
        Val::Num(t, true) if significant(t) <= 15 => decimal(t)?,
        Val::Num(t, false) | Val::Str(t) => decimal(t)?,
        _ => return None,
    };
    let n = if k <= step.k {
        m.checked_mul(10u128.checked_pow(step.k - k)?)?
    } else {
        let d = 10u128.checked_pow(k - step.k)?;
        if m % d != 0 {
            return None;
        }
        m / d
    };
    if n % step.mant != 0 {
        return None;
    }
    i64::try_from(n / step.mant).ok()
}

fn uint(v: Val<'_>) -> Option<u64> {
    match v {
        Val::Num(t, false) if t.len() <= 20 => std::str::from_utf8(t).ok()?.parse().ok(),
        _ => None,
    }
}

/// Enum names as `parse_enum` takes them: the name, case-insensitive (ASCII).
fn lookup(table: &HashMap<Vec<u8>, u8>, name: &[u8]) -> Option<u8> {
    table.get(&name.to_ascii_lowercase()).copied()
}

/// The SUBMIT record of a plain order from `POST /order`'s JSON; see the module doc.
#[pyclass(module = "lxdex._core")]
pub(crate) struct OrderJson {
    markets: HashMap<Vec<u8>, MarketSpec>,
    sides: HashMap<Vec<u8>, u8>,
    types: HashMap<Vec<u8>, u8>,
    tifs: HashMap<Vec<u8>, u8>,
    stps: HashMap<Vec<u8>, u8>,
    /// The time in force of an order that gives none, by order type.
    default_tif: HashMap<u8, u8>,
    submit_kind: u8,
    post_only_flag: u8,
    /// Replies (`replies`): markets by id, the event layout and kinds, reason names.
    reply_markets: HashMap<u32, ReplySpec>,
    layout: Option<EventLayout>,
    kinds: (u8, u8, u8, u8),
    reasons: HashMap<u8, String>,
    conditional: Vec<u8>,
}

fn names(d: &Bound<'_, PyDict>) -> PyResult<HashMap<Vec<u8>, u8>> {
    let mut out = HashMap::new();
    for (k, v) in d.iter() {
        out.insert(
            k.extract::<String>()?.to_ascii_lowercase().into_bytes(),
            v.extract::<u8>()?,
        );
    }
    Ok(out)
}

#[pymethods]
impl OrderJson {
    /// `sides`, `types` (only the types it may place), `tifs`, `stps`:
    /// lower-case names to values; `default_tif`: order type to the time in
    /// force an order without one gets.
    #[new]
    fn new(
        sides: &Bound<'_, PyDict>,
        types: &Bound<'_, PyDict>,
        tifs: &Bound<'_, PyDict>,
        stps: &Bound<'_, PyDict>,
        default_tif: HashMap<u8, u8>,
        submit_kind: u8,
        post_only_flag: u8,
    ) -> PyResult<Self> {
        Ok(OrderJson {
            markets: HashMap::new(),
            sides: names(sides)?,
            types: names(types)?,
            tifs: names(tifs)?,
            stps: names(stps)?,
            default_tif,
            submit_kind,
            post_only_flag,
            reply_markets: HashMap::new(),
            layout: None,
            kinds: (0, 0, 0, 0),
            reasons: HashMap::new(),
            conditional: Vec::new(),
        })
    }

    /// What `replies` needs: EVENT_DTYPE's item size and field offsets (a
    /// dict of kind, reason, order_type, cmd_index, market, order_id,
    /// other_id, price, qty, remaining), the event kinds (accepted,
    /// rejected, fill, cancelled), reason names by value (lower case) and
    /// the conditional order types.
    fn set_reply_tables(
        &mut self,
        size: usize,
        offsets: HashMap<String, usize>,
        kinds: (u8, u8, u8, u8),
        reasons: HashMap<u8, String>,
        conditional: Vec<u8>,
    ) -> PyResult<()> {
        let get = |k: &str| {
            offsets.get(k).copied().ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("offsets: {k} missing"))
            })
        };
        let layout = EventLayout {
            size,
            kind: get("kind")?,
            reason: get("reason")?,
            order_type: get("order_type")?,
            cmd_index: get("cmd_index")?,
            market: get("market")?,
            order_id: get("order_id")?,
            other_id: get("other_id")?,
            price: get("price")?,
            qty: get("qty")?,
            remaining: get("remaining")?,
        };
        if [layout.cmd_index, layout.market]
            .iter()
            .any(|&o| o + 4 > size)
            || [
                layout.order_id,
                layout.other_id,
                layout.price,
                layout.qty,
                layout.remaining,
            ]
            .iter()
            .any(|&o| o + 8 > size)
            || [layout.kind, layout.reason, layout.order_type]
                .iter()
                .any(|&o| o >= size)
        {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "offsets: a field lies past the item size",
            ));
        }
        self.layout = Some(layout);
        self.kinds = kinds;
        self.reasons = reasons;
        self.conditional = conditional;
        Ok(())
    }

    /// Registers what a reply shows of market `id`: symbol, tick and lot
    /// sizes as `Decimal.as_tuple()` gives them (coefficient, exponent).
    fn add_reply_market(&mut self, id: u32, symbol: &str, tick: (u128, i32), lot: (u128, i32)) {
        if symbol
            .bytes()
            .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
        {
            self.reply_markets.insert(
                id,
                ReplySpec {
                    symbol: symbol.to_string(),
                    tick,
                    lot,
                },
            );
        }
    }

    /// The replies to a batch's `n_rows` orders from its events (an
    /// EVENT_DTYPE buffer) applied at `seq`: one JSON body per row, as
    /// http.py `_row_reply` and msgspec would write it, or None for a row
    /// the Python path must answer (a rejection, an unknown market).
    fn replies<'py>(
        &self,
        py: Python<'py>,
        events: &Bound<'py, PyAny>,
        n_rows: usize,
        seq: u64,
    ) -> PyResult<Vec<Option<Bound<'py, PyBytes>>>> {
        let Some(l) = &self.layout else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "set_reply_tables first",
            ));
        };
        let v = crate::journal::View::new(events, "events")?;
        let buf = unsafe { v.slice() };
        if buf.len() % l.size != 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "events: not a whole number of events",
            ));
        }
        let mut rows: Vec<Vec<&[u8]>> = vec![Vec::new(); n_rows];
        for e in buf.chunks_exact(l.size) {
            let i = u32_at(e, l.cmd_index) as usize;
            if i < n_rows {
                rows[i].push(e);
            }
        }
        let mut out = Vec::with_capacity(n_rows);
        for evs in rows {
            out.push(self.reply(&evs, seq).map(|b| PyBytes::new(py, &b)));
        }
        Ok(out)
    }

    /// Registers a market: its id and tick and lot sizes as `mant * 10^-k`.
    fn add_market(
        &mut self,
        symbol: &str,
        id: u32,
        tick: (u128, u32),
        lot: (u128, u32),
    ) -> PyResult<()> {
        if tick.0 == 0 || lot.0 == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "tick and lot sizes must be positive",
            ));
        }
        let spec = MarketSpec {
            id,
            tick: Step {
                mant: tick.0,
                k: tick.1,
            },
            lot: Step {
                mant: lot.0,
                k: lot.1,
            },
        };
        self.markets.insert(symbol.as_bytes().to_vec(), spec);
        Ok(())
    }

    fn has_market(&self, symbol: &str) -> bool {
        self.markets.contains_key(symbol.as_bytes())
    }

    /// `(record, market id)` for the body, or None when the Python path must
    /// take it. `default_account`: the account of an order that names none.
    #[pyo3(signature = (body, default_account = None))]
    fn parse<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        default_account: Option<u64>,
    ) -> Option<(Bound<'py, PyBytes>, u32)> {
        let row = self.row(body, default_account)?;
        Some((PyBytes::new(py, &row.0), row.1))
    }
}

impl OrderJson {
    /// http.py `_row_reply` / `_reply` for one row's events; None where the
    /// Python path must answer.
    fn reply(&self, evs: &[&[u8]], seq: u64) -> Option<Vec<u8>> {
        let l = self.layout.as_ref()?;
        let (accepted, rejected, fill, cancelled) = self.kinds;
        if evs.iter().any(|e| u8_at(e, l.kind) == rejected) {
            return None;
        }
        let first = evs.iter().find(|e| u8_at(e, l.kind) == accepted)?;
        let oid = u64_at(first, l.order_id);
        let m = self.reply_markets.get(&u32_at(first, l.market))?;
        let mut fills = Vec::new();
        let mut n_fills = 0;
        let mut filled: i64 = 0;
        let (mut conditional, mut done, mut reason) = (false, false, None);
        for e in evs {
            if u64_at(e, l.order_id) != oid {
                continue;
            }
            let kind = u8_at(e, l.kind);
            if kind == accepted {
                conditional = self.conditional.contains(&u8_at(e, l.order_type));
            } else if kind == fill {
                fills.extend_from_slice(if n_fills == 0 {
                    b"{\"price\":"
                } else {
                    b",{\"price\":"
                });
                amount(&mut fills, i64_at(e, l.price), m.tick)?;
                fills.extend_from_slice(b",\"qty\":");
                amount(&mut fills, i64_at(e, l.qty), m.lot)?;
                fills.extend_from_slice(b",\"maker_order_id\":");
                fills.extend_from_slice(u64_at(e, l.other_id).to_string().as_bytes());
                fills.push(b'}');
                n_fills += 1;
                filled = filled.checked_add(i64_at(e, l.qty))?;
                done = i64_at(e, l.remaining) == 0;
            } else if kind == cancelled {
                reason = Some(self.reasons.get(&u8_at(e, l.reason))?);
            }
        }
        let status: &[u8] = if reason.is_some() {
            b"cancelled"
        } else if conditional && n_fills == 0 {
            b"pending_trigger"
        } else if done {
            b"filled"
        } else if n_fills > 0 {
            b"partially_filled"
        } else {
            b"new"
        };
        let mut out = Vec::with_capacity(96 + fills.len());
        out.extend_from_slice(b"{\"order_id\":");
        out.extend_from_slice(oid.to_string().as_bytes());
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b",\"symbol\":\"");
        out.extend_from_slice(m.symbol.as_bytes());
        out.extend_from_slice(b"\",\"status\":\"");
        out.extend_from_slice(status);
        out.extend_from_slice(b"\",\"filled\":");
        amount(&mut out, filled, m.lot)?;
        out.extend_from_slice(b",\"fills\":[");
        out.extend_from_slice(&fills);
        out.push(b']');
        if let Some(r) = reason {
            out.extend_from_slice(b",\"cancel_reason\":\"");
            out.extend_from_slice(r.as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
        Some(out)
    }

    fn row(&self, body: &[u8], default_account: Option<u64>) -> Option<([u8; 120], u32)> {
        let mut p = Parser { b: body, i: 0 };
        p.eat(b'{')?;
        let mut fields: [Option<Val<'_>>; 12] = [None; 12];
        const KEYS: [&[u8]; 12] = [
            b"symbol",
            b"side",
            b"size",
            b"price",
            b"type",
            b"tif",
            b"account",
            b"post_only",
            b"stp",
            b"trigger_price",
            b"display_size",
            b"expire_ts",
        ];
        p.ws();
        if p.b.get(p.i) == Some(&b'}') {
            return None; // required fields missing
        }
        loop {
            let key = p.string()?;
            p.eat(b':')?;
            let v = p.value()?;
            let slot = KEYS.iter().position(|k| *k == key)?;
            if fields[slot].is_some() {
                return None; // a repeated key: the Python path decides
            }
            fields[slot] = Some(v);
            p.ws();
            match p.b.get(p.i) {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        p.ws();
        if p.i != p.b.len() {
            return None;
        }
        let [symbol, side, size, price, otype, tif, account, post_only, stp, trigger, display, expire] =
            fields;
        let Val::Str(symbol) = symbol? else {
            return None;
        };
        let m = self.markets.get(symbol)?;
        let side = match side? {
            Val::Num(b"0", false) => 0,
            Val::Num(b"1", false) => 1,
            Val::Str(s) => lookup(&self.sides, s)?,
            _ => return None,
        };
        let otype = match otype {
            None => lookup(&self.types, b"limit")?,
            Some(Val::Str(s)) => lookup(&self.types, s)?,
            _ => return None,
        };
        let tif = match tif {
            None | Some(Val::Null) => *self.default_tif.get(&otype)?,
            Some(Val::Str(s)) => lookup(&self.tifs, s)?,
            _ => return None,
        };
        let stp = match stp {
            None => lookup(&self.stps, b"none")?,
            Some(Val::Str(s)) => lookup(&self.stps, s)?,
            _ => return None,
        };
        let account = match account {
            None | Some(Val::Null) => default_account?,
            Some(v) => uint(v)?,
        };
        let flags = match post_only {
            None | Some(Val::Bool(false)) => 0,
            Some(Val::Bool(true)) => self.post_only_flag,
            _ => return None,
        };
        if !matches!(trigger, None | Some(Val::Null)) || !matches!(display, None | Some(Val::Null))
        {
            return None;
        }
        let expire = match expire {
            None => 0,
            Some(v) => uint(v)?,
        };
        let lots = units(size?, m.lot)?;
        let ticks = match price {
            None | Some(Val::Null) => 0,
            Some(v) => units(v, m.tick)?,
        };
        let mut r = [0u8; 120];
        r[..6].copy_from_slice(&[self.submit_kind, side, otype, tif, stp, flags]);
        r[8..12].copy_from_slice(&m.id.to_le_bytes());
        r[24..32].copy_from_slice(&account.to_le_bytes());
        r[32..40].copy_from_slice(&ticks.to_le_bytes());
        r[40..48].copy_from_slice(&lots.to_le_bytes());
        r[64..72].copy_from_slice(&expire.to_le_bytes());
        Some((r, m.id))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OrderJson>()
}
