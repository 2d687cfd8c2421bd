//! The JSON shapes of the changes feed (`GET /api/v1/changes`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::domain::{Change, ChangeType, ChangesPage, ChangesQuery, Error, EventId};

/// Most changes in one page.
pub const CHANGES_LIMIT_MAX: usize = 1000;
/// Changes in a page when the query names no `limit`.
pub const CHANGES_LIMIT_DEFAULT: usize = 100;
/// Longest a reader may wait for a change (`wait_seconds`).
pub const CHANGES_WAIT_SECONDS_MAX: u64 = 60;

/// One committed change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeResponse {
    /// Its place in commit order; pass the last one seen as `after` to read on.
    pub seq: u64,
    /// `order.confirmed`, `order.cancelled`, `hold.created`, `hold.expired`, `hold.released`,
    /// `waitlist.offered`, `waitlist.offer_expired`, `event.sold_out` or `event.back_on_sale`.
    #[serde(rename = "type")]
    #[schema(example = "order.confirmed")]
    pub kind: String,
    /// The event it happened in.
    pub event: String,
    /// When it was decided (RFC 3339, UTC).
    #[schema(example = "2026-11-24T19:15:00.000Z")]
    pub timestamp: String,
    /// What changed: `{"order": ...}` as `GET /api/v1/orders/{id}` shows it (order and hold
    /// types), `{"entry": ...}` as `GET /api/v1/waitlist/{id}` shows it, with its offer's
    /// `hold_id` and `expires_at` (waiting-list types), `{"event": ...}` as
    /// `GET /api/v1/events/{id}` shows it (event types).
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

/// Changes in commit order, and the cursor to read on from.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangesResponse {
    pub changes: Vec<ChangeResponse>,
    /// Pass as `after` next: the last change's `seq`, or `after` itself when there was none.
    pub next_after: u64,
}

/// The query of `GET /api/v1/changes`, kept as text so a bad value gets a precise
/// `invalid_query`; a parameter the route does not take is refused rather than ignored.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// Changes with a greater `seq` than this: `next_after` of the previous page, or 0 (the
    /// default) for every change kept.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9007199254740991.0)]
    pub after: Option<String>,
    /// Most changes in the page: 1 to 1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// With no change after `after` yet, how long to wait for one before answering an empty
    /// page: 0 (the default, answer at once) to 60 seconds. The answer comes as soon as a change
    /// commits.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 60)]
    pub wait_seconds: Option<String>,
}

/// A whole number from a query parameter within `range`, or `invalid_query` naming it.
fn whole(name: &str, raw: Option<&str>, default: u64, max: u64, min: u64) -> Result<u64, Error> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            Error::InvalidQuery(format!(
                "{name} must be a whole number from {min} to {max}, got '{raw}'"
            ))
        })
}

/// The largest number JSON readers in every language keep exactly (2^53 - 1): no change is
/// ever numbered past it, and a cursor past it is refused.
const SEQ_MAX: u64 = (1 << 53) - 1;

impl ChangesParams {
    pub fn into_query(self) -> Result<ChangesQuery, Error> {
        let after = whole("after", self.after.as_deref(), 0, SEQ_MAX, 0)?;
        let limit = whole(
            "limit",
            self.limit.as_deref(),
            CHANGES_LIMIT_DEFAULT as u64,
            CHANGES_LIMIT_MAX as u64,
            1,
        )?;
        let wait = whole(
            "wait_seconds",
            self.wait_seconds.as_deref(),
            0,
            CHANGES_WAIT_SECONDS_MAX,
            0,
        )?;
        Ok(ChangesQuery {
            after,
            limit: limit as usize,
            wait: std::time::Duration::from_secs(wait),
        })
    }
}

/// The path and query that ask vacancy for `query`'s page.
pub fn changes_path(query: &ChangesQuery) -> String {
    format!(
        "/api/v1/changes?after={}&limit={}&wait_seconds={}",
        query.after,
        query.limit,
        query.wait.as_secs()
    )
}

impl ChangesResponse {
    pub fn from_page(page: &ChangesPage) -> Result<Self, Error> {
        let changes = page
            .changes
            .iter()
            .map(|change| {
                Ok(ChangeResponse {
                    seq: change.seq,
                    kind: change.kind.as_str().to_owned(),
                    event: change.event.as_str().to_owned(),
                    timestamp: super::timestamp(change.at_ms),
                    data: RawValue::from_string(change.data.to_string()).map_err(|e| {
                        Error::Storage(format!(
                            "change {} holds data that is not JSON: {e}",
                            change.seq
                        ))
                    })?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            changes,
            next_after: page.next_after,
        })
    }

    /// Vacancy's answer as the page it sent.
    pub fn into_domain(self) -> Result<ChangesPage, Error> {
        let unreadable = |what: String| Error::Unavailable(format!("vacancy sent {what}"));
        let changes = self
            .changes
            .into_iter()
            .map(|change| {
                Ok(Change {
                    seq: change.seq,
                    kind: ChangeType::parse(&change.kind)
                        .ok_or_else(|| unreadable(format!("a change of type '{}'", change.kind)))?,
                    event: EventId::parse(&change.event)
                        .map_err(|e| unreadable(format!("an unreadable event id: {e}")))?,
                    at_ms: super::parse_timestamp(&change.timestamp)?,
                    data: change.data.get().into(),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(ChangesPage {
            changes,
            next_after: self.next_after,
        })
    }
}
