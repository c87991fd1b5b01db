//! The dashboard's sessions over HTTP: sign-in exchanges a token for a cookie that is
//! HttpOnly and SameSite=Strict, state-changing requests carrying it must come from our
//! origin, sign-out and revocation end it, it expires, and another replica knows it.

use std::time::Duration;

use chrono::Utc;
use orchestrator_core::Scope;
use orchestrator_store::tokens;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;

use crate::auth::token_id;
use crate::helpers::{TestApp, assert_problem, example_request, test_config};

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client")
}

/// Signs in as a browser's form would; the `Set-Cookie` header, if any, and where the
/// answer sends the browser.
async fn sign_in(
    app_url: &str,
    token: &str,
    origin: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut request = browser()
        .post(format!("{app_url}/ui/sign-in"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(token));
    if let Some(origin) = origin {
        request = request.header(ORIGIN, origin);
    }
    let response = request.send().await.expect("sent");
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|value| value.to_str().expect("ASCII").to_owned());
    let location = response
        .headers()
        .get(LOCATION)
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), cookie, location)
}

/// The sign-in form's body. Tokens are base64url and `_`: nothing to escape.
fn form(token: &str) -> String {
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    format!("token={token}")
}

/// `name=value` of a `Set-Cookie` header.
fn pair(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .expect("a pair")
        .trim()
        .to_owned()
}

async fn get_with(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    browser()
        .get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("sent")
}

async fn signed_in(app: &TestApp, token: &str) -> String {
    let (status, cookie, location) = sign_in(&app.address, token, Some(&app.address)).await;
    assert_eq!((status, location.as_str()), (303, "/ui"));
    pair(&cookie.expect("a session cookie"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_signs_in_and_the_cookie_is_locked_down() {
    let app = TestApp::spawn().await;
    let (status, cookie, location) = sign_in(&app.address, &app.token, Some(&app.address)).await;
    assert_eq!((status, location.as_str()), (303, "/ui"));
    let cookie = cookie.expect("a session cookie");
    let attributes: Vec<String> = cookie
        .split(';')
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for attribute in ["httponly", "samesite=strict", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == attribute),
            "{attribute} in {cookie}"
        );
    }
    // Plain HTTP from a client that is not behind a trusted proxy: not Secure, and so
    // not __Host- (browsers refuse that prefix without Secure).
    assert!(cookie.starts_with("orchestrator_session="), "{cookie}");
    assert!(!attributes.iter().any(|a| a == "secure"));
    // The secret is not the token, and only its hash is stored.
    let session = pair(&cookie);
    assert!(!session.contains(&app.token));
    assert_eq!(app.db.count_rows("dashboard_sessions").await, 1);

    let me = get_with(&app, "/api/me", &session).await;
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.expect("JSON");
    assert_eq!(me["credential"], "session");
    assert_eq!(me["tenant"], "default");
    assert_eq!(get_with(&app, "/api/tasks", &session).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_sign_in_goes_back_to_the_form_without_a_cookie() {
    let app = TestApp::spawn().await;
    let revoked = app.db.token("default", &Scope::ALL).await;
    let mut conn = app.db.connection().await;
    tokens::revoke(&mut conn, token_id(&revoked), Utc::now())
        .await
        .expect("revoking");
    for token in ["", "orch_nonsense", revoked.as_str()] {
        let (status, cookie, location) = sign_in(&app.address, token, Some(&app.address)).await;
        assert_eq!(
            (status, location.as_str()),
            (303, "/ui/sign-in?failed=1"),
            "{token:?}"
        );
        assert_eq!(cookie, None);
    }
    assert_eq!(app.db.count_rows("dashboard_sessions").await, 0);
}

/// The cookie rides along with any request the browser makes, so a request that
/// changes state must come from a page of ours; sign-in too (login CSRF).
#[tokio::test(flavor = "multi_thread")]
async fn cross_site_requests_with_the_cookie_are_refused() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, &app.token).await;
    let submit = |origin: Option<&str>, site: Option<&str>| {
        let mut request = browser()
            .post(app.url("/api/orchestrate"))
            .header(COOKIE, &session)
            .json(&example_request());
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin.to_owned());
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site.to_owned());
        }
        request.send()
    };
    for (origin, site) in [
        (None, None),
        (Some("https://evil.example"), Some("cross-site")),
        (Some("http://127.0.0.1:1"), None),
        (Some("null"), None),
        (Some(app.address.as_str()), Some("same-site")),
    ] {
        let response = submit(origin, site).await.expect("sent");
        let problem = assert_problem(response, 403).await;
        assert_eq!(
            problem["type"], "/problems/cross-origin",
            "{origin:?} {site:?}"
        );
    }
    assert_eq!(app.db.count_rows("tasks").await, 0);
    let response = submit(Some(&app.address), None).await.expect("sent");
    assert_eq!(response.status(), 202);
    // What Chromium sends from a page whose Referrer-Policy is no-referrer.
    let response = submit(Some("null"), Some("same-origin"))
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);

    let (status, cookie, _) = sign_in(&app.address, &app.token, Some("https://evil.example")).await;
    assert_eq!((status, cookie), (403, None));
    let (status, cookie, _) = sign_in(&app.address, &app.token, None).await;
    assert_eq!((status, cookie), (403, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_and_revocation_end_the_session_at_once() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, &app.token).await;
    let response = browser()
        .post(app.url("/ui/sign-out"))
        .header(COOKIE, &session)
        .header(ORIGIN, &app.address)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/ui/sign-in");
    let cleared = response.headers()[SET_COOKIE]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(cleared.starts_with("orchestrator_session=;"), "{cleared}");
    assert!(
        cleared.to_ascii_lowercase().contains("max-age=0"),
        "{cleared}"
    );
    let response = get_with(&app, "/api/tasks", &session).await;
    let problem = assert_problem(response, 401).await;
    assert_eq!(problem["type"], "/problems/invalid-token");

    let token = app.db.token("default", &[Scope::TasksRead]).await;
    let session = signed_in(&app, &token).await;
    assert_eq!(get_with(&app, "/api/tasks", &session).await.status(), 200);
    let mut conn = app.db.connection().await;
    tokens::revoke(&mut conn, token_id(&token), Utc::now())
        .await
        .expect("revoking");
    assert_eq!(get_with(&app, "/api/tasks", &session).await.status(), 401);
}

/// Sessions live in PostgreSQL: one made through one replica works on another, with no
/// sticky sessions.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_made_on_one_replica_works_on_another() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, &app.token).await;
    let other = orchestrator_api::Application::build(test_config(&app.db, &app.mock))
        .await
        .expect("a second replica builds");
    let other_url = format!("http://127.0.0.1:{}", other.port());
    let _stop = other.shutdown_token().drop_guard();
    tokio::spawn(other.run_until_stopped());
    let response = browser()
        .get(format!("{other_url}/api/tasks"))
        .header(COOKIE, &session)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_absolute_expiry_end_sessions() {
    for (idle, max_age) in [(1, 3_600), (3_600, 1)] {
        let app = TestApp::spawn_with(|config| {
            config.auth.session_idle_timeout_secs = idle;
            config.auth.session_max_age_secs = max_age;
        })
        .await;
        let session = signed_in(&app, &app.token).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Polling does not keep it alive: activity is recorded at most once a minute.
            let status = get_with(&app, "/api/me", &session).await.status();
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                tokio::time::Instant::now() < deadline,
                "idle {idle} s, max age {max_age} s: the session never ended"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Behind a proxy in TRUSTED_PROXIES that says it terminated TLS, the cookie is Secure
/// and `__Host-` prefixed; the same header from anyone else changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_tls_proxy_the_cookie_is_secure_and_host_prefixed() {
    for (trusted, secure) in [("127.0.0.0/8", true), ("10.0.0.0/8", false)] {
        let app = TestApp::spawn_with(|config| {
            config.trusted_proxies =
                orchestrator_api::client_address::TrustedProxies::parse(trusted).expect("valid");
        })
        .await;
        let response = browser()
            .post(app.url("/ui/sign-in"))
            .header("x-forwarded-proto", "https")
            .header(ORIGIN, &app.address)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(&app.token))
            .send()
            .await
            .expect("sent");
        let cookie = response.headers()[SET_COOKIE]
            .to_str()
            .expect("ASCII")
            .to_owned();
        let attributes: Vec<String> = cookie
            .split(';')
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        assert_eq!(
            cookie.starts_with("__Host-orchestrator_session="),
            secure,
            "{cookie}"
        );
        assert_eq!(attributes.iter().any(|a| a == "secure"), secure, "{cookie}");
        // The __Host- cookie is the only one read over HTTPS.
        let session = pair(&cookie);
        let response = browser()
            .get(app.url("/api/me"))
            .header("x-forwarded-proto", "https")
            .header(COOKIE, &session)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
    }
}
