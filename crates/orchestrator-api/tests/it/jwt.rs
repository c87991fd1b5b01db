//! JWT bearer tokens from an identity provider (the test's, on a loopback port, with
//! keys generated here): what is accepted, everything that must not be, and how often
//! the provider's keys are fetched.

use chrono::Utc;
use orchestrator_testkit::idp::{TestIdp, TestKey};
use reqwest::header::WWW_AUTHENTICATE;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json_line};

const AUDIENCE: &str = "orchestrator-api";

async fn app_trusting(idp: &TestIdp) -> TestApp {
    let (issuer, jwks_url) = (idp.issuer.clone(), idp.jwks_url());
    TestApp::spawn_with(move |config| {
        config.auth.jwt.issuer = Some(issuer);
        config.auth.jwt.audience = Some(AUDIENCE.into());
        config.auth.jwt.jwks_url = Some(jwks_url);
    })
    .await
}

/// Claims that pass, for `issuer`; each refusal below changes one thing.
fn claims(issuer: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({
        "iss": issuer, "aud": AUDIENCE, "sub": "alice@example.com",
        "iat": now, "nbf": now - 5, "exp": now + 300,
        "tenant": "acme", "scope": "openid tasks:read tasks:submit",
    })
}

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

async fn assert_invalid(app: &TestApp, token: &str, case: &str) {
    let response = get(app, "/api/tasks", token).await;
    assert_eq!(
        response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().expect("ASCII")),
        Some("Bearer realm=\"orchestrator\", error=\"invalid_token\""),
        "{case}"
    );
    let problem = assert_problem(response, 401).await;
    assert_eq!(problem["type"], "/problems/invalid-token", "{case}");
}

/// An unsigned token (`alg: none`), as an attacker would write it by hand.
fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let encode =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        encode(claims)
    )
}

/// HS256 signed with the RSA key's public modulus as the HMAC secret: the classic
/// confusion of a verifier that lets the token choose the algorithm.
fn hmac_with_public_key(key: &TestKey, claims: &Value) -> String {
    let secret = key.jwk()["n"]
        .as_str()
        .expect("a modulus")
        .as_bytes()
        .to_vec();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret).expect("an HMAC key"),
    )
    .expect("signing")
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_of_the_identity_provider_are_accepted_and_nothing_else() {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::ec("ec-1");
    let idp = TestIdp::start(&[&rsa, &ec]).await;
    let app = app_trusting(&idp).await;
    let valid = claims(&idp.issuer);

    // RS256 and ES256: the tenant and our scopes from the claims (`openid` is not ours).
    for key in [&rsa, &ec] {
        let token = key.sign(&valid);
        let me = json_line(get(&app, "/api/me", &token).await).await;
        assert_eq!(
            (&me["credential"], &me["tenant"], &me["scopes"]),
            (
                &json!("jwt"),
                &json!("acme"),
                &json!(["tasks:submit", "tasks:read"])
            ),
            "{key:?}",
            key = key.kid
        );
        assert_eq!(get(&app, "/api/tasks", &token).await.status(), 200);
    }
    // Scopes as a list work too; a scope the token lacks is refused.
    let mut listed = valid.clone();
    listed["scope"] = json!(["tasks:read"]);
    let token = rsa.sign(&listed);
    assert_eq!(get(&app, "/api/tasks", &token).await.status(), 200);
    let response = reqwest::Client::new()
        .post(app.url("/api/tokens"))
        .bearer_auth(&token)
        .json(&json!({"scopes": ["tasks:read"]}))
        .send()
        .await
        .expect("sent");
    assert_problem(response, 403).await;

    let changed = |field: &str, value: Value| {
        let mut claims = valid.clone();
        claims[field] = value;
        claims
    };
    let now = Utc::now().timestamp();
    let impostor = TestKey::rsa("rsa-1");
    let cases = [
        (
            "signed with another key under a known id",
            impostor.sign(&valid),
        ),
        ("alg none", unsigned(&valid)),
        (
            "ES256 under the RSA key's id",
            ec.with_kid("rsa-1").sign(&valid),
        ),
        (
            "HS256 with the public key as secret",
            hmac_with_public_key(&rsa, &valid),
        ),
        (
            "another issuer",
            rsa.sign(&changed("iss", json!("https://elsewhere.example"))),
        ),
        (
            "another audience",
            rsa.sign(&changed("aud", json!("another-api"))),
        ),
        ("expired", rsa.sign(&changed("exp", json!(now - 120)))),
        ("not yet valid", rsa.sign(&changed("nbf", json!(now + 120)))),
        ("no tenant", rsa.sign(&changed("tenant", Value::Null))),
        (
            "a tenant that is not a name",
            rsa.sign(&changed("tenant", json!("Acme Inc"))),
        ),
        ("no subject", rsa.sign(&changed("sub", Value::Null))),
        ("not a JWT at all", "eyJub3Q.a.jwt".to_owned()),
    ];
    for (case, token) in &cases {
        assert_invalid(&app, token, case).await;
    }
    // API tokens keep working beside JWTs.
    assert_eq!(app.get("/api/tasks").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_id_fetches_the_keys_once_and_not_again_within_30_seconds() {
    let old = TestKey::rsa("old");
    let idp = TestIdp::start(&[&old]).await;
    let app = app_trusting(&idp).await;
    let valid = claims(&idp.issuer);
    assert_eq!(
        idp.jwks_fetches(),
        0,
        "keys are fetched at the first token, not at start"
    );

    // The first token names a key not seen yet: one fetch finds it.
    assert_eq!(
        get(&app, "/api/tasks", &old.sign(&valid)).await.status(),
        200
    );
    assert_eq!(idp.jwks_fetches(), 1);
    assert_eq!(
        get(&app, "/api/tasks", &old.sign(&valid)).await.status(),
        200
    );
    assert_eq!(idp.jwks_fetches(), 1, "a known key needs no fetch");

    // Made-up key ids, many at once: refused, and the provider is not asked again
    // within 30 seconds of the last fetch.
    let ghost = old.with_kid("ghost");
    let ghost_token = ghost.sign(&valid);
    let requests = (0..20).map(|_| get(&app, "/api/tasks", &ghost_token));
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.status(), 401);
    }
    assert_eq!(idp.jwks_fetches(), 1);
    // A key published meanwhile waits for the next allowed fetch too.
    let new = TestKey::ec("new");
    idp.publish(&new);
    assert_invalid(&app, &new.sign(&valid), "a key newer than the last fetch").await;
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_that_do_not_fit_together_stop_the_start() {
    use clap::Parser as _;
    let db = orchestrator_testkit::database::TestDatabase::create().await;
    let mock = orchestrator_mock_services::MockServer::start(
        orchestrator_mock_services::MockConfig::for_tests(),
    )
    .await
    .expect("mock");
    for (settings, says) in [
        (
            vec!["--auth-jwt-issuer", "https://idp.example"],
            "AUTH_JWT_AUDIENCE",
        ),
        (
            vec![
                "--auth-jwt-issuer",
                "https://idp.example",
                "--auth-jwt-audience",
                "api",
            ],
            "AUTH_JWT_JWKS_URL",
        ),
        (
            vec![
                "--auth-jwt-issuer",
                "https://idp.example",
                "--auth-jwt-audience",
                "api",
                "--auth-jwt-jwks-url",
                "http://idp.example/jwks",
            ],
            "must be https",
        ),
        (vec!["--auth-jwt-audience", "api"], "AUTH_JWT_ISSUER"),
    ] {
        let mut config = crate::helpers::test_config(&db, &mock);
        let parsed = orchestrator_api::ApiConfig::try_parse_from(
            std::iter::once("orchestrator-api").chain(settings.iter().copied()),
        )
        .expect("parses");
        config.auth.jwt = parsed.auth.jwt;
        let error = match orchestrator_api::Application::build(config).await {
            Ok(_) => panic!("{settings:?} started"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(says), "{settings:?}: {error}");
    }
}
