//! Waiting for a condition with a deadline, instead of sleeping for a fixed time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Checks `condition` every 10 ms until it holds, and returns how long that took;
/// panics naming `what` once `within` has passed.
pub async fn until<F, Fut>(what: &str, within: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
