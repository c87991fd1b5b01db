//! Stopping tasks this process is running when they are stopped elsewhere: a client
//! cancelled one (on any API replica), or it was failed at its deadline. The stop is
//! already committed (see `orchestrator_store::lifecycle::stop`); what is left is to
//! drop the task's calls here, which closes their connections.
//!
//! [`RunningTasks`] is the processor's register of the tasks it runs; [`follow`] hears
//! the stops through the process's [`Listener`] and trips the register. After the
//! listener (re)connects, when stops may have been missed, it reads which registered
//! tasks are final and trips those.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use orchestrator_store::notify::{self, Listener, Notice};
use orchestrator_store::{DbPool, tasks};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The tasks this process runs, each with the token that stops its run. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RunningTasks {
    inner: Arc<Mutex<HashMap<Uuid, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    stop: CancellationToken,
    /// Runs of the task in this process (a record consumed twice can run it twice).
    runs: usize,
}

/// One run's registration; dropping it ends it.
#[derive(Debug)]
pub struct Registration {
    tasks: RunningTasks,
    task_id: Uuid,
    stop: CancellationToken,
}

impl Registration {
    /// Completes when the task is stopped from elsewhere.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.tasks.lock();
        if let Some(entry) = inner.get_mut(&self.task_id) {
            entry.runs -= 1;
            if entry.runs == 0 {
                inner.remove(&self.task_id);
            }
        }
    }
}

impl RunningTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a run of `task_id`, before it starts, so that a stop committed after
    /// the run read the task is never missed.
    pub fn register(&self, task_id: Uuid) -> Registration {
        let mut inner = self.lock();
        let entry = inner.entry(task_id).or_insert_with(|| Entry {
            stop: CancellationToken::new(),
            runs: 0,
        });
        // A run stopped earlier may still be winding down while the task, re-driven,
        // runs again: the new run must not inherit the old stop.
        if entry.stop.is_cancelled() {
            entry.stop = CancellationToken::new();
        }
        entry.runs += 1;
        Registration {
            tasks: self.clone(),
            task_id,
            stop: entry.stop.clone(),
        }
    }

    /// Stops the runs of these tasks here; ids not running here are ignored. Returns
    /// how many runs were stopped.
    pub fn stop(&self, task_ids: &[Uuid]) -> usize {
        let inner = self.lock();
        task_ids
            .iter()
            .filter_map(|id| inner.get(id))
            .filter(|entry| !entry.stop.is_cancelled())
            .map(|entry| {
                entry.stop.cancel();
                entry.runs
            })
            .sum()
    }

    /// The tasks running here now.
    pub fn ids(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }
}

/// Stops the registered runs of tasks the listener says were stopped, until `stop` is
/// cancelled.
pub async fn follow(
    listener: &Listener,
    pool: DbPool,
    running: RunningTasks,
    stop: CancellationToken,
) {
    let mut notices = listener.subscribe();
    while let Some(notice) = notify::next_notice(&mut notices, &stop).await {
        match notice {
            Notice::Tasks { channel, task_ids } if &*channel == notify::TASKS_STOPPED => {
                let stopped = running.stop(&task_ids);
                if stopped > 0 {
                    tracing::info!(
                        runs = stopped,
                        "Stopping tasks cancelled or past their deadline."
                    );
                }
            }
            Notice::Tasks { .. } => {}
            Notice::Resync => resync(&pool, &running).await,
        }
    }
}

/// Stops the registered runs whose tasks are final already.
async fn resync(pool: &DbPool, running: &RunningTasks) {
    let ids = running.ids();
    if ids.is_empty() {
        return;
    }
    let result = async {
        let mut conn = pool.get().await?;
        tasks::final_among(&mut conn, &ids).await
    }
    .await;
    match result {
        Ok(finished) => {
            running.stop(&finished);
        }
        Err(error) => tracing::warn!(
            error = %orchestrator_stdx::error_chain(&error),
            "Could not check whether running tasks were stopped; the next resync will."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_trips_every_run_of_the_task_and_only_its() {
        let running = RunningTasks::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = running.register(a);
        let second = running.register(a);
        let other = running.register(b);
        assert_eq!(running.stop(&[a, Uuid::new_v4()]), 2);
        assert!(first.stop.is_cancelled() && second.stop.is_cancelled());
        assert!(!other.stop.is_cancelled());
        assert_eq!(running.stop(&[a]), 0, "stopped once");
        drop((first, second));
        assert_eq!(running.ids(), vec![b]);
        drop(other);
        assert!(running.ids().is_empty());
    }

    #[test]
    fn a_new_run_after_a_stop_starts_unstopped() {
        let running = RunningTasks::default();
        let task = Uuid::new_v4();
        let old = running.register(task);
        running.stop(&[task]);
        let new = running.register(task);
        assert!(old.stop.is_cancelled());
        assert!(!new.stop.is_cancelled());
    }
}
