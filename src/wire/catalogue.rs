//! The JSON of categories, quotas, order lines and prices, and their conversions to and from the
//! domain: what `POST /api/v1/events` takes beside a capacity, what purchases and holds take
//! beside a qty, and what events and orders show of them.
//!
//! Request fields stay raw JSON until checked here, so each wrong one gets a precise answer
//! naming it instead of a parse error.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{parse_timestamp_field, timestamp};
use crate::domain::{
    CategoryChange, CategoryDraft, CategoryId, CustomerId, Error, Event, EventDraft, EventId,
    LineRequest, Lines, OrderLimits, OrderLine, Price, QuotaId, Resize, SalesWindow, Shortage,
    total_price,
};

/// A quota of a new event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaBody {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`, unique in the event.
    #[schema(value_type = String, example = "venue")]
    pub id: Option<Value>,
    /// Places: a whole number from 0 to the store's limit.
    #[schema(value_type = i64, minimum = 0, example = 1000)]
    pub size: Option<Value>,
}

/// A category of a new event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryBody {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`, unique in the event.
    #[schema(value_type = String, example = "vip")]
    pub id: Option<Value>,
    /// 1 to 200 characters; the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "VIP")]
    pub name: Option<Value>,
    /// The ids of the quotas one ticket takes a place from (at least one).
    #[schema(value_type = Vec<String>, min_items = 1, max_items = 32, example = json!(["venue", "vip"]))]
    pub quotas: Option<Value>,
    /// For the record; every price of an event is in one currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PriceBody>)]
    pub price: Option<Value>,
    /// On sale from this time (RFC 3339); from now when absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sales_start: Option<Value>,
    /// On sale until this time (RFC 3339, not included); for good when absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sales_end: Option<Value>,
}

/// A price: whole minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceBody {
    /// 0 to 1,000,000,000 minor units.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 9900)]
    pub amount: u64,
    /// Three capital letters.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}

/// One line of a purchase or hold.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineBody {
    /// The category; may be left out when the event sells only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "standing")]
    pub category: Option<Value>,
    /// Tickets of it: a whole number from 1; all lines together at most `max_per_order`.
    #[schema(value_type = i64, minimum = 1, example = 2)]
    pub qty: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaResponse {
    pub id: String,
    pub size: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryResponse {
    pub id: String,
    pub name: String,
    pub quotas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PriceBody>,
    /// Tickets that can still be had: the least `available` of its quotas.
    pub available: u64,
    /// Whether it sells right now: open and inside its sales window.
    pub on_sale: bool,
    /// The organiser's switch (see `PATCH .../categories/{category}`).
    pub open: bool,
    #[serde(default)]
    #[schema(required = true)]
    pub sales_start: Option<String>,
    #[serde(default)]
    #[schema(required = true)]
    pub sales_end: Option<String>,
}

/// One line of an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineResponse {
    pub category: String,
    pub qty: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<PriceBody>,
}

/// Why a purchase or hold got `success: false`: the first line whose category is short, the
/// quota short of places, and the places that quota has left.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShortResponse {
    pub category: String,
    pub quota: String,
    pub available: u64,
}

/// Body of `PATCH /api/v1/events/{event}/quotas/{quota}`. (To add places, `POST .../stock`
/// with the quota.)
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct QuotaPatchRequest {
    /// The new size: from the places held and sold in it to the store's limit.
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 0, example = 1200)]
    pub size: Option<Value>,
}

/// Body of `PATCH /api/v1/events/{event}/categories/{category}`: each field given is changed,
/// each left out is kept; a window end set to `null` becomes open-ended.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CategoryPatchRequest {
    /// Open (`true`) or close (`false`) the category for sale; `null` keeps it as it is.
    #[serde(
        default,
        deserialize_with = "super::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<bool>)]
    pub open: Option<Value>,
    #[serde(
        default,
        deserialize_with = "super::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sales_start: Option<Value>,
    #[serde(
        default,
        deserialize_with = "super::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sales_end: Option<Value>,
}

impl QuotaPatchRequest {
    /// The new size asked for.
    pub fn into_resize(self) -> Result<Resize, Error> {
        super::whole("size", self.size.as_ref())?
            .ok_or_else(|| Error::InvalidQuantity("size is required".into()))
            .and_then(|size| {
                u64::try_from(size).map_err(|_| {
                    Error::InvalidQuantity(format!("size must be 0 or more, got {size}"))
                })
            })
            .map(Resize::To)
    }
}

impl CategoryPatchRequest {
    /// The change asked for; an empty one changes nothing.
    pub fn into_change(self) -> Result<CategoryChange, Error> {
        let open = match self.open {
            None | Some(Value::Null) => None,
            Some(Value::Bool(open)) => Some(open),
            Some(other) => return Err(invalid(format!("open must be true or false, got {other}"))),
        };
        let end = |field: &str, value: Option<Value>| match value {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(raw)) => parse_timestamp_field(field, &raw).map(|ms| Some(Some(ms))),
            Some(other) => Err(invalid(format!(
                "{field} must be a time or null, got {other}"
            ))),
        };
        Ok(CategoryChange {
            open,
            sales_start: end("sales_start", self.sales_start)?,
            sales_end: end("sales_end", self.sales_end)?,
        })
    }
}

impl From<CategoryChange> for CategoryPatchRequest {
    fn from(change: CategoryChange) -> Self {
        let end = |end: Option<Option<i64>>| {
            end.map(|ms| ms.map(timestamp).map_or(Value::Null, Value::from))
        };
        Self {
            open: change.open.map(Value::Bool),
            sales_start: end(change.sales_start),
            sales_end: end(change.sales_end),
        }
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidEvent(message)
}

/// A JSON string field, or `None` when absent or null.
fn text<'a>(field: &str, value: Option<&'a Value>) -> Result<Option<&'a str>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(invalid(format!("{field} must be a string, got {other}"))),
    }
}

fn required_text<'a>(field: &str, value: Option<&'a Value>) -> Result<&'a str, Error> {
    text(field, value)?.ok_or_else(|| invalid(format!("{field} is required")))
}

/// A whole number at least 0 (absent or null: `None`), as an `invalid_event` when it is not.
fn count(field: &str, value: Option<&Value>) -> Result<Option<u64>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            // `as` saturates: 1e300 stays far over any limit, as it should.
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "{field} must be a whole number of at least 0, got {value}"
                ))
            }),
    }
}

fn price(field: &str, value: Option<&Value>) -> Result<Option<Price>, Error> {
    let object = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(object)) => object,
        Some(other) => {
            return Err(invalid(format!(
                "{field} must be an object {{\"amount\", \"currency\"}}, got {other}"
            )));
        }
    };
    let amount = count(&format!("{field}.amount"), object.get("amount"))?
        .ok_or_else(|| invalid(format!("{field}.amount is required")))?;
    let currency = required_text(&format!("{field}.currency"), object.get("currency"))?;
    Price::parse(i64::try_from(amount).unwrap_or(i64::MAX), currency).map(Some)
}

fn window(field: &str, start: Option<&Value>, end: Option<&Value>) -> Result<SalesWindow, Error> {
    let time = |name: &str, value| {
        text(&format!("{field}.{name}"), value)?
            .map(|raw| parse_timestamp_field(&format!("{field}.{name}"), raw))
            .transpose()
    };
    SalesWindow::new(time("sales_start", start)?, time("sales_end", end)?)
}

fn array<'a>(field: &str, value: Option<&'a Value>) -> Result<Option<&'a Vec<Value>>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(invalid(format!("{field} must be an array, got {other}"))),
    }
}

/// The body of `POST /api/v1/events` with `quotas` and `categories` as a draft of the event.
pub(super) fn draft_from(
    id: EventId,
    name: std::sync::Arc<str>,
    quotas: &[Value],
    categories: Option<&Vec<Value>>,
    max_per_customer: Option<&Value>,
    customer_required: Option<&Value>,
) -> Result<EventDraft, Error> {
    let quotas = quotas
        .iter()
        .enumerate()
        .map(|(i, quota)| {
            let field = format!("quotas[{i}]");
            let object = quota.as_object().ok_or_else(|| {
                invalid(format!("{field} must be an object {{\"id\", \"size\"}}"))
            })?;
            let id = QuotaId::parse(required_text(&format!("{field}.id"), object.get("id"))?)?;
            let size = count(&format!("{field}.size"), object.get("size"))?
                .ok_or_else(|| invalid(format!("{field}.size is required")))?;
            Ok((id, size))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let categories = match categories {
        // Quotas without categories: one category per quota, named after it.
        None => quotas
            .iter()
            .map(|(quota, _)| {
                Ok(CategoryDraft {
                    id: CategoryId::parse(quota.as_str())?,
                    name: quota.as_str().into(),
                    quotas: vec![quota.clone()],
                    price: None,
                    window: SalesWindow::default(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?,
        Some(categories) => categories
            .iter()
            .enumerate()
            .map(|(i, category)| category_from(&format!("categories[{i}]"), category))
            .collect::<Result<Vec<_>, Error>>()?,
    };
    let (max_per_customer, customer_required) =
        customer_rules(max_per_customer, customer_required)?;
    Ok(EventDraft {
        id,
        name,
        quotas,
        categories,
        max_per_customer,
        customer_required,
    })
}

/// `max_per_customer` and `customer_required` of a new event.
fn customer_rules(
    max_per_customer: Option<&Value>,
    customer_required: Option<&Value>,
) -> Result<(Option<u32>, bool), Error> {
    let max_per_customer = count("max_per_customer", max_per_customer)?
        .map(|max| {
            u32::try_from(max)
                .ok()
                .filter(|max| *max >= 1)
                .ok_or_else(|| {
                    invalid(format!(
                        "max_per_customer must be 1 to {}, got {max}",
                        u32::MAX
                    ))
                })
        })
        .transpose()?;
    let customer_required = match customer_required {
        None | Some(Value::Null) => false,
        Some(Value::Bool(required)) => *required,
        Some(other) => {
            return Err(invalid(format!(
                "customer_required must be true or false, got {other}"
            )));
        }
    };
    Ok((max_per_customer, customer_required))
}

fn category_from(field: &str, value: &Value) -> Result<CategoryDraft, Error> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(format!("{field} must be an object")))?;
    let id = CategoryId::parse(required_text(&format!("{field}.id"), object.get("id"))?)?;
    let name = match text(&format!("{field}.name"), object.get("name"))? {
        Some(name) => Event::parse_name(name)?,
        None => id.as_str().into(),
    };
    let quotas = array(&format!("{field}.quotas"), object.get("quotas"))?
        .ok_or_else(|| invalid(format!("{field}.quotas is required")))?
        .iter()
        .map(|quota| match quota {
            Value::String(quota) => QuotaId::parse(quota),
            other => Err(invalid(format!(
                "{field}.quotas holds quota ids, got {other}"
            ))),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(CategoryDraft {
        id,
        name,
        quotas,
        price: price(&format!("{field}.price"), object.get("price"))?,
        window: window(field, object.get("sales_start"), object.get("sales_end"))?,
    })
}

/// The JSON of a draft, as the ticket service sends it on to vacancy.
pub(super) fn draft_json(draft: &EventDraft) -> (Value, Value) {
    let quotas = draft
        .quotas
        .iter()
        .map(|(id, size)| json!({"id": id, "size": size}))
        .collect();
    let categories = draft
        .categories
        .iter()
        .map(|category| {
            json!({
                "id": category.id,
                "name": &*category.name,
                "quotas": category.quotas,
                "price": category.price.map(price_body),
                "sales_start": category.window.start_ms.map(timestamp),
                "sales_end": category.window.end_ms.map(timestamp),
            })
        })
        .collect();
    (Value::Array(quotas), Value::Array(categories))
}

pub(super) fn price_body(price: Price) -> PriceBody {
    PriceBody {
        amount: price.amount,
        currency: price.currency.as_str().to_owned(),
    }
}

/// A purchase's or hold's tickets: `lines`, or `qty`, not both; `category` is the category of
/// `qty`, or of each line that names none.
pub fn lines_from(
    limits: &OrderLimits,
    qty: Option<&Value>,
    category: Option<&Value>,
    lines: Option<&Value>,
) -> Result<Lines, Error> {
    let category_of = |field: &str, value: Option<&Value>| match value {
        None => Ok(None),
        Some(Value::String(id)) => CategoryId::parse(id)
            .map(Some)
            .map_err(|_| Error::UnknownCategory(format!("there is no category '{id}'"))),
        Some(other) => Err(Error::InvalidQuantity(format!(
            "{field} must be a category id, got {other}"
        ))),
    };
    let quantity = |field: &str, value: Option<&Value>| {
        let raw = super::whole(field, value)?
            .ok_or_else(|| Error::InvalidQuantity(format!("{field} is required")))?;
        limits.quantity(raw).map_err(|error| match error {
            Error::InvalidQuantity(message) => {
                Error::InvalidQuantity(message.replacen("qty", field, 1))
            }
            Error::OverLimit(message) => Error::OverLimit(message.replacen("qty", field, 1)),
            other => other,
        })
    };
    let Some(lines) = lines else {
        let line = LineRequest {
            category: category_of("category", category)?,
            qty: quantity("qty", qty)?,
        };
        return Lines::parse(vec![line], limits.max_per_order);
    };
    if qty.is_some() {
        return Err(Error::InvalidQuantity(
            "give either lines or qty, not both".into(),
        ));
    }
    let default = category_of("category", category)?;
    let Value::Array(lines) = lines else {
        return Err(Error::InvalidQuantity(format!(
            "lines must be an array of {{\"category\", \"qty\"}}, got {lines}"
        )));
    };
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let object = line.as_object().ok_or_else(|| {
                Error::InvalidQuantity(format!(
                    "lines[{i}] must be an object {{\"category\", \"qty\"}}"
                ))
            })?;
            let category = category_of(&format!("lines[{i}].category"), object.get("category"))?;
            Ok(LineRequest {
                category: category.or_else(|| default.clone()),
                qty: quantity(&format!("lines[{i}].qty"), object.get("qty"))?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Lines::parse(lines, limits.max_per_order)
}

/// The lines as the ticket service sends them on to vacancy: always as `lines`.
pub fn lines_json(lines: &Lines) -> Value {
    lines
        .iter()
        .map(|line| match &line.category {
            Some(category) => json!({"category": category, "qty": line.qty.get()}),
            None => json!({"qty": line.qty.get()}),
        })
        .collect()
}

/// A request's `customer`, if it names one.
pub fn customer_from(value: Option<&Value>) -> Result<Option<CustomerId>, Error> {
    match value {
        None => Ok(None),
        Some(Value::String(customer)) => CustomerId::parse(customer).map(Some),
        Some(other) => Err(Error::InvalidCustomer(format!(
            "customer must be a string, got {other}"
        ))),
    }
}

pub(super) fn quota_responses(event: &Event) -> Vec<QuotaResponse> {
    event
        .quotas
        .iter()
        .map(|quota| QuotaResponse {
            id: quota.id.to_string(),
            size: quota.stock.capacity,
            available: quota.stock.available,
            held: quota.stock.held,
            sold: quota.stock.sold,
        })
        .collect()
}

pub(super) fn category_responses(event: &Event, now_ms: i64) -> Vec<CategoryResponse> {
    event
        .catalogue
        .categories
        .iter()
        .map(|category| CategoryResponse {
            id: category.id.to_string(),
            name: category.name.to_string(),
            quotas: category
                .quotas
                .iter()
                .map(|&quota| event.quotas[quota].id.to_string())
                .collect(),
            price: category.price.map(price_body),
            available: event.category_available(category),
            on_sale: category.on_sale(now_ms),
            open: category.open,
            sales_start: category.window.start_ms.map(timestamp),
            sales_end: category.window.end_ms.map(timestamp),
        })
        .collect()
}

pub fn line_responses(lines: &[OrderLine]) -> Vec<LineResponse> {
    lines
        .iter()
        .map(|line| LineResponse {
            category: line.category.to_string(),
            qty: line.qty,
            unit_price: line.unit_price.map(price_body),
        })
        .collect()
}

pub fn total_price_body(lines: &[OrderLine]) -> Option<PriceBody> {
    total_price(lines).map(price_body)
}

pub fn short_response(short: &Shortage) -> ShortResponse {
    ShortResponse {
        category: short.category.to_string(),
        quota: short.quota.to_string(),
        available: short.available,
    }
}

/// Reads vacancy's price back; one the ticket service cannot read is vacancy's fault.
pub(super) fn price_from_vacancy(price: &PriceBody) -> Result<Price, Error> {
    Price::parse(
        i64::try_from(price.amount).unwrap_or(i64::MAX),
        &price.currency,
    )
    .map_err(|e| Error::Unavailable(format!("vacancy sent an unreadable price: {e}")))
}

pub(super) fn lines_from_vacancy(lines: &[LineResponse]) -> Result<Vec<OrderLine>, Error> {
    lines
        .iter()
        .map(|line| {
            Ok(OrderLine {
                category: CategoryId::parse(&line.category).map_err(|e| {
                    Error::Unavailable(format!("vacancy sent an unreadable category: {e}"))
                })?,
                qty: line.qty,
                unit_price: line
                    .unit_price
                    .as_ref()
                    .map(price_from_vacancy)
                    .transpose()?,
            })
        })
        .collect()
}

pub fn short_from_vacancy(short: &ShortResponse) -> Result<Shortage, Error> {
    let unreadable =
        |e: Error| Error::Unavailable(format!("vacancy sent an unreadable shortage: {e}"));
    Ok(Shortage {
        category: CategoryId::parse(&short.category).map_err(unreadable)?,
        quota: QuotaId::parse(&short.quota).map_err(unreadable)?,
        available: short.available,
    })
}
