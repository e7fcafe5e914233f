//! Many books in one process, addressed by market index: the batch driver
//! for multi-market command streams.

use crate::book::Book;
use crate::record::{records, CommandRecord};
use crate::types::*;

/// A set of books indexed `0..len`.
#[derive(Clone, Debug, Default)]
pub struct Markets {
    books: Vec<Book>,
}

impl Markets {
    /// No markets yet.
    pub fn new() -> Markets {
        Markets::default()
    }
    /// Adds a book and returns its market index.
    pub fn add(&mut self, tick_size: i64, lot_size: i64) -> u32 {
        self.books.push(Book::new(tick_size, lot_size));
        (self.books.len() - 1) as u32
    }
    /// Number of markets.
    pub fn len(&self) -> usize {
        self.books.len()
    }
    /// Whether there are no markets.
    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }
    /// The book of a market.
    pub fn book(&self, market: u32) -> Option<&Book> {
        self.books.get(market as usize)
    }
    /// The book of a market, mutably.
    pub fn book_mut(&mut self, market: u32) -> Option<&mut Book> {
        self.books.get_mut(market as usize)
    }
    /// Applies one record to the book its `market` field names (an unknown
    /// market is `INVALID_COMMAND`), stamping `cmd_index` and `market` on
    /// every event it produces.
    pub fn apply_record(&mut self, rec: &CommandRecord, cmd_index: u32, out: &mut Vec<Event>) {
        let start = out.len();
        match self.books.get_mut(rec.market as usize) {
            Some(book) => apply_record(book, rec, out),
            None => out.push(rec.rejected(Reason::InvalidCommand)),
        }
        for e in &mut out[start..] {
            e.cmd_index = cmd_index;
            e.market = rec.market;
        }
    }
    /// Applies a buffer of whole command records, appending their events.
    pub fn apply_records(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        for (i, rec) in records(bytes).enumerate() {
            self.apply_record(&rec, i as u32, out);
        }
    }
}

/// Applies one record to a book; a rejection becomes a `REJECTED` event.
#[inline]
pub fn apply_record(book: &mut Book, rec: &CommandRecord, out: &mut Vec<Event>) {
    let result = rec.to_command().and_then(|cmd| book.apply(&cmd, out));
    if let Err(r) = result {
        out.push(rec.rejected(r.reason));
    }
}

/// Applies a buffer of whole command records to one book, stamping each
/// event's `cmd_index` (the record's position) and `market` (the record's).
pub fn apply_records(book: &mut Book, bytes: &[u8], out: &mut Vec<Event>) {
    for (i, rec) in records(bytes).enumerate() {
        let start = out.len();
        apply_record(book, &rec, out);
        for e in &mut out[start..] {
            e.cmd_index = i as u32;
            e.market = rec.market;
        }
    }
}
