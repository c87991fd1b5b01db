//! Tenants over HTTP: each credential sees, counts, searches and re-drives only its own
//! tenant's tasks, and another tenant's task answers exactly as a missing one.

use orchestrator_core::Scope;
use orchestrator_mock_services::Behaviour;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json_line, request_named};

/// A client of one tenant, with every scope.
struct Tenant {
    client: reqwest::Client,
}

impl Tenant {
    async fn new(app: &TestApp, tenant: &str) -> Tenant {
        let token = app.db.token(tenant, &Scope::ALL).await;
        Tenant {
            client: orchestrator_testkit::api::client_with_token(&token),
        }
    }

    async fn post(&self, app: &TestApp, path: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self
            .client
            .post(app.url(path))
            .header("Idempotency-Key", "shared-key");
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    async fn get(&self, app: &TestApp, path: &str) -> reqwest::Response {
        self.client
            .get(app.url(path))
            .send()
            .await
            .expect("request sent")
    }

    async fn get_json(&self, app: &TestApp, path: &str) -> Value {
        let response = self.get(app, path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        json_line(response).await
    }
}

fn ids(page: &Value) -> Vec<&str> {
    page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|task| task["task_id"].as_str().expect("id"))
        .collect()
}

/// The problem a 404 answers, with the task id taken out: a missing task and another
/// tenant's must not differ in anything else.
async fn not_found(response: reqwest::Response, task_id: &str) -> String {
    let problem = assert_problem(response, 404).await;
    problem.to_string().replace(task_id, "{task_id}")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_sees_counts_searches_and_redrives_only_its_own_tasks() {
    let app = TestApp::spawn().await;
    let acme = Tenant::new(&app, "acme").await;
    let globex = Tenant::new(&app, "globex").await;

    // Both submit under the same Idempotency-Key: two tasks, each in its tenant.
    let body = request_named("Quarterly forecast");
    let response = acme.post(&app, "/api/orchestrate", Some(&body)).await;
    assert_eq!(response.status(), 202);
    let acme_task = json_line(response).await;
    assert_eq!(acme_task["tenant"], "acme");
    let acme_id = acme_task["task_id"].as_str().expect("id").to_owned();
    let response = globex.post(&app, "/api/orchestrate", Some(&body)).await;
    assert_eq!(response.status(), 202);
    let globex_task = json_line(response).await;
    assert_eq!(globex_task["tenant"], "globex");
    let globex_id = globex_task["task_id"].as_str().expect("id").to_owned();
    assert_ne!(acme_id, globex_id);
    // Within a tenant the key still finds the first task.
    let again = json_line(globex.post(&app, "/api/orchestrate", Some(&body)).await).await;
    assert_eq!(again["task_id"], globex_id.as_str());

    for (tenant, own, other) in [
        (&acme, &acme_id, &globex_id),
        (&globex, &globex_id, &acme_id),
    ] {
        let task = tenant.get_json(&app, &format!("/api/tasks/{own}")).await;
        assert_eq!(task["task_id"], own.as_str());
        assert_eq!(ids(&tenant.get_json(&app, "/api/tasks").await), [own]);
        assert_eq!(
            ids(&tenant.get_json(&app, "/api/tasks/search?q=forecast").await),
            [own]
        );
        // An id prefix of the other tenant's task finds nothing either.
        assert!(
            ids(&tenant
                .get_json(&app, &format!("/api/tasks/search?q={}", &other[..8]))
                .await)
            .is_empty()
        );
        let counts = tenant.get_json(&app, "/api/tasks/counts").await;
        assert_eq!(counts["total"], 1, "{counts}");
        let throughput = tenant
            .get_json(&app, "/api/tasks/throughput?minutes=5")
            .await;
        let submitted: i64 = throughput["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|bucket| bucket["submitted"].as_i64().expect("a count"))
            .sum();
        assert_eq!(submitted, 1, "{throughput}");

        // Another tenant's task is not found, exactly like a task that does not exist.
        let missing = uuid::Uuid::new_v4().to_string();
        let expected = not_found(
            tenant.get(&app, &format!("/api/tasks/{missing}")).await,
            &missing,
        )
        .await;
        let got = not_found(
            tenant.get(&app, &format!("/api/tasks/{other}")).await,
            other,
        )
        .await;
        assert_eq!(got, expected);
        let got = not_found(
            tenant
                .post(&app, &format!("/api/tasks/{other}/retry"), None)
                .await,
            other,
        )
        .await;
        let expected = not_found(
            tenant
                .post(&app, &format!("/api/tasks/{missing}/retry"), None)
                .await,
            &missing,
        )
        .await;
        assert_eq!(got, expected);
    }

    // A FAILED task (direct mode) is re-driven by its own tenant only.
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        },
    );
    let response = acme
        .client
        .post(app.url("/api/orchestrate/direct"))
        .json(&request_named("Rebate audit"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let failed = json_line(response).await;
    assert_eq!(
        (&failed["status"], &failed["tenant"]),
        (&json!("FAILED"), &json!("acme"))
    );
    let failed_id = failed["task_id"].as_str().expect("id");
    app.mock.reset_behaviours();
    let response = globex
        .post(&app, &format!("/api/tasks/{failed_id}/retry"), None)
        .await;
    not_found(response, failed_id).await;
    let still = acme
        .get_json(&app, &format!("/api/tasks/{failed_id}"))
        .await;
    assert_eq!(
        still["status"], "FAILED",
        "another tenant's re-drive changed it"
    );
    let response = acme
        .post(&app, &format!("/api/tasks/{failed_id}/retry"), None)
        .await;
    assert_eq!(response.status(), 202);
    let counts = globex.get_json(&app, "/api/tasks/counts").await;
    assert_eq!(counts["total"], 1, "{counts}");
}
