//! Which offset of a partition is safe to commit while records run concurrently.

use std::collections::BTreeSet;

/// Tracks the records of one partition between fetch and the end of their processing.
///
/// Records finish out of order, but the committed offset may only pass a record once it
/// and every record before it are done: the commit point is the first offset still in
/// flight, or the next offset to fetch when nothing is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetTracker {
    next: i64,
    in_flight: BTreeSet<i64>,
}

impl OffsetTracker {
    /// Starts at `committed`, the offset consumption resumes from.
    pub fn new(committed: i64) -> Self {
        Self {
            next: committed,
            in_flight: BTreeSet::new(),
        }
    }

    /// A record was handed to processing.
    pub fn started(&mut self, offset: i64) {
        self.in_flight.insert(offset);
        self.next = self.next.max(offset + 1);
    }

    /// A record is fully processed (or dead-lettered).
    pub fn finished(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
    }

    /// Offsets up to here were skipped without records (compaction, control batches).
    pub fn skipped_to(&mut self, offset: i64) {
        self.next = self.next.max(offset);
    }

    /// Forgets everything and resumes at `offset` (after the log was reset).
    pub fn reset(&mut self, offset: i64) {
        self.in_flight.clear();
        self.next = offset;
    }

    /// The offset to commit: every record before it is done.
    pub fn commit_point(&self) -> i64 {
        self.in_flight.first().copied().unwrap_or(self.next)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_waits_for_the_oldest_record_in_flight() {
        let mut tracker = OffsetTracker::new(10);
        assert_eq!(tracker.commit_point(), 10);
        for offset in 10..15 {
            tracker.started(offset);
        }
        tracker.finished(11);
        tracker.finished(13);
        assert_eq!(tracker.commit_point(), 10, "10 is still running");
        tracker.finished(10);
        assert_eq!(tracker.commit_point(), 12);
        tracker.finished(12);
        tracker.finished(14);
        assert_eq!(tracker.commit_point(), 15);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn gaps_and_resets_move_the_point() {
        let mut tracker = OffsetTracker::new(0);
        tracker.started(0);
        tracker.finished(0);
        tracker.skipped_to(5);
        assert_eq!(tracker.commit_point(), 5);
        tracker.started(7);
        tracker.reset(2);
        assert_eq!(tracker.commit_point(), 2);
    }
}
