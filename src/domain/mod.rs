//! Plain types and errors shared by every part of ticketd.
//!
//! Nothing here knows about HTTP, storage or threads: a value that made it into one of these types is
//! valid ("parse, don't validate"), so the layers above never check the same thing twice.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod catalogue;
mod change;
mod waitlist;
mod webhook;

pub use catalogue::{
    CATEGORIES_MAX, Catalogue, Category, CategoryChange, CategoryDraft, CategoryId, Currency,
    CustomerId, EventDraft, GENERAL, LineRequest, Lines, OrderLine, PRICE_MAX, Price, QUOTAS_MAX,
    Quota, QuotaId, Resize, SalesWindow, quota_indexes, total_price,
};
pub use change::{Change, ChangeFeed, ChangeType, ChangesPage, ChangesQuery};
pub use waitlist::{Entry, EntryStatus, EntryView, Joining};
pub use webhook::{
    ATTEMPTS_KEPT_MAX, Attempt, AttemptOutcome, SigningSecret, WEBHOOK_URL_LEN_MAX, WEBHOOKS_MAX,
    Webhook, WebhookId, WebhookTypes, WebhookUrl, WebhookView, message_id,
};

/// The event the seed-compatible endpoints (`/api/v1/purchase`, `/api/v1/available`, ...) act on.
pub const DEFAULT_EVENT: &str = "default";

/// A number of tickets asked for in one request: at least 1, at most the per-order limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// The most tickets any one order can be for, whatever `max_per_order` says: every store must
    /// hold it, and PostgreSQL keeps a quantity in a 32-bit signed `INTEGER`.
    pub const MAX: u32 = i32::MAX as u32;

    /// Accepts `raw` when `1 <= raw <= max_per_order` (and [`Self::MAX`]).
    pub fn parse(raw: i64, max_per_order: u32) -> Result<Self, Error> {
        let max_per_order = max_per_order.min(Self::MAX);
        if raw < 1 {
            return Err(Error::InvalidQuantity(format!(
                "qty must be a whole number of at least 1, got {raw}"
            )));
        }
        if raw > i64::from(max_per_order) {
            return Err(Error::OverLimit(format!(
                "qty {raw} is over the limit of {max_per_order} tickets per order"
            )));
        }
        // `raw <= max_per_order <= Quantity::MAX`, so this cannot truncate.
        Ok(Self(raw as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How long a hold lasts, in seconds: at least 1, at most the longest hold the settings allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HoldTtl(u32);

impl HoldTtl {
    /// Accepts `raw` seconds when `1 <= raw <= max_seconds`.
    pub fn parse(raw: i64, max_seconds: u32) -> Result<Self, Error> {
        u32::try_from(raw)
            .ok()
            .filter(|seconds| (1..=max_seconds).contains(seconds))
            .map(Self)
            .ok_or_else(|| {
                Error::InvalidHoldTtl(format!("ttl_seconds must be 1 to {max_seconds}, got {raw}"))
            })
    }

    /// `seconds` brought within 1 to `max_seconds`: for a length the settings give, not a client.
    pub fn within(seconds: u32, max_seconds: u32) -> Self {
        Self(seconds.min(max_seconds).max(1))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

/// What one request may ask for, as the settings say. A request's quantity and hold length are
/// parsed against these once, where the request comes in; past that point they are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderLimits {
    pub max_per_order: u32,
    /// A hold's length when the request gives none.
    pub hold_ttl_default: HoldTtl,
    pub hold_ttl_seconds_max: u32,
}

impl OrderLimits {
    pub fn quantity(&self, raw: i64) -> Result<Quantity, Error> {
        Quantity::parse(raw, self.max_per_order)
    }

    /// A hold's length: `raw` seconds, or the default when the request gives none.
    pub fn hold_ttl(&self, raw: Option<i64>) -> Result<HoldTtl, Error> {
        raw.map_or(Ok(self.hold_ttl_default), |raw| {
            HoldTtl::parse(raw, self.hold_ttl_seconds_max)
        })
    }
}

/// Names an event: 1 to 64 characters of `A-Z a-z 0-9 _ -`, so it is safe in a URL path and a log.
/// Shared, not copied: the inventory clones ids on every decision, and a clone is a refcount.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EventId(Arc<str>);

impl EventId {
    pub const LEN_MAX: usize = 64;
    /// The characters [`Self::parse`] takes, as a regular expression (with `LEN_MAX`).
    pub const PATTERN: &str = "^[A-Za-z0-9_-]+$";

    pub fn parse(raw: &str) -> Result<Self, Error> {
        if catalogue::is_plain_id(raw) {
            Ok(Self(raw.into()))
        } else {
            Err(Error::InvalidEventId(format!(
                "event ids are 1 to {} characters of A-Z, a-z, 0-9, '_' and '-'",
                Self::LEN_MAX
            )))
        }
    }

    pub fn default_event() -> Self {
        Self(DEFAULT_EVENT.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The caller-chosen id of one reservation. A purchase's reservation id is its order id.
///
/// Because the caller picks it before asking, asking again with the same id (a retry after a lost
/// answer) finds the first reservation instead of making a second one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(Uuid);

impl ReservationId {
    /// A new id; UUIDv7, so ids sort by creation time and index well.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters. A request repeated with the
/// same key gets the first answer and changes nothing, for as long as the inventory keeps keys.
///
/// Or the key the ticket service gives a change the client sent without one, so that its retries
/// across the hop get the first answer too (see [`Self::for_call`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// True for 1 to `len_max` visible ASCII characters (no spaces): the ids clients choose freely
/// and ticketd keeps and logs as they are.
fn is_visible_ascii(raw: &str, len_max: usize) -> bool {
    !raw.is_empty() && raw.len() <= len_max && raw.bytes().all(|b| b.is_ascii_graphic())
}

/// What starts a key made for one call. The space keeps it apart from every client's key, which is
/// visible characters only: one client's key can never answer for another's call.
const CALL_KEY_PREFIX: &str = "call ";

impl IdempotencyKey {
    pub const LEN_MAX: usize = 255;
    /// The characters [`Self::parse`] takes (visible ASCII), as a regular expression.
    pub const PATTERN: &str = "^[!-~]+$";

    /// The key of one call the ticket service makes, the same on each retry of it.
    pub fn for_call(id: Uuid) -> Self {
        Self(format!("{CALL_KEY_PREFIX}{id}"))
    }

    /// A key as stored: a client's, or one made [`Self::for_call`].
    pub fn decode(stored: &str) -> Result<Self, Error> {
        Self::parse(stored).or_else(|error| {
            stored
                .strip_prefix(CALL_KEY_PREFIX)
                .and_then(|id| Uuid::parse_str(id).ok())
                .map(Self::for_call)
                .ok_or(error)
        })
    }

    pub fn parse(raw: &str) -> Result<Self, Error> {
        if is_visible_ascii(raw, Self::LEN_MAX) {
            Ok(Self(raw.into()))
        } else {
            Err(Error::InvalidIdempotencyKey(format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters",
                Self::LEN_MAX
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the inventory remembers of a request made with an idempotency key, as every store keeps
/// it: one flat row, whatever the request. The inventory reads it as a typed record, one case per
/// kind of request (`vacancy::idempotency`), which alone writes and reads these columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: IdempotencyKey,
    /// The request the key was first used for, e.g. `reserve:gala:2:-` or `cancel:<id>`.
    pub fingerprint: String,
    /// The order the first request made or acted on; `None` when it was refused (sold out).
    pub order_id: Option<ReservationId>,
    /// The first answer's `remaining` (reservations; 0 otherwise).
    pub remaining: u64,
    /// A refused reservation's shortage, as the inventory wrote it (`None` otherwise, and for
    /// every key stored before categories).
    pub short: Option<String>,
    /// Whether the first request changed the order (cancellations; true for confirmations and
    /// releases, false for reservations).
    pub changed: bool,
    pub created_at_ms: i64,
}

impl From<Uuid> for ReservationId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for ReservationId {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Self, Error> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| Error::InvalidReservationId(format!("'{raw}' is not a UUID")))
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A request to set the tickets of `lines` of `event` aside under the caller's `id`, all or none:
/// sold at once, or held for `hold_ttl_seconds` when that is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub event: EventId,
    pub lines: Lines,
    /// Whose tickets these are, for the event's per-customer limit.
    pub customer: Option<CustomerId>,
    pub hold_ttl_seconds: Option<HoldTtl>,
    /// The client's idempotency key, if it sent one.
    pub key: Option<IdempotencyKey>,
}

impl Reservation {
    /// `qty` tickets of the event's only category, for nobody in particular: the request every
    /// client made before categories.
    pub fn new(id: ReservationId, event: EventId, qty: Quantity) -> Self {
        Self {
            id,
            event,
            lines: Lines::one(qty),
            customer: None,
            hold_ttl_seconds: None,
            key: None,
        }
    }
}

/// What the inventory answered to a [`Reservation`]. Running out of stock is an answer, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The order (or hold) made; `None` when there were not enough tickets.
    pub order: Option<Order>,
    /// Tickets of the event still available right after this decision (its first quota's).
    pub remaining: u64,
    /// Why it was refused, when it was: the first line short of places, and where.
    pub short: Option<Shortage>,
}

/// A line a reservation could not have: its category, the quota short of places, and the places
/// that quota had left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortage {
    pub category: CategoryId,
    pub quota: QuotaId,
    pub available: u64,
}

impl Reserved {
    pub fn accepted(&self) -> bool {
        self.order.is_some()
    }
}

/// The counts of one event. `available + held + sold == capacity` always holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
}

impl Stock {
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            available: capacity,
            held: 0,
            sold: 0,
        }
    }

    /// True when the counts add up; every change to stock asserts it.
    pub fn is_consistent(&self) -> bool {
        self.available
            .checked_add(self.held)
            .and_then(|n| n.checked_add(self.sold))
            == Some(self.capacity)
    }
}

/// An event: its quotas, each with its counts, and what it sells from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub name: Arc<str>,
    /// At least one; the first gives the event's headline counts ([`Event::stock`]).
    pub quotas: Vec<Quota>,
    pub catalogue: Arc<Catalogue>,
}

impl Event {
    pub const NAME_LEN_MAX: usize = 200;

    /// Checks a name for a new event: 1 to 200 characters, not all blank; the blanks around it
    /// are trimmed. The limit counts the name as sent, so it is the one the API description gives.
    pub fn parse_name(raw: &str) -> Result<Arc<str>, Error> {
        let name = raw.trim();
        if name.is_empty() || raw.chars().count() > Self::NAME_LEN_MAX {
            return Err(Error::InvalidEvent(format!(
                "name must be 1 to {} characters",
                Self::NAME_LEN_MAX
            )));
        }
        Ok(name.into())
    }

    /// A regular expression matching the names [`Self::parse_name`] does not find blank: those with
    /// a character that `str::trim` keeps. Spelled out, as regex dialects disagree on what `\s` is.
    pub fn name_pattern() -> String {
        let escape = |c: char| format!("\\u{:04x}", u32::from(c));
        let class: String = BLANKS
            .iter()
            .map(|&(first, last)| {
                if first == last {
                    escape(first)
                } else {
                    format!("{}-{}", escape(first), escape(last))
                }
            })
            .collect();
        format!("[^{class}]")
    }
}

/// How many events one page of the list holds: 1 to [`PageLimit::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// Events in a page when the caller does not say.
    pub const DEFAULT: u32 = 100;
    /// The most events in one page. It bounds the largest answer the API gives, which the ticket
    /// service must be able to read from vacancy (see `ANSWER_SIZE_MAX` in `ticket::remote`).
    pub const MAX: u32 = 1000;

    /// Reads `limit` as a client wrote it.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        raw.parse::<u32>()
            .ok()
            .filter(|limit| (1..=Self::MAX).contains(limit))
            .map(Self)
            .ok_or_else(|| {
                Error::InvalidQuery(format!(
                    "limit must be a whole number from 1 to {}, got '{raw}'",
                    Self::MAX
                ))
            })
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(Self::DEFAULT)
    }
}

/// Which page of the event list to read: at most `limit` events whose ids come after `after`, in
/// id order (byte order). Paging by the last id seen, rather than by position, is what keeps a
/// walk through the list stable while events are created: none is listed twice or skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// The last id of the page before; `None` for the first page.
    pub after: Option<EventId>,
    pub limit: PageLimit,
}

/// One page of events, in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsPage {
    pub events: Vec<Event>,
    /// Where the next page starts; `None` when this page is the last.
    pub next_after: Option<EventId>,
}

impl EventsPage {
    /// The page from the first `limit + 1` events after the cursor, in id order: the one past the
    /// limit is not listed, it only tells that another page follows (so the last page never
    /// points at an empty one).
    pub fn from_lookahead(mut events: Vec<Event>, limit: PageLimit) -> Self {
        let limit = limit.get() as usize;
        let more = events.len() > limit;
        events.truncate(limit);
        let next_after = more
            .then(|| events.last().map(|event| event.id.clone()))
            .flatten();
        Self { events, next_after }
    }
}
/// What `str::trim` takes for blanks (Unicode `White_Space`), as ranges.
const BLANKS: [(char, char); 10] = [
    ('\t', '\r'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// Where an order (or hold) stands. Only `Held` and `Confirmed` count against stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Tickets set aside until `expires_at`.
    Held,
    /// Sold.
    Confirmed,
    /// Sold, then cancelled: the tickets went back to stock.
    Cancelled,
    /// A hold given up by its owner.
    Released,
    /// A hold that ran out of time.
    Expired,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Held,
        OrderStatus::Confirmed,
        OrderStatus::Cancelled,
        OrderStatus::Released,
        OrderStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Held => "held",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Released => "released",
            OrderStatus::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == raw)
    }
}

/// One reservation: a sale (`Confirmed`) or a hold, and what became of it. Times are milliseconds
/// since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: ReservationId,
    pub event: EventId,
    /// Tickets in all lines.
    pub qty: u32,
    /// What was bought, by category; shared between copies of the order.
    pub lines: Arc<[OrderLine]>,
    pub customer: Option<CustomerId>,
    pub status: OrderStatus,
    /// Tickets of the event available right after it was accepted (the first answer's `remaining`).
    pub remaining: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When a hold lapses; `None` for a direct purchase.
    pub expires_at_ms: Option<i64>,
}

/// The answer to a cancellation: the order, and whether this call changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancelled {
    pub order: Order,
    /// False when the order was already cancelled: nothing was returned to stock twice.
    pub changed: bool,
}

/// Everything that can go wrong in the domain: in the inventory and in selling from it, by cause.
///
/// What a client is told of each (status, public code and message) is decided in one place, by
/// the HTTP layer (`http::error`), which answers an internal one such as [`Error::Contention`]
/// as something a client can act on. Errors of HTTP alone (a body that is not JSON, a missing
/// token) are the HTTP layer's own. Variants with text carry the whole message, so it crosses the
/// network unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidQuantity(String),
    #[error("{0}")]
    OverLimit(String),
    /// A hold's length out of range. Clients have always been told `invalid_quantity` for it.
    #[error("{0}")]
    InvalidHoldTtl(String),
    #[error("{0}")]
    InvalidEventId(String),
    #[error("{0}")]
    InvalidReservationId(String),
    #[error("{0}")]
    InvalidEvent(String),
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    /// The query string is not one the route takes (e.g. a page `limit` out of range).
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidCustomer(String),
    /// The event sells only to requests that name their customer.
    #[error("{0}")]
    CustomerRequired(String),
    /// A line names a category the event does not have (or none, where the event has several).
    #[error("{0}")]
    UnknownCategory(String),
    /// A category named in a path (an admin change) that the event does not have: not found,
    /// where a line naming one is a request that cannot be met.
    #[error("{0}")]
    CategoryNotFound(String),
    /// A quota an admin names that the event does not have.
    #[error("{0}")]
    UnknownQuota(String),
    /// A line's category is closed or outside its sales window.
    #[error("{message}")]
    NotOnSale {
        message: String,
        category: CategoryId,
        window: SalesWindow,
    },
    /// The customer would go over the event's per-customer limit; `may_still` more they may take.
    #[error("{message}")]
    CustomerLimitReached { message: String, may_still: u64 },
    /// A quota cannot shrink below the places held and sold in it.
    #[error("{0}")]
    QuotaInUse(String),
    /// The idempotency key was first used for a different request.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("{0}")]
    EventExists(String),
    #[error("{0}")]
    UnknownOrder(String),
    /// No waiting-list entry has this id.
    #[error("{0}")]
    UnknownEntry(String),
    /// A waiting list is joined only while its category cannot sell the quantity asked.
    #[error("{0}")]
    TicketsAvailable(String),
    /// A webhook's url or types that cannot be taken.
    #[error("{0}")]
    InvalidWebhook(String),
    /// No webhook has this id.
    #[error("{0}")]
    UnknownWebhook(String),
    /// The store keeps [`WEBHOOKS_MAX`] webhooks already.
    #[error("{0}")]
    WebhooksLimitReached(String),
    /// The hold ran out of time before it was confirmed; its tickets went back to stock.
    #[error("{0}")]
    HoldExpired(String),
    /// The order is not in a state that allows this (e.g. confirming a released hold).
    #[error("{0}")]
    WrongState(String),
    /// Adding stock would take an event past the largest capacity a store keeps.
    #[error("{0}")]
    CapacityExceeded(String),
    #[error("{0}")]
    UnknownEvent(String),
    /// A reader of the changes asked for some after its cursor that are no longer kept; `oldest`
    /// is the first still kept (or the next to come, when none is).
    #[error("{message}")]
    CursorExpired { message: String, oldest: u64 },
    /// A reader's cursor is past the last change ever committed (`last`): the store was
    /// restored, or a memory store restarted, and numbers begin again lower. Waiting would miss
    /// every change up to the cursor.
    #[error("{message}")]
    CursorAhead { message: String, last: u64 },
    #[error("{0}")]
    ReservationConflict(String),
    #[error("too many requests are waiting for the inventory; try again shortly")]
    Overloaded,
    #[error("{0}")]
    Unavailable(String),
    /// The ticket service's wait for vacancy ran out: vacancy did not answer within `limit_ms`.
    #[error("the inventory did not answer within {limit_ms} ms")]
    Timeout { limit_ms: u64 },
    #[error("{0}")]
    Storage(String),
    /// Replicas sharing a database changed the same rows at once: the writer's signal to decide
    /// the batch again. Once its tries are spent, nothing of the request was stored. The text
    /// says which rows, for the log; it is never sent to a client.
    #[error("{0}")]
    Contention(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The error's stable name, for logs and tests: the public code of every error a client may
    /// see as it is (`http::error` holds the two together), an internal name otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidQuantity(_) => "invalid_quantity",
            Error::OverLimit(_) => "quantity_over_limit",
            Error::InvalidHoldTtl(_) => "invalid_hold_ttl",
            Error::InvalidEventId(_) => "invalid_event_id",
            Error::InvalidReservationId(_) => "invalid_reservation_id",
            Error::InvalidEvent(_) => "invalid_event",
            Error::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            Error::InvalidQuery(_) => "invalid_query",
            Error::InvalidCustomer(_) => "invalid_customer",
            Error::CustomerRequired(_) => "customer_required",
            Error::UnknownCategory(_) => "unknown_category",
            Error::CategoryNotFound(_) => "category_not_found",
            Error::UnknownQuota(_) => "unknown_quota",
            Error::NotOnSale { .. } => "not_on_sale",
            Error::CustomerLimitReached { .. } => "customer_limit_reached",
            Error::QuotaInUse(_) => "quota_in_use",
            Error::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Error::EventExists(_) => "event_exists",
            Error::UnknownOrder(_) => "unknown_order",
            Error::UnknownEntry(_) => "unknown_waitlist_entry",
            Error::TicketsAvailable(_) => "tickets_available",
            Error::InvalidWebhook(_) => "invalid_webhook",
            Error::UnknownWebhook(_) => "unknown_webhook",
            Error::WebhooksLimitReached(_) => "webhooks_limit_reached",
            Error::HoldExpired(_) => "hold_expired",
            Error::WrongState(_) => "wrong_state",
            Error::CapacityExceeded(_) => "capacity_exceeded",
            Error::UnknownEvent(_) => "unknown_event",
            Error::CursorExpired { .. } => "cursor_expired",
            Error::CursorAhead { .. } => "cursor_ahead",
            Error::ReservationConflict(_) => "reservation_conflict",
            Error::Overloaded => "overloaded",
            Error::Unavailable(_) => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::Storage(_) => "storage_failure",
            Error::Contention(_) => "contention",
            Error::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_accepts_one_to_the_limit() {
        assert_eq!(Quantity::parse(1, 10).unwrap().get(), 1);
        assert_eq!(Quantity::parse(10, 10).unwrap().get(), 10);
    }

    /// Whatever the configured limit, a quantity fits PostgreSQL's 32-bit signed `INTEGER`.
    #[test]
    fn quantity_fits_every_store_whatever_the_limit() {
        let max = i64::from(i32::MAX);
        assert_eq!(Quantity::parse(max, u32::MAX).unwrap().get(), Quantity::MAX);
        let over = Quantity::parse(max + 1, u32::MAX).unwrap_err();
        assert_eq!(over.code(), "quantity_over_limit");
        assert!(over.to_string().contains(&max.to_string()), "{over}");
    }

    #[test]
    fn quantity_refuses_zero_negative_and_over_limit() {
        assert_eq!(
            Quantity::parse(0, 10).unwrap_err().code(),
            "invalid_quantity"
        );
        assert_eq!(
            Quantity::parse(-3, 10).unwrap_err().code(),
            "invalid_quantity"
        );
        assert_eq!(
            Quantity::parse(11, 10).unwrap_err().code(),
            "quantity_over_limit"
        );
        assert!(Quantity::parse(i64::MAX, u32::MAX).is_err());
    }

    #[test]
    fn hold_lengths_are_one_second_to_the_limit() {
        assert_eq!(HoldTtl::parse(1, 60).unwrap().seconds(), 1);
        assert_eq!(HoldTtl::parse(60, 60).unwrap().seconds(), 60);
        for bad in [0, -1, 61, i64::from(u32::MAX) + 1, i64::MAX] {
            let error = HoldTtl::parse(bad, 60).unwrap_err();
            assert!(
                matches!(error, Error::InvalidHoldTtl(_)),
                "{bad}: {error:?}"
            );
        }
        assert_eq!(HoldTtl::within(300, 60).seconds(), 60);
        assert_eq!(HoldTtl::within(0, 60).seconds(), 1);
    }

    #[test]
    fn event_ids_are_url_safe() {
        assert!(EventId::parse("spring-gala_2027").is_ok());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn page_limits_are_one_to_the_maximum() {
        assert_eq!(PageLimit::parse("1").unwrap().get(), 1);
        assert_eq!(PageLimit::parse("1000").unwrap().get(), PageLimit::MAX);
        assert_eq!(PageLimit::default().get(), PageLimit::DEFAULT);
        for bad in [
            "0",
            "1001",
            "-1",
            "1.5",
            "",
            " 5",
            "ten",
            "99999999999999999999",
        ] {
            let error = PageLimit::parse(bad).unwrap_err();
            assert_eq!(error.code(), "invalid_query", "{bad:?}");
        }
    }

    #[test]
    fn event_names_are_trimmed_and_counted_as_sent() {
        assert_eq!(&*Event::parse_name("  Gala ").unwrap(), "Gala");
        let longest = "x".repeat(Event::NAME_LEN_MAX);
        assert!(Event::parse_name(&longest).is_ok());
        for bad in ["", " ", "\u{3000}\t", &format!(" {longest}")] {
            assert!(Event::parse_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_page_points_past_itself_only_when_more_follow() {
        let event = |id: &str| Event::single(EventId::parse(id).unwrap(), "x".into(), 1);
        let limit = PageLimit::parse("2").unwrap();
        let full = EventsPage::from_lookahead(vec![event("a"), event("b"), event("c")], limit);
        assert_eq!(full.events, vec![event("a"), event("b")]);
        assert_eq!(full.next_after, Some(EventId::parse("b").unwrap()));
        let last = EventsPage::from_lookahead(vec![event("a"), event("b")], limit);
        assert_eq!((last.events.len(), last.next_after), (2, None));
        let empty = EventsPage::from_lookahead(Vec::new(), limit);
        assert_eq!((empty.events.len(), empty.next_after), (0, None));
    }

    #[test]
    fn the_name_pattern_names_exactly_the_blanks_trim_removes() {
        let blank = |c: char| {
            BLANKS
                .iter()
                .any(|&(first, last)| (first..=last).contains(&c))
        };
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(blank(c), c.is_whitespace(), "{c:?}");
        }
        let pattern = Event::name_pattern();
        assert!(pattern.starts_with("[^\\u0009-\\u000d\\u0020"), "{pattern}");
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("order-7f3a").is_ok());
        for bad in ["", "has space", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_made_for_calls_are_apart_from_clients_keys() {
        let id = Uuid::now_v7();
        let made = IdempotencyKey::for_call(id);
        assert!(IdempotencyKey::parse(made.as_str()).is_err());
        assert!(IdempotencyKey::parse(&id.to_string()).unwrap() != made);
        // Both kinds come back from the store as they went in.
        assert_eq!(IdempotencyKey::decode(made.as_str()), Ok(made));
        let client = IdempotencyKey::parse("call-7").unwrap();
        assert_eq!(IdempotencyKey::decode("call-7"), Ok(client));
        for bad in ["call ", "call x", "call  7", "has space"] {
            assert!(IdempotencyKey::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reservation_ids_round_trip_through_text() {
        let id = ReservationId::generate();
        assert_eq!(id.to_string().parse::<ReservationId>().unwrap(), id);
        assert!("not-a-uuid".parse::<ReservationId>().is_err());
    }
}
