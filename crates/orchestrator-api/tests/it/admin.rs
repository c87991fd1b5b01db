//! The admin scope over HTTP: a tenant's tokens (`/api/tokens`) and its audit log
//! (`/api/audit`), with no escalation to other tenants or scopes.

use std::time::Duration;

use orchestrator_core::Scope;
use orchestrator_mock_services::Behaviour;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json_line, request_named};

fn client(token: &str) -> reqwest::Client {
    orchestrator_testkit::api::client_with_token(token)
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("request sent")
}

/// `(actor, action, target, outcome)` of each event of a page, newest first.
fn events(page: &Value) -> Vec<(String, String, String, String)> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| {
            let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
            (
                text("actor"),
                text("action"),
                text("target"),
                text("outcome"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_manages_its_tenants_tokens_without_escalation() {
    let app = TestApp::spawn().await;
    let admin_token = app
        .db
        .token("acme", &[Scope::Admin, Scope::TasksRead])
        .await;
    let admin = client(&admin_token);
    let admin_actor = format!("token:{}", crate::auth::token_id(&admin_token));
    let other_tenant_token = app.db.token("globex", &Scope::ALL).await;

    // A token for its own tenant, with a scope it holds: shown once, usable at once.
    let response = send(admin.post(app.url("/api/tokens")).json(&json!({
        "name": "reports", "scopes": ["tasks:read"], "expires_in_seconds": 3600
    })))
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let created = json_line(response).await;
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["scopes"], json!(["tasks:read"]));
    assert!(created["expires_at"].is_string(), "{created}");
    let token = created["token"].as_str().expect("the token").to_owned();
    let id = created["id"].as_str().expect("its id").to_owned();
    let me = json_line(send(client(&token).get(app.url("/api/me"))).await).await;
    assert_eq!(
        (&me["tenant"], &me["scopes"]),
        (&json!("acme"), &json!(["tasks:read"]))
    );

    // The list: the tenant's tokens only, never a secret.
    let list = json_line(send(admin.get(app.url("/api/tokens"))).await).await;
    let ids: Vec<&str> = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|token| token["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2, "the admin's and the new one: {list}");
    assert!(ids.contains(&id.as_str()));
    assert!(!list.to_string().contains(&token), "a secret in the list");
    assert!(list["tokens"][0].get("token").is_none());

    // No escalation: not for another tenant, not with a scope the admin lacks.
    for body in [
        json!({"scopes": ["tasks:read"], "tenant": "globex"}),
        json!({"scopes": ["tasks:read", "tasks:submit"]}),
    ] {
        let response = send(admin.post(app.url("/api/tokens")).json(&body)).await;
        let problem = assert_problem(response, 403).await;
        assert_eq!(problem["type"], "/problems/forbidden", "{body}");
    }
    let response = send(
        admin
            .post(app.url("/api/tokens"))
            .json(&json!({"scopes": ["root"]})),
    )
    .await;
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["errors"][0]["pointer"], "/scopes/0");

    // Another tenant's token is not found; the tenant's own is revoked, then gone.
    let other_id = crate::auth::token_id(&other_tenant_token).to_string();
    let response = send(admin.delete(app.url(&format!("/api/tokens/{other_id}")))).await;
    assert_eq!(
        assert_problem(response, 404).await["type"],
        "/problems/token-not-found"
    );
    let response = send(admin.delete(app.url(&format!("/api/tokens/{id}")))).await;
    assert_eq!(response.status(), 204);
    let response = send(admin.delete(app.url(&format!("/api/tokens/{id}")))).await;
    assert_problem(response, 404).await;
    let revoked = client(&token);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = send(revoked.get(app.url("/api/me"))).await.status();
        if status == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked token still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = send(client(&other_tenant_token).get(app.url("/api/me"))).await;
    assert_eq!(other.status(), 200, "another tenant's token was revoked");

    // Each of it is in the audit log, newest first, by the admin's token.
    let page = json_line(send(admin.get(app.url("/api/audit?action=token.create"))).await).await;
    assert_eq!(
        events(&page),
        [
            (
                admin_actor.clone(),
                "token.create".into(),
                String::new(),
                "failure".into()
            ),
            (
                admin_actor.clone(),
                "token.create".into(),
                String::new(),
                "failure".into()
            ),
            (
                admin_actor.clone(),
                "token.create".into(),
                id.clone(),
                "success".into()
            ),
        ]
    );
    let page = json_line(send(admin.get(app.url("/api/audit?action=token.revoke"))).await).await;
    assert_eq!(
        events(&page),
        [
            (
                admin_actor.clone(),
                "token.revoke".into(),
                id.clone(),
                "failure".into()
            ),
            (
                admin_actor.clone(),
                "token.revoke".into(),
                id.clone(),
                "success".into()
            ),
            (
                admin_actor.clone(),
                "token.revoke".into(),
                other_id.clone(),
                "failure".into()
            ),
        ]
    );
    let event = &page["events"][1];
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["client_address"], "127.0.0.1");
    assert!(event["request_id"].is_string(), "{event}");
    // The other tenant's admin sees none of it.
    let theirs =
        json_line(send(client(&other_tenant_token).get(app.url("/api/audit"))).await).await;
    assert_eq!(events(&theirs), []);
}

#[tokio::test(flavor = "multi_thread")]
async fn redrives_and_sign_ins_are_audited_and_the_log_pages_and_filters() {
    let app = TestApp::spawn().await;
    let actor = format!("token:{}", crate::auth::token_id(&app.token));

    // A re-drive refused (the task is not FAILED), then one that happens.
    let response = app
        .post_json("/api/orchestrate/direct", &request_named("fine"))
        .await;
    let fine = json_line(response).await;
    let fine_id = fine["task_id"].as_str().expect("id").to_owned();
    let response = send(
        app.client
            .post(app.url(&format!("/api/tasks/{fine_id}/retry"))),
    )
    .await;
    assert_eq!(response.status(), 409);
    app.mock.set_behaviour(
        "revenue",
        Behaviour {
            failure_rate: 1.0,
            ..Behaviour::default()
        },
    );
    let failed = json_line(
        app.post_json("/api/orchestrate/direct", &request_named("flaky"))
            .await,
    )
    .await;
    let failed_id = failed["task_id"].as_str().expect("id").to_owned();
    app.mock.reset_behaviours();
    let response = send(
        app.client
            .post(app.url(&format!("/api/tasks/{failed_id}/retry"))),
    )
    .await;
    assert_eq!(response.status(), 202);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();

    // A dashboard sign-in refused, and one accepted.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    for token in ["orch_nonsense", app.token.as_str()] {
        let response = send(
            browser
                .post(app.url("/ui/sign-in"))
                .header("sec-fetch-site", "same-origin")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={token}")),
        )
        .await;
        assert_eq!(response.status(), 303);
    }

    let all = json_line(app.get("/api/audit").await).await;
    assert_eq!(
        events(&all),
        [
            (
                actor.clone(),
                "sign_in".into(),
                String::new(),
                "success".into()
            ),
            (
                actor.clone(),
                "task.redrive".into(),
                failed_id.clone(),
                "success".into()
            ),
            (
                actor.clone(),
                "task.redrive".into(),
                fine_id.clone(),
                "failure".into()
            ),
        ],
        "the refused sign-in with an unknown token has no tenant: {all}"
    );
    assert_eq!(all["events"][1]["request_id"], request_id.as_str());
    let mut conn = app.db.connection().await;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let unattributed: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM audit_events \
         WHERE tenant IS NULL AND actor = 'unknown' AND action = 'sign_in' AND outcome = 'failure'",
    )
    .get_result(&mut conn)
    .await
    .expect("count");
    assert_eq!(unattributed.n, 1);

    // Filters and pages.
    let page = json_line(app.get("/api/audit?action=task.redrive&limit=1").await).await;
    assert_eq!(events(&page)[0].2, failed_id);
    let cursor = page["next_cursor"].as_str().expect("another page");
    let next = json_line(
        app.get(&format!(
            "/api/audit?action=task.redrive&limit=1&cursor={cursor}"
        ))
        .await,
    )
    .await;
    assert_eq!(events(&next)[0].2, fine_id);
    assert!(next["next_cursor"].is_null(), "{next}");
    let by_actor = json_line(app.get(&format!("/api/audit?actor={actor}")).await).await;
    assert_eq!(events(&by_actor).len(), 3);
    let nobody = json_line(app.get("/api/audit?actor=token:0").await).await;
    assert_eq!(events(&nobody), []);
    let future = json_line(app.get("/api/audit?since=2999-01-01T00:00:00Z").await).await;
    assert_eq!(events(&future), []);
    let past = json_line(app.get("/api/audit?until=2000-01-01T00:00:00Z").await).await;
    assert_eq!(events(&past), []);
    for bad in [
        "action=task.delete",
        "since=yesterday",
        "since=2026-12-01 10:00:00Z",
        "limit=0",
    ] {
        let response = app.get(&format!("/api/audit?{bad}")).await;
        assert_eq!(
            assert_problem(response, 400).await["type"],
            "/problems/invalid-query",
            "{bad}"
        );
    }
}
