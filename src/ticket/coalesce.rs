//! Coalescing reservations across the hop to vacancy: every reservation waiting at the moment a
//! call can go goes in that one call, and vacancy decides them in one batch.
//!
//! One line per worker thread (and per remote client), because awc's client is not `Send`: each
//! actix worker has its own client and keep-alive pool, and the futures of a worker never leave
//! it, so a line needs no lock and no channel between threads. A line has at most one call in
//! flight, and no task of its own: the call is made by one of the waiting requests, the
//! *leader*.
//!
//! - A reservation that finds the line idle leads at once: no added wait when idle.
//! - One that finds a call in flight waits in the line.
//! - When the call is answered, the leader hands each reservation its answer and makes the first
//!   one still waiting the next leader, which sends everything waiting by then (up to
//!   [`RESERVE_BATCH_MAX`]) in the next call.
//!
//! A leader whose request is dropped mid-call (its client went away) puts the reservations it
//! took back at the head of the line and hands the lead on, so nobody waits for an answer that
//! will never come. They are sent again under their own ids, which is what makes that exact:
//! vacancy answers a reservation id it has seen with its first answer.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

use crate::domain::{Error, Reservation, Reserved};
use crate::wire::RESERVE_BATCH_MAX;

/// One reservation waiting in a line, and how to reach its request.
struct Waiting {
    reservation: Reservation,
    turn: oneshot::Sender<Turn>,
}

/// What a waiting request is told.
enum Turn {
    /// Its reservation was decided.
    Answered(Result<Reserved, Error>),
    /// It leads now: it makes the next call, its own reservation first.
    Lead(Reservation),
}

#[derive(Default)]
struct Line {
    waiting: VecDeque<Waiting>,
    /// A call is in flight, or a request has been told to lead and will make it.
    leading: bool,
}

thread_local! {
    /// This worker thread's lines, by remote client.
    static LINES: RefCell<HashMap<u64, Line>> = RefCell::new(HashMap::new());
}

fn with_line<T>(client: u64, f: impl FnOnce(&mut Line) -> T) -> T {
    LINES.with(|lines| f(lines.borrow_mut().entry(client).or_default()))
}

/// Reserves through this thread's line of `client`: leads at once when nothing is in flight,
/// otherwise waits to be answered or to lead. `send` makes one call for every reservation it is
/// given and answers each, in order.
pub(super) async fn reserve<F>(
    client: u64,
    reservation: Reservation,
    send: F,
) -> Result<Reserved, Error>
where
    F: AsyncFn(&[Reservation]) -> Vec<Result<Reserved, Error>>,
{
    let mut told = None;
    let leads = with_line(client, |line| {
        if line.leading {
            let (turn, receiver) = oneshot::channel();
            line.waiting.push_back(Waiting { reservation, turn });
            told = Some(Told { client, receiver });
            None
        } else {
            line.leading = true;
            Some(reservation)
        }
    });
    let mine = match (leads, told) {
        (Some(mine), _) => mine,
        (None, Some(mut told)) => match (&mut told.receiver).await {
            Ok(Turn::Answered(answer)) => return answer,
            Ok(Turn::Lead(mine)) => mine,
            // Every path that takes a reservation out of the line answers it or hands it the
            // lead, even a leader being dropped; this is a bug, not a state.
            Err(_) => {
                return Err(Error::Internal(
                    "a coalesced reservation was dropped unanswered".into(),
                ));
            }
        },
        (None, None) => unreachable!("a reservation either leads or waits"),
    };
    lead(client, mine, send).await
}

/// A request waiting in a line for its turn. Dropped after it was told to lead but before it
/// did (its client went away at that very moment), it hands the lead on, so a line never waits
/// for a leader that is gone.
struct Told {
    client: u64,
    receiver: oneshot::Receiver<Turn>,
}

impl Drop for Told {
    fn drop(&mut self) {
        if let Ok(Turn::Lead(_)) = self.receiver.try_recv() {
            with_line(self.client, hand_over);
        }
    }
}

/// The first request still waiting leads next; with nobody waiting, the line is idle.
fn hand_over(line: &mut Line) {
    line.leading = false;
    while let Some(next) = line.waiting.pop_front() {
        if next.turn.send(Turn::Lead(next.reservation)).is_ok() {
            line.leading = true;
            return;
        }
    }
}

/// Makes one call for `mine` and everything waiting, answers them, hands the lead on.
async fn lead<F>(client: u64, mine: Reservation, send: F) -> Result<Reserved, Error>
where
    F: AsyncFn(&[Reservation]) -> Vec<Result<Reserved, Error>>,
{
    let mut call = Leading {
        client,
        reservations: vec![mine],
        turns: Vec::new(),
        answered: false,
    };
    with_line(client, |line| {
        while call.reservations.len() < RESERVE_BATCH_MAX {
            let Some(next) = line.waiting.pop_front() else {
                break;
            };
            // Its request went away while waiting: nobody to sell to.
            if next.turn.is_closed() {
                continue;
            }
            call.reservations.push(next.reservation);
            call.turns.push(next.turn);
        }
    });
    let mut answers = send(&call.reservations).await.into_iter();
    call.answered = true;
    let mine = answers.next().unwrap_or_else(unanswered);
    for turn in call.turns.drain(..) {
        let answer = answers.next().unwrap_or_else(unanswered);
        // A request that went away meanwhile no longer listens; what was made stays made.
        let _ = turn.send(Turn::Answered(answer));
    }
    mine
}

fn unanswered() -> Result<Reserved, Error> {
    Err(Error::Unavailable(
        "vacancy answered fewer reservations than it was sent".into(),
    ))
}

/// The call a leader is making. Dropped unanswered (the leader's request went away mid-call), it
/// puts the others' reservations back at the head of the line; answered or not, it hands the
/// lead on.
struct Leading {
    client: u64,
    /// The leader's own first, then one for each of `turns`.
    reservations: Vec<Reservation>,
    turns: Vec<oneshot::Sender<Turn>>,
    answered: bool,
}

impl Drop for Leading {
    fn drop(&mut self) {
        let others = self.reservations.drain(..).skip(1);
        let back: Vec<Waiting> = if self.answered {
            Vec::new()
        } else {
            others
                .zip(self.turns.drain(..))
                .map(|(reservation, turn)| Waiting { reservation, turn })
                .collect()
        };
        with_line(self.client, |line| {
            for waiting in back.into_iter().rev() {
                line.waiting.push_front(waiting);
            }
            hand_over(line);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::domain::{EventId, Quantity, ReservationId};

    fn reservation() -> Reservation {
        let qty = Quantity::parse(1, 10).unwrap();
        Reservation::new(ReservationId::generate(), EventId::default_event(), qty)
    }

    fn reserved() -> Reserved {
        Reserved {
            order: None,
            remaining: 0,
            short: None,
        }
    }

    /// The first reservation goes alone at once; those arriving while it is in flight go
    /// together in the next call; everyone is answered; the line ends idle.
    #[actix_web::test]
    async fn what_waits_while_a_call_is_in_flight_goes_in_the_next_one() {
        let client = 9_001;
        let calls = Rc::new(RefCell::new(Vec::<usize>::new()));
        let (open, opened) = oneshot::channel::<()>();
        let opened = Rc::new(RefCell::new(Some(opened)));
        let requests: Vec<_> = (0..5)
            .map(|_| {
                let (calls, opened) = (Rc::clone(&calls), Rc::clone(&opened));
                actix_web::rt::spawn(async move {
                    reserve(client, reservation(), async |batch: &[Reservation]| {
                        calls.borrow_mut().push(batch.len());
                        // The first call waits until the test lets it go.
                        let gate = opened.borrow_mut().take();
                        if let Some(gate) = gate {
                            let _ = gate.await;
                        }
                        batch.iter().map(|_| Ok(reserved())).collect()
                    })
                    .await
                })
            })
            .collect();
        // Let every request reach the line before the first call is answered.
        for _ in 0..10 {
            actix_web::rt::task::yield_now().await;
        }
        let _ = open.send(());
        for request in requests {
            assert!(request.await.unwrap().is_ok());
        }
        assert_eq!(*calls.borrow(), vec![1, 4]);
        assert!(with_line(client, |line| !line.leading && line.waiting.is_empty()));
    }

    /// A request told to lead that goes away before it leads hands the lead on: the line does
    /// not wait for it, and a later reservation is still made.
    #[actix_web::test]
    async fn a_request_that_goes_away_when_told_to_lead_hands_the_lead_on() {
        let client = 9_003;
        let (open, opened) = oneshot::channel::<()>();
        let opened = Rc::new(RefCell::new(Some(opened)));
        async fn answer(batch: &[Reservation]) -> Vec<Result<Reserved, Error>> {
            batch.iter().map(|_| Ok(reserved())).collect()
        }
        let leader = actix_web::rt::spawn(async move {
            reserve(client, reservation(), async |batch: &[Reservation]| {
                let gate = opened.borrow_mut().take();
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                batch.iter().map(|_| Ok(reserved())).collect()
            })
            .await
        });
        actix_web::rt::task::yield_now().await;
        // Waits in the line; told to lead once the leader is answered.
        let mut follower = Box::pin(reserve(client, reservation(), answer));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(follower.as_mut().poll(&mut context).is_pending());
        let _ = open.send(());
        assert!(leader.await.unwrap().is_ok());
        assert!(
            with_line(client, |line| line.leading),
            "the follower was told to lead"
        );
        // Its client goes away before it is polled again.
        drop(follower);
        assert!(with_line(client, |line| !line.leading && line.waiting.is_empty()));
        let later = reserve(client, reservation(), answer);
        let later = actix_web::rt::time::timeout(std::time::Duration::from_secs(5), later).await;
        assert!(
            later
                .expect("the line was left waiting for a leader")
                .is_ok()
        );
    }

    /// A leader dropped mid-call hands its batch and the lead on: the others are sent again.
    #[actix_web::test]
    async fn a_leader_that_goes_away_mid_call_hands_its_batch_on() {
        let client = 9_002;
        let sent = Rc::new(Cell::new(0));
        let (open, opened) = oneshot::channel::<()>();
        let opened = Rc::new(RefCell::new(Some(opened)));
        let leader = {
            let sent = Rc::clone(&sent);
            actix_web::rt::spawn(async move {
                reserve(client, reservation(), async |batch: &[Reservation]| {
                    sent.set(sent.get() + batch.len());
                    std::future::pending::<()>().await;
                    batch.iter().map(|_| Ok(reserved())).collect()
                })
                .await
            })
        };
        actix_web::rt::task::yield_now().await;
        let follower = {
            let sent = Rc::clone(&sent);
            actix_web::rt::spawn(async move {
                reserve(client, reservation(), async |batch: &[Reservation]| {
                    sent.set(sent.get() + batch.len());
                    let gate = opened.borrow_mut().take();
                    if let Some(gate) = gate {
                        let _ = gate.await;
                    }
                    batch.iter().map(|_| Ok(reserved())).collect()
                })
                .await
            })
        };
        for _ in 0..10 {
            actix_web::rt::task::yield_now().await;
        }
        assert_eq!(sent.get(), 1, "the leader's call carries only its own");
        leader.abort();
        let _ = leader.await;
        let _ = open.send(());
        assert!(follower.await.unwrap().is_ok());
        assert_eq!(sent.get(), 2, "the follower led its own call");
        assert!(with_line(client, |line| !line.leading && line.waiting.is_empty()));
    }
}
