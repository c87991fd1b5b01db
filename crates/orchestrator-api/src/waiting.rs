//! Waiting for tasks to become final (`?wait=SECONDS`), pushed rather than polled and
//! across replicas: the transitions that make a task final send a PostgreSQL
//! notification at commit (`orchestrator_store::notify`), this process's one listening
//! connection hears it, and [`follow`] wakes the requests waiting for that task here.
//!
//! A waiter registers ([`TaskWaits::watch`]) before it first reads the task, so a change
//! committed after that read always wakes it; woken, it reads the task again. When the
//! listener reconnects (notifications may have been lost meanwhile) every waiter is
//! woken to read again. Thousands of waiters cost a map entry each and no connection
//! while they wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_store::notify::{self, Listener, Notice};
use orchestrator_telemetry::metrics::Registry;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The longest `?wait=` a request may ask for.
pub const MAX_WAIT_SECS: u64 = 60;

/// The channels whose notices may make a waited-for task final.
pub const CHANNELS: [&str; 2] = [notify::TASKS_FINISHED, notify::TASKS_STOPPED];

/// The tasks requests wait for in this process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskWaits {
    slots: Arc<Mutex<HashMap<Uuid, Slot>>>,
    /// Bumped when every waiter must read again.
    resyncs: Arc<watch::Sender<u64>>,
    /// Requests waiting now.
    waiting: Gauge,
}

#[derive(Debug)]
struct Slot {
    /// Bumped at each change of the task.
    changes: watch::Sender<u64>,
    watchers: usize,
}

/// One request's wait for one task; dropping it ends the wait.
#[derive(Debug)]
pub struct Watch {
    waits: TaskWaits,
    task_id: Uuid,
    changes: watch::Receiver<u64>,
    resyncs: watch::Receiver<u64>,
}

impl Default for TaskWaits {
    fn default() -> Self {
        Self {
            slots: Arc::default(),
            resyncs: Arc::new(watch::channel(0).0),
            waiting: Gauge::default(),
        }
    }
}

impl TaskWaits {
    /// With the gauge of waiting requests in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let waits = Self::default();
        registry.register(
            "waiting_requests",
            "Requests waiting for a task to become final (?wait=)",
            waits.waiting.clone(),
        );
        waits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts watching `task_id`: changes from now on wake [`Watch::changed`].
    pub fn watch(&self, task_id: Uuid) -> Watch {
        let mut slots = self.lock();
        let slot = slots.entry(task_id).or_insert_with(|| Slot {
            changes: watch::channel(0).0,
            watchers: 0,
        });
        slot.watchers += 1;
        self.waiting.inc();
        Watch {
            waits: self.clone(),
            task_id,
            changes: slot.changes.subscribe(),
            resyncs: self.resyncs.subscribe(),
        }
    }

    /// Wakes the watchers of these tasks.
    pub fn changed(&self, task_ids: &[Uuid]) {
        let slots = self.lock();
        for id in task_ids {
            if let Some(slot) = slots.get(id) {
                slot.changes.send_modify(|n| *n += 1);
            }
        }
    }

    /// Wakes every watcher, to read its task again.
    pub fn resync(&self) {
        self.resyncs.send_modify(|n| *n += 1);
    }

    /// How many tasks are waited for now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Watch {
    /// Completes at the next change of the task (or resync) since the last call, or
    /// since the watch began.
    pub async fn changed(&mut self) {
        tokio::select! {
            result = self.changes.changed() => {
                if result.is_err() {
                    // The slot outlives every watch of it; never reached.
                    std::future::pending::<()>().await;
                }
            }
            _ = self.resyncs.changed() => {}
        }
    }

    /// Waits for the next change, at most `within`; false when the time ran out.
    pub async fn changed_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.changed()).await.is_ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.waits.waiting.dec();
        let mut slots = self.waits.lock();
        if let Some(slot) = slots.get_mut(&self.task_id) {
            slot.watchers -= 1;
            if slot.watchers == 0 {
                slots.remove(&self.task_id);
            }
        }
    }
}

/// Wakes waiters from the listener's notices until `stop` is cancelled.
pub async fn follow(listener: Listener, waits: TaskWaits, stop: CancellationToken) {
    let mut notices = listener.subscribe();
    while let Some(notice) = notify::next_notice(&mut notices, &stop).await {
        match notice {
            Notice::Tasks { task_ids, .. } => waits.changed(&task_ids),
            Notice::Resync => waits.resync(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_after_the_watch_began_wakes_it_and_only_its_task() {
        let waits = TaskWaits::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut watch_a = waits.watch(a);
        let mut watch_b = waits.watch(b);
        waits.changed(&[a]);
        assert!(watch_a.changed_within(Duration::from_millis(100)).await);
        assert!(!watch_b.changed_within(Duration::from_millis(20)).await);
        // Seen once: no second wake without a second change.
        assert!(!watch_a.changed_within(Duration::from_millis(20)).await);
        waits.resync();
        assert!(watch_a.changed_within(Duration::from_millis(100)).await);
        assert!(watch_b.changed_within(Duration::from_millis(100)).await);
        assert_eq!(waits.len(), 2);
        drop((watch_a, watch_b));
        assert!(waits.is_empty());
    }
}
