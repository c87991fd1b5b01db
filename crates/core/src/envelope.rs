//! The record that carries a task through Kafka, and which partition it goes to.
//!
//! The record only names the task: the task itself (payload, status, results) lives in
//! PostgreSQL, which the worker reads when it processes the record. Keeping the record
//! small keeps produce batches small and means a record can never disagree with the
//! stored task.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The envelope version this build writes. Readers accept exactly the versions they
/// know; anything else goes to the dead-letter topic rather than being guessed at.
pub const ENVELOPE_VERSION: u32 = 1;

/// Content type of the record value, sent as a record header.
pub const ENVELOPE_CONTENT_TYPE: &str = "application/vnd.orchestrator.task+json;version=1";

/// Why a task was (re)published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeKind {
    /// A newly accepted task.
    Submitted,
    /// A task whose earlier publication was not confirmed, sent again by the sweeper.
    Republished,
    /// A failed task re-driven by a client.
    Redriven,
    /// A kind added by a later release: processed like any other, since processing
    /// reads the task's state from the database.
    #[serde(other)]
    Other,
}

/// The value of a task record: `{"version": 1, "task_id": ..., ...}`.
///
/// Fields and kinds may be added within a version (readers ignore what they do not
/// know, so an older worker keeps working during a rolling upgrade); anything a reader
/// could not ignore needs a new version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskEnvelope {
    pub version: u32,
    pub task_id: Uuid,
    pub kind: EnvelopeKind,
    /// The `X-Request-Id` of the API request that accepted the task, so both binaries
    /// log the same id for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub published_at: DateTime<Utc>,
    /// The task's W3C `traceparent`: carried in the record's `traceparent` header (as
    /// W3C's Kafka binding does), not in its value.
    #[serde(skip)]
    pub traceparent: Option<String>,
}

/// A record value that is not a task envelope this build can process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("record has no value")]
    Empty,
    #[error("record value is not a task envelope: {0}")]
    Malformed(String),
    #[error("unsupported envelope version {0} (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u32),
}

impl TaskEnvelope {
    pub fn new(
        task_id: Uuid,
        kind: EnvelopeKind,
        request_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            task_id,
            kind,
            request_id,
            published_at: now,
            traceparent: None,
        }
    }

    /// The same envelope carrying the task's `traceparent`.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: Option<&str>) -> Self {
        self.traceparent = traceparent.map(str::to_owned);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of plain fields to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a record value. The version is checked before the rest, so a record of a
    /// newer release is reported as such rather than as malformed.
    pub fn decode(value: Option<&[u8]>) -> Result<Self, EnvelopeError> {
        let bytes = value
            .filter(|v| !v.is_empty())
            .ok_or(EnvelopeError::Empty)?;
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let VersionOnly { version } =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// The record key: the task id as text, so every record of a task goes to the same
    /// partition, whichever producer writes it.
    pub fn key(&self) -> Vec<u8> {
        task_key(self.task_id)
    }
}

fn task_key(task_id: Uuid) -> Vec<u8> {
    task_id.to_string().into_bytes()
}

/// The partition every record of `task_id` goes to: what the worker that finds records
/// lost from a partition's log uses to tell which unfinished tasks were its own.
pub fn partition_of_task(task_id: Uuid, partitions: u32) -> u32 {
    partition_for_key(&task_key(task_id), partitions)
}

/// The partition of a record key, the way Kafka's default partitioner picks it
/// (`murmur2(key) & 0x7fffffff % partitions`), so that other producers writing task
/// records with the Java client agree with ours.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// MurmurHash2 (32-bit) with Kafka's seed, as in `org.apache.kafka.common.utils.Utils`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes lengths as a Java int; record keys are far below 2^31 bytes.
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2 (as signed Java ints).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key) as i32, expected, "key {key:?}");
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        let key = b"3fa85f64-5717-4562-b3fc-2c963f66afa6";
        let p = partition_for_key(key, 12);
        assert!(p < 12);
        assert_eq!(p, partition_for_key(key, 12));
        assert_eq!(partition_for_key(key, 1), 0);
        assert_eq!(partition_for_key(key, 0), 0);
    }

    #[test]
    fn a_tasks_partition_is_its_records_partition() {
        for _ in 0..64 {
            let task_id = Uuid::new_v4();
            let envelope = TaskEnvelope::new(task_id, EnvelopeKind::Submitted, None, Utc::now());
            assert_eq!(
                partition_of_task(task_id, 7),
                partition_for_key(&envelope.key(), 7)
            );
            assert_eq!(
                envelope.key(),
                task_id.to_string().into_bytes(),
                "the key is the id as text"
            );
        }
    }

    #[test]
    fn envelope_round_trips_and_rejects_what_it_cannot_read() {
        let envelope = TaskEnvelope::new(
            Uuid::new_v4(),
            EnvelopeKind::Submitted,
            Some("req-1".into()),
            Utc::now(),
        );
        let bytes = envelope.encode();
        assert_eq!(TaskEnvelope::decode(Some(&bytes)), Ok(envelope.clone()));
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["version"], 1);
        assert_eq!(value["kind"], "submitted");

        assert_eq!(TaskEnvelope::decode(None), Err(EnvelopeError::Empty));
        assert!(matches!(
            TaskEnvelope::decode(Some(b"not json")),
            Err(EnvelopeError::Malformed(_))
        ));
        assert_eq!(
            TaskEnvelope::decode(Some(br#"{"version": 2, "task_id": "x"}"#)),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            TaskEnvelope::decode(Some(br#"{"version": 1, "task_id": "nope"}"#)),
            Err(EnvelopeError::Malformed(_))
        ));
        // A later release's additions within version 1 are read, not refused.
        let newer = format!(
            r#"{{"version": 1, "task_id": "{}", "kind": "rescheduled", "priority": 3, "published_at": "2026-01-01T00:00:00Z"}}"#,
            envelope.task_id
        );
        let read = TaskEnvelope::decode(Some(newer.as_bytes())).expect("forward compatible");
        assert_eq!(read.kind, EnvelopeKind::Other);
    }
}
