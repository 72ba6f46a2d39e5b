//! The sender thread: priority queues, retries with backoff, the memory budget.
//!
//! Requests wait in four FIFO queues, drained strictly by priority: metadata (process,
//! streams), logs, metrics, spans. One request is in flight at a time. A failure worth
//! retrying puts the request back at the head of its queue and waits: exponential backoff
//! from 100 ms to `max_backoff`, with jitter, and never less than the server's
//! `Retry-After`. There is no limit on attempts: what bounds a long outage is the memory
//! budget. When queued bytes (chunks waiting for the collector plus requests waiting here)
//! exceed it, the oldest span blocks are dropped first, then metrics, then logs; over three
//! quarters of it, span blocks are dropped. Metadata is never dropped. Every drop is counted.

use super::stats::StatsInner;
use super::transport::{Route, SendOutcome, Transport};
use crate::buffer::Shared;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Priorities (queue indexes).
pub(crate) const METADATA: usize = 0;
pub(crate) const SPANS: usize = 3;

/// One request to send.
pub(crate) struct Request {
    pub route: Route,
    pub priority: usize,
    pub body: Vec<u8>,
    /// Events in a block (0 for metadata).
    pub events: u64,
    seq: u64,
}

impl Request {
    pub fn new(route: Route, priority: usize, body: Vec<u8>, events: u64) -> Self {
        Self {
            route,
            priority: priority.min(SPANS),
            body,
            events,
            seq: 0,
        }
    }
}

struct Queues {
    q: [VecDeque<Request>; 4],
    next_seq: u64,
    in_flight: Option<u64>,
    /// Set at shutdown: give up on what is left after this instant.
    deadline: Option<Instant>,
}

impl Queues {
    fn min_pending(&self) -> u64 {
        self.q
            .iter()
            .filter_map(|q| q.front().map(|r| r.seq))
            .chain(self.in_flight)
            .min()
            .unwrap_or(u64::MAX)
    }

    fn is_empty(&self) -> bool {
        self.q.iter().all(VecDeque::is_empty)
    }
}

pub(crate) struct Sender {
    queues: Mutex<Queues>,
    cv: Condvar,
    /// Lowest sequence number not finished (sent or dropped).
    min_pending: AtomicU64,
    /// Last sequence number assigned.
    last_seq: AtomicU64,
    done: AtomicBool,
    stats: Arc<StatsInner>,
    shared: &'static Shared,
    max_backoff: Duration,
}

impl Sender {
    pub fn new(stats: Arc<StatsInner>, shared: &'static Shared, max_backoff: Duration) -> Self {
        Self {
            queues: Mutex::new(Queues {
                q: Default::default(),
                next_seq: 1,
                in_flight: None,
                deadline: None,
            }),
            cv: Condvar::new(),
            min_pending: AtomicU64::new(u64::MAX),
            last_seq: AtomicU64::new(0),
            done: AtomicBool::new(false),
            stats,
            shared,
            max_backoff,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues requests (in order), each within the budget.
    pub fn push(&self, requests: Vec<Request>) {
        if requests.is_empty() {
            return;
        }
        let mut q = self.lock();
        for mut r in requests {
            r.seq = q.next_seq;
            q.next_seq += 1;
            if self.admit(&mut q, &r) {
                let p = r.priority;
                q.q[p].push_back(r);
            } else {
                self.stats.dropped_block(r.priority, r.events);
            }
        }
        self.last_seq.store(q.next_seq - 1, Ordering::Release);
        self.min_pending.store(q.min_pending(), Ordering::Release);
        drop(q);
        self.cv.notify_all();
    }

    /// Counts the bytes of `r` as queued, after evicting what the budget says must go first;
    /// false when `r` itself does not fit and must be dropped. Room is made before the bytes
    /// are counted, so the total never goes over the limit, not even for a moment.
    fn admit(&self, q: &mut Queues, r: &Request) -> bool {
        let n = r.body.len();
        let shared = self.shared;
        if r.priority == METADATA {
            shared.queued_bytes.fetch_add(n, Ordering::Relaxed);
            return true;
        }
        // Over the soft limit, span blocks go, whatever arrives.
        while shared.queued_bytes.load(Ordering::Relaxed) + n > shared.soft_limit
            && self.evict_one(q, SPANS)
        {}
        let limit = if r.priority == SPANS {
            shared.soft_limit
        } else {
            shared.hard_limit
        };
        // Over the hard limit, blocks no more important than `r` go, least important and
        // oldest first; then `r` itself.
        loop {
            if shared.reserve(n, limit).is_some() {
                return true;
            }
            if !self.evict_one(q, r.priority) {
                return false;
            }
        }
    }

    /// Drops the oldest request of the least important non-empty queue from `lowest` to
    /// spans; false when they are all empty.
    fn evict_one(&self, q: &mut Queues, lowest: usize) -> bool {
        for priority in (lowest.max(METADATA + 1)..=SPANS).rev() {
            if let Some(r) = q.q[priority].pop_front() {
                self.finish(&r);
                self.stats.dropped_block(priority, r.events);
                return true;
            }
        }
        false
    }

    /// Releases the bytes of a request that left the queues.
    fn finish(&self, r: &Request) {
        self.shared
            .queued_bytes
            .fetch_sub(r.body.len(), Ordering::Relaxed);
    }

    /// The last sequence number assigned so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Whether every request up to `seq` is finished.
    pub fn finished_up_to(&self, seq: u64) -> bool {
        self.min_pending.load(Ordering::Acquire) > seq || self.done.load(Ordering::Acquire)
    }

    /// Asks the thread to stop once the queues are empty, or at `deadline`.
    pub fn shutdown(&self, deadline: Instant) {
        self.lock().deadline = Some(deadline);
        self.cv.notify_all();
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The thread's loop.
    pub fn run(&self, mut transport: Box<dyn Transport>) {
        let mut attempt: u32 = 0;
        let mut jitter = Jitter::new();
        loop {
            let mut q = self.lock();
            let request = loop {
                if let Some(deadline) = q.deadline
                    && (q.is_empty() || Instant::now() >= deadline)
                {
                    self.abandon(&mut q);
                    self.done.store(true, Ordering::Release);
                    return;
                }
                if let Some(p) = q.q.iter().position(|x| !x.is_empty())
                    && let Some(r) = q.q[p].pop_front()
                {
                    q.in_flight = Some(r.seq);
                    break r;
                }
                q = self
                    .cv
                    .wait_timeout(q, Duration::from_millis(500))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            };
            drop(q);
            let outcome = transport.send(request.route, &request.body);
            let mut q = self.lock();
            q.in_flight = None;
            let wait = match outcome {
                SendOutcome::Delivered => {
                    attempt = 0;
                    self.finish(&request);
                    self.stats.sent(&request);
                    None
                }
                SendOutcome::Rejected(_) => {
                    attempt = 0;
                    self.finish(&request);
                    self.stats.rejected(request.priority, request.events);
                    None
                }
                SendOutcome::Retry { after, .. } => {
                    self.stats.retry();
                    let backoff = Duration::from_millis(100)
                        .saturating_mul(1 << attempt.min(16))
                        .min(self.max_backoff);
                    attempt = attempt.saturating_add(1);
                    let backoff = jitter.apply(backoff);
                    let p = request.priority;
                    q.q[p].push_front(request);
                    Some(after.map_or(backoff, |a| a.max(backoff)))
                }
            };
            self.min_pending.store(q.min_pending(), Ordering::Release);
            if let Some(wait) = wait {
                // Sleep, but wake for a shutdown whose deadline comes first.
                let until = Instant::now() + wait;
                loop {
                    let now = Instant::now();
                    let limit = q.deadline.map_or(until, |d| d.min(until));
                    if now >= limit {
                        break;
                    }
                    q = self
                        .cv
                        .wait_timeout(q, limit - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    fn abandon(&self, q: &mut Queues) {
        for priority in 0..q.q.len() {
            while let Some(r) = q.q[priority].pop_front() {
                self.finish(&r);
                self.stats.dropped_block(priority, r.events);
            }
        }
        self.min_pending.store(u64::MAX, Ordering::Release);
    }
}

/// ±20 % of jitter from a xorshift seeded by the clock (no need for real randomness).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.subsec_nanos().into())
            | 1;
        Self(seed)
    }

    fn apply(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let factor = 0.8 + (self.0 % 1000) as f64 / 2500.0;
        d.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::transport::SentRequests;
    use std::collections::VecDeque;

    /// Answers from a script, records what it was sent.
    struct Scripted {
        answers: VecDeque<SendOutcome>,
        sent: Arc<Mutex<SentRequests>>,
    }

    impl Transport for Scripted {
        fn send(&mut self, route: Route, body: &[u8]) -> SendOutcome {
            self.sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((route, body.to_vec()));
            self.answers.pop_front().unwrap_or(SendOutcome::Delivered)
        }
    }

    fn sender(budget: usize) -> (Arc<Sender>, Arc<StatsInner>) {
        let shared: &'static Shared = Box::leak(Box::new(Shared::new(4096, budget)));
        let stats = Arc::new(StatsInner::default());
        let sender = Arc::new(Sender::new(
            Arc::clone(&stats),
            shared,
            Duration::from_millis(20),
        ));
        (sender, stats)
    }

    fn req(priority: usize, tag: u8, len: usize, events: u64) -> Request {
        let route = if priority == METADATA {
            Route::Stream
        } else {
            Route::Block
        };
        Request::new(route, priority, vec![tag; len], events)
    }

    fn run(
        sender: &Arc<Sender>,
        answers: Vec<SendOutcome>,
    ) -> (Arc<Mutex<SentRequests>>, std::thread::JoinHandle<()>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let transport = Scripted {
            answers: answers.into(),
            sent: Arc::clone(&sent),
        };
        let s = Arc::clone(sender);
        let handle = std::thread::spawn(move || s.run(Box::new(transport)));
        (sent, handle)
    }

    fn tags(sent: &Mutex<SentRequests>) -> Vec<u8> {
        sent.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, b)| b[0])
            .collect()
    }

    #[test]
    fn priorities_retries_and_rejections() {
        let (sender, stats) = sender(1 << 20);
        // Queued before the thread starts: drained by priority, FIFO within one.
        sender.push(vec![
            req(SPANS, 4, 10, 5),
            req(1, 2, 10, 3),
            req(METADATA, 0, 10, 0),
            req(2, 3, 10, 2),
            req(1, 9, 10, 7),
        ]);
        let last = sender.last_seq();
        let started = Instant::now();
        let (sent, handle) = run(
            &sender,
            vec![
                SendOutcome::Retry {
                    after: Some(Duration::from_millis(150)),
                    reason: "busy".into(),
                },
                SendOutcome::Delivered,
                SendOutcome::Delivered,
                SendOutcome::Rejected("HTTP 400".into()),
            ],
        );
        while !sender.finished_up_to(last) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The metadata request was retried after the server's delay, then everything went
        // in priority order; the rejected logs block is counted as dropped.
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(tags(&sent), [0, 0, 2, 9, 3, 4]);
        let snap = stats.snapshot(0);
        assert_eq!(snap.retries, 1);
        assert_eq!(snap.dropped, [7, 0, 0]);
        assert_eq!(snap.requests_sent, 4);
        sender.shutdown(Instant::now());
        handle.join().expect("sender thread");
        assert!(sender.is_done());
    }

    #[test]
    fn budget_evicts_spans_then_metrics_never_metadata() {
        let (sender, stats) = sender(1000);
        // Soft limit 750, hard limit 1000.
        sender.push(vec![
            req(METADATA, 0, 300, 0),
            req(SPANS, 4, 300, 10),
            req(2, 3, 300, 20),
            req(1, 2, 300, 30),
            req(SPANS, 5, 100, 40),
            req(2, 6, 200, 60),
        ]);
        // 1500 bytes: the span blocks go first (over the soft limit), then the oldest
        // metrics block (over the hard limit); metadata and logs stay.
        let snap = stats.snapshot(0);
        assert_eq!(snap.dropped, [0, 20, 50]);
        let last = sender.last_seq();
        let (sent, handle) = run(&sender, vec![]);
        while !sender.finished_up_to(last) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(tags(&sent), [0, 2, 6]);
        sender.shutdown(Instant::now());
        handle.join().expect("sender thread");
    }

    #[test]
    fn queued_bytes_never_pass_the_limit_even_for_a_moment() {
        let (sender, stats) = sender(10_000);
        let shared = sender.shared;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut max = 0;
                while !stop.load(Ordering::Relaxed) {
                    max = max.max(shared.queued_bytes.load(Ordering::Relaxed));
                }
                max
            })
        };
        // Nothing is sent: every push beyond the budget must evict or be dropped.
        for round in 0..2000u64 {
            let batch = (0..8)
                .map(|i| req(1 + (round as usize + i) % 3, 1, 300 + 97 * i, 1))
                .collect();
            sender.push(batch);
        }
        stop.store(true, Ordering::Relaxed);
        let max = watcher.join().expect("watcher thread");
        assert!(max <= 10_000, "queued {max} bytes over a 10000-byte budget");
        let snap = stats.snapshot(0);
        assert!(snap.dropped.iter().sum::<u64>() > 0, "{snap:?}");
        assert!(shared.queued_bytes.load(Ordering::Relaxed) <= 10_000);
    }

    #[test]
    fn shutdown_abandons_what_cannot_be_sent() {
        let (sender, stats) = sender(1 << 20);
        sender.push(vec![req(1, 1, 10, 3), req(SPANS, 2, 10, 4)]);
        let answers = (0..1000)
            .map(|_| SendOutcome::Retry {
                after: None,
                reason: "down".into(),
            })
            .collect();
        let (_sent, handle) = run(&sender, answers);
        std::thread::sleep(Duration::from_millis(50));
        sender.shutdown(Instant::now() + Duration::from_millis(50));
        handle.join().expect("sender thread");
        let snap = stats.snapshot(0);
        assert_eq!(snap.dropped, [3, 0, 4]);
        assert!(snap.retries >= 1);
    }
}
