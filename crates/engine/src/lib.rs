//! # lxdex-engine
//!
//! The deterministic matching core of lxdex: one [`Book`] per market with
//! price-time priority, integer prices and quantities, and limit, market,
//! stop, stop-limit, take-profit, trailing-stop, iceberg, bracket and OCO
//! orders, GTC/IOC/FOK/GTD time in force, post-only, and five self-trade
//! prevention modes. The exact semantics are in `docs/engine.md`.
//!
//! Every command yields events into a caller-owned `Vec<Event>`; a rejected
//! command returns `Err(Reject)` and changes nothing. The engine never reads a
//! clock and never iterates in hash order: the same commands give the same
//! events on any machine.
//!
//! ```
//! use lxdex_engine::{Book, EventKind, OrderRequest, Side};
//!
//! let mut book = Book::new(1, 1);
//! let mut events = Vec::new();
//! book.submit(&OrderRequest::limit(1, 100, Side::Sell, 101, 5), &mut events).unwrap();
//! book.submit(&OrderRequest::limit(2, 200, Side::Buy, 102, 3), &mut events).unwrap();
//! let fill = events.iter().find(|e| e.kind == EventKind::Fill).unwrap();
//! assert_eq!((fill.order_id, fill.other_id, fill.price, fill.qty), (2, 1, 101, 3));
//! assert_eq!(book.best_ask(), Some(101));
//! assert_eq!(book.volume_at(Side::Sell, 101), 2);
//! ```

mod book;
mod codec;
pub mod compact;
pub mod exchange;
pub mod gateway;
mod idmap;
pub mod journal;
pub mod ledger;
pub mod marketdata;
mod markets;
pub mod record;
pub mod replay;
mod types;

pub use book::{Book, DepthLevel, OrderStatus, PendingOrder, RestingOrder, SnapshotError};
pub use exchange::{Exchange, FeeTier, MarketConfig, MarketStatus};
pub use markets::{apply_record, apply_records, Markets};
pub use types::*;
