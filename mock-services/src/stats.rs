//! Exact request counters.
//!
//! Tests count retries per `Idempotency-Key` and check a client's concurrency limit
//! against the peak in-flight count, so every update happens under one mutex: one short
//! critical section when a request arrives and one when it finishes, never across an
//! await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

/// Counters as served by `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Service requests received (including failed and rejected ones) since the last reset.
    pub total: u64,
    /// Requests per service path (`/revenue`); every configured service is listed.
    pub by_path: BTreeMap<String, u64>,
    /// Requests per `Idempotency-Key` header value, over all services.
    pub by_idempotency_key: BTreeMap<String, u64>,
    /// Requests per `X-Request-Id` header value, over all services.
    pub by_request_id: BTreeMap<String, u64>,
    /// Requests per trace id of their W3C `traceparent` header, over all services.
    #[serde(default)]
    pub by_trace_id: BTreeMap<String, u64>,
    /// Service requests being handled right now.
    pub in_flight: u64,
    /// Highest `in_flight` since the last reset.
    pub peak_in_flight: u64,
    /// Highest in-flight count per service path since the last reset.
    pub by_path_peak_in_flight: BTreeMap<String, u64>,
}

impl StatsSnapshot {
    /// Requests carrying this `Idempotency-Key` (0 if none).
    pub fn key_count(&self, key: &str) -> u64 {
        self.by_idempotency_key.get(key).copied().unwrap_or(0)
    }

    /// Requests carrying this `X-Request-Id` (0 if none).
    pub fn request_id_count(&self, request_id: &str) -> u64 {
        self.by_request_id.get(request_id).copied().unwrap_or(0)
    }

    /// Requests whose `traceparent` names this trace id (0 if none).
    pub fn trace_id_count(&self, trace_id: &str) -> u64 {
        self.by_trace_id.get(trace_id).copied().unwrap_or(0)
    }

    /// Requests to this path, e.g. `/revenue` (0 if none).
    pub fn path_count(&self, path: &str) -> u64 {
        self.by_path.get(path).copied().unwrap_or(0)
    }
}

/// The live counters of one server.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Path of each service, indexed like `Inner::services`.
    paths: Box<[String]>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: u64,
    in_flight: u64,
    peak_in_flight: u64,
    services: Box<[ServiceCounters]>,
    by_request_id: HashMap<String, u64>,
    by_trace_id: HashMap<String, u64>,
}

#[derive(Debug, Default)]
struct ServiceCounters {
    requests: u64,
    in_flight: u64,
    peak_in_flight: u64,
    /// Kept per service so `fail_first` counts attempts at one service only; the
    /// snapshot sums them per key.
    by_key: HashMap<String, u64>,
}

/// What identifies a request: its `Idempotency-Key`, `X-Request-Id` and the trace id
/// of its `traceparent`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestTags<'a> {
    pub(crate) key: Option<&'a str>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) trace_id: Option<&'a str>,
}

/// A request being handled; dropping it (answered or cancelled) ends it.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    stats: &'a Stats,
    service: usize,
    /// 1 for the first request with this `Idempotency-Key` at this service, 2 for the
    /// next, ...; `None` without the header.
    pub(crate) number: Option<u64>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut inner = self.stats.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        let service = &mut inner.services[self.service];
        service.in_flight = service.in_flight.saturating_sub(1);
    }
}

impl Stats {
    /// Counters for services with these paths.
    pub(crate) fn new(paths: Box<[String]>) -> Self {
        let services = paths.iter().map(|_| ServiceCounters::default()).collect();
        Self {
            paths,
            inner: Mutex::new(Inner {
                total: 0,
                in_flight: 0,
                peak_in_flight: 0,
                services,
                by_request_id: HashMap::new(),
                by_trace_id: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The counters stay consistent even if a holder panicked: every update is a
        // handful of integer operations that cannot panic half-way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request to service number `service` as it arrives.
    pub(crate) fn begin(&self, service: usize, tags: RequestTags<'_>) -> Attempt<'_> {
        let RequestTags {
            key,
            request_id,
            trace_id,
        } = tags;
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.total += 1;
        for (id, counts) in [
            (request_id, &mut inner.by_request_id),
            (trace_id, &mut inner.by_trace_id),
        ] {
            if let Some(id) = id {
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        inner.in_flight += 1;
        inner.peak_in_flight = inner.peak_in_flight.max(inner.in_flight);
        let counters = &mut inner.services[service];
        counters.requests += 1;
        counters.in_flight += 1;
        counters.peak_in_flight = counters.peak_in_flight.max(counters.in_flight);
        // Look up before inserting so a repeated key costs no allocation.
        let number = key.map(|key| match counters.by_key.get_mut(key) {
            Some(count) => {
                *count += 1;
                *count
            }
            None => {
                counters.by_key.insert(key.to_owned(), 1);
                1
            }
        });
        drop(guard);
        Attempt {
            stats: self,
            service,
            number,
        }
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let inner = self.lock();
        let mut snapshot = StatsSnapshot {
            total: inner.total,
            in_flight: inner.in_flight,
            peak_in_flight: inner.peak_in_flight,
            by_request_id: inner
                .by_request_id
                .iter()
                .map(|(id, count)| (id.clone(), *count))
                .collect(),
            by_trace_id: inner
                .by_trace_id
                .iter()
                .map(|(id, count)| (id.clone(), *count))
                .collect(),
            ..StatsSnapshot::default()
        };
        for (path, counters) in self.paths.iter().zip(inner.services.iter()) {
            snapshot.by_path.insert(path.clone(), counters.requests);
            snapshot
                .by_path_peak_in_flight
                .insert(path.clone(), counters.peak_in_flight);
            for (key, count) in &counters.by_key {
                *snapshot.by_idempotency_key.entry(key.clone()).or_default() += count;
            }
        }
        snapshot
    }

    /// Zeroes the counters, which also restarts `fail_first` for every key.
    ///
    /// Requests still in flight stay counted in `in_flight` (they will finish later), and
    /// the peaks restart from the current in-flight counts.
    pub(crate) fn reset(&self) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.total = 0;
        inner.peak_in_flight = inner.in_flight;
        inner.by_request_id.clear();
        inner.by_trace_id.clear();
        for counters in inner.services.iter_mut() {
            counters.requests = 0;
            counters.peak_in_flight = counters.in_flight;
            counters.by_key.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &str) -> RequestTags<'_> {
        RequestTags {
            key: Some(key),
            ..RequestTags::default()
        }
    }

    fn stats() -> Stats {
        Stats::new(vec!["/a".to_owned(), "/b".to_owned()].into_boxed_slice())
    }

    #[test]
    fn counts_attempts_per_key_and_service() {
        let stats = stats();
        assert_eq!(stats.begin(0, keyed("k")).number, Some(1));
        assert_eq!(stats.begin(0, keyed("k")).number, Some(2));
        // Another service has its own attempt numbers for the same key.
        assert_eq!(stats.begin(1, keyed("k")).number, Some(1));
        assert_eq!(stats.begin(1, RequestTags::default()).number, None);

        let snapshot = stats.snapshot();
        assert_eq!(snapshot.total, 4);
        assert_eq!(snapshot.path_count("/a"), 2);
        assert_eq!(snapshot.path_count("/b"), 2);
        assert_eq!(snapshot.key_count("k"), 3);
        assert_eq!(snapshot.in_flight, 0);
        assert_eq!(snapshot.peak_in_flight, 1);
    }

    #[test]
    fn counts_requests_per_request_id_and_trace_id() {
        let stats = stats();
        let tagged = |key, request_id, trace_id| RequestTags {
            key,
            request_id,
            trace_id,
        };
        drop(stats.begin(1, tagged(None, Some("req-1"), Some("t-1"))));
        drop(stats.begin(0, tagged(Some("k"), Some("req-1"), Some("t-1"))));
        drop(stats.begin(0, tagged(Some("k"), Some("req-2"), None)));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.request_id_count("req-1"), 2);
        assert_eq!(snapshot.request_id_count("req-2"), 1);
        assert_eq!(snapshot.trace_id_count("t-1"), 2);
        stats.reset();
        assert!(stats.snapshot().by_request_id.is_empty());
        assert!(stats.snapshot().by_trace_id.is_empty());
    }

    #[test]
    fn tracks_in_flight_and_peaks() {
        let stats = stats();
        let first = stats.begin(0, RequestTags::default());
        let second = stats.begin(0, RequestTags::default());
        let third = stats.begin(1, RequestTags::default());
        assert_eq!(stats.snapshot().in_flight, 3);
        drop((first, second, third));

        let snapshot = stats.snapshot();
        assert_eq!(snapshot.in_flight, 0);
        assert_eq!(snapshot.peak_in_flight, 3);
        assert_eq!(snapshot.by_path_peak_in_flight["/a"], 2);
        assert_eq!(snapshot.by_path_peak_in_flight["/b"], 1);
    }

    #[test]
    fn reset_keeps_requests_in_flight() {
        let stats = stats();
        let running = stats.begin(0, keyed("k"));
        drop(stats.begin(0, RequestTags::default()));
        stats.reset();

        let snapshot = stats.snapshot();
        assert_eq!(snapshot.total, 0);
        assert_eq!(snapshot.path_count("/a"), 0);
        assert!(snapshot.by_idempotency_key.is_empty());
        assert_eq!(snapshot.in_flight, 1);
        assert_eq!(snapshot.peak_in_flight, 1);

        drop(running);
        assert_eq!(stats.snapshot().in_flight, 0);
        assert_eq!(stats.begin(0, keyed("k")).number, Some(1));
    }
}
