//! Authentication and scopes over HTTP: every route of the route table against every
//! kind of credential, token revocation and last use, `AUTH_DISABLED`.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use orchestrator_api::routes::{Access, ENDPOINTS};
use orchestrator_auth::{IssuedToken, PresentedToken};
use orchestrator_core::Scope;
use orchestrator_store::tokens;
use reqwest::header::WWW_AUTHENTICATE;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, example_request};

const SOME_TASK: &str = "7dcf4835-c1a8-4869-bcc5-7912bbf9bebe";
const REALM: &str = "Bearer realm=\"orchestrator\"";

/// What a route answers `authorization` (the whole header value, if any).
async fn call(
    app: &TestApp,
    verb: reqwest::Method,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let path = path.replace("{task_id}", SOME_TASK);
    let mut request = reqwest::Client::new()
        .request(verb, app.url(&path))
        .json(&example_request());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("request sent")
}

/// `GET path` with `token` as the bearer credential.
async fn get_as(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    call(
        app,
        reqwest::Method::GET,
        path,
        Some(&format!("Bearer {token}")),
    )
    .await
}

async fn refused(
    response: reqwest::Response,
    status: u16,
    challenge: &str,
    problem_type: &str,
) -> Value {
    let header = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().expect("ASCII").to_owned());
    assert_eq!(header.as_deref(), Some(challenge), "WWW-Authenticate");
    let problem = assert_problem(response, status).await;
    assert_eq!(problem["type"], problem_type);
    problem
}

pub fn token_id(token: &str) -> uuid::Uuid {
    PresentedToken::parse(token).expect("a token").id
}

/// Every route × no credential, malformed, unknown, expired, revoked, wrong scope, other
/// tenant and valid: the exact status, challenge and problem type, and nothing that
/// tells an unknown token from an expired or a revoked one.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_what_it_must_and_takes_what_it_may() {
    // Dozens of invalid credentials from one address: more than the slow-down allows
    // (tested on its own below).
    let app =
        TestApp::spawn_with(|config| config.auth.limits.auth_failures_per_minute = 10_000).await;
    let unknown = IssuedToken::generate().expect("randomness");
    let unknown = orchestrator_auth::token::reveal(&unknown).to_owned();
    let expired = app
        .db
        .token_with(
            "default",
            &Scope::ALL,
            Some(Utc::now() - TimeDelta::seconds(1)),
        )
        .await;
    let revoked = app.db.token("default", &Scope::ALL).await;
    let mut conn = app.db.connection().await;
    tokens::revoke(&mut conn, token_id(&revoked), Utc::now())
        .await
        .expect("revoking");
    let other_tenant = app.db.token("other", &Scope::ALL).await;
    // Routes of one task get a task of tenant `default`.
    let response = app
        .post_json("/api/orchestrate/direct", &example_request())
        .await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.expect("JSON");
    let task_id = task["task_id"].as_str().expect("id");

    for endpoint in ENDPOINTS {
        let verb = reqwest::Method::from_bytes(endpoint.verb.method().as_str().as_bytes())
            .expect("a method");
        let route = format!("{} {}", endpoint.verb.method(), endpoint.path);
        let required = match endpoint.access {
            // Without METRICS_TOKEN (tested below), /metrics is public.
            Access::Public | Access::Metrics => {
                let response = call(&app, verb.clone(), endpoint.path, None).await;
                assert_eq!(response.status(), 200, "{route} is public");
                let response = call(&app, verb, endpoint.path, Some("Bearer nonsense")).await;
                assert_eq!(response.status(), 200, "{route} ignores credentials");
                continue;
            }
            Access::Authenticated => None,
            Access::Scope(scope) => Some(scope),
        };

        let response = call(&app, verb.clone(), endpoint.path, None).await;
        refused(response, 401, REALM, "/problems/unauthenticated").await;
        let response = call(
            &app,
            verb.clone(),
            endpoint.path,
            Some("Basic dXNlcjpwYXNz"),
        )
        .await;
        refused(response, 401, REALM, "/problems/unauthenticated").await;

        let invalid = format!("{REALM}, error=\"invalid_token\"");
        let mut details = Vec::new();
        for credential in [
            "Bearer not-a-token".to_owned(),
            format!("Bearer {unknown}"),
            format!("Bearer {expired}"),
            format!("bearer {revoked}"),
        ] {
            let response = call(&app, verb.clone(), endpoint.path, Some(&credential)).await;
            let problem = refused(response, 401, &invalid, "/problems/invalid-token").await;
            details.push(problem["detail"].clone());
        }
        assert!(
            details.windows(2).all(|pair| pair[0] == pair[1]),
            "{route}: refusals tell credentials apart: {details:?}"
        );

        if let Some(scope) = required {
            let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
            let lacking = app.db.token("default", &others).await;
            let response = call(
                &app,
                verb.clone(),
                endpoint.path,
                Some(&format!("Bearer {lacking}")),
            )
            .await;
            let challenge = format!("{REALM}, error=\"insufficient_scope\", scope=\"{scope}\"");
            refused(response, 403, &challenge, "/problems/insufficient-scope").await;
        }

        // Another tenant's valid credential: the task is not found, as if it did not
        // exist; routes of no one task answer (with that tenant's own tasks).
        let path = endpoint.path.replace("{task_id}", task_id);
        let of_one_task = path != endpoint.path;
        let response = call(
            &app,
            verb.clone(),
            &path,
            Some(&format!("Bearer {other_tenant}")),
        )
        .await;
        if of_one_task {
            let problem = assert_problem(response, 404).await;
            assert_eq!(problem["type"], "/problems/task-not-found", "{route}");
        } else {
            let status = response.status().as_u16();
            assert!(!matches!(status, 401 | 403 | 404), "{route}: {status}");
        }

        let scopes: Vec<Scope> = required.into_iter().collect();
        let just_enough = app.db.token("default", &scopes).await;
        let response = call(&app, verb, &path, Some(&format!("Bearer {just_enough}"))).await;
        let status = response.status().as_u16();
        assert!(
            !matches!(status, 401 | 403 | 404),
            "{route} with a token holding {scopes:?}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
}

/// A revoked token is refused by a replica that had it cached within the cache's few
/// seconds; its use is recorded in `last_used_at`.
#[tokio::test(flavor = "multi_thread")]
async fn revocation_takes_effect_and_use_is_recorded() {
    let app = TestApp::spawn().await;
    let token = app.db.token("default", &[Scope::TasksRead]).await;
    let bearer = format!("Bearer {token}");
    let response = call(&app, reqwest::Method::GET, "/api/tasks", Some(&bearer)).await;
    assert_eq!(response.status(), 200);

    let mut conn = app.db.connection().await;
    let id = token_id(&token);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = tokens::find(&mut conn, id)
            .await
            .expect("reading")
            .expect("the token");
        if row.last_used_at.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last_used_at was never set"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    tokens::revoke(&mut conn, id, Utc::now())
        .await
        .expect("revoking");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let response = call(&app, reqwest::Method::GET, "/api/tasks", Some(&bearer)).await;
        if response.status() == 401 {
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/me` says who the credential stands for.
#[tokio::test(flavor = "multi_thread")]
async fn me_names_the_tenant_and_the_scopes() {
    let app = TestApp::spawn().await;
    let token = app
        .db
        .token("acme", &[Scope::TasksRead, Scope::TasksSubmit])
        .await;
    let me = get_as(&app, "/api/me", &token).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.expect("JSON");
    assert_eq!(
        me,
        json!({
            "tenant": "acme",
            "scopes": ["tasks:submit", "tasks:read"],
            "credential": "token",
            "token_id": token_id(&token),
        })
    );
}

/// `AUTH_DISABLED=true`: every route without a credential, as tenant `default` with
/// every scope, and `/health` says so.
#[tokio::test(flavor = "multi_thread")]
async fn auth_disabled_serves_everyone_and_says_so() {
    let app = TestApp::spawn_with(|config| config.auth.disabled = true).await;
    let health: Value = reqwest::get(app.url("/health"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["auth"], "disabled");
    let anonymous = reqwest::Client::new();
    let submitted = anonymous
        .post(app.url("/api/orchestrate"))
        .json(&example_request())
        .send()
        .await
        .expect("sent");
    assert_eq!(submitted.status(), 202);
    let me: Value = anonymous
        .get(app.url("/api/me"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["credential"], "none");
    assert_eq!(me["tenant"], "default");
    assert_eq!(
        me["scopes"].as_array().map(Vec::len),
        Some(Scope::ALL.len())
    );
}

/// A credential over its rate gets 429 with Retry-After, then is served again; other
/// credentials are not affected.
#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_answers_429_then_recovers() {
    let app = TestApp::spawn_with(|config| {
        config.auth.limits.rate_limit_per_second = 2;
        config.auth.limits.rate_limit_burst = 3;
    })
    .await;
    let token = app.db.token("default", &[Scope::TasksRead]).await;
    let bearer = format!("Bearer {token}");
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let response = call(&app, reqwest::Method::GET, "/api/tasks", Some(&bearer)).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert!(
        statuses.len() > 3,
        "the burst is served first: {statuses:?}"
    );
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let problem = assert_problem(limited, 429).await;
    assert_eq!(problem["type"], "/problems/rate-limited");
    let other = app.db.token("default", &[Scope::TasksRead]).await;
    let response = get_as(&app, "/api/tasks", &other).await;
    assert_eq!(
        response.status(),
        200,
        "another credential has its own rate"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = call(&app, reqwest::Method::GET, "/api/tasks", Some(&bearer)).await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 429);
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An address that keeps presenting invalid tokens is refused before its credentials
/// are looked at, valid ones included; a forged X-Forwarded-For from a peer that is not
/// a trusted proxy does not make it someone else.
#[tokio::test(flavor = "multi_thread")]
async fn guessing_tokens_from_one_address_is_slowed_down() {
    let app = TestApp::spawn_with(|config| config.auth.limits.auth_failures_per_minute = 5).await;
    let unknown =
        orchestrator_auth::token::reveal(&IssuedToken::generate().expect("randomness")).to_owned();
    for attempt in 0..5 {
        let response = get_as(&app, "/api/tasks", &unknown).await;
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    let response = get_as(&app, "/api/tasks", &unknown).await;
    assert_eq!(response.status(), 429);
    let response = reqwest::Client::new()
        .get(app.url("/api/tasks"))
        .header("authorization", format!("Bearer {}", app.token))
        .header("x-forwarded-for", "203.0.113.77")
        .send()
        .await
        .expect("sent");
    let problem = assert_problem(response, 429).await;
    assert_eq!(problem["type"], "/problems/rate-limited");
    // The probes need no credential and are never refused.
    let response = call(&app, reqwest::Method::GET, "/health", None).await;
    assert_eq!(response.status(), 200);
}

/// With METRICS_TOKEN set, /metrics needs exactly that bearer token; API tokens do not
/// open it, and it opens nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_token_guards_the_metrics_and_nothing_else() {
    const METRICS: &str = "scrape-me-0123456789abcdef";
    let app = TestApp::spawn_with(|config| {
        config.auth.metrics_token = Some(METRICS.into());
    })
    .await;
    let response = call(&app, reqwest::Method::GET, "/metrics", None).await;
    refused(response, 401, REALM, "/problems/unauthenticated").await;
    let invalid = format!("{REALM}, error=\"invalid_token\"");
    for wrong in [
        format!("Bearer {}", app.token),
        "Bearer scrape-me".to_owned(),
    ] {
        let response = call(&app, reqwest::Method::GET, "/metrics", Some(&wrong)).await;
        refused(response, 401, &invalid, "/problems/invalid-token").await;
    }
    let response = get_as(&app, "/metrics", METRICS).await;
    assert_eq!(response.status(), 200);
    let response = get_as(&app, "/api/tasks", METRICS).await;
    refused(response, 401, &invalid, "/problems/invalid-token").await;
}
