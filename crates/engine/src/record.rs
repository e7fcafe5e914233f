//! Fixed-layout batch records: the command record (120 bytes) that batch
//! drivers read, matching `lxdex.enums.COMMAND_DTYPE`. Events are written as
//! [`crate::Event`], which is itself the 80-byte event record.

use crate::types::*;

/// Command kinds of the batch record.
pub mod kind {
    pub const SUBMIT: u8 = 0;
    pub const CANCEL: u8 = 1;
    pub const AMEND: u8 = 2;
    pub const MASS_CANCEL: u8 = 3;
    pub const ADVANCE_TIME: u8 = 4;
    pub const OBSERVE_PRICE: u8 = 5;
    pub const BRACKET: u8 = 6;
    pub const OCO: u8 = 7;
    /// Exchange only: `owner` = account, `order_id` = asset, `qty` = amount.
    pub const DEPOSIT: u8 = 8;
    /// Exchange only: as `DEPOSIT`.
    pub const WITHDRAW: u8 = 9;
    /// Exchange only: as `DEPOSIT`, to the account in `tp_id`.
    pub const TRANSFER: u8 = 10;
}

/// One command of a batch, exactly as laid out in memory (little endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CommandRecord {
    pub kind: u8,
    pub side: u8,
    pub order_type: u8,
    pub tif: u8,
    pub stp: u8,
    pub flags: u8,
    pub _pad0: [u8; 2],
    pub market: u32,
    pub _pad1: [u8; 4],
    pub order_id: u64,
    pub owner: u64,
    pub price: i64,
    pub qty: i64,
    pub trigger_price: i64,
    pub display_qty: i64,
    pub expire_ts: u64,
    pub tp_id: u64,
    pub tp_trigger: i64,
    pub tp_price: i64,
    pub sl_id: u64,
    pub sl_trigger: i64,
    pub sl_price: i64,
}

/// Size of one command record in bytes.
pub const COMMAND_RECORD_SIZE: usize = 120;
/// Size of one event record in bytes.
pub const EVENT_RECORD_SIZE: usize = 80;

const _: () = assert!(std::mem::size_of::<CommandRecord>() == COMMAND_RECORD_SIZE);
const _: () = assert!(std::mem::size_of::<Event>() == EVENT_RECORD_SIZE);

impl CommandRecord {
    /// Reads a record from its 120 bytes (any alignment).
    #[inline]
    pub fn from_bytes(b: &[u8]) -> CommandRecord {
        assert!(b.len() >= COMMAND_RECORD_SIZE, "a command record is 120 bytes");
        // SAFETY: CommandRecord is repr(C) plain old data made only of
        // integers, so any 120 bytes are a valid value; read_unaligned copes
        // with any alignment.
        unsafe { std::ptr::read_unaligned(b.as_ptr() as *const CommandRecord) }
    }

    fn legs(&self) -> ExitLegs {
        ExitLegs {
            tp_id: self.tp_id,
            tp_trigger: self.tp_trigger,
            tp_price: self.tp_price,
            sl_id: self.sl_id,
            sl_trigger: self.sl_trigger,
            sl_price: self.sl_price,
        }
    }

    /// The command this record holds; an unknown kind is `INVALID_COMMAND`.
    #[inline]
    pub fn to_command(&self) -> Result<Command, Reject> {
        Ok(match self.kind {
            kind::SUBMIT => Command::Submit(OrderRequest {
                order_id: self.order_id,
                owner: self.owner,
                side: self.side,
                order_type: self.order_type,
                tif: self.tif,
                stp: self.stp,
                flags: self.flags,
                price: self.price,
                qty: self.qty,
                trigger_price: self.trigger_price,
                display_qty: self.display_qty,
                expire_ts: self.expire_ts,
            }),
            kind::CANCEL => Command::Cancel { order_id: self.order_id },
            kind::AMEND => Command::Amend { order_id: self.order_id, price: self.price, qty: self.qty },
            kind::MASS_CANCEL => Command::MassCancel { owner: self.owner },
            kind::ADVANCE_TIME => Command::AdvanceTime { ts: self.expire_ts },
            kind::OBSERVE_PRICE => Command::ObservePrice { price: self.price },
            kind::BRACKET => Command::Bracket(BracketRequest {
                order_id: self.order_id,
                owner: self.owner,
                side: self.side,
                price: self.price,
                qty: self.qty,
                tif: self.tif,
                stp: self.stp,
                flags: self.flags,
                expire_ts: self.expire_ts,
                exits: self.legs(),
            }),
            kind::OCO => Command::Oco(OcoRequest {
                owner: self.owner,
                side: self.side,
                qty: self.qty,
                stp: self.stp,
                legs: self.legs(),
            }),
            _ => return Err(Reason::InvalidCommand.into()),
        })
    }

    /// The `REJECTED` event for this record: the spec's order id and owner.
    pub fn rejected(&self, reason: Reason) -> Event {
        let (order_id, owner) = match self.kind {
            kind::SUBMIT | kind::BRACKET => (self.order_id, self.owner),
            kind::CANCEL | kind::AMEND => (self.order_id, 0),
            kind::MASS_CANCEL => (0, self.owner),
            kind::ADVANCE_TIME | kind::OBSERVE_PRICE => (0, 0),
            kind::OCO => (self.tp_id, self.owner),
            _ => (self.order_id, self.owner),
        };
        Event { reason, order_id, owner, ..Event::new(EventKind::Rejected) }
    }
}

/// Iterates the records of a byte buffer holding whole command records.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = CommandRecord> + '_ {
    bytes.chunks_exact(COMMAND_RECORD_SIZE).map(CommandRecord::from_bytes)
}

/// Views events as the bytes of their records.
pub fn events_as_bytes(events: &[Event]) -> &[u8] {
    // SAFETY: Event is repr(C), 80 bytes, no implicit padding.
    unsafe { std::slice::from_raw_parts(events.as_ptr() as *const u8, std::mem::size_of_val(events)) }
}
