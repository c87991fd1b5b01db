//! Exact request counting.

use std::time::Duration;

use futures::future::join_all;
use orchestrator_mock_services::StatsSnapshot;

use crate::support::{Harness, poll_until, status_of};

#[tokio::test(flavor = "multi_thread")]
async fn counts_every_attempt_and_resets() {
    let harness = Harness::start().await;
    for key in ["a", "a", "b"] {
        assert_eq!(status_of(harness.call_with_key("revenue", key)).await, 200);
    }
    let failed = harness
        .call_with_key("rebates", "a")
        .header("X-Mock-Status", "500");
    assert_eq!(status_of(failed).await, 500);
    let rejected = harness
        .client
        .post(harness.url("/rebates"))
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(rejected.status(), 400);

    let over_http: StatsSnapshot = harness
        .client
        .get(harness.url("/stats"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(over_http, harness.server.stats());
    assert_eq!(over_http.total, 5);
    assert_eq!(over_http.path_count("/revenue"), 3);
    assert_eq!(over_http.path_count("/rebates"), 2);
    assert_eq!(over_http.path_count("/specialty"), 0);
    assert_eq!(over_http.key_count("a"), 3);
    assert_eq!(over_http.key_count("b"), 1);
    assert_eq!(over_http.in_flight, 0);
    assert_eq!(over_http.peak_in_flight, 1);

    let reset = harness
        .client
        .post(harness.url("/stats/reset"))
        .send()
        .await
        .expect("answered");
    assert_eq!(reset.status(), 204);
    let after = harness.server.stats();
    assert_eq!(after.total, 0);
    assert!(after.by_idempotency_key.is_empty());
    assert!(after.by_path.values().all(|&count| count == 0));
    assert_eq!(after.peak_in_flight, 0);

    // Health checks and stats reads are not service requests.
    assert_eq!(
        status_of(harness.client.get(harness.url("/health"))).await,
        200
    );
    assert_eq!(harness.server.stats().total, 0);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn peak_in_flight_equals_concurrency() {
    const CONCURRENCY: usize = 10;
    let harness = Harness::start().await;
    let requests = (0..CONCURRENCY).map(|i| {
        let request = harness
            .call_with_key("revenue", &format!("k{i}"))
            .header("X-Mock-Delay-Ms", "1500");
        async move { status_of(request).await }
    });
    let all = tokio::spawn(join_all(requests));

    poll_until("all requests in flight", Duration::from_secs(10), || {
        harness.server.stats().in_flight == CONCURRENCY as u64
    })
    .await;
    let statuses = all.await.expect("requests task");
    assert!(statuses.iter().all(|&status| status == 200), "{statuses:?}");

    let stats = harness.server.stats();
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.peak_in_flight, CONCURRENCY as u64);
    assert_eq!(stats.by_path_peak_in_flight["/revenue"], CONCURRENCY as u64);
    assert_eq!(stats.by_path_peak_in_flight["/rebates"], 0);
    harness.stop().await;
}
