//! Delivery: posts every change a webhook subscribed to, signed as Standard Webhooks says, until
//! the receiver answers 2xx or the retries run out.
//!
//! One thread runs an actix system (awc's client is bound to its thread). Every `poll` it claims
//! the webhooks it may deliver and starts a task for each new one. A webhook's task reads the feed
//! after the webhook's cursor, keeps what it has still to deliver in its progress, and sends the
//! oldest change of each event (never a later change of an event before an earlier one is
//! finished), several events at once. After each round it saves the progress and the attempts:
//! a crash between a delivery and that save delivers the change again, with the same
//! `webhook-id` (at least once, never lost).
//!
//! Every attempt is bounded: it times out, follows no redirect (a 3xx is a failure), and reads at
//! most `ANSWER_BYTES_MAX` of the answer.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::future::join_all;
use uuid::Uuid;

use super::{Claimed, Progress, WebhookStore};
use crate::domain::{
    Attempt, AttemptOutcome, Change, ChangeFeed, ChangesQuery, Error, EventId, Webhook, WebhookId,
    message_id,
};
use crate::vacancy::Clock;

/// Largest answer body read from a receiver; a larger one fails the attempt.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Most changes one webhook keeps read ahead of what it delivered; past it, it reads no further
/// until some are finished.
pub const PENDING_MAX: usize = 1000;
/// Most changes read from the feed at once.
const FEED_PAGE_MAX: usize = 100;
/// Most events whose oldest change is sent to one webhook at the same time.
const CONCURRENT_MAX: usize = 8;
/// Most changes of one event sent one after the other between two saves of the progress.
const BURST_MAX: usize = 32;
/// The retries' delays as multiples of the first: with the default 5 s, retries come after 5 s,
/// 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, about 28 hours after the first attempt in all.
const BACKOFF_FACTORS: [u32; 7] = [1, 60, 360, 1440, 3600, 7200, 7200];
/// How long a change is retried at least, measured from its first attempt, whatever the first
/// delay: the schedule goes on until its delays add up to this.
pub const RETRY_SPAN: Duration = Duration::from_secs(24 * 3600);
/// Longest wait between two attempts.
const RETRY_DELAY_MAX: Duration = Duration::from_secs(10 * 3600);
/// The delivery thread's nice value: below sales, so that when the cores are all busy selling,
/// notifications wait (they are kept, and go once there is room) rather than slow every purchase.
/// On an idle machine it changes nothing.
pub const DELIVERY_NICE: i32 = 10;
/// The delivery thread's name (what `ps -L` and `/proc/*/task/*/comm` show, cut to 15 bytes).
pub const DELIVERY_THREAD: &str = "webhook-deliver";

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Longest one attempt takes, connecting and reading the answer included.
    pub timeout: Duration,
    /// Delay before the first retry; the later ones are multiples of it ([`BACKOFF_FACTORS`]).
    pub retry_first: Duration,
    /// How long a change is retried at least ([`RETRY_SPAN`]; shorter in tests).
    pub retry_span: Duration,
    /// How long a claim on a webhook lasts without being renewed (shared stores).
    pub lease: Duration,
    /// How often new webhooks are noticed, and the longest wait for new changes.
    pub poll: Duration,
}

/// How long to wait after `failed` attempts before the next one; `None` when they are used up,
/// that is once the delays before them add up to [`RETRY_SPAN`]: whatever `first` is, the last
/// attempt comes at least a day after the first.
pub fn retry_delay(first: Duration, failed: u32) -> Option<Duration> {
    retry_delay_within(first, RETRY_SPAN, failed)
}

/// [`retry_delay`] for a given span.
pub fn retry_delay_within(first: Duration, span: Duration, failed: u32) -> Option<Duration> {
    if failed == 0 {
        return None;
    }
    let mut spent = Duration::ZERO;
    for retry in 1..failed {
        spent = spent.saturating_add(planned_delay(first, span, retry));
        if spent >= span {
            return None;
        }
    }
    Some(planned_delay(first, span, failed))
}

/// The wait before retry number `retry` (1 for the first): `first` times its factor, at most
/// [`RETRY_DELAY_MAX`]; past the factors, at least a 24th of the span, so that a tiny `first`
/// still ends in a few dozen attempts.
fn planned_delay(first: Duration, span: Duration, retry: u32) -> Duration {
    let index = usize::try_from(retry)
        .unwrap_or(usize::MAX)
        .clamp(1, BACKOFF_FACTORS.len());
    let delay = first
        .saturating_mul(BACKOFF_FACTORS[index - 1])
        .min(RETRY_DELAY_MAX);
    if index == BACKOFF_FACTORS.len() {
        delay.max((span / 24).max(Duration::from_millis(1)))
    } else {
        delay
    }
}

/// From a change's first attempt to its last one, at least, when every attempt fails: what the
/// feed must keep beyond, so that changes waiting behind it are still there when it is finished.
pub fn retry_schedule(first: Duration, span: Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut failed = 1;
    while let Some(delay) = retry_delay_within(first, span, failed) {
        total = total.saturating_add(delay);
        failed += 1;
    }
    total
}

/// The delivery thread; stopped and joined when dropped.
pub struct Deliverer {
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Deliverer {
    pub fn start(
        store: Arc<dyn WebhookStore>,
        feed: Arc<dyn ChangeFeed>,
        source: Option<&str>,
        config: DeliveryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        // A store without an id of its own (memory) numbers its changes anew at every start.
        let source = source.map_or_else(|| Uuid::now_v7().simple().to_string(), str::to_owned);
        let tls = tls_config()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(DELIVERY_THREAD.into())
            .spawn(move || {
                yield_to_sales();
                let system = actix_rt::System::new();
                system.block_on(supervise(store, feed, source, config, clock, tls, stopped));
            })
            .map_err(|e| Error::Internal(format!("cannot start webhook delivery: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Puts the calling thread at [`DELIVERY_NICE`]. Linux keeps a nice value per thread, so this
/// lowers only the delivery thread, not the HTTP workers or the writer. Failing (a sandbox that
/// forbids it) is said and changes nothing else.
fn yield_to_sales() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, DELIVERY_NICE)
        };
        if result != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the webhook delivery thread's priority; it competes with sales"
            );
        }
    }
}

/// TLS for https receivers: rustls with the ring provider and the Mozilla roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("cannot set up TLS for webhooks: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

struct Shared {
    store: Arc<dyn WebhookStore>,
    feed: Arc<dyn ChangeFeed>,
    config: DeliveryConfig,
    clock: Arc<dyn Clock>,
    tls: Arc<rustls::ClientConfig>,
    owner: Uuid,
    /// What names the feed's numbering in `webhook-id`s ([`message_id`]).
    source: String,
    /// For each webhook this deliverer works on, the time (ms since the epoch) until which its
    /// claim surely holds: the last successful claim or save (its start) plus the lease, less
    /// [`lease_margin_ms`]. No attempt is started that could still run past it: after it,
    /// another replica may have claimed the webhook and delivered from the stored progress.
    held_until_ms: RefCell<HashMap<WebhookId, i64>>,
}

impl Shared {
    fn held_until_ms(&self, id: WebhookId) -> i64 {
        self.held_until_ms
            .borrow()
            .get(&id)
            .copied()
            .unwrap_or(i64::MIN)
    }

    /// Notes that `id`'s claim was renewed by a claim or save that started at `started_ms`.
    fn renewed(&self, id: WebhookId, started_ms: i64) {
        let until = started_ms
            .saturating_add(duration_ms(self.config.lease))
            .saturating_sub(lease_margin_ms(self.config.lease));
        let mut held = self.held_until_ms.borrow_mut();
        let entry = held.entry(id).or_insert(i64::MIN);
        *entry = (*entry).max(until);
    }

    /// Whether an attempt started now surely ends before `id`'s claim may have run out.
    fn may_attempt(&self, id: WebhookId) -> bool {
        self.clock
            .now_ms()
            .saturating_add(duration_ms(self.config.timeout))
            <= self.held_until_ms(id)
    }
}

/// What a deliverer leaves of its lease for clocks that disagree between replicas and the
/// database, and for the time a save takes: a tenth of it.
fn lease_margin_ms(lease: Duration) -> i64 {
    duration_ms(lease) / 10
}

async fn supervise(
    store: Arc<dyn WebhookStore>,
    feed: Arc<dyn ChangeFeed>,
    source: String,
    config: DeliveryConfig,
    clock: Arc<dyn Clock>,
    tls: Arc<rustls::ClientConfig>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let shared = Rc::new(Shared {
        store,
        feed,
        config,
        clock,
        tls,
        owner: Uuid::now_v7(),
        source,
        held_until_ms: RefCell::new(HashMap::new()),
    });
    let mut running: HashMap<WebhookId, actix_rt::task::JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, task| !task.is_finished());
        let now_ms = shared.clock.now_ms();
        let lease_ms = duration_ms(shared.config.lease);
        match shared.store.claim(shared.owner, now_ms, lease_ms).await {
            Ok(claimed) => {
                for claimed in &claimed {
                    shared.renewed(claimed.webhook.id, now_ms);
                }
                // A webhook no longer claimed was deleted (or, in a shared store, taken over by
                // another replica after this one lost its lease): its task stops now.
                let ids: HashSet<WebhookId> = claimed.iter().map(|c| c.webhook.id).collect();
                running.retain(|id, task| {
                    let keep = ids.contains(id);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                shared
                    .held_until_ms
                    .borrow_mut()
                    .retain(|id, _| ids.contains(id));
                for claimed in claimed {
                    let id = claimed.webhook.id;
                    if running.contains_key(&id) {
                        continue;
                    }
                    let task = actix_rt::spawn(deliver(Rc::clone(&shared), claimed));
                    running.insert(id, task);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot claim the webhooks to deliver");
                // A task whose claim may have run out stops: another replica may deliver its
                // webhook now. It starts again, from the stored progress, once a claim succeeds.
                let now_ms = shared.clock.now_ms();
                running.retain(|id, task| {
                    let keep = shared.held_until_ms(*id) > now_ms;
                    if !keep {
                        task.abort();
                    }
                    keep
                });
            }
        }
        tokio::select! {
            _ = stopped.changed() => break,
            () = actix_rt::time::sleep(shared.config.poll) => {}
        }
    }
    for (_, task) in running.drain() {
        task.abort();
    }
    if let Err(error) = shared.store.release(shared.owner).await {
        tracing::warn!(%error, "cannot give up the webhooks this process delivered");
    }
}

/// One webhook's HTTP client: its own connections, as many as it sends to at once, so that slow
/// receivers hold only their own webhook's connections and no attempt waits for a connection
/// (a wait that would be charged as a failed attempt).
fn client(shared: &Shared) -> awc::Client {
    let connector = awc::Connector::new()
        .rustls_0_23(Arc::clone(&shared.tls))
        .timeout(shared.config.timeout)
        .limit(CONCURRENT_MAX);
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .timeout(shared.config.timeout)
        .finish()
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Delivers one webhook's changes for as long as it is this deliverer's.
async fn deliver(shared: Rc<Shared>, claimed: Claimed) {
    let Claimed {
        webhook,
        mut progress,
    } = claimed;
    let signer = match standardwebhooks::Webhook::new(webhook.secret.expose()) {
        Ok(signer) => signer,
        Err(error) => {
            // Said once: the task stays, idle, until the webhook is deleted or no longer this
            // deliverer's (a task that ended would be started again at every poll).
            tracing::error!(webhook = %webhook.id, %error, "a webhook's secret cannot sign; nothing is delivered to it");
            return std::future::pending().await;
        }
    };
    let client = client(&shared);
    let lease_ms = duration_ms(shared.config.lease);
    let poll_ms = duration_ms(shared.config.poll).max(1);
    let mut saved_at_ms = i64::MIN;
    loop {
        let now_ms = shared.clock.now_ms();
        let ready = ready_runs(&progress, now_ms);
        let room = PENDING_MAX.saturating_sub(progress.pending.len());
        let mut changed = false;
        if room > 0 {
            // Wait for new changes only while nothing is due; at most until the next retry.
            let wait_ms = if ready.is_empty() {
                next_due_ms(&progress)
                    .map_or(poll_ms, |due| due.saturating_sub(now_ms).clamp(0, poll_ms))
            } else {
                0
            };
            let query = ChangesQuery {
                after: progress.cursor,
                limit: room.min(FEED_PAGE_MAX),
                wait: Duration::from_millis(wait_ms as u64),
            };
            match shared.feed.changes(query).await {
                Ok(page) => {
                    let now_ms = shared.clock.now_ms();
                    for change in page.changes {
                        if change.seq > progress.cursor && webhook.types.contains(change.kind) {
                            progress.add(change, now_ms);
                        }
                    }
                    changed |= page.next_after != progress.cursor;
                    progress.cursor = progress.cursor.max(page.next_after);
                }
                // Changes past the retention (`changes_retention_hours`, at least a day) were
                // purged before this webhook read them: it goes on from the oldest one kept.
                Err(Error::CursorExpired { oldest, .. }) => {
                    tracing::warn!(
                        webhook = %webhook.id,
                        after = progress.cursor,
                        oldest,
                        "changes a webhook had not read were purged; it goes on from the oldest kept"
                    );
                    progress.cursor = oldest.saturating_sub(1).max(progress.cursor);
                    changed = true;
                }
                Err(error) => {
                    tracing::warn!(webhook = %webhook.id, %error, "cannot read the changes feed");
                    actix_rt::time::sleep(shared.config.poll).await;
                }
            }
        } else if ready.is_empty() {
            let wait_ms = next_due_ms(&progress)
                .map_or(poll_ms, |due| due.saturating_sub(now_ms).clamp(1, poll_ms));
            actix_rt::time::sleep(Duration::from_millis(wait_ms as u64)).await;
        }

        // Each event's due changes one after the other (the next only once the one before is
        // delivered), several events at once; then one save for all of them.
        let now_ms = shared.clock.now_ms();
        let runs = ready_runs(&progress, now_ms);
        let (pending, shared_ref, webhook_ref, signer_ref, client_ref) =
            (&progress.pending, &*shared, &webhook, &signer, &client);
        let outcomes: Vec<(usize, AttemptOutcome)> = join_all(runs.iter().map(|run| async move {
            let mut outcomes = Vec::with_capacity(run.len());
            for &index in run {
                if !shared_ref.may_attempt(webhook_ref.id) {
                    break;
                }
                let change = &pending[index].change;
                let outcome = send(shared_ref, client_ref, webhook_ref, signer_ref, change).await;
                let delivered = outcome.delivered();
                outcomes.push((index, outcome));
                if !delivered {
                    break;
                }
            }
            outcomes
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
        let mut attempts = Vec::with_capacity(outcomes.len());
        let mut finished = HashSet::new();
        let done_ms = shared.clock.now_ms();
        for (index, outcome) in outcomes {
            let pending = &mut progress.pending[index];
            pending.attempts += 1;
            let delivered = outcome.delivered();
            let delay = (!delivered)
                .then(|| {
                    retry_delay_within(
                        shared.config.retry_first,
                        shared.config.retry_span,
                        pending.attempts,
                    )
                })
                .flatten();
            let next_retry_at_ms = delay.map(|delay| done_ms.saturating_add(duration_ms(delay)));
            let failed = !delivered && delay.is_none();
            if let AttemptOutcome::Error(error) = &outcome {
                tracing::debug!(webhook = %webhook.id, seq = pending.change.seq, %error, "webhook attempt failed");
            }
            if failed {
                tracing::warn!(webhook = %webhook.id, seq = pending.change.seq, "a change could not be delivered to a webhook and is given up");
            }
            attempts.push(Attempt {
                seq: pending.change.seq,
                kind: pending.change.kind,
                message_id: message_id(&shared.source, &pending.change),
                attempt: pending.attempts,
                at_ms: done_ms,
                outcome,
                next_retry_at_ms,
                failed,
            });
            match next_retry_at_ms {
                Some(at_ms) => pending.next_at_ms = at_ms,
                None => {
                    finished.insert(index);
                }
            }
        }
        if !finished.is_empty() {
            let mut index = 0;
            progress.pending.retain(|_| {
                let keep = !finished.contains(&index);
                index += 1;
                keep
            });
        }
        changed |= !attempts.is_empty();
        let now_ms = shared.clock.now_ms();
        let lease_short = !shared.may_attempt(webhook.id);
        if changed || lease_short || now_ms.saturating_sub(saved_at_ms) >= lease_ms / 3 {
            match shared
                .store
                .save(
                    webhook.id,
                    shared.owner,
                    &progress,
                    &attempts,
                    now_ms,
                    lease_ms,
                )
                .await
            {
                Ok(true) => {
                    saved_at_ms = now_ms;
                    shared.renewed(webhook.id, now_ms);
                }
                // Deleted, or claimed by another replica after this one lost its lease.
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(webhook = %webhook.id, %error, "cannot save a webhook's progress");
                    // Past its claim, what this task remembers may be stale: another replica may
                    // have delivered from the stored progress. It stops; it starts again from the
                    // stored progress once a claim succeeds.
                    if shared.held_until_ms(webhook.id) <= shared.clock.now_ms() {
                        tracing::warn!(webhook = %webhook.id, "a webhook's claim may have run out; its delivery stops until it is claimed again");
                        return;
                    }
                    actix_rt::time::sleep(shared.config.poll).await;
                }
            }
        }
    }
}

/// For each event whose oldest pending change is due (at most [`CONCURRENT_MAX`] events), the
/// indexes of its due changes in feed order, from that oldest one on: at most [`BURST_MAX`], and
/// none past one that is not due.
fn ready_runs(progress: &Progress, now_ms: i64) -> Vec<Vec<usize>> {
    let mut runs: Vec<(&EventId, Vec<usize>, bool)> = Vec::new();
    for (index, pending) in progress.pending.iter().enumerate() {
        let due = pending.next_at_ms <= now_ms;
        match runs
            .iter_mut()
            .find(|(event, _, _)| **event == pending.change.event)
        {
            Some((_, run, open)) => {
                if *open && due && run.len() < BURST_MAX {
                    run.push(index);
                } else {
                    *open = false;
                }
            }
            None => {
                if runs.iter().filter(|(_, run, _)| !run.is_empty()).count() == CONCURRENT_MAX {
                    // Enough events to send to; later events wait, but their heads still stop
                    // nothing of the events already chosen.
                    continue;
                }
                let run = if due { vec![index] } else { Vec::new() };
                runs.push((&pending.change.event, run, due));
            }
        }
    }
    runs.into_iter()
        .map(|(_, run, _)| run)
        .filter(|run| !run.is_empty())
        .collect()
}

/// When the next head of an event is due, if any change is pending.
fn next_due_ms(progress: &Progress) -> Option<i64> {
    let mut seen = HashSet::new();
    progress
        .pending
        .iter()
        .filter(|pending| seen.insert(&pending.change.event))
        .map(|pending| pending.next_at_ms)
        .min()
}

/// The body of a delivery: `{"type", "timestamp", "data"}`, `data` as the change stored it.
pub fn payload(change: &Change) -> String {
    format!(
        "{{\"type\":\"{}\",\"timestamp\":\"{}\",\"data\":{}}}",
        change.kind.as_str(),
        crate::wire::timestamp(change.at_ms),
        change.data
    )
}

/// One attempt: post, signed; read at most [`ANSWER_BYTES_MAX`] of the answer, all within the
/// timeout.
async fn send(
    shared: &Shared,
    client: &awc::Client,
    webhook: &Webhook,
    signer: &standardwebhooks::Webhook,
    change: &Change,
) -> AttemptOutcome {
    let body = payload(change);
    let id = message_id(&shared.source, change);
    let timestamp = shared.clock.now_ms().div_euclid(1000);
    let signature = match signer.sign(&id, timestamp, body.as_bytes()) {
        Ok(signature) => signature,
        Err(error) => return AttemptOutcome::Error(format!("cannot sign: {error}")),
    };
    let timeout = shared.config.timeout;
    let attempt = async {
        let mut answer = client
            .post(webhook.url.as_str())
            .insert_header(("content-type", "application/json"))
            .insert_header(("webhook-id", id.as_str()))
            .insert_header(("webhook-timestamp", timestamp.to_string()))
            .insert_header(("webhook-signature", signature))
            .timeout(timeout)
            .send_body(body)
            .await
            .map_err(|e| match e {
                awc::error::SendRequestError::Timeout => timed_out(timeout),
                e => format!("no answer: {e}"),
            })?;
        let status = answer.status().as_u16();
        answer.body().limit(ANSWER_BYTES_MAX).await.map_err(|e| {
            format!("answer {status} unreadable or over {ANSWER_BYTES_MAX} bytes: {e}")
        })?;
        Ok::<u16, String>(status)
    };
    match actix_rt::time::timeout(timeout, attempt).await {
        Ok(Ok(status)) => AttemptOutcome::Status(status),
        Ok(Err(error)) => AttemptOutcome::Error(error),
        Err(_) => AttemptOutcome::Error(timed_out(timeout)),
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("no complete answer within {} ms", timeout.as_millis())
}
