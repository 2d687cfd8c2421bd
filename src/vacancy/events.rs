//! The events as the writer last committed (or locked) them. Every reservation looks its event
//! up, often several times per batch, and every batch puts back each event it changed: that is
//! one hash lookup each. The id order, which a page of `GET /api/v1/events` follows, is kept
//! beside them and changes only when an event is added, not when one is sold from. A shared
//! store's writer has only the events its batch locked, and lists none (its pages are read
//! from the database), so it builds no order for them (see [`EventMap::replace_with_locked`]).

use std::collections::BTreeSet;
use std::ops::Bound;

use foldhash::HashMap;

use crate::domain::{Event, EventId};

/// Events by id, listed in id order.
#[derive(Debug, Default)]
pub(crate) struct EventMap {
    by_id: HashMap<EventId, Event>,
    ids: BTreeSet<EventId>,
}

impl EventMap {
    pub fn get(&self, id: &EventId) -> Option<&Event> {
        self.by_id.get(id)
    }

    #[cfg(test)]
    pub fn get_mut(&mut self, id: &EventId) -> Option<&mut Event> {
        self.by_id.get_mut(id)
    }

    /// Puts `event` in place of the one with its id, if any.
    pub fn insert(&mut self, event: Event) {
        if let Some(before) = self.by_id.get_mut(&event.id) {
            *before = event;
        } else {
            self.ids.insert(event.id.clone());
            self.by_id.insert(event.id.clone(), event);
        }
    }

    /// Keeps exactly `events`, the ones a shared store's batch locked, to be found by id; they
    /// are never listed, so no id order is built for them (an event the batch then creates is
    /// added to the order as usual, and goes with the next batch's replacement).
    pub fn replace_with_locked(&mut self, events: Vec<Event>) {
        self.ids.clear();
        self.by_id.clear();
        self.by_id
            .extend(events.into_iter().map(|event| (event.id.clone(), event)));
    }

    /// The events after `after` (from the first when `None`), in id order.
    pub fn after<'a>(&'a self, after: Option<&'a EventId>) -> impl Iterator<Item = &'a Event> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.ids
            .range((from, Bound::Unbounded))
            .filter_map(|id| self.by_id.get(id))
    }
}

impl FromIterator<Event> for EventMap {
    fn from_iter<I: IntoIterator<Item = Event>>(events: I) -> Self {
        let mut map = Self::default();
        for event in events {
            map.insert(event);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, capacity: u64) -> Event {
        Event::single(EventId::parse(id).unwrap(), id.into(), capacity)
    }

    #[test]
    fn events_are_found_by_id_and_listed_in_id_order() {
        let mut map: EventMap = [event("b", 1), event("c", 1), event("a", 1)]
            .into_iter()
            .collect();
        map.insert(event("b", 7));
        let id = |event: &Event| event.id.as_str().to_owned();
        assert_eq!(map.after(None).map(id).collect::<Vec<_>>(), ["a", "b", "c"]);
        let a = EventId::parse("a").unwrap();
        assert_eq!(map.after(Some(&a)).map(id).collect::<Vec<_>>(), ["b", "c"]);
        let b = EventId::parse("b").unwrap();
        assert_eq!(map.get(&b).map(|e| e.stock().capacity), Some(7));
        assert!(map.get(&EventId::parse("d").unwrap()).is_none());
    }

    #[test]
    fn a_shared_batch_keeps_only_its_locked_events_and_lists_none() {
        let mut map: EventMap = [event("a", 1), event("b", 1)].into_iter().collect();
        map.replace_with_locked(vec![event("c", 2)]);
        assert!(map.get(&EventId::parse("a").unwrap()).is_none());
        let c = EventId::parse("c").unwrap();
        assert_eq!(map.get(&c).map(|e| e.stock().capacity), Some(2));
        assert_eq!(map.after(None).count(), 0);
    }
}
