//! The engine's vocabulary: sides, order types, time in force, self-trade
//! prevention, reasons, events and the requests a book takes.
//!
//! The numeric values are an ABI shared with Python (`lxdex.enums`) and with
//! the fixed batch record layouts in [`crate::record`].

/// Largest accepted price (in the book's integer price units).
pub const MAX_PRICE: i64 = 1_000_000_000_000_000;
/// Largest accepted quantity (in the book's integer quantity units).
pub const MAX_QTY: i64 = 1_000_000_000_000;
/// Largest accepted trailing distance in basis points.
pub const MAX_TRAIL_BPS: i64 = 9_999;

/// Order flag: reject (cancel) the order if it would take liquidity.
pub const FLAG_POST_ONLY: u8 = 1;
/// Order flag: a trailing stop's amount is in basis points of its reference.
pub const FLAG_TRAIL_BPS: u8 = 2;
/// Order flag (exchange only, never seen by a book): a market order sized
/// by a quote amount, carried in `qty` (Binance's `quoteOrderQty`). The
/// exchange walks the book for the whole lots that amount buys (fees
/// included) or sells (before fees), and places a market order of that
/// many lots (docs/exchange.md, "Orders sized by a quote amount").
pub const FLAG_QUOTE_QTY: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_POST_ONLY | FLAG_TRAIL_BPS;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $val:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $variant = $val),+ }

        impl $name {
            /// The value from its wire number, if it is one.
            #[inline]
            pub fn from_u8(v: u8) -> Option<Self> {
                match v { $($val => Some(Self::$variant),)+ _ => None }
            }
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// The upper-case name used by the Python enums.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant),)+ }
            }
        }
    };
}

wire_enum!(
    /// Which side of the book an order is on.
    Side { Buy = 0, Sell = 1 }
);

impl Side {
    /// The other side.
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

wire_enum!(
    /// What kind of order a request is.
    OrderType {
        Limit = 0,
        Market = 1,
        StopMarket = 2,
        StopLimit = 3,
        TakeProfitMarket = 4,
        TakeProfitLimit = 5,
        /// A trailing stop that triggers a market order.
        TrailingStop = 6,
    }
);

impl OrderType {
    /// Whether the order (once triggered) executes as a market order.
    #[inline]
    pub fn is_market_type(self) -> bool {
        matches!(
            self,
            OrderType::Market
                | OrderType::StopMarket
                | OrderType::TakeProfitMarket
                | OrderType::TrailingStop
        )
    }
    /// Whether the order waits for a trigger before it executes.
    #[inline]
    pub fn is_conditional(self) -> bool {
        !matches!(self, OrderType::Limit | OrderType::Market)
    }
    /// Whether the order carries a fixed `trigger_price`.
    #[inline]
    pub fn has_trigger_price(self) -> bool {
        matches!(
            self,
            OrderType::StopMarket
                | OrderType::StopLimit
                | OrderType::TakeProfitMarket
                | OrderType::TakeProfitLimit
        )
    }
}

wire_enum!(
    /// Time in force.
    Tif {
        /// Good till cancelled.
        Gtc = 0,
        /// Immediate or cancel: what does not fill at once is cancelled.
        Ioc = 1,
        /// Fill or kill: fills completely at once, or nothing happens.
        Fok = 2,
        /// Good till date: expires when the book's clock reaches `expire_ts`.
        Gtd = 3,
    }
);

wire_enum!(
    /// Self-trade prevention mode, chosen by the taker.
    Stp {
        None = 0,
        CancelTaker = 1,
        CancelMaker = 2,
        CancelBoth = 3,
        /// Both orders lose the overlapping quantity; no trade.
        Decrement = 4,
    }
);

wire_enum!(
    /// What an [`Event`] reports.
    EventKind {
        Accepted = 0,
        Rejected = 1,
        Fill = 2,
        Cancelled = 3,
        Amended = 4,
        Triggered = 5,
        Activated = 6,
        /// Exchange only: a price level's visible quantity is now `qty`
        /// (0: gone); `order_id` is the market's depth update id.
        Depth = 7,
    }
);

wire_enum!(
    /// Why an order was cancelled (1..=31) or a command rejected (32..).
    Reason {
        None = 0,
        User = 1,
        Ioc = 2,
        Fok = 3,
        MarketRemainder = 4,
        Stp = 5,
        Expired = 6,
        PostOnly = 7,
        Oco = 8,
        Parent = 9,
        InvalidSide = 32,
        InvalidOrderType = 33,
        InvalidTif = 34,
        InvalidStp = 35,
        InvalidQuantity = 36,
        OffLotGrid = 37,
        InvalidPrice = 38,
        OffTickGrid = 39,
        InvalidTrigger = 40,
        InvalidDisplay = 41,
        InvalidFlags = 42,
        InvalidExpiry = 43,
        DuplicateId = 44,
        UnknownOrder = 45,
        NotAmendable = 46,
        InvalidAmend = 47,
        WouldTake = 48,
        InvalidTime = 49,
        InvalidBracket = 50,
        InvalidCommand = 51,
        UnknownMarket = 52,
        MarketNotTrading = 53,
        UnknownAccount = 54,
        AccountSuspended = 55,
        InsufficientFunds = 56,
        BelowMinQuantity = 57,
        BelowMinNotional = 58,
        PriceOutOfBand = 59,
        ProtectionRequired = 60,
        NotSupported = 61,
        UnknownAsset = 62,
        InvalidAmount = 63,
        Overflow = 64,
        InvalidMarketConfig = 65,
    }
);

impl Reason {
    /// A sentence saying which field was wrong and why (for rejections).
    pub fn describe(self) -> &'static str {
        match self {
            Reason::None => "no reason",
            Reason::User => "cancelled by its owner",
            Reason::Ioc => "immediate-or-cancel remainder cancelled",
            Reason::Fok => "fill-or-kill order could not fill completely",
            Reason::MarketRemainder => "market order remainder cancelled: no more liquidity",
            Reason::Stp => "cancelled by self-trade prevention",
            Reason::Expired => "good-till-date order expired",
            Reason::PostOnly => "post-only order would have taken liquidity",
            Reason::Oco => "linked order triggered or was cancelled (one-cancels-other)",
            Reason::Parent => "bracket entry left without any fill",
            Reason::InvalidSide => "side: must be 0 (buy) or 1 (sell)",
            Reason::InvalidOrderType => "order_type: unknown order type",
            Reason::InvalidTif => {
                "tif: unknown time in force, or market-type orders need IOC or FOK"
            }
            Reason::InvalidStp => "stp: unknown self-trade prevention mode",
            Reason::InvalidQuantity => "qty: must be between 1 and 10^12",
            Reason::OffLotGrid => "qty: must be a multiple of the book's lot_size",
            Reason::InvalidPrice => {
                "price: must be between 1 and 10^15 (market orders: 0 or a protection price)"
            }
            Reason::OffTickGrid => "price: must be a multiple of the book's tick_size",
            Reason::InvalidTrigger => {
                "trigger_price: stop/take-profit orders need a trigger price in 1..=10^15, \
                 trailing stops a positive distance (or 1..=9999 bps); other orders none"
            }
            Reason::InvalidDisplay => {
                "display_qty: icebergs need a GTC/GTD limit-type order and 1 <= display_qty < qty \
                 on the lot grid"
            }
            Reason::InvalidFlags => {
                "flags: unknown flag, post_only needs a GTC/GTD limit order, \
                 trail_bps needs a trailing stop, quote_qty needs a market order"
            }
            Reason::InvalidExpiry => {
                "expire_ts: GTD orders need expire_ts later than the book's clock; others none"
            }
            Reason::DuplicateId => "order_id: must be non-zero and not already live in this book",
            Reason::UnknownOrder => "order_id: no live order with this id",
            Reason::NotAmendable => "order_id: only orders resting in the book can be amended",
            Reason::InvalidAmend => "amend: give a new price, a new quantity, or both",
            Reason::WouldTake => "price: a post-only order cannot be amended to a crossing price",
            Reason::InvalidTime => "ts: the book's clock cannot go backwards",
            Reason::InvalidBracket => {
                "bracket/oco: child ids must be new, non-zero and distinct; triggers and prices \
                 valid; take-profit and stop-loss on the correct sides of each other and the entry"
            }
            Reason::InvalidCommand => "kind: unknown command kind",
            Reason::UnknownMarket => "market: no such market",
            Reason::MarketNotTrading => "market: not accepting this order in its current status",
            Reason::UnknownAccount => "account: no such account",
            Reason::AccountSuspended => "account: suspended accounts cannot place or amend orders",
            Reason::InsufficientFunds => "funds: the account's available balance does not cover this",
            Reason::BelowMinQuantity => "qty: below the market's minimum quantity",
            Reason::BelowMinNotional => "price x qty: below the market's minimum notional",
            Reason::PriceOutOfBand => "price: too far from the last price (the market's price band)",
            Reason::ProtectionRequired => {
                "price: market-type buy orders that wait for a trigger need a protection price"
            }
            Reason::NotSupported => "order_type: not supported by the exchange yet",
            Reason::UnknownAsset => "asset: no such asset",
            Reason::InvalidAmount => "amount: must be a positive integer of the asset's smallest unit",
            Reason::Overflow => "amount: the asset's total supply would exceed 2^63 - 1 units",
            Reason::InvalidMarketConfig => {
                "market: sizes must be positive integers, base and quote known and different, \
                 fees within -10000..=10000 bps with maker >= -taker"
            }
        }
    }
}

/// A rejected command: nothing in the book changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    pub reason: Reason,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason.describe(), self.reason.name())
    }
}

impl std::error::Error for Reject {}

impl From<Reason> for Reject {
    fn from(reason: Reason) -> Self {
        Reject { reason }
    }
}

/// One thing that happened. Its layout is the batch event record
/// (`lxdex.enums.EVENT_DTYPE`, 80 bytes): see `docs/engine.md` for which
/// fields each kind fills; the others are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Event {
    pub kind: EventKind,
    pub reason: Reason,
    pub side: Side,
    pub order_type: OrderType,
    pub _pad: [u8; 4],
    /// Index of the command in its batch (set by batch drivers).
    pub cmd_index: u32,
    /// Market index (set by multi-book drivers).
    pub market: u32,
    pub order_id: u64,
    pub owner: u64,
    pub other_id: u64,
    pub other_owner: u64,
    pub price: i64,
    pub qty: i64,
    pub remaining: i64,
    pub other_remaining: i64,
}

const _: () = assert!(std::mem::size_of::<Event>() == 80);

impl Event {
    /// An event of `kind` with every other field 0.
    #[inline]
    pub fn new(kind: EventKind) -> Event {
        Event {
            kind,
            reason: Reason::None,
            side: Side::Buy,
            order_type: OrderType::Limit,
            _pad: [0; 4],
            cmd_index: 0,
            market: 0,
            order_id: 0,
            owner: 0,
            other_id: 0,
            other_owner: 0,
            price: 0,
            qty: 0,
            remaining: 0,
            other_remaining: 0,
        }
    }

    /// The event as the bytes of its batch record.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; 80] {
        // SAFETY: Event is repr(C), 80 bytes, with no implicit padding (the
        // only gap is the explicit `_pad`), so every byte is initialised.
        unsafe { &*(self as *const Event as *const [u8; 80]) }
    }
}

/// A new order, as the caller sends it. Fields stay raw integers so that every
/// entry point (Rust, Python per call, batch records) is validated by the same
/// code; build one with [`OrderRequest::limit`], [`OrderRequest::market`] and
/// the other constructors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OrderRequest {
    pub order_id: u64,
    pub owner: u64,
    pub side: u8,
    pub order_type: u8,
    pub tif: u8,
    pub stp: u8,
    pub flags: u8,
    /// Limit price (limit types) or protection price / 0 (market types).
    pub price: i64,
    pub qty: i64,
    /// Stop/take-profit trigger price, or a trailing stop's amount.
    pub trigger_price: i64,
    /// Iceberg display quantity, 0 for a plain order.
    pub display_qty: i64,
    /// Expiry time for GTD, else 0.
    pub expire_ts: u64,
}

impl OrderRequest {
    fn base(order_id: u64, owner: u64, side: Side, order_type: OrderType, qty: i64) -> Self {
        OrderRequest {
            order_id,
            owner,
            side: side as u8,
            order_type: order_type as u8,
            qty,
            ..Default::default()
        }
    }
    /// A GTC limit order.
    pub fn limit(order_id: u64, owner: u64, side: Side, price: i64, qty: i64) -> Self {
        OrderRequest { price, ..Self::base(order_id, owner, side, OrderType::Limit, qty) }
    }
    /// An IOC market order with no protection price.
    pub fn market(order_id: u64, owner: u64, side: Side, qty: i64) -> Self {
        OrderRequest { tif: Tif::Ioc as u8, ..Self::base(order_id, owner, side, OrderType::Market, qty) }
    }
    /// An IOC market order sized by a quote amount (in the quote asset's
    /// units; [`FLAG_QUOTE_QTY`]): the exchange sizes it from the book.
    pub fn market_quote(order_id: u64, owner: u64, side: Side, amount: i64) -> Self {
        OrderRequest { flags: FLAG_QUOTE_QTY, ..Self::market(order_id, owner, side, amount) }
    }
    /// A stop order: market when `limit_price` is 0, else stop-limit (GTC).
    pub fn stop(order_id: u64, owner: u64, side: Side, trigger: i64, limit_price: i64, qty: i64) -> Self {
        if limit_price == 0 {
            OrderRequest {
                trigger_price: trigger,
                tif: Tif::Ioc as u8,
                ..Self::base(order_id, owner, side, OrderType::StopMarket, qty)
            }
        } else {
            OrderRequest {
                trigger_price: trigger,
                price: limit_price,
                ..Self::base(order_id, owner, side, OrderType::StopLimit, qty)
            }
        }
    }
    /// A take-profit order: market when `limit_price` is 0, else limit (GTC).
    pub fn take_profit(order_id: u64, owner: u64, side: Side, trigger: i64, limit_price: i64, qty: i64) -> Self {
        if limit_price == 0 {
            OrderRequest {
                trigger_price: trigger,
                tif: Tif::Ioc as u8,
                ..Self::base(order_id, owner, side, OrderType::TakeProfitMarket, qty)
            }
        } else {
            OrderRequest {
                trigger_price: trigger,
                price: limit_price,
                ..Self::base(order_id, owner, side, OrderType::TakeProfitLimit, qty)
            }
        }
    }
    /// A trailing stop (market when triggered) trailing by a price distance,
    /// or by basis points when `bps` is true.
    pub fn trailing_stop(order_id: u64, owner: u64, side: Side, amount: i64, bps: bool, qty: i64) -> Self {
        OrderRequest {
            trigger_price: amount,
            tif: Tif::Ioc as u8,
            flags: if bps { FLAG_TRAIL_BPS } else { 0 },
            ..Self::base(order_id, owner, side, OrderType::TrailingStop, qty)
        }
    }
    /// The same order with another time in force.
    pub fn with_tif(mut self, tif: Tif) -> Self {
        self.tif = tif as u8;
        self
    }
    /// The same order expiring at `ts` (GTD).
    pub fn good_till(mut self, ts: u64) -> Self {
        self.tif = Tif::Gtd as u8;
        self.expire_ts = ts;
        self
    }
    /// The same order with a self-trade prevention mode.
    pub fn with_stp(mut self, stp: Stp) -> Self {
        self.stp = stp as u8;
        self
    }
    /// The same order, post-only.
    pub fn post_only(mut self) -> Self {
        self.flags |= FLAG_POST_ONLY;
        self
    }
    /// The same order as an iceberg showing `display_qty`.
    pub fn iceberg(mut self, display_qty: i64) -> Self {
        self.display_qty = display_qty;
        self
    }
    /// Known flag bits only.
    pub(crate) fn flags_known(&self) -> bool {
        self.flags & !KNOWN_FLAGS == 0
    }
}

/// The two legs of an OCO pair or a bracket's exit: a take-profit and a
/// stop-loss. A price of 0 makes the leg a market order when triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExitLegs {
    pub tp_id: u64,
    pub tp_trigger: i64,
    pub tp_price: i64,
    pub sl_id: u64,
    pub sl_trigger: i64,
    pub sl_price: i64,
}

/// An entry order (`price` 0: market) whose fills activate `exits` on the
/// opposite side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BracketRequest {
    pub order_id: u64,
    pub owner: u64,
    pub side: u8,
    pub price: i64,
    pub qty: i64,
    pub tif: u8,
    pub stp: u8,
    pub flags: u8,
    pub expire_ts: u64,
    pub exits: ExitLegs,
}

/// A standalone one-cancels-other pair of a take-profit and a stop-loss on
/// the same side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OcoRequest {
    pub owner: u64,
    pub side: u8,
    pub qty: i64,
    pub stp: u8,
    pub legs: ExitLegs,
}

/// Every input a book takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Submit(OrderRequest),
    Bracket(BracketRequest),
    Oco(OcoRequest),
    Cancel { order_id: u64 },
    /// `price` 0 keeps the price; `qty` (new remaining quantity) 0 keeps it.
    Amend { order_id: u64, price: i64, qty: i64 },
    MassCancel { owner: u64 },
    AdvanceTime { ts: u64 },
    ObservePrice { price: i64 },
}
