//! State shared by every worker of one server and by its [`MockServer`](crate::MockServer)
//! handle.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::behaviour::Behaviour;
use crate::stats::Stats;

/// How long a hanging request waits if the server is never stopped: far beyond any
/// sensible client timeout.
const HANG_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// One configured service.
#[derive(Debug)]
pub(crate) struct Service {
    pub name: String,
    /// `/{name}`, kept ready so stats need no formatting per request.
    pub path: String,
}

#[derive(Debug)]
pub(crate) struct AppState {
    services: Box<[Service]>,
    default_behaviour: Behaviour,
    /// One lock per service, indexed like `services`; readers copy the behaviour out and
    /// never hold the lock across an await.
    behaviours: Box<[RwLock<Behaviour>]>,
    pub stats: Stats,
    /// Flips to `true` when the server stops, releasing hanging requests so a graceful
    /// stop need not wait for its timeout.
    shutdown: watch::Sender<bool>,
}

impl AppState {
    pub(crate) fn new(names: &[String], default_behaviour: Behaviour) -> Self {
        let services: Box<[Service]> = names
            .iter()
            .map(|name| Service {
                name: name.clone(),
                path: format!("/{name}"),
            })
            .collect();
        let paths = services
            .iter()
            .map(|service| service.path.clone())
            .collect();
        let behaviours = services
            .iter()
            .map(|_| RwLock::new(default_behaviour.clone()))
            .collect();
        Self {
            services,
            default_behaviour,
            behaviours,
            stats: Stats::new(paths),
            shutdown: watch::Sender::new(false),
        }
    }

    pub(crate) fn services(&self) -> &[Service] {
        &self.services
    }

    pub(crate) fn service_index(&self, name: &str) -> Option<usize> {
        self.services
            .iter()
            .position(|service| service.name == name)
    }

    pub(crate) fn default_behaviour(&self) -> &Behaviour {
        &self.default_behaviour
    }

    /// The current behaviour of service number `index`.
    pub(crate) fn behaviour(&self, index: usize) -> Behaviour {
        // A poisoned lock still holds a whole Behaviour (writes are plain assignments).
        self.behaviours[index]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_behaviour(&self, index: usize, behaviour: Behaviour) {
        *self.behaviours[index]
            .write()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// Every service back to the process default.
    pub(crate) fn reset_behaviours(&self) {
        for index in 0..self.services.len() {
            self.set_behaviour(index, self.default_behaviour.clone());
        }
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until the server stops (or a day passes); the client closing its connection
    /// ends the request earlier by dropping this future.
    pub(crate) async fn hang(&self) {
        let mut stopping = self.shutdown.subscribe();
        // An error means the sender is gone, i.e. the server is gone too.
        let _ = tokio::time::timeout(HANG_FOR, stopping.wait_for(|stopping| *stopping)).await;
    }
}
