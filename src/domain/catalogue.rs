//! What an event sells: the quotas its places are counted in, and the categories of ticket it
//! offers, each drawing on one or more quotas.
//!
//! A ticket of a category takes one place from **every** quota of that category (a VIP seat counts
//! against the venue and against the VIP cap), so a category can sell only while all of its quotas
//! have room. An event made the old way, with one `capacity`, is one quota and one category, both
//! named [`GENERAL`]: everything that worked on one counter works on that.
//!
//! Values of these types are valid: an [`Event`] built by [`EventDraft::check`] names only quotas
//! it has, prices in one currency, and windows that open before they close.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::{Error, Event, EventId, Stock};

/// The quota and the category of an event made with just a `capacity`.
pub const GENERAL: &str = "general";

/// Most quotas, and most categories, of one event; so most lines in one order too.
pub const QUOTAS_MAX: usize = 32;
pub const CATEGORIES_MAX: usize = 32;
/// Largest price of one ticket, in minor units: with the per-order limit, a total stays far
/// inside every store's 64-bit integers.
pub const PRICE_MAX: u64 = 1_000_000_000;

/// True for 1 to 64 characters of `A-Z a-z 0-9 _ -`: the ids safe in a URL path and a log.
pub(crate) fn is_plain_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= EventId::LEN_MAX
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! plain_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, Error> {
                if is_plain_id(raw) {
                    Ok(Self(raw.into()))
                } else {
                    Err(Error::InvalidEvent(format!(
                        "{} ids are 1 to {} characters of A-Z, a-z, 0-9, '_' and '-', got '{}'",
                        $what,
                        EventId::LEN_MAX,
                        raw.escape_debug()
                    )))
                }
            }

            pub fn general() -> Self {
                Self(GENERAL.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

plain_id!(
    /// Names a category of ticket within its event (`standing`, `vip`).
    CategoryId,
    "category"
);
plain_id!(
    /// Names a quota within its event (`venue`, `vip`).
    QuotaId,
    "quota"
);

/// The id an integrator gives one of its customers, opaque to ticketd: 1 to 128 visible ASCII
/// characters. Customer limits count per event and customer id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CustomerId(Arc<str>);

impl CustomerId {
    pub const LEN_MAX: usize = 128;
    pub const PATTERN: &str = "^[!-~]+$";

    pub fn parse(raw: &str) -> Result<Self, Error> {
        if super::is_visible_ascii(raw, Self::LEN_MAX) {
            Ok(Self(raw.into()))
        } else {
            Err(Error::InvalidCustomer(format!(
                "customer must be 1 to {} visible ASCII characters",
                Self::LEN_MAX
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO 4217-shaped currency code: three capital letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        match raw.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(Error::InvalidEvent(format!(
                "currency must be an ISO 4217 code of three capital letters, got '{}'",
                raw.escape_debug()
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII capitals, by construction.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A ticket's price, for the record (ticketd takes no payments): whole minor units (cents) of one
/// currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Price {
    pub amount: u64,
    pub currency: Currency,
}

impl Price {
    pub fn parse(amount: i64, currency: &str) -> Result<Self, Error> {
        let currency = Currency::parse(currency)?;
        u64::try_from(amount)
            .ok()
            .filter(|amount| *amount <= PRICE_MAX)
            .map(|amount| Self { amount, currency })
            .ok_or_else(|| {
                Error::InvalidEvent(format!(
                    "price amount must be 0 to {PRICE_MAX} minor units, got {amount}"
                ))
            })
    }
}

/// When a category is on sale: from `start_ms` (inclusive) until `end_ms` (exclusive), each
/// unbounded when absent. Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SalesWindow {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

impl SalesWindow {
    pub fn new(start_ms: Option<i64>, end_ms: Option<i64>) -> Result<Self, Error> {
        if let (Some(start), Some(end)) = (start_ms, end_ms)
            && start >= end
        {
            return Err(Error::InvalidEvent(
                "sales_end must be after sales_start".into(),
            ));
        }
        Ok(Self { start_ms, end_ms })
    }

    pub fn contains(&self, now_ms: i64) -> bool {
        self.start_ms.is_none_or(|start| start <= now_ms)
            && self.end_ms.is_none_or(|end| now_ms < end)
    }
}

/// A place-count of an event: `stock.capacity` is its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    pub id: QuotaId,
    pub stock: Stock,
}

/// The indexes in `quotas` of the quotas named `ids`, as a category keeps them; an error naming
/// the first id that is not there.
pub fn quota_indexes<'a>(
    quotas: &[Quota],
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<usize>, Error> {
    ids.into_iter()
        .map(|id| {
            quotas
                .iter()
                .position(|quota| quota.id.as_str() == id)
                .ok_or_else(|| Error::InvalidEvent(format!("there is no quota '{id}'")))
        })
        .collect()
}

/// A kind of ticket an event sells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub id: CategoryId,
    pub name: Arc<str>,
    /// The quotas one ticket takes a place from: indexes into the event's quotas, ascending and
    /// distinct, at least one.
    pub quotas: Vec<usize>,
    pub price: Option<Price>,
    /// The organiser's switch: a closed category sells nothing, whatever its window says.
    pub open: bool,
    pub window: SalesWindow,
}

impl Category {
    /// Whether the category sells at `now_ms`.
    pub fn on_sale(&self, now_ms: i64) -> bool {
        self.open && self.window.contains(now_ms)
    }
}

/// An event's categories and rules, which change rarely (and never with a sale): shared between
/// the copies of an event rather than copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalogue {
    pub categories: Vec<Category>,
    /// Most tickets one customer may hold or have bought, together, in this event.
    pub max_per_customer: Option<u32>,
    /// Whether every hold and purchase must name its customer.
    pub customer_required: bool,
}

impl Catalogue {
    /// One category, [`GENERAL`], drawing on the one quota.
    pub fn general() -> Self {
        Self {
            categories: vec![Category {
                id: CategoryId::general(),
                name: GENERAL.into(),
                quotas: vec![0],
                price: None,
                open: true,
                window: SalesWindow::default(),
            }],
            max_per_customer: None,
            customer_required: false,
        }
    }

    pub fn category(&self, id: &CategoryId) -> Option<&Category> {
        self.categories.iter().find(|category| &category.id == id)
    }

    /// The currency every price of the event is in, if any is priced.
    pub fn currency(&self) -> Option<Currency> {
        self.categories
            .iter()
            .find_map(|category| category.price.map(|price| price.currency))
    }
}

impl Event {
    /// An event of one quota and one category, both [`GENERAL`], of `capacity` places: what an
    /// event made with just a capacity is.
    pub fn single(id: EventId, name: Arc<str>, capacity: u64) -> Self {
        Self {
            id,
            name,
            quotas: vec![Quota {
                id: QuotaId::general(),
                stock: Stock::new(capacity),
            }],
            catalogue: Arc::new(Catalogue::general()),
        }
    }

    /// The event's headline counts: those of its first quota. For an event of one quota these are
    /// all its tickets; an event of several lists the quota every ticket counts against (the
    /// venue) first, so these are the venue's.
    pub fn stock(&self) -> Stock {
        self.quotas[0].stock
    }

    pub fn stock_mut(&mut self) -> &mut Stock {
        &mut self.quotas[0].stock
    }

    /// True for an event with nothing beyond one counter: one quota and one category, both
    /// `general`, without price, window, switch or customer rule. Stores keep such an event as
    /// they always did.
    pub fn is_single(&self) -> bool {
        self.quotas.len() == 1
            && self.quotas[0].id.as_str() == GENERAL
            && *self.catalogue == Catalogue::general()
    }

    pub fn quota_index(&self, id: &QuotaId) -> Option<usize> {
        self.quotas.iter().position(|quota| &quota.id == id)
    }

    /// Tickets of `category` that can still be had: the least room of its quotas.
    pub fn category_available(&self, category: &Category) -> u64 {
        category
            .quotas
            .iter()
            .map(|&quota| self.quotas[quota].stock.available)
            .min()
            .unwrap_or(0)
    }

    /// Tickets `category` has in all, sold or not: the least size of its quotas.
    pub fn category_places(&self, category: &Category) -> u64 {
        category
            .quotas
            .iter()
            .map(|&quota| self.quotas[quota].stock.capacity)
            .min()
            .unwrap_or(0)
    }

    /// True when every quota's counts add up.
    pub fn is_consistent(&self) -> bool {
        !self.quotas.is_empty()
            && self.quotas.iter().all(|quota| quota.stock.is_consistent())
            && self.catalogue.categories.iter().all(|category| {
                !category.quotas.is_empty()
                    && category
                        .quotas
                        .iter()
                        .all(|&quota| quota < self.quotas.len())
            })
    }
}

/// A category as asked for when an event is made: quotas by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryDraft {
    pub id: CategoryId,
    pub name: Arc<str>,
    pub quotas: Vec<QuotaId>,
    pub price: Option<Price>,
    pub window: SalesWindow,
}

/// A new event as asked for: parsed piece by piece, checked as a whole by [`Self::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    pub id: EventId,
    pub name: Arc<str>,
    pub quotas: Vec<(QuotaId, u64)>,
    pub categories: Vec<CategoryDraft>,
    pub max_per_customer: Option<u32>,
    pub customer_required: bool,
}

impl EventDraft {
    /// The event, with every place available, if the draft holds together: 1 to
    /// [`QUOTAS_MAX`] quotas and 1 to [`CATEGORIES_MAX`] categories, ids unique, every category
    /// drawing on quotas the event has, prices in one currency. `size_max` bounds each quota.
    pub fn check(self, size_max: u64) -> Result<Event, Error> {
        let invalid = |message: String| Err(Error::InvalidEvent(message));
        if self.quotas.is_empty() || self.quotas.len() > QUOTAS_MAX {
            return invalid(format!("an event has 1 to {QUOTAS_MAX} quotas"));
        }
        if self.categories.is_empty() || self.categories.len() > CATEGORIES_MAX {
            return invalid(format!("an event has 1 to {CATEGORIES_MAX} categories"));
        }
        let mut seen = HashSet::new();
        for (id, size) in &self.quotas {
            if !seen.insert(id.as_str()) {
                return invalid(format!("quota '{id}' is listed twice"));
            }
            if *size > size_max {
                return invalid(format!(
                    "quota '{id}' has size {size}; a quota holds at most {size_max}"
                ));
            }
        }
        if self.max_per_customer == Some(0) {
            return invalid("max_per_customer must be at least 1".into());
        }
        let mut ids = HashSet::new();
        let mut currency: Option<crate::domain::Currency> = None;
        let mut categories = Vec::with_capacity(self.categories.len());
        for draft in self.categories {
            if !ids.insert(draft.id.clone()) {
                return invalid(format!("category '{}' is listed twice", draft.id));
            }
            if draft.quotas.is_empty() {
                return invalid(format!(
                    "category '{}' must draw on at least one quota",
                    draft.id
                ));
            }
            let mut quotas = Vec::with_capacity(draft.quotas.len());
            for quota in &draft.quotas {
                let Some(index) = self.quotas.iter().position(|(id, _)| id == quota) else {
                    return invalid(format!(
                        "category '{}' draws on quota '{quota}', which the event does not have",
                        draft.id
                    ));
                };
                if quotas.contains(&index) {
                    return invalid(format!(
                        "category '{}' names quota '{quota}' twice",
                        draft.id
                    ));
                }
                quotas.push(index);
            }
            quotas.sort_unstable();
            if let Some(price) = draft.price {
                match currency {
                    Some(first) if first != price.currency => {
                        return invalid(format!(
                            "every price of an event is in one currency: '{}' is in {}, another in {}",
                            draft.id,
                            price.currency.as_str(),
                            first.as_str()
                        ));
                    }
                    _ => currency = Some(price.currency),
                }
            }
            categories.push(Category {
                id: draft.id,
                name: draft.name,
                quotas,
                price: draft.price,
                open: true,
                window: draft.window,
            });
        }
        Ok(Event {
            id: self.id,
            name: self.name,
            quotas: self
                .quotas
                .into_iter()
                .map(|(id, size)| Quota {
                    id,
                    stock: Stock::new(size),
                })
                .collect(),
            catalogue: Arc::new(Catalogue {
                categories,
                max_per_customer: self.max_per_customer,
                customer_required: self.customer_required,
            }),
        })
    }
}

/// A change to one quota's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Adds places, all available.
    Add(u64),
    /// Sets the size; it may shrink only down to the places held and sold.
    To(u64),
}

/// A change to one category: open or close it, or move either end of its sales window (`None`:
/// keep it; `Some(None)`: no bound).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CategoryChange {
    pub open: Option<bool>,
    pub sales_start: Option<Option<i64>>,
    pub sales_end: Option<Option<i64>>,
}

/// One line of a reservation as asked: `qty` tickets of a category; `None` for "the event's only
/// category" (the form every request took before categories).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRequest {
    pub category: Option<CategoryId>,
    pub qty: super::Quantity,
}

/// The lines of one reservation: 1 to [`CATEGORIES_MAX`], no category twice, together at most the
/// per-order limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lines(Vec<LineRequest>);

impl Lines {
    /// One line of the event's only category: `{"qty": n}`.
    pub fn one(qty: super::Quantity) -> Self {
        Self(vec![LineRequest {
            category: None,
            qty,
        }])
    }

    /// Checks `lines` as a whole: each quantity is already within the limit alone.
    pub fn parse(lines: Vec<LineRequest>, max_per_order: u32) -> Result<Self, Error> {
        if lines.is_empty() || lines.len() > CATEGORIES_MAX {
            return Err(Error::InvalidQuantity(format!(
                "lines must hold 1 to {CATEGORIES_MAX} lines"
            )));
        }
        // At most CATEGORIES_MAX lines: comparing each with those before it is cheaper than a set.
        for (at, line) in lines.iter().enumerate() {
            if lines[..at]
                .iter()
                .any(|seen| seen.category == line.category)
            {
                return Err(Error::InvalidQuantity(match &line.category {
                    Some(category) => format!("category '{category}' is in two lines"),
                    None => "only one line may leave out its category".into(),
                }));
            }
        }
        let total: u64 = lines.iter().map(|line| u64::from(line.qty.get())).sum();
        let max = u64::from(max_per_order.min(super::Quantity::MAX));
        if total > max {
            return Err(Error::OverLimit(format!(
                "the lines add up to {total} tickets, over the limit of {max} tickets per order"
            )));
        }
        Ok(Self(lines))
    }

    pub fn iter(&self) -> impl Iterator<Item = &LineRequest> {
        self.0.iter()
    }

    /// Tickets in all lines.
    pub fn total(&self) -> u32 {
        // At most the per-order limit, which fits a u32 (see `parse`).
        self.0.iter().map(|line| line.qty.get()).sum()
    }
}

/// One line of an order: `qty` tickets of a category at its price then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLine {
    pub category: CategoryId,
    pub qty: u32,
    pub unit_price: Option<Price>,
}

impl OrderLine {
    /// The line every order made before categories has.
    pub fn general(qty: u32) -> Self {
        Self {
            category: CategoryId::general(),
            qty,
            unit_price: None,
        }
    }
}

/// The lines' total price: `None` when no line is priced. An event prices in one currency.
pub fn total_price(lines: &[OrderLine]) -> Option<Price> {
    let currency = lines.iter().find_map(|line| line.unit_price)?.currency;
    let amount = lines
        .iter()
        .filter_map(|line| {
            line.unit_price
                .map(|price| price.amount * u64::from(line.qty))
        })
        .sum();
    Some(Price { amount, currency })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Quantity;

    fn draft() -> EventDraft {
        let quota = |id: &str, size| (QuotaId::parse(id).unwrap(), size);
        let category = |id: &str, quotas: &[&str], price: Option<Price>| CategoryDraft {
            id: CategoryId::parse(id).unwrap(),
            name: id.into(),
            quotas: quotas.iter().map(|q| QuotaId::parse(q).unwrap()).collect(),
            price,
            window: SalesWindow::default(),
        };
        let eur = |amount| Some(Price::parse(amount, "EUR").unwrap());
        EventDraft {
            id: EventId::parse("fest").unwrap(),
            name: "Fest".into(),
            quotas: vec![quota("venue", 1000), quota("vip", 50)],
            categories: vec![
                category("standing", &["venue"], eur(4500)),
                category("vip", &["vip", "venue"], eur(9900)),
            ],
            max_per_customer: Some(4),
            customer_required: false,
        }
    }

    #[test]
    fn a_draft_becomes_an_event_with_every_place_available() {
        let event = draft().check(1_000_000).unwrap();
        assert_eq!(event.stock(), Stock::new(1000));
        assert_eq!(event.quotas[1].stock, Stock::new(50));
        let vip = event
            .catalogue
            .category(&CategoryId::parse("vip").unwrap())
            .unwrap();
        assert_eq!(vip.quotas, vec![0, 1]);
        assert_eq!(event.category_available(vip), 50);
        assert!(event.is_consistent());
        assert!(!event.is_single());
        let single = Event::single(EventId::default_event(), "d".into(), 5);
        assert!(single.is_single() && single.is_consistent());
    }

    #[test]
    fn drafts_that_do_not_hold_together_are_refused() {
        type Change = Box<dyn Fn(&mut EventDraft)>;
        let cases: Vec<(&str, Change)> = vec![
            ("no quotas", Box::new(|d| d.quotas.clear())),
            ("no categories", Box::new(|d| d.categories.clear())),
            (
                "unknown quota",
                Box::new(|d| d.categories[0].quotas = vec![QuotaId::parse("x").unwrap()]),
            ),
            (
                "quota twice",
                Box::new(|d| d.quotas[1].0 = QuotaId::parse("venue").unwrap()),
            ),
            (
                "category twice",
                Box::new(|d| d.categories[1].id = CategoryId::parse("standing").unwrap()),
            ),
            (
                "two currencies",
                Box::new(|d| d.categories[1].price = Some(Price::parse(1, "USD").unwrap())),
            ),
            ("too big", Box::new(|d| d.quotas[0].1 = 1_000_001)),
            ("limit zero", Box::new(|d| d.max_per_customer = Some(0))),
            (
                "no quota of a category",
                Box::new(|d| d.categories[0].quotas.clear()),
            ),
        ];
        for (what, change) in cases {
            let mut bad = draft();
            change(&mut bad);
            let error = bad.check(1_000_000).unwrap_err();
            assert_eq!(error.code(), "invalid_event", "{what}: {error}");
        }
    }

    #[test]
    fn lines_are_distinct_and_within_the_order_limit() {
        let line = |category: Option<&str>, qty| LineRequest {
            category: category.map(|c| CategoryId::parse(c).unwrap()),
            qty: Quantity::parse(qty, 10).unwrap(),
        };
        let lines = Lines::parse(vec![line(Some("a"), 2), line(Some("b"), 3)], 10).unwrap();
        assert_eq!(lines.total(), 5);
        let twice = Lines::parse(vec![line(Some("a"), 1), line(Some("a"), 1)], 10);
        assert_eq!(twice.unwrap_err().code(), "invalid_quantity");
        let over = Lines::parse(vec![line(Some("a"), 6), line(Some("b"), 5)], 10);
        assert_eq!(over.unwrap_err().code(), "quantity_over_limit");
        assert!(Lines::parse(Vec::new(), 10).is_err());
    }

    #[test]
    fn windows_include_their_start_and_exclude_their_end() {
        let window = SalesWindow::new(Some(10), Some(20)).unwrap();
        assert!(!window.contains(9) && window.contains(10) && window.contains(19));
        assert!(!window.contains(20));
        assert!(SalesWindow::default().contains(i64::MIN));
        assert!(SalesWindow::new(Some(20), Some(20)).is_err());
    }

    #[test]
    fn prices_and_customers_are_checked() {
        assert!(Price::parse(0, "EUR").is_ok());
        for (amount, currency) in [(-1, "EUR"), (1, "eur"), (1, "EURO"), (1_000_000_001, "EUR")] {
            assert!(
                Price::parse(amount, currency).is_err(),
                "{amount} {currency}"
            );
        }
        assert!(CustomerId::parse("c-81").is_ok());
        for bad in ["", "a b", &"c".repeat(129)] {
            assert_eq!(
                CustomerId::parse(bad).unwrap_err().code(),
                "invalid_customer"
            );
        }
        let eur = Price::parse(100, "EUR").unwrap();
        let lines = [
            OrderLine {
                unit_price: Some(eur),
                ..OrderLine::general(3)
            },
            OrderLine::general(1),
        ];
        assert_eq!(total_price(&lines).unwrap().amount, 300);
        assert_eq!(total_price(&[OrderLine::general(2)]), None);
    }
}
