//! Counters of the sink, readable at any time ([`crate::stats`]).

use super::sender::{METADATA, Request};
use crate::buffer::KINDS;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the sink's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events the sink read from the threads' buffers.
    pub events: u64,
    /// Events dropped, per kind (logs, metrics, spans): by a thread over the memory budget,
    /// with a block evicted over the budget, refused by the server (4xx), or left unsent at
    /// shutdown.
    pub dropped: [u64; KINDS],
    /// Metadata requests (process, streams) refused or abandoned.
    pub dropped_metadata: u64,
    /// Requests delivered.
    pub requests_sent: u64,
    /// Blocks delivered.
    pub blocks_sent: u64,
    /// Bytes delivered (request bodies).
    pub bytes_sent: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Bytes held now by queued chunks and unsent requests.
    pub queued_bytes: u64,
}

impl Stats {
    /// All dropped events.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct StatsInner {
    pub events: AtomicU64,
    /// Drops counted by the threads (updated by the collector from the thread entries).
    pub thread_dropped: [AtomicU64; KINDS],
    dropped: [AtomicU64; KINDS],
    dropped_metadata: AtomicU64,
    requests_sent: AtomicU64,
    blocks_sent: AtomicU64,
    bytes_sent: AtomicU64,
    retries: AtomicU64,
}

impl StatsInner {
    pub fn sent(&self, r: &Request) {
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent
            .fetch_add(r.body.len() as u64, Ordering::Relaxed);
        if r.priority != METADATA {
            self.blocks_sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rejected(&self, priority: usize, events: u64) {
        self.dropped_block(priority, events);
    }

    pub fn dropped_block(&self, priority: usize, events: u64) {
        if priority == METADATA {
            self.dropped_metadata.fetch_add(1, Ordering::Relaxed);
        } else if let Some(c) = self.dropped.get(priority - 1) {
            c.fetch_add(events, Ordering::Relaxed);
        }
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, queued_bytes: usize) -> Stats {
        let mut dropped = [0; KINDS];
        for (k, d) in dropped.iter_mut().enumerate() {
            *d = self.dropped[k].load(Ordering::Relaxed)
                + self.thread_dropped[k].load(Ordering::Relaxed);
        }
        Stats {
            events: self.events.load(Ordering::Relaxed),
            dropped,
            dropped_metadata: self.dropped_metadata.load(Ordering::Relaxed),
            requests_sent: self.requests_sent.load(Ordering::Relaxed),
            blocks_sent: self.blocks_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            queued_bytes: queued_bytes as u64,
        }
    }
}
