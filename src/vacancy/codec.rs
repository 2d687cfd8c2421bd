//! How every durable store keeps what an event sells and what an order bought, beside the columns
//! it has always had.
//!
//! An event keeps its first quota's counts in its `capacity/available/held/sold` columns, as
//! before, so an event of one `general` quota and category (every event made before categories,
//! and every event made with just a capacity) is stored exactly as it always was, with no layout.
//! An event of more keeps its quotas (with their counts) and its catalogue as JSON text beside
//! those columns. An order keeps its lines as JSON text, or none when it is one `general` line at
//! no price (every order made before categories). This module alone writes and reads that text.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{
    CATEGORIES_MAX, Catalogue, Category, CategoryId, Error, Event, EventId, OrderLine, Price,
    QUOTAS_MAX, Quota, QuotaId, SalesWindow, Stock, quota_indexes,
};

#[derive(Serialize, Deserialize)]
struct StoredQuota {
    id: String,
    capacity: u64,
    available: u64,
    held: u64,
    sold: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredPrice {
    amount: i64,
    currency: String,
}

#[derive(Serialize, Deserialize)]
struct StoredCategory {
    id: String,
    name: String,
    quotas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price: Option<StoredPrice>,
    open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sales_start_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sales_end_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct StoredCatalogue {
    categories: Vec<StoredCategory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_per_customer: Option<u32>,
    #[serde(default)]
    customer_required: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredLine {
    category: String,
    qty: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_price: Option<StoredPrice>,
}

/// An event's layout as stored: `(quotas, catalogue)` as JSON text, or `None` for an event of one
/// `general` quota and category, which needs no more than its count columns.
pub fn encode_layout(event: &Event) -> Option<(String, String)> {
    if event.is_single() {
        return None;
    }
    let quotas: Vec<StoredQuota> = event
        .quotas
        .iter()
        .map(|quota| StoredQuota {
            id: quota.id.to_string(),
            capacity: quota.stock.capacity,
            available: quota.stock.available,
            held: quota.stock.held,
            sold: quota.stock.sold,
        })
        .collect();
    let catalogue = &event.catalogue;
    let stored = StoredCatalogue {
        categories: catalogue
            .categories
            .iter()
            .map(|category| StoredCategory {
                id: category.id.to_string(),
                name: category.name.to_string(),
                quotas: category
                    .quotas
                    .iter()
                    .map(|&quota| event.quotas[quota].id.to_string())
                    .collect(),
                price: category.price.map(stored_price),
                open: category.open,
                sales_start_ms: category.window.start_ms,
                sales_end_ms: category.window.end_ms,
            })
            .collect(),
        max_per_customer: catalogue.max_per_customer,
        customer_required: catalogue.customer_required,
    };
    Some((json(&quotas), json(&stored)))
}

/// Plain structs of strings and numbers always serialize.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn stored_price(price: Price) -> StoredPrice {
    StoredPrice {
        amount: price.amount as i64,
        currency: price.currency.as_str().to_owned(),
    }
}

fn broken(what: &str, id: &dyn std::fmt::Display, detail: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what} '{id}' is stored unreadably: {detail}"))
}

/// Reads an event back: `first` from the count columns, the rest from its layout, if any.
pub fn decode_event(
    id: EventId,
    name: Arc<str>,
    first: Stock,
    layout: Option<(&str, &str)>,
) -> Result<Event, Error> {
    let Some((quotas, catalogue)) = layout else {
        let mut event = Event::single(id, name, first.capacity);
        *event.stock_mut() = first;
        return Ok(event);
    };
    let fail = |detail: String| broken("event", &id, detail);
    let quotas: Vec<StoredQuota> =
        serde_json::from_str(quotas).map_err(|e| fail(format!("quotas: {e}")))?;
    let catalogue: StoredCatalogue =
        serde_json::from_str(catalogue).map_err(|e| fail(format!("catalogue: {e}")))?;
    let quotas = quotas
        .into_iter()
        .map(|quota| {
            Ok(Quota {
                id: QuotaId::parse(&quota.id)?,
                stock: Stock {
                    capacity: quota.capacity,
                    available: quota.available,
                    held: quota.held,
                    sold: quota.sold,
                },
            })
        })
        .collect::<Result<Vec<_>, Error>>()
        .map_err(|e| fail(e.to_string()))?;
    if quotas.first().map(|quota| quota.stock) != Some(first) {
        return Err(fail(
            "its first quota's counts differ from its count columns".into(),
        ));
    }
    let categories = catalogue
        .categories
        .into_iter()
        .map(|category| {
            let quotas = quota_indexes(&quotas, category.quotas.iter().map(String::as_str))?;
            Ok(Category {
                id: CategoryId::parse(&category.id)?,
                name: category.name.into(),
                quotas,
                price: category.price.map(read_price).transpose()?,
                open: category.open,
                window: SalesWindow::new(category.sales_start_ms, category.sales_end_ms)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()
        .map_err(|e| fail(e.to_string()))?;
    let event = Event {
        id,
        name,
        quotas,
        catalogue: Arc::new(Catalogue {
            categories,
            max_per_customer: catalogue.max_per_customer,
            customer_required: catalogue.customer_required,
        }),
    };
    // As strict as a new event: the rules index by quota and trust the counts.
    let within = event.quotas.len() <= QUOTAS_MAX
        && (1..=CATEGORIES_MAX).contains(&event.catalogue.categories.len());
    if !within || !event.is_consistent() {
        return Err(broken(
            "event",
            &event.id,
            "its quotas or categories are out of bounds or do not add up",
        ));
    }
    Ok(event)
}

fn read_price(price: StoredPrice) -> Result<Price, Error> {
    Price::parse(price.amount, &price.currency)
}

/// An order's lines as stored: `None` for one `general` line at no price (the only kind of order
/// before categories, and still the common one).
pub fn encode_lines(lines: &[OrderLine]) -> Option<String> {
    if let [line] = lines
        && *line == OrderLine::general(line.qty)
    {
        return None;
    }
    let stored: Vec<StoredLine> = lines
        .iter()
        .map(|line| StoredLine {
            category: line.category.to_string(),
            qty: line.qty,
            unit_price: line.unit_price.map(stored_price),
        })
        .collect();
    Some(json(&stored))
}

/// Reads an order's lines back; an order stored without lines is one `general` line of `qty`.
pub fn decode_lines(
    order: &dyn std::fmt::Display,
    qty: u32,
    stored: Option<&str>,
) -> Result<Arc<[OrderLine]>, Error> {
    let Some(stored) = stored else {
        return Ok(Arc::new([OrderLine::general(qty)]));
    };
    let fail = |detail: String| broken("order", order, detail);
    let lines: Vec<StoredLine> =
        serde_json::from_str(stored).map_err(|e| fail(format!("lines: {e}")))?;
    let lines = lines
        .into_iter()
        .map(|line| {
            Ok(OrderLine {
                category: CategoryId::parse(&line.category)?,
                qty: line.qty,
                unit_price: line.unit_price.map(read_price).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()
        .map_err(|e| fail(e.to_string()))?;
    let total: u64 = lines.iter().map(|line| u64::from(line.qty)).sum();
    if lines.is_empty() || total != u64::from(qty) {
        return Err(fail(format!("its lines add up to {total}, not {qty}")));
    }
    Ok(lines.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CategoryDraft, EventDraft};

    fn fest() -> Event {
        let quota = |id: &str, size| (QuotaId::parse(id).unwrap(), size);
        EventDraft {
            id: EventId::parse("fest").unwrap(),
            name: "Fest".into(),
            quotas: vec![quota("venue", 100), quota("vip", 10)],
            categories: vec![CategoryDraft {
                id: CategoryId::parse("vip").unwrap(),
                name: "VIP".into(),
                quotas: vec![
                    QuotaId::parse("vip").unwrap(),
                    QuotaId::parse("venue").unwrap(),
                ],
                price: Some(Price::parse(9900, "EUR").unwrap()),
                window: SalesWindow::new(Some(5), None).unwrap(),
            }],
            max_per_customer: Some(4),
            customer_required: true,
        }
        .check(1000)
        .unwrap()
    }

    #[test]
    fn an_event_reads_back_as_it_was_written() {
        let mut event = fest();
        event.quotas[1].stock.available -= 3;
        event.quotas[1].stock.sold += 3;
        let (quotas, catalogue) = encode_layout(&event).unwrap();
        let read = decode_event(
            event.id.clone(),
            event.name.clone(),
            event.stock(),
            Some((&quotas, &catalogue)),
        )
        .unwrap();
        assert_eq!(read, event);
    }

    /// Found reading the store's side: a stored layout was trusted, though the rules index by
    /// quota up to `QUOTAS_MAX` and rely on the counts adding up.
    #[test]
    fn a_layout_out_of_bounds_or_not_adding_up_is_refused() {
        let event = fest();
        let (quotas, catalogue) = encode_layout(&event).unwrap();
        let read = |quotas: &str| {
            decode_event(
                event.id.clone(),
                event.name.clone(),
                event.stock(),
                Some((quotas, &catalogue)),
            )
        };
        let not_adding_up = quotas.replacen("\"held\":0", "\"held\":1", 2);
        let one = r#"{"id":"q","capacity":0,"available":0,"held":0,"sold":0}"#;
        let too_many = quotas.replacen(
            '[',
            &format!("[{}", format!("{one},").repeat(QUOTAS_MAX)),
            1,
        );
        for bad in [not_adding_up, too_many] {
            assert_eq!(read(&bad).unwrap_err().code(), "storage_failure", "{bad}");
        }
        assert!(read(&quotas).is_ok());
    }

    #[test]
    fn a_single_event_is_stored_as_always() {
        let mut event = Event::single(EventId::default_event(), "d".into(), 10);
        event.stock_mut().available = 7;
        event.stock_mut().held = 3;
        assert_eq!(encode_layout(&event), None);
        let read = decode_event(event.id.clone(), event.name.clone(), event.stock(), None);
        assert_eq!(read.unwrap(), event);
    }

    #[test]
    fn lines_read_back_and_must_add_up() {
        assert_eq!(encode_lines(&[OrderLine::general(3)]), None);
        assert_eq!(
            &*decode_lines(&"o", 3, None).unwrap(),
            &[OrderLine::general(3)]
        );
        let lines = [
            OrderLine {
                category: CategoryId::parse("vip").unwrap(),
                qty: 1,
                unit_price: Some(Price::parse(9900, "EUR").unwrap()),
            },
            OrderLine::general(2),
        ];
        let stored = encode_lines(&lines).unwrap();
        assert_eq!(&*decode_lines(&"o", 3, Some(&stored)).unwrap(), &lines);
        let error = decode_lines(&"o", 4, Some(&stored)).unwrap_err();
        assert_eq!(error.code(), "storage_failure");
        assert!(decode_lines(&"o", 1, Some("{")).is_err());
    }
}
